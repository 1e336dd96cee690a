/* KV pool behaviour: refcounts and copy-free sharing, all-or-nothing
 * allocation, reservations, the LRU prefix cache, events, token checks on
 * hash hits, truncation, export/import. */
#include "engine/kv/kv_pool.h"

#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#define BS 4

typedef struct {
    int n;
    bt_kv_event_type_t type[64];
    uint8_t hash[64][BT_KV_HASH_LEN];
    uint8_t parent[64][BT_KV_HASH_LEN];
    uint32_t tokens[64][BS];
} events_t;

static events_t ev;
static uint8_t root[BT_KV_HASH_LEN];

static void on_event(const bt_kv_event_t *e, void *ctx)
{
    events_t *log = ctx;

    assert_true(log->n < 64);
    assert_int_equal(e->tier, BT_KV_TIER_NODE);
    log->type[log->n] = e->type;
    if (e->type != BT_KV_EVENT_CLEARED) {
        assert_int_equal(e->n_tokens, BS);
        memcpy(log->hash[log->n], e->hash, BT_KV_HASH_LEN);
        memcpy(log->parent[log->n], e->parent_hash, BT_KV_HASH_LEN);
        memcpy(log->tokens[log->n], e->tokens, sizeof(uint32_t) * BS);
    } else {
        assert_null(e->hash);
    }
    log->n++;
}

static bt_kvpool_t *make_pool(bt_dtype_t dtype, uint32_t n_blocks)
{
    bt_kvpool_config_t cfg;
    bt_kvpool_t *pool = NULL;

    memset(&cfg, 0, sizeof(cfg));
    cfg.geom = (bt_kv_geom_t){2, 1, 4, BS, bt_kv_dtype_of_elem(dtype)};
    cfg.n_blocks = n_blocks;
    cfg.event_cb = on_event;
    cfg.event_ctx = &ev;
    memset(&ev, 0, sizeof(ev));
    assert_int_equal(bt_kv_hash_root("m", "r", cfg.geom.dtype, BS,
                                     "cpu/exact/tp1/k1", "t", 1, root), BT_OK);
    assert_int_equal(bt_kvpool_create(&cfg, &pool), BT_OK);
    return pool;
}

static bt_kvseq_t *make_seq(bt_kvpool_t *pool, const uint32_t *toks,
                            uint32_t n, bool computed)
{
    bt_kvseq_t *seq = NULL;

    assert_int_equal(bt_kvseq_create(pool, root, &seq), BT_OK);
    if (n > 0) {
        assert_int_equal(bt_kvseq_append(seq, toks, n), BT_OK);
    }
    if (computed) {
        assert_int_equal(bt_kvseq_set_computed(seq, n), BT_OK);
    }
    return seq;
}

static void iota(uint32_t *t, uint32_t n, uint32_t start)
{
    uint32_t i;

    for (i = 0; i < n; i++) {
        t[i] = start + i;
    }
}

