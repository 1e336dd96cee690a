/* baton-sim fit: short calibration loads against local clusters (started
 * by bench/sim/fit.sh with deploy/local/baton-local), sent by baton-bench
 * (its JSON and, for single requests, its per-request TTFTs read back),
 * then the cost functions fitted (fit.c) and written as a cost file
 * (--out):
 *   prefill:  runs of FIT_RUN_REQ requests of 16..1024 prompt tokens each,
 *             Poisson-spaced so that they rarely overlap (as the
 *             workloads' arrivals come: after idle gaps, from one warm
 *             client), on the colocated cluster, cold and again with the
 *             prompts cached (TTFT vs tokens computed and cached), and
 *             the same cold runs on the disaggregated cluster;
 *   noise:    every single request's TTFT over its run's median;
 *   decode:   1..16 equal requests decoding together on the disaggregated
 *             cluster's decode node, their prompts cached first so that
 *             they start together, and the single runs' own gaps (the
 *             gaps after the second token vs batch and context);
 *   hand-over: the first inter-token gap less a decode step, of the cold
 *             runs (colocated: the node's local hand-over; disaggregated:
 *             the KV transfer's tail and the decode node's admission vs
 *             the prompt's KV bytes);
 *   kvstore:  (with --ctl) a prompt, the nodes' caches flushed, the prompt
 *             again: the extra TTFT vs the blocks fetched;
 *   router:   (fit_router.c) a burst of short requests at once,
 *             simulated with the rest fitted: the part of the overhead
 *             served one at a time.
 * Each point is the median over --fit-repeats runs of the runs' p50s. */
#include "fit.h"
#include "fit_bench.h"
#include "sim_cli.h"

#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FIT_MAX 64
/* requests per run of a single-request point, and the share of the time
 * the node may be busy with them (the next point's rate follows) */
#define FIT_RUN_REQ 8
#define FIT_BUSY 0.15
#define FIT_RATE_MAX 4.0
#define FIT_NOISE_MAX 4096

/* What the runs collect besides their p50s. */
typedef struct {
    char   dir[64];                    /* baton-bench --out of the runs */
    double noise[FIT_NOISE_MAX];       /* TTFT / its run's median */
    size_t n_noise;
    double rate[16];                   /* each prompt's arrivals per second */
    double dis[16][3];                 /* the disaggregated runs' m[] */
    bt_fit_decode_t dec[32];           /* the single runs' decode steps */
    size_t n_dec;
} fit_ctx_t;

/* the workloads' short prompts weigh as much as the long ones */
static const uint32_t fit_prompts[] = {16, 32, 64, 128, 256, 512, 1024};
/* tokens of the single requests, as many as the workloads' (a first gap
 * and the steps of one sequence decoding after an idle gap) */
#define FIT_OUT 16
#define FIT_NP (sizeof(fit_prompts) / sizeof(fit_prompts[0]))

/* Each request's TTFT in the last run over the run's median, into
 * x->noise. */
static void fit_noise_add(fit_ctx_t *x, double p50)
{
    char path[128], line[128];
    double ms, frac;
    FILE *f;

    snprintf(path, sizeof(path), "%s/ttft_cdf.dat", x->dir);
    if (p50 <= 0 || (f = fopen(path, "r")) == NULL) {
        return;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        if (line[0] != '#' && sscanf(line, "%lf %lf", &ms, &frac) == 2 &&
            ms > 0 && x->n_noise < FIT_NOISE_MAX) {
            x->noise[x->n_noise++] = ms / p50;
        }
    }
    fclose(f);
}

/* The medians over --fit-repeats runs with fresh prompts of the p50s of
 * TTFT, TPOT and the first inter-token gap (m[0..2]); -1 when a run
 * failed. A run is FIT_RUN_REQ requests of one prompt length at `rate`
 * per second (Poisson), each request's TTFT going to the noise too; with
 * batch > 0 instead, batch equal requests at once whose prompts a first
 * run cached, so that they decode together. */
