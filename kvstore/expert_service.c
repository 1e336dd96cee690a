/* baton.v1.KvStore's placement methods: ReportExpertStats (nodes),
 * GetPlacement (nodes), ListPlacements and Rebalance (the router's
 * Admin). The plan book (plans/plan_book.h) holds the state, re-plans run
 * on the planner thread (plan_lane.h); here the checks, the calls and
 * the answers. */
#include "kvstore.h"

#include "base/clock.h"
#include "base/log.h"
#include "expert_check.h"
#include "kvstore.pb-c.h"
#include "plan_lane.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The allocations behind one PlacementPlan message. */
typedef struct {
    Baton__V1__PlacementPlan   msg;
    Baton__V1__LayerPlacement *layers;
    Baton__V1__LayerPlacement **layer_ptrs;
    uint32_t                  *device;     /* [moe layers][E] */
    Baton__V1__ExpertReplica  *reps;       /* [moe layers][E] */
    Baton__V1__ExpertReplica **rep_ptrs;
    uint32_t                  *rep_devs;   /* [moe layers][N*S] */
} bt_kvsd_plan_msg_t;

static void bt_kvsd_plan_msg_free(bt_kvsd_plan_msg_t *m)
{
    free(m->layers);
    free(m->layer_ptrs);
    free(m->device);
    free(m->reps);
    free(m->rep_ptrs);
    free(m->rep_devs);
}

/* One MoE layer: device[e] the first device holding e, the others as
 * replicas. The plan's slots are listed device by device, so each
 * expert's devices come out ascending. */
static void bt_kvsd_layer_msg(const bt_placement_plan_t *p, int32_t l,
                              Baton__V1__LayerPlacement *lp, uint32_t *device,
                              Baton__V1__ExpertReplica *reps,
                              Baton__V1__ExpertReplica **rep_ptrs,
                              uint32_t *rep_devs)
{
    const int32_t *row = p->slot_expert + (size_t)l * (size_t)p->n_devices * (size_t)p->slots;
    int32_t E = p->n_experts, n = p->n_devices * p->slots;
    size_t used = 0;

    baton__v1__layer_placement__init(lp);
    lp->layer = (uint32_t)l;
    lp->n_device = (size_t)E;
    lp->device = device;
    for (int32_t e = 0; e < E; e++) {
        device[e] = UINT32_MAX;
    }
    for (int32_t i = 0; i < n; i++) {
        int32_t e = row[i];

        if (device[e] == UINT32_MAX) {
            device[e] = (uint32_t)(i / p->slots);
        }
    }
    for (int32_t e = 0; e < E; e++) {
        Baton__V1__ExpertReplica *r = &reps[lp->n_replicas];

        baton__v1__expert_replica__init(r);
        r->expert = (uint32_t)e;
        r->devices = rep_devs + used;
        for (int32_t i = 0; i < n; i++) {
            if (row[i] == e && (uint32_t)(i / p->slots) != device[e]) {
                r->devices[r->n_devices++] = (uint32_t)(i / p->slots);
            }
        }
        if (r->n_devices > 0) {
            used += r->n_devices;
            rep_ptrs[lp->n_replicas++] = r;
        }
    }
    lp->replicas = rep_ptrs;
}

/* The message for a view; with_layers: the per-layer lists too. */
static bt_status_t bt_kvsd_plan_msg(const bt_pbook_view_t *v, bool with_layers,
                                    bt_kvsd_plan_msg_t *m)
{
    const bt_placement_plan_t *p = v->plan;
    Baton__V1__PlacementPlan *msg = &m->msg;
    size_t L, E, NS;

    memset(m, 0, sizeof(*m));
    baton__v1__placement_plan__init(msg);
    msg->model = (char *)v->model;
    msg->role = (Baton__V1__NodeRole)v->role;
    msg->version = v->version;
    msg->created_unix_ms = v->created_unix_ms;
    msg->n_devices = (uint32_t)(p != NULL ? p->n_devices : v->n_devices);
    msg->slots_per_device = (uint32_t)(p != NULL ? p->slots : v->slots);
    msg->balancedness = v->balancedness;
    msg->planned_balancedness = v->planned_balancedness;
    msg->moved_experts = (uint64_t)v->moved;
    if (!with_layers || p == NULL) {
        return BT_OK;
    }
    L = (size_t)p->n_layers;
    E = (size_t)p->n_experts;
    NS = (size_t)p->n_devices * (size_t)p->slots;
    m->layers = calloc(L, sizeof(*m->layers));
    m->layer_ptrs = calloc(L, sizeof(*m->layer_ptrs));
    m->device = calloc(L * E, sizeof(*m->device));
    m->reps = calloc(L * E, sizeof(*m->reps));
    m->rep_ptrs = calloc(L * E, sizeof(*m->rep_ptrs));
    m->rep_devs = calloc(L * NS, sizeof(*m->rep_devs));
    if (m->layers == NULL || m->layer_ptrs == NULL || m->device == NULL ||
        m->reps == NULL || m->rep_ptrs == NULL || m->rep_devs == NULL) {
        bt_kvsd_plan_msg_free(m);
        return BT_ERR_NO_MEMORY;
    }
    for (size_t l = 0; l < L; l++) {
        Baton__V1__LayerPlacement *lp = &m->layers[msg->n_layers];

        if (p->dense[l]) {
            continue;
        }
        bt_kvsd_layer_msg(p, (int32_t)l, lp, m->device + l * E, m->reps + l * E,
                          m->rep_ptrs + l * E, m->rep_devs + l * NS);
        m->layer_ptrs[msg->n_layers++] = lp;
    }
    msg->layers = m->layer_ptrs;
    return BT_OK;
}