static void test_append_share_release(void **state)
{
    bt_kvpool_t *pool = make_pool(BT_DTYPE_F32, 8);
    uint32_t toks[10], n = 0;
    bt_kvpool_stats_t st;
    bt_kvseq_t *a, *b;
    uint8_t h0[BT_KV_HASH_LEN], h1[BT_KV_HASH_LEN];

    (void)state;
    iota(toks, 10, 100);
    a = make_seq(pool, toks, 10, false);
    assert_int_equal(bt_kvseq_n_blocks(a), 3);
    assert_int_equal(bt_kvseq_blocks(a)[0], 0);
    assert_int_equal(bt_kvseq_blocks(a)[2], 2);
    assert_int_equal(ev.n, 0); /* nothing stored before it is computed */
    assert_null(bt_kvseq_block_hash(a, 0));
    assert_int_equal(bt_kvseq_set_computed(a, 6), BT_OK);
    assert_int_equal(ev.n, 1);
    assert_int_equal(bt_kvseq_set_computed(a, 10), BT_OK);
    assert_int_equal(bt_kvseq_set_computed(a, 9), BT_ERR_INVALID_ARG);
    assert_int_equal(bt_kvseq_set_computed(a, 11), BT_ERR_INVALID_ARG);
    /* two full blocks stored, chained from the root */
    assert_int_equal(ev.n, 2);
    assert_int_equal(ev.type[0], BT_KV_EVENT_STORED);
    assert_int_equal(bt_kv_hash_block(root, toks, BS, h0), BT_OK);
    assert_int_equal(bt_kv_hash_block(h0, toks + BS, BS, h1), BT_OK);
    assert_memory_equal(ev.hash[0], h0, BT_KV_HASH_LEN);
    assert_memory_equal(ev.parent[0], root, BT_KV_HASH_LEN);
    assert_memory_equal(ev.hash[1], h1, BT_KV_HASH_LEN);
    assert_memory_equal(ev.parent[1], h0, BT_KV_HASH_LEN);
    assert_memory_equal(ev.tokens[1], toks + BS, sizeof(uint32_t) * BS);
    assert_memory_equal(bt_kvseq_block_hash(a, 1), h1, BT_KV_HASH_LEN);

    /* a second sequence shares both full blocks copy-free */
    assert_int_equal(bt_kvseq_create(pool, root, &b), BT_OK);
    assert_int_equal(bt_kvseq_match_prefix(b, toks, 9, NULL, &n), BT_OK);
    assert_int_equal(n, 2);
    assert_int_equal(bt_kvseq_n_tokens(b), 8);
    assert_int_equal(bt_kvseq_n_computed(b), 8);
    assert_int_equal(bt_kvseq_blocks(b)[0], bt_kvseq_blocks(a)[0]);
    assert_int_equal(bt_kvseq_blocks(b)[1], bt_kvseq_blocks(a)[1]);
    assert_int_equal(bt_kvpool_refcount(pool, 0), 2);
    assert_int_equal(bt_kvpool_refcount(pool, 1), 2);
    assert_int_equal(bt_kvpool_refcount(pool, 2), 1);
    /* matching a non-empty sequence is refused */
    assert_int_equal(bt_kvseq_match_prefix(b, toks, 9, NULL, &n),
                     BT_ERR_INVALID_ARG);
    /* its own next token goes to a new block, not into the shared ones */
    assert_int_equal(bt_kvseq_append(b, toks + 8, 1), BT_OK);
    assert_int_equal(bt_kvseq_n_blocks(b), 3);
    assert_int_equal(bt_kvseq_blocks(b)[2], 3);
    assert_int_equal(ev.n, 2); /* an indexed hash is not stored again */

    bt_kvpool_stats(pool, &st);
    assert_int_equal(st.used, 4);
    assert_int_equal(st.free, 4);
    assert_int_equal(st.hits, 2);
    assert_int_equal(st.misses, 0);

    bt_kvseq_destroy(a);
    assert_int_equal(bt_kvpool_refcount(pool, 0), 1);
    bt_kvpool_stats(pool, &st);
    assert_int_equal(st.used, 3);
    assert_int_equal(st.cached, 0);
    bt_kvseq_destroy(b);
    bt_kvpool_stats(pool, &st);
    assert_int_equal(st.used, 0);
    assert_int_equal(st.cached, 2); /* full hashed blocks stay cached */
    assert_int_equal(st.free, 6);
    assert_int_equal(bt_kvpool_available(pool), 8);
    bt_kvpool_destroy(pool);
}

static void test_exhaustion_changes_nothing(void **state)
{
    bt_kvpool_t *pool = make_pool(BT_DTYPE_BF16, 8);
    size_t len = bt_kvpool_region_bytes(pool);
    uint8_t *snap = malloc(len);
    bt_kvpool_stats_t before, after;
    uint32_t toks[40], ids[8];
    bt_kvseq_t *a, *b;

    (void)state;
    iota(toks, 40, 1);
    a = make_seq(pool, toks, 30, true); /* 8 blocks: 7 full + 2 tokens */
    memset(bt_kvpool_base(pool), 0x5a, len);
    memcpy(snap, bt_kvpool_base(pool), len);
    bt_kvpool_stats(pool, &before);
    assert_int_equal(before.free, 0);
    assert_int_equal(bt_kvpool_available(pool), 0);

    assert_int_equal(bt_kvseq_create(pool, root, &b), BT_OK);
    assert_int_equal(bt_kvseq_append(b, toks, 1), BT_ERR_EXHAUSTED);
    assert_int_equal(bt_kvseq_n_tokens(b), 0);
    assert_int_equal(bt_kvseq_n_blocks(b), 0);
    /* a's last block has room for 2 more tokens, not 3 */
    assert_int_equal(bt_kvseq_append(a, toks + 30, 3), BT_ERR_EXHAUSTED);
    assert_int_equal(bt_kvseq_n_tokens(a), 30);
    assert_int_equal(bt_kvpool_reserve(pool, 1, ids), BT_ERR_EXHAUSTED);
    bt_kvpool_stats(pool, &after);
    assert_memory_equal(&before, &after, sizeof(before));
    assert_memory_equal(snap, bt_kvpool_base(pool), len);
    assert_int_equal(bt_kvseq_append(a, toks + 30, 2), BT_OK);

    /* a partial failure: 3 blocks needed, 2 available -> none taken */
    bt_kvseq_destroy(a);
    a = make_seq(pool, toks, 24, false); /* 6 blocks, not computed */
    bt_kvpool_stats(pool, &before);
    assert_int_equal(bt_kvseq_append(b, toks, 9), BT_ERR_EXHAUSTED);
    bt_kvpool_stats(pool, &after);
    assert_memory_equal(&before, &after, sizeof(before));
    assert_int_equal(bt_kvpool_available(pool), 2);
    assert_int_equal(bt_kvseq_append(b, toks, 8), BT_OK);
    bt_kvseq_destroy(b);
    bt_kvseq_destroy(a);
    free(snap);
    bt_kvpool_destroy(pool);
}

