/* Registration with the router (hello, heartbeats, commands), the pool's
 * KV events batched into one KvEvents message per loop turn, and the
 * node's metrics. */
#include "node.h"

#include "base/array.h"
#include "base/log.h"
#include "bt_config.h"
#include "kvspec/kv_proto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* KV events waiting for the next loop turn, at most. */
#define BT_NODE_EV_MAX 65536

/* Prefill tokens per ms of compute (node_sched.c's decayed sums); 0: none. */
static double bt_node_prefill_rate(const bt_node_t *node)
{
    return node->pf_ms > 0 ? node->pf_tokens / node->pf_ms : 0.0;
}

static void bt_node_status_cb(void *arg, Baton__V1__NodeStatus *st)
{
    bt_node_t *node = arg;

    st->queued_prefill_tokens = node->queued_prefill_tokens;
    st->running_sequences = node->running;
    st->free_blocks = bt_kvpool_available(node->pool);
    st->draining = node->draining;
    if (node->role == BT_NODE_FLEXIBLE) {
        st->role = (Baton__V1__NodeRole)node->serving;
        st->target_role = (Baton__V1__NodeRole)node->moving_to;
    }
    st->drained = node->draining && node->inflight == 0;
    st->prefill_tokens_per_ms = bt_node_prefill_rate(node);
    st->decode_step_ms = node->decode_step_ms;
    /* borrowed from xstats until the next snapshot; the registrar packs
     * the message before this callback is called again */
    st->n_transfers = bt_xstats_snapshot(node->xstats, node->xstats_out,
                                         BT_XSTATS_MAX_PEERS);
    st->transfers = node->xstats_out;
}

static bt_status_t bt_node_command_cb(void *arg,
                                      const Baton__V1__RouterCommand *cmd,
                                      char *err, size_t err_size)
{
    bt_node_t *node = arg;

    switch (cmd->kind) {
    case BATON__V1__ROUTER_COMMAND__KIND__KIND_DRAIN:
        node->draining = true;
        bt_info("draining (router command): %u requests in flight",
                node->inflight);
        bt_rpc_server_set_serving(node->grpc, "", false);
        return BT_OK;
    case BATON__V1__ROUTER_COMMAND__KIND__KIND_UNDRAIN:
        if (node->stopping) {
            snprintf(err, err_size, "the node is stopping");
            return BT_ERR_SHUTDOWN;
        }
        node->draining = false;
        bt_rpc_server_set_serving(node->grpc, "", true);
        return BT_OK;
    case BATON__V1__ROUTER_COMMAND__KIND__KIND_SET_ROLE:
        return bt_node_flex_move(node, (unsigned)cmd->role, err, err_size);
    case BATON__V1__ROUTER_COMMAND__KIND__KIND_FLUSH_CACHE:
        bt_kvpool_clear_cache(node->pool);
        return BT_OK;
    case BATON__V1__ROUTER_COMMAND__KIND__KIND_CANCEL_REQUEST:
        for (int r = 0; r < node->n_roles && cmd->request_id != NULL; r++) {
            if (node->roles[r]->cancel != NULL &&
                node->roles[r]->cancel(node->role_self[r], cmd->request_id)) {
                return BT_OK;
            }
        }
        snprintf(err, err_size, "no such request");
        return BT_ERR_NOT_FOUND;
    default:
        snprintf(err, err_size, "command %d not supported", (int)cmd->kind);
        return BT_ERR_UNSUPPORTED;
    }
}

static Baton__V1__KvEvent *bt_node_kv_event_msg(const bt_kv_event_t *e)
{
    Baton__V1__KvEvent__Kind kind =
        e->type == BT_KV_EVENT_STORED ? BATON__V1__KV_EVENT__KIND__KIND_STORED
        : e->type == BT_KV_EVENT_REMOVED ? BATON__V1__KV_EVENT__KIND__KIND_REMOVED
        : BATON__V1__KV_EVENT__KIND__KIND_CLEARED;

    return bt_kv_event_msg_new(kind, BATON__V1__KV_TIER__KV_TIER_DEVICE,
                               e->hash, e->parent_hash);
}

