/* Logprobs on the nodes (docs/internals/node.md, "Logprobs"): what the
 * request asks for, the first token's logprobs inside the kv-complete
 * payload (prefill -> decode), and TokenLogprobs messages. The values are
 * the sampler's (bt_sample_result_t), carried as IEEE f32 bits, so the
 * prefill node, the decode node and a failover re-prefill report the
 * same bits for the same (seed, position). */
#ifndef BT_NODE_LP_H
#define BT_NODE_LP_H

#include "base/status.h"
#include "common.pb-c.h"
#include "engine/sample/sample.h"

#include <stddef.h>
#include <stdint.h>

/* Bytes the logprobs of one token take after the 12-byte kv-complete
 * payload: f32 logprob, u32 n_top, n_top x (u32 id, f32 logprob), little
 * endian. */
#define BT_NODE_LP_BYTES(n_top) (8u + 8u * (uint32_t)(n_top))
#define BT_NODE_LP_MAX_BYTES    BT_NODE_LP_BYTES(BT_SAMPLE_MAX_LOGPROBS)

/* bt_sample_params_t.logprobs for the request: -1 when no logprobs are
 * asked for, else the number of alternatives (0 = the chosen one only).
 * BT_ERR_INVALID_ARG when sampling.logprobs is outside [0, 20]. */
bt_status_t bt_node_lp_param(const Baton__V1__SamplingParams *p,
                             int32_t *logprobs_p);

/* Writes res's logprobs (BT_NODE_LP_BYTES(res->n_top) bytes) to out,
 * which has room for BT_NODE_LP_MAX_BYTES; returns the length. */
size_t bt_node_lp_pack(const bt_sample_result_t *res, uint8_t *out);

/* Reads what bt_node_lp_pack wrote, for chosen token `token`, into
 * res_p (token set, finish NONE). BT_ERR_INVALID_ARG when len does not
 * match, n_top exceeds `want` (the request's top-n) or an id is outside
 * [0, vocab): the payload comes from another process. */
bt_status_t bt_node_lp_unpack(const uint8_t *in, size_t len, int32_t token,
                              int32_t want, uint32_t vocab,
                              bt_sample_result_t *res_p);

/* One TokenLogprobs message over res, in caller storage: `tops` and
 * `top_ptrs` have room for res->n_top entries and must outlive *msg. */
void bt_node_lp_to_proto(const bt_sample_result_t *res,
                         Baton__V1__TokenLogprobs *msg,
                         Baton__V1__TopLogprob *tops,
                         Baton__V1__TopLogprob **top_ptrs);

#endif
