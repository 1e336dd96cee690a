/* logit_bias: per-token additive biases applied after the penalties and
 * before temperature (docs/internals/sampling.md). */
#include "sample.h"

#include <stdio.h>

bt_status_t bt_sample_bias_check(const bt_sample_params_t *p, uint32_t n_vocab,
                                 char *err, size_t err_size)
{
    uint32_t i, j;

    if (p->n_bias > BT_SAMPLE_MAX_BIAS) {
        if (err_size > 0) {
            snprintf(err, err_size, "logit_bias has %u entries; at most %d",
                     p->n_bias, BT_SAMPLE_MAX_BIAS);
        }
        return BT_ERR_INVALID_ARG;
    }
    for (i = 0; i < p->n_bias; i++) {
        int32_t id = p->bias_ids[i];
        float v = p->bias_values[i];

        if (id < 0 || (uint32_t)id >= n_vocab) {
            if (err_size > 0) {
                snprintf(err, err_size, "logit_bias: token id %d is outside "
                         "the vocabulary of %u", id, n_vocab);
            }
            return BT_ERR_INVALID_ARG;
        }
        if (!(v >= -BT_SAMPLE_BIAS_LIMIT && v <= BT_SAMPLE_BIAS_LIMIT)) {
            if (err_size > 0) {
                snprintf(err, err_size, "logit_bias: the bias of token %d "
                         "must be in [-100, 100]", id);
            }
            return BT_ERR_INVALID_ARG;
        }
        /* quadratic, but n_bias <= 300 and only when a request starts */
        for (j = 0; j < i; j++) {
            if (p->bias_ids[j] == id) {
                if (err_size > 0) {
                    snprintf(err, err_size, "logit_bias: token id %d is "
                             "given twice", id);
                }
                return BT_ERR_INVALID_ARG;
            }
        }
    }
    return BT_OK;
}

void bt_sample_bias_apply(const bt_sample_params_t *p, float *logits,
                          uint32_t n_vocab)
{
    uint32_t i;

    for (i = 0; i < p->n_bias && i < BT_SAMPLE_MAX_BIAS; i++) {
        int32_t id = p->bias_ids[i];

        if (id >= 0 && (uint32_t)id < n_vocab) {
            logits[id] += p->bias_values[i];
        }
    }
}