static int fit_point(const sim_cli_t *cli, fit_ctx_t *x, const char *url,
                     uint32_t batch, double rate, uint32_t prompt,
                     uint32_t output, uint64_t seed, double m[3])
{
    static const char *const key[3] = {"ttft_ms", "tpot_ms", "itl_first_ms"};
    double v[3][100];
    size_t k = 0;

    for (int64_t r = 0; r < cli->fit_repeats && k < 100; r++, k++) {
        const uint64_t sd = seed * 1000 + (uint64_t)r;
        json_t *o;

        if (batch > 0) {
            json_decref(sim_fit_bench(cli, url, batch, batch, 0, prompt, 2,
                                      sd, NULL));
            o = sim_fit_bench(cli, url, batch, batch, 0, prompt, output, sd,
                              NULL);
        } else {
            o = sim_fit_bench(cli, url, FIT_RUN_REQ, 1, rate, prompt, output,
                              sd, x->dir);
        }
        if (o == NULL) {
            return -1;
        }
        for (int j = 0; j < 3; j++) {
            v[j][k] = sim_fit_get(o, key[j], "p50");
        }
        if (batch == 0) {
            fit_noise_add(x, v[0][k]);
        }
        json_decref(o);
    }
    for (int j = 0; j < 3; j++) {
        m[j] = sim_fit_median(v[j], k);
    }
    return 0;
}

/* The mean gap after the first of a run of out tokens, from its TPOT
 * (which counts the first gap, the hand-over's) and that first gap. */
static double fit_later_gaps(double tpot, double gap1, uint32_t out)
{
    return (tpot * (out - 1) - gap1) / (out - 2);
}

/* A single run's decode step (its gaps after the first) as a batch-1
 * decode sample. */
static void fit_single_step(fit_ctx_t *x, uint32_t prompt, const double m[3])
{
    double t = fit_later_gaps(m[1], m[2], FIT_OUT);

    if (t > 0 && x->n_dec < sizeof(x->dec) / sizeof(x->dec[0])) {
        x->dec[x->n_dec++] = (bt_fit_decode_t){1, prompt + FIT_OUT / 2.0, t};
    }
}

/* The next point's arrival rate: its prompt is twice as long as the one
 * that took ttft_ms. */
static double fit_next_rate(double ttft_ms)
{
    double r = ttft_ms > 0 ? FIT_BUSY / (2 * ttft_ms / 1000) : FIT_RATE_MAX;

    return r < FIT_RATE_MAX ? r : FIT_RATE_MAX;
}

static double fit_ms(const bt_sim_cost_t *c, uint32_t prompt, uint32_t cached)
{
    double f[4];

    bt_fit_prefill_features(c, prompt, cached, f);
    return c->ttft_overhead_ms + c->p_base_ms * f[1] + c->p_token_ms * f[2] +
           c->p_ctx_us * f[3];
}

/* Prefill: cold prompts (their first gaps kept in gap1 for the local
 * hand-over), then warm ones (the same seed twice). */
static int fit_prefill(const sim_cli_t *cli, fit_ctx_t *x, bt_sim_cost_t *c,
                       double *gap1)
{
    static const size_t warm[] = {4, 6};   /* 256 and 1024 tokens */
    bt_fit_prefill_t s[FIT_MAX];
    size_t n = 0;
    double rms, m[3], rate = FIT_RATE_MAX;

    for (size_t i = 0; i < FIT_NP; i++) {
        x->rate[i] = rate;
        if (fit_point(cli, x, cli->url_colocated, 0, rate, fit_prompts[i],
                      FIT_OUT, 100 + i, m) != 0) {
            return -1;
        }
        gap1[i] = m[2];
        fit_single_step(x, fit_prompts[i], m);
        s[n++] = (bt_fit_prefill_t){fit_prompts[i], 0, m[0]};
        fprintf(stderr, "  prefill %u tokens (%.2f/s): ttft %.2f ms, first "
                "gap %.2f ms\n", fit_prompts[i], rate, m[0], m[2]);
        rate = fit_next_rate(m[0]);
    }
    for (size_t w = 0; w < sizeof(warm) / sizeof(warm[0]); w++) {
        const size_t i = warm[w];

        for (int64_t r = 0; r < cli->fit_repeats; r++) {
            uint64_t seed = 500000 + i * 100 + (uint64_t)r;
            json_t *a = sim_fit_bench(cli, cli->url_colocated, FIT_RUN_REQ,
                                      1, x->rate[i], fit_prompts[i], 1, seed,
                                      NULL);
            json_t *b = a != NULL ? sim_fit_bench(cli, cli->url_colocated,
                                                  FIT_RUN_REQ, 1, FIT_RATE_MAX,
                                                  fit_prompts[i], 1, seed,
                                                  NULL)
                                  : NULL;

            if (b == NULL) {
                json_decref(a);
                return -1;
            }
            double cached = sim_fit_get(b, "cached_tokens", NULL) /
                            FIT_RUN_REQ;

            /* a router that does not report it: the node reuses every
             * full block of a repeated prompt but the last token's */
            if (cached <= 0) {
                cached = (double)((fit_prompts[i] - 1) / c->block_size *
                                  c->block_size);
            }
            s[n++] = (bt_fit_prefill_t){fit_prompts[i], (uint32_t)cached,
                                        sim_fit_get(b, "ttft_ms", "p50")};
            fprintf(stderr, "  prefill %u tokens, %u cached: ttft %.2f ms\n",
                    s[n - 1].prompt, s[n - 1].cached, s[n - 1].ttft_ms);
            json_decref(a);
            json_decref(b);
        }
    }
    rms = bt_fit_prefill(c, s, n);
    fprintf(stderr, "  prefill fit: overhead %.3f ms, chunk %.3f ms, %.5f ms/token, "
            "%.5f us/token/ctx token; relative rms %.3f\n", c->ttft_overhead_ms,
            c->p_base_ms, c->p_token_ms, c->p_ctx_us, rms);
    return rms < 0 ? -1 : 0;
}

