#include "kvs_test_util.h"

#include "base/loop.h"
#include "base/sha256.h"
#include "store/disk.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <cmocka.h>

static uint64_t kt_clock(void *arg)
{
    return ((kt_fx_t *)arg)->now;
}

void kt_fx_start(kt_fx_t *fx)
{
    bt_kvs_config_t cfg = {
        .slab = fx->slab, .slab_len = fx->slab_len,
        .disk_dir = fx->dir[0] != '\0' ? fx->dir : NULL,
        .disk_bytes = fx->disk_bytes,
        .reserve_ms = 1000, .pin_ms = 2000, .max_pin_ms = 10000,
        .now_ms = kt_clock, .clock_arg = fx,
        .event_cb = fx->event_cb, .event_arg = fx->event_arg,
    };

    fx->io = bt_tpool_create(fx->base, 2, 1024);
    assert_non_null(fx->io);
    cfg.io = fx->io;
    assert_int_equal(bt_kvs_create(&cfg, &fx->s), BT_OK);
}

kt_fx_t *kt_fx_new(uint32_t slots, uint32_t disk_blocks)
{
    kt_fx_t *fx = calloc(1, sizeof(*fx));

    assert_non_null(fx);
    fx->base = bt_loop_create();
    fx->geom = (bt_kv_geom_t){ 2, 1, 8, KT_BLOCK_TOKENS, BT_KV_DTYPE_F32 };
    fx->block_bytes = bt_kv_geom_block_bytes(&fx->geom);
    assert_int_equal(fx->block_bytes, 2 * 2 * KT_BLOCK_TOKENS * 8 * 4);
    fx->slab_len = slots * fx->block_bytes;
    fx->slab = malloc(fx->slab_len > 0 ? fx->slab_len : 1);
    assert_non_null(fx->slab);
    fx->now = 1000;
    if (disk_blocks > 0) {
        snprintf(fx->dir, sizeof(fx->dir), "/tmp/kvs-test-XXXXXX");
        assert_non_null(mkdtemp(fx->dir));
        fx->disk_bytes = disk_blocks *
                         bt_kvs_file_size(KT_BLOCK_TOKENS, fx->block_bytes);
    }
    kt_fx_start(fx);
    return fx;
}

void kt_fx_stop(kt_fx_t *fx)
{
    bt_tpool_destroy(fx->io);
    bt_kvs_destroy(fx->s);
    fx->io = NULL;
    fx->s = NULL;
}

static void kt_rm_rf(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;

    if (d == NULL) {
        return;
    }
    while ((de = readdir(d)) != NULL) {
        char p[1024];

        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) {
            continue;
        }
        snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
        if (unlink(p) != 0) {
            kt_rm_rf(p);
        }
    }
    closedir(d);
    rmdir(dir);
}

void kt_fx_free(kt_fx_t *fx)
{
    kt_fx_stop(fx);
    if (fx->dir[0] != '\0') {
        kt_rm_rf(fx->dir);
    }
    event_base_free(fx->base);
    free(fx->slab);
    free(fx);
}

void kt_chain_init(kt_fx_t *fx, kt_chain_t *c, size_t n, uint32_t seed)
{
    uint32_t x = seed * 2654435761u + 1;

    assert_true(n <= KT_MAX_BLOCKS);
    memset(c, 0, sizeof(*c));
    c->n = n;
    bt_sha256(&seed, sizeof(seed), c->root);
    for (size_t i = 0; i < n; i++) {
        for (int t = 0; t < KT_BLOCK_TOKENS; t++) {
            x = x * 1103515245u + 12345u;
            c->tokens[i][t] = x >> 8;
        }
        assert_int_equal(bt_kv_hash_block(i == 0 ? c->root : c->hash[i - 1],
                                          c->tokens[i], KT_BLOCK_TOKENS,
                                           c->hash[i]), BT_OK);
        c->data[i] = malloc(fx->block_bytes);
        assert_non_null(c->data[i]);
        for (size_t b = 0; b < fx->block_bytes; b++) {
            x = x * 1103515245u + 12345u;
            c->data[i][b] = (uint8_t)(x >> 16);
        }
    }
}

void kt_chain_free(kt_chain_t *c)
{
    for (size_t i = 0; i < c->n; i++) {
        free(c->data[i]);
    }
}

void kt_wait(kt_fx_t *fx, const bool *flag)
{
    for (int i = 0; !*flag && i < 100000; i++) {
        event_base_loop(fx->base, EVLOOP_ONCE);
    }
    assert_true(*flag);
}

void kt_drain(kt_fx_t *fx)
{
    for (int i = 0; bt_tpool_pending(fx->io) > 0 && i < 100000; i++) {
        event_base_loop(fx->base, EVLOOP_ONCE);
    }
    assert_int_equal(bt_tpool_pending(fx->io), 0);
}

typedef struct {
    bool                   done;
    bt_status_t            status;
    bt_kvs_commit_result_t r;
    kt_pin_t               pin;
} kt_wait_t;

