/* Paged KV pool: one region of fixed-size blocks, reference counts, per
 * sequence block tables, chained SHA-256 block hashes and a tier-1 LRU
 * prefix cache (DESIGN §3, §5; docs/kv-spec.md; docs/internals/kv-pool.md).
 *
 * Layout of the region, row-major:
 *
 *   [layer][block][k|v][block_size][n_kv_heads][head_dim]   elements of dtype
 *
 * so the (layer, block) slice (K then V) is contiguous and one RMA put
 * writes it; consecutive block ids of one layer are adjacent, so a run of
 * them is one put. Byte offsets:
 *
 *   slice_bytes = 2 * block_size * n_kv_heads * head_dim * dtype_size
 *   offset(layer, block) = (layer * n_blocks + block) * slice_bytes
 *   V of a slice starts at slice_bytes / 2 (bt_kvpool_v_offset)
 *   token t of a block, head h: ((t * n_kv_heads) + h) * head_dim elements
 *
 * A block is in exactly one state:
 *   free      on the free list, refcount 0, not indexed
 *   used      refcount > 0 (held by sequences and/or a reservation)
 *   cached    refcount 0, full, hashed and indexed: evictable, on the LRU
 * Allocation takes the free list first, then evicts the least recently
 * used cached block (emitting `removed`). A block is indexed (`stored`)
 * when it is full and its KV is computed (bt_kvseq_set_computed or
 * bt_kvseq_commit_reserved); only one block per hash is indexed.
 *
 * Thread safety: none; a pool and its sequences belong to one thread (the
 * node's scheduler). Every failing call leaves the pool and the sequence
 * exactly as they were (no partial allocation).
 */
#ifndef BT_KV_POOL_H
#define BT_KV_POOL_H

#include "base/status.h"
#include "engine/kv/kv_elem.h"
#include "kvspec/kv_hash.h"
#include "kvspec/kv_spec.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The geometry (bt_kv_geom_t, its dtype a kv-spec id: engine/kv/kv_elem.h
 * gives the element type), the hash chain (bt_kv_hash_*), the tiers and
 * BT_KV_MAX_BLOCK_TOKENS are kv-spec's: kvspec/kv_spec.h, kvspec/kv_hash.h. */

/* Bound that keeps sizes in range of 64-bit offsets and u32 ids. */
#define BT_KV_MAX_BLOCKS (1u << 30)

/* ---- events ---- */

typedef enum {
    BT_KV_EVENT_STORED = 0,  /* a block became available by hash */
    BT_KV_EVENT_REMOVED = 1, /* a block is no longer available by hash */
    BT_KV_EVENT_CLEARED = 2, /* every block of the tier was dropped */
} bt_kv_event_type_t;

/* Borrowed for the duration of the callback only. For CLEARED, hash,
 * parent_hash and tokens are NULL. For REMOVED, parent_hash and tokens are
 * given too (the block's last content). */
typedef struct {
    bt_kv_event_type_t type;
    uint32_t tier;                /* BT_KV_TIER_* of the emitter */
    const uint8_t *hash;          /* BT_KV_HASH_LEN bytes */
    const uint8_t *parent_hash;   /* h_{i-1}; the root for the first block */
    const uint32_t *tokens;       /* block_size token ids */
    uint32_t n_tokens;
    uint32_t block_id;            /* local id, for diagnostics only */
} bt_kv_event_t;

/* Called synchronously from inside pool calls; must not call back into
 * the pool. */
typedef void (*bt_kv_event_cb)(const bt_kv_event_t *event, void *ctx);

/* ---- pool ---- */

typedef struct bt_kvpool bt_kvpool_t;

