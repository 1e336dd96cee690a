/* The logprobs objects of the HTTP API, built from the nodes' TokenLogprobs
 * with each token's text (a choice of a response, or a stream's chunk). */
#include "front.h"
#include "model.h"

/* Logprobs of a whole response are bounded like its text. */
#define BT_FRONT_MAX_LP_BYTES (64u << 20)

bt_status_t bt_front_lp_add(bt_router_t *r, bt_openai_kind_t kind,
                            bt_front_lp_t *st, size_t n,
                            const Baton__V1__TokenLogprobs *const *lps)
{
    bt_openai_tok_lp_t chosen, top[BT_OPENAI_MAX_LOGPROBS];
    size_t off[BT_OPENAI_MAX_LOGPROBS + 1];

    for (size_t i = 0; i < n; i++) {
        const Baton__V1__TokenLogprobs *lp = lps[i];
        /* the request checked n_top against the request's <= 20 */
        const size_t n_top = lp->n_top <= BT_OPENAI_MAX_LOGPROBS
                             ? lp->n_top : BT_OPENAI_MAX_LOGPROBS;
        bt_status_t s;

        bt_buf_reset(st->tok_text);
        bt_router_model_token_text(r, lp->token_id, true, st->tok_text);
        off[0] = st->tok_text->len;
        for (size_t t = 0; t < n_top; t++) {
            bt_router_model_token_text(r, lp->top[t]->token_id, true,
                                       st->tok_text);
            off[t + 1] = st->tok_text->len;
        }
        chosen.text = st->tok_text->data ? st->tok_text->data : "";
        chosen.len = off[0];
        chosen.logprob = lp->logprob;
        for (size_t t = 0; t < n_top; t++) {
            top[t].text = chosen.text + off[t];
            top[t].len = off[t + 1] - off[t];
            top[t].logprob = lp->top[t]->logprob;
        }
        s = bt_openai_logprobs_add(kind, &st->lp, &chosen, top, n_top,
                                   st->text_offset);
        if (s != BT_OK) {
            return s;
        }
        st->text_offset += chosen.len;
        /* a rough bound on the JSON (bytes arrays are ~4 chars a byte) */
        st->lp_bytes += 64 * (n_top + 1) + 5 * st->tok_text->len;
        if (st->lp_bytes > BT_FRONT_MAX_LP_BYTES) {
            return BT_ERR_TOO_LARGE;
        }
    }
    return BT_OK;
}
