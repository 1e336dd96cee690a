/* The block store without a disk tier: longest-prefix lookup, token
 * checks, reservations (invisible until committed, expiry), checksum and
 * hash-chain rejection, LRU eviction that never takes a pinned block,
 * byte limits, bad input. */
#include "kvs_test_util.h"

#include "base/sha256.h"

#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

static void test_chain_hash_vector(void **state)
{
    /* docs/kv-spec.md: root of baton-tiny/v1/bf16/16, then tokens 0..15 */
    static const char *root_hex =
        "6040f9d6cf59dcfae0abd6892d438e56db06eab7e5f82139a1d4cf68e5011312";
    static const char *h0_hex =
        "f26fc8c402d55bb6a664d7b1a1de6b0b249bd5bc940ed73a4ea850eda31f64d3";
    uint8_t root[32], h[32];
    uint32_t t[16];
    char hex[65];

    (void)state;
    for (int i = 0; i < 32; i++) {
        unsigned v;

        sscanf(root_hex + 2 * i, "%2x", &v);
        root[i] = (uint8_t)v;
    }
    for (uint32_t i = 0; i < 16; i++) {
        t[i] = i;
    }
    assert_int_equal(bt_kv_hash_block(root, t, 16, h), BT_OK);
    bt_sha256_hex(h, hex);
    assert_string_equal(hex, h0_hex);
}

static void test_tokens_match(void **state)
{
    uint32_t a[4] = { 1, 2, 3, 4 }, b[4] = { 1, 2, 3, 5 };

    (void)state;
    assert_true(bt_kv_tokens_match(a, 4, a, 4));
    assert_false(bt_kv_tokens_match(a, 4, b, 4));
    assert_false(bt_kv_tokens_match(a, 4, a, 3));
    assert_true(bt_kv_tokens_match(a, 0, b, 0));
}

static void test_lookup_longest_prefix(void **state)
{
    kt_fx_t *fx = kt_fx_new(16, 0);
    kt_chain_t c, other;
    bt_kvs_block_info_t info[8];
    uint32_t toks[8 * KT_BLOCK_TOKENS];
    bt_kvs_commit_result_t r;
    bt_kvs_stats_t st;
    size_t m = 99;

    (void)state;
    kt_chain_init(fx, &c, 6, 1);
    kt_chain_init(fx, &other, 2, 2);
    assert_int_equal(kt_lookup(fx, &c, 6), 0);
    r = kt_put(fx, &c, 0, 3, -1);
    assert_int_equal(r.committed, 3);
    assert_int_equal(r.rejected, 0);
    assert_int_equal(r.durable, 0);
    /* block 4 stored without block 3: the prefix still ends at 3 */
    r = kt_put(fx, &c, 4, 1, -1);
    assert_int_equal(r.committed, 1);
    assert_int_equal(kt_lookup(fx, &c, 6), 3);
    assert_int_equal(kt_lookup(fx, &other, 2), 0);
    assert_int_equal(bt_kvs_lookup(fx->s, c.hash[0], 6, NULL, 0, info, &m), BT_OK);
    assert_int_equal(m, 3);
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(info[i].tier, BT_KVS_TIER_DRAM);
        assert_memory_equal(info[i].hash, c.hash[i], 32);
        assert_memory_equal(fx->slab + info[i].offset, c.data[i], fx->block_bytes);
        assert_true(bt_kv_tokens_match(info[i].tokens, info[i].n_tokens,
                                       c.tokens[i], KT_BLOCK_TOKENS));
    }
    /* the request's own token ids: a mismatch in block 1 ends the prefix */
    memcpy(toks, c.tokens, 3 * sizeof(c.tokens[0]));
    assert_int_equal(bt_kvs_lookup(fx->s, c.hash[0], 3, toks, 3 * KT_BLOCK_TOKENS,
                                   NULL, &m), BT_OK);
    assert_int_equal(m, 3);
    toks[KT_BLOCK_TOKENS + 2] ^= 1;
    assert_int_equal(bt_kvs_lookup(fx->s, c.hash[0], 3, toks, 3 * KT_BLOCK_TOKENS,
                                   NULL, &m), BT_OK);
    assert_int_equal(m, 1);
    /* a wrong token count is refused, not guessed */
    assert_int_equal(bt_kvs_lookup(fx->s, c.hash[0], 3, toks, 5, NULL, &m),
                     BT_ERR_INVALID_ARG);
    bt_kvs_stats(fx->s, &st);
    assert_int_equal(st.token_mismatches, 1);
    assert_int_equal(st.puts, 4);
    assert_int_equal(st.dram.blocks, 4);
    assert_int_equal(st.dram.used_bytes, 4 * fx->block_bytes);
    kt_chain_free(&c);
    kt_chain_free(&other);
    kt_fx_free(fx);
}

