/* The router's index of which nodes hold which KV blocks, fed by the
 * nodes' KV events (DESIGN §5). Keys are 32-byte chained block hashes
 * (docs/kv-spec.md); each key maps to a bitmask of node slots. Bounded: at
 * most `max_entries` hashes; a `stored` event for a new hash when full is
 * dropped (the index is a hint: a miss only costs a recompute). Its table
 * grows with the entries (at most half full), so memory follows the
 * blocks the nodes hold, up to about 144 bytes per entry of max_entries. */
#ifndef BT_ROUTER_PREFIX_INDEX_H
#define BT_ROUTER_PREFIX_INDEX_H

#include "base/status.h"

#include <stddef.h>
#include <stdint.h>

#define BT_ROUTER_MAX_NODES 256
#define BT_BLOCK_HASH_LEN 32
#define BT_PREFIX_WORDS (BT_ROUTER_MAX_NODES / 64)

typedef struct bt_prefix_index bt_prefix_index_t;

bt_prefix_index_t *bt_prefix_index_create(size_t max_entries);
void bt_prefix_index_destroy(bt_prefix_index_t *idx);

/* `node` < BT_ROUTER_MAX_NODES. */
void bt_prefix_index_add(bt_prefix_index_t *idx, const uint8_t *hash,
                         unsigned node);
void bt_prefix_index_remove(bt_prefix_index_t *idx, const uint8_t *hash,
                            unsigned node);
/* Drops every block of `node` (it left, or cleared its cache). */
void bt_prefix_index_remove_node(bt_prefix_index_t *idx, unsigned node);

/* Length of the longest prefix of `hashes` (n of them, 32 bytes each,
 * chain order) that `node` holds. */
size_t bt_prefix_index_match(const bt_prefix_index_t *idx,
                             const uint8_t *hashes, size_t n, unsigned node);
/* Length of the longest prefix of `hashes` whose every block some slot of
 * `mask` (BT_PREFIX_WORDS words, bit = slot) holds: a node's own cache
 * together with the kvstore replicas it can fetch from. */
size_t bt_prefix_index_match_any(const bt_prefix_index_t *idx,
                                 const uint8_t *hashes, size_t n,
                                 const uint64_t *mask);

size_t bt_prefix_index_size(const bt_prefix_index_t *idx);
/* Memory the index holds now. */
size_t bt_prefix_index_bytes(const bt_prefix_index_t *idx);
uint64_t bt_prefix_index_dropped(const bt_prefix_index_t *idx);

#endif
