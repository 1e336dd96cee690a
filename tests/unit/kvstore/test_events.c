/* The store's event hook (docs/kv-spec.md "Events", the kvstore rules):
 * `stored` once per commit of a new hash (tier DRAM), `removed` only when
 * no tier can serve a block any more, `cleared` (DRAM, then DISK) on a
 * flush and nothing else then, and silence when a block only moves
 * between DRAM and disk (eviction of one copy, promotion on a pin). */
#include "kvs_test_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#define EV_MAX 256

typedef struct {
    bt_kvs_event_type_t type;
    bt_kvs_tier_t       tier;
    uint8_t             hash[BT_KV_HASH_LEN];
    uint8_t             parent[BT_KV_HASH_LEN];
} ev_rec_t;

typedef struct {
    ev_rec_t ev[EV_MAX];
    size_t   n;
} ev_log_t;

static void ev_cb(void *arg, const bt_kvs_event_t *e)
{
    ev_log_t *log = arg;
    ev_rec_t *r;

    assert_true(log->n < EV_MAX);
    r = &log->ev[log->n++];
    memset(r, 0, sizeof(*r));
    r->type = e->type;
    r->tier = e->tier;
    if (e->type == BT_KVS_EVENT_CLEARED) {
        assert_null(e->hash);
        return;
    }
    assert_non_null(e->hash);
    assert_non_null(e->parent);
    memcpy(r->hash, e->hash, BT_KV_HASH_LEN);
    memcpy(r->parent, e->parent, BT_KV_HASH_LEN);
}

/* A fixture whose store reports to `log` (restarted on its empty folder). */
static kt_fx_t *ev_fx(uint32_t slots, uint32_t disk_blocks, ev_log_t *log)
{
    kt_fx_t *fx = kt_fx_new(slots, disk_blocks);

    kt_fx_stop(fx);
    fx->event_cb = ev_cb;
    fx->event_arg = log;
    kt_fx_start(fx);
    memset(log, 0, sizeof(*log));
    return fx;
}

static size_t ev_count(const ev_log_t *log, bt_kvs_event_type_t type)
{
    size_t n = 0;

    for (size_t i = 0; i < log->n; i++) {
        n += log->ev[i].type == type;
    }
    return n;
}

static bool ev_has(const ev_log_t *log, bt_kvs_event_type_t type,
                   const uint8_t *hash)
{
    for (size_t i = 0; i < log->n; i++) {
        if (log->ev[i].type == type &&
            memcmp(log->ev[i].hash, hash, BT_KV_HASH_LEN) == 0) {
            return true;
        }
    }
    return false;
}

static bool block_servable(kt_fx_t *fx, const uint8_t *hash)
{
    size_t m = 0;

    assert_int_equal(bt_kvs_lookup(fx->s, hash, 1, NULL, 0, NULL, &m), BT_OK);
    return m == 1;
}

static void test_stored_on_commit(void **state)
{
    ev_log_t log;
    kt_fx_t *fx = ev_fx(8, 0, &log);
    bt_kvs_commit_result_t r;
    kt_chain_t c;

    (void)state;
    kt_chain_init(fx, &c, 4, 51);
    r = kt_put(fx, &c, 0, 3, -1);
    assert_int_equal(r.committed, 3);
    assert_int_equal(log.n, 3);
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(log.ev[i].type, BT_KVS_EVENT_STORED);
        assert_int_equal(log.ev[i].tier, BT_KVS_TIER_DRAM);
        assert_memory_equal(log.ev[i].hash, c.hash[i], BT_KV_HASH_LEN);
        assert_memory_equal(log.ev[i].parent, i == 0 ? c.root : c.hash[i - 1],
                            BT_KV_HASH_LEN);
    }
    /* already stored: reserved as "stored", no second event */
    r = kt_put(fx, &c, 0, 3, -1);
    assert_int_equal(log.n, 3);
    /* a block rejected at commit (checksum) is never announced */
    r = kt_put(fx, &c, 3, 1, 3);
    assert_int_equal(r.rejected, 1);
    assert_int_equal(log.n, 3);
    /* reserving is invisible, and so is an abort */
    {
        bt_kvs_slot_t slot;
        uint64_t id, exp;

        assert_int_equal(bt_kvs_reserve(fx->s, &fx->geom, fx->block_bytes,
                                        c.hash[2], c.hash[3], 1, &slot, &id,
                                        &exp), BT_OK);
        assert_int_equal(bt_kvs_abort(fx->s, id), BT_OK);
    }
    assert_int_equal(log.n, 3);
    kt_chain_free(&c);
    kt_fx_free(fx);
}

