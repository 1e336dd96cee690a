/* The paged KV pool: region, geometry, block allocation, reservations,
 * export/import (DESIGN §3; docs/internals/kv-pool.md). */
#include "kv_pool_int.h"

#include "base/log.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define BT_KV_HUGE_PAGE ((size_t)2 << 20)

size_t bt_kv_slice_bytes(const bt_kv_geom_t *geom)
{
    /* each factor is bounded by bt_kv_geom_check; u64 cannot overflow */
    return (size_t)2 * geom->block_size * geom->n_kv_heads * geom->head_dim *
           bt_kv_dtype_size(geom->dtype);
}

bt_status_t bt_kv_geom_check(const bt_kv_geom_t *geom)
{
    if (geom->n_layers == 0 || geom->n_kv_heads == 0 ||
        geom->head_dim == 0 || geom->block_size == 0) {
        bt_error("kv pool: zero in geometry layers %u kv heads %u head dim "
                 "%u block size %u", geom->n_layers, geom->n_kv_heads,
                 geom->head_dim, geom->block_size);
        return BT_ERR_INVALID_ARG;
    }
    if (bt_kv_dtype_size(geom->dtype) == 0) {
        bt_error("kv pool: unknown dtype %d", (int)geom->dtype);
        return BT_ERR_INVALID_ARG;
    }
    if (geom->block_size > BT_KV_MAX_BLOCK_TOKENS ||
        geom->n_layers > 65536 || geom->n_kv_heads > 65536 ||
        geom->head_dim > 65536 ||
        (uint64_t)geom->n_kv_heads * geom->head_dim > (1u << 20)) {
        bt_error("kv pool: geometry out of range block size %u layers %u "
                 "kv heads %u head dim %u", geom->block_size, geom->n_layers,
                 geom->n_kv_heads, geom->head_dim);
        return BT_ERR_INVALID_ARG;
    }
    return BT_OK;
}

size_t bt_kv_region_bytes(const bt_kv_geom_t *geom, uint32_t n_blocks)
{
    size_t per_block;

    if (bt_kv_geom_check(geom) != BT_OK) {
        return 0;
    }
    per_block = bt_kv_slice_bytes(geom) * geom->n_layers;
    if (n_blocks != 0 && per_block > SIZE_MAX / n_blocks) {
        return 0;
    }
    return per_block * n_blocks;
}

static uint32_t bt_kv_blocks_for(const bt_kv_geom_t *geom, size_t bytes)
{
    size_t per_block = bt_kv_slice_bytes(geom) * geom->n_layers;
    size_t n = bytes / per_block;

    return n > BT_KV_MAX_BLOCKS ? BT_KV_MAX_BLOCKS : (uint32_t)n;
}

static bt_status_t bt_kvpool_map(bt_kvpool_t *pool)
{
    size_t len = (pool->region_bytes + BT_KV_HUGE_PAGE - 1) &
                 ~(BT_KV_HUGE_PAGE - 1);
    size_t over = len + BT_KV_HUGE_PAGE;
    uint8_t *raw, *aligned;
    size_t head, tail;

    /* over-map, then trim to a 2 MiB aligned range so transparent huge
     * pages can back all of it */
    raw = mmap(NULL, over, PROT_READ | PROT_WRITE,
               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) {
        bt_error("kv pool: mmap of %zu bytes failed: %s", over, bt_strerror(errno));
        return BT_ERR_NO_MEMORY;
    }
    aligned = (uint8_t *)(((uintptr_t)raw + BT_KV_HUGE_PAGE - 1) &
                          ~(uintptr_t)(BT_KV_HUGE_PAGE - 1));
    head = (size_t)(aligned - raw);
    tail = over - head - len;
    if (head > 0) {
        munmap(raw, head);
    }
    if (tail > 0) {
        munmap(aligned + len, tail);
    }
#ifdef MADV_HUGEPAGE
    (void)madvise(aligned, len, MADV_HUGEPAGE); /* a hint; may be off */
#endif
    pool->map = aligned;
    pool->map_len = len;
    pool->base = aligned;
    return BT_OK;
}

