/* baton.v1.Admin on the router: what `batonctl` talks to. The methods
 * that need the kvstore are in admin_store.c; every one passes the admin
 * key check here. */
#include "front.h"
#include "model.h"
#include "request.h"
#include "router.h"

#include "admin.pb-c.h"
#include "base/clock.h"
#include "base/log.h"
#include "bt_config.h"
#include "registry.pb-c.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    bt_router_t      *r;
    bt_rpc_handler_cb cb;
} bt_admin_method_t;

/* r->admin: what the gRPC server hands each handler */
struct bt_router_admin {
    bt_admin_method_t methods[24];
    uint64_t          started_unix_ms;  /* GetVersion's started_unix_ms */
};

/* The registry keeps monotonic times; the wire carries wall times. */
static uint64_t bt_admin_wall(uint64_t mono_ms, uint64_t now_mono, uint64_t now_wall)
{
    if (mono_ms == 0 || mono_ms > now_mono || now_mono - mono_ms > now_wall) {
        return 0;
    }
    return now_wall - (now_mono - mono_ms);
}

static Baton__V1__NodeState bt_admin_state(const bt_node_t *n)
{
    return n->load.drained ? BATON__V1__NODE_STATE__NODE_STATE_DRAINED :
           n->load.draining ? BATON__V1__NODE_STATE__NODE_STATE_DRAINING :
           BATON__V1__NODE_STATE__NODE_STATE_READY;
}

static void bt_admin_list_nodes(bt_rpc_call_t *call, const ProtobufCMessage *msg,
                                void *arg)
{
    bt_router_t *r = arg;
    const Baton__V1__ListNodesRequest *in = (const Baton__V1__ListNodesRequest *)msg;
    Baton__V1__ListNodesResponse out = BATON__V1__LIST_NODES_RESPONSE__INIT;
    const size_t max = BT_ROUTER_MAX_NODES + BT_REGISTRY_MAX_LOST;
    Baton__V1__NodeInfo *infos = calloc(max, sizeof(*infos));
    Baton__V1__NodeInfo **list = calloc(max, sizeof(*list));
    const bt_node_lost_t *lost;
    uint64_t now_mono = bt_now_ms(), now_wall = bt_wall_ms();
    unsigned i;

    if (infos == NULL || list == NULL) {
        free(infos);
        free(list);
        bt_rpc_call_fail(call, BT_ERR_NO_MEMORY, NULL);
        return;
    }
    for (i = 0; i < BT_ROUTER_MAX_NODES; i++) {
        bt_node_t *n = bt_registry_slot(r->registry, i);
        Baton__V1__NodeInfo *ni = &infos[out.n_nodes];

        if (n == NULL || (in->role != 0 && !((unsigned)n->serving & (unsigned)in->role))) {
            continue;
        }
        baton__v1__node_info__init(ni);
        ni->node_id = n->id;
        ni->role = (Baton__V1__NodeRole)n->serving;
        ni->target_role = (Baton__V1__NodeRole)n->moving_to;
        ni->flexible = n->flexible;
        ni->numerics = n->numerics;
        ni->role_since_unix_ms = bt_admin_wall(n->role_since_ms, now_mono, now_wall);
        ni->model = n->model;
        ni->grpc_address = n->grpc_address;
        ni->http_address = n->http_address;
        ni->state = bt_admin_state(n);
        ni->total_blocks = n->total_blocks;
        ni->free_blocks = n->load.free_blocks;
        ni->running_sequences = n->load.running_sequences;
        ni->queued_prefill_tokens = n->load.queued_prefill_tokens;
        ni->prefill_tokens_per_ms = n->load.prefill_rate;
        ni->decode_step_ms = n->load.decode_step_ms;
        ni->registered_unix_ms = bt_admin_wall(n->registered_ms, now_mono, now_wall);
        ni->last_heartbeat_unix_ms = bt_admin_wall(n->last_seen_ms, now_mono, now_wall);
        ni->version = n->version;
        list[out.n_nodes++] = ni;
    }
    /* LOST nodes until they register again or are forgotten */
    for (size_t k = 0; (lost = bt_registry_lost(r->registry, k)) != NULL; k++) {
        Baton__V1__NodeInfo *ni = &infos[out.n_nodes];

        if (in->role != 0 && !((unsigned)lost->role & (unsigned)in->role)) {
            continue;
        }
        baton__v1__node_info__init(ni);
        ni->node_id = (char *)lost->id;
        ni->role = (Baton__V1__NodeRole)lost->role;
        ni->model = (char *)lost->model;
        ni->grpc_address = (char *)lost->grpc_address;
        ni->http_address = (char *)lost->http_address;
        ni->state = BATON__V1__NODE_STATE__NODE_STATE_LOST;
        ni->total_blocks = lost->total_blocks;
        ni->registered_unix_ms = bt_admin_wall(lost->registered_ms, now_mono, now_wall);
        ni->last_heartbeat_unix_ms = bt_admin_wall(lost->last_seen_ms, now_mono, now_wall);
        ni->version = (char *)lost->version;
        list[out.n_nodes++] = ni;
    }
    out.nodes = list;
    out.now_unix_ms = now_wall;
    bt_rpc_call_reply(call, &out.base);
    free(infos);
    free(list);
}

