/* The disk tier: write-through on commit, rebuild after a restart
 * (destroy + create on the same folder), promotion of disk-only blocks on
 * pin, the disk byte limit, and corrupt / truncated / misnamed files
 * dropped (at start and on a read) and never served; group commit of
 * many block files. */
#include "kvs_test_util.h"

#include "store/disk.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

static void flip_byte(const char *path, off_t off_from_end)
{
    int fd = open(path, O_RDWR);
    struct stat st;
    uint8_t b;

    assert_true(fd >= 0);
    assert_int_equal(fstat(fd, &st), 0);
    assert_int_equal(pread(fd, &b, 1, st.st_size - off_from_end), 1);
    b ^= 0x01;
    assert_int_equal(pwrite(fd, &b, 1, st.st_size - off_from_end), 1);
    close(fd);
}

static void test_restart_serves_committed(void **state)
{
    kt_fx_t *fx = kt_fx_new(8, 32);
    bt_kvs_block_info_t info[6];
    bt_kvs_commit_result_t r;
    bt_kvs_stats_t st;
    kt_chain_t c;
    kt_pin_t p;
    size_t m;

    (void)state;
    kt_chain_init(fx, &c, 6, 21);
    r = kt_put(fx, &c, 0, 6, -1);
    assert_int_equal(r.committed, 6);
    assert_int_equal(r.durable, 6);
    assert_int_equal(kt_count_files(fx), 6);
    bt_kvs_stats(fx->s, &st);
    assert_int_equal(st.disk.blocks, 6);
    assert_int_equal(st.disk.used_bytes, 6 * bt_kvs_file_size(KT_BLOCK_TOKENS,
                                                              fx->block_bytes));
    /* restart: the slab is wiped, only the files remain */
    kt_fx_stop(fx);
    memset(fx->slab, 0, fx->slab_len);
    kt_fx_start(fx);
    assert_true(bt_kvs_geometry(fx->s, NULL, NULL));
    assert_int_equal(bt_kvs_lookup(fx->s, c.hash[0], 6, NULL, 0, info, &m), BT_OK);
    assert_int_equal(m, 6);
    for (int i = 0; i < 6; i++) {
        assert_int_equal(info[i].tier, BT_KVS_TIER_DISK);
        assert_true(bt_kv_tokens_match(info[i].tokens, info[i].n_tokens,
                                       c.tokens[i], KT_BLOCK_TOKENS));
    }
    /* a pin reads them back into DRAM, byte for byte */
    p = kt_pin(fx, &c, 6, true);
    assert_int_equal(p.n, 6);
    bt_kvs_stats(fx->s, &st);
    assert_int_equal(st.dram.blocks, 6);
    assert_int_equal(st.disk.blocks, 6);
    assert_int_equal(st.corrupt_files, 0);
    assert_int_equal(bt_kvs_unpin(fx->s, p.pin_id), BT_OK);
    /* a second pin of DRAM blocks needs no read */
    p = kt_pin(fx, &c, 6, true);
    assert_int_equal(p.n, 6);
    kt_chain_free(&c);
    kt_fx_free(fx);
}

static void test_dram_eviction_keeps_disk_copy(void **state)
{
    kt_fx_t *fx = kt_fx_new(2, 16);
    kt_chain_t c;
    kt_pin_t p;
    bt_kvs_stats_t st;

    (void)state;
    kt_chain_init(fx, &c, 6, 22);
    /* two slots: the chain goes in two blocks at a time */
    for (size_t i = 0; i < 6; i += 2) {
        assert_int_equal(kt_put(fx, &c, i, 2, -1).durable, 2);
    }
    bt_kvs_stats(fx->s, &st);
    assert_int_equal(st.dram.blocks, 2);
    assert_int_equal(st.dram.evictions, 4);
    assert_int_equal(st.disk.blocks, 6);
    assert_int_equal(kt_lookup(fx, &c, 6), 6);
    /* only two fit in DRAM at once: the pin's prefix ends there */
    p = kt_pin(fx, &c, 6, true);
    assert_int_equal(p.n, 2);
    assert_int_equal(bt_kvs_unpin(fx->s, p.pin_id), BT_OK);
    kt_chain_free(&c);
    kt_fx_free(fx);
}

