/* The token stream of a decode request: each sampled token (with its
 * logprobs when asked for) waits in the request's buffer and goes out in
 * one DecodeTokens when the call's send queue has room; the final follows
 * once the request finished (docs/internals/node.md "Decode"). A full
 * send queue (BT_ERR_EXHAUSTED) sets send_wait, and the next sent
 * callback sends again. */
#include "decode_int.h"
#include "node_lp.h"

#include "base/array.h"
#include "base/log.h"

#include <stdlib.h>

static void bt_dreq_sent(bt_rpc_call_t *call, bool ok, void *arg)
{
    bt_dreq_t *r = arg;

    (void)call;
    r->sends_out--;
    if (!bt_dreq_open(r)) {
        bt_dreq_put(r);
        return;
    }
    if (r->send_wait && ok) {
        r->send_wait = false;
        bt_dreq_flush(r);
    }
}

/* TokenLogprobs messages over the pending tokens' logprobs. */
typedef struct {
    Baton__V1__TokenLogprobs  *msgs;
    Baton__V1__TokenLogprobs **ptrs;
    Baton__V1__TopLogprob     *tops;
    Baton__V1__TopLogprob    **top_ptrs;
} bt_dreq_lp_msgs_t;

static void bt_dreq_lp_msgs_free(bt_dreq_lp_msgs_t *lm)
{
    free(lm->msgs);
    free(lm->ptrs);
    free(lm->tops);
    free(lm->top_ptrs);
}

static bt_status_t bt_dreq_lp_msgs(const bt_dreq_t *r, bt_dreq_lp_msgs_t *lm)
{
    const size_t n = r->n_pending;
    const size_t per = (size_t)r->sp.logprobs;
    size_t k = 0;

    lm->msgs = malloc(n * sizeof(*lm->msgs));
    lm->ptrs = malloc(n * sizeof(*lm->ptrs));
    lm->tops = malloc((n * per > 0 ? n * per : 1) * sizeof(*lm->tops));
    lm->top_ptrs = malloc((n * per > 0 ? n * per : 1) * sizeof(*lm->top_ptrs));
    if (lm->msgs == NULL || lm->ptrs == NULL || lm->tops == NULL ||
        lm->top_ptrs == NULL) {
        bt_dreq_lp_msgs_free(lm);
        return BT_ERR_NO_MEMORY;
    }
    for (size_t i = 0; i < n; i++) {
        /* n_top <= sp.logprobs: the sampler's and the checked payload's */
        bt_node_lp_to_proto(&r->pending_lp[i], &lm->msgs[i], lm->tops + k,
                            lm->top_ptrs + k);
        lm->ptrs[i] = &lm->msgs[i];
        k += r->pending_lp[i].n_top;
    }
    return BT_OK;
}

/* Sends pending tokens (one message for all of them), then the final when
 * the request finished. A full send queue keeps them for the next try. */
void bt_dreq_flush(bt_dreq_t *r)
{
    Baton__V1__DecodeResponse m = BATON__V1__DECODE_RESPONSE__INIT;
    bt_status_t s;

    if (!bt_dreq_open(r) || r->send_wait) {
        return;
    }
    if (r->n_pending > 0) {
        Baton__V1__DecodeTokens t = BATON__V1__DECODE_TOKENS__INIT;
        bt_dreq_lp_msgs_t lm = { NULL, NULL, NULL, NULL };

        t.token_ids = r->pending;
        t.n_token_ids = r->n_pending;
        if (r->sp.logprobs >= 0) {
            if (bt_dreq_lp_msgs(r, &lm) != BT_OK) {
                bt_dreq_fail(r, BT_RPC_INTERNAL, "out of memory");
                return;
            }
            t.logprobs = lm.ptrs;
            t.n_logprobs = r->n_pending;
        }
        m.kind_case = BATON__V1__DECODE_RESPONSE__KIND_TOKENS;
        m.tokens = &t;
        s = bt_rpc_call_send(r->call, &m.base, bt_dreq_sent, r);
        if (r->sp.logprobs >= 0) {
            bt_dreq_lp_msgs_free(&lm);
        }
        if (s == BT_ERR_EXHAUSTED) {
            r->send_wait = true;
            return;
        }
        if (s == BT_OK) {
            r->sends_out++;
        }
        if (s != BT_OK) {
            bt_dreq_fail(r, BT_RPC_CANCELLED, "stream gone");
            return;
        }
        r->n_pending = 0;
    }
    if (r->state == BT_DREQ_FINISHING) {
        Baton__V1__DecodeFinal f = BATON__V1__DECODE_FINAL__INIT;
        Baton__V1__Usage u = BATON__V1__USAGE__INIT;

        u.prompt_tokens = r->n_prompt;
        u.completion_tokens = r->n_out;
        u.cached_tokens = r->cached;
        f.finish_reason = r->finish;
        f.usage = &u;
        m.kind_case = BATON__V1__DECODE_RESPONSE__KIND_FINAL;
        m.final = &f;
        s = bt_rpc_call_send(r->call, &m.base, bt_dreq_sent, r);
        if (s == BT_ERR_EXHAUSTED) {
            r->send_wait = true;
            return;
        }
        if (s == BT_OK) {
            r->sends_out++;
            bt_rpc_call_finish(r->call);
        } else {
            bt_rpc_call_fail_code(r->call, BT_RPC_CANCELLED, "stream gone");
        }
        bt_dreq_to(r, BT_DREQ_ENDED);
        BT_LOG_REQ(INFO, r->id, "decode ended: %u prompt tokens, %u "
                   "generated, finish %s", r->n_prompt, r->n_out,
                   r->finish == BATON__V1__FINISH_REASON__FINISH_REASON_STOP
                   ? "stop" : "length");
        /* blocks go back now; the call itself is done */
        if (!r->in_step) {
            bt_dreq_put(r);
        }
    }
}

/* A new output token at index n_out: record, queue (with its logprobs
 * when the request wants them), check the end. */
bt_status_t bt_dreq_token(bt_dreq_t *r, int32_t tok,
                                 const bt_sample_result_t *lp)
{
    bt_finish_t f;

    if (r->sp.logprobs >= 0) {
        bt_status_t s;

        /* pending empties on every send: this grows only while the call's
         * send queue is full, at most to max_out */
        if (r->n_pending >= r->max_out) {
            return BT_ERR_INTERNAL;   /* more tokens than max_out */
        }
        s = BT_ARRAY_RESERVE(r->pending_lp, r->cap_lp, r->n_pending + 1, 16);
        if (s != BT_OK) {
            return s;
        }
        r->pending_lp[r->n_pending] = *lp;
    }
    if (r->gram != NULL && bt_node_gram_accept(r->gram, tok) != BT_OK) {
        return BT_ERR_INVALID_ARG;   /* the response_format does not allow it */
    }
    r->out[r->n_out++] = tok;
    r->pending[r->n_pending++] = (uint32_t)tok;
    f = bt_sample_finish(&r->sp, tok, r->n_out);
    if (f == BT_FINISH_NONE && r->n_out >= r->max_out) {
        f = BT_FINISH_LENGTH;
    }
    if (f != BT_FINISH_NONE) {
        bt_dreq_to(r, BT_DREQ_FINISHING);
        r->finish = f == BT_FINISH_STOP
                    ? BATON__V1__FINISH_REASON__FINISH_REASON_STOP
                    : BATON__V1__FINISH_REASON__FINISH_REASON_LENGTH;
    }
    return BT_OK;
}