static bt_node_t *bt_admin_node(bt_router_t *r, bt_rpc_call_t *call,
                                const char *id)
{
    bt_node_t *n = id ? bt_registry_find(r->registry, id) : NULL;

    if (n == NULL) {
        bt_rpc_call_fail(call, BT_ERR_NOT_FOUND, "no node '%s'", id ? id : "");
    }
    return n;
}

/* A kvstore takes no requests from the router: draining it means
 * nothing here (it drains on SIGTERM). */
static bt_status_t bt_admin_not_store(bt_rpc_call_t *call, const bt_node_t *n,
                                      const char *what)
{
    if (n->role != BT_NODE_ROLE_KVSTORE) {
        return BT_OK;
    }
    bt_rpc_call_fail(call, BT_ERR_INVALID_ARG, "node %s is a kvstore: it takes "
                     "no requests from the router, so there is nothing to %s "
                     "(stop it with SIGTERM)", n->id, what);
    return BT_ERR_INVALID_ARG;
}

static void bt_admin_drain(bt_rpc_call_t *call, const ProtobufCMessage *msg,
                           void *arg)
{
    bt_router_t *r = arg;
    const Baton__V1__DrainRequest *in = (const Baton__V1__DrainRequest *)msg;
    Baton__V1__DrainResponse out = BATON__V1__DRAIN_RESPONSE__INIT;
    bt_node_t *n = bt_admin_node(r, call, in->node_id);

    if (n == NULL || bt_admin_not_store(call, n, "drain") != BT_OK) {
        return;
    }
    if (bt_router_node_command(r, n, BATON__V1__ROUTER_COMMAND__KIND__KIND_DRAIN,
                               NULL) != BT_OK) {
        bt_rpc_call_fail(call, BT_ERR_PEER_UNREACHABLE, "cannot reach node %s", n->id);
        return;
    }
    /* route nothing new to it from now on, before its next report */
    n->load.draining = true;
    bt_info("admin: draining node %s", n->id);
    bt_router_readiness_sync(r);
    out.state = bt_admin_state(n);
    bt_rpc_call_reply(call, &out.base);
}

static void bt_admin_undrain(bt_rpc_call_t *call, const ProtobufCMessage *msg,
                             void *arg)
{
    bt_router_t *r = arg;
    const Baton__V1__UndrainRequest *in = (const Baton__V1__UndrainRequest *)msg;
    Baton__V1__UndrainResponse out = BATON__V1__UNDRAIN_RESPONSE__INIT;
    bt_node_t *n = bt_admin_node(r, call, in->node_id);

    if (n == NULL || bt_admin_not_store(call, n, "undrain") != BT_OK) {
        return;
    }
    if (bt_router_node_command(r, n, BATON__V1__ROUTER_COMMAND__KIND__KIND_UNDRAIN,
                               NULL) != BT_OK) {
        bt_rpc_call_fail(call, BT_ERR_PEER_UNREACHABLE, "cannot reach node %s", n->id);
        return;
    }
    n->load.draining = false;
    n->load.drained = false;
    bt_info("admin: undraining node %s", n->id);
    bt_router_readiness_sync(r);
    out.state = bt_admin_state(n);
    bt_rpc_call_reply(call, &out.base);
    bt_router_queue_kick(r);
}

/* Without include_kvstore, the serving nodes' own caches (a node named by
 * node_id, else every one); with it, every registered kvstore too (or the
 * one named). */