static void test_reserve_commit_abort(void **state)
{
    bt_kvpool_t *pool = make_pool(BT_DTYPE_F16, 8);
    uint32_t ids[3], again[3], big[8], toks[12], bogus = 7;
    bt_kvpool_stats_t st;
    bt_kvseq_t *seq, *other;

    (void)state;
    iota(toks, 12, 50);
    assert_int_equal(bt_kvpool_reserve(pool, 3, ids), BT_OK);
    assert_int_equal(ids[0], 0);
    assert_int_equal(ids[2], 2);
    /* each hand-out raises the block's generation (a device copy of the
     * pool re-reads a block whose generation moved) */
    assert_int_equal(bt_kvpool_gens(pool)[0], 1);
    assert_int_equal(bt_kvpool_gens(pool)[3], 0);
    bt_kvpool_stats(pool, &st);
    assert_int_equal(st.reserved, 3);
    assert_int_equal(st.used, 3);
    bt_kvpool_reserve_abort(pool, ids, 3);
    bt_kvpool_stats(pool, &st);
    assert_int_equal(st.reserved, 0);
    assert_int_equal(st.free, 8);
    assert_int_equal(bt_kvpool_reserve(pool, 3, again), BT_OK);
    assert_memory_equal(ids, again, sizeof(ids));
    assert_int_equal(bt_kvpool_gens(pool)[0], 2);
    assert_int_equal(bt_kvpool_gens(pool)[2], 2);
    assert_int_equal(bt_kvpool_reserve(pool, 6, big), BT_ERR_EXHAUSTED);

    seq = make_seq(pool, NULL, 0, false);
    /* a block that is not reserved, and a token count that does not fit */
    assert_int_equal(bt_kvseq_commit_reserved(seq, &bogus, 1, toks, 4),
                     BT_ERR_INVALID_ARG);
    assert_int_equal(bt_kvseq_commit_reserved(seq, again, 3, toks, 8),
                     BT_ERR_INVALID_ARG);
    assert_int_equal(bt_kvseq_commit_reserved(seq, again, 3, toks, 13),
                     BT_ERR_INVALID_ARG);
    assert_int_equal(bt_kvseq_n_blocks(seq), 0);
    assert_int_equal(bt_kvseq_commit_reserved(seq, again, 3, toks, 10),
                     BT_OK);
    assert_int_equal(bt_kvseq_n_tokens(seq), 10);
    assert_int_equal(bt_kvseq_n_computed(seq), 10);
    assert_int_equal(ev.n, 2);
    bt_kvpool_stats(pool, &st);
    assert_int_equal(st.reserved, 0);
    assert_int_equal(st.used, 3);
    /* committed blocks are no longer reserved: a second commit fails */
    other = make_seq(pool, NULL, 0, false);
    assert_int_equal(bt_kvseq_commit_reserved(other, again, 1, toks, 4),
                     BT_ERR_INVALID_ARG);
    /* an unaligned sequence cannot take more reserved blocks */
    assert_int_equal(bt_kvpool_reserve(pool, 1, ids), BT_OK);
    assert_int_equal(bt_kvseq_commit_reserved(seq, ids, 1, toks, 4),
                     BT_ERR_INVALID_ARG);
    bt_kvpool_reserve_abort(pool, ids, 1);
    /* appending continues in the committed partial block */
    assert_int_equal(bt_kvseq_append(seq, toks + 10, 2), BT_OK);
    assert_int_equal(bt_kvseq_n_blocks(seq), 3);
    bt_kvseq_destroy(other);
    bt_kvseq_destroy(seq);
    bt_kvpool_stats(pool, &st);
    assert_int_equal(st.used, 0);
    bt_kvpool_destroy(pool);
}

