/* logit_bias from the node protocol into bt_sample_params_t. */
#include "node_bias.h"

#include <stdio.h>

bt_status_t bt_node_bias_from_proto(const Baton__V1__SamplingParams *p,
                                    uint32_t vocab, bt_sample_params_t *sp,
                                    char *why, size_t why_size)
{
    sp->n_bias = 0;
    if (p == NULL || p->n_logit_bias == 0) {
        return BT_OK;
    }
    if (p->n_logit_bias > BT_SAMPLE_MAX_BIAS) {
        snprintf(why, why_size, "logit_bias has %zu entries; at most %d",
                 p->n_logit_bias, BT_SAMPLE_MAX_BIAS);
        return BT_ERR_INVALID_ARG;
    }
    for (size_t i = 0; i < p->n_logit_bias; i++) {
        const Baton__V1__LogitBias *b = p->logit_bias[i];

        /* an id past INT32_MAX is outside every vocabulary: the check
         * below names it */
        sp->bias_ids[i] = b->token_id > (uint32_t)INT32_MAX
                          ? -1 : (int32_t)b->token_id;
        sp->bias_values[i] = b->bias;
    }
    sp->n_bias = (uint32_t)p->n_logit_bias;
    return bt_sample_bias_check(sp, vocab, why, why_size);
}
