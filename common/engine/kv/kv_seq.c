/* Per-sequence block tables over the KV pool: append, computed marks and
 * hashing, prefix matching, commit of reserved blocks, truncation, forks
 * (blocks shared by reference, the last partial one copied on write). */
#include "kv_pool_int.h"

#include "base/array.h"
#include "base/log.h"

#include <stdlib.h>
#include <string.h>

struct bt_kvseq {
    bt_kvpool_t *pool;
    uint8_t root[BT_KV_HASH_LEN];
    /* Two arrays of n_blocks, not one of structs: the block table is
     * handed to the forward pass as it is (bt_kvseq_blocks). */
    uint32_t *blocks;                 /* block table */
    uint8_t (*hashes)[BT_KV_HASH_LEN]; /* hash of full computed block i */
    uint32_t n_blocks;
    size_t   cap_blocks, cap_hashes;
    uint32_t n_tokens;
    uint32_t n_computed;
    uint32_t n_hashed;                /* leading full blocks hashed */
};

bt_status_t bt_kvseq_create(bt_kvpool_t *pool,
                            const uint8_t root[BT_KV_HASH_LEN],
                            bt_kvseq_t **seq_p)
{
    bt_kvseq_t *seq = calloc(1, sizeof(*seq));

    if (seq == NULL) {
        bt_error("kv seq: out of memory");
        return BT_ERR_NO_MEMORY;
    }
    seq->pool = pool;
    memcpy(seq->root, root, BT_KV_HASH_LEN);
    *seq_p = seq;
    return BT_OK;
}

static void bt_kvseq_release_from(bt_kvseq_t *seq, uint32_t keep)
{
    /* last block first: the LRU then evicts a sequence's tail before its
     * prefix, which more requests share */
    while (seq->n_blocks > keep) {
        bt_kvpool_block_unref(seq->pool, seq->blocks[--seq->n_blocks]);
    }
}

void bt_kvseq_destroy(bt_kvseq_t *seq)
{
    if (seq == NULL) {
        return;
    }
    bt_kvseq_release_from(seq, 0);
    free(seq->blocks);
    free(seq->hashes);
    free(seq);
}

uint32_t bt_kvseq_n_tokens(const bt_kvseq_t *seq)
{
    return seq->n_tokens;
}

uint32_t bt_kvseq_n_computed(const bt_kvseq_t *seq)
{
    return seq->n_computed;
}

uint32_t bt_kvseq_n_blocks(const bt_kvseq_t *seq)
{
    return seq->n_blocks;
}

const uint32_t *bt_kvseq_blocks(const bt_kvseq_t *seq)
{
    return seq->blocks;
}

const uint8_t *bt_kvseq_block_hash(const bt_kvseq_t *seq, uint32_t i)
{
    return i < seq->n_hashed ? seq->hashes[i] : NULL;
}

const uint8_t *bt_kvseq_parent_hash(const bt_kvseq_t *seq, uint32_t i)
{
    return i == 0 ? seq->root : bt_kvseq_block_hash(seq, i - 1);
}

/* Grows the table to hold `need` blocks; nothing else changes. */
static bt_status_t bt_kvseq_reserve_table(bt_kvseq_t *seq, uint32_t need)
{
    /* the block table may grow alone: harmless, each keeps its capacity */
    if (BT_ARRAY_RESERVE(seq->blocks, seq->cap_blocks, need, 8) != BT_OK ||
        BT_ARRAY_RESERVE(seq->hashes, seq->cap_hashes, need, 8) != BT_OK) {
        bt_error("kv seq: out of memory for a table of %u blocks", need);
        return BT_ERR_NO_MEMORY;
    }
    return BT_OK;
}

/* The last block is partial and someone else sees it (a fork shares it,
 * or it is indexed under an older full content): writing into it needs a
 * private copy first. */
static bool bt_kvseq_last_shared(const bt_kvseq_t *seq)
{
    const bt_kvpool_t *pool = seq->pool;
    uint32_t last;

    if (seq->n_tokens % pool->geom.block_size == 0 || seq->n_blocks == 0) {
        return false;
    }
    last = seq->blocks[(seq->n_tokens - 1) / pool->geom.block_size];
    return pool->blocks[last].refcount > 1 || pool->blocks[last].indexed;
}