bt_status_t bt_kvpool_create(const bt_kvpool_config_t *config,
                             bt_kvpool_t **pool_p)
{
    bt_kvpool_t *pool;
    uint32_t n_blocks = config->n_blocks;
    uint32_t n_buckets = 1;
    bt_status_t st;
    uint32_t i;

    st = bt_kv_geom_check(&config->geom);
    if (st != BT_OK) {
        return st;
    }
    if (n_blocks == 0 && config->budget_bytes > 0) {
        n_blocks = bt_kv_blocks_for(&config->geom, config->budget_bytes);
    } else if (n_blocks == 0 && config->base != NULL) {
        n_blocks = bt_kv_blocks_for(&config->geom, config->base_len);
    }
    if (n_blocks == 0 || n_blocks > BT_KV_MAX_BLOCKS) {
        bt_error("kv pool: %u blocks (size, budget or region too small or "
                 "too large)", n_blocks);
        return BT_ERR_INVALID_ARG;
    }
    pool = calloc(1, sizeof(*pool));
    if (pool == NULL) {
        bt_error("kv pool: out of memory");
        return BT_ERR_NO_MEMORY;
    }
    pool->geom = config->geom;
    pool->n_blocks = n_blocks;
    pool->slice_bytes = bt_kv_slice_bytes(&config->geom);
    pool->region_bytes = bt_kv_region_bytes(&config->geom, n_blocks);
    pool->tier = config->tier ? config->tier : BT_KV_TIER_NODE;
    pool->event_cb = config->event_cb;
    pool->event_ctx = config->event_ctx;
    if (pool->region_bytes == 0) {
        bt_error("kv pool: region size overflows for %u blocks", n_blocks);
        st = BT_ERR_TOO_LARGE;
        goto err_pool;
    }
    if (config->base != NULL) {
        if (config->base_len < pool->region_bytes) {
            bt_error("kv pool: region of %zu bytes is smaller than the %zu "
                     "needed", config->base_len, pool->region_bytes);
            st = BT_ERR_INVALID_ARG;
            goto err_pool;
        }
        pool->base = config->base;
    } else {
        st = bt_kvpool_map(pool);
        if (st != BT_OK) {
            goto err_pool;
        }
    }
    while (n_buckets < n_blocks) {
        n_buckets <<= 1;
    }
    pool->bucket_mask = n_buckets - 1;
    pool->blocks = calloc(n_blocks, sizeof(*pool->blocks));
    pool->tokens = calloc((size_t)n_blocks * config->geom.block_size,
                          sizeof(*pool->tokens));
    pool->free_stack = calloc(n_blocks, sizeof(*pool->free_stack));
    pool->gen = calloc(n_blocks, sizeof(*pool->gen));
    pool->buckets = malloc(n_buckets * sizeof(*pool->buckets));
    if (pool->blocks == NULL || pool->tokens == NULL ||
        pool->free_stack == NULL || pool->gen == NULL ||
        pool->buckets == NULL) {
        bt_error("kv pool: out of memory for metadata of %u blocks",
                 n_blocks);
        st = BT_ERR_NO_MEMORY;
        goto err_meta;
    }
    for (i = 0; i < n_buckets; i++) {
        pool->buckets[i] = BT_KV_NONE;
    }
    for (i = 0; i < n_blocks; i++) {
        bt_kvblock_t *blk = &pool->blocks[i];
        blk->lru_prev = blk->lru_next = blk->hnext = BT_KV_NONE;
        /* popped from the top: a fresh pool hands out 0, 1, 2, ... */
        pool->free_stack[i] = n_blocks - 1 - i;
    }
    pool->n_free = n_blocks;
    pool->lru_head = pool->lru_tail = BT_KV_NONE;
    *pool_p = pool;
    return BT_OK;

err_meta:
    free(pool->buckets);
    free(pool->free_stack);
    free(pool->gen);
    free(pool->tokens);
    free(pool->blocks);
    if (pool->map != NULL) {
        munmap(pool->map, pool->map_len);
    }
err_pool:
    free(pool);
    return st;
}

const uint32_t *bt_kvpool_gens(const bt_kvpool_t *pool)
{
    return pool->gen;
}

void bt_kvpool_destroy(bt_kvpool_t *pool)
{
    if (pool == NULL) {
        return;
    }
    if (pool->map != NULL) {
        munmap(pool->map, pool->map_len);
    }
    free(pool->buckets);
    free(pool->free_stack);
    free(pool->gen);
    free(pool->tokens);
    free(pool->blocks);
    free(pool);
}

void bt_kvpool_set_event_cb(bt_kvpool_t *pool, bt_kv_event_cb cb, void *ctx)
{
    pool->event_cb = cb;
    pool->event_ctx = ctx;
}