/* Pin is how nodes read the store: its hits and misses count, per tier,
 * besides Lookup's (the hit rate stayed 0 while only Lookup counted). */
static void test_pin_counts_hits(void **state)
{
    kt_fx_t *fx = kt_fx_new(16, 0);
    kt_chain_t c;
    bt_kvs_stats_t st;
    kt_pin_t p;

    (void)state;
    kt_chain_init(fx, &c, 5, 7);
    kt_put(fx, &c, 0, 3, -1);
    p = kt_pin(fx, &c, 5, false);
    assert_int_equal(p.n, 3);
    bt_kvs_stats(fx->s, &st);
    assert_int_equal(st.pins, 1);
    assert_int_equal(st.pin_hit_dram_blocks, 3);
    assert_int_equal(st.pin_hit_disk_blocks, 0);
    assert_int_equal(st.pin_miss_blocks, 2);
    assert_int_equal(st.lookups, 0);
    assert_int_equal(bt_kvs_unpin(fx->s, p.pin_id), BT_OK);
    kt_chain_free(&c);
    kt_fx_free(fx);
}

static void test_reserved_invisible_and_expiry(void **state)
{
    kt_fx_t *fx = kt_fx_new(4, 0);
    bt_kvs_slot_t slots[4];
    uint64_t id, exp;
    bt_kvs_stats_t st;
    kt_chain_t c;

    (void)state;
    kt_chain_init(fx, &c, 4, 3);
    assert_int_equal(bt_kvs_reserve(fx->s, &fx->geom, fx->block_bytes, c.root,
                                    c.hash[0], 4, slots, &id, &exp), BT_OK);
    assert_int_equal(exp, fx->now + 1000);
    assert_int_equal(kt_lookup(fx, &c, 4), 0);    /* not committed yet */
    bt_kvs_stats(fx->s, &st);
    assert_int_equal(st.active_reservations, 1);
    assert_int_equal(st.dram.used_bytes, 4 * fx->block_bytes);
    /* every slot is reserved: another reservation cannot have one */
    {
        kt_chain_t d;
        bt_kvs_slot_t s2[1];
        uint64_t id2, e2;

        kt_chain_init(fx, &d, 1, 4);
        assert_int_equal(bt_kvs_reserve(fx->s, &fx->geom, fx->block_bytes, d.root,
                                        d.hash[0], 1, s2, &id2, &e2), BT_ERR_EXHAUSTED);
        assert_non_null(strstr(bt_kvs_last_error(fx->s), "cannot reserve"));
        kt_chain_free(&d);
    }
    fx->now += 999;
    bt_kvs_expire(fx->s);
    bt_kvs_stats(fx->s, &st);
    assert_int_equal(st.active_reservations, 1);
    fx->now += 1;
    bt_kvs_expire(fx->s);
    bt_kvs_stats(fx->s, &st);
    assert_int_equal(st.active_reservations, 0);
    assert_int_equal(st.dram.used_bytes, 0);
    assert_int_equal(bt_kvs_commit(fx->s, id, NULL, 0, NULL, NULL),
                     BT_ERR_NOT_FOUND);
    /* abort frees at once */
    assert_int_equal(bt_kvs_reserve(fx->s, &fx->geom, fx->block_bytes, c.root,
                                    c.hash[0], 2, slots, &id, &exp), BT_OK);
    assert_int_equal(bt_kvs_abort(fx->s, id), BT_OK);
    assert_int_equal(bt_kvs_abort(fx->s, id), BT_ERR_NOT_FOUND);
    bt_kvs_stats(fx->s, &st);
    assert_int_equal(st.dram.used_bytes, 0);
    /* after all that the full put still works */
    assert_int_equal(kt_put(fx, &c, 0, 4, -1).committed, 4);
    assert_int_equal(kt_lookup(fx, &c, 4), 4);
    kt_chain_free(&c);
    kt_fx_free(fx);
}

