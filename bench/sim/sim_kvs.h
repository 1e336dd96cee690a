/* The kvstore in the simulator: the real block store (kvstore/store,
 * libbt_kvstore) with its LRU eviction, driven synchronously. Blocks
 * have a tiny geometry (the simulator moves no KV bytes), so a store of
 * `blocks` real blocks costs a few hundred bytes each; capacity is in
 * blocks: the store size divided by the modelled block's bytes. Keys are
 * kv-spec block hashes (the store checks the chain), so the simulator
 * hashes prompts with kv-spec when a kvstore is on. Stored/removed
 * events go to `ev` (the router's index of the kvstore replica). */
#ifndef BT_SIM_KVS_H
#define BT_SIM_KVS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct bt_sim_kvs bt_sim_kvs_t;

typedef void (*bt_sim_kvs_ev_cb)(void *arg, bool stored, const uint8_t *hash);

/* `now_ms` is the simulated clock (pins and reservations expire on it).
 * NULL on failure (logged). */
bt_sim_kvs_t *bt_sim_kvs_create(uint64_t blocks, uint32_t block_size,
                                uint64_t (*now_ms)(void *arg), void *clock_arg,
                                bt_sim_kvs_ev_cb ev, void *ev_arg);
void bt_sim_kvs_destroy(bt_sim_kvs_t *k);

/* Blocks of hashes[0..n) the store can serve, as a prefix: a pin (which
 * refreshes their recency, as a node's get does) then its release. */
size_t bt_sim_kvs_fetch(bt_sim_kvs_t *k, const uint8_t *hashes, size_t n);
/* Publishes blocks [from, n) of a chain (root: h-1; tokens: n * block_size
 * ids) as a node does after a prefill; blocks already stored are kept. */
void bt_sim_kvs_put(bt_sim_kvs_t *k, const uint8_t *root,
                    const uint8_t *hashes, size_t from, size_t n,
                    const uint32_t *tokens);
uint64_t bt_sim_kvs_evictions(const bt_sim_kvs_t *k);

#endif
