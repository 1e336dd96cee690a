/* baton-sim fit's pieces beside fit_run.c: one calibration run of
 * baton-bench and what its report says (fit_bench.c), and the router step
 * (fit_router.c). */
#ifndef BT_SIM_FIT_BENCH_H
#define BT_SIM_FIT_BENCH_H

#include "sim_cli.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* One baton-bench run of n requests (rate 0: closed loop at conc, else
 * Poisson at rate per second; out: its --out folder, or NULL); the parsed
 * JSON report, or NULL when it failed or answered fewer than n (said). */
json_t *sim_fit_bench(const sim_cli_t *cli, const char *url, uint32_t n,
                      uint32_t conc, double rate, uint32_t prompt,
                      uint32_t output, uint64_t seed, const char *out);
/* The number at o.a (o.a.b when b is not NULL), 0 when there is none. */
double sim_fit_get(json_t *o, const char *a, const char *b);
/* The median of v (sorted in place). */
double sim_fit_median(double *v, size_t n);

/* Sets c->router_ms: FIT_BURST requests of a short prompt at once on the
 * colocated cluster, their TTFT p50 measured (the median of
 * --fit-repeats runs), then the same burst simulated with c and router_ms
 * from 0 to the whole overhead; the closest is kept. 0, or -1 (said). */
int sim_fit_router(const sim_cli_t *cli, bt_sim_cost_t *c);

#endif