static void test_disk_byte_limit(void **state)
{
    kt_fx_t *fx = kt_fx_new(16, 3);
    kt_chain_t c[5];
    bt_kvs_stats_t st;

    (void)state;
    for (int i = 0; i < 5; i++) {
        kt_chain_init(fx, &c[i], 1, 30 + (uint32_t)i);
        assert_int_equal(kt_put(fx, &c[i], 0, 1, -1).durable, 1);
    }
    kt_drain(fx);
    bt_kvs_stats(fx->s, &st);
    assert_int_equal(st.disk.blocks, 3);
    assert_int_equal(st.disk.evictions, 2);
    assert_true(st.disk.used_bytes <= st.disk.capacity_bytes);
    assert_int_equal(kt_count_files(fx), 3);
    /* still in DRAM, so all five are served until DRAM evicts them */
    for (int i = 0; i < 5; i++) {
        assert_int_equal(kt_lookup(fx, &c[i], 1), 1);
    }
    /* after a restart only the newest three are left */
    kt_fx_stop(fx);
    kt_fx_start(fx);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(kt_lookup(fx, &c[i], 1), i >= 2 ? 1 : 0);
    }
    for (int i = 0; i < 5; i++) {
        kt_chain_free(&c[i]);
    }
    kt_fx_free(fx);
}

static void test_corrupt_files_dropped_at_start(void **state)
{
    kt_fx_t *fx = kt_fx_new(8, 32);
    char path[4300], bad[4400];
    bt_kvs_stats_t st;
    kt_chain_t c, d, e;
    kt_pin_t p;

    (void)state;
    kt_chain_init(fx, &c, 4, 41);
    kt_chain_init(fx, &d, 2, 42);
    kt_chain_init(fx, &e, 1, 43);
    kt_put(fx, &c, 0, 4, -1);
    kt_put(fx, &d, 0, 2, -1);
    kt_put(fx, &e, 0, 1, -1);
    kt_fx_stop(fx);
    /* one data byte of c[2], d[1] cut short, e[0] under another name, a
     * stray temporary */
    kt_block_path(fx, c.hash[2], path, sizeof(path));
    flip_byte(path, 10);
    kt_block_path(fx, d.hash[1], path, sizeof(path));
    assert_int_equal(truncate(path, 100), 0);
    kt_block_path(fx, e.hash[0], path, sizeof(path));
    snprintf(bad, sizeof(bad), "%s", path);
    memcpy(strrchr(bad, '/') + 1, "00", 2);
    assert_int_equal(rename(path, bad), 0);
    snprintf(bad, sizeof(bad), "%s.tmp.7", path);
    assert_int_equal(close(open(bad, O_CREAT | O_WRONLY, 0644)), 0);
    kt_fx_start(fx);
    bt_kvs_stats(fx->s, &st);
    assert_int_equal(st.corrupt_files, 3);
    assert_int_equal(st.disk.blocks, 3 + 1);
    assert_int_equal(kt_count_files(fx), 4);
    /* the corrupt block and the chain after it miss; the rest hit */
    assert_int_equal(kt_lookup(fx, &c, 4), 2);
    assert_int_equal(kt_lookup(fx, &d, 2), 1);
    assert_int_equal(kt_lookup(fx, &e, 1), 0);
    p = kt_pin(fx, &c, 4, true);
    assert_int_equal(p.n, 2);
    kt_chain_free(&c);
    kt_chain_free(&d);
    kt_chain_free(&e);
    kt_fx_free(fx);
}

static void test_corrupt_file_dropped_on_read(void **state)
{
    kt_fx_t *fx = kt_fx_new(8, 32);
    char path[4300];
    bt_kvs_stats_t st;
    kt_chain_t c;
    kt_pin_t p;

    (void)state;
    kt_chain_init(fx, &c, 3, 51);
    kt_put(fx, &c, 0, 3, -1);
    kt_fx_stop(fx);
    kt_fx_start(fx);
    /* the index was built from good files; now one goes bad under it */
    kt_block_path(fx, c.hash[1], path, sizeof(path));
    flip_byte(path, 1);
    assert_int_equal(kt_lookup(fx, &c, 3), 3);
    p = kt_pin(fx, &c, 3, true);
    assert_int_equal(p.n, 1);
    kt_drain(fx);
    bt_kvs_stats(fx->s, &st);
    assert_int_equal(st.corrupt_files, 1);
    assert_int_equal(access(path, F_OK), -1);
    assert_int_equal(kt_lookup(fx, &c, 3), 1);
    /* a re-put of the same block is accepted and durable again */
    assert_int_equal(kt_put(fx, &c, 1, 2, -1).committed, 1);  /* block 2 is still stored */
    assert_int_equal(bt_kvs_unpin(fx->s, p.pin_id), BT_OK);
    kt_fx_stop(fx);
    kt_fx_start(fx);
    assert_int_equal(kt_lookup(fx, &c, 3), 3);
    p = kt_pin(fx, &c, 3, true);
    assert_int_equal(p.n, 3);
    kt_chain_free(&c);
    kt_fx_free(fx);
}

