/* baton-sim fit's router step (fit_bench.h): the part of the request
 * overhead a router serves one request at a time, from a burst measured
 * on the colocated cluster and simulated with the rest of the fit. */
#include "fit_bench.h"
#include "sim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* this many short requests at once, and the router parts tried */
#define FIT_BURST 8
#define FIT_BURST_PROMPT "32"
#define FIT_ROUTER_STEPS 20

/* The simulated TTFT p50 of the burst with c (every noise draw). */
static double fit_burst_sim(const bt_sim_cost_t *c, const bt_wl_t *wl,
                            int64_t draws, bt_rep_rec_t *recs)
{
    bt_sim_cfg_t cfg;
    bt_sim_stats_t st;
    bt_rep_t rep;
    bt_rep_slo_t slo = {0, 0};
    double sim_s;
    char err[256];

    bt_sim_cfg_default(&cfg);
    cfg.cost = c;
    cfg.n_colocated = 1;
    cfg.one_host = true;
    if (bt_sim_run_draws(&cfg, (size_t)draws, wl, recs, &st, &sim_s, err,
                         sizeof(err)) != 0) {
        fprintf(stderr, "baton-sim fit: %s\n", err);
        return -1;
    }
    bt_rep_compute(recs, wl->n * bt_sim_draws(c, (size_t)draws), sim_s, &slo,
                   NULL, 0, &rep);
    return rep.ttft.p50;
}

int sim_fit_router(const sim_cli_t *cli, bt_sim_cost_t *c)
{
    bt_wl_cfg_t wc;
    bt_wl_t wl;
    bt_rep_rec_t *recs;
    double v[100], meas, best = 0, best_err = -1;
    size_t k = 0;
    char err[256];

    for (int64_t r = 0; r < cli->fit_repeats && k < 100; r++, k++) {
        json_t *o = sim_fit_bench(cli, cli->url_colocated, FIT_BURST,
                                  FIT_BURST, 0,
                                  (uint32_t)atoi(FIT_BURST_PROMPT), 4,
                                  800000 + (uint64_t)r, NULL);

        if (o == NULL) {
            return -1;
        }
        v[k] = sim_fit_get(o, "ttft_ms", "p50");
        json_decref(o);
    }
    meas = sim_fit_median(v, k);
    memset(&wc, 0, sizeof(wc));
    wc.requests = FIT_BURST;
    wc.concurrency = FIT_BURST;
    wc.prompt_tokens = FIT_BURST_PROMPT;
    wc.output_tokens = "4";
    wc.seed = 1;
    wc.block_tokens = 32;
    wc.max_output = 64;
    wc.kv_block = c->block_size;
    if (bt_wl_build(&wc, &wl, err, sizeof(err)) != 0) {
        fprintf(stderr, "baton-sim fit: %s\n", err);
        return -1;
    }
    recs = calloc((size_t)FIT_BURST * (size_t)cli->noise_draws, sizeof(*recs));
    for (int i = 0; recs != NULL && i <= FIT_ROUTER_STEPS; i++) {
        double ms = c->ttft_overhead_ms * i / FIT_ROUTER_STEPS, e;

        c->router_ms = ms;
        e = fit_burst_sim(c, &wl, cli->noise_draws, recs) - meas;
        e = e < 0 ? -e : e;
        if (best_err < 0 || e < best_err) {
            best_err = e;
            best = ms;
        }
    }
    free(recs);
    bt_wl_free(&wl);
    if (best_err < 0) {
        fprintf(stderr, "baton-sim fit: cannot simulate the burst\n");
        return -1;
    }
    c->router_ms = best;
    fprintf(stderr, "  router: %d requests of %s tokens at once, ttft p50 "
            "%.2f ms; one at a time %.3f ms of the %.3f ms overhead (off by "
            "%.2f ms)\n", FIT_BURST, FIT_BURST_PROMPT, meas, best,
            c->ttft_overhead_ms, best_err);
    return 0;
}
