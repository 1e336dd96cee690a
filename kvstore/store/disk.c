/* Block files: format, durable writes, checked reads, guarded deletes. */
#include "disk.h"

#include "base/endian.h"
#include "base/log.h"
#include "base/sha256.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define BT_KVS_LOCKS 64

static pthread_mutex_t bt_kvs_locks[BT_KVS_LOCKS];
static pthread_once_t bt_kvs_locks_once = PTHREAD_ONCE_INIT;

static void bt_kvs_locks_init(void)
{
    for (int i = 0; i < BT_KVS_LOCKS; i++) {
        pthread_mutex_init(&bt_kvs_locks[i], NULL);
    }
}

/* Writes and deletes of one path take the same lock. */
static pthread_mutex_t *bt_kvs_lock_of(const uint8_t hash[BT_KV_HASH_LEN])
{
    pthread_once(&bt_kvs_locks_once, bt_kvs_locks_init);
    return &bt_kvs_locks[hash[BT_KV_HASH_LEN - 1] % BT_KVS_LOCKS];
}

void bt_kvs_file_dir(const char *dir, const uint8_t hash[BT_KV_HASH_LEN],
                     char *out, size_t size)
{
    snprintf(out, size, "%s/%02x", dir, hash[0]);
}

void bt_kvs_file_path(const char *dir, const uint8_t hash[BT_KV_HASH_LEN],
                      char *out, size_t size)
{
    char hex[BT_SHA256_HEX_LEN + 1];

    bt_sha256_hex(hash, hex);
    snprintf(out, size, "%s/%.2s/%s.blk", dir, hex, hex);
}

/* Header and tokens, then their checksum; returns the length. */
static size_t bt_kvs_header_encode(const bt_kvs_file_meta_t *m, uint8_t *h)
{
    size_t off = BT_KVS_FILE_FIXED;

    memset(h, 0, BT_KVS_FILE_FIXED);
    memcpy(h, BT_KVS_FILE_MAGIC, 8);
    bt_put_le32(h + 8, BT_KVS_FILE_VERSION);
    bt_put_le32(h + 12, m->n_tokens);
    bt_put_le64(h + 16, m->data_len);
    bt_put_le64(h + 24, m->gen);
    bt_put_le32(h + 32, m->geom.n_layers);
    bt_put_le32(h + 36, m->geom.n_kv_heads);
    bt_put_le32(h + 40, m->geom.head_dim);
    bt_put_le32(h + 44, m->geom.block_size);
    bt_put_le32(h + 48, (uint32_t)m->geom.dtype);
    memcpy(h + 56, m->hash, BT_KV_HASH_LEN);
    memcpy(h + 88, m->parent, BT_KV_HASH_LEN);
    memcpy(h + 120, m->checksum, BT_KV_HASH_LEN);
    for (uint32_t i = 0; i < m->n_tokens; i++, off += 4) {
        bt_put_le32(h + off, m->tokens[i]);
    }
    bt_sha256(h, off, h + off);
    return off + BT_KV_HASH_LEN;
}

static bt_status_t bt_kvs_write_all(int fd, const void *p, size_t n,
                                    const char *path)
{
    const uint8_t *b = p;

    while (n > 0) {
        ssize_t k = write(fd, b, n);

        if (k < 0 && errno == EINTR) {
            continue;
        }
        if (k <= 0) {
            bt_error("cannot write %s: %s", path, bt_strerror(errno));
            return BT_ERR_IO;
        }
        b += k;
        n -= (size_t)k;
    }
    return BT_OK;
}

static void bt_kvs_fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

    if (fd >= 0) {
        if (fsync(fd) != 0) {
            bt_warn("cannot fsync %s: %s", dir, bt_strerror(errno));
        }
        close(fd);
    }
}

/* Writes the block under a temporary name, not yet flushed: the open fd
 * (or -1, logged) and the temporary's path in `tmp`. */
