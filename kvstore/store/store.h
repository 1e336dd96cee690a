/* The kvstore's block store (DESIGN §5, tier 2): KV blocks keyed by their
 * 32-byte chained block hash (docs/kv-spec.md), held in a DRAM slab of
 * fixed-size slots and written through to checksummed files on disk, so a
 * restart serves every block whose commit was answered as durable.
 *
 * Life of a block (docs/internals/kvstore.md):
 *   put:  bt_kvs_reserve (slots, invisible to lookups) -> the client writes
 *         the slots (UCX puts into the slab) -> bt_kvs_commit (the slot
 *         bytes are checksummed on a worker thread, compared with the
 *         client's sha256, the hash chain is checked, the block is written
 *         to disk, then it is published)
 *   get:  bt_kvs_pin (a disk-only block is first read into a slot on a
 *         worker thread) -> the client reads the slot -> bt_kvs_unpin
 * Eviction is LRU among unpinned committed blocks, per tier, by bytes;
 * reservations and pins expire.
 *
 * Threading: every function runs on the loop thread that owns `io`'s
 * event base; file I/O and checksums run on `io`'s workers and their
 * results come back through its `done` callbacks. Callbacks given to this
 * API run on the loop thread, never inside the call that started them.
 * Strings returned (bt_kvs_last_error) and borrowed arrays in results are
 * valid until the next call into the store. No gRPC here: the daemon
 * (kvstore/service.c) turns messages into these calls. */
#ifndef BT_KVS_STORE_H
#define BT_KVS_STORE_H

#include "base/status.h"
#include "base/tpool.h"
#include "kvspec/kv_hash.h"
#include "kvspec/kv_spec.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The hash chain, geometry (bt_kv_geom_t), dtype ids and request limits
 * (BT_KV_MAX_HASHES, BT_KV_MAX_BLOCK_TOKENS, BT_KV_MAX_BLOCK_BYTES) are
 * kv-spec's (common/kvspec). One store holds blocks of one geometry: the
 * first reservation (or the files found at start) fixes it and other
 * geometries are refused. */
#define BT_KVS_MAX_RESERVATIONS 4096u
#define BT_KVS_MAX_PINS 16384u

/* Same values as baton.v1.KvTier (kv-spec's event tiers). */
typedef enum {
    BT_KVS_TIER_NONE = 0,
    BT_KVS_TIER_DRAM = BT_KV_TIER_STORE_DRAM,
    BT_KVS_TIER_DISK = BT_KV_TIER_STORE_DISK,
} bt_kvs_tier_t;

typedef struct bt_kvs bt_kvs_t;

/* What the store can serve changed (docs/kv-spec.md "Events", the rules
 * for a kvstore: the store as a whole is one cache). */
typedef enum {
    BT_KVS_EVENT_STORED = 1,   /* a block became servable (a commit) */
    BT_KVS_EVENT_REMOVED = 2,  /* no tier can serve it any more */
    BT_KVS_EVENT_CLEARED = 3,  /* every block of `tier` was dropped (flush) */
} bt_kvs_event_type_t;

typedef struct {
    bt_kvs_event_type_t type;
    /* STORED: where the block is now (DRAM after a commit); REMOVED:
     * where its last copy was; CLEARED: the tier cleared (a flush reports
     * DRAM, then DISK) */
    bt_kvs_tier_t       tier;
    const uint8_t      *hash;     /* 32 bytes; NULL for CLEARED */
    const uint8_t      *parent;   /* 32 bytes; NULL for CLEARED */
} bt_kvs_event_t;

/* Called synchronously on the loop thread from inside the store call that
 * made the change; `ev` and its hashes are valid during the call only.
 * It must not call into the store. Moving a block between DRAM and disk
 * (eviction of one copy, promotion on a pin) is not an event; blocks
 * found on disk by bt_kvs_create are not reported (bt_kvs_foreach lists
 * them). */
typedef void (*bt_kvs_event_cb)(void *arg, const bt_kvs_event_t *ev);

typedef struct {
    void       *slab;          /* DRAM tier: borrowed, outlives the store */
    size_t      slab_len;      /* slots = slab_len / block bytes */
    const char *disk_dir;      /* NULL = no disk tier (copied) */
    uint64_t    disk_bytes;    /* disk tier limit, > 0 with disk_dir */
    uint64_t    reserve_ms;    /* reservation lifetime */
    uint64_t    pin_ms;        /* default pin lifetime */
    uint64_t    max_pin_ms;    /* longest pin a caller may ask; 0 = 10 min */
    bt_tpool_t *io;            /* file I/O and checksums; required */
    /* Store clock in ms (tests fake it); NULL = bt_now_ms. */
    uint64_t  (*now_ms)(void *arg);
    void       *clock_arg;
    /* Optional: changes of what the store serves (see above). */
    bt_kvs_event_cb event_cb;
    void           *event_arg;
} bt_kvs_config_t;