/* Copy on write of the partial block holding position n_tokens - 1: a
 * fresh block gets its K/V of every layer and its token ids, and the
 * sequence's reference moves to it. BT_ERR_EXHAUSTED: no block, no
 * change. */
static bt_status_t bt_kvseq_copy_last(bt_kvseq_t *seq)
{
    bt_kvpool_t *pool = seq->pool;
    uint32_t bs = pool->geom.block_size;
    uint32_t i = (seq->n_tokens - 1) / bs;
    uint32_t last = seq->blocks[i], fresh, l;

    if (bt_kvpool_available(pool) == 0) {
        return BT_ERR_EXHAUSTED;
    }
    fresh = bt_kvpool_block_alloc(pool);
    for (l = 0; l < pool->geom.n_layers; l++) {
        memcpy(bt_kvpool_block_ptr(pool, l, fresh),
               bt_kvpool_block_ptr(pool, l, last), pool->slice_bytes);
    }
    memcpy(bt_kvpool_block_tokens(pool, fresh),
           bt_kvpool_block_tokens(pool, last), bs * sizeof(uint32_t));
    seq->blocks[i] = fresh;
    bt_kvpool_block_unref(pool, last);
    return BT_OK;
}

uint32_t bt_kvseq_blocks_needed(const bt_kvseq_t *seq, uint32_t n)
{
    uint64_t bs = seq->pool->geom.block_size;
    uint64_t total = ((uint64_t)seq->n_tokens + n + bs - 1) / bs;
    uint32_t cow = n > 0 && bt_kvseq_last_shared(seq) ? 1 : 0;

    return (total > seq->n_blocks ? (uint32_t)(total - seq->n_blocks) : 0) + cow;
}

bt_status_t bt_kvseq_append(bt_kvseq_t *seq, const uint32_t *tokens,
                            uint32_t n)
{
    bt_kvpool_t *pool = seq->pool;
    uint32_t bs = pool->geom.block_size;
    uint32_t need = bt_kvseq_blocks_needed(seq, n);
    bt_status_t st;
    uint32_t i;

    if ((uint64_t)seq->n_tokens + n > (uint64_t)pool->n_blocks * bs) {
        bt_debug("kv seq: %u + %u tokens exceed the pool", seq->n_tokens, n);
        return BT_ERR_EXHAUSTED;
    }
    if (need > bt_kvpool_available(pool)) {
        return BT_ERR_EXHAUSTED;
    }
    st = bt_kvseq_reserve_table(seq, seq->n_blocks + need);
    if (st != BT_OK) {
        return st;
    }
    /* a shared partial last block is copied before its free slots are
     * written (cannot fail: `need` counted it) */
    if (n > 0 && bt_kvseq_last_shared(seq)) {
        (void)bt_kvseq_copy_last(seq);
        need--;
    }
    for (i = 0; i < need; i++) {
        seq->blocks[seq->n_blocks++] = bt_kvpool_block_alloc(pool);
    }
    for (i = 0; i < n; i++) {
        uint32_t p = seq->n_tokens + i;
        bt_kvpool_block_tokens(pool, seq->blocks[p / bs])[p % bs] = tokens[i];
    }
    seq->n_tokens += n;
    return BT_OK;
}

/* Hashes and indexes the full computed blocks not yet hashed. */
static bt_status_t bt_kvseq_hash_full(bt_kvseq_t *seq)
{
    bt_kvpool_t *pool = seq->pool;
    uint32_t bs = pool->geom.block_size;
    uint32_t full = seq->n_computed / bs;

    while (seq->n_hashed < full) {
        uint32_t i = seq->n_hashed;
        uint32_t b = seq->blocks[i];
        const uint8_t *parent = i == 0 ? seq->root : seq->hashes[i - 1];
        bt_status_t st = bt_kv_hash_block(parent,
                                          bt_kvpool_block_tokens(pool, b), bs,
                                          seq->hashes[i]);
        if (st != BT_OK) {
            return st;
        }
        /* a block matched from the cache is indexed already */
        if (!pool->blocks[b].indexed) {
            (void)bt_kvindex_insert(pool, b, seq->hashes[i], parent);
        }
        seq->n_hashed++;
    }
    return BT_OK;
}

