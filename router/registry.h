/* The router's table of nodes (DESIGN §2, §5): who is registered, with
 * which role, capacity and last reported load, and which KV blocks each
 * holds (a prefix index fed by KV events). A node leaves when its Register
 * stream breaks or when it misses heartbeats for `heartbeat_timeout_ms`.
 * Pure bookkeeping: the RPC side lives in router.c. */
#ifndef BT_ROUTER_REGISTRY_H
#define BT_ROUTER_REGISTRY_H

#include "base/status.h"
#include "kvspec/kv_spec.h"
#include "prefix_index.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BT_NODE_ID_MAX    64
#define BT_NODE_MODEL_MAX 128
#define BT_NODE_ADDR_MAX  256
#define BT_NODE_UCX_MAX   4096
#define BT_NODE_VERSION_MAX 64
/* Nodes that stopped heartbeating, kept for operators (LOST). */
#define BT_REGISTRY_MAX_LOST 64

typedef enum {
    BT_NODE_ROLE_PREFILL = 1,
    BT_NODE_ROLE_DECODE  = 2,
    BT_NODE_ROLE_BOTH    = 3,   /* a mask: both bits */
    BT_NODE_ROLE_KVSTORE = 4,   /* a kvstore replica: KV events, no requests */
} bt_node_role_t;

/* "prefill", "decode", "prefill+decode", "kvstore" ("unknown" otherwise) */
const char *bt_node_role_str(bt_node_role_t role);

typedef struct {
    uint64_t queued_prefill_tokens;
    uint32_t running_sequences;
    uint32_t free_blocks;
    uint32_t waiting_requests;
    bool     draining;
    bool     drained;
    /* measured on the node (NodeStatus); 0: not reported or not usable */
    double   prefill_rate;     /* prefill tokens per ms of compute */
    double   decode_step_ms;   /* a decode step */
} bt_node_load_t;

/* A prefill node's KV transfers to one decode node, as last reported
 * (registry.proto TransferPeer). */
#define BT_NODE_XFER_MAX 64
typedef struct {
    char     decode_node[BT_NODE_ID_MAX + 1];
    uint64_t bytes, ops, errors;
    char     last_error[64];
    uint64_t last_error_unix_ms;
    double   latency_p50_ms, latency_p99_ms, bandwidth_gbps;
} bt_node_xfer_t;

typedef struct {
    bool           live;
    unsigned       slot;                      /* index, stable while live */
    char           id[BT_NODE_ID_MAX + 1];
    /* The roles new work may be placed in: `serving` less, while it moves,
     * the roles it leaves (bt_registry_set_role). Selection reads this. */
    bt_node_role_t role;
    /* --role flexible nodes (roles.c): the role it announced and the one
     * it moves to (0: none), since when it serves it, and the SET_ROLE
     * command this router sent and has no Ack for yet (0: none) */
    bool           flexible;
    bt_node_role_t serving;
    bt_node_role_t moving_to;
    uint64_t       role_since_ms;
    uint64_t       role_cmd_id;
    char           model[BT_NODE_MODEL_MAX + 1];
    char           grpc_address[BT_NODE_ADDR_MAX + 1];
    char           http_address[BT_NODE_ADDR_MAX + 1]; /* "" when not told */
    uint8_t       *ucx_address;               /* owned */
    size_t         ucx_address_len;
    uint32_t       total_blocks;
    uint32_t       block_size;
    uint32_t       max_batch;
    uint32_t       max_prefill_tokens;
    bt_kv_dtype_t  kv_dtype;                  /* = baton.v1.KvDtype */
    /* kv-spec v2 numerics id ("" for a kvstore): KV is shared and
     * requests fail over only between nodes whose ids are equal */
    char           numerics[BT_KV_NUMERICS_MAX + 1];
    char           version[BT_NODE_VERSION_MAX + 1];
    bt_node_load_t load;                      /* as last reported */
    uint32_t       assigned;                  /* requests the router has in flight on it */
    uint64_t       assigned_prefill_tokens;   /* not yet reflected in a report */
    /* Decode reservations the last report may not show (select.c): blocks
     * asked of the node whose reservation has not come back yet, and
     * blocks reserved since the last report. A report clears the second;
     * the first stays until each answer comes (the node may take the
     * request after it reported). */
    uint32_t       resv_pending_blocks;
    uint32_t       resv_unreported_blocks;
    /* The node refused a reservation of this many blocks since its last
     * report (0: none): requests as large wait for the next report. */
    uint32_t       refused_blocks;
    uint64_t       registered_ms;
    uint64_t       last_seen_ms;
    uint64_t       grace_ms;                  /* the router's own stalls since then */
    uint64_t       last_chosen;               /* tie-break: least recently chosen first */
    uint64_t       kv_seq;                    /* last KvEvents.seq */
    /* prompt tokens of the prefills it ran, and of those found in its own
     * pool (Admin CacheStats) */
    uint64_t       cache_lookup_tokens;
    uint64_t       cache_hit_tokens;
    bt_node_xfer_t *xfers;                    /* owned; as last reported */
    size_t         n_xfers;
    void          *conn;                      /* the Register call (router.c) */
} bt_node_t;

typedef struct bt_registry bt_registry_t;

bt_registry_t *bt_registry_create(size_t prefix_index_entries,
                                  uint64_t heartbeat_timeout_ms);
void bt_registry_destroy(bt_registry_t *reg);