/* Creates the store; with a disk tier, rebuilds the index from the files
 * under disk_dir first (on the calling thread: a start-up cost of reading
 * every file once). Every file is checked (header, name, hash chain,
 * sha256 of the bytes); a corrupt, truncated, misnamed or foreign-geometry
 * file is logged and deleted. Files beyond disk_bytes are evicted oldest
 * first. BT_ERR_INVALID_ARG for a bad config, BT_ERR_IO when disk_dir
 * cannot be created or read. */
bt_status_t bt_kvs_create(const bt_kvs_config_t *cfg, bt_kvs_t **store_p);
/* Destroy `io` first: its pending `done` callbacks still use the store.
 * Reservations and pins still held are dropped. NULL-safe. */
void bt_kvs_destroy(bt_kvs_t *s);

/* The reason of the last failed call (lowercase, precise), "" if none. */
const char *bt_kvs_last_error(const bt_kvs_t *s);
/* False until a geometry is fixed. */
bool bt_kvs_geometry(const bt_kvs_t *s, bt_kv_geom_t *g_p,
                     uint64_t *block_bytes_p);
uint64_t bt_kvs_now_ms(const bt_kvs_t *s);

/* What a lookup or pin reports per block. `tokens` is borrowed (valid
 * until the next store call); `offset`/`length` locate the bytes in the
 * slab when tier is DRAM. */
typedef struct {
    uint8_t         hash[BT_KV_HASH_LEN];
    uint8_t         parent[BT_KV_HASH_LEN];
    uint8_t         checksum[BT_KV_HASH_LEN];  /* sha256 of the bytes */
    bt_kvs_tier_t   tier;
    uint64_t        offset;
    uint32_t        length;
    const uint32_t *tokens;
    uint32_t        n_tokens;
} bt_kvs_block_info_t;

/* Hash arguments are n * BT_KV_HASH_LEN bytes, hash i at i * 32. */

/* Longest stored prefix of `hashes` (chain order). With `tokens` (n *
 * block_size ids, the request's own), a block whose stored ids differ ends
 * the prefix (counted as a token mismatch). `info` (n entries) may be
 * NULL. Blocks being reserved or written are not visible. */
bt_status_t bt_kvs_lookup(bt_kvs_t *s, const uint8_t *hashes,
                          size_t n, const uint32_t *tokens, size_t n_tokens,
                          bt_kvs_block_info_t *info, size_t *n_matched_p);

/* One requested slot: `stored` means the hash is already committed and
 * need not be written; otherwise write `length` bytes at `offset`. */
typedef struct {
    bool     stored;
    uint64_t offset;
    uint32_t length;
} bt_kvs_slot_t;

/* Reserves a slot for each hash not yet stored, all or nothing (evicting
 * unpinned LRU blocks as needed). `parent` is the hash before hashes[0]
 * (the root h-1 for a chain's first block); hashes[i]'s parent is
 * hashes[i-1]. Errors: BT_ERR_INVALID_ARG (geometry mismatch or insane,
 * block_bytes, duplicate hash, n out of range), BT_ERR_EXHAUSTED (not
 * enough slots even after eviction, too many reservations); nothing
 * changes on failure. *expiry_ms_p is on the store clock. */
bt_status_t bt_kvs_reserve(bt_kvs_t *s, const bt_kv_geom_t *g,
                           uint64_t block_bytes,
                           const uint8_t parent[BT_KV_HASH_LEN],
                           const uint8_t *hashes, size_t n,
                           bt_kvs_slot_t *slots, uint64_t *id_p,
                           uint64_t *expiry_ms_p);

/* The writer says its bytes for reservation `id` landed (a UCX completion
 * message); BT_ERR_NOT_FOUND for an unknown id. */
bt_status_t bt_kvs_reservation_landed(bt_kvs_t *s, uint64_t id);
bool bt_kvs_reservation_is_landed(const bt_kvs_t *s, uint64_t id);

typedef struct {
    uint8_t         hash[BT_KV_HASH_LEN];
    const uint32_t *tokens;      /* block_size ids (copied by commit) */
    uint32_t        n_tokens;
    uint8_t         checksum[BT_KV_HASH_LEN];
} bt_kvs_commit_block_t;

