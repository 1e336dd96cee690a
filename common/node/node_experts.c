/* Expert placement on a node: windows of statistics, reports, plans
 * fetched and applied (node_experts.h). */
#include "node_experts.h"

#include "node.h"
#include "node_kvs.h"

#include "base/clock.h"
#include "base/log.h"
#include "kvstore.pb-c.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BT_NODE_EXPERTS_RPC_MS 5000u

struct bt_node_experts {
    bt_node_t        *node;
    bt_ep_t          *ep;            /* NULL: one device */
    int               n_devices;
    struct event     *tick;
    bool              due;           /* the window waits for a step's end */
    uint64_t          window_start_ms;
    uint64_t          version;       /* in force (mirrors the engine's) */
    bt_rpc_channel_t *ch;            /* placement owner; NULL: no kvstore */
    bool              report_out, fetch_out, unimplemented_logged;
    bool              closing;       /* freed by the last call's end */
    /* a plan being copied on the stager thread */
    bt_tpool_t       *stager;
    bool              applying;
    bt_ep_plan_t      pending;
    int               moved;
    bt_status_t       stage_st;
    char              stage_err[256];
    uint64_t          t_stage_ms;
    bool              test_plans;    /* BATON_TEST_EXPERT_PLANS=1 */
    bt_gauge_t       *g_load[BT_EP_MAX_DEVICES], *g_bal, *g_version;
    bt_counter_t     *c_refused, *c_moved, *c_applied;
};

static Baton__V1__NodeRole role_pb(const bt_node_t *node)
{
    return node->role == BT_NODE_PREFILL ? BATON__V1__NODE_ROLE__NODE_ROLE_PREFILL
           : node->role == BT_NODE_DECODE ? BATON__V1__NODE_ROLE__NODE_ROLE_DECODE
           : BATON__V1__NODE_ROLE__NODE_ROLE_BOTH;
}

/* ---- plans ------------------------------------------------------------ */

bt_status_t bt_node_experts_from_proto(const Baton__V1__PlacementPlan *pb,
                                       const bt_model_config_t *c,
                                       int n_devices, bt_ep_plan_t *plan,
                                       char *err, size_t err_size)
{
    bt_status_t s;

    memset(plan, 0, sizeof(*plan));
    if (pb->n_devices != (uint32_t)n_devices) {
        snprintf(err, err_size, "plan for %u devices, the node has %d",
                 pb->n_devices, n_devices);
        return BT_ERR_INVALID_ARG;
    }
    s = bt_ep_plan_init(plan, c->n_layers, c->n_experts, n_devices);
    if (s != BT_OK) {
        snprintf(err, err_size, "no memory for a plan");
        return s;
    }
    plan->version = pb->version;
    for (size_t i = 0; i < pb->n_layers; i++) {
        const Baton__V1__LayerPlacement *lp = pb->layers[i];
        uint32_t *w;

        if (lp->layer >= (uint32_t)c->n_layers || !c->layer_is_moe[lp->layer]) {
            snprintf(err, err_size, "layer %u is not a MoE layer of the model",
                     lp->layer);
            goto bad;
        }
        w = plan->where + (size_t)lp->layer * c->n_experts;
        if (w[0] != 0) {
            snprintf(err, err_size, "layer %u placed twice", lp->layer);
            goto bad;
        }
        if (lp->n_device != (size_t)c->n_experts) {
            snprintf(err, err_size, "layer %u places %zu experts of %d",
                     lp->layer, lp->n_device, c->n_experts);
            goto bad;
        }
        for (int e = 0; e < c->n_experts; e++) {
            if (lp->device[e] >= (uint32_t)n_devices) {
                snprintf(err, err_size, "layer %u expert %d on device %u of "
                         "%d", lp->layer, e, lp->device[e], n_devices);
                goto bad;
            }
            w[e] = 1u << lp->device[e];
        }
        for (size_t r = 0; r < lp->n_replicas; r++) {
            const Baton__V1__ExpertReplica *rp = lp->replicas[r];

            if (rp->expert >= (uint32_t)c->n_experts) {
                snprintf(err, err_size, "layer %u replica of expert %u of %d",
                         lp->layer, rp->expert, c->n_experts);
                goto bad;
            }
            for (size_t k = 0; k < rp->n_devices; k++) {
                if (rp->devices[k] >= (uint32_t)n_devices) {
                    snprintf(err, err_size, "layer %u expert %u replica on "
                             "device %u of %d", lp->layer, rp->expert,
                             rp->devices[k], n_devices);
                    goto bad;
                }
                w[rp->expert] |= 1u << rp->devices[k];
            }
        }
    }
    for (int l = 0; l < c->n_layers; l++) {
        if (c->layer_is_moe[l] && plan->where[(size_t)l * c->n_experts] == 0) {
            snprintf(err, err_size, "MoE layer %d has no placement", l);
            goto bad;
        }
    }
    return BT_OK;
bad:
    bt_ep_plan_cleanup(plan);
    return BT_ERR_INVALID_ARG;
}

