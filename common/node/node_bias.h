/* logit_bias on the nodes: SamplingParams.logit_bias into the sampler's
 * parameters, checked against the model's vocabulary. */
#ifndef BT_NODE_BIAS_H
#define BT_NODE_BIAS_H

#include "base/status.h"
#include "common.pb-c.h"
#include "engine/sample/sample.h"

#include <stddef.h>
#include <stdint.h>

/* Copies p->logit_bias (p may be NULL: none) into sp. BT_ERR_INVALID_ARG
 * with a message in why when there are too many entries, an id is outside
 * [0, vocab) or given twice, or a bias is outside [-100, 100]. */
bt_status_t bt_node_bias_from_proto(const Baton__V1__SamplingParams *p,
                                    uint32_t vocab, bt_sample_params_t *sp,
                                    char *why, size_t why_size);

#endif
