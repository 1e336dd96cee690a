/* libFuzzer: the kvstore's disk-tier rebuild at start (kvstore/store/
 * store_disk.c): every file under the disk folder is read and checked,
 * good ones are indexed, bad ones deleted, and the tier is trimmed to its
 * byte limit. The input is a folder: a byte for the tier's limit, then up
 * to 8 files, each [flags][length: 2 bytes][bytes]; flags say whether the
 * file's hashes are made consistent (kvs_fix.h), whether it gets its
 * proper name (<ab>/<hash>.blk) or a mangled one, or an unfinished write's
 * name. After the rebuild (and the deletions it queued), the store must
 * list exactly the block files left, each of which must read back under
 * its name, within the limit; a second start over the same folder must
 * find nothing to delete and the same blocks. */
#include "kvs_fix.h"
#include "store/store.h"

#include "base/log.h"

#include <dirent.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_MAX_FILES 8

static struct event_base *base;
static bt_tpool_t *io;   /* one for every run: a thread per run is slow */

static int rm_cb(const char *path, const struct stat *st, int flag,
                 struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void hex(char *out, const uint8_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        snprintf(out + 2 * i, 3, "%02x", b[i]);
    }
}

/* One fuzz file under dir; its name from its header's hash (two files
 * with the same name: the second replaces the first). */
static void put_file(const char *dir, uint8_t flags, const uint8_t *bytes,
                     size_t len)
{
    char name[2 * BT_KV_HASH_LEN + 1], path[4096];
    uint8_t *f = malloc(len ? len : 1);
    FILE *fp;

    if (f == NULL) {
        return;
    }
    memcpy(f, bytes, len);
    if (flags & 1) {
        fuzz_kvs_fix(f, len);
    }
    if (len >= FUZZ_KVS_HASH + BT_KV_HASH_LEN) {
        hex(name, f + FUZZ_KVS_HASH, BT_KV_HASH_LEN);
    } else {
        memset(name, 'a', sizeof(name) - 1);
        name[sizeof(name) - 1] = '\0';
    }
    if (flags & 2) {
        name[flags >> 4] ^= (flags & 4) ? 0x20 : 1;   /* a misnamed file */
    }
    snprintf(path, sizeof(path), "%s/%.2s", dir, (flags & 8) ? "zz" : name);
    mkdir(path, 0755);
    snprintf(path + strlen(path), sizeof(path) - strlen(path), "/%s%s", name,
             (flags & 0xc) == 0xc ? ".blk.tmp.1" : ".blk");
    fp = fopen(path, "wb");
    if (fp != NULL) {
        fwrite(f, 1, len, fp);
        fclose(fp);
    }
    free(f);
}

typedef struct {
    const char *dir;
    size_t      n;
    uint8_t     hashes[FUZZ_MAX_FILES][BT_KV_HASH_LEN];
} listed_t;

static void list_cb(void *arg, const bt_kvs_block_info_t *b)
{
    listed_t *l = arg;
    char name[2 * BT_KV_HASH_LEN + 1], path[4096];
    bt_kvs_file_meta_t m;

    hex(name, b->hash, BT_KV_HASH_LEN);
    snprintf(path, sizeof(path), "%s/%.2s/%s.blk", l->dir, name, name);
    if (l->n >= FUZZ_MAX_FILES || b->tier != BT_KVS_TIER_DISK ||
        bt_kvs_file_read(path, NULL, 0, &m) != BT_OK ||
        memcmp(m.hash, b->hash, BT_KV_HASH_LEN) != 0) {
        abort();
    }
    free(m.tokens);
    memcpy(l->hashes[l->n++], b->hash, BT_KV_HASH_LEN);
}

static bool lower_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