/* Decode: batches of cached prompts, and the single runs' steps (one
 * sequence after an idle gap, as the light workloads decode). */
static int fit_decode(const sim_cli_t *cli, fit_ctx_t *x, bt_sim_cost_t *c)
{
    static const uint32_t batch[] = {1, 2, 4, 8, 16};
    static const uint32_t prompt[] = {32, 512};
    const uint32_t out = 32;
    bt_fit_decode_t s[FIT_MAX];
    size_t n = 0;
    double rms, m[3];

    for (size_t k = 0; k < x->n_dec && n < FIT_MAX; k++) {
        s[n++] = x->dec[k];
        fprintf(stderr, "  decode alone, %.0f context: step %.2f ms\n",
                x->dec[k].ctx, x->dec[k].tpot_ms);
    }
    for (size_t j = 0; j < 2; j++) {
        for (size_t i = 0; i < sizeof(batch) / sizeof(batch[0]); i++) {
            double t;

            if (fit_point(cli, x, cli->url_disagg, batch[i], 0, prompt[j],
                          out, 200 + i + 10 * j, m) != 0) {
                return -1;
            }
            /* the steps alone: the first gap is the hand-over's */
            t = fit_later_gaps(m[1], m[2], out);
            t = t > 0 ? t : m[1];
            s[n++] = (bt_fit_decode_t){batch[i], prompt[j] + out / 2.0, t};
            fprintf(stderr, "  decode batch %u, %u prompt: tpot %.2f ms, "
                    "first gap %.2f, step %.2f ms\n", batch[i], prompt[j],
                    m[1], m[2], t);
        }
    }
    rms = bt_fit_decode(c, s, n);
    fprintf(stderr, "  decode fit: %.3f ms + %.4f ms/seq + %.5f us/ctx token; "
            "relative rms %.3f\n", c->d_base_ms, c->d_seq_ms, c->d_ctx_us, rms);
    return rms < 0 ? -1 : 0;
}

/* The disaggregated cluster's single runs, as the colocated ones. */
static int fit_disagg_runs(const sim_cli_t *cli, fit_ctx_t *x)
{
    for (size_t i = 0; i < FIT_NP; i++) {
        if (fit_point(cli, x, cli->url_disagg, 0, x->rate[i], fit_prompts[i],
                      FIT_OUT, 300 + i, x->dis[i]) != 0) {
            return -1;
        }
        fit_single_step(x, fit_prompts[i], x->dis[i]);
        fprintf(stderr, "  disaggregated %u tokens: ttft %.2f ms, first gap "
                "%.2f ms\n", fit_prompts[i], x->dis[i][0], x->dis[i][2]);
    }
    return 0;
}

