/* The router's calls on nodes over gRPC: node_ops.h's real table. */
#include "node_ops.h"

bt_rpc_channel_t *bt_router_node_channel(bt_router_t *r, const bt_node_t *node)
{
    return node != NULL && node->live ? r->node_ch[node->slot] : NULL;
}

/* One call on the node's channel: a server stream when on_msg is set,
 * else unary. */
static bt_status_t bt_node_ops_call(bt_router_t *r, const bt_node_t *node,
                                    const char *method,
                                    const ProtobufCMessage *rq,
                                    const ProtobufCMessageDescriptor *desc,
                                    uint64_t timeout_ms, bt_rpc_msg_cb on_msg,
                                    bt_rpc_done_cb stream_done,
                                    bt_rpc_unary_done_cb unary_done, void *arg,
                                    bt_node_call_t **call_p)
{
    bt_rpc_channel_t *ch = bt_router_node_channel(r, node);
    bt_rpc_call_opts_t opts = { timeout_ms, NULL, 0 };
    bt_rpc_client_call_t *call = NULL;
    bt_status_t s;

    if (ch == NULL) {
        return BT_ERR_NOT_FOUND;
    }
    s = on_msg != NULL
        ? bt_rpc_client_stream(ch, method, rq, desc, &opts, on_msg, stream_done,
                               arg, &call)
        : bt_rpc_client_unary(ch, method, rq, desc, &opts, unary_done, arg, &call);
    *call_p = (bt_node_call_t *)call;
    return s;
}

static bt_status_t bt_node_ops_decode_stream(bt_router_t *r, const bt_node_t *node,
                                             const Baton__V1__DecodeRequest *rq,
                                             uint64_t timeout_ms,
                                             bt_rpc_msg_cb on_msg,
                                             bt_rpc_done_cb done, void *arg,
                                             bt_node_call_t **call_p)
{
    return bt_node_ops_call(r, node, "/baton.v1.Decode/DecodeStream", &rq->base,
                            &baton__v1__decode_response__descriptor, timeout_ms,
                            on_msg, done, NULL, arg, call_p);
}

static bt_status_t bt_node_ops_prefill(bt_router_t *r, const bt_node_t *node,
                                       const Baton__V1__PrefillRequest *rq,
                                       uint64_t timeout_ms,
                                       bt_rpc_unary_done_cb done, void *arg,
                                       bt_node_call_t **call_p)
{
    return bt_node_ops_call(r, node, "/baton.v1.Prefill/Prefill", &rq->base,
                            &baton__v1__prefill_result__descriptor, timeout_ms,
                            NULL, NULL, done, arg, call_p);
}

static bt_status_t bt_node_ops_renew_lease(bt_router_t *r, const bt_node_t *node,
                                           const Baton__V1__RenewLeaseRequest *rq,
                                           uint64_t timeout_ms,
                                           bt_rpc_unary_done_cb done, void *arg,
                                           bt_node_call_t **call_p)
{
    return bt_node_ops_call(r, node, "/baton.v1.Decode/RenewLease", &rq->base,
                            &baton__v1__renew_lease_response__descriptor,
                            timeout_ms, NULL, NULL, done, arg, call_p);
}

static void bt_node_ops_cancel(bt_router_t *r, bt_node_call_t *call)
{
    (void)r;
    bt_rpc_client_call_cancel((bt_rpc_client_call_t *)call);
}

const bt_node_ops_t bt_node_ops_grpc = {
    bt_node_ops_decode_stream,
    bt_node_ops_prefill,
    bt_node_ops_renew_lease,
    bt_node_ops_cancel,
};