typedef struct {
    Baton__V1__KvEvent **ev;
    size_t               n, cap;
    bool                 failed;
} bt_node_replay_t;

static void bt_node_replay_cb(const bt_kv_event_t *e, void *ctx)
{
    bt_node_replay_t *rp = ctx;
    Baton__V1__KvEvent *m;

    if (rp->failed ||
        BT_ARRAY_RESERVE(rp->ev, rp->cap, rp->n + 1, 256) != BT_OK ||
        (m = bt_node_kv_event_msg(e)) == NULL) {
        rp->failed = true;
        return;
    }
    rp->ev[rp->n++] = m;
}

/* A router that registers (first, or again after a restart) knows nothing
 * of this node's cache: it learns every block the pool indexes, in
 * messages of at most BT_NODE_REPLAY_BATCH events. */
#define BT_NODE_REPLAY_BATCH 4096u

static void bt_node_replay(bt_node_t *node, bt_registrar_link_t *link)
{
    bt_node_replay_t rp = { NULL, 0, 0, false };

    bt_kvpool_foreach_indexed(node->pool, bt_node_replay_cb, &rp);
    if (rp.failed) {
        bt_warn("cannot list the cache for the router %s (out of memory): it "
                "learns the blocks stored from now on",
                bt_registrar_link_target(link));
    } else {
        bt_registrar_send_kv_batched(node->reg, link, rp.ev, rp.n,
                                     BT_NODE_REPLAY_BATCH);
        if (rp.n > 0) {
            bt_info("announced %zu cached blocks to the router %s", rp.n,
                    bt_registrar_link_target(link));
        }
    }
    for (size_t i = 0; i < rp.n; i++) {
        free(rp.ev[i]);
    }
    free(rp.ev);
}

static void bt_node_registered_cb(void *arg, bt_registrar_link_t *link,
                                  bool up)
{
    bt_node_t *node = arg;
    size_t all = 0, n = bt_registrar_n_registered(node->reg, &all);

    if (up) {
        bt_info("registered with the router %s (%zu of %zu routers)",
                bt_registrar_link_target(link), n, all);
        bt_node_replay(node, link);
    } else {
        bt_warn("lost the router %s (%zu of %zu routers left)",
                bt_registrar_link_target(link), n, all);
    }
}

static void bt_node_ev_flush(evutil_socket_t fd, short what, void *arg)
{
    bt_node_t *node = arg;

    (void)fd;
    (void)what;
    if (node->ev_n > 0 && node->reg != NULL) {
        bt_registrar_send_kv_events(node->reg, NULL, node->ev_q, node->ev_n);
    }
    for (size_t i = 0; i < node->ev_n; i++) {
        free(node->ev_q[i]);
    }
    node->ev_n = 0;
}

void bt_node_kv_event(const bt_kv_event_t *e, void *ctx)
{
    bt_node_t *node = ctx;
    Baton__V1__KvEvent *m;

    if (node->ev_n >= BT_NODE_EV_MAX ||
        BT_ARRAY_RESERVE(node->ev_q, node->ev_cap, node->ev_n + 1, 64) !=
            BT_OK) {
        return;   /* the router re-learns on the next registration */
    }
    m = bt_node_kv_event_msg(e);
    if (m == NULL) {
        return;
    }
    node->ev_q[node->ev_n++] = m;
    if (node->ev_flush != NULL) {
        event_active(node->ev_flush, EV_TIMEOUT, 0);
    }
}

void bt_node_metrics_update(bt_node_t *node)
{
    bt_kvpool_stats_t st;

    bt_kvpool_stats(node->pool, &st);
    bt_gauge_set(node->g_free, (double)(st.free + st.cached));
    bt_gauge_set(node->g_used, (double)st.used);
    bt_gauge_set(node->g_reserved, (double)st.reserved);
    bt_gauge_set(node->g_running, (double)node->running);
    bt_gauge_set(node->g_queued, (double)node->queued_prefill_tokens);
    bt_gauge_set(node->g_pf_rate, bt_node_prefill_rate(node) * 1e3);
    bt_gauge_set(node->g_dec_step, node->decode_step_ms / 1e3);
    bt_gauge_set(node->g_kv_usage,
                 st.total > 0 ? (double)st.used / (double)st.total : 0.0);
    if (node->region != NULL) {
        bt_gauge_set(node->g_prefaulted,
                     (double)bt_xfer_region_prefaulted(node->region) /
                     (double)bt_xfer_region_length(node->region));
    }
}

