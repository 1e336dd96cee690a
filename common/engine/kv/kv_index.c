/* Hash index and LRU of the tier-1 prefix cache (DESIGN §5), and the KV
 * events they emit (kv-spec v2). */
#include "kv_pool_int.h"

#include <string.h>

static uint32_t bt_kvindex_bucket(const bt_kvpool_t *pool,
                                  const uint8_t hash[BT_KV_HASH_LEN])
{
    uint32_t h;

    /* SHA-256 output is uniform: its first bytes are a fine bucket key. */
    memcpy(&h, hash, sizeof(h));
    return h & pool->bucket_mask;
}

int32_t bt_kvindex_find(const bt_kvpool_t *pool,
                        const uint8_t hash[BT_KV_HASH_LEN])
{
    int32_t b = pool->buckets[bt_kvindex_bucket(pool, hash)];

    while (b != BT_KV_NONE) {
        if (memcmp(pool->blocks[b].hash, hash, BT_KV_HASH_LEN) == 0) {
            return b;
        }
        b = pool->blocks[b].hnext;
    }
    return BT_KV_NONE;
}

void bt_kvpool_emit(bt_kvpool_t *pool, bt_kv_event_type_t type,
                    uint32_t block)
{
    bt_kv_event_t ev;

    if (pool->event_cb == NULL) {
        return;
    }
    memset(&ev, 0, sizeof(ev));
    ev.type = type;
    ev.tier = pool->tier;
    if (type != BT_KV_EVENT_CLEARED) {
        ev.hash = pool->blocks[block].hash;
        ev.parent_hash = pool->blocks[block].parent;
        ev.tokens = bt_kvpool_block_tokens(pool, block);
        ev.n_tokens = pool->geom.block_size;
        ev.block_id = block;
    }
    pool->event_cb(&ev, pool->event_ctx);
}

bool bt_kvindex_insert(bt_kvpool_t *pool, uint32_t block,
                       const uint8_t hash[BT_KV_HASH_LEN],
                       const uint8_t parent[BT_KV_HASH_LEN])
{
    bt_kvblock_t *blk = &pool->blocks[block];
    uint32_t bucket;

    if (blk->indexed || bt_kvindex_find(pool, hash) != BT_KV_NONE) {
        return false;
    }
    bucket = bt_kvindex_bucket(pool, hash);
    memcpy(blk->hash, hash, BT_KV_HASH_LEN);
    memcpy(blk->parent, parent, BT_KV_HASH_LEN);
    blk->indexed = 1;
    blk->hnext = pool->buckets[bucket];
    pool->buckets[bucket] = (int32_t)block;
    bt_kvpool_emit(pool, BT_KV_EVENT_STORED, block);
    return true;
}

void bt_kvindex_remove(bt_kvpool_t *pool, uint32_t block, bool emit)
{
    bt_kvblock_t *blk = &pool->blocks[block];
    int32_t *link;

    if (!blk->indexed) {
        return;
    }
    link = &pool->buckets[bt_kvindex_bucket(pool, blk->hash)];
    while (*link != (int32_t)block) {
        link = &pool->blocks[*link].hnext;
    }
    *link = blk->hnext;
    blk->hnext = BT_KV_NONE;
    blk->indexed = 0;
    if (emit) {
        bt_kvpool_emit(pool, BT_KV_EVENT_REMOVED, block);
    }
}

void bt_kvlru_push_tail(bt_kvpool_t *pool, uint32_t block)
{
    bt_kvblock_t *blk = &pool->blocks[block];

    blk->lru_next = BT_KV_NONE;
    blk->lru_prev = pool->lru_tail;
    if (pool->lru_tail != BT_KV_NONE) {
        pool->blocks[pool->lru_tail].lru_next = (int32_t)block;
    } else {
        pool->lru_head = (int32_t)block;
    }
    pool->lru_tail = (int32_t)block;
    pool->n_cached++;
}

void bt_kvlru_unlink(bt_kvpool_t *pool, uint32_t block)
{
    bt_kvblock_t *blk = &pool->blocks[block];

    if (blk->lru_prev != BT_KV_NONE) {
        pool->blocks[blk->lru_prev].lru_next = blk->lru_next;
    } else {
        pool->lru_head = blk->lru_next;
    }
    if (blk->lru_next != BT_KV_NONE) {
        pool->blocks[blk->lru_next].lru_prev = blk->lru_prev;
    } else {
        pool->lru_tail = blk->lru_prev;
    }
    blk->lru_prev = blk->lru_next = BT_KV_NONE;
    pool->n_cached--;
}

size_t bt_kvpool_lookup(const bt_kvpool_t *pool,
                        const uint8_t (*hashes)[BT_KV_HASH_LEN],
                        size_t n_hashes, const uint32_t *tokens)
{
    size_t bs = pool->geom.block_size;
    size_t i;

    for (i = 0; i < n_hashes; i++) {
        int32_t b = bt_kvindex_find(pool, hashes[i]);
        if (b == BT_KV_NONE ||
            memcmp(bt_kvpool_block_tokens(pool, (uint32_t)b), tokens + i * bs,
                   bs * sizeof(uint32_t)) != 0) {
            break;
        }
    }
    return i;
}

void bt_kvpool_clear_cache(bt_kvpool_t *pool)
{
    uint32_t b;

    for (b = 0; b < pool->n_blocks; b++) {
        bt_kvblock_t *blk = &pool->blocks[b];
        if (!blk->indexed) {
            continue;
        }
        bt_kvindex_remove(pool, b, false);
        if (blk->state == BT_KVBLOCK_CACHED) {
            bt_kvlru_unlink(pool, b);
            blk->state = BT_KVBLOCK_FREE;
            pool->free_stack[pool->n_free++] = b;
        }
    }
    bt_kvpool_emit(pool, BT_KV_EVENT_CLEARED, 0);
}

void bt_kvpool_foreach_indexed(const bt_kvpool_t *pool, bt_kv_event_cb cb,
                               void *ctx)
{
    bt_kv_event_t ev;

    for (uint32_t b = 0; b < pool->n_blocks; b++) {
        const bt_kvblock_t *blk = &pool->blocks[b];

        if (!blk->indexed) {
            continue;
        }
        memset(&ev, 0, sizeof(ev));
        ev.type = BT_KV_EVENT_STORED;
        ev.tier = pool->tier;
        ev.hash = blk->hash;
        ev.parent_hash = blk->parent;
        ev.tokens = bt_kvpool_block_tokens(pool, b);
        ev.n_tokens = pool->geom.block_size;
        ev.block_id = b;
        cb(&ev, ctx);
    }
}