/* Block files where the store looks: <2 lowercase hex>/<name>.blk. */
static size_t count_blk(const char *dir)
{
    size_t n = 0;
    DIR *top = opendir(dir);
    struct dirent *de;

    while (top != NULL && (de = readdir(top)) != NULL) {
        char sub[4096];
        DIR *d;
        struct dirent *fe;

        if (strlen(de->d_name) != 2 || !lower_hex(de->d_name[0]) ||
            !lower_hex(de->d_name[1])) {
            continue;   /* not a block folder: the store leaves it alone */
        }
        snprintf(sub, sizeof(sub), "%s/%s", dir, de->d_name);
        d = opendir(sub);
        while (d != NULL && (fe = readdir(d)) != NULL) {
            size_t len = strlen(fe->d_name);

            n += len > 4 && strcmp(fe->d_name + len - 4, ".blk") == 0 &&
                 strstr(fe->d_name, ".tmp.") == NULL;
        }
        if (d != NULL) {
            closedir(d);
        }
    }
    if (top != NULL) {
        closedir(top);
    }
    return n;
}

/* Starts a store over dir; its listing in *l. */
static bt_status_t start(const char *dir, uint64_t disk_bytes, listed_t *l,
                         bt_kvs_stats_t *st)
{
    bt_kvs_config_t cfg;
    bt_kvs_t *s = NULL;
    bt_status_t rc;

    memset(&cfg, 0, sizeof(cfg));
    cfg.disk_dir = dir;
    cfg.disk_bytes = disk_bytes;
    cfg.reserve_ms = 1000;
    cfg.pin_ms = 1000;
    cfg.io = io;
    rc = bt_kvs_create(&cfg, &s);
    /* the deletions the rebuild queued, done before the store goes */
    while (bt_tpool_pending(io) > 0) {
        event_base_loop(base, EVLOOP_ONCE);
    }
    if (rc == BT_OK) {
        memset(l, 0, sizeof(*l));
        l->dir = dir;
        if (bt_kvs_foreach(s, list_cb, l) != l->n) {
            abort();
        }
        bt_kvs_stats(s, st);
        bt_kvs_destroy(s);
    }
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* in memory where there is a tmpfs: disk latency would rule the rate */
    char dir[] = "/dev/shm/baton-fuzz-disk-XXXXXX";
    listed_t first, again;
    bt_kvs_stats_t st1, st2;
    uint64_t disk_bytes;
    size_t off = 1;
    bt_status_t rc;

    if (base == NULL) {
        bt_log_init("fuzz", BT_LOG_LEVEL_OFF, BT_LOG_FORMAT_TEXT);
        base = event_base_new();
        io = base != NULL ? bt_tpool_create(base, 1, 1024) : NULL;
        if (io == NULL) {
            abort();
        }
    }
    if (size < 1 || size > (1u << 20)) {
        return 0;
    }
    if (mkdtemp(dir) == NULL) {
        memcpy(dir, "/tmp/baton-fuzz-disk-XXXXXX", sizeof("/tmp/baton-fuzz-disk-XXXXXX"));
        if (mkdtemp(dir) == NULL) {
            return 0;
        }
    }
    disk_bytes = data[0] == 0 ? UINT64_MAX / 2 : (uint64_t)data[0] * 64;
    for (int i = 0; i < FUZZ_MAX_FILES && off + 3 <= size; i++) {
        size_t len = (size_t)data[off + 1] << 8 | data[off + 2];

        if (len > size - off - 3) {
            len = size - off - 3;
        }
        put_file(dir, data[off], data + off + 3, len);
        off += 3 + len;
    }
    rc = start(dir, disk_bytes, &first, &st1);
    if (rc == BT_OK) {
        if (count_blk(dir) != first.n || st1.disk.used_bytes > disk_bytes ||
            st1.disk.blocks != first.n) {
            abort();
        }
        /* a restart over what the first start left */
        if (start(dir, disk_bytes, &again, &st2) != BT_OK ||
            st2.corrupt_files != 0 || again.n != first.n || st2.disk.evictions != 0) {
            abort();
        }
    } else if (rc != BT_ERR_IO && rc != BT_ERR_NO_MEMORY) {
        abort();
    }
    nftw(dir, rm_cb, 8, FTW_DEPTH | FTW_PHYS);
    return 0;
}
