/* A store on a test loop: fake clock, a malloc'ed slab, a temporary disk
 * folder, chains of blocks with random bytes, and blocking helpers that
 * run the loop until a callback came. */
#ifndef KVS_TEST_UTIL_H
#define KVS_TEST_UTIL_H

#include "store/store.h"

#include <event2/event.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KT_BLOCK_TOKENS 4
#define KT_MAX_BLOCKS 64

typedef struct {
    struct event_base *base;
    bt_tpool_t        *io;
    bt_kvs_t          *s;
    uint8_t           *slab;
    size_t             slab_len;
    char               dir[256];     /* "" = no disk tier */
    uint64_t           disk_bytes;
    uint64_t           now;          /* fake clock, ms */
    bt_kv_geom_t       geom;
    uint64_t           block_bytes;
    bt_kvs_event_cb    event_cb;     /* passed to the store by kt_fx_start */
    void              *event_arg;
} kt_fx_t;

/* A chain of blocks: root, token ids, hashes and each block's bytes. */
typedef struct {
    uint8_t  root[BT_KV_HASH_LEN];
    uint32_t tokens[KT_MAX_BLOCKS][KT_BLOCK_TOKENS];
    uint8_t  hash[KT_MAX_BLOCKS][BT_KV_HASH_LEN];
    uint8_t *data[KT_MAX_BLOCKS];
    size_t   n;
} kt_chain_t;

/* `slots` DRAM slots; `disk_blocks` 0 = no disk tier, else a limit of that
 * many files. */
kt_fx_t *kt_fx_new(uint32_t slots, uint32_t disk_blocks);
/* Destroys the store (and io), keeping the folder: a "restart". */
void kt_fx_stop(kt_fx_t *fx);
void kt_fx_start(kt_fx_t *fx);
void kt_fx_free(kt_fx_t *fx);         /* also removes the folder */

void kt_chain_init(kt_fx_t *fx, kt_chain_t *c, size_t n, uint32_t seed);
void kt_chain_free(kt_chain_t *c);

/* Reserve blocks [from, from + n) of `c`, write them into the slots,
 * commit; returns the commit result (asserts on errors). `bad` >= 0
 * corrupts that block's bytes after the checksum was taken. */
bt_kvs_commit_result_t kt_put(kt_fx_t *fx, const kt_chain_t *c, size_t from,
                              size_t n, int bad);
/* Commits and waits. */
bt_kvs_commit_result_t kt_commit(kt_fx_t *fx, uint64_t id,
                                 const bt_kvs_commit_block_t *b, size_t n);
size_t kt_lookup(kt_fx_t *fx, const kt_chain_t *c, size_t n);

typedef struct {
    bt_status_t         status;
    uint64_t            pin_id;
    size_t              n;
    bt_kvs_block_info_t info[KT_MAX_BLOCKS];
} kt_pin_t;

/* Pins the first n blocks, waits; with `verify`, checks bytes, tokens and
 * checksums of what was pinned. */
kt_pin_t kt_pin(kt_fx_t *fx, const kt_chain_t *c, size_t n, bool verify);

/* Runs the loop until every io task's done ran. */
void kt_drain(kt_fx_t *fx);
/* Runs the loop until *flag. */
void kt_wait(kt_fx_t *fx, const bool *flag);
/* Files under the disk folder ending .blk. */
size_t kt_count_files(const kt_fx_t *fx);
void kt_block_path(const kt_fx_t *fx, const uint8_t *hash, char *out, size_t n);

#endif
