/* baton-placementbench: plans 61 x 256 expert layers for 32, 64 and 128
 * devices (flat and node-aware) and prints plan time and balancedness
 * beside the EPLB-style baseline's, then the transition and re-plan
 * figures on synthetic traces. Loads come from the DeepSeek-V3 decode
 * counts in the shared data folder when present, else from a Zipf trace. */
#include "placement.h"
#include "eplb_ref.h"

#include "base/clock.h"
#include "base/json.h"
#include "base/log.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define REPS 3

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double *load_counts(const char *name, int32_t *L, int32_t *E)
{
    const char *dir = getenv("BATON_SHARED_DATA");
    char    path[1024], err[256];
    json_t *root = NULL;
    double *loads = NULL;

    snprintf(path, sizeof(path), "%s/moe/%s",
             dir != NULL ? dir : BT_BENCH_SHARED_DATA, name);
    if (bt_json_load_file(path, 64u << 20, &root, err, sizeof(err)) != BT_OK) {
        return NULL;
    }
    if (bt_placement_loads_from_json(root, &loads, L, E, err,
                                     sizeof(err)) != BT_OK) {
        fprintf(stderr, "%s: %s\n", path, err);
    }
    json_decref(root);
    return loads;
}

/* Best of REPS runs. */
static double time_plan(const bt_placement_input_t *in,
                        bt_placement_figures_t *f)
{
    double best = INFINITY;

    for (int r = 0; r < REPS; r++) {
        bt_placement_plan_t *plan = NULL;
        double t0 = now_s(), dt;

        if (bt_placement_plan_create(in, &plan) != BT_OK) {
            fprintf(stderr, "plan failed\n");
            exit(1);
        }
        dt = now_s() - t0;
        best = dt < best ? dt : best;
        bt_placement_plan_eval(plan, in, f);
        bt_placement_plan_destroy(plan);
    }
    return best;
}

static void bench_sizes(const double *loads, int32_t L, int32_t E)
{
    static const int32_t devs[] = { 32, 64, 128 };

    printf("%-6s %-5s %-6s %10s %8s %8s | %10s %8s | %7s %7s\n", "devs",
           "slots", "mode", "plan_ms", "bal", "worst", "eplb_ms", "eplb_bal",
           "bal/eplb", "t/eplb");
    for (size_t i = 0; i < sizeof(devs) / sizeof(devs[0]); i++) {
        int32_t n = devs[i], s = (E + n - 1) / n + 1;

        for (int hier = 0; hier < 2; hier++) {
            bt_placement_input_t in = {
                .n_layers = L, .n_experts = E, .loads = loads,
                .n_devices = n, .slots = s, .n_nodes = hier ? (n >= 64 ? 8 : 4) : 1,
                .n_groups = hier ? 8 : 0, .epsilon = -1.0,
            };
            bt_placement_figures_t f;
            bt_eplb_ref_result_t   ref;
            double t = time_plan(&in, &f), te = INFINITY;

            for (int r = 0; r < REPS; r++) {
                double t0 = now_s(), dt;

                bt_eplb_ref_run(loads, L, E, n, s, in.n_nodes, in.n_groups,
                                &ref);
                dt = now_s() - t0;
                te = dt < te ? dt : te;
            }
            printf("%-6d %-5d %-6s %10.1f %8.4f %8.4f | %10.1f %8.4f | %7.3f "
                   "%7.2f\n", n, s, hier ? "nodes" : "flat", t * 1e3,
                   f.balancedness_mean, f.balancedness_min, te * 1e3,
                   ref.mean, f.balancedness_mean / ref.mean, t / te);
        }
    }
}