static void test_lru_order(void **state)
{
    bt_kvpool_t *pool = make_pool(BT_DTYPE_F32, 4);
    uint32_t x[BS], y[BS], z[BS], w[2 * BS], n;
    bt_kvpool_stats_t st;
    bt_kvseq_t *s;

    (void)state;
    iota(x, BS, 10);
    iota(y, BS, 20);
    iota(z, BS, 30);
    iota(w, 2 * BS, 40);
    bt_kvseq_destroy(make_seq(pool, x, BS, true)); /* cached, oldest */
    bt_kvseq_destroy(make_seq(pool, y, BS, true));
    bt_kvseq_destroy(make_seq(pool, z, BS, true)); /* newest */
    /* using y refreshes it: now x, z, y from oldest */
    s = make_seq(pool, NULL, 0, false);
    assert_int_equal(bt_kvseq_match_prefix(s, y, BS, NULL, &n), BT_OK);
    assert_int_equal(n, 1);
    bt_kvseq_destroy(s);
    bt_kvpool_stats(pool, &st);
    assert_int_equal(st.cached, 3);
    assert_int_equal(st.free, 1);

    ev.n = 0;
    /* 2 blocks: the free one, then the least recently used (x) */
    s = make_seq(pool, w, 2 * BS, false);
    assert_int_equal(ev.n, 1);
    assert_int_equal(ev.type[0], BT_KV_EVENT_REMOVED);
    assert_memory_equal(ev.tokens[0], x, sizeof(x));
    bt_kvpool_stats(pool, &st);
    assert_int_equal(st.evictions, 1);
    assert_int_equal(st.cached, 2);
    /* one more: z goes before y */
    assert_int_equal(bt_kvseq_append(s, w, 1), BT_OK);
    assert_int_equal(ev.n, 2);
    assert_memory_equal(ev.tokens[1], z, sizeof(z));
    bt_kvseq_destroy(s);

    s = make_seq(pool, NULL, 0, false);
    assert_int_equal(bt_kvseq_match_prefix(s, x, BS, NULL, &n), BT_OK);
    assert_int_equal(n, 0);
    bt_kvseq_destroy(s);
    s = make_seq(pool, NULL, 0, false);
    assert_int_equal(bt_kvseq_match_prefix(s, y, BS, NULL, &n), BT_OK);
    assert_int_equal(n, 1);
    bt_kvseq_destroy(s);
    bt_kvpool_stats(pool, &st);
    assert_int_equal(st.hits, 2);
    assert_int_equal(st.misses, 1);
    bt_kvpool_destroy(pool);
}

static void test_eviction_spares_referenced(void **state)
{
    bt_kvpool_t *pool = make_pool(BT_DTYPE_F32, 4);
    uint32_t a_t[2 * BS], b_t[2 * BS], c_t[3 * BS];
    uint8_t hashes[2][BT_KV_HASH_LEN];
    size_t nh;
    bt_kvseq_t *a, *c;

    (void)state;
    iota(a_t, 2 * BS, 1);
    iota(b_t, 2 * BS, 100);
    iota(c_t, 3 * BS, 200);
    a = make_seq(pool, a_t, 2 * BS, true);        /* referenced, indexed */
    bt_kvseq_destroy(make_seq(pool, b_t, 2 * BS, true)); /* cached */
    c = make_seq(pool, NULL, 0, false);
    assert_int_equal(bt_kvseq_append(c, c_t, 3 * BS), BT_ERR_EXHAUSTED);
    assert_int_equal(bt_kvseq_append(c, c_t, 2 * BS), BT_OK);
    assert_int_equal(bt_kvpool_refcount(pool, bt_kvseq_blocks(a)[0]), 1);
    assert_int_equal(bt_kvpool_refcount(pool, bt_kvseq_blocks(a)[1]), 1);
    assert_int_equal(bt_kv_hash_chain(root, BS, a_t, 2 * BS, hashes, 2, &nh),
                     BT_OK);
    assert_int_equal(nh, 2);
    assert_int_equal(bt_kvpool_lookup(pool,
                         (const uint8_t (*)[BT_KV_HASH_LEN])hashes, 2, a_t),
                     2);
    assert_int_equal(bt_kv_hash_chain(root, BS, b_t, 2 * BS, hashes, 2, &nh),
                     BT_OK);
    assert_int_equal(bt_kvpool_lookup(pool,
                         (const uint8_t (*)[BT_KV_HASH_LEN])hashes, 2, b_t),
                     0);
    bt_kvseq_destroy(c);
    bt_kvseq_destroy(a);
    bt_kvpool_destroy(pool);
}