typedef struct {
    const char    *id;
    bt_node_role_t role;
    const char    *model;
    const char    *grpc_address;
    const uint8_t *ucx_address;
    size_t         ucx_address_len;
    uint32_t       total_blocks;
    uint32_t       block_size;
    uint32_t       max_batch;
    uint32_t       max_prefill_tokens;
    bt_kv_dtype_t  kv_dtype;                  /* = baton.v1.KvDtype */
    const char    *numerics;                  /* NULL: none (a kvstore) */
    const char    *version;                   /* the daemon's; NULL: unknown */
    const char    *http_address;              /* NULL or "": not told */
} bt_node_hello_t;

/* A node that missed its heartbeats: gone from selection and counts, kept
 * here until it registers again or an operator forgets it. */
typedef struct {
    char           id[BT_NODE_ID_MAX + 1];
    bt_node_role_t role;
    char           model[BT_NODE_MODEL_MAX + 1];
    char           grpc_address[BT_NODE_ADDR_MAX + 1];
    char           http_address[BT_NODE_ADDR_MAX + 1];
    char           version[BT_NODE_VERSION_MAX + 1];
    uint32_t       total_blocks;
    uint64_t       registered_ms;
    uint64_t       last_seen_ms;
} bt_node_lost_t;

/* Registers (or re-registers: an id seen again replaces its old entry,
 * e.g. after a node restart) a node. BT_ERR_INVALID_ARG with a message for
 * a bad hello, BT_ERR_EXHAUSTED when the table is full. */
bt_status_t bt_registry_add(bt_registry_t *reg, const bt_node_hello_t *hello,
                            uint64_t now_ms, void *conn, bt_node_t **node_p,
                            char *err, size_t err_size);
/* The role a flexible node serves and the one it moves to (0: none): the
 * role new work may take becomes serving & moving_to while it moves. */
void bt_registry_set_role(bt_node_t *node, bt_node_role_t serving,
                          bt_node_role_t moving_to);

/* Removes the node and its prefix index entries. */
void bt_registry_remove(bt_registry_t *reg, bt_node_t *node);

void bt_registry_update_load(bt_registry_t *reg, bt_node_t *node,
                             const bt_node_load_t *load, uint64_t now_ms);
/* Replaces the node's transfer report with x[0..n) (copied; at most
 * BT_NODE_XFER_MAX kept). */
void bt_registry_update_transfers(bt_registry_t *reg, bt_node_t *node,
                                  const bt_node_xfer_t *x, size_t n);

/* KV events: `hashes` is n × 32 bytes. Returns false when `seq` shows a
 * gap (events were lost: the node's entries are dropped and rebuilt from
 * later events). */
bool bt_registry_kv_events_begin(bt_registry_t *reg, bt_node_t *node,
                                 uint64_t seq);
void bt_registry_kv_stored(bt_registry_t *reg, bt_node_t *node,
                           const uint8_t *hashes, size_t n);
void bt_registry_kv_removed(bt_registry_t *reg, bt_node_t *node,
                            const uint8_t *hashes, size_t n);
void bt_registry_kv_cleared(bt_registry_t *reg, bt_node_t *node);

/* Nodes whose last heartbeat is older than the timeout: calls `expired`
 * for each (which must not touch other nodes), then removes them and
 * keeps each as LOST (the oldest lost one makes room when the list is
 * full). Returns how many. A call more than half a timeout after the
 * previous one means the router itself did not run (stopped, starved):
 * that time beyond half a timeout does not count against the nodes,
 * whose heartbeats of then still wait in the router's sockets. */
size_t bt_registry_expire(bt_registry_t *reg, uint64_t now_ms,
                          void (*expired)(bt_node_t *node, void *arg),
                          void *arg);

bt_node_t *bt_registry_find(bt_registry_t *reg, const char *id);

/* The i-th LOST node (0, 1, ...); NULL past the last. */
const bt_node_lost_t *bt_registry_lost(const bt_registry_t *reg, size_t i);
/* Drops a LOST node; false when none has that id. */
bool bt_registry_forget(bt_registry_t *reg, const char *id);
/* Iteration: slots 0 .. BT_ROUTER_MAX_NODES-1, skipping dead ones. */
bt_node_t *bt_registry_slot(bt_registry_t *reg, unsigned slot);
/* The next stamp for bt_node_t.last_chosen (select.c), from 1 up. */
uint64_t bt_registry_next_choice(bt_registry_t *reg);
size_t bt_registry_count(const bt_registry_t *reg, bt_node_role_t role,
                         const char *model);
/* As bt_registry_count, without the nodes that drain (or drained): the
 * ones that may take a new request. */
size_t bt_registry_count_usable(const bt_registry_t *reg, bt_node_role_t role,
                                const char *model);

/* The distinct numerics ids of the live prefill and decode nodes of
 * `model`, in slot order, into ids: returns how many (at most `max`; the
 * ids past it are left out). */
size_t bt_registry_numerics(bt_registry_t *reg, const char *model,
                            char (*ids)[BT_KV_NUMERICS_MAX + 1], size_t max);

const bt_prefix_index_t *bt_registry_index(const bt_registry_t *reg);
/* Slots of the live kvstore replicas (BT_PREFIX_WORDS words, bit = slot). */
const uint64_t *bt_registry_store_mask(const bt_registry_t *reg);
/* At least one kvstore replica is registered (its blocks are indexed). */
bool bt_registry_has_store(const bt_registry_t *reg);

#endif