/* DRAM only: a block that loses its slot is gone, so it is removed. */
static void test_removed_on_dram_eviction_without_disk(void **state)
{
    ev_log_t log;
    kt_fx_t *fx = ev_fx(2, 0, &log);
    kt_chain_t c;

    (void)state;
    kt_chain_init(fx, &c, 3, 52);
    kt_put(fx, &c, 0, 1, -1);
    kt_put(fx, &c, 1, 1, -1);
    assert_int_equal(ev_count(&log, BT_KVS_EVENT_REMOVED), 0);
    kt_put(fx, &c, 2, 1, -1);   /* evicts block 0, the oldest */
    assert_int_equal(ev_count(&log, BT_KVS_EVENT_STORED), 3);
    assert_int_equal(ev_count(&log, BT_KVS_EVENT_REMOVED), 1);
    assert_true(ev_has(&log, BT_KVS_EVENT_REMOVED, c.hash[0]));
    assert_false(block_servable(fx, c.hash[0]));
    /* the removed event comes before the stored event of its evictor */
    assert_int_equal(log.ev[2].type, BT_KVS_EVENT_REMOVED);
    assert_int_equal(log.ev[3].type, BT_KVS_EVENT_STORED);
    assert_memory_equal(log.ev[2].parent, c.root, BT_KV_HASH_LEN);
    assert_int_equal(log.ev[2].tier, BT_KVS_TIER_DRAM);
    kt_chain_free(&c);
    kt_fx_free(fx);
}

/* With a disk tier: DRAM evictions (the file stays) and promotions back
 * into DRAM are silent; a block is removed only when its last copy goes,
 * and every removed block is one no lookup finds. */
static void test_dram_disk_moves_are_silent(void **state)
{
    ev_log_t log;
    kt_fx_t *fx = ev_fx(2, 3, &log);
    kt_chain_t c;
    kt_pin_t p;
    size_t n_missing = 0;

    (void)state;
    kt_chain_init(fx, &c, 5, 53);
    kt_put(fx, &c, 0, 1, -1);
    kt_put(fx, &c, 1, 1, -1);
    kt_put(fx, &c, 2, 1, -1);   /* block 0 leaves DRAM, stays on disk */
    kt_drain(fx);
    assert_int_equal(ev_count(&log, BT_KVS_EVENT_STORED), 3);
    assert_int_equal(ev_count(&log, BT_KVS_EVENT_REMOVED), 0);
    assert_true(block_servable(fx, c.hash[0]));
    /* a pin reads block 0 back from disk into DRAM (evicting block 1's
     * slot, whose file stays): still no event */
    p = kt_pin(fx, &c, 1, true);
    assert_int_equal(p.n, 1);
    assert_int_equal(bt_kvs_unpin(fx->s, p.pin_id), BT_OK);
    assert_int_equal(log.n, 3);
    /* two more blocks: the disk limit (3 files) and DRAM (2 slots) now
     * push the oldest blocks out of both tiers */
    kt_put(fx, &c, 3, 1, -1);
    kt_put(fx, &c, 4, 1, -1);
    kt_drain(fx);
    assert_int_equal(ev_count(&log, BT_KVS_EVENT_STORED), 5);
    for (size_t i = 0; i < 5; i++) {
        bool servable = block_servable(fx, c.hash[i]);

        assert_true(ev_has(&log, BT_KVS_EVENT_STORED, c.hash[i]));
        /* removed exactly when no tier serves it */
        assert_int_equal(ev_has(&log, BT_KVS_EVENT_REMOVED, c.hash[i]),
                         !servable);
        n_missing += !servable;
    }
    assert_true(n_missing >= 1);
    assert_int_equal(ev_count(&log, BT_KVS_EVENT_REMOVED), n_missing);
    kt_chain_free(&c);
    kt_fx_free(fx);
}

