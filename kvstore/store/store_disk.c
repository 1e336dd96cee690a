/* Index rebuild at start: every block file under the disk folder is read
 * and checked once; good ones become disk-only entries in file-age LRU
 * order, bad ones are logged and deleted. */
#include "store_int.h"

#include "base/array.h"
#include "base/log.h"
#include "disk.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int bt_kvs_hexval(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    return -1;
}

/* "<64 lowercase hex>.blk" -> hash; false for any other name. */
static bool bt_kvs_parse_name(const char *name, uint8_t hash[BT_KV_HASH_LEN])
{
    if (strlen(name) != 2 * BT_KV_HASH_LEN + 4 ||
        strcmp(name + 2 * BT_KV_HASH_LEN, ".blk") != 0) {
        return false;
    }
    for (int i = 0; i < BT_KV_HASH_LEN; i++) {
        int hi = bt_kvs_hexval(name[2 * i]), lo = bt_kvs_hexval(name[2 * i + 1]);

        if (hi < 0 || lo < 0) {
            return false;
        }
        hash[i] = (uint8_t)(hi << 4 | lo);
    }
    return true;
}

static void bt_kvs_drop_file(bt_kvs_t *s, const char *path, const char *why)
{
    bt_warn("dropping block file %s: %s", path, why);
    s->st.corrupt_files++;
    if (unlink(path) != 0) {
        bt_warn("cannot delete %s: %s", path, bt_strerror(errno));
    }
}

/* One candidate file; *e_p set when it is good. */
static bt_status_t bt_kvs_rebuild_file(bt_kvs_t *s, const char *path,
                                       const char *sub, const char *name,
                                       bt_kvs_entry_t **e_p)
{
    uint8_t want[BT_KV_HASH_LEN];
    bt_kvs_file_meta_t m;
    bt_kvs_entry_t *e;
    struct stat st;
    bt_status_t rc;
    char prefix[3];

    *e_p = NULL;
    if (strstr(name, ".tmp.") != NULL) {
        bt_info("removing unfinished write %s", path);
        unlink(path);
        return BT_OK;
    }
    if (bt_kvs_parse_name(name, want)) {
        snprintf(prefix, sizeof(prefix), "%02x", want[0]);
    }
    if (!bt_kvs_parse_name(name, want) || strcmp(prefix, sub) != 0) {
        bt_kvs_drop_file(s, path, "misnamed (want <ab>/<64 hex digits>.blk)");
        return BT_OK;
    }
    rc = bt_kvs_file_read(path, NULL, s->geom_set ? s->block_bytes : 0, &m);
    if (rc == BT_ERR_NO_MEMORY || rc == BT_ERR_IO) {
        return rc;
    }
    if (rc == BT_ERR_NOT_FOUND) {
        return BT_OK;
    }
    if (rc != BT_OK) {
        bt_kvs_drop_file(s, path, rc == BT_ERR_TRUNCATED ? "truncated" : "corrupt");
        return BT_OK;
    }
    if (memcmp(m.hash, want, BT_KV_HASH_LEN) != 0) {
        free(m.tokens);
        bt_kvs_drop_file(s, path, "its header names another hash");
        return BT_OK;
    }
    if (bt_kvs_set_geometry(s, &m.geom, m.data_len) != BT_OK) {
        free(m.tokens);
        bt_kvs_drop_file(s, path, bt_kvs_last_error(s));
        return BT_OK;
    }
    if (stat(path, &st) != 0) {
        free(m.tokens);
        return BT_OK;
    }
    e = calloc(1, sizeof(*e));
    if (e == NULL) {
        free(m.tokens);
        return BT_ERR_NO_MEMORY;
    }
    memcpy(e->hash, m.hash, BT_KV_HASH_LEN);
    memcpy(e->parent, m.parent, BT_KV_HASH_LEN);
    memcpy(e->checksum, m.checksum, BT_KV_HASH_LEN);
    e->tokens = m.tokens;
    e->slot = -1;
    e->gen = m.gen;
    e->on_disk = true;
    e->mtime = (uint64_t)st.st_mtim.tv_sec * 1000000000ull +
               (uint64_t)st.st_mtim.tv_nsec;
    if (bt_kvs_insert(s, e) != BT_OK) {
        bt_kvs_entry_free(s, e);
        return BT_ERR_NO_MEMORY;
    }
    if (m.gen >= s->next_gen) {
        s->next_gen = m.gen + 1;
    }
    s->disk_blocks++;
    s->disk_used += s->file_bytes;
    *e_p = e;
    return BT_OK;
}

