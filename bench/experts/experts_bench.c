/* baton-expertbench: a MoE layer's step on 2 expert devices
 * (engine/model/experts.h), under a balanced and an unbalanced
 * placement of the same skewed routing, and the time to apply a plan
 * that moves every expert, all in one run:
 *   - Qwen3-MoE-shaped layer from baton-mkmodel's code (BF16, hidden 512,
 *     32 experts of FFN 512, top 4), a batch of tokens whose routing
 *     follows Zipf's law over the experts (s = 1, the kind of skew real
 *     MoE traces show);
 *   - unbalanced: the most used half of the experts on device 0 (what a
 *     placement by expert id gives when the hot experts share an id
 *     range); balanced: longest-processing-time first on the same loads;
 *   - apply: bt_ep_stage + the step boundary's switch of a plan that
 *     moves every expert to the other device, as experts moved per second
 *     and GB/s copied.
 * Usage: baton-expertbench [--threads N] [--tokens T] [--dir TMPDIR] */
#include "base/clock.h"
#include "base/log.h"
#include "engine/model/experts.h"
#include "engine/model/forward.h"
#include "engine/model/synth.h"

#include <dirent.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define E      32
#define K      4
#define REPS   5

static void rm_model(const char *dir)
{
    char p[PATH_MAX + 256];
    DIR *d = opendir(dir);
    struct dirent *e;

    while (d != NULL && (e = readdir(d)) != NULL) {
        if (e->d_name[0] != '.') {
            snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
            unlink(p);
        }
    }
    if (d != NULL) {
        closedir(d);
    }
    rmdir(dir);
}

/* sel[T][K]: K distinct experts per token drawn from Zipf(1); load[e]
 * counts them. */
static void zipf_routing(int T, int *sel, double *load)
{
    double cdf[E], z = 0;
    uint64_t x = 12345;

    for (int e = 0; e < E; e++) {
        z += 1.0 / (e + 1);
        cdf[e] = z;
    }
    memset(load, 0, E * sizeof(double));
    for (int t = 0; t < T; t++) {
        for (int j = 0; j < K; j++) {
            int e;
            bool dup;

            do {
                double u;

                x = x * 6364136223846793005ull + 1442695040888963407ull;
                u = (double)(x >> 11) / 9007199254740992.0 * z;
                for (e = 0; e < E - 1 && cdf[e] < u; e++) {
                }
                dup = false;
                for (int i = 0; i < j; i++) {
                    dup |= sel[t * K + i] == e;
                }
            } while (dup);
            sel[t * K + j] = e;
            load[e]++;
        }
    }
}

/* Experts by load, most used first. */
static void by_load(const double *load, int *order)
{
    for (int i = 0; i < E; i++) {
        order[i] = i;
    }
    for (int i = 1; i < E; i++) {
        for (int j = i; j > 0 && load[order[j]] > load[order[j - 1]]; j--) {
            int t = order[j];

            order[j] = order[j - 1];
            order[j - 1] = t;
        }
    }
}

static void plan_for(const bt_model_config_t *c, int layer, const int *dev,
                     uint64_t version, bt_ep_plan_t *p)
{
    if (bt_ep_plan_init(p, c->n_layers, E, 2) != BT_OK) {
        exit(1);
    }
    bt_ep_plan_round_robin(c, p);
    for (int e = 0; e < E; e++) {
        p->where[(size_t)layer * E + e] = 1u << dev[e];
    }
    p->version = version;
}

static void stage(bt_ep_t *ep, const bt_ep_plan_t *p, int *moved)
{
    char err[256];

    if (bt_ep_stage(ep, p, moved, err, sizeof(err)) != BT_OK) {
        fprintf(stderr, "stage: %s\n", err);
        exit(1);
    }
    bt_ep_commit(ep);
}

/* Best of REPS runs of the layer, in seconds; balancedness measured. */
static double time_layer(bt_ep_t *ep, int layer, int T, const int *sel,
                         const float *xn, float *out, double *bal)
{
    double best = 1e30;
    bt_ep_load_t ld;

    bt_ep_layer(ep, layer, T, K, sel, xn, out);  /* warm */
    bt_ep_load(ep, true, &ld);
    for (int r = 0; r < REPS; r++) {
        uint64_t t0 = bt_now_ns();
        double s;

        bt_ep_layer(ep, layer, T, K, sel, xn, out);
        s = bt_elapsed_s(t0, bt_now_ns());
        best = s < best ? s : best;
    }
    bt_ep_load(ep, true, &ld);
    *bal = ld.balancedness;
    return best;
}