typedef struct {
    bool   done;
    size_t n;
    uint64_t pin_id;
} pin_wait_t;

static void pin_cb(void *arg, bt_status_t st, const bt_kvs_pin_result_t *r)
{
    pin_wait_t *w = arg;

    assert_int_equal(st, BT_OK);
    w->n = r->n_pinned;
    w->pin_id = r->pin_id;
    w->done = true;
}

/* Two pins of the same disk-only blocks at once: the second waits for the
 * first one's read instead of reading again; a file found corrupt by that
 * read ends both prefixes. */
static void test_concurrent_pins_share_a_read(void **state)
{
    kt_fx_t *fx = kt_fx_new(8, 32);
    pin_wait_t a = { 0 }, b = { 0 };
    bt_kvs_stats_t st;
    char path[4300];
    kt_chain_t c;

    (void)state;
    kt_chain_init(fx, &c, 4, 71);
    kt_put(fx, &c, 0, 4, -1);
    kt_fx_stop(fx);
    kt_fx_start(fx);
    kt_block_path(fx, c.hash[2], path, sizeof(path));
    flip_byte(path, 3);
    assert_int_equal(bt_kvs_pin(fx->s, c.hash[0], 4, NULL, 0, 0, pin_cb, &a),
                     BT_IN_PROGRESS);
    assert_int_equal(bt_kvs_pin(fx->s, c.hash[0], 4, NULL, 0, 0, pin_cb, &b),
                     BT_IN_PROGRESS);
    kt_wait(fx, &a.done);
    kt_wait(fx, &b.done);
    assert_int_equal(a.n, 2);
    assert_int_equal(b.n, 2);
    kt_drain(fx);
    bt_kvs_stats(fx->s, &st);
    assert_int_equal(st.corrupt_files, 1);
    assert_int_equal(st.active_pins, 2);
    /* 0, 1 and 3 were read once each (3 stays cached, unpinned); the
     * corrupt block's slot went back */
    assert_int_equal(st.dram.blocks, 3);
    assert_int_equal(st.dram.used_bytes, 3 * fx->block_bytes);
    assert_int_equal(bt_kvs_unpin(fx->s, a.pin_id), BT_OK);
    assert_int_equal(bt_kvs_unpin(fx->s, b.pin_id), BT_OK);
    assert_int_equal(kt_lookup(fx, &c, 4), 2);
    kt_chain_free(&c);
    kt_fx_free(fx);
}

static void test_file_read_rejects_every_cut(void **state)
{
    kt_fx_t *fx = kt_fx_new(4, 8);
    char path[4300], cut[4400];
    bt_kvs_file_meta_t m;
    uint8_t *buf;
    FILE *f;
    long size;
    kt_chain_t c;

    (void)state;
    kt_chain_init(fx, &c, 1, 61);
    kt_put(fx, &c, 0, 1, -1);
    kt_block_path(fx, c.hash[0], path, sizeof(path));
    assert_int_equal(bt_kvs_file_read(path, NULL, fx->block_bytes, &m), BT_OK);
    free(m.tokens);
    f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    size = ftell(f);
    rewind(f);
    buf = malloc((size_t)size);
    assert_int_equal(fread(buf, 1, (size_t)size, f), (size_t)size);
    fclose(f);
    snprintf(cut, sizeof(cut), "%s/cut", fx->dir);
    /* every length short of the whole file, and one byte too many */
    for (long n = 0; n <= size; n += (n < 256 ? 1 : 97)) {
        long len = n == size ? size + 1 : n;

        f = fopen(cut, "wb");
        fwrite(buf, 1, (size_t)(len > size ? size : len), f);
        if (len > size) {
            fputc(0, f);
        }
        fclose(f);
        assert_true(bt_kvs_file_read(cut, NULL, 0, &m) < 0);
    }
    /* every header byte flipped */
    for (long i = 0; i < size && i < 300; i++) {
        buf[i] ^= 0x80;
        f = fopen(cut, "wb");
        fwrite(buf, 1, (size_t)size, f);
        fclose(f);
        assert_true(bt_kvs_file_read(cut, NULL, 0, &m) < 0);
        buf[i] ^= 0x80;
    }
    unlink(cut);
    free(buf);
    kt_chain_free(&c);
    kt_fx_free(fx);
}

