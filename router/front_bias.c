/* logit_bias checked against the served model's vocabulary when a
 * request starts (both fronts), by the sampler's own rules, so a request
 * the router accepts is one every node accepts. */
#include "front.h"

#include "engine/sample/sample.h"

#include <stdio.h>

bt_status_t bt_front_check_bias(const Baton__V1__SamplingParams *sp,
                                uint32_t vocab, char *err, size_t err_size)
{
    bt_sample_params_t p;

    if (sp == NULL || sp->n_logit_bias == 0) {
        return BT_OK;
    }
    if (sp->n_logit_bias > BT_SAMPLE_MAX_BIAS) {
        snprintf(err, err_size, "logit_bias has %zu entries; at most %d",
                 sp->n_logit_bias, BT_SAMPLE_MAX_BIAS);
        return BT_ERR_INVALID_ARG;
    }
    p.n_bias = (uint32_t)sp->n_logit_bias;
    for (size_t i = 0; i < sp->n_logit_bias; i++) {
        uint32_t id = sp->logit_bias[i]->token_id;

        if (id >= vocab) {
            snprintf(err, err_size, "logit_bias: token id %u is outside the "
                     "vocabulary of %u", id, vocab);
            return BT_ERR_INVALID_ARG;
        }
        p.bias_ids[i] = (int32_t)id;
        p.bias_values[i] = sp->logit_bias[i]->bias;
    }
    return bt_sample_bias_check(&p, vocab, err, err_size);
}