bt_status_t bt_kvseq_set_computed(bt_kvseq_t *seq, uint32_t n_computed)
{
    if (n_computed > seq->n_tokens || n_computed < seq->n_computed) {
        bt_error("kv seq: computed %u outside [%u, %u]", n_computed,
                 seq->n_computed, seq->n_tokens);
        return BT_ERR_INVALID_ARG;
    }
    seq->n_computed = n_computed;
    return bt_kvseq_hash_full(seq);
}

bt_status_t bt_kvseq_match_prefix(bt_kvseq_t *seq, const uint32_t *tokens,
                                  uint32_t n_tokens,
                                  const uint8_t (*hashes)[BT_KV_HASH_LEN],
                                  uint32_t *n_matched_p)
{
    bt_kvpool_t *pool = seq->pool;
    uint32_t bs = pool->geom.block_size;
    uint32_t n_full = n_tokens / bs;
    uint8_t (*own)[BT_KV_HASH_LEN] = NULL;
    uint32_t matched = 0;
    bool rejected = false;
    bt_status_t st;
    uint32_t i;

    if (seq->n_blocks != 0 || seq->n_tokens != 0) {
        bt_error("kv seq: prefix match on a sequence that is not empty");
        return BT_ERR_INVALID_ARG;
    }
    if (n_full == 0) {
        *n_matched_p = 0;
        return BT_OK;
    }
    st = bt_kvseq_reserve_table(seq, n_full);
    if (st != BT_OK) {
        return st;
    }
    if (hashes == NULL) {
        size_t n_hashes;
        own = malloc((size_t)n_full * sizeof(*own));
        if (own == NULL) {
            bt_error("kv seq: out of memory hashing %u blocks", n_full);
            return BT_ERR_NO_MEMORY;
        }
        st = bt_kv_hash_chain(seq->root, bs, tokens, n_tokens, own, n_full,
                              &n_hashes);
        if (st != BT_OK) {
            free(own);
            return st;
        }
        hashes = (const uint8_t (*)[BT_KV_HASH_LEN])own;
    }
    for (i = 0; i < n_full; i++) {
        int32_t b = bt_kvindex_find(pool, hashes[i]);
        if (b == BT_KV_NONE) {
            break;
        }
        /* a hash hit is trusted only if the tokens agree (DESIGN §3) */
        if (memcmp(bt_kvpool_block_tokens(pool, (uint32_t)b),
                   tokens + (size_t)i * bs, bs * sizeof(uint32_t)) != 0) {
            rejected = true;
            break;
        }
        bt_kvpool_block_ref(pool, (uint32_t)b);
        seq->blocks[i] = (uint32_t)b;
        memcpy(seq->hashes[i], hashes[i], BT_KV_HASH_LEN);
        matched++;
    }
    free(own);
    seq->n_blocks = matched;
    seq->n_hashed = matched;
    seq->n_tokens = seq->n_computed = matched * bs;
    pool->hits += matched;
    pool->misses += n_full - matched;
    pool->rejected += rejected;
    *n_matched_p = matched;
    return BT_OK;
}

