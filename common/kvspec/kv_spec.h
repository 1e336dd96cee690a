/* kv-spec v2 (docs/kv-spec.md): what every party that names or moves a KV
 * block agrees on — the node's pool, the router's prefix index, the
 * kvstore and its client. The version, the hash size, the event tiers,
 * the KV dtype ids (the values of baton.v1.KvDtype), the geometry of a
 * block and the limits on requests. Pure data and pure functions; no
 * engine, no proto (kv_proto.h converts to and from the messages). */
#ifndef BT_KV_SPEC_H
#define BT_KV_SPEC_H

#include "base/sha256.h"
#include "base/status.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BT_KV_SPEC_VERSION 2         /* docs/kv-spec.md "kv-spec v2" */
#define BT_KV_HASH_LEN BT_SHA256_LEN /* 32 */

/* Tiers named in KV events (the values of baton.v1.KvTier). */
#define BT_KV_TIER_NODE 1            /* a node's own pool (tier 1) */
#define BT_KV_TIER_STORE_DRAM 2
#define BT_KV_TIER_STORE_DISK 3

/* Limits of the spec and of requests between nodes and the kvstore. */
#define BT_KV_MAX_BLOCK_TOKENS 1024u          /* tokens per block */
#define BT_KV_MAX_HASHES 1024u                /* hashes in one call */
#define BT_KV_MAX_BLOCK_BYTES (1ull << 30)    /* one block, every layer */
#define BT_KV_MAX_GEOM_DIM 4096u              /* n_layers, n_kv_heads, head_dim */

/* The numerics id (docs/kv-spec.md "Numerics id"): which arithmetic made
 * a block's K/V, "BACKEND/MODE/tpN/kREV" (e.g. "cpu/exact/tp1/k1"). Two
 * nodes share KV only when their ids are equal; the id is hashed into the
 * root, so blocks of different ids never match. */
#define BT_KV_NUMERICS_MAX 64

/* 1 .. BT_KV_NUMERICS_MAX bytes of [a-z0-9./_-]: what a node may report. */
bool bt_kv_numerics_valid(const char *id);
/* Writes "BACKEND/MODE/tpTP/kREV" into buf; false when it is not a valid
 * id (a name outside [a-z0-9._-], tp or rev 0, or too long). */
bool bt_kv_numerics_format(char *buf, size_t size, const char *backend,
                           const char *mode, uint32_t tp, uint32_t rev);

/* Element type of the stored K/V; the values of baton.v1.KvDtype. The
 * engine's element type (engine/dtype.h) converts through
 * engine/kv/kv_elem.h, the only mapping between the two. */
typedef enum {
    BT_KV_DTYPE_UNSPECIFIED = 0,
    BT_KV_DTYPE_F32 = 1,
    BT_KV_DTYPE_F16 = 2,
    BT_KV_DTYPE_BF16 = 3,
} bt_kv_dtype_t;

/* The kv-spec name hashed into the root ("f32", "f16", "bf16"); NULL for
 * an unknown id. */
const char *bt_kv_dtype_name(bt_kv_dtype_t dtype);
/* Bytes of one element; 0 for an unknown id (so also the validity test). */
size_t bt_kv_dtype_size(bt_kv_dtype_t dtype);

/* The KV geometry of a pool or a store (baton.v1.KvGeometry). A block is
 * every layer's K and V of block_size tokens. */
typedef struct {
    uint32_t n_layers;
    uint32_t n_kv_heads;
    uint32_t head_dim;
    uint32_t block_size; /* tokens per block (default 16) */
    bt_kv_dtype_t dtype;
} bt_kv_geom_t;

/* Bytes of one block: n_layers * 2 * block_size * n_kv_heads * head_dim *
 * dtype size; 0 when a field is 0, over its limit (each dimension
 * BT_KV_MAX_GEOM_DIM, block_size BT_KV_MAX_BLOCK_TOKENS), the dtype is
 * unknown or the size exceeds BT_KV_MAX_BLOCK_BYTES. */
uint64_t bt_kv_geom_block_bytes(const bt_kv_geom_t *g);
/* BT_OK when `g` is within the limits and `block_bytes` is its block
 * size; else BT_ERR_INVALID_ARG with the reason in `err`. */
bt_status_t bt_kv_geom_check_block(const bt_kv_geom_t *g, uint64_t block_bytes,
                                   char *err, size_t err_size);

#endif