static void bt_admin_flush(bt_rpc_call_t *call, const ProtobufCMessage *msg,
                           void *arg)
{
    bt_router_t *r = arg;
    const Baton__V1__FlushCacheRequest *in = (const Baton__V1__FlushCacheRequest *)msg;
    Baton__V1__FlushCacheResponse out = BATON__V1__FLUSH_CACHE_RESPONSE__INIT;
    bool named = in->node_id != NULL && in->node_id[0] != '\0';
    unsigned i, n_stores = 0;

    for (i = 0; i < BT_ROUTER_MAX_NODES; i++) {
        bt_node_t *n = bt_registry_slot(r->registry, i);

        n_stores += n != NULL && n->role == BT_NODE_ROLE_KVSTORE;
    }
    if (named && bt_registry_find(r->registry, in->node_id) == NULL) {
        bt_rpc_call_fail(call, BT_ERR_NOT_FOUND, "no node '%s'", in->node_id);
        return;
    }
    if (in->include_kvstore && n_stores == 0) {
        bt_rpc_call_fail(call, BT_ERR_NOT_FOUND,
                         "include_kvstore: no kvstore is registered with this "
                         "router (start baton-kvstore with --router)");
        return;
    }
    for (i = 0; i < BT_ROUTER_MAX_NODES; i++) {
        bt_node_t *n = bt_registry_slot(r->registry, i);
        bool store, match;

        if (n == NULL) {
            continue;
        }
        store = n->role == BT_NODE_ROLE_KVSTORE;
        match = named && strcmp(in->node_id, n->id) == 0;
        if (store ? !(in->include_kvstore || match)
                  : named && !match) {
            continue;
        }
        if (bt_router_node_command(r, n,
                                   BATON__V1__ROUTER_COMMAND__KIND__KIND_FLUSH_CACHE,
                                   NULL) != BT_OK) {
            continue;
        }
        if (store) {
            out.kvstores_flushed++;
        } else {
            out.nodes_flushed++;
        }
    }
    bt_info("admin: flushed %u node cache(s) and %u kvstore(s)",
            out.nodes_flushed, out.kvstores_flushed);
    bt_rpc_call_reply(call, &out.base);
}

typedef struct {
    Baton__V1__RequestInfo  *infos;
    Baton__V1__RequestInfo **list;
    size_t                   n;
    size_t                   max;
    const char              *node;
    const char              *model;
    uint64_t                 now_wall;
} bt_admin_reqs_t;

static void bt_admin_collect(void *arg, const bt_rreq_info_t *info)
{
    bt_admin_reqs_t *c = arg;
    Baton__V1__RequestInfo *ri;

    if (c->n == c->max) {
        return;
    }
    if (c->node && c->node[0] && strcmp(c->node, info->prefill_node) != 0 &&
        strcmp(c->node, info->decode_node) != 0) {
        return;
    }
    ri = &c->infos[c->n];
    baton__v1__request_info__init(ri);
    ri->request_id = (char *)info->id;
    ri->tenant = (char *)(info->tenant ? info->tenant : "");
    ri->lease_id = info->lease_id;
    ri->lease_blocks = info->lease_blocks;
    ri->lease_expiry_unix_ms = info->lease_expiry_unix_ms;
    ri->model = (char *)c->model;
    ri->prefill_node = (char *)info->prefill_node;
    ri->decode_node = (char *)info->decode_node;
    ri->phase = (char *)info->state;
    ri->prompt_tokens = info->prompt_tokens;
    ri->completion_tokens = info->generated_tokens;
    ri->started_unix_ms = info->age_ms < c->now_wall ? c->now_wall - info->age_ms : 0;
    c->list[c->n++] = ri;
}

