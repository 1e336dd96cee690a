/* The calls the request machinery makes on nodes, behind a table so a
 * test can give fake nodes (tests/unit/router/test_request_fake.c).
 * bt_router_t.node_ops picks the table; bt_node_ops_grpc is the real one
 * (node_ops.c: the node's channel from the registry).
 *
 * Each call returns BT_OK and later calls `done` exactly once, from the
 * event loop, also after a cancel (then with CANCELLED unless it had
 * ended); or it returns an error and never calls `done`:
 * BT_ERR_NOT_FOUND when the node has no channel (it left). `node` may be
 * NULL (a node that left): BT_ERR_NOT_FOUND. Messages are borrowed for the
 * call only; responses for the callback only. */
#ifndef BT_ROUTER_NODE_OPS_H
#define BT_ROUTER_NODE_OPS_H

#include "router.h"

#include "node.pb-c.h"
#include "rpc/client.h"

/* One call in flight (for the real table, a bt_rpc_client_call_t). */
typedef struct bt_node_call bt_node_call_t;

typedef struct bt_node_ops {
    /* Decode/DecodeStream: a Reservation, then Tokens, then a Final. */
    bt_status_t (*decode_stream)(bt_router_t *r, const bt_node_t *node,
                                 const Baton__V1__DecodeRequest *rq,
                                 uint64_t timeout_ms, bt_rpc_msg_cb on_msg,
                                 bt_rpc_done_cb done, void *arg,
                                 bt_node_call_t **call_p);
    /* Prefill/Prefill: a PrefillResult. */
    bt_status_t (*prefill)(bt_router_t *r, const bt_node_t *node,
                           const Baton__V1__PrefillRequest *rq,
                           uint64_t timeout_ms, bt_rpc_unary_done_cb done,
                           void *arg, bt_node_call_t **call_p);
    /* Decode/RenewLease: a RenewLeaseResponse. */
    bt_status_t (*renew_lease)(bt_router_t *r, const bt_node_t *node,
                               const Baton__V1__RenewLeaseRequest *rq,
                               uint64_t timeout_ms, bt_rpc_unary_done_cb done,
                               void *arg, bt_node_call_t **call_p);
    /* Asks the call to end; its `done` follows. Safe until `done` ran. */
    void (*cancel)(bt_router_t *r, bt_node_call_t *call);
} bt_node_ops_t;

extern const bt_node_ops_t bt_node_ops_grpc;

#endif