static int bt_kvs_tmp_write(const char *dir, const bt_kvs_file_meta_t *m,
                            const void *data, char *tmp, size_t tmp_size)
{
    uint8_t *hdr;
    char sub[BT_KVS_PATH_MAX], path[BT_KVS_PATH_MAX];
    bt_status_t s = BT_ERR_IO;
    size_t hlen;
    int fd = -1;

    if (m->n_tokens > BT_KV_MAX_BLOCK_TOKENS) {
        return -1;
    }
    hdr = malloc(BT_KVS_FILE_FIXED + 4u * m->n_tokens + BT_KV_HASH_LEN);
    if (hdr == NULL) {
        return -1;
    }
    hlen = bt_kvs_header_encode(m, hdr);
    bt_kvs_file_dir(dir, m->hash, sub, sizeof(sub));
    bt_kvs_file_path(dir, m->hash, path, sizeof(path));
    snprintf(tmp, tmp_size, "%s.tmp.%llu", path, (unsigned long long)m->gen);
    if (mkdir(sub, 0755) != 0 && errno != EEXIST) {
        bt_error("cannot create %s: %s", sub, bt_strerror(errno));
        goto out;
    }
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        bt_error("cannot create %s: %s", tmp, bt_strerror(errno));
        goto out;
    }
    s = bt_kvs_write_all(fd, hdr, hlen, tmp);
    if (s == BT_OK) {
        s = bt_kvs_write_all(fd, data, (size_t)m->data_len, tmp);
    }
    if (s != BT_OK) {
        close(fd);
        unlink(tmp);
        fd = -1;
    }
out:
    free(hdr);
    return fd;
}

/* The temporary takes the block's name (under the path's lock). */
static bt_status_t bt_kvs_tmp_rename(const char *dir,
                                     const bt_kvs_file_meta_t *m,
                                     const char *tmp)
{
    char path[BT_KVS_PATH_MAX];
    pthread_mutex_t *mu = bt_kvs_lock_of(m->hash);
    bt_status_t s = BT_OK;

    bt_kvs_file_path(dir, m->hash, path, sizeof(path));
    pthread_mutex_lock(mu);
    if (rename(tmp, path) != 0) {
        bt_error("cannot rename %s: %s", tmp, bt_strerror(errno));
        s = BT_ERR_IO;
    }
    pthread_mutex_unlock(mu);
    if (s != BT_OK) {
        unlink(tmp);
    }
    return s;
}

bt_status_t bt_kvs_file_write(const char *dir, const bt_kvs_file_meta_t *m,
                              const void *data)
{
    char sub[BT_KVS_PATH_MAX], tmp[BT_KVS_PATH_MAX + 32];
    bt_status_t s = BT_OK;
    int fd = bt_kvs_tmp_write(dir, m, data, tmp, sizeof(tmp));

    if (fd < 0) {
        return BT_ERR_IO;
    }
    if (fsync(fd) != 0) {
        bt_error("cannot fsync %s: %s", tmp, bt_strerror(errno));
        s = BT_ERR_IO;
    }
    close(fd);
    if (s != BT_OK) {
        unlink(tmp);
        return s;
    }
    s = bt_kvs_tmp_rename(dir, m, tmp);
    if (s == BT_OK) {
        bt_kvs_file_dir(dir, m->hash, sub, sizeof(sub));
        bt_kvs_fsync_dir(sub);
    }
    return s;
}

/* One flush of the whole filesystem holding `fds` (syncfs: the data of
 * every file written before it, and their names), or, where that fails,
 * each of `fds` on its own. 0 or the errno of a failed fsync. */
static int bt_kvs_group_flush(const int *fds, size_t n)
{
    int err = 0;

    for (size_t i = 0; i < n; i++) {
        if (fds[i] >= 0) {
            if (syncfs(fds[i]) == 0) {
                return 0;
            }
            break;
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (fds[i] >= 0 && fsync(fds[i]) != 0) {
            err = errno;
        }
    }
    return err;
}

size_t bt_kvs_files_write(const char *dir, const bt_kvs_file_meta_t *m,
                          const void *const *data, size_t n, bool *ok)
{
    int fds[BT_KVS_GROUP_MAX];
    char (*tmp)[BT_KVS_PATH_MAX + 32];
    size_t done = 0;

    if (n == 1) {
        ok[0] = bt_kvs_file_write(dir, &m[0], data[0]) == BT_OK;
        return ok[0] ? 1 : 0;
    }
    tmp = malloc(BT_KVS_GROUP_MAX * sizeof(*tmp));
    if (tmp == NULL) {
        for (size_t i = 0; i < n; i++) {
            ok[i] = bt_kvs_file_write(dir, &m[i], data[i]) == BT_OK;
            done += ok[i];
        }
        return done;
    }
    for (size_t g = 0; g < n; g += BT_KVS_GROUP_MAX) {
        size_t k = n - g < BT_KVS_GROUP_MAX ? n - g : BT_KVS_GROUP_MAX;
        int dir_fd, flush_err;

        for (size_t i = 0; i < k; i++) {
            fds[i] = bt_kvs_tmp_write(dir, &m[g + i], data[g + i], tmp[i],
                                      sizeof(tmp[i]));
        }
        /* the data of every temporary on disk before any takes its name */
        flush_err = bt_kvs_group_flush(fds, k);
        for (size_t i = 0; i < k; i++) {
            ok[g + i] = false;
            if (fds[i] < 0) {
                continue;
            }
            close(fds[i]);
            if (flush_err != 0) {
                unlink(tmp[i]);
                bt_error("cannot flush %s: %s", tmp[i], bt_strerror(flush_err));
                continue;
            }
            ok[g + i] = bt_kvs_tmp_rename(dir, &m[g + i], tmp[i]) == BT_OK;
        }
        /* then the names: one more flush covers every folder renamed in */
        dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dir_fd < 0 || syncfs(dir_fd) != 0) {
            for (size_t i = 0; i < k; i++) {
                char sub[BT_KVS_PATH_MAX];

                if (ok[g + i]) {
                    bt_kvs_file_dir(dir, m[g + i].hash, sub, sizeof(sub));
                    bt_kvs_fsync_dir(sub);
                }
            }
        }
        if (dir_fd >= 0) {
            close(dir_fd);
        }
        for (size_t i = 0; i < k; i++) {
            done += ok[g + i];
        }
    }
    free(tmp);
    return done;
}

