/* baton.v1.Registry/Register: the bidirectional stream every node keeps
 * open. The first message must be a hello; the node is in the pool from
 * the router's ack until the stream ends or heartbeats stop. */
#include "model.h"
#include "request.h"
#include "router.h"

#include "base/clock.h"
#include "base/log.h"
#include "kvspec/kv_proto.h"
#include "registry.pb-c.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    bt_router_t *r;
    bt_node_t   *node;      /* NULL until the hello is accepted */
    uint64_t     gen;
} bt_reg_stream_t;

static void bt_router_update_node_gauges(bt_router_t *r)
{
    bt_router_metrics_nodes(r);
    bt_gauge_set(r->m.nodes_prefill,
                 (double)bt_registry_count(r->registry, BT_NODE_ROLE_PREFILL, NULL));
    bt_gauge_set(r->m.nodes_decode,
                 (double)bt_registry_count(r->registry, BT_NODE_ROLE_DECODE, NULL));
}

/* Takes the node out of the pool: requests on it fail over. */
static void bt_reg_stream_drop(bt_reg_stream_t *st, const char *why, bool planned)
{
    bt_router_t *r = st->r;
    bt_node_t *node = st->node;
    unsigned slot;

    if (node == NULL || !node->live || r->node_gen[node->slot] != st->gen) {
        st->node = NULL;
        return;
    }
    slot = node->slot;
    /* a node that closed its side left on purpose (its drain, SIGTERM);
     * a stream that broke is a failure */
    if (planned) {
        bt_info("node %s left the pool: %s", node->id, why);
    } else {
        bt_warn("node %s left the pool: %s", node->id, why);
    }
    bt_router_requests_node_gone(r, node, why);
    bt_registry_remove(r->registry, node);
    bt_rpc_channel_destroy(r->node_ch[slot]);
    r->node_ch[slot] = NULL;
    r->node_gen[slot] = 0;
    st->node = NULL;
    bt_router_update_node_gauges(r);
    bt_router_queue_kick(r);
}

static void bt_reg_send(bt_rpc_call_t *call, const Baton__V1__RouterMessage *m)
{
    bt_status_t s = bt_rpc_call_send(call, &m->base, NULL, NULL);

    if (s != BT_OK) {
        bt_warn("register: send to node failed: %s", bt_status_str(s));
    }
}

/* The credential roles (rpc/auth.h) registering as `role` needs: 0 for a
 * role the registry refuses anyway. */
static unsigned bt_reg_role_needs(bt_node_role_t role)
{
    switch (role) {
    case BT_NODE_ROLE_PREFILL: return BT_RPC_ROLE_PREFILL;
    case BT_NODE_ROLE_DECODE:  return BT_RPC_ROLE_DECODE;
    case BT_NODE_ROLE_BOTH:    return BT_RPC_ROLE_PREFILL | BT_RPC_ROLE_DECODE;
    case BT_NODE_ROLE_KVSTORE: return BT_RPC_ROLE_KVSTORE;
    default:                   return 0;
    }
}