typedef struct {
    uint32_t committed;  /* published (or already stored) */
    uint32_t rejected;   /* checksum or hash chain mismatch: dropped */
    uint32_t durable;    /* of the committed, written to disk (fsync'ed) */
} bt_kvs_commit_result_t;

typedef void (*bt_kvs_commit_cb)(void *arg, bt_status_t status,
                                 const bt_kvs_commit_result_t *r);

/* Publishes the listed blocks of reservation `id` (any subset, any
 * order); slots not listed are freed. BT_IN_PROGRESS and `cb` later;
 * errors (nothing changed, no callback): BT_ERR_NOT_FOUND (unknown or
 * expired), BT_ERR_EXISTS (a commit of it is running), BT_ERR_INVALID_ARG
 * (a hash not in the reservation, a duplicate, wrong token count). */
bt_status_t bt_kvs_commit(bt_kvs_t *s, uint64_t id,
                          const bt_kvs_commit_block_t *blocks, size_t n,
                          bt_kvs_commit_cb cb, void *arg);
/* Drops reservation `id` and frees its slots. */
bt_status_t bt_kvs_abort(bt_kvs_t *s, uint64_t id);

typedef struct {
    uint64_t                   pin_id;     /* 0 when nothing was pinned */
    uint64_t                   expiry_ms;  /* store clock */
    size_t                     n_pinned;   /* a prefix of the request */
    const bt_kvs_block_info_t *blocks;     /* borrowed for the callback */
} bt_kvs_pin_result_t;

typedef void (*bt_kvs_pin_cb)(void *arg, bt_status_t status,
                              const bt_kvs_pin_result_t *r);

/* Pins the longest stored prefix (token-checked like lookup when
 * `tokens` is given) for `pin_ms` (0 = the default). Disk-only blocks are
 * read into DRAM slots first; a file found corrupt then is deleted and
 * ends the prefix. BT_IN_PROGRESS and `cb` later (also for 0 blocks);
 * BT_ERR_INVALID_ARG / BT_ERR_EXHAUSTED (too many pins) without a
 * callback. */
bt_status_t bt_kvs_pin(bt_kvs_t *s, const uint8_t *hashes,
                       size_t n, const uint32_t *tokens, size_t n_tokens,
                       uint64_t pin_ms, bt_kvs_pin_cb cb, void *arg);
bt_status_t bt_kvs_unpin(bt_kvs_t *s, uint64_t pin_id);

/* Calls `cb` once for every servable block (committed, not dropped), in
 * no particular order; `b` is valid during the call only and `cb` must
 * not call into the store. Returns the number of blocks. */
size_t bt_kvs_foreach(const bt_kvs_t *s,
                      void (*cb)(void *arg, const bt_kvs_block_info_t *b),
                      void *arg);

/* Drops every committed block from both tiers and deletes their files
 * (pinned blocks stay readable until unpinned, then go); reservations
 * and commits in progress are not affected. One CLEARED event per tier,
 * no REMOVED events. Returns the number of blocks dropped. */
size_t bt_kvs_flush(bt_kvs_t *s);

/* Drops expired reservations and pins (call every ~100 ms). */
void bt_kvs_expire(bt_kvs_t *s);

typedef struct {
    uint64_t capacity_bytes;
    uint64_t used_bytes;
    uint64_t blocks;
    uint64_t evictions;
} bt_kvs_tier_stats_t;

typedef struct {
    bt_kvs_tier_stats_t dram;
    bt_kvs_tier_stats_t disk;
    uint64_t lookups;
    uint64_t lookup_hit_blocks;
    uint64_t lookup_miss_blocks;
    uint64_t pins;                /* Pin calls admitted */
    uint64_t pin_hit_dram_blocks; /* pinned blocks found in DRAM */
    uint64_t pin_hit_disk_blocks; /* pinned blocks read back from disk */
    uint64_t pin_miss_blocks;     /* asked for, past the pinned prefix */
    uint64_t puts;                /* blocks committed */
    uint64_t gets;                /* blocks pinned */
    uint64_t commit_rejected;     /* checksum / chain mismatches */
    uint64_t token_mismatches;
    uint64_t corrupt_files;       /* found at start or on a read, deleted */
    uint64_t disk_errors;         /* writes that failed (block kept in DRAM) */
    uint32_t active_pins;
    uint32_t active_reservations;
} bt_kvs_stats_t;

void bt_kvs_stats(const bt_kvs_t *s, bt_kvs_stats_t *stats_p);

#endif
