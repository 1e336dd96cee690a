/* A serving node's use of the kvstore, the tier-2 prefix cache (DESIGN §5,
 * docs/internals/node.md "kvstore"): blocks are sharded over the replicas
 * of --kvstore by rendezvous hashing (common/kvspec/kv_shard.h), read into
 * the pool on a prefill (after the node's own cache) and published in the
 * background as they fill. The kvstore is only ever an optimisation: any
 * failure (a replica down, a deadline, a checksum or token mismatch) is a
 * miss, and the node computes instead.
 *
 * Loop thread only. */
#ifndef BT_NODE_KVS_H
#define BT_NODE_KVS_H

#include "base/status.h"
#include "engine/kv/kv_pool.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BT_NODE_KVS_MAX_REPLICAS 16
#define BT_NODE_KVS_MAX_STAGED   (256u << 20)  /* bytes of puts in flight */
/* Staging buffers of answered puts kept for the next ones (base/spares.h):
 * a fresh one faults each of its pages as the blocks are copied in. */
#define BT_NODE_KVS_SPARE_BYTES  (64u << 20)

struct bt_node;
typedef struct bt_node_kvs bt_node_kvs_t;

/* From node->cfg.kvstore (comma-separated targets; empty: no kvstore).
 * BT_ERR_INVALID_ARG (logged) for a malformed list. */
bt_status_t bt_node_kvs_init(struct bt_node *node);
void bt_node_kvs_destroy(struct bt_node *node);
bool bt_node_kvs_on(const struct bt_node *node);
/* A prefill that did not ask the kvstore, by the router's word. */
void bt_node_kvs_count_avoided(struct bt_node *node);
/* Target of replica i of the sorted --kvstore list, NULL past the end or
 * without a kvstore. */
const char *bt_node_kvs_target(const struct bt_node *node, size_t i);

/* got: leading blocks fetched, verified and appended to the sequence. */
typedef void (*bt_node_kvs_fetch_cb)(void *arg, uint32_t got);

/* Blocks [from, to) of a sequence whose first `from` blocks are in place
 * (aligned and computed); `tokens` holds the ids of blocks 0 .. to-1. The
 * longest run the kvstore has lands in newly reserved pool blocks that
 * join `seq`; `cb` runs once, never inside the call, within `timeout_ms`.
 * `seq` and `tokens` must live until then. BT_OK, or an error and no
 * callback (nothing to fetch, no kvstore). */
bt_status_t bt_node_kvs_fetch(struct bt_node *node, bt_kvseq_t *seq,
                              const uint32_t *tokens, uint32_t from,
                              uint32_t to, uint64_t timeout_ms,
                              bt_node_kvs_fetch_cb cb, void *arg);

/* Full, hashed blocks [from, to) of `seq`, whose token ids `tokens` holds
 * ((to - from) * block_size of them), go to their replicas in the
 * background: copied now, so the sequence may change or end right after
 * the call. While the block's replica is down the put waits for it (its
 * probe). Best effort: past BT_NODE_KVS_MAX_STAGED bytes in flight or
 * waiting, the oldest waiting puts are dropped, then new ones (counted);
 * baton_node_kvstore_publish_backlog_blocks shows what is not answered. */
void bt_node_kvs_publish(struct bt_node *node, const bt_kvseq_t *seq,
                         const uint32_t *tokens, uint32_t from, uint32_t to);

#endif