static void bt_reg_hello(bt_reg_stream_t *st, bt_rpc_call_t *call,
                         const Baton__V1__NodeHello *h)
{
    bt_router_t *r = st->r;
    Baton__V1__RouterMessage reply = BATON__V1__ROUTER_MESSAGE__INIT;
    Baton__V1__Ack ack = BATON__V1__ACK__INIT;
    bt_node_hello_t hello;
    bt_node_t *node = NULL;
    char err[256], want[64], have[64];
    unsigned need;
    bt_status_t s;

    memset(&hello, 0, sizeof(hello));
    hello.id = h->node_id;
    hello.role = (bt_node_role_t)h->role;
    hello.model = h->model;
    hello.grpc_address = h->grpc_address;
    hello.http_address = h->http_address;
    hello.version = h->version;
    hello.numerics = h->numerics;
    hello.ucx_address = h->ucx_address.data;
    hello.ucx_address_len = h->ucx_address.len;
    if (h->capacity != NULL) {
        hello.total_blocks = h->capacity->total_blocks;
        hello.block_size = h->capacity->block_size;
        hello.max_batch = h->capacity->max_batch;
        hello.max_prefill_tokens = h->capacity->max_prefill_tokens;
        hello.kv_dtype = h->capacity->geometry
            ? bt_kv_dtype_from_proto(h->capacity->geometry->dtype)
            : BT_KV_DTYPE_UNSPECIFIED;
    }
    /* a flexible node may come to serve either role */
    need = bt_reg_role_needs(h->flexible && hello.role != BT_NODE_ROLE_KVSTORE
                             ? BT_NODE_ROLE_BOTH : hello.role);
    if ((bt_rpc_call_roles(call) & need) != need) {
        /* a node registers only the role its token or certificate grants */
        snprintf(err, sizeof(err), "node %.64s may not register as %s: "
                 "needs role %s, the credential grants %s",
                 h->node_id ? h->node_id : "?", bt_node_role_str(hello.role),
                 bt_rpc_roles_str(need, want, sizeof(want)),
                 bt_rpc_roles_str(bt_rpc_call_roles(call), have, sizeof(have)));
        bt_rpc_call_deny(call, err);
        return;
    }
    /* a kvstore replica serves every model: its blocks carry the model in
     * their hashes, so there is nothing to match */
    s = hello.role == BT_NODE_ROLE_KVSTORE
        ? BT_OK : bt_router_model_check_node(r, &hello, err, sizeof(err));
    if (s == BT_OK) {
        s = bt_registry_add(r->registry, &hello, bt_now_ms(), call, &node, err,
                            sizeof(err));
    }
    if (s != BT_OK) {
        bt_warn("register: refusing node %s: %s", h->node_id ? h->node_id : "?", err);
        bt_rpc_call_fail(call, s, "%s", err);
        return;
    }
    if (!r->cfg.tls.enabled && !r->cfg.tls.insecure &&
        !bt_rpc_addr_is_loopback(node->grpc_address)) {
        /* its own --listen needed --insecure; say where plaintext goes */
        bt_warn("node %s: plaintext grpc to %s (the router has no --tls-*)",
                node->id, node->grpc_address);
    }
    r->node_ch[node->slot] = bt_rpc_channel_create(r->client, node->grpc_address,
                                                   bt_rpc_tls_cfg_client(&r->cfg.tls));
    if (r->node_ch[node->slot] == NULL) {
        bt_registry_remove(r->registry, node);
        bt_rpc_call_fail(call, BT_ERR_INVALID_ARG, "cannot reach grpc address %s",
                         hello.grpc_address);
        return;
    }
    node->flexible = h->flexible && node->role != BT_NODE_ROLE_KVSTORE;
    st->node = node;
    st->gen = r->node_gen[node->slot] = ++r->next_gen;
    bt_info("node %s joined: role %s%s model %s at %s, %u blocks of %u tokens",
            node->id, bt_node_role_str(node->role),
            node->flexible ? " (flexible)" : "", node->model,
            node->grpc_address, node->total_blocks, node->block_size);
    ack.ok = true;
    ack.command_id = 0;
    ack.error = "";
    reply.kind_case = BATON__V1__ROUTER_MESSAGE__KIND_ACK;
    reply.ack = &ack;
    reply.heartbeat_interval_ms = (uint32_t)r->cfg.heartbeat_ms;
    bt_reg_send(call, &reply);
    bt_router_update_node_gauges(r);
    bt_router_queue_kick(r);
}

/* A prefill node's per-decode-node transfer counters, bounded and with
 * every string length-checked (they come from the network). */
static void bt_reg_transfers(bt_reg_stream_t *st, const Baton__V1__NodeStatus *s)
{
    bt_node_xfer_t x[BT_NODE_XFER_MAX];
    size_t n = 0;

    for (size_t i = 0; i < s->n_transfers && n < BT_NODE_XFER_MAX; i++) {
        const Baton__V1__TransferPeer *t = s->transfers[i];

        if (t == NULL || t->decode_node == NULL || t->decode_node[0] == '\0' ||
            strlen(t->decode_node) > BT_NODE_ID_MAX) {
            continue;
        }
        memset(&x[n], 0, sizeof(x[n]));
        snprintf(x[n].decode_node, sizeof(x[n].decode_node), "%s",
                 t->decode_node);
        x[n].bytes = t->bytes;
        x[n].ops = t->ops;
        x[n].errors = t->errors;
        snprintf(x[n].last_error, sizeof(x[n].last_error), "%s",
                 t->last_error != NULL ? t->last_error : "");
        x[n].last_error_unix_ms = t->last_error_unix_ms;
        x[n].latency_p50_ms = t->latency_p50_ms;
        x[n].latency_p99_ms = t->latency_p99_ms;
        x[n].bandwidth_gbps = t->bandwidth_gbps;
        n++;
    }
    bt_registry_update_transfers(st->r->registry, st->node, x, n);
}