typedef struct {
    bt_kv_geom_t geom;
    /* Size: n_blocks if nonzero; else derived from budget_bytes; else from
     * base_len when base is given. */
    uint32_t n_blocks;
    size_t budget_bytes;
    /* Caller-supplied region (e.g. UCX-allocated and registered): borrowed,
     * must be at least bt_kv_region_bytes(geom, n_blocks) long and outlive
     * the pool; NULL: the pool maps its own (2 MiB aligned,
     * MADV_HUGEPAGE). */
    void *base;
    size_t base_len;
    uint32_t tier;         /* reported in events; 0 means BT_KV_TIER_NODE */
    bt_kv_event_cb event_cb; /* may be NULL; see bt_kvpool_set_event_cb */
    void *event_ctx;
} bt_kvpool_config_t;

typedef struct {
    uint32_t total;       /* blocks in the pool */
    uint32_t free;        /* on the free list */
    uint32_t cached;      /* refcount 0, indexed, evictable */
    uint32_t used;        /* refcount > 0 (includes reserved) */
    uint32_t reserved;    /* held by reservations not yet committed */
    uint64_t hits;        /* blocks matched by bt_kvseq_match_prefix */
    uint64_t misses;      /* full blocks asked for and not matched */
    uint64_t rejected;    /* hash hits whose token ids differed */
    uint64_t evictions;   /* cached blocks taken for reuse */
} bt_kvpool_stats_t;

/* One slice of this many bytes per (layer, block). */
size_t bt_kv_slice_bytes(const bt_kv_geom_t *geom);
/* Region size for n_blocks; 0 on overflow or an invalid geometry. */
size_t bt_kv_region_bytes(const bt_kv_geom_t *geom, uint32_t n_blocks);
/* BT_OK when every field is in range (nonzero, block_size <= max, known
 * dtype, slice fits); logs what is wrong otherwise. */
bt_status_t bt_kv_geom_check(const bt_kv_geom_t *geom);

bt_status_t bt_kvpool_create(const bt_kvpool_config_t *config,
                             bt_kvpool_t **pool_p);
/* Frees the pool's own memory (never a caller-supplied region). Sequences
 * must have been destroyed first. NULL-safe. */
void bt_kvpool_destroy(bt_kvpool_t *pool);

void bt_kvpool_set_event_cb(bt_kvpool_t *pool, bt_kv_event_cb cb, void *ctx);

const bt_kv_geom_t *bt_kvpool_geom(const bt_kvpool_t *pool);
uint32_t bt_kvpool_n_blocks(const bt_kvpool_t *pool);
void *bt_kvpool_base(const bt_kvpool_t *pool);
/* Per block, a counter raised each time the block is handed out (to a
 * sequence or a reservation): whoever mirrors the pool (a GPU's copy)
 * knows its copy of a block is stale when the counter moved. */
const uint32_t *bt_kvpool_gens(const bt_kvpool_t *pool);
size_t bt_kvpool_region_bytes(const bt_kvpool_t *pool);
size_t bt_kvpool_slice_bytes(const bt_kvpool_t *pool);
/* Byte offset of the (layer, block) slice from the base (K part first). */
size_t bt_kvpool_slice_offset(const bt_kvpool_t *pool, uint32_t layer,
                              uint32_t block);
/* Byte offset of V within a slice (= slice_bytes / 2). */
size_t bt_kvpool_v_offset(const bt_kvpool_t *pool);
/* Pointer to K of (layer, block); V is at + bt_kvpool_v_offset(). Ids and
 * layers are asserted in range (internal invariant). */
void *bt_kvpool_block_ptr(const bt_kvpool_t *pool, uint32_t layer,
                          uint32_t block);
/* K (is_v false) or V row of one token slot of a block: n_kv_heads *
 * head_dim elements. */
void *bt_kvpool_token_ptr(const bt_kvpool_t *pool, uint32_t layer,
                          uint32_t block, uint32_t slot, bool is_v);

void bt_kvpool_stats(const bt_kvpool_t *pool, bt_kvpool_stats_t *stats_p);
uint32_t bt_kvpool_refcount(const bt_kvpool_t *pool, uint32_t block);

/* Blocks obtainable right now without touching referenced ones
 * (free + cached). */
uint32_t bt_kvpool_available(const bt_kvpool_t *pool);