static void refuse(bt_node_experts_t *x, uint64_t version, const char *why)
{
    bt_warn("expert plan %llu refused, plan %llu stays: %s",
            (unsigned long long)version, (unsigned long long)x->version, why);
    bt_counter_inc(x->c_refused);
}

/* The version in force, from the engine. A staged plan switches at the
 * next step; with no step on the worker (and none can start while the
 * loop is here) it switches now, so an idle node runs the plan too. */
static void sync_version(bt_node_experts_t *x)
{
    if (x->ep == NULL) {
        return;
    }
    if (!x->node->busy) {
        bt_ep_commit(x->ep);
    }
    x->version = bt_ep_version(x->ep);
    bt_gauge_set(x->g_version, (double)x->version);
}

static void stage_work(void *ctx)
{
    bt_node_experts_t *x = ctx;
    const uint64_t t0 = bt_now_ms();

    x->stage_st = bt_ep_stage(x->ep, &x->pending, &x->moved, x->stage_err,
                              sizeof(x->stage_err));
    x->t_stage_ms = bt_now_ms() - t0;
}

static void stage_done(void *ctx, bt_status_t status)
{
    bt_node_experts_t *x = ctx;
    const uint64_t v = x->pending.version;

    x->applying = false;
    if (status != BT_OK || x->stage_st != BT_OK) {
        refuse(x, v, status != BT_OK ? bt_status_str(status) : x->stage_err);
    } else {
        bt_info("expert plan %llu applied: %d experts copied in %llu ms, in "
                "force from the next step", (unsigned long long)v, x->moved,
                (unsigned long long)x->t_stage_ms);
        bt_counter_add(x->c_moved, (double)x->moved);
        bt_counter_inc(x->c_applied);
        sync_version(x);
    }
    bt_ep_plan_cleanup(&x->pending);
}

/* Takes `plan` (moved into x) and copies its experts off the loop. */
static void apply(bt_node_experts_t *x, bt_ep_plan_t *plan)
{
    bt_status_t s;

    if (x->ep == NULL) {
        x->version = plan->version;  /* one device: nothing moves */
        bt_gauge_set(x->g_version, (double)x->version);
        bt_ep_plan_cleanup(plan);
        return;
    }
    x->pending = *plan;
    memset(plan, 0, sizeof(*plan));
    x->applying = true;
    s = bt_tpool_submit(x->stager, stage_work, stage_done, x);
    if (s != BT_OK) {
        x->applying = false;
        refuse(x, x->pending.version, bt_status_str(s));
        bt_ep_plan_cleanup(&x->pending);
    }
}

/* BATON_TEST_EXPERT_PLANS: each window a new plan that moves every
 * expert one device on (version + 1), to test applying plans on live
 * requests without a kvstore that plans. */
static void test_plan(bt_node_experts_t *x)
{
    bt_ep_plan_t plan;

    if (x->ep == NULL || bt_ep_plan_get(x->ep, &plan) != BT_OK) {
        return;
    }
    for (size_t i = 0; i < (size_t)plan.n_layers * plan.n_experts; i++) {
        const uint32_t w = plan.where[i];
        const int n = plan.n_devices;

        plan.where[i] = ((w << 1) | (w >> (n - 1))) & ((1u << n) - 1);
    }
    plan.version = x->version + 1;
    apply(x, &plan);
}