static void bt_reg_kv_events(bt_reg_stream_t *st, const Baton__V1__KvEvents *kv)
{
    bt_router_t *r = st->r;
    size_t i, j;

    bt_registry_kv_events_begin(r->registry, st->node, kv->seq);
    for (i = 0; i < kv->n_events; i++) {
        const Baton__V1__KvEvent *ev = kv->events[i];

        if (ev->kind == BATON__V1__KV_EVENT__KIND__KIND_CLEARED) {
            bt_registry_kv_cleared(r->registry, st->node);
            continue;
        }
        for (j = 0; j < ev->n_block_hashes; j++) {
            if (ev->block_hashes[j].len != BT_BLOCK_HASH_LEN) {
                bt_warn("node %s: kv event with a %zu-byte hash ignored",
                        st->node->id, ev->block_hashes[j].len);
                continue;
            }
            if (ev->kind == BATON__V1__KV_EVENT__KIND__KIND_STORED) {
                bt_registry_kv_stored(r->registry, st->node,
                                      ev->block_hashes[j].data, 1);
            } else if (ev->kind == BATON__V1__KV_EVENT__KIND__KIND_REMOVED) {
                bt_registry_kv_removed(r->registry, st->node,
                                       ev->block_hashes[j].data, 1);
            }
        }
    }
}

static void bt_reg_start(bt_rpc_call_t *call, const ProtobufCMessage *req, void *arg);
static void bt_reg_cancel(bt_rpc_call_t *call, void *arg);

/* What every node costs each router it registers with (the overhead of
 * router replicas, docs/internals/router.md). */
static void bt_reg_count(bt_router_t *r, const Baton__V1__NodeMessage *msg)
{
    int k = msg->kind_case == BATON__V1__NODE_MESSAGE__KIND_HELLO ? 0
            : msg->kind_case == BATON__V1__NODE_MESSAGE__KIND_STATUS ? 1
            : msg->kind_case == BATON__V1__NODE_MESSAGE__KIND_KV_EVENTS ? 2 : 3;

    bt_counter_inc(r->m.node_msgs[k]);
    bt_counter_add(r->m.node_msg_bytes[k],
                   (double)baton__v1__node_message__get_packed_size(msg));
}

/* A speed a node reports: finite and positive, or 0 (not usable). The
 * bound keeps a hostile report from turning the rule's arithmetic into
 * infinities. */
static double bt_reg_speed(double v)
{
    return isfinite(v) && v > 0 && v < 1e9 ? v : 0.0;
}

static void bt_reg_recv(bt_rpc_call_t *call, const ProtobufCMessage *m, void *arg)
{
    bt_reg_stream_t *st = bt_rpc_call_ctx(call);
    const Baton__V1__NodeMessage *msg = (const Baton__V1__NodeMessage *)m;

    (void)arg;
    if (msg == NULL) { /* the node closed its side: a clean leave */
        bt_reg_stream_drop(st, "closed its registration", true);
        bt_rpc_call_set_ctx(call, NULL);
        bt_rpc_call_finish(call);
        free(st);
        return;
    }
    bt_reg_count(st->r, msg);
    if (st->node == NULL || !st->node->live || st->r->node_gen[st->node->slot] != st->gen) {
        if (msg->kind_case != BATON__V1__NODE_MESSAGE__KIND_HELLO || st->gen != 0) {
            bt_rpc_call_fail(call, BT_ERR_INVALID_ARG,
                             st->gen ? "the node was dropped; register again"
                                     : "the first message must be a hello");
            bt_rpc_call_set_ctx(call, NULL);
            free(st);
            return;
        }
        bt_reg_hello(st, call, msg->hello);
        if (st->node == NULL) { /* the call was failed */
            bt_rpc_call_set_ctx(call, NULL);
            free(st);
        }
        return;
    }
    switch (msg->kind_case) {
    case BATON__V1__NODE_MESSAGE__KIND_STATUS: {
        bt_node_load_t load;

        load.queued_prefill_tokens = msg->status->queued_prefill_tokens;
        load.running_sequences = msg->status->running_sequences;
        load.free_blocks = msg->status->free_blocks;
        load.waiting_requests = msg->status->waiting_requests;
        load.draining = msg->status->draining;
        load.drained = msg->status->drained;
        load.prefill_rate = bt_reg_speed(msg->status->prefill_tokens_per_ms);
        load.decode_step_ms = bt_reg_speed(msg->status->decode_step_ms);
        bt_registry_update_load(st->r->registry, st->node, &load, bt_now_ms());
        bt_reg_transfers(st, msg->status);
        bt_router_role_report(st->r, st->node, (unsigned)msg->status->role,
                              (unsigned)msg->status->target_role);
        bt_router_metrics_nodes(st->r);
        bt_router_queue_kick(st->r);
        break;
    }
    case BATON__V1__NODE_MESSAGE__KIND_KV_EVENTS:
        bt_reg_kv_events(st, msg->kv_events);
        break;
    case BATON__V1__NODE_MESSAGE__KIND_ACK:
        bt_router_role_ack(st->r, st->node, msg->ack->command_id,
                           msg->ack->ok, msg->ack->error);
        break;
    default:
        bt_warn("node %s sent an unexpected message kind %d", st->node->id,
                (int)msg->kind_case);
        break;
    }
}