/* A hash hit whose stored token ids differ is not used (DESIGN §3). */
static void test_hash_hit_with_other_tokens(void **state)
{
    bt_kvpool_t *pool = make_pool(BT_DTYPE_F32, 4);
    uint32_t t[2 * BS], forged[2 * BS], n = 9;
    uint8_t hashes[2][BT_KV_HASH_LEN];
    bt_kvpool_stats_t st;
    size_t nh;
    bt_kvseq_t *s;

    (void)state;
    iota(t, 2 * BS, 1);
    bt_kvseq_destroy(make_seq(pool, t, 2 * BS, true));
    assert_int_equal(bt_kv_hash_chain(root, BS, t, 2 * BS, hashes, 2, &nh),
                     BT_OK);
    memcpy(forged, t, sizeof(t));
    forged[BS + 1] = 999; /* second block differs, hashes claim it does not */
    assert_int_equal(bt_kvpool_lookup(pool,
                         (const uint8_t (*)[BT_KV_HASH_LEN])hashes, 2, forged),
                     1);
    s = make_seq(pool, NULL, 0, false);
    assert_int_equal(bt_kvseq_match_prefix(s, forged, 2 * BS,
                         (const uint8_t (*)[BT_KV_HASH_LEN])hashes, &n),
                     BT_OK);
    assert_int_equal(n, 1);
    assert_int_equal(bt_kvseq_n_tokens(s), BS);
    bt_kvpool_stats(pool, &st);
    assert_int_equal(st.rejected, 1);
    assert_int_equal(st.hits, 1);
    assert_int_equal(st.misses, 1);
    bt_kvseq_destroy(s);
    bt_kvpool_destroy(pool);
}

static void fill_kv(bt_kvpool_t *pool, const bt_kvseq_t *seq, uint32_t seed)
{
    const bt_kv_geom_t *g = bt_kvpool_geom(pool);
    uint32_t p, l, e, row = g->n_kv_heads * g->head_dim;

    for (l = 0; l < g->n_layers; l++) {
        for (p = 0; p < bt_kvseq_n_tokens(seq); p++) {
            uint32_t b = bt_kvseq_blocks(seq)[p / g->block_size];
            uint16_t *k = bt_kvpool_token_ptr(pool, l, b, p % g->block_size,
                                              false);
            uint16_t *v = bt_kvpool_token_ptr(pool, l, b, p % g->block_size,
                                              true);
            for (e = 0; e < row; e++) {
                k[e] = bt_f32_to_bf16((float)(seed + l * 1000 + p * 10 + e));
                v[e] = bt_f32_to_bf16(-(float)(seed + l * 1000 + p * 10 + e));
            }
        }
    }
}