/* ---- kvstore calls ---------------------------------------------------- */

/* After bt_node_experts_destroy, the last call to end frees x. */
static bool call_end(bt_node_experts_t *x)
{
    if (!x->closing) {
        return false;
    }
    if (!x->report_out && !x->fetch_out) {
        free(x);
    }
    return true;
}

static void fetch_done(void *arg, const bt_rpc_result_t *r,
                       const ProtobufCMessage *resp)
{
    bt_node_experts_t *x = arg;
    const Baton__V1__PlacementPlan *pb = (const void *)resp;
    bt_ep_plan_t plan;
    char err[256];

    x->fetch_out = false;
    if (call_end(x)) {
        return;
    }
    if (r->code == BT_RPC_UNIMPLEMENTED) {
        if (!x->unimplemented_logged) {
            bt_info("kvstore %s does not serve placement plans yet",
                    bt_rpc_channel_target(x->ch));
            x->unimplemented_logged = true;
        }
        return;
    }
    if (r->code != BT_RPC_OK) {
        bt_debug("expert plan fetch: %s %s", bt_rpc_code_name(r->code),
                 r->message);
        return;
    }
    if (pb->version <= x->version || pb->n_layers == 0 || x->applying ||
        (x->ep != NULL && bt_ep_busy(x->ep)) || x->node->draining) {
        return;  /* nothing newer (or the node is going away) */
    }
    if (bt_node_experts_from_proto(pb, &x->node->model->cfg, x->n_devices,
                                   &plan, err, sizeof(err)) != BT_OK) {
        refuse(x, pb->version, err);
        return;
    }
    apply(x, &plan);
}

static void report_done(void *arg, const bt_rpc_result_t *r,
                        const ProtobufCMessage *resp)
{
    bt_node_experts_t *x = arg;

    (void)resp;
    x->report_out = false;
    if (call_end(x)) {
        return;
    }
    if (r->code != BT_RPC_OK && r->code != BT_RPC_UNIMPLEMENTED) {
        bt_debug("expert stats report: %s %s", bt_rpc_code_name(r->code),
                 r->message);
    }
}

/* The window's counters as an ExpertStatsReport (MoE layers only;
 * transitions sparse). */
static void report(bt_node_experts_t *x, const bt_moe_stats_t *st,
                   const bt_ep_load_t *ld, uint64_t now_ms)
{
    const bt_model_config_t *c = &x->node->model->cfg;
    const int E = st->n_experts;
    Baton__V1__ExpertStatsReport rep;
    Baton__V1__LayerExpertStats *ls = calloc((size_t)st->n_layers, sizeof(*ls));
    Baton__V1__LayerExpertStats **lp = calloc((size_t)st->n_layers,
                                              sizeof(*lp));
    Baton__V1__ExpertTransition *tr = NULL, **tp = NULL;
    size_t n_tr = 0, at = 0;
    uint64_t first = 0;
    int first_moe = -1;

    for (size_t i = 0; i < (size_t)st->n_layers * E * E; i++) {
        n_tr += st->transitions[i] != 0;
    }
    tr = calloc(n_tr + 1, sizeof(*tr));
    tp = calloc(n_tr + 1, sizeof(*tp));
    if (ls == NULL || lp == NULL || tr == NULL || tp == NULL) {
        goto out;  /* statistics only */
    }
    baton__v1__expert_stats_report__init(&rep);
    rep.model = x->node->model_name;
    rep.node_id = x->node->node_id;
    rep.role = role_pb(x->node);
    rep.window_start_unix_ms = x->window_start_ms;
    rep.window_end_unix_ms = now_ms;
    rep.placement_version = x->version;
    rep.n_devices = (uint32_t)x->n_devices;
    if (x->n_devices > 1 && bt_fwd_experts(x->node->fwd) != NULL) {
        rep.slots_per_device = (uint32_t)bt_ep_slots(bt_fwd_experts(x->node->fwd));
    }
    rep.n_device_load = (size_t)ld->n_devices;
    rep.device_load = (uint64_t *)ld->rows;
    rep.balancedness = ld->balancedness;
    rep.layers = lp;
    for (int l = 0; l < st->n_layers; l++) {
        Baton__V1__LayerExpertStats *m = &ls[rep.n_layers];

        if (!c->layer_is_moe[l]) {
            continue;
        }
        if (first_moe < 0) {
            first_moe = l;
        }
        baton__v1__layer_expert_stats__init(m);
        m->layer = (uint32_t)l;
        m->n_counts = (size_t)E;
        m->counts = st->tokens + (size_t)l * E;
        m->transitions = tp + at;
        for (int a = 0; a < E; a++) {
            for (int b = 0; b < E; b++) {
                const uint64_t n = st->transitions[((size_t)l * E + a) * E + b];

                if (n == 0) {
                    continue;
                }
                baton__v1__expert_transition__init(&tr[at]);
                tr[at].from = (uint32_t)a;
                tr[at].to = (uint32_t)b;
                tr[at].count = n;
                tp[at] = &tr[at];
                at++;
                m->n_transitions++;
            }
        }
        lp[rep.n_layers++] = m;
    }
    for (int e = 0; first_moe >= 0 && e < E; e++) {
        first += st->tokens[(size_t)first_moe * E + e];
    }
    rep.tokens = c->n_experts_used > 0 ? first / (uint64_t)c->n_experts_used
                                       : 0;
    if (rep.tokens == 0) {
        goto out;  /* an idle window: nothing to say */
    }
    if (bt_rpc_client_unary(x->ch, "/baton.v1.KvStore/ReportExpertStats",
                            &rep.base,
                            &baton__v1__expert_stats_ack__descriptor,
                            &(bt_rpc_call_opts_t){
                                .timeout_ms = BT_NODE_EXPERTS_RPC_MS },
                            report_done, x, NULL) == BT_OK) {
        x->report_out = true;
    }
out:
    free(ls);
    free(lp);
    free(tr);
    free(tp);
}