const bt_kv_geom_t *bt_kvpool_geom(const bt_kvpool_t *pool)
{
    return &pool->geom;
}

uint32_t bt_kvpool_n_blocks(const bt_kvpool_t *pool)
{
    return pool->n_blocks;
}

void *bt_kvpool_base(const bt_kvpool_t *pool)
{
    return pool->base;
}

size_t bt_kvpool_region_bytes(const bt_kvpool_t *pool)
{
    return pool->region_bytes;
}

size_t bt_kvpool_slice_bytes(const bt_kvpool_t *pool)
{
    return pool->slice_bytes;
}

size_t bt_kvpool_slice_offset(const bt_kvpool_t *pool, uint32_t layer,
                              uint32_t block)
{
    assert(layer < pool->geom.n_layers && block < pool->n_blocks);
    return ((size_t)layer * pool->n_blocks + block) * pool->slice_bytes;
}

size_t bt_kvpool_v_offset(const bt_kvpool_t *pool)
{
    return pool->slice_bytes / 2;
}

void *bt_kvpool_block_ptr(const bt_kvpool_t *pool, uint32_t layer,
                          uint32_t block)
{
    return pool->base + bt_kvpool_slice_offset(pool, layer, block);
}

void *bt_kvpool_token_ptr(const bt_kvpool_t *pool, uint32_t layer,
                          uint32_t block, uint32_t slot, bool is_v)
{
    size_t row = (size_t)pool->geom.n_kv_heads * pool->geom.head_dim *
                 bt_kv_dtype_size(pool->geom.dtype);

    assert(slot < pool->geom.block_size);
    return pool->base + bt_kvpool_slice_offset(pool, layer, block) +
           (is_v ? pool->slice_bytes / 2 : 0) + slot * row;
}

void bt_kvpool_stats(const bt_kvpool_t *pool, bt_kvpool_stats_t *stats_p)
{
    memset(stats_p, 0, sizeof(*stats_p));
    stats_p->total = pool->n_blocks;
    stats_p->free = pool->n_free;
    stats_p->cached = pool->n_cached;
    stats_p->used = pool->n_blocks - pool->n_free - pool->n_cached;
    stats_p->reserved = pool->n_reserved;
    stats_p->hits = pool->hits;
    stats_p->misses = pool->misses;
    stats_p->rejected = pool->rejected;
    stats_p->evictions = pool->evictions;
}

uint32_t bt_kvpool_refcount(const bt_kvpool_t *pool, uint32_t block)
{
    return block < pool->n_blocks ? pool->blocks[block].refcount : 0;
}

uint32_t bt_kvpool_available(const bt_kvpool_t *pool)
{
    return pool->n_free + pool->n_cached;
}

uint32_t bt_kvpool_block_alloc(bt_kvpool_t *pool)
{
    uint32_t b;

    if (pool->n_free > 0) {
        b = pool->free_stack[--pool->n_free];
    } else {
        /* the caller checked availability: the LRU is not empty */
        assert(pool->lru_head != BT_KV_NONE);
        b = (uint32_t)pool->lru_head;
        bt_kvlru_unlink(pool, b);
        bt_kvindex_remove(pool, b, true);
        pool->evictions++;
    }
    pool->blocks[b].state = BT_KVBLOCK_USED;
    pool->blocks[b].refcount = 1;
    pool->gen[b]++;
    return b;
}

void bt_kvpool_block_ref(bt_kvpool_t *pool, uint32_t block)
{
    bt_kvblock_t *blk = &pool->blocks[block];

    if (blk->state == BT_KVBLOCK_CACHED) {
        bt_kvlru_unlink(pool, block);
        blk->state = BT_KVBLOCK_USED;
    }
    assert(blk->state == BT_KVBLOCK_USED);
    blk->refcount++;
}

void bt_kvpool_block_unref(bt_kvpool_t *pool, uint32_t block)
{
    bt_kvblock_t *blk = &pool->blocks[block];

    assert(blk->state == BT_KVBLOCK_USED && blk->refcount > 0);
    if (--blk->refcount > 0) {
        return;
    }
    if (blk->indexed) {
        blk->state = BT_KVBLOCK_CACHED;
        bt_kvlru_push_tail(pool, block);
    } else {
        blk->state = BT_KVBLOCK_FREE;
        pool->free_stack[pool->n_free++] = block;
    }
}