static void kt_commit_cb(void *arg, bt_status_t status,
                         const bt_kvs_commit_result_t *r)
{
    kt_wait_t *w = arg;

    w->status = status;
    w->r = *r;
    w->done = true;
}

bt_kvs_commit_result_t kt_put(kt_fx_t *fx, const kt_chain_t *c, size_t from,
                              size_t n, int bad)
{
    bt_kvs_slot_t slots[KT_MAX_BLOCKS];
    bt_kvs_commit_block_t blocks[KT_MAX_BLOCKS];
    uint64_t id, expiry;
    size_t k = 0;

    assert_int_equal(bt_kvs_reserve(fx->s, &fx->geom, fx->block_bytes,
                                    from == 0 ? c->root : c->hash[from - 1],
                                    c->hash[from], n, slots, &id, &expiry),
                     BT_OK);
    for (size_t i = 0; i < n; i++) {
        if (slots[i].stored) {
            continue;
        }
        assert_int_equal(slots[i].length, fx->block_bytes);
        memcpy(fx->slab + slots[i].offset, c->data[from + i], fx->block_bytes);
        memcpy(blocks[k].hash, c->hash[from + i], BT_KV_HASH_LEN);
        blocks[k].tokens = c->tokens[from + i];
        blocks[k].n_tokens = KT_BLOCK_TOKENS;
        bt_sha256(c->data[from + i], fx->block_bytes, blocks[k].checksum);
        if ((int)(from + i) == bad) {
            fx->slab[slots[i].offset + 7] ^= 0x40;
        }
        k++;
    }
    return kt_commit(fx, id, blocks, k);
}

bt_kvs_commit_result_t kt_commit(kt_fx_t *fx, uint64_t id,
                                 const bt_kvs_commit_block_t *b, size_t n)
{
    kt_wait_t w = { 0 };

    assert_int_equal(bt_kvs_commit(fx->s, id, b, n, kt_commit_cb, &w),
                     BT_IN_PROGRESS);
    assert_false(w.done);
    kt_wait(fx, &w.done);
    assert_int_equal(w.status, BT_OK);
    return w.r;
}

size_t kt_lookup(kt_fx_t *fx, const kt_chain_t *c, size_t n)
{
    size_t m = 0;

    assert_int_equal(bt_kvs_lookup(fx->s, c->hash[0], n, NULL, 0, NULL, &m), BT_OK);
    return m;
}

static void kt_pin_cb(void *arg, bt_status_t status,
                      const bt_kvs_pin_result_t *r)
{
    kt_wait_t *w = arg;

    w->pin.status = status;
    w->pin.pin_id = r->pin_id;
    w->pin.n = r->n_pinned;
    memcpy(w->pin.info, r->blocks, r->n_pinned * sizeof(*r->blocks));
    w->done = true;
}

kt_pin_t kt_pin(kt_fx_t *fx, const kt_chain_t *c, size_t n, bool verify)
{
    kt_wait_t w = { 0 };

    assert_int_equal(bt_kvs_pin(fx->s, c->hash[0], n, NULL, 0, 0, kt_pin_cb, &w),
                     BT_IN_PROGRESS);
    assert_false(w.done);    /* never inside the call */
    kt_wait(fx, &w.done);
    for (size_t i = 0; verify && i < w.pin.n; i++) {
        const bt_kvs_block_info_t *b = &w.pin.info[i];
        uint8_t sum[BT_KV_HASH_LEN];

        assert_int_equal(b->tier, BT_KVS_TIER_DRAM);
        assert_memory_equal(b->hash, c->hash[i], BT_KV_HASH_LEN);
        assert_memory_equal(b->parent, i == 0 ? c->root : c->hash[i - 1],
                            BT_KV_HASH_LEN);
        assert_true(bt_kv_tokens_match(b->tokens, b->n_tokens, c->tokens[i],
                                       KT_BLOCK_TOKENS));
        assert_memory_equal(fx->slab + b->offset, c->data[i], fx->block_bytes);
        bt_sha256(c->data[i], fx->block_bytes, sum);
        assert_memory_equal(b->checksum, sum, BT_KV_HASH_LEN);
    }
    return w.pin;
}

size_t kt_count_files(const kt_fx_t *fx)
{
    DIR *top = opendir(fx->dir), *d;
    struct dirent *de, *fe;
    size_t n = 0;

    assert_non_null(top);
    while ((de = readdir(top)) != NULL) {
        char sub[600];

        if (de->d_name[0] == '.') {
            continue;
        }
        snprintf(sub, sizeof(sub), "%s/%s", fx->dir, de->d_name);
        d = opendir(sub);
        if (d == NULL) {
            continue;
        }
        while ((fe = readdir(d)) != NULL) {
            size_t l = strlen(fe->d_name);

            n += l > 4 && strcmp(fe->d_name + l - 4, ".blk") == 0;
        }
        closedir(d);
    }
    closedir(top);
    return n;
}

void kt_block_path(const kt_fx_t *fx, const uint8_t *hash, char *out, size_t n)
{
    bt_kvs_file_path(fx->dir, hash, out, n);
}