static void fetch(bt_node_experts_t *x)
{
    Baton__V1__GetPlacementRequest req;

    baton__v1__get_placement_request__init(&req);
    req.model = x->node->model_name;
    req.role = role_pb(x->node);
    req.known_version = x->version;
    if (bt_rpc_client_unary(x->ch, "/baton.v1.KvStore/GetPlacement",
                            &req.base, &baton__v1__placement_plan__descriptor,
                            &(bt_rpc_call_opts_t){
                                .timeout_ms = BT_NODE_EXPERTS_RPC_MS },
                            fetch_done, x, NULL) == BT_OK) {
        x->fetch_out = true;
    }
}

/* ---- the window --------------------------------------------------------- */

static void window_read(bt_node_experts_t *x);

/* A step in flight on the worker counts into the routing counters and the
 * devices' loads one after the other: while one runs, the window is read
 * when it ends (bt_node_experts_step_end), so both describe the same
 * tokens. */
static void window(evutil_socket_t fd, short what, void *arg)
{
    bt_node_experts_t *x = arg;

    (void)fd;
    (void)what;
    if (x->node->busy) {
        x->due = true;
        return;
    }
    window_read(x);
}

void bt_node_experts_step_end(bt_node_t *node)
{
    bt_node_experts_t *x = node->experts;

    if (x != NULL && x->due) {
        window_read(x);
    }
}

static void window_read(bt_node_experts_t *x)
{
    const uint64_t now = bt_wall_ms();
    bt_moe_stats_t st;
    bt_ep_load_t ld;

    x->due = false;
    sync_version(x);
    if (bt_fwd_moe_stats(x->node->fwd, true, &st) != BT_OK) {
        return;
    }
    if (x->ep != NULL) {
        bt_ep_load(x->ep, true, &ld);
    } else {
        memset(&ld, 0, sizeof(ld));
        ld.n_devices = 1;
        ld.balancedness = 1.0;
        for (size_t i = 0; i < (size_t)st.n_layers * st.n_experts; i++) {
            ld.rows[0] += st.tokens[i];
        }
    }
    for (int d = 0; d < ld.n_devices; d++) {
        bt_gauge_set(x->g_load[d], (double)ld.rows[d]);
    }
    bt_gauge_set(x->g_bal, ld.balancedness);
    if (x->ch != NULL && !x->report_out) {
        report(x, &st, &ld, now);
    }
    bt_moe_stats_cleanup(&st);
    x->window_start_ms = now;
    if (x->applying || (x->ep != NULL && bt_ep_busy(x->ep))) {
        return;  /* one plan at a time: the last one is not in force yet */
    }
    if (x->test_plans) {
        test_plan(x);
    } else if (x->ch != NULL && !x->fetch_out) {
        fetch(x);
    }
}

