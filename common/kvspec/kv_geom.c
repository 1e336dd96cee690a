/* KV dtype ids and block geometry of kv-spec v2 (kv_spec.h). */
#include "kv_spec.h"

#include <stdio.h>

/* The names are part of kv-spec v2 (hashed into every root), fixed here
 * rather than borrowed from another module's spelling. */
const char *bt_kv_dtype_name(bt_kv_dtype_t dtype)
{
    switch (dtype) {
    case BT_KV_DTYPE_F32:  return "f32";
    case BT_KV_DTYPE_F16:  return "f16";
    case BT_KV_DTYPE_BF16: return "bf16";
    case BT_KV_DTYPE_UNSPECIFIED: break;
    }
    return NULL;
}

size_t bt_kv_dtype_size(bt_kv_dtype_t dtype)
{
    switch (dtype) {
    case BT_KV_DTYPE_F32:  return 4;
    case BT_KV_DTYPE_F16:  return 2;
    case BT_KV_DTYPE_BF16: return 2;
    case BT_KV_DTYPE_UNSPECIFIED: break;
    }
    return 0;
}

uint64_t bt_kv_geom_block_bytes(const bt_kv_geom_t *g)
{
    uint64_t esz = bt_kv_dtype_size(g->dtype), b;

    if (esz == 0 || g->n_layers == 0 || g->n_layers > BT_KV_MAX_GEOM_DIM ||
        g->n_kv_heads == 0 || g->n_kv_heads > BT_KV_MAX_GEOM_DIM ||
        g->head_dim == 0 || g->head_dim > BT_KV_MAX_GEOM_DIM ||
        g->block_size == 0 || g->block_size > BT_KV_MAX_BLOCK_TOKENS) {
        return 0;
    }
    /* each factor is < 2^13, so the product stays far below 2^64 */
    b = (uint64_t)g->n_layers * 2 * g->block_size * g->n_kv_heads *
        g->head_dim * esz;
    return b > BT_KV_MAX_BLOCK_BYTES ? 0 : b;
}

bt_status_t bt_kv_geom_check_block(const bt_kv_geom_t *g, uint64_t block_bytes,
                                   char *err, size_t err_size)
{
    uint64_t want = bt_kv_geom_block_bytes(g);

    if (want == 0) {
        snprintf(err, err_size, "insane kv geometry: n_layers %u n_kv_heads %u "
                 "head_dim %u block_size %u dtype %u (each 1..4096, block_size "
                 "<= %u, dtype f32|f16|bf16, block <= 1 GiB)", g->n_layers,
                 g->n_kv_heads, g->head_dim, g->block_size, (unsigned)g->dtype,
                 BT_KV_MAX_BLOCK_TOKENS);
        return BT_ERR_INVALID_ARG;
    }
    if (block_bytes != want) {
        snprintf(err, err_size, "block_bytes %llu does not match the geometry "
                 "(%llu bytes per block)", (unsigned long long)block_bytes,
                 (unsigned long long)want);
        return BT_ERR_INVALID_ARG;
    }
    return BT_OK;
}