/* ---- ReportExpertStats ---- */

/* An automatic re-plan's outcome (planner thread, then the loop). */
static void bt_kvsd_replanned(void *arg, bt_status_t st,
                              const bt_pbook_view_t *v, const char *err)
{
    uint64_t *before = arg;

    if (st == BT_OK && v->version != *before) {
        bt_info("placement: model %s role %d: plan version %llu (planned "
                "balancedness %.3f, %lld copies moved)", v->model, v->role,
                (unsigned long long)v->version, v->planned_balancedness,
                (long long)v->moved);
    }
    (void)err;   /* the lane logs failures */
    free(before);
}

static void bt_kvsd_report_stats(bt_rpc_call_t *call, const ProtobufCMessage *msg,
                                 void *arg)
{
    const Baton__V1__ExpertStatsReport *req = (const void *)msg;
    Baton__V1__ExpertStatsAck ack = BATON__V1__EXPERT_STATS_ACK__INIT;
    bt_kvsd_expert_report_t rep;
    bt_kvsd_t *d = arg;
    uint64_t latest = 0;
    bool replan = false;
    bt_status_t st;
    char err[256];

    st = bt_kvsd_expert_report(req, &rep, err, sizeof(err));
    if (st == BT_OK) {
        st = bt_pbook_add_report(d->plans, req->model, (int)req->role, &rep.r,
                                 bt_now_ms(), &latest, &replan, err, sizeof(err));
        bt_kvsd_expert_report_free(&rep);
    }
    if (st != BT_OK) {
        bt_rpc_call_fail(call, st, "%s", err);
        return;
    }
    /* the ack carries the version in force; the re-plan's comes with a
     * later GetPlacement (the nodes ask every window) */
    if (replan) {
        uint64_t *before = malloc(sizeof(*before));

        if (before != NULL) {
            *before = latest;
        }
        if (before == NULL ||
            bt_kvsd_lane_push(d->lane, BT_PBOOK_JOB_AUTO, req->model,
                              (int)req->role, bt_kvsd_replanned, before) != BT_OK) {
            free(before);
            bt_warn("placement: re-plan of model %s role %d not queued",
                    req->model, (int)req->role);
        }
    }
    bt_counter_inc(d->m.expert_reports);
    ack.latest_placement_version = latest;
    bt_rpc_call_reply(call, &ack.base);
}

/* ---- GetPlacement ---- */

static void bt_kvsd_get_placement(bt_rpc_call_t *call, const ProtobufCMessage *msg,
                                  void *arg)
{
    const Baton__V1__GetPlacementRequest *req = (const void *)msg;
    bt_kvsd_t *d = arg;
    bt_kvsd_plan_msg_t m;
    bt_pbook_view_t v;
    char err[160];
    bt_status_t st = bt_kvsd_check_model_role(req->model, (int)req->role, true,
                                              err, sizeof(err));

    if (st != BT_OK) {
        bt_rpc_call_fail(call, st, "%s", err);
        return;
    }
    if (!bt_pbook_find(d->plans, req->model, (int)req->role, &v)) {
        memset(&v, 0, sizeof(v));
        v.model = req->model;
        v.role = (int)req->role;
    }
    /* the node has this version already: the version alone */
    if (bt_kvsd_plan_msg(&v, req->known_version == 0 ||
                             req->known_version < v.version, &m) != BT_OK) {
        bt_rpc_call_fail(call, BT_ERR_NO_MEMORY, "out of memory");
        return;
    }
    bt_rpc_call_reply(call, &m.msg.base);
    bt_kvsd_plan_msg_free(&m);
}