static void test_export_import(void **state)
{
    bt_kvpool_t *src = make_pool(BT_DTYPE_BF16, 6);
    bt_kvpool_t *dst = make_pool(BT_DTYPE_BF16, 8);
    uint32_t toks[10], ids[3], pre[2], l, i;
    bt_kvseq_t *a, *b;
    size_t len;
    uint8_t *buf;

    (void)state;
    iota(toks, 10, 7);
    /* offset the destination's free list so ids differ */
    assert_int_equal(bt_kvpool_reserve(dst, 2, pre), BT_OK);
    a = make_seq(src, toks, 10, false);
    fill_kv(src, a, 3);
    assert_int_equal(bt_kvseq_set_computed(a, 10), BT_OK);
    len = bt_kvpool_export_bytes(src, 3);
    assert_int_equal(len, 2 * 3 * bt_kvpool_slice_bytes(src));
    buf = malloc(len);
    assert_int_equal(bt_kvpool_export(src, bt_kvseq_blocks(a), 3, buf,
                                      len - 1), BT_ERR_INVALID_ARG);
    assert_int_equal(bt_kvpool_export(src, bt_kvseq_blocks(a), 3, buf, len),
                     BT_OK);
    assert_int_equal(bt_kvpool_reserve(dst, 3, ids), BT_OK);
    assert_int_equal(ids[0], 2);
    assert_int_equal(bt_kvpool_import(dst, ids, 3, buf, len), BT_OK);
    b = make_seq(dst, NULL, 0, false);
    assert_int_equal(bt_kvseq_commit_reserved(b, ids, 3, toks, 10), BT_OK);
    for (l = 0; l < 2; l++) {
        for (i = 0; i < 3; i++) {
            assert_memory_equal(
                bt_kvpool_block_ptr(src, l, bt_kvseq_blocks(a)[i]),
                bt_kvpool_block_ptr(dst, l, bt_kvseq_blocks(b)[i]),
                bt_kvpool_slice_bytes(src));
        }
    }
    /* same hashes on both sides */
    assert_memory_equal(bt_kvseq_block_hash(a, 1), bt_kvseq_block_hash(b, 1),
                        BT_KV_HASH_LEN);
    ids[0] = 99;
    assert_int_equal(bt_kvpool_import(dst, ids, 1, buf, len),
                     BT_ERR_INVALID_ARG);
    free(buf);
    bt_kvpool_reserve_abort(dst, pre, 2);
    bt_kvseq_destroy(a);
    bt_kvseq_destroy(b);
    bt_kvpool_destroy(src);
    bt_kvpool_destroy(dst);
}

static void test_truncate_copies_shared(void **state)
{
    bt_kvpool_t *pool = make_pool(BT_DTYPE_BF16, 8);
    uint32_t toks[8], other[2] = {900, 901}, n, orig;
    bt_kvseq_t *a, *b, *c;
    bt_kvpool_stats_t st;

    (void)state;
    iota(toks, 8, 1);
    a = make_seq(pool, toks, 8, false);
    fill_kv(pool, a, 11);
    assert_int_equal(bt_kvseq_set_computed(a, 8), BT_OK);
    b = make_seq(pool, NULL, 0, false);
    assert_int_equal(bt_kvseq_match_prefix(b, toks, 8, NULL, &n), BT_OK);
    assert_int_equal(n, 2);
    orig = bt_kvseq_blocks(b)[1];
    assert_int_equal(bt_kvseq_truncate(b, 6), BT_OK);
    assert_int_equal(bt_kvseq_n_tokens(b), 6);
    assert_int_not_equal(bt_kvseq_blocks(b)[1], orig);
    assert_int_equal(bt_kvpool_refcount(pool, orig), 1);
    assert_memory_equal(bt_kvpool_block_ptr(pool, 1, orig),
                        bt_kvpool_block_ptr(pool, 1, bt_kvseq_blocks(b)[1]),
                        bt_kvpool_slice_bytes(pool));
    assert_int_equal(bt_kvseq_append(b, other, 2), BT_OK);
    assert_int_equal(bt_kvseq_set_computed(b, 8), BT_OK);
    /* a's cached prefix is intact: a new sequence still matches it */
    c = make_seq(pool, NULL, 0, false);
    assert_int_equal(bt_kvseq_match_prefix(c, toks, 8, NULL, &n), BT_OK);
    assert_int_equal(n, 2);
    assert_int_equal(bt_kvseq_blocks(c)[1], orig);
    bt_kvseq_destroy(c);
    /* truncation to a block boundary releases whole blocks */
    assert_int_equal(bt_kvseq_truncate(b, 4), BT_OK);
    assert_int_equal(bt_kvseq_n_blocks(b), 1);
    assert_int_equal(bt_kvseq_truncate(b, 5), BT_ERR_INVALID_ARG);
    bt_kvseq_destroy(b);
    bt_kvseq_destroy(a);
    bt_kvpool_stats(pool, &st);
    assert_int_equal(st.used, 0);
    assert_int_equal(st.cached + st.free, 8);
    bt_kvpool_destroy(pool);
}

/* n > 1 choices: a fork shares every block of the prompt by reference;
 * the partial last block is copied when a side first writes into it, with
 * its K/V and token ids, and the other side's slots stay as they were;
 * every reference goes back when the sequences end, in either order. */