static void bt_admin_list_requests(bt_rpc_call_t *call, const ProtobufCMessage *msg,
                                   void *arg)
{
    bt_router_t *r = arg;
    const Baton__V1__ListRequestsRequest *in = (const Baton__V1__ListRequestsRequest *)msg;
    Baton__V1__ListRequestsResponse out = BATON__V1__LIST_REQUESTS_RESPONSE__INIT;
    bt_admin_reqs_t c;

    memset(&c, 0, sizeof(c));
    c.max = in->limit ? in->limit : 1000;
    if (c.max > r->n_inflight) {
        c.max = r->n_inflight;
    }
    c.node = in->node_id;
    c.model = bt_router_model_name(r);
    c.now_wall = bt_wall_ms();
    c.infos = calloc(c.max + 1, sizeof(*c.infos));
    c.list = calloc(c.max + 1, sizeof(*c.list));
    if (c.infos == NULL || c.list == NULL) {
        free(c.infos);
        free(c.list);
        bt_rpc_call_fail(call, BT_ERR_NO_MEMORY, NULL);
        return;
    }
    bt_router_requests_foreach(r, bt_admin_collect, &c);
    out.n_requests = c.n;
    out.requests = c.list;
    out.now_unix_ms = c.now_wall;
    bt_rpc_call_reply(call, &out.base);
    free(c.infos);
    free(c.list);
}

static void bt_admin_cancel(bt_rpc_call_t *call, const ProtobufCMessage *msg,
                            void *arg)
{
    bt_router_t *r = arg;
    const Baton__V1__CancelRequestRequest *in = (const Baton__V1__CancelRequestRequest *)msg;
    Baton__V1__CancelRequestResponse out = BATON__V1__CANCEL_REQUEST_RESPONSE__INIT;

    out.found = in->request_id != NULL &&
                bt_router_request_cancel_by_id(r, in->request_id) == BT_OK;
    bt_rpc_call_reply(call, &out.base);
}

static void bt_admin_get_trace(bt_rpc_call_t *call, const ProtobufCMessage *msg,
                               void *arg)
{
    bt_router_t *r = arg;
    const Baton__V1__GetTraceRequest *in = (const Baton__V1__GetTraceRequest *)msg;
    Baton__V1__GetTraceResponse out = BATON__V1__GET_TRACE_RESPONSE__INIT;
    Baton__V1__TraceEvent ev[BT_TRACE_MAX_EVENTS];
    Baton__V1__TraceEvent *evp[BT_TRACE_MAX_EVENTS];
    const bt_trace_t *t = bt_traces_find(r->traces, in->request_id);
    Baton__V1__TraceChunk *ch = NULL, **chp = NULL;
    Baton__V1__TraceLayerTransfer *ly = NULL, **lyp = NULL;
    uint32_t i;

    if (t == NULL) {
        bt_rpc_call_fail(call, BT_ERR_NOT_FOUND, "no trace of request %s (the "
                         "router keeps live requests and the last %d finished)",
                         in->request_id ? in->request_id : "", BT_TRACE_KEEP);
        return;
    }
    for (i = 0; i < t->n_events; i++) {
        baton__v1__trace_event__init(&ev[i]);
        ev[i].offset_us = t->events[i].offset_us;
        ev[i].kind = (char *)t->events[i].kind;
        ev[i].detail = (char *)t->events[i].detail;
        evp[i] = &ev[i];
    }
    out.request_id = (char *)t->id;
    out.live = t->live && !t->ended;   /* ended: its callbacks may still run */
    out.admitted_unix_ms = t->admitted_unix_ms;
    out.n_events = t->n_events;
    out.events = evp;
    out.dropped_events = t->dropped;
    if (t->n_spans > 0) {
        ch = calloc(t->n_spans, sizeof(*ch));
        chp = calloc(t->n_spans, sizeof(*chp));
        ly = calloc(t->n_spans, sizeof(*ly));
        lyp = calloc(t->n_spans, sizeof(*lyp));
        if (ch == NULL || chp == NULL || ly == NULL || lyp == NULL) {
            free(ch);
            free(chp);
            free(ly);
            free(lyp);
            bt_rpc_call_fail(call, BT_ERR_NO_MEMORY, NULL);
            return;
        }
    }
    for (size_t k = 0; k < t->n_spans; k++) {
        const bt_trace_span_t *s = &t->spans[k];

        if (s->kind == BT_TRACE_SPAN_CHUNK) {
            Baton__V1__TraceChunk *c = &ch[out.n_chunks];

            baton__v1__trace_chunk__init(c);
            c->attempt = s->attempt;
            c->start_token = s->index;
            c->tokens = s->tokens;
            c->start_us = s->start_us;
            c->end_us = s->end_us;
            chp[out.n_chunks++] = c;
        } else {
            Baton__V1__TraceLayerTransfer *l = &ly[out.n_layers];

            baton__v1__trace_layer_transfer__init(l);
            l->attempt = s->attempt;
            l->layer = s->index;
            l->bytes = s->bytes;
            l->post_us = s->start_us;
            l->complete_us = s->end_us;
            lyp[out.n_layers++] = l;
        }
    }
    out.chunks = chp;
    out.layers = lyp;
    bt_rpc_call_reply(call, &out.base);
    free(ch);
    free(chp);
    free(ly);
    free(lyp);
}

