/* Logprobs on the nodes; see node_lp.h. */
#include "node_lp.h"

#include "base/endian.h"

#include <string.h>

bt_status_t bt_node_lp_param(const Baton__V1__SamplingParams *p,
                             int32_t *logprobs_p)
{
    if (p->logprobs < 0 || p->logprobs > BT_SAMPLE_MAX_LOGPROBS) {
        return BT_ERR_INVALID_ARG;
    }
    *logprobs_p = p->logprobs > 0 || p->logprobs_chosen ? p->logprobs : -1;
    return BT_OK;
}

static uint32_t bt_node_lp_fbits(float f)
{
    uint32_t v;

    memcpy(&v, &f, sizeof(v));
    return v;
}

static float bt_node_lp_bitsf(uint32_t v)
{
    float f;

    memcpy(&f, &v, sizeof(f));
    return f;
}

size_t bt_node_lp_pack(const bt_sample_result_t *res, uint8_t *out)
{
    uint32_t n = res->n_top <= BT_SAMPLE_MAX_LOGPROBS ? res->n_top
                                                      : BT_SAMPLE_MAX_LOGPROBS;

    bt_put_le32(out, bt_node_lp_fbits(res->logprob));
    bt_put_le32(out + 4, n);
    for (uint32_t i = 0; i < n; i++) {
        bt_put_le32(out + 8 + 8 * i, (uint32_t)res->top_ids[i]);
        bt_put_le32(out + 12 + 8 * i, bt_node_lp_fbits(res->top_logprobs[i]));
    }
    return BT_NODE_LP_BYTES(n);
}

bt_status_t bt_node_lp_unpack(const uint8_t *in, size_t len, int32_t token,
                              int32_t want, uint32_t vocab,
                              bt_sample_result_t *res_p)
{
    uint32_t n;

    if (len < BT_NODE_LP_BYTES(0) || want < 0) {
        return BT_ERR_INVALID_ARG;
    }
    n = bt_get_le32(in + 4);
    if (n > (uint32_t)want || len != BT_NODE_LP_BYTES(n)) {
        return BT_ERR_INVALID_ARG;
    }
    memset(res_p, 0, sizeof(*res_p));
    res_p->token = token;
    res_p->logprob = bt_node_lp_bitsf(bt_get_le32(in));
    res_p->n_top = n;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t id = bt_get_le32(in + 8 + 8 * i);

        if (id >= vocab) {
            return BT_ERR_INVALID_ARG;
        }
        res_p->top_ids[i] = (int32_t)id;
        res_p->top_logprobs[i] = bt_node_lp_bitsf(bt_get_le32(in + 12 + 8 * i));
    }
    res_p->finish = BT_FINISH_NONE;
    return BT_OK;
}

void bt_node_lp_to_proto(const bt_sample_result_t *res,
                         Baton__V1__TokenLogprobs *msg,
                         Baton__V1__TopLogprob *tops,
                         Baton__V1__TopLogprob **top_ptrs)
{
    baton__v1__token_logprobs__init(msg);
    msg->token_id = (uint32_t)res->token;
    msg->logprob = res->logprob;
    for (uint32_t i = 0; i < res->n_top; i++) {
        baton__v1__top_logprob__init(&tops[i]);
        tops[i].token_id = (uint32_t)res->top_ids[i];
        tops[i].logprob = res->top_logprobs[i];
        tops[i].text = (char *)"";
        top_ptrs[i] = &tops[i];
    }
    msg->n_top = res->n_top;
    msg->top = res->n_top > 0 ? top_ptrs : NULL;
}