static void bt_reg_cancel(bt_rpc_call_t *call, void *arg)
{
    bt_reg_stream_t *st = bt_rpc_call_ctx(call);

    (void)arg;
    if (st == NULL) {
        return;
    }
    bt_reg_stream_drop(st, "lost its registration stream", false);
    bt_rpc_call_set_ctx(call, NULL);
    bt_rpc_call_fail(call, BT_ERR_CANCELLED, NULL);
    free(st);
}

static void bt_reg_start(bt_rpc_call_t *call, const ProtobufCMessage *req, void *arg)
{
    bt_reg_stream_t *st = calloc(1, sizeof(*st));

    (void)req;
    if (st == NULL) {
        bt_rpc_call_fail(call, BT_ERR_NO_MEMORY, NULL);
        return;
    }
    st->r = arg;
    bt_rpc_call_set_ctx(call, st);
    bt_rpc_call_set_cancel_cb(call, bt_reg_cancel, NULL);
}

/* Heartbeat watchdog: a node that stopped reporting leaves the pool. */
static void bt_reg_expired(bt_node_t *node, void *arg)
{
    bt_router_t *r = arg;
    bt_rpc_call_t *call = node->conn;
    bt_reg_stream_t *st = call ? bt_rpc_call_ctx(call) : NULL;
    unsigned slot = node->slot;

    bt_router_requests_node_gone(r, node, "stopped answering heartbeats");
    bt_rpc_channel_destroy(r->node_ch[slot]);
    r->node_ch[slot] = NULL;
    r->node_gen[slot] = 0;
    if (st != NULL) {
        st->node = NULL; /* the registry removes the entry after this */
        bt_rpc_call_set_ctx(call, NULL);
        bt_rpc_call_fail(call, BT_ERR_TIMED_OUT, "missed heartbeats");
        free(st);
    }
}

static void bt_reg_expire_cb(evutil_socket_t fd, short what, void *arg)
{
    bt_router_t *r = arg;
    size_t expired;

    (void)fd;
    (void)what;
    expired = bt_registry_expire(r->registry, bt_now_ms(), bt_reg_expired, r);
    if (expired > 0) {
        bt_counter_add(r->m.node_expiries, (double)expired);
        bt_router_update_node_gauges(r);
    }
}

bt_status_t bt_router_registry_register(bt_router_t *r)
{
    struct timeval tv = { r->cfg.heartbeat_ms / 1000,
                          (r->cfg.heartbeat_ms % 1000) * 1000 };

    r->expire_ev = event_new(r->base, -1, EV_PERSIST, bt_reg_expire_cb, r);
    if (r->expire_ev == NULL || event_add(r->expire_ev, &tv) != 0) {
        return BT_ERR_NO_MEMORY;
    }
    return bt_rpc_server_add_bidi(r->grpc, "/baton.v1.Registry/Register",
                                  &baton__v1__node_message__descriptor,
                                  bt_reg_start, bt_reg_recv, r);
}

bt_status_t bt_router_node_command(bt_router_t *r, bt_node_t *node, int kind,
                                   const char *request_id)
{
    Baton__V1__RouterMessage m = BATON__V1__ROUTER_MESSAGE__INIT;
    Baton__V1__RouterCommand cmd = BATON__V1__ROUTER_COMMAND__INIT;

    if (node == NULL || !node->live || node->conn == NULL) {
        return BT_ERR_NOT_FOUND;
    }
    cmd.command_id = ++r->next_command_id;
    cmd.kind = (Baton__V1__RouterCommand__Kind)kind;
    cmd.request_id = (char *)(request_id ? request_id : "");
    m.kind_case = BATON__V1__ROUTER_MESSAGE__KIND_COMMAND;
    m.command = &cmd;
    return bt_rpc_call_send(node->conn, &m.base, NULL, NULL);
}

bt_status_t bt_router_node_set_role(bt_router_t *r, bt_node_t *node,
                                    bt_node_role_t role, uint64_t *id_p)
{
    Baton__V1__RouterMessage m = BATON__V1__ROUTER_MESSAGE__INIT;
    Baton__V1__RouterCommand cmd = BATON__V1__ROUTER_COMMAND__INIT;

    if (node == NULL || !node->live || node->conn == NULL) {
        return BT_ERR_NOT_FOUND;
    }
    cmd.command_id = *id_p = ++r->next_command_id;
    cmd.kind = BATON__V1__ROUTER_COMMAND__KIND__KIND_SET_ROLE;
    cmd.request_id = "";
    cmd.role = (Baton__V1__NodeRole)role;
    m.kind_case = BATON__V1__ROUTER_MESSAGE__KIND_COMMAND;
    m.command = &cmd;
    return bt_rpc_call_send(node->conn, &m.base, NULL, NULL);
}
