/* A prefill's timeline for the router's trace (PrefillResult.chunks and
 * .layers): when each chunk computed and when each layer's KV was first
 * posted and last landed, in microseconds from the call's arrival. Best
 * effort: without memory it records nothing and the reply carries none. */
#ifndef BT_PREFILL_TIMELINE_H
#define BT_PREFILL_TIMELINE_H

#include "node.pb-c.h"

#include <stddef.h>
#include <stdint.h>

/* Chunks past this many are not recorded (a 1M-token prompt has 2048 of
 * 512 tokens; the router bounds what it keeps anyway). */
#define BT_PTL_MAX_CHUNKS 256

typedef struct {
    uint32_t start_token, tokens;
    uint64_t start_us, end_us;
} bt_ptl_chunk_t;

typedef struct {
    uint64_t bytes, post_us, complete_us;
    uint32_t posts;
} bt_ptl_layer_t;

typedef struct {
    uint64_t        t0_us;          /* the call's arrival (bt_now_us) */
    bt_ptl_chunk_t *chunks;
    size_t          n_chunks, cap_chunks;
    bt_ptl_layer_t *layers;         /* n_layers, or NULL */
    uint32_t        n_layers;
} bt_ptl_t;

/* Zeroes `tl` and sizes it for n_layers layers. */
void bt_ptl_init(bt_ptl_t *tl, uint64_t t0_us, uint32_t n_layers);
void bt_ptl_free(bt_ptl_t *tl);
/* A chunk of `tokens` from position `start_token` starts / ends now. */
void bt_ptl_chunk_begin(bt_ptl_t *tl, uint32_t start_token, uint32_t tokens);
void bt_ptl_chunk_end(bt_ptl_t *tl);
/* `bytes` of layer `layer` posted now / a post of it landed now. */
void bt_ptl_post(bt_ptl_t *tl, uint32_t layer, uint64_t bytes);
void bt_ptl_landed(bt_ptl_t *tl, uint32_t layer);

/* The messages of one reply, owned here. */
typedef struct {
    Baton__V1__PrefillChunk   *chunks, **chunk_ptrs;
    Baton__V1__LayerTransfer  *layers, **layer_ptrs;
} bt_ptl_proto_t;

/* Sets res->chunks and res->layers (layers that were posted, in order)
 * from `tl`; bt_ptl_proto_free after the reply is sent. */
void bt_ptl_to_proto(const bt_ptl_t *tl, Baton__V1__PrefillResult *res,
                     bt_ptl_proto_t *out);
void bt_ptl_proto_free(bt_ptl_proto_t *out);

#endif
