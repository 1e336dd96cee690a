/* Internals of the KV pool shared by kv_pool.c, kv_index.c and kv_seq.c. */
#ifndef BT_KV_POOL_INT_H
#define BT_KV_POOL_INT_H

#include "kv_pool.h"

#define BT_KV_NONE (-1)

typedef enum {
    BT_KVBLOCK_FREE = 0,
    BT_KVBLOCK_USED,
    BT_KVBLOCK_CACHED,
} bt_kvblock_state_t;

/* Per-block metadata; token ids live in pool->tokens. */
typedef struct {
    uint32_t refcount;
    uint8_t state;      /* bt_kvblock_state_t */
    uint8_t indexed;    /* in the hash index: hash and parent are valid */
    uint8_t reserved;   /* held by a reservation not yet committed */
    int32_t lru_prev;   /* LRU links while CACHED */
    int32_t lru_next;
    int32_t hnext;      /* next block in the same hash bucket */
    uint8_t hash[BT_KV_HASH_LEN];
    uint8_t parent[BT_KV_HASH_LEN];
} bt_kvblock_t;

struct bt_kvpool {
    bt_kv_geom_t geom;
    uint32_t n_blocks;
    size_t slice_bytes;
    size_t region_bytes;
    uint8_t *base;
    void *map;          /* our own mapping, or NULL for a caller region */
    size_t map_len;

    bt_kvblock_t *blocks;
    uint32_t *tokens;   /* n_blocks * block_size token ids */

    uint32_t *free_stack; /* top is free_stack[n_free - 1] */
    /* per block, raised each time the block is handed out: a device copy
     * of the pool knows its copy of a block is stale when this moved */
    uint32_t *gen;
    uint32_t n_free;

    int32_t lru_head;   /* least recently used cached block */
    int32_t lru_tail;
    uint32_t n_cached;

    int32_t *buckets;   /* hash index: n_buckets chains through hnext */
    uint32_t bucket_mask;

    uint32_t n_reserved;
    uint64_t hits, misses, rejected, evictions;

    uint32_t tier;
    bt_kv_event_cb event_cb;
    void *event_ctx;
};

static inline uint32_t *bt_kvpool_block_tokens(const bt_kvpool_t *pool,
                                               uint32_t block)
{
    return pool->tokens + (size_t)block * pool->geom.block_size;
}

/* Allocation: callers first check bt_kvpool_available() >= n, so these
 * cannot fail. */
uint32_t bt_kvpool_block_alloc(bt_kvpool_t *pool);
void bt_kvpool_block_ref(bt_kvpool_t *pool, uint32_t block);
void bt_kvpool_block_unref(bt_kvpool_t *pool, uint32_t block);

/* Hash index (kv_index.c). */
int32_t bt_kvindex_find(const bt_kvpool_t *pool,
                        const uint8_t hash[BT_KV_HASH_LEN]);
/* Indexes `block` under hash/parent unless the hash is already indexed;
 * emits STORED when it does. Returns true when indexed. */
bool bt_kvindex_insert(bt_kvpool_t *pool, uint32_t block,
                       const uint8_t hash[BT_KV_HASH_LEN],
                       const uint8_t parent[BT_KV_HASH_LEN]);
/* Unindexes; emits REMOVED when `emit`. */
void bt_kvindex_remove(bt_kvpool_t *pool, uint32_t block, bool emit);
void bt_kvpool_emit(bt_kvpool_t *pool, bt_kv_event_type_t type,
                    uint32_t block);

/* LRU of cached blocks. */
void bt_kvlru_push_tail(bt_kvpool_t *pool, uint32_t block);
void bt_kvlru_unlink(bt_kvpool_t *pool, uint32_t block);

#endif