/* ---- life ------------------------------------------------------------- */

bt_status_t bt_node_experts_init(bt_node_t *node)
{
    const bt_model_config_t *c = &node->model->cfg;
    const int64_t ms = node->cfg.expert_window_ms;
    struct timeval tv = { (time_t)(ms / 1000),
                          (suseconds_t)((ms % 1000) * 1000) };
    const char *test = getenv("BATON_TEST_EXPERT_PLANS");
    bt_node_experts_t *x;
    char lab[64];

    if (c->n_experts == 0) {
        if (node->cfg.expert_devices > 1) {
            bt_warn("--expert-devices %lld ignored: model %s is dense",
                    (long long)node->cfg.expert_devices, node->model_name);
        }
        return BT_OK;
    }
    if ((x = calloc(1, sizeof(*x))) == NULL) {
        return BT_ERR_NO_MEMORY;
    }
    node->experts = x;
    x->node = node;
    x->n_devices = (int)node->cfg.expert_devices;
    x->test_plans = test != NULL && strcmp(test, "1") == 0;
    if (x->n_devices > 1) {
        if (bt_fwd_experts_init(node->fwd, x->n_devices, 0) != BT_OK ||
            (x->stager = bt_tpool_create(node->base, 1, 1)) == NULL) {
            bt_error("cannot start %d expert devices", x->n_devices);
            return BT_ERR_NO_MEMORY;
        }
        x->ep = bt_fwd_experts(node->fwd);
    }
    if (bt_node_kvs_target(node, 0) != NULL) {
        x->ch = bt_rpc_channel_create(node->client, bt_node_kvs_target(node, 0),
                                      bt_rpc_tls_cfg_client(&node->cfg.tls));
    }
    for (int d = 0; d < x->n_devices; d++) {
        char dev[16];

        snprintf(dev, sizeof(dev), "%d", d);
        bt_metrics_labels(lab, sizeof(lab), "device", dev, NULL);
        x->g_load[d] = bt_metrics_gauge(node->metrics,
            "baton_node_expert_device_load",
            "expert rows (token, expert) an expert device ran in the last "
            "window", lab);
    }
    x->g_bal = bt_metrics_gauge(node->metrics, "baton_node_expert_balancedness",
        "mean expert device load / max, over the last window (1: even)",
        NULL);
    x->g_version = bt_metrics_gauge(node->metrics,
        "baton_node_expert_plan_version",
        "version of the expert placement plan in force (0: built-in)", NULL);
    x->c_refused = bt_metrics_counter(node->metrics,
        "baton_node_expert_plan_refused_total",
        "expert placement plans the node could not apply (it kept the old)",
        NULL);
    x->c_applied = bt_metrics_counter(node->metrics,
        "baton_node_expert_plans_applied_total",
        "expert placement plans applied", NULL);
    x->c_moved = bt_metrics_counter(node->metrics,
        "baton_node_expert_copies_moved_total",
        "expert copies made on a new device by plans applied", NULL);
    bt_gauge_set(x->g_bal, 1.0);
    x->window_start_ms = bt_wall_ms();
    x->tick = event_new(node->base, -1, EV_PERSIST, window, x);
    if (x->tick == NULL || event_add(x->tick, &tv) != 0) {
        return BT_ERR_NO_MEMORY;
    }
    return BT_OK;
}

void bt_node_experts_destroy(bt_node_t *node)
{
    bt_node_experts_t *x = node->experts;

    if (x == NULL) {
        return;
    }
    if (x->tick != NULL) {
        event_free(x->tick);
    }
    bt_tpool_destroy(x->stager);   /* a plan being copied finishes */
    bt_ep_plan_cleanup(&x->pending);
    bt_rpc_channel_destroy(x->ch);
    node->experts = NULL;
    x->closing = true;
    if (!x->report_out && !x->fetch_out) {
        free(x);
    }
}