static int bt_kvs_by_age(const void *a, const void *b)
{
    const bt_kvs_entry_t *x = *(bt_kvs_entry_t *const *)a;
    const bt_kvs_entry_t *y = *(bt_kvs_entry_t *const *)b;

    if (x->mtime != y->mtime) {
        return x->mtime < y->mtime ? -1 : 1;
    }
    return memcmp(x->hash, y->hash, BT_KV_HASH_LEN);
}

bt_status_t bt_kvs_rebuild(bt_kvs_t *s)
{
    bt_kvs_entry_t **found = NULL;
    size_t n_found = 0, cap = 0;
    bt_status_t rc = BT_OK;
    DIR *top = opendir(s->disk_dir);
    struct dirent *de;

    if (top == NULL) {
        bt_error("cannot read the disk tier folder %s: %s", s->disk_dir, bt_strerror(errno));
        return BT_ERR_IO;
    }
    while (rc == BT_OK && (de = readdir(top)) != NULL) {
        char sub[BT_KVS_PATH_MAX];
        DIR *d;
        struct dirent *fe;

        if (de->d_name[0] == '.') {
            continue;
        }
        if (strlen(de->d_name) != 2 || bt_kvs_hexval(de->d_name[0]) < 0 ||
            bt_kvs_hexval(de->d_name[1]) < 0) {
            bt_warn("ignoring %s/%s: not a block folder", s->disk_dir, de->d_name);
            continue;
        }
        snprintf(sub, sizeof(sub), "%s/%s", s->disk_dir, de->d_name);
        d = opendir(sub);
        if (d == NULL) {
            bt_warn("cannot read %s: %s", sub, bt_strerror(errno));
            continue;
        }
        while (rc == BT_OK && (fe = readdir(d)) != NULL) {
            char path[BT_KVS_PATH_MAX + 300];
            bt_kvs_entry_t *e;

            if (strcmp(fe->d_name, ".") == 0 || strcmp(fe->d_name, "..") == 0) {
                continue;
            }
            snprintf(path, sizeof(path), "%s/%s", sub, fe->d_name);
            rc = bt_kvs_rebuild_file(s, path, de->d_name, fe->d_name, &e);
            if (rc != BT_OK || e == NULL) {
                continue;
            }
            if (BT_ARRAY_RESERVE(found, cap, n_found + 1, 256) != BT_OK) {
                rc = BT_ERR_NO_MEMORY;
                continue;
            }
            found[n_found++] = e;
        }
        closedir(d);
    }
    closedir(top);
    if (rc == BT_OK) {
        /* oldest first, so the oldest ends at the LRU's tail */
        if (n_found > 1) {
            qsort(found, n_found, sizeof(*found), bt_kvs_by_age);
        }
        for (size_t i = 0; i < n_found; i++) {
            bt_kvs_entry_relink(s, found[i]);
        }
        if (!bt_kvs_disk_make_room(s, 0)) {
            rc = BT_ERR_INTERNAL;
        }
        bt_info("disk tier %s: %llu blocks (%llu bytes) rebuilt, %llu files "
                "dropped", s->disk_dir, (unsigned long long)s->disk_blocks,
                (unsigned long long)s->disk_used,
                (unsigned long long)s->st.corrupt_files);
    }
    free(found);
    return rc;
}
