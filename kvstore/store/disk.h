/* Block files of the disk tier: one file per block,
 * <dir>/<first 2 hex digits>/<64 hex digits>.blk, little-endian:
 *
 *   0    8  magic "BTKVBLK\0"
 *   8    4  version (1)
 *   12   4  n_tokens
 *   16   8  data_len
 *   24   8  generation (unique per write; guards conditional deletes)
 *   32  20  geometry: n_layers, n_kv_heads, head_dim, block_size, dtype
 *   52   4  reserved (0)
 *   56  32  block hash
 *   88  32  parent hash
 *   120 32  sha256 of the data
 *   152 4n  token ids
 *   ..  32  sha256 of everything above (the header checksum)
 *   ..      data (data_len bytes); the file ends there exactly
 *
 * Written to a temporary name, flushed, renamed, and the folder
 * flushed, so a crash leaves the old file, the new file or a temporary
 * (deleted at the next start), never a torn block under its real name.
 * These functions are thread-safe (worker threads call them); writes and
 * deletes of one path are serialised by striped locks. */
#ifndef BT_KVS_DISK_H
#define BT_KVS_DISK_H

#include "store.h"

#include <stddef.h>
#include <stdint.h>

#define BT_KVS_FILE_MAGIC "BTKVBLK"   /* 8 bytes with its NUL */
#define BT_KVS_FILE_VERSION 1u
#define BT_KVS_FILE_FIXED 152u
#define BT_KVS_PATH_MAX 4200

typedef struct {
    uint8_t       hash[BT_KV_HASH_LEN];
    uint8_t       parent[BT_KV_HASH_LEN];
    uint8_t       checksum[BT_KV_HASH_LEN];
    bt_kv_geom_t  geom;
    uint64_t      data_len;
    uint64_t      gen;
    uint32_t      n_tokens;
    uint32_t     *tokens;   /* read: malloc'ed, caller frees; write: borrowed */
} bt_kvs_file_meta_t;

/* Bytes of a block's file. */
static inline uint64_t bt_kvs_file_size(uint32_t n_tokens, uint64_t data_len)
{
    return BT_KVS_FILE_FIXED + 4ull * n_tokens + BT_KV_HASH_LEN + data_len;
}

/* "<dir>/ab" and "<dir>/ab/<hex>.blk". */
void bt_kvs_file_dir(const char *dir, const uint8_t hash[BT_KV_HASH_LEN],
                     char *out, size_t size);
void bt_kvs_file_path(const char *dir, const uint8_t hash[BT_KV_HASH_LEN],
                      char *out, size_t size);

/* Writes the block durably (see above). BT_ERR_IO with a log line. */
bt_status_t bt_kvs_file_write(const char *dir, const bt_kvs_file_meta_t *m,
                              const void *data);

/* Files a group commit writes before its one flush. */
#define BT_KVS_GROUP_MAX 64

/* Writes n blocks as durably as bt_kvs_file_write, with group commit: up
 * to BT_KVS_GROUP_MAX temporaries written, one flush of the filesystem
 * (syncfs; an fsync per file where syncfs fails), the renames, one more
 * flush for the names. A commit of many blocks then waits for two device
 * flushes instead of two per block. ok[i] tells each block's fate;
 * returns how many were written. */
size_t bt_kvs_files_write(const char *dir, const bt_kvs_file_meta_t *m,
                          const void *const *data, size_t n, bool *ok);

/* Reads and checks `path`: exact size, magic, version, header checksum,
 * token count equal to the block size, the chain hash (hash == SHA-256 of
 * parent and tokens), data_len within BT_KV_MAX_BLOCK_BYTES and equal to
 * `want_len` when nonzero, then the sha256 of the data. Data goes to
 * `data` (at least data_len bytes) or, when NULL, to a scratch buffer.
 * BT_ERR_CORRUPT or BT_ERR_TRUNCATED (logged with the reason),
 * BT_ERR_NOT_FOUND when the file is gone, BT_ERR_IO. On success
 * m_p->tokens is malloc'ed. */
bt_status_t bt_kvs_file_read(const char *path, void *data, uint64_t want_len,
                             bt_kvs_file_meta_t *m_p);

/* Deletes the block's file if its generation is `gen` (0 = any): a
 * newer write of the same hash is never removed by a stale delete. */
void bt_kvs_file_unlink(const char *dir, const uint8_t hash[BT_KV_HASH_LEN],
                        uint64_t gen);

#endif