static void test_fork_copy_on_write(void **state)
{
    bt_kvpool_t *pool = make_pool(BT_DTYPE_BF16, 12);
    uint32_t toks[10], mine = 700, theirs = 800, n_before, part, cow;
    bt_kvseq_t *a, *f, *g, *c;
    bt_kvpool_stats_t st;
    uint32_t i, n;

    (void)state;
    iota(toks, 10, 1);
    /* the prompt: 10 tokens, two full blocks and one of 2 slots */
    a = make_seq(pool, toks, 10, false);
    fill_kv(pool, a, 5);
    assert_int_equal(bt_kvseq_set_computed(a, 10), BT_OK);
    bt_kvpool_stats(pool, &st);
    n_before = st.used;
    assert_int_equal(n_before, 3);
    /* beyond what is computed: refused, nothing held */
    assert_int_equal(bt_kvseq_fork(a, 11, &f), BT_ERR_INVALID_ARG);

    assert_int_equal(bt_kvseq_fork(a, 10, &f), BT_OK);
    assert_int_equal(bt_kvseq_fork(a, 9, &g), BT_OK);
    assert_int_equal(bt_kvseq_n_tokens(f), 10);
    assert_int_equal(bt_kvseq_n_computed(f), 10);
    assert_int_equal(bt_kvseq_n_tokens(g), 9);
    for (i = 0; i < 3; i++) {
        assert_int_equal(bt_kvseq_blocks(f)[i], bt_kvseq_blocks(a)[i]);
        assert_int_equal(bt_kvseq_blocks(g)[i], bt_kvseq_blocks(a)[i]);
        assert_int_equal(bt_kvpool_refcount(pool, bt_kvseq_blocks(a)[i]), 3);
    }
    assert_memory_equal(bt_kvseq_block_hash(f, 1), bt_kvseq_block_hash(a, 1),
                        BT_KV_HASH_LEN);
    bt_kvpool_stats(pool, &st);
    assert_int_equal(st.used, 3);   /* nothing copied at the fork */

    /* f writes slot 2 of the shared partial block: f gets a copy first */
    part = bt_kvseq_blocks(a)[2];
    assert_int_equal(bt_kvseq_blocks_needed(f, 1), 1);
    assert_int_equal(bt_kvseq_append(f, &mine, 1), BT_OK);
    cow = bt_kvseq_blocks(f)[2];
    assert_int_not_equal(cow, part);
    assert_int_equal(bt_kvpool_refcount(pool, part), 2);
    assert_int_equal(bt_kvpool_refcount(pool, cow), 1);
    assert_int_equal(bt_kvpool_refcount(pool, bt_kvseq_blocks(a)[0]), 3);
    for (i = 0; i < 2; i++) {   /* both layers, K and V of slots 0..1 */
        assert_memory_equal(bt_kvpool_block_ptr(pool, i, cow),
                            bt_kvpool_block_ptr(pool, i, part),
                            bt_kvpool_slice_bytes(pool));
    }
    /* g (9 tokens) rewrites slot 1 of the block a and g still share */
    assert_int_equal(bt_kvseq_append(g, &theirs, 1), BT_OK);
    assert_int_not_equal(bt_kvseq_blocks(g)[2], part);
    assert_int_equal(bt_kvpool_refcount(pool, part), 1);
    /* a's slots are untouched by either */
    assert_int_equal(bt_kvseq_append(a, &toks[0], 1), BT_OK); /* alone now */
    assert_int_equal(bt_kvseq_blocks(a)[2], part);
    fill_kv(pool, f, 99);
    assert_int_equal(bt_kvseq_set_computed(f, 11), BT_OK);
    c = make_seq(pool, NULL, 0, false);
    assert_int_equal(bt_kvseq_match_prefix(c, toks, 8, NULL, &n), BT_OK);
    assert_int_equal(n, 2);   /* the shared full blocks stay indexed */
    bt_kvseq_destroy(c);

    /* the source first, then the forks: every reference goes back */
    bt_kvseq_destroy(a);
    assert_int_equal(bt_kvpool_refcount(pool, part), 0);
    assert_int_equal(bt_kvpool_refcount(pool, bt_kvseq_blocks(f)[0]), 2);
    bt_kvseq_destroy(f);
    bt_kvseq_destroy(g);
    bt_kvpool_stats(pool, &st);
    assert_int_equal(st.used, 0);
    assert_int_equal(st.reserved, 0);
    assert_int_equal(st.cached + st.free, 12);
    bt_kvpool_destroy(pool);
}