/* Group commit: more blocks than one group, each durable and readable
 * under its name, no temporary left; a block whose folder cannot be made
 * fails alone. */
static void test_group_write(void **state)
{
    enum { N = BT_KVS_GROUP_MAX + 6, TOK = 4, LEN = 256 };
    char dir[] = "/tmp/bt-kvs-group-XXXXXX", path[BT_KVS_PATH_MAX];
    bt_kvs_file_meta_t *m = calloc(N, sizeof(*m));
    const void **data = calloc(N, sizeof(*data));
    uint8_t (*bytes)[LEN] = calloc(N, LEN);
    uint32_t tokens[N][TOK];
    bool ok[N];
    size_t bad = 17, n_tmp = 0;
    FILE *ls;

    (void)state;
    assert_non_null(mkdtemp(dir));
    assert_true(m != NULL && data != NULL && bytes != NULL);
    for (size_t i = 0; i < N; i++) {
        for (uint32_t t = 0; t < TOK; t++) {
            tokens[i][t] = (uint32_t)(i * TOK + t);
        }
        memset(bytes[i], (int)i, LEN);
        m[i].geom = (bt_kv_geom_t){ 1, 1, 8, TOK, BT_KV_DTYPE_F32 };  /* LEN bytes */
        if (i > 0) {
            memcpy(m[i].parent, m[i - 1].hash, BT_KV_HASH_LEN);
        }
        assert_int_equal(bt_kv_hash_block(m[i].parent, tokens[i], TOK,
                                          m[i].hash), BT_OK);
        bt_sha256(bytes[i], LEN, m[i].checksum);
        m[i].data_len = LEN;
        m[i].gen = i + 1;
        m[i].n_tokens = TOK;
        m[i].tokens = tokens[i];
        data[i] = bytes[i];
    }
    /* a plain file where block `bad`'s folder must go */
    bt_kvs_file_dir(dir, m[bad].hash, path, sizeof(path));
    for (size_t i = 0; i < N; i++) {
        char other[BT_KVS_PATH_MAX];

        bt_kvs_file_dir(dir, m[i].hash, other, sizeof(other));
        if (i != bad && strcmp(other, path) == 0) {
            bad = N;   /* shares a folder with a good block: no failure */
        }
    }
    if (bad < N) {
        FILE *f = fopen(path, "w");

        assert_non_null(f);
        fclose(f);
    }
    assert_int_equal(bt_kvs_files_write(dir, m, data, N, ok),
                     bad < N ? N - 1 : N);
    for (size_t i = 0; i < N; i++) {
        bt_kvs_file_meta_t back;
        uint8_t got[LEN];

        assert_int_equal(ok[i], i != bad);
        if (i == bad) {
            continue;
        }
        bt_kvs_file_path(dir, m[i].hash, path, sizeof(path));
        assert_int_equal(bt_kvs_file_read(path, got, LEN, &back), BT_OK);
        assert_memory_equal(got, bytes[i], LEN);
        assert_int_equal(back.gen, i + 1);
        free(back.tokens);
    }
    snprintf(path, sizeof(path), "find %s -name '*.tmp.*'", dir);
    ls = popen(path, "r");
    assert_non_null(ls);
    while (fgets(path, sizeof(path), ls) != NULL) {
        n_tmp++;
    }
    pclose(ls);
    assert_int_equal(n_tmp, 0);
    snprintf(path, sizeof(path), "rm -rf %s", dir);
    assert_int_equal(system(path), 0);
    free(m);
    free(data);
    free(bytes);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_restart_serves_committed),
        cmocka_unit_test(test_dram_eviction_keeps_disk_copy),
        cmocka_unit_test(test_disk_byte_limit),
        cmocka_unit_test(test_corrupt_files_dropped_at_start),
        cmocka_unit_test(test_corrupt_file_dropped_on_read),
        cmocka_unit_test(test_concurrent_pins_share_a_read),
        cmocka_unit_test(test_file_read_rejects_every_cut),
        cmocka_unit_test(test_group_write),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