/* The hand-over from the first token to the decode batch: a first gap
 * less the decode step that ends it, as a line in the prompt's KV bytes:
 * colocated (the node's local hand-over) and disaggregated (the
 * transfer's tail, then the decode node's admission). */
static int fit_handover(const sim_cli_t *cli, const fit_ctx_t *fx,
                        bt_sim_cost_t *c, const double *gap1)
{
    double x[FIT_NP], y[FIT_NP], local[FIT_NP], a = 0, b = 0;
    double la = 0, lb = 0;

    for (size_t i = 0; i < FIT_NP; i++) {
        double step = bt_sim_decode_ms(c, 1, fit_prompts[i] + 1);

        local[i] = gap1[i] - step > 0 ? gap1[i] - step : 0;
        x[i] = fit_prompts[i] * c->kv_bytes_per_token / 1048576.0;
        y[i] = fx->dis[i][2] - step > 0 ? fx->dis[i][2] - step : 0;
        fprintf(stderr, "  hand-over %u tokens: colocated +%.2f ms, "
                "disaggregated +%.2f ms\n", fit_prompts[i], local[i], y[i]);
    }
    if (bt_fit_line(x, local, FIT_NP, &la, &lb) < 0 ||
        bt_fit_line(x, y, FIT_NP, &a, &b) < 0) {
        return -1;
    }
    c->d_join_ms = la;
    c->d_join_ms_mb = lb;
    c->n_xfer = 1;
    snprintf(c->xfer[0].name, sizeof(c->xfer[0].name), "%s",
             cli->transport != NULL ? cli->transport : "shm");
    c->xfer[0].base_ms = a;
    c->xfer[0].ms_per_mb = b;
    fprintf(stderr, "  hand-over fit: colocated %.3f ms + %.4f ms/MiB; %s "
            "%.3f ms + %.4f ms/MiB\n", la, lb, c->xfer[0].name, a, b);
    return 0;
}

static int fit_kvstore(const sim_cli_t *cli, bt_sim_cost_t *c)
{
    static const uint32_t prompt[] = {512, 1024};
    double x[2 * 100], y[2 * 100], a = 0, b = 0;
    size_t n = 0;
    char cmd[1024];

    snprintf(cmd, sizeof(cmd), "'%s' --router '%s' flush-cache >/dev/null",
             cli->ctl, cli->grpc);
    for (size_t i = 0; i < 2; i++) {
        for (int64_t r = 0; r < cli->fit_repeats; r++) {
            uint64_t seed = 700000 + i * 100 + (uint64_t)r;
            json_t *w = sim_fit_bench(cli, cli->url_colocated, 1, 1, 0,
                                      prompt[i], 1, seed, NULL);
            json_t *o = NULL;
            double cached;

            json_decref(w);
            if (w == NULL || system(cmd) != 0 ||
                (o = sim_fit_bench(cli, cli->url_colocated, 1, 1, 0,
                                   prompt[i], 1, seed, NULL)) == NULL) {
                fprintf(stderr, "baton-sim fit: kvstore calibration failed "
                        "(%s)\n", cmd);
                return -1;
            }
            cached = sim_fit_get(o, "cached_tokens", NULL);
            json_decref(o);
            if (cached <= 0) {
                /* no fetch (the read timed out, or the router did not
                 * say): nothing to fit in this point */
                fprintf(stderr, "  kvstore: no blocks reported reused: "
                        "point skipped\n");
                continue;
            }
            x[n] = cached / c->block_size;
            y[n] = sim_fit_get(o, "ttft_ms", "p50") -
                   fit_ms(c, prompt[i], (uint32_t)cached);
            y[n] = y[n] > 0 ? y[n] : 0;
            fprintf(stderr, "  kvstore fetch of %.0f blocks: +%.2f ms\n", x[n],
                    y[n]);
            n++;
        }
    }
    if (n < 2 || bt_fit_line(x, y, n, &a, &b) < 0) {
        fprintf(stderr, "  kvstore: too few points: its fetch costs nothing "
                "in this fit\n");
        return 0;
    }
    c->k_base_ms = a;
    c->k_block_ms = b;
    fprintf(stderr, "  kvstore fit: %.3f ms + %.4f ms/block\n", a, b);
    return 0;
}