int main(int argc, char **argv)
{
    int threads = 2, T = 256;
    const char *tmp = "/tmp";
    char dir[PATH_MAX];
    bt_synth_spec_t s;
    bt_model_t *m;
    bt_fwd_t *f;
    bt_ep_t *ep;
    bt_ep_plan_t hot, lpt, swap;
    double load[E], dl[2] = {0, 0}, t_hot, t_lpt, b_hot, b_lpt;
    int order[E], dev_hot[E], dev_lpt[E], dev_swap[E], moved = 0, layer = 0;
    int *sel;
    float *xn, *out;
    double t_apply = 1e30;
    size_t expert_bytes;

    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--threads") == 0) {
            threads = atoi(argv[i + 1]);
        } else if (strcmp(argv[i], "--tokens") == 0) {
            T = atoi(argv[i + 1]);
        } else if (strcmp(argv[i], "--dir") == 0) {
            tmp = argv[i + 1];
        }
    }
    if (threads < 2 || T < 1) {
        fprintf(stderr, "usage: baton-expertbench [--threads N>=2] "
                "[--tokens T] [--dir TMPDIR]\n");
        return 2;
    }
    bt_log_set_level(BT_LOG_LEVEL_WARN);
    bt_synth_spec_default(&s, BT_ARCH_QWEN3_MOE);
    s.hidden = 512;
    s.n_layers = 1;
    s.n_heads = 8;
    s.n_kv_heads = 4;
    s.head_dim = 64;
    s.n_experts = E;
    s.n_experts_used = K;
    s.moe_ffn = 512;
    s.vocab = 512;
    s.dtype = BT_DTYPE_BF16;
    snprintf(dir, sizeof(dir), "%s/baton-expertbench-%d", tmp, (int)getpid());
    if (bt_synth_write(&s, dir) != BT_OK || bt_model_load(dir, &m) != BT_OK ||
        bt_fwd_create(m, NULL, threads, &f) != BT_OK ||
        bt_fwd_experts_init(f, 2, E) != BT_OK) {
        fprintf(stderr, "cannot set up the model in %s\n", dir);
        return 1;
    }
    ep = bt_fwd_experts(f);
    sel = malloc((size_t)T * K * sizeof(int));
    xn = malloc((size_t)T * s.hidden * sizeof(float));
    out = malloc((size_t)T * K * s.hidden * sizeof(float));
    if (sel == NULL || xn == NULL || out == NULL ||
        bt_ep_reserve(ep, T * K) != BT_OK) {
        return 1;
    }
    for (size_t i = 0; i < (size_t)T * s.hidden; i++) {
        xn[i] = bt_synth_value(1, "xn", i, 1.0f);
    }
    zipf_routing(T, sel, load);
    by_load(load, order);
    for (int i = 0; i < E; i++) {
        const int e = order[i];
        const int d = dl[0] <= dl[1] ? 0 : 1;

        dev_hot[e] = i < E / 2 ? 0 : 1;
        dev_lpt[e] = d;       /* LPT: the next biggest to the lighter */
        dl[d] += load[e];
        dev_swap[e] = 1 - d;
    }
    plan_for(&m->cfg, layer, dev_hot, 1, &hot);
    plan_for(&m->cfg, layer, dev_lpt, 2, &lpt);
    plan_for(&m->cfg, layer, dev_swap, 3, &swap);

    stage(ep, &hot, &moved);
    t_hot = time_layer(ep, layer, T, sel, xn, out, &b_hot);
    stage(ep, &lpt, &moved);
    t_lpt = time_layer(ep, layer, T, sel, xn, out, &b_lpt);
    for (int r = 0; r < REPS; r++) {
        uint64_t t0 = bt_now_ns();
        double el;

        stage(ep, r % 2 == 0 ? &swap : &lpt, &moved);
        el = bt_elapsed_s(t0, bt_now_ns());
        t_apply = el < t_apply ? el : t_apply;
    }
    expert_bytes = 3 * (size_t)s.moe_ffn * s.hidden * bt_dtype_size(s.dtype);

    printf("expert devices: 2 x %d threads, %d tokens x top-%d of %d "
           "experts (Zipf s=1), hidden %d, expert FFN %d, bf16\n",
           threads / 2, T, K, E, s.hidden, s.moe_ffn);
    printf("  unbalanced (hot half on device 0): %8.3f ms  balancedness "
           "%.3f\n", t_hot * 1e3, b_hot);
    printf("  balanced   (LPT on the loads):     %8.3f ms  balancedness "
           "%.3f\n", t_lpt * 1e3, b_lpt);
    printf("  step time unbalanced / balanced:   %.2fx\n", t_hot / t_lpt);
    printf("apply a plan moving %d experts (%.1f MiB): %.3f ms = %.0f "
           "experts/s, %.2f GB/s; = %.2f balanced layer steps\n", moved,
           (double)moved * expert_bytes / 1048576.0, t_apply * 1e3,
           moved / t_apply, (double)moved * expert_bytes / t_apply / 1e9,
           t_apply / t_lpt);
    bt_ep_plan_cleanup(&hot);
    bt_ep_plan_cleanup(&lpt);
    bt_ep_plan_cleanup(&swap);
    free(sel);
    free(xn);
    free(out);
    bt_fwd_destroy(f);
    bt_model_destroy(m);
    rm_model(dir);
    return 0;
}
