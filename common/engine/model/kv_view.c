/* The forward pass's view of the KV pool (engine/kv/kv_pool.h): both use
 * [layer][block][k|v][block_size][n_kv_heads][head_dim]. */
#include "backend.h"
#include "engine/kv/kv_pool.h"

#include "base/log.h"

bt_status_t bt_kv_view_from_pool(const bt_kvpool_t *pool,
                                 bt_kv_view_t *view_p)
{
    const bt_kv_geom_t *g = bt_kvpool_geom(pool);

    if (bt_kvpool_n_blocks(pool) > (uint32_t)INT32_MAX ||
        g->block_size > BT_KV_MAX_BLOCK_TOKENS ||
        !bt_kv_dtype_elem(g->dtype, &view_p->dtype)) {
        bt_error("kv view: pool geometry out of range");
        return BT_ERR_INVALID_ARG;
    }
    view_p->base = bt_kvpool_base(pool);
    view_p->n_layers = (int)g->n_layers;
    view_p->n_blocks = (int)bt_kvpool_n_blocks(pool);
    view_p->block_size = (int)g->block_size;
    view_p->n_kv_heads = (int)g->n_kv_heads;
    view_p->head_dim = (int)g->head_dim;
    view_p->gen = bt_kvpool_gens(pool);
    return BT_OK;
}