/* One pair per (prefill node, decode node) it has transferred to, from the
 * prefill nodes' last status reports. */
static void bt_admin_transfer_health(bt_rpc_call_t *call,
                                     const ProtobufCMessage *msg, void *arg)
{
    bt_router_t *r = arg;
    Baton__V1__TransferHealthResponse out = BATON__V1__TRANSFER_HEALTH_RESPONSE__INIT;
    Baton__V1__TransferPair *pairs, **list;
    size_t n = 0, cap = 0;

    (void)msg;
    for (unsigned i = 0; i < BT_ROUTER_MAX_NODES; i++) {
        bt_node_t *node = bt_registry_slot(r->registry, i);

        cap += node != NULL ? node->n_xfers : 0;
    }
    pairs = calloc(cap > 0 ? cap : 1, sizeof(*pairs));
    list = calloc(cap > 0 ? cap : 1, sizeof(*list));
    if (pairs == NULL || list == NULL) {
        free(pairs);
        free(list);
        bt_rpc_call_fail(call, BT_ERR_NO_MEMORY, NULL);
        return;
    }
    for (unsigned i = 0; i < BT_ROUTER_MAX_NODES; i++) {
        bt_node_t *node = bt_registry_slot(r->registry, i);

        for (size_t k = 0; node != NULL && k < node->n_xfers; k++) {
            const bt_node_xfer_t *x = &node->xfers[k];
            Baton__V1__TransferPair *p = &pairs[n];

            baton__v1__transfer_pair__init(p);
            p->prefill_node = node->id;
            p->decode_node = (char *)x->decode_node;
            p->bytes = x->bytes;
            p->ops = x->ops;
            p->errors = x->errors;
            p->last_error = (char *)x->last_error;
            p->last_error_unix_ms = x->last_error_unix_ms;
            p->latency_p50_ms = x->latency_p50_ms;
            p->latency_p99_ms = x->latency_p99_ms;
            p->bandwidth_gbps = x->bandwidth_gbps;
            list[n++] = p;
        }
    }
    out.pairs = list;
    out.n_pairs = n;
    bt_rpc_call_reply(call, &out.base);
    free(pairs);
    free(list);
}

static void bt_admin_version(bt_rpc_call_t *call, const ProtobufCMessage *msg,
                             void *arg)
{
    bt_router_t *r = arg;
    Baton__V1__GetVersionResponse out = BATON__V1__GET_VERSION_RESPONSE__INIT;

    (void)msg;
    out.version = (char *)BT_VERSION;
    out.model = (char *)bt_router_model_name(r);
    out.started_unix_ms = r->admin->started_unix_ms;
    out.now_unix_ms = bt_wall_ms();
    bt_rpc_call_reply(call, &out.base);
}

/* Only a LOST node may be forgotten: a live one leaves when its Register
 * stream ends (drain it, then stop it). */
static void bt_admin_forget(bt_rpc_call_t *call, const ProtobufCMessage *msg,
                            void *arg)
{
    bt_router_t *r = arg;
    const Baton__V1__ForgetRequest *in = (const Baton__V1__ForgetRequest *)msg;
    Baton__V1__ForgetResponse out = BATON__V1__FORGET_RESPONSE__INIT;
    bt_node_t *n = in->node_id ? bt_registry_find(r->registry, in->node_id) : NULL;

    if (n != NULL) {
        char why[BT_NODE_ID_MAX + 96];

        snprintf(why, sizeof(why), "node %s is not lost: it leaves by itself "
                 "when it stops (drain it first)", n->id);
        bt_rpc_call_fail_code(call, BT_RPC_FAILED_PRECONDITION, why);
        return;
    }
    if (in->node_id == NULL || !bt_registry_forget(r->registry, in->node_id)) {
        bt_rpc_call_fail(call, BT_ERR_NOT_FOUND, "no node '%s'",
                         in->node_id ? in->node_id : "");
        return;
    }
    bt_info("admin: forgot lost node %s", in->node_id);
    bt_rpc_call_reply(call, &out.base);
}


