/* Fitting the cost functions (cost.h) to calibration measurements, the
 * arithmetic half of `baton-sim fit` (main.c runs the loads):
 *   prefill: TTFTs of single requests (prompt, cached tokens) on a
 *            colocated node: overhead + the chunks the node computes;
 *   decode:  step times of `batch` equal requests decoding together on
 *            a decode node, each holding ctx tokens on average;
 *   lines:   the disaggregated hand-over (first inter-token gap less a
 *            step vs KV bytes) and kvstore fetch (extra TTFT vs blocks
 *            fetched).
 * Every coefficient comes out >= 0 (bt_sim_lsq); prefill and decode
 * minimize relative errors (each sample weighed by 1 / its value). */
#ifndef BT_SIM_FIT_H
#define BT_SIM_FIT_H

#include "cost.h"

typedef struct {
    uint32_t prompt, cached;
    double   ttft_ms;
} bt_fit_prefill_t;

typedef struct {
    uint32_t batch;
    double   ctx;        /* tokens of context per sequence, on average */
    double   tpot_ms;    /* a step: the gaps after the first */
} bt_fit_decode_t;

/* The prefill features of one request under c's chunk size: the chunks
 * computed, their tokens, and their token x context sum / 1000. */
void bt_fit_prefill_features(const bt_sim_cost_t *c, uint32_t prompt,
                             uint32_t cached, double f[4]);

/* Sets c's ttft_overhead_ms, p_token_ms and p_ctx_us, and p_base_ms to 0
 * (c->block_size, max_prefill_tokens
 * given). Returns the relative RMS error, or -1 (fewer than 4 samples,
 * or singular). */
double bt_fit_prefill(bt_sim_cost_t *c, const bt_fit_prefill_t *s, size_t n);
/* Sets c's d_*; relative RMS error or -1 (fewer than 3 samples, or
 * singular). */
double bt_fit_decode(bt_sim_cost_t *c, const bt_fit_decode_t *s, size_t n);
/* y = a + b x with a, b >= 0; RMS error or -1 (fewer than 2 samples). */
double bt_fit_line(const double *x, const double *y, size_t n, double *a,
                   double *b);

#endif
