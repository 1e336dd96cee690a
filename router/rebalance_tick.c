/* The role controller (--rebalance-roles on; docs/internals/router.md
 * "The role controller"): every --rebalance-interval it takes the
 * interval's mean TTFT and TPOT from the router's own histograms (the sums
 * and counts since the last tick), the queued prefill tokens of the nodes
 * serving prefill and the requests waiting for decode room, asks the rule
 * of rebalance.h, and moves the node it names (roles.c) with the rule's
 * figures as the reason. */
#include "rebalance.h"
#include "router.h"

#include "base/clock.h"
#include "base/log.h"

#include <stdlib.h>
#include <string.h>

struct bt_rebalancer {
    struct event *ev;
    double        ttft_sum, itl_sum;    /* at the last tick */
    uint64_t      ttft_n, itl_n;
    uint64_t      last_move_ms;
    char          last_why[256];        /* logged once until it changes */
};

/* The mean of a histogram's observations since the last tick (ms), -1
 * when there were none; advances the marks. */
static double bt_rebalance_mean(bt_histogram_t *h, double *sum_p, uint64_t *n_p)
{
    double sum = bt_metric_value(h);
    uint64_t n = bt_histogram_count(h);
    double mean = n > *n_p ? (sum - *sum_p) * 1000.0 / (double)(n - *n_p) : -1;

    *sum_p = sum;
    *n_p = n;
    return mean;
}

static void bt_rebalance_tick(evutil_socket_t fd, short what, void *arg)
{
    bt_router_t *r = arg;
    bt_rebalancer_t *rb = r->rebalancer;
    bt_rebalance_node_t nodes[BT_ROUTER_MAX_NODES];
    bt_node_t *ptr[BT_ROUTER_MAX_NODES];
    bt_rebalance_cfg_t cfg = {
        r->cfg.slo_ttft_ms, r->cfg.slo_tpot_ms, r->cfg.rebalance_headroom,
        r->cfg.disagg_prefill_rate, (uint64_t)r->cfg.rebalance_dwell_ms,
        (uint64_t)r->cfg.rebalance_interval_ms,
    };
    bt_rebalance_in_t in;
    bt_rebalance_out_t out;
    bt_rpc_code_t code;
    char err[256];

    (void)fd;
    (void)what;
    memset(&in, 0, sizeof(in));
    in.ttft_ms = bt_rebalance_mean(r->m.ttft, &rb->ttft_sum, &rb->ttft_n);
    in.tpot_ms = bt_rebalance_mean(r->m.itl, &rb->itl_sum, &rb->itl_n);
    in.decode_waiting = r->n_queued;
    in.now_ms = bt_now_ms();
    in.last_move_ms = rb->last_move_ms;
    in.nodes = nodes;
    for (unsigned i = 0; i < BT_ROUTER_MAX_NODES; i++) {
        bt_node_t *n = bt_registry_slot(r->registry, i);
        bt_rebalance_node_t *nd = &nodes[in.n_nodes];

        if (n == NULL || n->serving == BT_NODE_ROLE_KVSTORE) {
            continue;
        }
        nd->serving = n->serving;
        nd->moving_to = n->moving_to;
        nd->flexible = n->flexible;
        nd->draining = n->load.draining || n->load.drained;
        nd->role_since_ms = n->role_since_ms;
        if (n->role & BT_NODE_ROLE_PREFILL) {
            in.queued_prefill_tokens += n->load.queued_prefill_tokens +
                                        n->assigned_prefill_tokens;
        }
        ptr[in.n_nodes++] = n;
    }
    out = bt_rebalance_decide(&cfg, &in);
    if (out.node < 0) {
        if (strcmp(out.why, rb->last_why) != 0) {
            bt_debug("role controller: no move: %s", out.why);
            snprintf(rb->last_why, sizeof(rb->last_why), "%s", out.why);
        }
        return;
    }
    rb->last_why[0] = '\0';
    bt_info("role controller: node %s %s -> %s: %s", ptr[out.node]->id,
            bt_router_role_word(ptr[out.node]->serving),
            bt_router_role_word(out.to), out.why);
    if (bt_router_role_move(r, ptr[out.node], out.to, out.why, &code, err,
                            sizeof(err)) != BT_OK) {
        bt_warn("role controller: node %s not moved: %s", ptr[out.node]->id, err);
        return;
    }
    rb->last_move_ms = in.now_ms;
}

bt_status_t bt_router_rebalance_start(bt_router_t *r)
{
    struct timeval tv = { r->cfg.rebalance_interval_ms / 1000,
                          (r->cfg.rebalance_interval_ms % 1000) * 1000 };
    bt_rebalancer_t *rb;

    if (!r->cfg.rebalance_roles) {
        return BT_OK;
    }
    if ((rb = r->rebalancer = calloc(1, sizeof(*rb))) == NULL) {
        return BT_ERR_NO_MEMORY;
    }
    rb->ev = event_new(r->base, -1, EV_PERSIST, bt_rebalance_tick, r);
    if (rb->ev == NULL || event_add(rb->ev, &tv) != 0) {
        return BT_ERR_NO_MEMORY;
    }
    bt_info("role controller on: ttft slo %.0f ms, tpot slo %.0f ms, every "
            "%lld ms, dwell %lld ms", r->cfg.slo_ttft_ms, r->cfg.slo_tpot_ms,
            (long long)r->cfg.rebalance_interval_ms,
            (long long)r->cfg.rebalance_dwell_ms);
    return BT_OK;
}

void bt_router_rebalance_stop(bt_router_t *r)
{
    if (r->rebalancer == NULL) {
        return;
    }
    if (r->rebalancer->ev != NULL) {
        event_free(r->rebalancer->ev);
    }
    free(r->rebalancer);
    r->rebalancer = NULL;
}