static void test_checksum_and_chain_rejected(void **state)
{
    kt_fx_t *fx = kt_fx_new(8, 0);
    bt_kvs_commit_result_t r;
    bt_kvs_stats_t st;
    kt_chain_t c;

    (void)state;
    kt_chain_init(fx, &c, 4, 5);
    /* block 1's bytes change after the checksum was taken */
    r = kt_put(fx, &c, 0, 3, 1);
    assert_int_equal(r.committed, 2);
    assert_int_equal(r.rejected, 1);
    assert_int_equal(kt_lookup(fx, &c, 3), 1);
    bt_kvs_stats(fx->s, &st);
    assert_int_equal(st.commit_rejected, 1);
    assert_int_equal(st.dram.blocks, 2);
    assert_int_equal(st.dram.used_bytes, 2 * fx->block_bytes);
    /* token ids that do not hash to the block's hash */
    {
        bt_kvs_slot_t slots[1];
        bt_kvs_commit_block_t b;
        uint32_t wrong[KT_BLOCK_TOKENS];
        uint64_t id, exp;
        kt_chain_t d;

        kt_chain_init(fx, &d, 1, 6);
        assert_int_equal(bt_kvs_reserve(fx->s, &fx->geom, fx->block_bytes, d.root,
                                        d.hash[0], 1, slots, &id, &exp), BT_OK);
        memcpy(fx->slab + slots[0].offset, d.data[0], fx->block_bytes);
        memcpy(wrong, d.tokens[0], sizeof(wrong));
        wrong[0]++;
        memcpy(b.hash, d.hash[0], 32);
        b.tokens = wrong;
        b.n_tokens = KT_BLOCK_TOKENS;
        bt_sha256(d.data[0], fx->block_bytes, b.checksum);
        r = kt_commit(fx, id, &b, 1);
        assert_int_equal(r.committed, 0);
        assert_int_equal(r.rejected, 1);
        assert_int_equal(kt_lookup(fx, &d, 1), 0);
        /* the reservation is gone, its slot free again */
        assert_int_equal(bt_kvs_abort(fx->s, id), BT_ERR_NOT_FOUND);
        bt_kvs_stats(fx->s, &st);
        assert_int_equal(st.commit_rejected, 2);
        assert_int_equal(st.dram.used_bytes, 2 * fx->block_bytes);
        kt_chain_free(&d);
    }
    kt_chain_free(&c);
    kt_fx_free(fx);
}

static void test_pinned_never_evicted(void **state)
{
    kt_fx_t *fx = kt_fx_new(4, 0);
    kt_chain_t a, b, d;
    bt_kvs_slot_t slots[4];
    uint64_t id, exp;
    bt_kvs_stats_t st;
    kt_pin_t p;

    (void)state;
    kt_chain_init(fx, &a, 4, 7);
    kt_chain_init(fx, &b, 2, 8);
    kt_chain_init(fx, &d, 3, 9);
    assert_int_equal(kt_put(fx, &a, 0, 4, -1).committed, 4);
    p = kt_pin(fx, &a, 2, true);
    assert_int_equal(p.n, 2);
    assert_true(p.pin_id != 0);
    /* two new blocks take the two unpinned slots */
    assert_int_equal(kt_put(fx, &b, 0, 2, -1).committed, 2);
    assert_int_equal(kt_lookup(fx, &a, 4), 2);
    /* three more: two evictable, not three -> refused, nothing changes */
    assert_int_equal(bt_kvs_reserve(fx->s, &fx->geom, fx->block_bytes, d.root,
                                    d.hash[0], 3, slots, &id, &exp), BT_ERR_EXHAUSTED);
    assert_int_equal(kt_lookup(fx, &b, 2), 2);
    bt_kvs_stats(fx->s, &st);
    assert_int_equal(st.dram.evictions, 2);
    assert_int_equal(st.active_pins, 1);
    /* the pinned bytes are intact */
    for (int i = 0; i < 2; i++) {
        assert_memory_equal(fx->slab + p.info[i].offset, a.data[i], fx->block_bytes);
    }
    /* expiry releases the pin; then the old blocks are evictable */
    fx->now += 2000;
    bt_kvs_expire(fx->s);
    assert_int_equal(bt_kvs_unpin(fx->s, p.pin_id), BT_ERR_NOT_FOUND);
    assert_int_equal(kt_put(fx, &d, 0, 3, -1).committed, 3);
    assert_int_equal(kt_lookup(fx, &d, 3), 3);
    bt_kvs_stats(fx->s, &st);
    assert_int_equal(st.dram.blocks, 4);
    assert_int_equal(st.active_pins, 0);
    kt_chain_free(&a);
    kt_chain_free(&b);
    kt_chain_free(&d);
    kt_fx_free(fx);
}

static void test_lru_order(void **state)
{
    kt_fx_t *fx = kt_fx_new(3, 0);
    kt_chain_t x, y, z, w;
    kt_pin_t p;

    (void)state;
    kt_chain_init(fx, &x, 1, 10);
    kt_chain_init(fx, &y, 1, 11);
    kt_chain_init(fx, &z, 1, 12);
    kt_chain_init(fx, &w, 1, 13);
    kt_put(fx, &x, 0, 1, -1);
    kt_put(fx, &y, 0, 1, -1);
    kt_put(fx, &z, 0, 1, -1);
    /* using x makes y the oldest */
    p = kt_pin(fx, &x, 1, true);
    assert_int_equal(bt_kvs_unpin(fx->s, p.pin_id), BT_OK);
    kt_put(fx, &w, 0, 1, -1);
    assert_int_equal(kt_lookup(fx, &x, 1), 1);
    assert_int_equal(kt_lookup(fx, &y, 1), 0);
    assert_int_equal(kt_lookup(fx, &z, 1), 1);
    assert_int_equal(kt_lookup(fx, &w, 1), 1);
    kt_chain_free(&x);
    kt_chain_free(&y);
    kt_chain_free(&z);
    kt_chain_free(&w);
    kt_fx_free(fx);
}