/* ---- ListPlacements / Rebalance ---- */

static bool bt_kvsd_plan_match(const bt_pbook_view_t *v, const char *model, int role)
{
    return (model == NULL || model[0] == '\0' || strcmp(model, v->model) == 0) &&
           (role == 0 || role == v->role);
}

/* Replies with the messages of views[0..n). */
static void bt_kvsd_reply_plans(bt_rpc_call_t *call, bt_pbook_view_t *views,
                                size_t n, bool with_layers)
{
    Baton__V1__ListPlacementsResponse resp = BATON__V1__LIST_PLACEMENTS_RESPONSE__INIT;
    bt_kvsd_plan_msg_t *m = calloc(n + 1, sizeof(*m));
    Baton__V1__PlacementPlan **ptrs = calloc(n + 1, sizeof(*ptrs));
    size_t done = 0;

    for (; m != NULL && ptrs != NULL && done < n; done++) {
        if (bt_kvsd_plan_msg(&views[done], with_layers, &m[done]) != BT_OK) {
            break;
        }
        ptrs[done] = &m[done].msg;
    }
    if (done < n) {
        bt_rpc_call_fail(call, BT_ERR_NO_MEMORY, "out of memory");
    } else {
        resp.n_plans = n;
        resp.plans = ptrs;
        bt_rpc_call_reply(call, &resp.base);
    }
    for (size_t i = 0; i < done; i++) {
        bt_kvsd_plan_msg_free(&m[i]);
    }
    free(m);
    free(ptrs);
}

/* An optional (model, role) filter of ListPlacements and Rebalance: each
 * part, when given, checked as in a report. */
static bt_status_t bt_kvsd_check_filter(const char *model, int role, char *err,
                                        size_t err_size)
{
    bool has_model = model != NULL && model[0] != '\0';

    if (!has_model && role == 0) {
        return BT_OK;
    }
    return bt_kvsd_check_model_role(has_model ? model : "*", role, false, err,
                                    err_size);
}

static void bt_kvsd_list_placements(bt_rpc_call_t *call, const ProtobufCMessage *msg,
                                    void *arg)
{
    const Baton__V1__ListPlacementsRequest *req = (const void *)msg;
    bt_pbook_view_t views[BT_PBOOK_MAX_ENTRIES];
    bt_kvsd_t *d = arg;
    size_t n = 0;
    char err[160];
    bt_status_t st = BT_OK;

    st = bt_kvsd_check_filter(req->model, (int)req->role, err, sizeof(err));
    if (st != BT_OK) {
        bt_rpc_call_fail(call, st, "%s", err);
        return;
    }
    for (size_t i = 0; bt_pbook_at(d->plans, i, &views[n]); i++) {
        n += bt_kvsd_plan_match(&views[n], req->model, (int)req->role);
    }
    bt_kvsd_reply_plans(call, views, n, req->with_layers);
}

/* One Rebalance call: its (model, role)s are planned in turn on the
 * planner thread; the answer goes when the last is done. */
typedef struct bt_kvsd_rebalance bt_kvsd_rebalance_t;

typedef struct {
    bt_kvsd_rebalance_t *rb;
    size_t               i;
} bt_kvsd_rebalance_item_t;

struct bt_kvsd_rebalance {
    bt_kvsd_t          *d;
    bt_rpc_call_t      *call;
    size_t              n, left;
    bool                pushing;
    bool                dry_run;
    bt_status_t         st;
    char                err[256];
    bt_kvsd_plan_msg_t  m[BT_PBOOK_MAX_ENTRIES];
    bool                built[BT_PBOOK_MAX_ENTRIES];
    bt_kvsd_rebalance_item_t items[BT_PBOOK_MAX_ENTRIES];
};

static void bt_kvsd_rebalance_reply(bt_kvsd_rebalance_t *rb)
{
    Baton__V1__ListPlacementsResponse resp = BATON__V1__LIST_PLACEMENTS_RESPONSE__INIT;
    Baton__V1__PlacementPlan *ptrs[BT_PBOOK_MAX_ENTRIES];

    if (rb->st != BT_OK) {
        bt_rpc_call_fail(rb->call, rb->st, "%s", rb->err);
    } else {
        for (size_t i = 0; i < rb->n; i++) {
            ptrs[i] = &rb->m[i].msg;
        }
        resp.n_plans = rb->n;
        resp.plans = ptrs;
        bt_rpc_call_reply(rb->call, &resp.base);
    }
    for (size_t i = 0; i < rb->n; i++) {
        if (rb->built[i]) {
            bt_kvsd_plan_msg_free(&rb->m[i]);
        }
    }
    rb->d->inflight--;
    free(rb);
}

