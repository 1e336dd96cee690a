/* A prefill node's timeline onto the request's trace: the chunks and
 * layer transfers of its PrefillResult, whose times count from the call's
 * arrival on the node, become spans on the request's timeline by adding
 * the router's offset when it sent the call (the call's one-way latency
 * is the error). */
#include "request_priv.h"

void bt_rreq_trace_prefill(bt_rreq_t *req, const Baton__V1__PrefillResult *pr)
{
    const uint64_t base = req->p_sent_us;
    bt_trace_span_t s;

    if (req->trace == NULL) {
        return;
    }
    for (size_t i = 0; i < pr->n_chunks; i++) {
        const Baton__V1__PrefillChunk *c = pr->chunks[i];

        s = (bt_trace_span_t){ .kind = BT_TRACE_SPAN_CHUNK,
                               .attempt = req->n_prefills,
                               .index = c->start_token, .tokens = c->tokens,
                               .start_us = base + c->start_us,
                               .end_us = c->end_us > 0 ? base + c->end_us : 0 };
        bt_trace_span(req->trace, &s);
    }
    for (size_t i = 0; i < pr->n_layers; i++) {
        const Baton__V1__LayerTransfer *l = pr->layers[i];

        s = (bt_trace_span_t){ .kind = BT_TRACE_SPAN_LAYER,
                               .attempt = req->n_prefills,
                               .index = l->layer, .bytes = l->bytes,
                               .start_us = base + l->post_us,
                               .end_us = l->complete_us > 0 ? base + l->complete_us : 0 };
        bt_trace_span(req->trace, &s);
    }
}