bt_status_t bt_kvpool_reserve(bt_kvpool_t *pool, uint32_t n, uint32_t *ids_p)
{
    uint32_t i;

    if (n > bt_kvpool_available(pool)) {
        bt_debug("kv pool: reservation of %u blocks refused, %u available",
                 n, bt_kvpool_available(pool));
        return BT_ERR_EXHAUSTED;
    }
    for (i = 0; i < n; i++) {
        ids_p[i] = bt_kvpool_block_alloc(pool);
        pool->blocks[ids_p[i]].reserved = 1;
    }
    pool->n_reserved += n;
    return BT_OK;
}

void bt_kvpool_reserve_abort(bt_kvpool_t *pool, const uint32_t *ids,
                             uint32_t n)
{
    uint32_t i;

    /* in reverse, so the free list hands the same ids out again in order */
    for (i = n; i-- > 0;) {
        if (ids[i] >= pool->n_blocks || !pool->blocks[ids[i]].reserved) {
            bt_error("kv pool: abort of block %u that is not reserved",
                     ids[i]);
            continue;
        }
        pool->blocks[ids[i]].reserved = 0;
        pool->n_reserved--;
        bt_kvpool_block_unref(pool, ids[i]);
    }
}

bt_status_t bt_kv_runs(const uint32_t *ids, uint32_t n, bt_kv_run_t *runs_p,
                       uint32_t max_runs, uint32_t *n_runs_p)
{
    uint32_t n_runs = 0;
    uint32_t i;

    for (i = 0; i < n; i++) {
        if (n_runs > 0 && ids[i] ==
            runs_p[n_runs - 1].first + runs_p[n_runs - 1].count) {
            runs_p[n_runs - 1].count++;
            continue;
        }
        if (n_runs == max_runs) {
            return BT_ERR_TOO_LARGE;
        }
        runs_p[n_runs].index = i;
        runs_p[n_runs].first = ids[i];
        runs_p[n_runs].count = 1;
        n_runs++;
    }
    *n_runs_p = n_runs;
    return BT_OK;
}

size_t bt_kvpool_export_bytes(const bt_kvpool_t *pool, uint32_t n_blocks)
{
    return (size_t)pool->geom.n_layers * n_blocks * pool->slice_bytes;
}

static bt_status_t bt_kvpool_io_check(const bt_kvpool_t *pool,
                                      const uint32_t *ids, uint32_t n,
                                      size_t len, const char *what)
{
    uint32_t i;

    if (len < bt_kvpool_export_bytes(pool, n)) {
        bt_error("kv %s: buffer of %zu bytes, %zu needed", what, len,
                 bt_kvpool_export_bytes(pool, n));
        return BT_ERR_INVALID_ARG;
    }
    for (i = 0; i < n; i++) {
        if (ids[i] >= pool->n_blocks) {
            bt_error("kv %s: block %u out of range (%u blocks)", what,
                     ids[i], pool->n_blocks);
            return BT_ERR_INVALID_ARG;
        }
    }
    return BT_OK;
}

bt_status_t bt_kvpool_export(const bt_kvpool_t *pool, const uint32_t *ids,
                             uint32_t n, void *dst, size_t dst_len)
{
    uint8_t *out = dst;
    bt_status_t st = bt_kvpool_io_check(pool, ids, n, dst_len, "export");
    uint32_t l, i;

    if (st != BT_OK) {
        return st;
    }
    for (l = 0; l < pool->geom.n_layers; l++) {
        for (i = 0; i < n; i++) {
            memcpy(out, bt_kvpool_block_ptr(pool, l, ids[i]),
                   pool->slice_bytes);
            out += pool->slice_bytes;
        }
    }
    return BT_OK;
}

bt_status_t bt_kvpool_import(bt_kvpool_t *pool, const uint32_t *ids,
                             uint32_t n, const void *src, size_t src_len)
{
    const uint8_t *in = src;
    bt_status_t st = bt_kvpool_io_check(pool, ids, n, src_len, "import");
    uint32_t l, i;

    if (st != BT_OK) {
        return st;
    }
    for (l = 0; l < pool->geom.n_layers; l++) {
        for (i = 0; i < n; i++) {
            memcpy(bt_kvpool_block_ptr(pool, l, ids[i]), in,
                   pool->slice_bytes);
            in += pool->slice_bytes;
        }
    }
    return BT_OK;
}