static void count_cb(void *arg, const bt_kvs_block_info_t *b)
{
    size_t *n = arg;

    assert_true(b->tier == BT_KVS_TIER_DRAM || b->tier == BT_KVS_TIER_DISK);
    (*n)++;
}

/* A flush: both tiers emptied, files deleted, CLEARED for DRAM and DISK
 * and no REMOVED; a pinned block stays readable until unpinned. */
static void test_cleared_on_flush(void **state)
{
    ev_log_t log;
    kt_fx_t *fx = ev_fx(4, 16, &log);
    bt_kvs_stats_t st;
    kt_chain_t c;
    kt_pin_t p;
    size_t n = 0;

    (void)state;
    kt_chain_init(fx, &c, 6, 54);
    kt_put(fx, &c, 0, 3, -1);
    kt_put(fx, &c, 3, 3, -1);   /* 4 in DRAM (and on disk), 2 disk only */
    kt_drain(fx);
    assert_int_equal(kt_count_files(fx), 6);
    assert_int_equal(bt_kvs_foreach(fx->s, count_cb, &n), 6);
    assert_int_equal(n, 6);
    p = kt_pin(fx, &c, 2, false);
    assert_int_equal(p.n, 2);
    memset(&log, 0, sizeof(log));
    assert_int_equal(bt_kvs_flush(fx->s), 6);
    assert_int_equal(log.n, 2);
    assert_int_equal(log.ev[0].type, BT_KVS_EVENT_CLEARED);
    assert_int_equal(log.ev[0].tier, BT_KVS_TIER_DRAM);
    assert_int_equal(log.ev[1].type, BT_KVS_EVENT_CLEARED);
    assert_int_equal(log.ev[1].tier, BT_KVS_TIER_DISK);
    assert_int_equal(kt_lookup(fx, &c, 6), 0);
    n = 0;
    assert_int_equal(bt_kvs_foreach(fx->s, count_cb, &n), 0);
    kt_drain(fx);
    assert_int_equal(kt_count_files(fx), 0);
    bt_kvs_stats(fx->s, &st);
    assert_int_equal(st.disk.blocks, 0);
    assert_int_equal(st.disk.used_bytes, 0);
    assert_int_equal(st.dram.blocks, 0);
    /* the pinned slots are still held; unpinning frees them */
    assert_int_equal(bt_kvs_unpin(fx->s, p.pin_id), BT_OK);
    bt_kvs_stats(fx->s, &st);
    assert_int_equal(st.dram.used_bytes, 0);
    /* the store takes new blocks after a flush, and announces them */
    kt_put(fx, &c, 0, 2, -1);
    assert_int_equal(ev_count(&log, BT_KVS_EVENT_STORED), 2);
    assert_int_equal(ev_count(&log, BT_KVS_EVENT_REMOVED), 0);
    assert_int_equal(kt_lookup(fx, &c, 6), 2);
    kt_chain_free(&c);
    kt_fx_free(fx);
}

/* Blocks rebuilt from disk at start are not events but foreach lists
 * them, on tier DISK. */
static void test_restart_reports_nothing_lists_all(void **state)
{
    ev_log_t log;
    kt_fx_t *fx = ev_fx(8, 16, &log);
    kt_chain_t c;
    size_t n = 0;

    (void)state;
    kt_chain_init(fx, &c, 5, 55);
    kt_put(fx, &c, 0, 5, -1);
    kt_fx_stop(fx);
    memset(&log, 0, sizeof(log));
    kt_fx_start(fx);
    assert_int_equal(log.n, 0);
    assert_int_equal(bt_kvs_foreach(fx->s, count_cb, &n), 5);
    assert_int_equal(n, 5);
    kt_chain_free(&c);
    kt_fx_free(fx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stored_on_commit),
        cmocka_unit_test(test_removed_on_dram_eviction_without_disk),
        cmocka_unit_test(test_dram_disk_moves_are_silent),
        cmocka_unit_test(test_cleared_on_flush),
        cmocka_unit_test(test_restart_reports_nothing_lists_all),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