static void test_bad_input(void **state)
{
    kt_fx_t *fx = kt_fx_new(4, 0);
    static uint8_t many[BT_KV_MAX_HASHES + 1][32];
    bt_kvs_slot_t *slots = calloc(BT_KV_MAX_HASHES + 1, sizeof(*slots));
    bt_kv_geom_t g = fx->geom;
    uint64_t id, exp;
    size_t m;
    kt_chain_t c;

    (void)state;
    kt_chain_init(fx, &c, 2, 14);
    assert_int_equal(bt_kvs_lookup(fx->s, many[0], BT_KV_MAX_HASHES + 1, NULL, 0,
                                   NULL, &m), BT_ERR_INVALID_ARG);
    assert_int_equal(bt_kvs_reserve(fx->s, &g, fx->block_bytes, c.root, many[0],
                                    BT_KV_MAX_HASHES + 1, slots, &id, &exp),
                     BT_ERR_INVALID_ARG);
    /* insane geometry and a block size that does not match it */
    g.head_dim = 0;
    assert_int_equal(bt_kvs_reserve(fx->s, &g, fx->block_bytes, c.root, c.hash[0],
                                    1, slots, &id, &exp), BT_ERR_INVALID_ARG);
    assert_non_null(strstr(bt_kvs_last_error(fx->s), "insane kv geometry"));
    assert_int_equal(bt_kvs_reserve(fx->s, &fx->geom, fx->block_bytes + 1, c.root,
                                    c.hash[0], 1, slots, &id, &exp), BT_ERR_INVALID_ARG);
    assert_non_null(strstr(bt_kvs_last_error(fx->s), "does not match the geometry"));
    assert_false(bt_kvs_geometry(fx->s, NULL, NULL));
    /* the first good reservation fixes the geometry; another is refused */
    assert_int_equal(bt_kvs_reserve(fx->s, &fx->geom, fx->block_bytes, c.root,
                                    c.hash[0], 1, slots, &id, &exp), BT_OK);
    assert_true(bt_kvs_geometry(fx->s, NULL, NULL));
    g = fx->geom;
    g.dtype = BT_KV_DTYPE_F16;
    assert_int_equal(bt_kvs_reserve(fx->s, &g, fx->block_bytes / 2, c.root,
                                    c.hash[1], 1, slots, &id, &exp),
                     BT_ERR_INVALID_ARG);
    assert_non_null(strstr(bt_kvs_last_error(fx->s), "kv geometry mismatch"));
    /* duplicates, and commits of hashes that were not reserved */
    {
        uint8_t dup[2][32];
        bt_kvs_commit_block_t b;

        memcpy(dup[0], c.hash[1], 32);
        memcpy(dup[1], c.hash[1], 32);
        assert_int_equal(bt_kvs_reserve(fx->s, &fx->geom, fx->block_bytes, c.root,
                                        dup[0], 2, slots, &id, &exp),
                         BT_ERR_INVALID_ARG);
        assert_int_equal(bt_kvs_reserve(fx->s, &fx->geom, fx->block_bytes,
                                        c.hash[0], c.hash[1], 1, slots, &id,
                                        &exp), BT_OK);
        memcpy(b.hash, c.hash[0], 32);
        b.tokens = c.tokens[0];
        b.n_tokens = KT_BLOCK_TOKENS;
        assert_int_equal(bt_kvs_commit(fx->s, id, &b, 1, NULL, NULL),
                         BT_ERR_INVALID_ARG);
        memcpy(b.hash, c.hash[1], 32);
        b.n_tokens = KT_BLOCK_TOKENS - 1;
        assert_int_equal(bt_kvs_commit(fx->s, id, &b, 1, NULL, NULL),
                         BT_ERR_INVALID_ARG);
        assert_int_equal(bt_kvs_abort(fx->s, id), BT_OK);
    }
    free(slots);
    kt_chain_free(&c);
    kt_fx_free(fx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chain_hash_vector),
        cmocka_unit_test(test_tokens_match),
        cmocka_unit_test(test_lookup_longest_prefix),
        cmocka_unit_test(test_pin_counts_hits),
        cmocka_unit_test(test_reserved_invisible_and_expiry),
        cmocka_unit_test(test_checksum_and_chain_rejected),
        cmocka_unit_test(test_pinned_never_evicted),
        cmocka_unit_test(test_lru_order),
        cmocka_unit_test(test_bad_input),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
