/* Logprobs of a given token (prompt logprobs for echo): the log-softmax of
 * the raw logits, computed the way the sampler computes a sampled token's
 * (same cutoff, same summation order, same exp and log), so with no
 * penalties, bias or temperature the two agree bit for bit. */
#include "sample.h"
#include "sample_int.h"

#include <math.h>

/* exp(l - lmax) below this difference counts as 0 (sample.c's cutoff) */
#define BT_SAMPLE_LP_CUTOFF 80.0

static bool bt_sample_lp_before(const float *l, uint32_t a, uint32_t b)
{
    float la = l[a] != l[a] ? -INFINITY : l[a];
    float lb = l[b] != l[b] ? -INFINITY : l[b];

    return la > lb || (la == lb && a < b);
}

bt_status_t bt_sample_token_logprobs(const float *logits, uint32_t n_vocab,
                                     int32_t token, int32_t n_top,
                                     bt_sample_result_t *res_p)
{
    uint32_t top[BT_SAMPLE_MAX_LOGPROBS];
    float lmax = -INFINITY;
    double sum = 0.0, log_z;
    uint32_t n = 0, i, j;

    if (token < 0 || (uint32_t)token >= n_vocab || n_top < 0 ||
        n_top > BT_SAMPLE_MAX_LOGPROBS) {
        return BT_ERR_INVALID_ARG;
    }
    for (i = 0; i < n_vocab; i++) {
        if (logits[i] > lmax) {   /* false for NaN */
            lmax = logits[i];
        }
    }
    if (lmax == -INFINITY || lmax == INFINITY) {
        return BT_ERR_INVALID_ARG;
    }
    for (i = 0; i < n_vocab; i++) {
        double d = (double)logits[i] - lmax;   /* NaN: not >= */

        sum += d >= -BT_SAMPLE_LP_CUTOFF ? bt_sample_exp_core(d) : 0.0;
    }
    log_z = bt_sample_log(sum);
    for (i = 0; i < n_vocab && n_top > 0; i++) {
        if (n == (uint32_t)n_top && !bt_sample_lp_before(logits, i, top[n - 1])) {
            continue;
        }
        j = n < (uint32_t)n_top ? n++ : n - 1;
        while (j > 0 && bt_sample_lp_before(logits, i, top[j - 1])) {
            top[j] = top[j - 1];
            j--;
        }
        top[j] = i;
    }
    res_p->token = token;
    res_p->logprob = logits[token] != logits[token] ? -INFINITY
                     : (float)(((double)logits[token] - lmax) - log_z);
    res_p->n_top = n;
    for (i = 0; i < n; i++) {
        float l = logits[top[i]] != logits[top[i]] ? -INFINITY : logits[top[i]];

        res_p->top_ids[i] = (int32_t)top[i];
        res_p->top_logprobs[i] = (float)(((double)l - lmax) - log_z);
    }
    res_p->finish = BT_FINISH_NONE;
    return BT_OK;
}