/* The series with a vLLM equivalent (or one per request), labelled with
 * the served model's name. */
static void bt_node_model_metrics(bt_node_t *node)
{
    bt_metrics_t *m = node->metrics;
    char ml[320];

    bt_metrics_labels(ml, sizeof(ml), "model_name", node->model_name, NULL);
    node->g_waiting = bt_metrics_gauge(
        m, "baton_node_requests_waiting",
        "requests accepted and not yet computing: prefill jobs queued, decode "
        "leases waiting for their kv cache (vllm:num_requests_waiting)", ml);
    node->g_kv_usage = bt_metrics_gauge(
        m, "baton_node_kv_cache_usage_ratio",
        "kv blocks in use over all blocks, 0 to 1 (vllm:kv_cache_usage_perc)",
        ml);
    node->c_prefix_queries = bt_metrics_counter(
        m, "baton_node_prefix_cache_queries_total",
        "prompt tokens the prefill looked up in its prefix cache "
        "(vllm:prefix_cache_queries)", ml);
    node->c_prefix_hits = bt_metrics_counter(
        m, "baton_node_prefix_cache_hits_total",
        "of those, tokens found cached: own pool or kvstore "
        "(vllm:prefix_cache_hits)", ml);
    node->h_prefill = bt_metrics_histogram(
        m, "baton_node_prefill_seconds",
        "compute time of a prefill, its chunks together "
        "(vllm:request_prefill_time_seconds)", ml,
        bt_metrics_latency_bounds, bt_metrics_latency_n_bounds);
    node->h_decode_step = bt_metrics_histogram(
        m, "baton_node_decode_step_seconds",
        "time of one decode step of the batch, sampling included", ml,
        bt_metrics_latency_bounds, bt_metrics_latency_n_bounds);
    node->c_leases_expired = bt_metrics_counter(
        m, "baton_node_leases_expired_total",
        "decode leases that expired before their kv cache arrived", ml);
    node->c_role_moves = bt_metrics_counter(
        m, "baton_node_role_moves_total",
        "--role flexible: moves to another role finished", ml);
    node->c_role_late = bt_metrics_counter(
        m, "baton_node_role_late_calls_total",
        "--role flexible: calls of a role it no longer serves (placed before "
        "a move ended; served all the same)", ml);
}