static void bt_kvsd_rebalanced(void *arg, bt_status_t st,
                               const bt_pbook_view_t *v, const char *err)
{
    bt_kvsd_rebalance_item_t *item = arg;
    bt_kvsd_rebalance_t *rb = item->rb;
    size_t i = item->i;

    if (st == BT_OK && (st = bt_kvsd_plan_msg(v, true, &rb->m[i])) != BT_OK) {
        err = "out of memory";
    }
    rb->built[i] = st == BT_OK;
    if (st == BT_OK && !rb->dry_run) {
        bt_info("placement: rebalance of model %s role %d: version %llu",
                v->model, v->role, (unsigned long long)v->version);
    }
    if (st != BT_OK && rb->st == BT_OK) {
        rb->st = st;
        snprintf(rb->err, sizeof(rb->err), "%s", err);
    }
    if (--rb->left == 0 && !rb->pushing) {
        bt_kvsd_rebalance_reply(rb);
    }
}

static void bt_kvsd_rebalance(bt_rpc_call_t *call, const ProtobufCMessage *msg,
                              void *arg)
{
    const Baton__V1__PlacementRebalanceRequest *req = (const void *)msg;
    bt_pbook_view_t all[BT_PBOOK_MAX_ENTRIES];
    bt_kvsd_t *d = arg;
    bt_kvsd_rebalance_t *rb;
    size_t n_all = 0;
    bt_status_t st = BT_OK;
    char err[256] = "";

    st = bt_kvsd_check_filter(req->model, (int)req->role, err, sizeof(err));
    if (st != BT_OK) {
        bt_rpc_call_fail(call, st, "%s", err);
        return;
    }
    /* the book's order; re-planning one entry changes no other */
    for (size_t i = 0; bt_pbook_at(d->plans, i, &all[n_all]); i++) {
        n_all += bt_kvsd_plan_match(&all[n_all], req->model, (int)req->role) &&
                 all[n_all].has_history;
    }
    if (n_all == 0) {
        bt_rpc_call_fail(call, BT_ERR_NOT_FOUND, "no expert statistics%s%s "
                         "since the kvstore started: nothing to plan from",
                         req->model != NULL && req->model[0] ? " for model " : "",
                         req->model != NULL ? req->model : "");
        return;
    }
    rb = calloc(1, sizeof(*rb));
    if (rb == NULL) {
        bt_rpc_call_fail(call, BT_ERR_NO_MEMORY, "out of memory");
        return;
    }
    rb->d = d;
    rb->call = call;
    rb->n = rb->left = n_all;
    rb->dry_run = req->dry_run;
    rb->pushing = true;
    d->inflight++;
    /* answered once every plan is done (a Rebalance waits for its plans,
     * as it did when they ran on the loop thread) */
    for (size_t i = 0; i < n_all; i++) {
        rb->items[i] = (bt_kvsd_rebalance_item_t){ rb, i };
        st = bt_kvsd_lane_push(d->lane, req->dry_run ? BT_PBOOK_JOB_DRY_RUN :
                                                       BT_PBOOK_JOB_REBALANCE,
                               all[i].model, all[i].role, bt_kvsd_rebalanced,
                               &rb->items[i]);
        if (st != BT_OK) {
            bt_kvsd_rebalanced(&rb->items[i], st, NULL, "the kvstore is stopping");
        }
    }
    rb->pushing = false;
    if (rb->left == 0) {
        bt_kvsd_rebalance_reply(rb);
    }
}

bt_status_t bt_kvsd_expert_register(bt_kvsd_t *d)
{
    static const struct {
        const char                       *path;
        const ProtobufCMessageDescriptor *desc;
        bt_rpc_handler_cb                 cb;
    } methods[] = {
        { "/baton.v1.KvStore/ReportExpertStats",
          &baton__v1__expert_stats_report__descriptor, bt_kvsd_report_stats },
        { "/baton.v1.KvStore/GetPlacement",
          &baton__v1__get_placement_request__descriptor, bt_kvsd_get_placement },
        { "/baton.v1.KvStore/ListPlacements",
          &baton__v1__list_placements_request__descriptor, bt_kvsd_list_placements },
        { "/baton.v1.KvStore/Rebalance",
          &baton__v1__placement_rebalance_request__descriptor, bt_kvsd_rebalance },
    };

    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        bt_status_t st = bt_rpc_server_add_unary(d->grpc, methods[i].path,
                                                 methods[i].desc,
                                                 methods[i].cb, d);

        if (st != BT_OK) {
            return st;
        }
    }
    return BT_OK;
}
