/* Cost fits from calibration samples (fit.h). */
#include "fit.h"

#include <stdlib.h>

/* Weighs a row by 1/y: the fit minimizes relative errors, so a 2 s
 * sample does not drown the 50 ms ones (both matter to a TTFT p50). */
static void fit_relative(double *row, double *y, size_t k)
{
    double w = *y > 1e-3 ? 1 / *y : 1e3;

    for (size_t j = 0; j < k; j++) {
        row[j] *= w;
    }
    *y *= w;
}

void bt_fit_prefill_features(const bt_sim_cost_t *c, uint32_t prompt,
                             uint32_t cached, double f[4])
{
    uint32_t pos = cached < prompt ? cached : prompt - 1;

    f[0] = 1;
    f[1] = f[2] = f[3] = 0;
    while (pos < prompt) {
        uint32_t n = prompt - pos < c->max_prefill_tokens
                     ? prompt - pos : c->max_prefill_tokens;

        f[1] += 1;
        f[2] += n;
        f[3] += (double)n * ((double)pos + (double)n / 2) / 1000;
        pos += n;
    }
}

double bt_fit_prefill(bt_sim_cost_t *c, const bt_fit_prefill_t *s, size_t n)
{
    double *x, *y, beta[3], rms = -1;

    if (n < 4 || c->max_prefill_tokens == 0) {
        return -1;
    }
    x = malloc(n * 3 * sizeof(*x));
    y = malloc(n * sizeof(*y));
    if (x != NULL && y != NULL) {
        for (size_t i = 0; i < n; i++) {
            double f[4];

            /* the per-chunk base is left out: calibration prompts of one
             * chunk cannot tell it from the request overhead, and only
             * the base would slow a colocated node's decode steps */
            bt_fit_prefill_features(c, s[i].prompt, s[i].cached, f);
            x[i * 3] = f[0];
            x[i * 3 + 1] = f[2];
            x[i * 3 + 2] = f[3];
            y[i] = s[i].ttft_ms;
            fit_relative(&x[i * 3], &y[i], 3);
        }
        rms = bt_sim_lsq(x, y, n, 3, beta);
        if (rms >= 0) {
            c->ttft_overhead_ms = beta[0];
            c->p_base_ms = 0;
            c->p_token_ms = beta[1];
            /* per_token_ctx_us is us per token per 1000 tokens of context:
             * the feature is already divided by 1000 */
            c->p_ctx_us = beta[2];
        }
    }
    free(x);
    free(y);
    return rms;
}

double bt_fit_decode(bt_sim_cost_t *c, const bt_fit_decode_t *s, size_t n)
{
    double *x, *y, beta[3], rms = -1;

    if (n < 3) {
        return -1;
    }
    x = malloc(n * 3 * sizeof(*x));
    y = malloc(n * sizeof(*y));
    if (x != NULL && y != NULL) {
        for (size_t i = 0; i < n; i++) {
            x[i * 3] = 1;
            x[i * 3 + 1] = s[i].batch;
            x[i * 3 + 2] = (double)s[i].batch * s[i].ctx / 1000;
            y[i] = s[i].tpot_ms;
            fit_relative(&x[i * 3], &y[i], 3);
        }
        rms = bt_sim_lsq(x, y, n, 3, beta);
        if (rms >= 0) {
            c->d_base_ms = beta[0];
            c->d_seq_ms = beta[1];
            c->d_ctx_us = beta[2];
        }
    }
    free(x);
    free(y);
    return rms;
}

double bt_fit_line(const double *x, const double *y, size_t n, double *a,
                   double *b)
{
    double *m, beta[2], rms = -1;

    if (n < 2 || (m = malloc(n * 2 * sizeof(*m))) == NULL) {
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        m[i * 2] = 1;
        m[i * 2 + 1] = x[i];
    }
    rms = bt_sim_lsq(m, y, n, 2, beta);
    if (rms >= 0) {
        *a = beta[0];
        *b = beta[1];
    }
    free(m);
    return rms;
}
