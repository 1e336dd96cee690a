/* A prefill's timeline (prefill_timeline.h). */
#include "prefill_timeline.h"

#include "base/array.h"
#include "base/clock.h"

#include <stdlib.h>
#include <string.h>

void bt_ptl_init(bt_ptl_t *tl, uint64_t t0_us, uint32_t n_layers)
{
    memset(tl, 0, sizeof(*tl));
    tl->t0_us = t0_us;
    if (n_layers > 0) {
        tl->layers = calloc(n_layers, sizeof(*tl->layers));
        tl->n_layers = tl->layers != NULL ? n_layers : 0;
    }
}

void bt_ptl_free(bt_ptl_t *tl)
{
    free(tl->chunks);
    free(tl->layers);
    memset(tl, 0, sizeof(*tl));
}

static uint64_t bt_ptl_now(const bt_ptl_t *tl)
{
    uint64_t t = bt_now_us();

    return t > tl->t0_us ? t - tl->t0_us : 0;
}

void bt_ptl_chunk_begin(bt_ptl_t *tl, uint32_t start_token, uint32_t tokens)
{
    bt_ptl_chunk_t *c;

    if (tl->n_chunks >= BT_PTL_MAX_CHUNKS ||
        BT_ARRAY_RESERVE(tl->chunks, tl->cap_chunks, tl->n_chunks + 1, 8) != BT_OK) {
        return;
    }
    c = &tl->chunks[tl->n_chunks++];
    c->start_token = start_token;
    c->tokens = tokens;
    c->start_us = bt_ptl_now(tl);
    c->end_us = 0;
}

void bt_ptl_chunk_end(bt_ptl_t *tl)
{
    if (tl->n_chunks > 0 && tl->chunks[tl->n_chunks - 1].end_us == 0) {
        tl->chunks[tl->n_chunks - 1].end_us = bt_ptl_now(tl);
    }
}

void bt_ptl_post(bt_ptl_t *tl, uint32_t layer, uint64_t bytes)
{
    bt_ptl_layer_t *l;

    if (layer >= tl->n_layers) {
        return;
    }
    l = &tl->layers[layer];
    if (l->posts++ == 0) {
        l->post_us = bt_ptl_now(tl);
    }
    l->bytes += bytes;
}

void bt_ptl_landed(bt_ptl_t *tl, uint32_t layer)
{
    if (layer < tl->n_layers) {
        tl->layers[layer].complete_us = bt_ptl_now(tl);
    }
}

void bt_ptl_to_proto(const bt_ptl_t *tl, Baton__V1__PrefillResult *res,
                     bt_ptl_proto_t *out)
{
    size_t n_layers = 0;

    memset(out, 0, sizeof(*out));
    for (uint32_t i = 0; i < tl->n_layers; i++) {
        n_layers += tl->layers[i].posts > 0;
    }
    if (tl->n_chunks > 0) {
        out->chunks = calloc(tl->n_chunks, sizeof(*out->chunks));
        out->chunk_ptrs = calloc(tl->n_chunks, sizeof(*out->chunk_ptrs));
    }
    if (n_layers > 0) {
        out->layers = calloc(n_layers, sizeof(*out->layers));
        out->layer_ptrs = calloc(n_layers, sizeof(*out->layer_ptrs));
    }
    if ((tl->n_chunks > 0 && (out->chunks == NULL || out->chunk_ptrs == NULL)) ||
        (n_layers > 0 && (out->layers == NULL || out->layer_ptrs == NULL))) {
        bt_ptl_proto_free(out);   /* best effort: no timeline */
        return;
    }
    for (size_t i = 0; i < tl->n_chunks; i++) {
        Baton__V1__PrefillChunk *c = &out->chunks[i];

        baton__v1__prefill_chunk__init(c);
        c->start_token = tl->chunks[i].start_token;
        c->tokens = tl->chunks[i].tokens;
        c->start_us = tl->chunks[i].start_us;
        c->end_us = tl->chunks[i].end_us;
        out->chunk_ptrs[i] = c;
    }
    res->n_chunks = tl->n_chunks;
    res->chunks = out->chunk_ptrs;
    n_layers = 0;
    for (uint32_t i = 0; i < tl->n_layers; i++) {
        const bt_ptl_layer_t *l = &tl->layers[i];
        Baton__V1__LayerTransfer *m;

        if (l->posts == 0) {
            continue;
        }
        m = &out->layers[n_layers];
        baton__v1__layer_transfer__init(m);
        m->layer = i;
        m->bytes = l->bytes;
        m->post_us = l->post_us;
        m->complete_us = l->complete_us;
        out->layer_ptrs[n_layers++] = m;
    }
    res->n_layers = n_layers;
    res->layers = out->layer_ptrs;
}

void bt_ptl_proto_free(bt_ptl_proto_t *out)
{
    free(out->chunks);
    free(out->chunk_ptrs);
    free(out->layers);
    free(out->layer_ptrs);
    memset(out, 0, sizeof(*out));
}