/* Empties the hash index: cached blocks return to the free list and
 * blocks in use stay with their sequences but are no longer shareable
 * (they go to the free list when released). Emits one CLEARED event
 * (FlushCache). */
void bt_kvpool_clear_cache(bt_kvpool_t *pool);
/* A STORED event for every block in the hash index now (held or cached),
 * in block order: what a router that registers anew must learn. The pool's
 * own event callback is not called. */
void bt_kvpool_foreach_indexed(const bt_kvpool_t *pool, bt_kv_event_cb cb,
                               void *ctx);

/* How many leading blocks of `hashes` are cached or in use and indexed
 * with the same token ids; takes no references and does not touch the
 * LRU (for scoring and reports). `tokens` has n_hashes * block_size ids. */
size_t bt_kvpool_lookup(const bt_kvpool_t *pool,
                        const uint8_t (*hashes)[BT_KV_HASH_LEN],
                        size_t n_hashes, const uint32_t *tokens);

/* ---- reservations: blocks written by someone else (a remote put) ---- */

/* Allocates exactly n blocks (all or nothing: BT_ERR_EXHAUSTED and no
 * change) with refcount 1 each, owned by the reservation; ids_p gets them
 * in ascending allocation order (freshly freed pools give consecutive
 * ids). Their content is undefined until written. */
bt_status_t bt_kvpool_reserve(bt_kvpool_t *pool, uint32_t n,
                              uint32_t *ids_p);
/* Returns reserved blocks to the free list (transfer failed, lease
 * expired). */
void bt_kvpool_reserve_abort(bt_kvpool_t *pool, const uint32_t *ids,
                             uint32_t n);

/* Runs of consecutive ids: runs_p[i] = {index into ids, first id, count}.
 * With `max_runs` >= n it cannot fail; else BT_ERR_TOO_LARGE. One run is
 * one contiguous range of slice_bytes * count bytes per layer. */
typedef struct {
    uint32_t index; /* position of the first block of the run in ids */
    uint32_t first; /* first block id */
    uint32_t count; /* consecutive ids first .. first+count-1 */
} bt_kv_run_t;

bt_status_t bt_kv_runs(const uint32_t *ids, uint32_t n, bt_kv_run_t *runs_p,
                       uint32_t max_runs, uint32_t *n_runs_p);

/* ---- sequences (block tables) ---- */

typedef struct bt_kvseq bt_kvseq_t;

/* A sequence of one request in `pool`. `root` is the request's h_{-1}
 * (bt_kv_hash_root with its tenant's salt), copied. */
bt_status_t bt_kvseq_create(bt_kvpool_t *pool,
                            const uint8_t root[BT_KV_HASH_LEN],
                            bt_kvseq_t **seq_p);
/* Releases every block (last block first, so a prefix stays cached
 * longest); full indexed blocks become cached, others free. NULL-safe. */
void bt_kvseq_destroy(bt_kvseq_t *seq);

uint32_t bt_kvseq_n_tokens(const bt_kvseq_t *seq);   /* slots filled */
uint32_t bt_kvseq_n_computed(const bt_kvseq_t *seq); /* KV written */
uint32_t bt_kvseq_n_blocks(const bt_kvseq_t *seq);
/* The block table: n_blocks ids, valid until the next call that changes
 * the sequence. Token position p lives in block ids[p / block_size], slot
 * p % block_size. */
const uint32_t *bt_kvseq_blocks(const bt_kvseq_t *seq);
/* Hash of full block i (i < n_computed / block_size), or NULL. */
const uint8_t *bt_kvseq_block_hash(const bt_kvseq_t *seq, uint32_t i);
/* The chain's parent of block i: the hash of block i - 1, or the root
 * h_{-1} for block 0; NULL when block i - 1 is not hashed yet. */
const uint8_t *bt_kvseq_parent_hash(const bt_kvseq_t *seq, uint32_t i);