static bt_status_t bt_kvs_read_all(int fd, void *p, size_t n, off_t off)
{
    uint8_t *b = p;

    while (n > 0) {
        ssize_t k = pread(fd, b, n, off);

        if (k < 0 && errno == EINTR) {
            continue;
        }
        if (k < 0) {
            return BT_ERR_IO;
        }
        if (k == 0) {
            return BT_ERR_TRUNCATED;
        }
        b += k;
        n -= (size_t)k;
        off += k;
    }
    return BT_OK;
}

/* The fixed header's fields, checked against each other and the file
 * size; tokens and data are read by the caller. */
static bt_status_t bt_kvs_header_decode(const uint8_t *h, uint64_t file_size,
                                        bt_kvs_file_meta_t *m,
                                        const char **why)
{
    if (memcmp(h, BT_KVS_FILE_MAGIC, 8) != 0) {
        *why = "bad magic";
        return BT_ERR_CORRUPT;
    }
    if (bt_get_le32(h + 8) != BT_KVS_FILE_VERSION) {
        *why = "unknown version";
        return BT_ERR_CORRUPT;
    }
    m->n_tokens = bt_get_le32(h + 12);
    m->data_len = bt_get_le64(h + 16);
    m->gen = bt_get_le64(h + 24);
    m->geom.n_layers = bt_get_le32(h + 32);
    m->geom.n_kv_heads = bt_get_le32(h + 36);
    m->geom.head_dim = bt_get_le32(h + 40);
    m->geom.block_size = bt_get_le32(h + 44);
    m->geom.dtype = (bt_kv_dtype_t)bt_get_le32(h + 48);
    memcpy(m->hash, h + 56, BT_KV_HASH_LEN);
    memcpy(m->parent, h + 88, BT_KV_HASH_LEN);
    memcpy(m->checksum, h + 120, BT_KV_HASH_LEN);
    if (m->n_tokens == 0 || m->n_tokens > BT_KV_MAX_BLOCK_TOKENS ||
        m->n_tokens != m->geom.block_size) {
        *why = "bad token count";
        return BT_ERR_CORRUPT;
    }
    if (m->data_len == 0 || m->data_len > BT_KV_MAX_BLOCK_BYTES ||
        m->data_len != bt_kv_geom_block_bytes(&m->geom)) {
        *why = "bad data length";
        return BT_ERR_CORRUPT;
    }
    if (file_size < bt_kvs_file_size(m->n_tokens, m->data_len)) {
        *why = "truncated";
        return BT_ERR_TRUNCATED;
    }
    if (file_size > bt_kvs_file_size(m->n_tokens, m->data_len)) {
        *why = "trailing bytes";
        return BT_ERR_CORRUPT;
    }
    return BT_OK;
}