static void bench_transitions(void)
{
    bt_placement_synth_t sy = { .n_layers = 61, .n_experts = 256,
                                .tokens = 200000, .zipf_s = 0.8,
                                .correlation = 0.6, .seed = 42 };
    size_t  ee = 256u * 256u;
    double *loads = malloc(61 * 256 * sizeof(double));
    double *trans = malloc(60 * ee * sizeof(double));
    bt_placement_figures_t fb, ft;
    double tb, tt;

    bt_placement_synth_run(&sy, loads, trans);
    printf("\ntransitions: synthetic 61 x 256, zipf 0.8, correlation 0.6, "
           "64 devices x 5 slots\n");
    {
        bt_placement_input_t in = { .n_layers = 61, .n_experts = 256,
                                    .loads = loads, .transitions = NULL,
                                    .n_devices = 64, .slots = 5, .n_nodes = 1,
                                    .epsilon = -1.0 };

        tb = time_plan(&in, &fb);
        in.transitions = trans;
        bt_placement_plan_t *p = NULL;
        bt_placement_plan_create(&in, &p);
        in.transitions = NULL;
        {
            bt_placement_input_t ev = in;

            ev.transitions = trans;
            bt_placement_plan_destroy(p);
            p = NULL;
            bt_placement_plan_create(&in, &p);
            bt_placement_plan_eval(p, &ev, &fb);
            bt_placement_plan_destroy(p);
            tt = time_plan(&ev, &ft);
        }
    }
    printf("  balance only : bal %.4f cross %.0f of %.0f (%.1f%%) %.1f ms\n",
           fb.balancedness_mean, fb.cross_device, fb.transitions_total,
           100.0 * fb.cross_device / fb.transitions_total, tb * 1e3);
    printf("  with trans.  : bal %.4f cross %.0f of %.0f (%.1f%%) %.1f ms\n",
           ft.balancedness_mean, ft.cross_device, ft.transitions_total,
           100.0 * ft.cross_device / ft.transitions_total, tt * 1e3);
    printf("  cross-device ratio %.3f, balancedness change %+.4f\n",
           ft.cross_device / fb.cross_device,
           ft.balancedness_mean - fb.balancedness_mean);
    free(loads);
    free(trans);
}

static void bench_replan(const double *loads, int32_t L, int32_t E)
{
    double *drift = malloc((size_t)L * (size_t)E * sizeof(double));
    uint64_t x = 7;
    bt_placement_input_t in = { .n_layers = L, .n_experts = E, .loads = loads,
                                .n_devices = 64, .slots = 5, .n_nodes = 1,
                                .epsilon = -1.0 };
    bt_placement_plan_t *cur = NULL, *p = NULL;
    bt_placement_figures_t fs, fr;
    static const double eps[] = { 0.0, 0.001, 0.005, 0.01, 0.02 };

    for (size_t i = 0; i < (size_t)L * (size_t)E; i++) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        drift[i] = loads[i] * (0.95 + 0.1 * (double)(x >> 11) / 9007199254740992.0);
    }
    bt_placement_plan_create(&in, &cur);
    in.loads = drift;
    in.current = NULL;
    bt_placement_plan_create(&in, &p);
    in.current = cur;
    bt_placement_plan_eval(p, &in, &fs);
    bt_placement_plan_destroy(p);
    printf("\nre-plan after +-5%% load drift, 64 devices x 5 slots:\n");
    printf("  from scratch          : bal %.4f moved %lld of %lld copies "
           "(%.1f%%)\n", fs.balancedness_mean, (long long)fs.moved,
           (long long)fs.copies, 100.0 * (double)fs.moved / (double)fs.copies);
    for (size_t i = 0; i < sizeof(eps) / sizeof(eps[0]); i++) {
        double t;

        in.epsilon = eps[i];
        t = time_plan(&in, &fr);
        printf("  from current eps %.3f : bal %.4f moved %lld of %lld copies "
               "(%.1f%%) %.1f ms\n", eps[i], fr.balancedness_mean,
               (long long)fr.moved, (long long)fr.copies,
               100.0 * (double)fr.moved / (double)fr.copies, t * 1e3);
    }
    bt_placement_plan_destroy(cur);
    free(drift);
}

int main(void)
{
    int32_t L = 0, E = 0;
    double *loads;

    bt_log_init("placementbench", BT_LOG_LEVEL_WARN, BT_LOG_FORMAT_TEXT);
    loads = load_counts("deepseek-v3-decode-expert-counts.json", &L, &E);
    if (loads != NULL) {
        printf("loads: DeepSeek-V3 decode expert counts (%d x %d)\n", L, E);
    } else {
        bt_placement_synth_t sy = { .n_layers = 61, .n_experts = 256,
                                    .tokens = 300000, .zipf_s = 1.0,
                                    .correlation = 0.0, .seed = 1 };

        L = 61;
        E = 256;
        loads = malloc((size_t)L * (size_t)E * sizeof(double));
        bt_placement_synth_run(&sy, loads, NULL);
        printf("loads: synthetic Zipf 1.0 (%d x %d); shared data absent\n",
               L, E);
    }
    bench_sizes(loads, L, E);
    bench_replan(loads, L, E);
    bench_transitions();
    free(loads);
    return 0;
}