/* A fork of a block-aligned prompt shares only full blocks; a fork that
 * stops inside a full indexed block copies it before writing, so the
 * indexed content stays what its hash says. */
static void test_fork_aligned_and_indexed(void **state)
{
    bt_kvpool_t *pool = make_pool(BT_DTYPE_BF16, 8);
    uint32_t toks[8], t = 500, full, n;
    bt_kvseq_t *a, *f, *g, *c;
    bt_kvpool_stats_t st;

    (void)state;
    iota(toks, 8, 1);
    a = make_seq(pool, toks, 8, false);
    fill_kv(pool, a, 3);
    assert_int_equal(bt_kvseq_set_computed(a, 8), BT_OK);
    assert_int_equal(bt_kvseq_fork(a, 8, &f), BT_OK);
    assert_int_equal(bt_kvseq_blocks_needed(f, 1), 1);   /* a new block */
    assert_int_equal(bt_kvseq_append(f, &t, 1), BT_OK);
    assert_int_equal(bt_kvseq_n_blocks(f), 3);
    assert_int_equal(bt_kvpool_refcount(pool, bt_kvseq_blocks(a)[1]), 2);
    /* 7 of 8: the last prompt token is computed again by the fork */
    full = bt_kvseq_blocks(a)[1];
    assert_int_equal(bt_kvseq_fork(a, 7, &g), BT_OK);
    bt_kvseq_destroy(a);   /* the full block is indexed and held by f, g */
    assert_int_equal(bt_kvseq_append(g, &t, 1), BT_OK);
    assert_int_not_equal(bt_kvseq_blocks(g)[1], full);
    assert_int_equal(bt_kvpool_refcount(pool, full), 1);
    c = make_seq(pool, NULL, 0, false);
    assert_int_equal(bt_kvseq_match_prefix(c, toks, 8, NULL, &n), BT_OK);
    assert_int_equal(n, 2);
    assert_int_equal(bt_kvseq_blocks(c)[1], full);
    bt_kvseq_destroy(c);
    bt_kvseq_destroy(g);
    bt_kvseq_destroy(f);
    bt_kvpool_stats(pool, &st);
    assert_int_equal(st.used, 0);
    assert_int_equal(st.cached + st.free, 8);
    bt_kvpool_destroy(pool);
}

static void test_clear_cache(void **state)
{
    bt_kvpool_t *pool = make_pool(BT_DTYPE_F32, 4);
    uint32_t t[2 * BS], u[BS], n;
    bt_kvpool_stats_t st;
    bt_kvseq_t *a, *s;

    (void)state;
    iota(t, 2 * BS, 1);
    iota(u, BS, 50);
    bt_kvseq_destroy(make_seq(pool, t, 2 * BS, true));
    a = make_seq(pool, u, BS, true);
    ev.n = 0;
    bt_kvpool_clear_cache(pool);
    assert_int_equal(ev.n, 1);
    assert_int_equal(ev.type[0], BT_KV_EVENT_CLEARED);
    bt_kvpool_stats(pool, &st);
    assert_int_equal(st.cached, 0);
    assert_int_equal(st.free, 3);
    s = make_seq(pool, NULL, 0, false);
    assert_int_equal(bt_kvseq_match_prefix(s, u, BS, NULL, &n), BT_OK);
    assert_int_equal(n, 0);
    bt_kvseq_destroy(s);
    bt_kvseq_destroy(a); /* no longer indexed: back to the free list */
    bt_kvpool_stats(pool, &st);
    assert_int_equal(st.free, 4);
    bt_kvpool_destroy(pool);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_append_share_release),
        cmocka_unit_test(test_exhaustion_changes_nothing),
        cmocka_unit_test(test_reserve_commit_abort),
        cmocka_unit_test(test_lru_order),
        cmocka_unit_test(test_eviction_spares_referenced),
        cmocka_unit_test(test_hash_hit_with_other_tokens),
        cmocka_unit_test(test_export_import),
        cmocka_unit_test(test_truncate_copies_shared),
        cmocka_unit_test(test_clear_cache),
        cmocka_unit_test(test_fork_copy_on_write),
        cmocka_unit_test(test_fork_aligned_and_indexed),
    };

    return cmocka_run_group_tests_name("kv_pool", tests, NULL, NULL);
}