bt_status_t bt_node_reg_start(bt_node_t *node)
{
    Baton__V1__NodeHello hello = BATON__V1__NODE_HELLO__INIT;
    Baton__V1__NodeCapacity cap = BATON__V1__NODE_CAPACITY__INIT;
    Baton__V1__KvGeometry g = BATON__V1__KV_GEOMETRY__INIT;
    const bt_kv_geom_t *geom = bt_kvpool_geom(node->pool);
    bt_registrar_params_t p;
    void *desc = NULL;
    size_t desc_len = 0;

    bt_metrics_t *m = node->metrics;
    char nl[160];

    /* which arithmetic this node's KV is (kv-spec v2): dashboards group
     * nodes that can share KV by it */
    bt_gauge_set(bt_metrics_gauge(m, "baton_node_numerics_info",
                                  "the node's compute backend and numerics id "
                                  "(always 1)",
                                  bt_metrics_labels(nl, sizeof(nl), "backend",
                                                    bt_backend_name(node->backend.kind),
                                                    "numerics", node->backend.id,
                                                    NULL)),
                 1);
    node->g_free = bt_metrics_gauge(m, "baton_node_kv_free_blocks",
                                    "kv blocks free or cached (evictable)", NULL);
    node->g_used = bt_metrics_gauge(m, "baton_node_kv_used_blocks",
                                    "kv blocks held by sequences or leases", NULL);
    node->g_reserved = bt_metrics_gauge(m, "baton_node_kv_reserved_blocks",
                                        "kv blocks held by leases not yet filled", NULL);
    node->g_running = bt_metrics_gauge(m, "baton_node_running_sequences",
                                       "sequences in the decode batch", NULL);
    node->g_queued = bt_metrics_gauge(m, "baton_node_queued_prefill_tokens",
                                      "prompt tokens waiting in the prefill queue "
                                      "(what the prefill HPA scales on)", NULL);
    node->g_pf_rate = bt_metrics_gauge(m, "baton_node_prefill_tokens_per_second",
                                       "prefill tokens per second of compute, decayed "
                                       "over recent prefill steps (0: none yet)", NULL);
    node->g_dec_step = bt_metrics_gauge(m, "baton_node_decode_step_mean_seconds",
                                        "decayed mean time of a decode step (0: none yet)",
                                        NULL);
    node->g_prefaulted = bt_metrics_gauge(m, "baton_node_kv_prefaulted_ratio",
                                          "share of the kv pool faulted in at "
                                          "start so far, 0 to 1 (--kv-prefault; "
                                          "0 without it)", NULL);
    node->c_prefills = bt_metrics_counter(m, "baton_node_prefills_total",
                                          "prefills answered", NULL);
    node->c_tokens = bt_metrics_counter(m, "baton_node_decode_tokens_total",
                                        "tokens sampled by decode steps", NULL);
    node->c_fence_timeouts = bt_metrics_counter(
        m, "baton_node_lease_fence_timeouts_total",
        "dead leases whose blocks went back with no fence from a writer", NULL);
    node->c_kv_refused = bt_metrics_counter(
        m, "baton_node_kv_writes_refused_total",
        "kv data slices refused: their lease no longer waited for them", NULL);
    node->c_guard_waits = bt_metrics_counter(
        m, "baton_node_lease_guard_waits_total",
        "dead leases whose blocks waited past the fence for a writer process "
        "stopped or stalled inside a copy into them", NULL);
    bt_node_model_metrics(node);
    bt_node_metrics_update(node);
    node->ev_flush = event_new(node->base, -1, 0, bt_node_ev_flush, node);
    if (node->cfg.router == NULL || node->cfg.router[0] == '\0') {
        bt_warn("no --router: serving without registration");
        return BT_OK;
    }
    bt_kv_geom_to_proto(geom, &g);
    cap.total_blocks = bt_kvpool_n_blocks(node->pool);
    cap.block_size = geom->block_size;
    cap.max_batch = (uint32_t)node->cfg.max_batch;
    cap.max_prefill_tokens = (uint32_t)node->cfg.max_prefill_tokens;
    cap.geometry = &g;
    hello.node_id = node->node_id;
    hello.role = (Baton__V1__NodeRole)node->serving;
    hello.flexible = node->role == BT_NODE_FLEXIBLE;
    hello.model = node->model_name;
    hello.grpc_address = node->grpc_addr;
    hello.http_address = node->http_addr;
    hello.capacity = &cap;
    hello.version = (char *)BT_VERSION;
    hello.numerics = node->backend.id;
    if (node->region != NULL &&
        bt_xfer_region_export(node->region, &desc, &desc_len) == BT_OK &&
        desc_len <= 4096) {
        /* the descriptor carries the worker address and the rkey */
        hello.ucx_address.data = desc;
        hello.ucx_address.len = desc_len;
    }
    memset(&p, 0, sizeof(p));
    p.client = node->client;
    p.routers = node->cfg.router;
    p.tls = bt_rpc_tls_cfg_client(&node->cfg.tls);
    p.hello = &hello;
    p.heartbeat_ms = (uint32_t)node->cfg.heartbeat_ms;
    p.cbs.status_cb = bt_node_status_cb;
    p.cbs.command_cb = bt_node_command_cb;
    p.cbs.registered_cb = bt_node_registered_cb;
    p.cbs.arg = node;
    node->reg = bt_registrar_create(node->base, &p);
    free(desc);
    return node->reg != NULL ? BT_OK : BT_ERR_INTERNAL;
}