/* Removes the runs' --out folder and what baton-bench wrote in it. */
static void fit_rmdir(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[512];

    while (d != NULL && (e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
            unlink(path);
        }
    }
    if (d != NULL) {
        closedir(d);
    }
    rmdir(dir);
}

static int fit_all(const sim_cli_t *cli, fit_ctx_t *x, bt_sim_cost_t *c)
{
    double gap1[FIT_NP];

    /* the first requests of a fresh cluster pay its warm-up (connections,
     * page faults of the model): not what is fitted */
    for (int k = 0; k < 2; k++) {
        json_decref(sim_fit_bench(cli, cli->url_colocated, 2, 2, 0, 64, 4,
                                  9 + k, NULL));
        json_decref(sim_fit_bench(cli, cli->url_disagg, 2, 2, 0, 64, 4, 9 + k,
                                  NULL));
    }
    if (fit_prefill(cli, x, c, gap1) != 0 || fit_disagg_runs(cli, x) != 0 ||
        fit_decode(cli, x, c) != 0 || fit_handover(cli, x, c, gap1) != 0) {
        return -1;
    }
    if (cli->ctl != NULL && cli->grpc != NULL && fit_kvstore(cli, c) != 0) {
        return -1;
    }
    bt_sim_noise_set(c, x->noise, x->n_noise);
    if (c->n_noise > 0) {
        fprintf(stderr, "  noise: %zu ttft factors, p10 %.2f p50 %.2f p90 "
                "%.2f max %.2f\n", x->n_noise, c->noise[c->n_noise / 10],
                c->noise[c->n_noise / 2], c->noise[c->n_noise * 9 / 10],
                c->noise[c->n_noise - 1]);
    }
    /* last: it simulates with everything else fitted */
    return sim_fit_router(cli, c);
}

int sim_cmd_fit(sim_cli_t *cli)
{
    bt_sim_cost_t c;
    fit_ctx_t *x;
    char err[256], src[512];
    int rc;

    if (cli->url_colocated == NULL || cli->url_disagg == NULL ||
        cli->bench == NULL || cli->out == NULL || cli->total_blocks < 1 ||
        cli->kv_bytes_per_token <= 0) {
        fprintf(stderr, "baton-sim fit: needs --url-colocated, --url-disagg, "
                "--bench, --out, --total-blocks and --kv-bytes-per-token "
                "(bench/sim/fit.sh sets them)\n");
        return 2;
    }
    if ((x = calloc(1, sizeof(*x))) == NULL) {
        fprintf(stderr, "baton-sim fit: out of memory\n");
        return 1;
    }
    snprintf(x->dir, sizeof(x->dir), "/tmp/baton-sim-fit.XXXXXX");
    if (mkdtemp(x->dir) == NULL) {
        fprintf(stderr, "baton-sim fit: cannot make a folder in /tmp\n");
        free(x);
        return 1;
    }
    memset(&c, 0, sizeof(c));
    snprintf(c.name, sizeof(c.name), "local cluster, model %s (fitted)",
             cli->model);
    c.block_size = (uint32_t)cli->block_size;
    c.total_blocks = (uint32_t)cli->total_blocks;
    c.max_batch = (uint32_t)cli->max_batch;
    c.max_prefill_tokens = (uint32_t)cli->max_prefill_tokens;
    c.max_prefill_tokens -= c.max_prefill_tokens % c.block_size;
    c.max_prefill_tokens = c.max_prefill_tokens > 0 ? c.max_prefill_tokens
                                                    : c.block_size;
    c.kv_bytes_per_token = cli->kv_bytes_per_token;
    fprintf(stderr, "baton-sim fit: calibrating (%lld runs per point)\n",
            (long long)cli->fit_repeats);
    rc = fit_all(cli, x, &c);
    fit_rmdir(x->dir);
    free(x);
    if (rc != 0) {
        return 1;
    }
    snprintf(src, sizeof(src), "baton-sim fit against %s and %s",
             cli->url_colocated, cli->url_disagg);
    if (bt_sim_cost_save(cli->out, &c, src, err, sizeof(err)) != 0) {
        fprintf(stderr, "baton-sim fit: %s\n", err);
        return 1;
    }
    fprintf(stderr, "baton-sim fit: wrote %s\n", cli->out);
    return 0;
}
