/* Output shaping: a request's tokens become the client's deltas (text
 * through the detokenizer and the stop-string matcher, logprobs checked),
 * each token exactly once, also across a failover. */
#include "request_priv.h"

#include "base/array.h"
#include "base/clock.h"
#include "base/log.h"

#include <stdlib.h>
#include <string.h>

bool bt_sampling_wants_logprobs(const Baton__V1__SamplingParams *sp)
{
    return sp != NULL && (sp->logprobs > 0 || sp->logprobs_chosen);
}

/* Flushes `text` (held back by the stop-string matcher or the detokenizer)
 * to the sink with the token ids of this step. */
static void bt_rreq_emit_text(bt_rreq_t *req, const uint32_t *ids, size_t n,
                              const Baton__V1__TokenLogprobs *const *lps,
                              const char *text, size_t len)
{
    if ((n > 0 || len > 0) && req->sink->on_delta != NULL) {
        req->sink->on_delta(req, req->sink_arg, ids, n, lps, text, len);
    }
}

/* A node's logprobs for `token`: present when asked for, about that
 * token, at most the top-n asked for, ids in the vocabulary. */
static bool bt_rreq_lp_ok(const bt_rreq_t *req, uint32_t token,
                          const Baton__V1__TokenLogprobs *lp)
{
    int32_t vocab = bt_router_model_vocab_size(req->r);

    if (lp == NULL || lp->token_id != token ||
        lp->n_top > (size_t)req->sampling->logprobs) {
        return false;
    }
    for (size_t i = 0; i < lp->n_top; i++) {
        if (lp->top[i] == NULL || lp->top[i]->token_id >= (uint32_t)vocab) {
            return false;
        }
    }
    return true;
}

/* A copy of the node's logprobs for a token whose text waits (the
 * node's message is freed after its callback). */
static bt_status_t bt_rreq_keep_lp(bt_rreq_t *req, size_t idx,
                                   const Baton__V1__TokenLogprobs *lp)
{
    size_t len = baton__v1__token_logprobs__get_packed_size(lp);
    size_t old_cap = req->cap_lpq;
    uint8_t *buf;

    if (BT_ARRAY_RESERVE(req->lpq, req->cap_lpq, idx + 1, 64) != BT_OK) {
        return BT_ERR_NO_MEMORY;
    }
    if (req->cap_lpq > old_cap) {
        memset(req->lpq + old_cap, 0, (req->cap_lpq - old_cap) * sizeof(*req->lpq));
    }
    if ((buf = malloc(len ? len : 1)) == NULL) {
        return BT_ERR_NO_MEMORY;
    }
    baton__v1__token_logprobs__pack(lp, buf);
    req->lpq[idx] = baton__v1__token_logprobs__unpack(NULL, len, buf);
    free(buf);
    return req->lpq[idx] != NULL ? BT_OK : BT_ERR_NO_MEMORY;
}

bt_status_t bt_rreq_emit_token(bt_rreq_t *req, uint32_t token,
                               const Baton__V1__TokenLogprobs *lp,
                               const char **why)
{
    const char *out = NULL;
    size_t out_len = 0;
    bool stopped = false;
    uint64_t now = bt_now_ns();
    const bool want_lp = bt_sampling_wants_logprobs(req->sampling);
    bool waits;

    if (want_lp && !bt_rreq_lp_ok(req, token, lp)) {
        BT_LOG_REQ(ERROR, req->id, "node %s sent no valid logprobs for output "
                   "token %zu", req->state == BT_RREQ_PREFILLING ? req->p_id
                   : req->d_id, req->n_gen);
        *why = "a node returned no valid logprobs";
        return BT_ERR_PEER_PROTOCOL;
    }

    /* with workers a token's text is made there (request_detok.c), and
     * after the tokens that wait already in any case */
    waits = req->r->encode_pool != NULL || req->n_given < req->n_gen;
    if (BT_ARRAY_RESERVE(req->gen, req->cap_gen, req->n_gen + 1, 64) != BT_OK ||
        (waits && want_lp && bt_rreq_keep_lp(req, req->n_gen, lp) != BT_OK)) {
        *why = "out of memory";
        return BT_ERR_NO_MEMORY;
    }
    req->gen[req->n_gen++] = token;
    if (req->first_token_ns == 0) {
        req->first_token_ns = now;
        BT_RREQ_TRACE(req, "first_token", "token %u", token);
        bt_histogram_observe(req->r->m.ttft, bt_elapsed_s(req->created_ns, now));
        if (req->sent_ns != 0) {
            bt_histogram_observe(req->r->m.prefill_time, bt_elapsed_s(req->sent_ns, now));
        }
    } else {
        bt_histogram_observe(req->r->m.itl, bt_elapsed_s(req->last_token_ns, now));
    }
    req->last_token_ns = now;
    if (waits) {
        return BT_OK;
    }
    req->n_given = req->n_gen;
    bt_counter_inc(req->r->m.tokens_out);

    bt_buf_reset(&req->text);
    if (bt_tok_stream_feed(req->detok, (int32_t)token, &req->text) != BT_OK) {
        bt_buf_reset(&req->text);
    }
    if (req->stops != NULL) {
        bt_stopstr_feed(req->stops, req->text.data ? req->text.data : "",
                        req->text.len, &out, &out_len, &stopped);
    } else {
        out = req->text.data ? req->text.data : "";
        out_len = req->text.len;
    }
    bt_rreq_emit_text(req, &token, 1, want_lp ? &lp : NULL, out, out_len);
    req->stopped = stopped;
    return BT_OK;
}