bt_status_t bt_kvseq_commit_reserved(bt_kvseq_t *seq, const uint32_t *ids,
                                     uint32_t n_ids, const uint32_t *tokens,
                                     uint32_t n_tokens)
{
    bt_kvpool_t *pool = seq->pool;
    uint32_t bs = pool->geom.block_size;
    bt_status_t st;
    uint32_t i;

    if (seq->n_tokens % bs != 0 || seq->n_computed != seq->n_tokens) {
        bt_error("kv seq: commit onto an unaligned or uncomputed sequence "
                 "(%u tokens, %u computed)", seq->n_tokens, seq->n_computed);
        return BT_ERR_INVALID_ARG;
    }
    if (n_ids == 0 || n_tokens > (uint64_t)n_ids * bs ||
        n_tokens <= (uint64_t)(n_ids - 1) * bs) {
        bt_error("kv seq: %u tokens do not fill %u blocks", n_tokens, n_ids);
        return BT_ERR_INVALID_ARG;
    }
    for (i = 0; i < n_ids; i++) {
        if (ids[i] >= pool->n_blocks || !pool->blocks[ids[i]].reserved) {
            bt_error("kv seq: commit of block %u that is not reserved",
                     ids[i]);
            return BT_ERR_INVALID_ARG;
        }
    }
    st = bt_kvseq_reserve_table(seq, seq->n_blocks + n_ids);
    if (st != BT_OK) {
        return st;
    }
    for (i = 0; i < n_ids; i++) {
        pool->blocks[ids[i]].reserved = 0;
        seq->blocks[seq->n_blocks++] = ids[i];
    }
    pool->n_reserved -= n_ids;
    for (i = 0; i < n_tokens; i++) {
        bt_kvpool_block_tokens(pool, ids[i / bs])[i % bs] = tokens[i];
    }
    seq->n_tokens += n_tokens;
    seq->n_computed = seq->n_tokens;
    return bt_kvseq_hash_full(seq);
}

bt_status_t bt_kvseq_truncate(bt_kvseq_t *seq, uint32_t n_tokens)
{
    bt_kvpool_t *pool = seq->pool;
    uint32_t bs = pool->geom.block_size;
    uint32_t keep = (n_tokens + bs - 1) / bs;
    uint32_t was = seq->n_tokens;

    if (n_tokens > seq->n_tokens) {
        bt_error("kv seq: truncate to %u beyond %u tokens", n_tokens,
                 seq->n_tokens);
        return BT_ERR_INVALID_ARG;
    }
    /* a partial last block will be written again: if anyone else can see
     * it (shared, or indexed under the old full content), copy it first */
    seq->n_tokens = n_tokens;
    if (bt_kvseq_last_shared(seq) && bt_kvseq_copy_last(seq) != BT_OK) {
        seq->n_tokens = was;
        return BT_ERR_EXHAUSTED;
    }
    bt_kvseq_release_from(seq, keep);
    if (seq->n_computed > n_tokens) {
        seq->n_computed = n_tokens;
    }
    if (seq->n_hashed > n_tokens / bs) {
        seq->n_hashed = n_tokens / bs;
    }
    return BT_OK;
}

bt_status_t bt_kvseq_fork(const bt_kvseq_t *src, uint32_t n_tokens,
                          bt_kvseq_t **seq_p)
{
    bt_kvpool_t *pool = src->pool;
    uint32_t bs = pool->geom.block_size;
    uint32_t n_blocks = (n_tokens + bs - 1) / bs;
    bt_kvseq_t *seq;
    bt_status_t st;
    uint32_t i;

    if (n_tokens > src->n_computed) {
        bt_error("kv seq: fork of %u tokens, %u computed", n_tokens,
                 src->n_computed);
        return BT_ERR_INVALID_ARG;
    }
    st = bt_kvseq_create(pool, src->root, &seq);
    if (st != BT_OK) {
        return st;
    }
    if (n_blocks > 0 && bt_kvseq_reserve_table(seq, n_blocks) != BT_OK) {
        bt_kvseq_destroy(seq);
        return BT_ERR_NO_MEMORY;
    }
    /* every block by reference, the partial last one too: it is copied
     * when either side writes into it (bt_kvseq_append) */
    for (i = 0; i < n_blocks; i++) {
        bt_kvpool_block_ref(pool, src->blocks[i]);
        seq->blocks[i] = src->blocks[i];
    }
    seq->n_blocks = n_blocks;
    seq->n_hashed = src->n_hashed < n_tokens / bs ? src->n_hashed : n_tokens / bs;
    if (seq->n_hashed > 0) {
        memcpy(seq->hashes, src->hashes, (size_t)seq->n_hashed * BT_KV_HASH_LEN);
    }
    seq->n_tokens = seq->n_computed = n_tokens;
    *seq_p = seq;
    return BT_OK;
}