/* With API keys configured, Admin answers only keys marked "admin": an
 * ordinary tenant's key cannot drain nodes or cancel others' requests. */
static void bt_admin_guard(bt_rpc_call_t *call, const ProtobufCMessage *msg,
                           void *arg)
{
    const bt_admin_method_t *m = arg;
    bt_front_auth_t auth;
    char err[160];

    if (bt_front_authenticate(m->r, bt_rpc_call_metadata(call, "authorization"),
                              &auth, err, sizeof(err)) != BT_OK) {
        bt_rpc_call_fail_code(call, BT_RPC_UNAUTHENTICATED, err);
        return;
    }
    if (!auth.admin) {
        bt_rpc_call_fail_code(call, BT_RPC_PERMISSION_DENIED,
                              "admin methods need an api key marked "
                              "\"admin\": true");
        return;
    }
    m->cb(call, msg, m->r);
}

bt_status_t bt_router_admin_register(bt_router_t *r)
{
    static const struct {
        const char                       *path;
        const ProtobufCMessageDescriptor *desc;
        bt_rpc_handler_cb                 cb;
    } methods[] = {
        { "/baton.v1.Admin/ListNodes", &baton__v1__list_nodes_request__descriptor,
          bt_admin_list_nodes },
        { "/baton.v1.Admin/Drain", &baton__v1__drain_request__descriptor,
          bt_admin_drain },
        { "/baton.v1.Admin/Undrain", &baton__v1__undrain_request__descriptor,
          bt_admin_undrain },
        { "/baton.v1.Admin/FlushCache", &baton__v1__flush_cache_request__descriptor,
          bt_admin_flush },
        { "/baton.v1.Admin/ListRequests", &baton__v1__list_requests_request__descriptor,
          bt_admin_list_requests },
        { "/baton.v1.Admin/CancelRequest", &baton__v1__cancel_request_request__descriptor,
          bt_admin_cancel },
        { "/baton.v1.Admin/TransferHealth",
          &baton__v1__transfer_health_request__descriptor,
          bt_admin_transfer_health },
        { "/baton.v1.Admin/GetVersion", &baton__v1__get_version_request__descriptor,
          bt_admin_version },
        { "/baton.v1.Admin/Forget", &baton__v1__forget_request__descriptor,
          bt_admin_forget },
        { "/baton.v1.Admin/GetTrace", &baton__v1__get_trace_request__descriptor,
          bt_admin_get_trace },
    };
    bt_router_admin_t *a = calloc(1, sizeof(*a));
    const bt_router_admin_method_t *const more[] = {
        bt_router_admin_store_methods, bt_router_admin_role_methods,
    };
    size_t i, k;

    if (a == NULL) {
        return BT_ERR_NO_MEMORY;
    }
    r->admin = a;
    a->started_unix_ms = bt_wall_ms();
    _Static_assert(sizeof(methods) / sizeof(methods[0]) <=
                   sizeof(a->methods) / sizeof(a->methods[0]),
                   "room for every admin method");
    for (i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        bt_status_t s;

        a->methods[i] = (bt_admin_method_t){ r, methods[i].cb };
        s = bt_rpc_server_add_unary(r->grpc, methods[i].path, methods[i].desc,
                                    bt_admin_guard, &a->methods[i]);

        if (s != BT_OK) {
            return s;
        }
    }
    for (size_t t = 0; t < sizeof(more) / sizeof(more[0]); t++) {
        const bt_router_admin_method_t *sm = more[t];

        for (k = 0; sm[k].path != NULL; k++, i++) {
            bt_status_t s;

            if (i == sizeof(a->methods) / sizeof(a->methods[0])) {
                return BT_ERR_EXHAUSTED;
            }
            a->methods[i] = (bt_admin_method_t){ r, sm[k].cb };
            s = bt_rpc_server_add_unary(r->grpc, sm[k].path, sm[k].desc,
                                        bt_admin_guard, &a->methods[i]);
            if (s != BT_OK) {
                return s;
            }
        }
    }
    return BT_OK;
}

void bt_router_admin_free(bt_router_t *r)
{
    free(r->admin);
    r->admin = NULL;
}