void bt_rreq_job_piece(const bt_rreq_job_t *job, size_t i, const char **text,
                       size_t *len)
{
    size_t from = i > 0 ? job->ends[i - 1] : 0;

    *text = job->text.data != NULL ? job->text.data + from : "";
    *len = job->ends[i] - from;
}

void bt_rreq_give_text(bt_rreq_t *req, const char *text, size_t len)
{
    const size_t idx = req->n_given++;
    Baton__V1__TokenLogprobs *lp = NULL;

    if (bt_sampling_wants_logprobs(req->sampling)) {
        lp = req->lpq[idx];
        req->lpq[idx] = NULL;
    }
    bt_counter_inc(req->r->m.tokens_out);
    bt_rreq_emit_text(req, &req->gen[idx], 1,
                      lp != NULL ? (const Baton__V1__TokenLogprobs *const *)&lp : NULL,
                      text, len);
    if (lp != NULL) {
        baton__v1__token_logprobs__free_unpacked(lp, NULL);
    }
}

void bt_rreq_flush(bt_rreq_t *req)
{
    const char *out = NULL;
    size_t out_len = 0;
    bool stopped = false;

    bt_buf_reset(&req->text);
    bt_tok_stream_finish(req->detok, &req->text);
    if (req->stops != NULL) {
        if (req->text.len > 0) {
            bt_stopstr_feed(req->stops, req->text.data, req->text.len, &out,
                            &out_len, &stopped);
            bt_rreq_emit_text(req, NULL, 0, NULL, out, out_len);
        }
        if (!stopped) {
            bt_stopstr_flush(req->stops, &out, &out_len);
            bt_rreq_emit_text(req, NULL, 0, NULL, out, out_len);
        }
    } else {
        bt_rreq_emit_text(req, NULL, 0, NULL,
                          req->text.data ? req->text.data : "", req->text.len);
    }
}


bool bt_rreq_prompt_lp(bt_rreq_t *req, const Baton__V1__PrefillResult *pr)
{
    const size_t n = req->n_prompt - 1;

    if (pr->n_prompt_logprobs < n) {
        goto bad;
    }
    for (size_t i = 0; i < n; i++) {
        if (!bt_rreq_lp_ok(req, req->prompt[i + 1], pr->prompt_logprobs[i])) {
            goto bad;
        }
    }
    req->plp_done = true;
    if (req->sink->on_prompt != NULL) {
        req->sink->on_prompt(req, req->sink_arg,
                             (const Baton__V1__TokenLogprobs *const *)pr->prompt_logprobs,
                             n);
    }
    return true;

bad:
    BT_LOG_REQ(ERROR, req->id, "prefill node %s sent no valid prompt logprobs",
               req->p_id);
    bt_rreq_end(req, BT_ERR_PEER_PROTOCOL, "a node returned no valid prompt "
                "logprobs", BATON__V1__FINISH_REASON__FINISH_REASON_ERROR);
    return false;
}

const uint32_t *bt_rreq_prompt(const bt_rreq_t *req, size_t *n_p)
{
    *n_p = req->n_prompt;
    return req->prompt;
}
