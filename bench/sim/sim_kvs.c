/* The real kvstore block store, driven synchronously (sim_kvs.h): each
 * asynchronous call (commit, pin) runs the store's own event loop until
 * its callback came. */
#include "sim_kvs.h"

#include "base/log.h"
#include "base/sha256.h"
#include "base/tpool.h"
#include "store.h"

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

struct bt_sim_kvs {
    struct event_base *base;
    bt_tpool_t        *io;
    bt_kvs_t          *store;
    void              *slab;
    bt_kv_geom_t       geom;
    uint64_t           block_bytes;
    uint8_t            zero_sum[BT_SHA256_LEN];  /* sha256 of a zero block */
    bt_sim_kvs_ev_cb   ev;
    void              *ev_arg;
    bool               done;
    bt_kvs_pin_result_t pin;
    uint64_t           pin_id;
};

static void kvs_event(void *arg, const bt_kvs_event_t *e)
{
    bt_sim_kvs_t *k = arg;

    if (e->type == BT_KVS_EVENT_STORED || e->type == BT_KVS_EVENT_REMOVED) {
        k->ev(k->ev_arg, e->type == BT_KVS_EVENT_STORED, e->hash);
    }
}

bt_sim_kvs_t *bt_sim_kvs_create(uint64_t blocks, uint32_t block_size,
                                uint64_t (*now_ms)(void *arg), void *clock_arg,
                                bt_sim_kvs_ev_cb ev, void *ev_arg)
{
    bt_sim_kvs_t *k = calloc(1, sizeof(*k));
    bt_kvs_config_t cfg;
    void *zero;

    if (k == NULL) {
        return NULL;
    }
    k->geom = (bt_kv_geom_t){1, 1, 1, block_size, BT_KV_DTYPE_F32};
    k->block_bytes = bt_kv_geom_block_bytes(&k->geom);
    k->ev = ev;
    k->ev_arg = ev_arg;
    k->base = event_base_new();
    k->io = k->base != NULL ? bt_tpool_create(k->base, 1, 64) : NULL;
    k->slab = k->block_bytes > 0 ? calloc(blocks, k->block_bytes) : NULL;
    zero = k->block_bytes > 0 ? calloc(1, k->block_bytes) : NULL;
    if (k->io == NULL || k->slab == NULL || zero == NULL ||
        bt_sha256(zero, k->block_bytes, k->zero_sum) != BT_OK) {
        free(zero);
        bt_sim_kvs_destroy(k);
        return NULL;
    }
    free(zero);
    memset(&cfg, 0, sizeof(cfg));
    cfg.slab = k->slab;
    cfg.slab_len = blocks * k->block_bytes;
    cfg.reserve_ms = 60000;
    cfg.pin_ms = 60000;
    cfg.io = k->io;
    cfg.now_ms = now_ms;
    cfg.clock_arg = clock_arg;
    cfg.event_cb = kvs_event;
    cfg.event_arg = k;
    if (bt_kvs_create(&cfg, &k->store) != BT_OK) {
        bt_sim_kvs_destroy(k);
        return NULL;
    }
    return k;
}

void bt_sim_kvs_destroy(bt_sim_kvs_t *k)
{
    if (k == NULL) {
        return;
    }
    bt_tpool_destroy(k->io);   /* before the store: its callbacks use it */
    bt_kvs_destroy(k->store);
    if (k->base != NULL) {
        event_base_free(k->base);
    }
    free(k->slab);
    free(k);
}

static void kvs_wait(bt_sim_kvs_t *k)
{
    /* bounded: a store callback always comes (the worker finishes) */
    while (!k->done) {
        event_base_loop(k->base, EVLOOP_ONCE);
    }
}

static void kvs_pin_cb(void *arg, bt_status_t status,
                       const bt_kvs_pin_result_t *r)
{
    bt_sim_kvs_t *k = arg;

    k->pin.n_pinned = status == BT_OK ? r->n_pinned : 0;
    k->pin_id = status == BT_OK ? r->pin_id : 0;
    k->done = true;
}

size_t bt_sim_kvs_fetch(bt_sim_kvs_t *k, const uint8_t *hashes, size_t n)
{
    size_t got;

    if (n == 0) {
        return 0;
    }
    n = n > BT_KV_MAX_HASHES ? BT_KV_MAX_HASHES : n;
    k->done = false;
    /* BT_IN_PROGRESS: the callback follows (also for 0 blocks) */
    if (bt_kvs_pin(k->store, hashes, n, NULL, 0, 0, kvs_pin_cb, k) !=
        BT_IN_PROGRESS) {
        return 0;
    }
    kvs_wait(k);
    got = k->pin.n_pinned;
    if (k->pin_id != 0) {
        bt_kvs_unpin(k->store, k->pin_id);
    }
    return got;
}

static void kvs_commit_cb(void *arg, bt_status_t status,
                          const bt_kvs_commit_result_t *r)
{
    bt_sim_kvs_t *k = arg;

    (void)status;
    (void)r;
    k->done = true;
}

void bt_sim_kvs_put(bt_sim_kvs_t *k, const uint8_t *root,
                    const uint8_t *hashes, size_t from, size_t n,
                    const uint32_t *tokens)
{
    const uint32_t bs = k->geom.block_size;
    bt_kvs_slot_t *slots;
    bt_kvs_commit_block_t *blocks;
    uint64_t id, expiry;
    size_t m = 0, cnt;

    if (from >= n) {
        return;
    }
    cnt = n - from > BT_KV_MAX_HASHES ? BT_KV_MAX_HASHES : n - from;
    slots = calloc(cnt, sizeof(*slots));
    blocks = calloc(cnt, sizeof(*blocks));
    if (slots == NULL || blocks == NULL ||
        bt_kvs_reserve(k->store, &k->geom, k->block_bytes,
                       from == 0 ? root : hashes + (from - 1) * BT_KV_HASH_LEN,
                       hashes + from * BT_KV_HASH_LEN, cnt, slots, &id,
                       &expiry) != BT_OK) {
        /* no room (every block pinned): the put is dropped, as a node's */
        free(slots);
        free(blocks);
        return;
    }
    for (size_t i = 0; i < cnt; i++) {
        bt_kvs_commit_block_t *b = &blocks[m];

        if (slots[i].stored) {
            continue;
        }
        memcpy(b->hash, hashes + (from + i) * BT_KV_HASH_LEN, BT_KV_HASH_LEN);
        b->tokens = tokens + (from + i) * bs;
        b->n_tokens = bs;
        memcpy(b->checksum, k->zero_sum, BT_KV_HASH_LEN);
        m++;
    }
    k->done = false;
    if (bt_kvs_commit(k->store, id, blocks, m, kvs_commit_cb, k) == BT_IN_PROGRESS) {
        kvs_wait(k);
    } else {
        bt_kvs_abort(k->store, id);
    }
    free(slots);
    free(blocks);
}

uint64_t bt_sim_kvs_evictions(const bt_sim_kvs_t *k)
{
    bt_kvs_stats_t st;

    bt_kvs_stats(k->store, &st);
    return st.dram.evictions;
}