/* Blocks bt_kvseq_append would need to add n tokens. */
uint32_t bt_kvseq_blocks_needed(const bt_kvseq_t *seq, uint32_t n);

/* Appends n token ids: records them and allocates the blocks their slots
 * need (all or nothing). The caller then computes and writes their K/V at
 * positions n_tokens_before .. +n-1 and calls bt_kvseq_set_computed.
 * BT_ERR_EXHAUSTED: not enough blocks, nothing changed. */
bt_status_t bt_kvseq_append(bt_kvseq_t *seq, const uint32_t *tokens,
                            uint32_t n);

/* Declares the K/V of the first n_computed tokens written (monotonic;
 * n_computed <= n_tokens). Blocks that become full are hashed, indexed
 * and reported `stored` (a hash already indexed by another block is not
 * indexed twice). */
bt_status_t bt_kvseq_set_computed(bt_kvseq_t *seq, uint32_t n_computed);

/* On an empty sequence: takes copy-free references on the longest run of
 * indexed blocks matching the full blocks of tokens[0 .. n_tokens) (a hash
 * hit whose stored token ids differ ends the run and counts `rejected`),
 * moves them to most recently used, and sets n_tokens = n_computed =
 * matched * block_size. *n_matched_p gets the number of blocks. `hashes`
 * may be NULL (computed here from the sequence's root) or the chain of
 * n_tokens / block_size hashes. To leave at least one token to compute,
 * pass n_tokens = prompt length - 1. */
bt_status_t bt_kvseq_match_prefix(bt_kvseq_t *seq, const uint32_t *tokens,
                                  uint32_t n_tokens,
                                  const uint8_t (*hashes)[BT_KV_HASH_LEN],
                                  uint32_t *n_matched_p);

/* Appends reserved blocks (from bt_kvpool_reserve; the reservation's
 * references move to the sequence) whose K/V someone has written, with
 * the token ids they hold: n_tokens <= n_ids * block_size and n_tokens >
 * (n_ids - 1) * block_size. The sequence must be block aligned (n_tokens %
 * block_size == 0) and fully computed. Full blocks are hashed and indexed
 * as by set_computed. */
bt_status_t bt_kvseq_commit_reserved(bt_kvseq_t *seq, const uint32_t *ids,
                                     uint32_t n_ids, const uint32_t *tokens,
                                     uint32_t n_tokens);

/* Shrinks the sequence to n_tokens (n_tokens <= n_computed is not
 * required); releases blocks no longer needed (speculative decoding
 * rollback, preemption). */
bt_status_t bt_kvseq_truncate(bt_kvseq_t *seq, uint32_t n_tokens);

/* A second sequence over the first n_tokens (<= n_computed) of `src`
 * (n > 1 choices of one prompt): every block they span is shared by
 * reference, hashes and all, and nothing is copied now. Whichever of the
 * two first appends into a partial block that both hold gets its own
 * copy of it then (copy on write: bt_kvseq_blocks_needed counts that
 * block). Each is destroyed on its own; `src` may be destroyed first. */
bt_status_t bt_kvseq_fork(const bt_kvseq_t *src, uint32_t n_tokens,
                          bt_kvseq_t **seq_p);

/* ---- export / import (tests, transfer over active messages) ---- */

/* Bytes of an export of n_blocks blocks: n_layers * n_blocks *
 * slice_bytes. */
size_t bt_kvpool_export_bytes(const bt_kvpool_t *pool, uint32_t n_blocks);
/* Copies the slices of blocks ids[0..n) into dst in the order
 * [layer][i] (dst_len >= export_bytes). */
bt_status_t bt_kvpool_export(const bt_kvpool_t *pool, const uint32_t *ids,
                             uint32_t n, void *dst, size_t dst_len);
/* Writes such an export into blocks ids[0..n) of `pool` (typically
 * reserved); the geometries of both pools must be equal. */
bt_status_t bt_kvpool_import(bt_kvpool_t *pool, const uint32_t *ids,
                             uint32_t n, const void *src, size_t src_len);

#endif