bt_status_t bt_kvs_file_read(const char *path, void *data, uint64_t want_len,
                             bt_kvs_file_meta_t *m_p)
{
    bt_kvs_file_meta_t m;
    uint8_t fixed[BT_KVS_FILE_FIXED], sum[BT_KV_HASH_LEN], h[BT_KV_HASH_LEN];
    uint8_t *hdr = NULL, *scratch = NULL;
    const char *why = NULL;
    struct stat st;
    bt_status_t s;
    size_t hlen;
    int fd;

    memset(&m, 0, sizeof(m));
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) {
            return BT_ERR_NOT_FOUND;
        }
        bt_error("cannot open %s: %s", path, bt_strerror(errno));
        return BT_ERR_IO;
    }
    if (fstat(fd, &st) != 0) {
        bt_error("cannot stat %s: %s", path, bt_strerror(errno));
        close(fd);
        return BT_ERR_IO;
    }
    s = bt_kvs_read_all(fd, fixed, sizeof(fixed), 0);
    if (s == BT_ERR_TRUNCATED) {
        why = "shorter than a header";
        goto bad;
    }
    if (s != BT_OK) {
        goto io;
    }
    s = bt_kvs_header_decode(fixed, (uint64_t)st.st_size, &m, &why);
    if (s != BT_OK) {
        goto bad;
    }
    if (want_len != 0 && m.data_len != want_len) {
        why = "data length differs from the store's block size";
        s = BT_ERR_CORRUPT;
        goto bad;
    }
    hlen = BT_KVS_FILE_FIXED + 4u * m.n_tokens;
    hdr = malloc(hlen + BT_KV_HASH_LEN);
    m.tokens = malloc(4u * m.n_tokens);
    if (hdr == NULL || m.tokens == NULL) {
        s = BT_ERR_NO_MEMORY;
        goto out;
    }
    memcpy(hdr, fixed, BT_KVS_FILE_FIXED);
    s = bt_kvs_read_all(fd, hdr + BT_KVS_FILE_FIXED,
                        hlen - BT_KVS_FILE_FIXED + BT_KV_HASH_LEN,
                        BT_KVS_FILE_FIXED);
    if (s != BT_OK) {
        goto io;
    }
    bt_sha256(hdr, hlen, sum);
    if (memcmp(sum, hdr + hlen, BT_KV_HASH_LEN) != 0) {
        why = "header checksum mismatch";
        s = BT_ERR_CORRUPT;
        goto bad;
    }
    for (uint32_t i = 0; i < m.n_tokens; i++) {
        m.tokens[i] = bt_get_le32(hdr + BT_KVS_FILE_FIXED + 4u * i);
    }
    bt_kv_hash_block(m.parent, m.tokens, m.n_tokens, h);
    if (memcmp(h, m.hash, BT_KV_HASH_LEN) != 0) {
        why = "hash is not sha256(parent, tokens)";
        s = BT_ERR_CORRUPT;
        goto bad;
    }
    if (data == NULL) {
        data = scratch = malloc((size_t)m.data_len);
        if (scratch == NULL) {
            s = BT_ERR_NO_MEMORY;
            goto out;
        }
    }
    s = bt_kvs_read_all(fd, data, (size_t)m.data_len,
                        (off_t)(hlen + BT_KV_HASH_LEN));
    if (s != BT_OK) {
        goto io;
    }
    bt_sha256(data, (size_t)m.data_len, sum);
    if (memcmp(sum, m.checksum, BT_KV_HASH_LEN) != 0) {
        why = "data checksum mismatch";
        s = BT_ERR_CORRUPT;
        goto bad;
    }
    *m_p = m;
    m.tokens = NULL;
    goto out;
io:
    if (s == BT_ERR_TRUNCATED) {
        why = "truncated";
        goto bad;
    }
    bt_error("cannot read %s: %s", path, bt_strerror(errno));
    s = BT_ERR_IO;
    goto out;
bad:
    bt_warn("block file %s is corrupt: %s", path, why);
out:
    close(fd);
    free(scratch);
    free(hdr);
    free(m.tokens);
    return s;
}

void bt_kvs_file_unlink(const char *dir, const uint8_t hash[BT_KV_HASH_LEN],
                        uint64_t gen)
{
    pthread_mutex_t *mu = bt_kvs_lock_of(hash);
    char path[BT_KVS_PATH_MAX];
    uint8_t fixed[BT_KVS_FILE_FIXED];
    bool remove = gen == 0;

    bt_kvs_file_path(dir, hash, path, sizeof(path));
    pthread_mutex_lock(mu);
    if (!remove) {
        int fd = open(path, O_RDONLY | O_CLOEXEC);

        /* a file we cannot read back is not a newer good copy */
        remove = fd >= 0 &&
                 (bt_kvs_read_all(fd, fixed, sizeof(fixed), 0) != BT_OK ||
                  memcmp(fixed, BT_KVS_FILE_MAGIC, 8) != 0 ||
                  bt_get_le64(fixed + 24) == gen);
        if (fd >= 0) {
            close(fd);
        }
    }
    if (remove && unlink(path) != 0 && errno != ENOENT) {
        bt_warn("cannot delete %s: %s", path, bt_strerror(errno));
    }
    pthread_mutex_unlock(mu);
}
