/* baton.v1.Admin's methods answered with the kvstore's help: GetPlacement
 * and Rebalance are forwarded to the kvstore that registered with this
 * router (it keeps the plans, DESIGN §6); CacheStats joins the node pools
 * the router knows from the nodes' reports with the kvstore's tiers. */
#include "router.h"

#include "admin.pb-c.h"
#include "base/log.h"
#include "kvstore.pb-c.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BT_ADMIN_STORE_MS 10000

typedef void (*bt_admin_store_done_cb)(bt_router_t *r, bt_rpc_call_t *call,
                                       const void *req, const ProtobufCMessage *resp);

/* One forwarded call: the operator's call waits for the kvstore's answer. */
typedef struct {
    bt_router_t           *r;
    bt_rpc_call_t         *call;
    const void            *req;     /* the Admin request (lives with `call`) */
    bt_admin_store_done_cb done;
    bool                   optional; /* CacheStats: answer without the store */
} bt_admin_fwd_t;

/* The kvstore the router knows: the first registered (lowest slot). */
static bt_node_t *bt_admin_store(bt_router_t *r)
{
    for (unsigned i = 0; i < BT_ROUTER_MAX_NODES; i++) {
        bt_node_t *n = bt_registry_slot(r->registry, i);

        if (n != NULL && n->role == BT_NODE_ROLE_KVSTORE) {
            return n;
        }
    }
    return NULL;
}

static void bt_admin_fwd_done(void *arg, const bt_rpc_result_t *res,
                              const ProtobufCMessage *resp)
{
    bt_admin_fwd_t *f = arg;

    if (res->code != BT_RPC_OK && !f->optional) {
        char why[512];

        /* the store's own code and words: INVALID_ARGUMENT, NOT_FOUND, ... */
        snprintf(why, sizeof(why), "kvstore: %s", res->message);
        bt_rpc_call_fail_code(f->call, res->code, why);
    } else {
        f->done(f->r, f->call, f->req, res->code == BT_RPC_OK ? resp : NULL);
    }
    free(f);
}

/* Sends `req` to the kvstore; `done` answers the Admin call. Without a
 * kvstore (or when it cannot be called): `optional` answers without it,
 * else FAILED_PRECONDITION / UNAVAILABLE. */
static void bt_admin_store_call(bt_router_t *r, bt_rpc_call_t *call,
                                const void *admin_req, const char *method,
                                const ProtobufCMessage *req,
                                const ProtobufCMessageDescriptor *resp_desc,
                                bt_admin_store_done_cb done, bool optional)
{
    bt_node_t *store = bt_admin_store(r);
    bt_rpc_channel_t *ch = bt_router_node_channel(r, store);
    bt_rpc_call_opts_t opts = { BT_ADMIN_STORE_MS, NULL, 0 };
    bt_admin_fwd_t *f;

    if (ch == NULL) {
        if (optional) {
            done(r, call, admin_req, NULL);
        } else {
            bt_rpc_call_fail_code(call, BT_RPC_FAILED_PRECONDITION,
                                  "no kvstore is registered with this router: "
                                  "MoE placement plans live in the kvstore "
                                  "(start baton-kvstore with --router)");
        }
        return;
    }
    f = calloc(1, sizeof(*f));
    if (f == NULL) {
        bt_rpc_call_fail(call, BT_ERR_NO_MEMORY, NULL);
        return;
    }
    *f = (bt_admin_fwd_t){ r, call, admin_req, done, optional };
    if (bt_rpc_client_unary(ch, method, req, resp_desc, &opts, bt_admin_fwd_done,
                            f, NULL) != BT_OK) {
        free(f);
        if (optional) {
            done(r, call, admin_req, NULL);
        } else {
            bt_rpc_call_fail(call, BT_ERR_PEER_UNREACHABLE, "cannot call kvstore %s",
                             store->id);
        }
    }
}

/* ---- GetPlacement ---- */

static bool bt_admin_named(const char *model)
{
    return model != NULL && model[0] != '\0';
}

static void bt_admin_placement_done(bt_router_t *r, bt_rpc_call_t *call,
                                    const void *req, const ProtobufCMessage *msg)
{
    const Baton__V1__AdminGetPlacementRequest *in = req;
    const Baton__V1__ListPlacementsResponse *list = (const void *)msg;
    Baton__V1__AdminGetPlacementResponse out = BATON__V1__ADMIN_GET_PLACEMENT_RESPONSE__INIT;

    (void)r;
    if (list->n_plans == 0 && bt_admin_named(in->model)) {
        bt_rpc_call_fail(call, BT_ERR_NOT_FOUND, "no MoE placement plan for "
                         "model %s%s (its nodes have not reported expert "
                         "statistics to the kvstore)", in->model,
                         in->role != 0 ? " in that role" : "");
        return;
    }
    out.n_plans = list->n_plans;
    out.plans = list->plans;
    if (list->n_plans > 0) {
        out.plan = list->plans[0];
        out.predicted_imbalance = out.plan->planned_balancedness > 0
                                  ? 1.0 / out.plan->planned_balancedness : 0;
    }
    bt_rpc_call_reply(call, &out.base);
}

static void bt_admin_get_placement(bt_rpc_call_t *call, const ProtobufCMessage *msg,
                                   void *arg)
{
    const Baton__V1__AdminGetPlacementRequest *in = (const void *)msg;
    Baton__V1__ListPlacementsRequest req = BATON__V1__LIST_PLACEMENTS_REQUEST__INIT;

    req.model = in->model;
    req.role = in->role;
    /* the expert lists only for one (model, role): they are long */
    req.with_layers = bt_admin_named(in->model) && in->role != 0;
    bt_admin_store_call(arg, call, in, "/baton.v1.KvStore/ListPlacements", &req.base,
                        &baton__v1__list_placements_response__descriptor,
                        bt_admin_placement_done, false);
}

/* ---- Rebalance ---- */

static void bt_admin_rebalance_done(bt_router_t *r, bt_rpc_call_t *call,
                                    const void *req, const ProtobufCMessage *msg)
{
    const Baton__V1__RebalanceRequest *in = req;
    const Baton__V1__ListPlacementsResponse *list = (const void *)msg;
    Baton__V1__RebalanceResponse out = BATON__V1__REBALANCE_RESPONSE__INIT;

    (void)r;
    out.n_plans = list->n_plans;
    out.plans = list->plans;
    if (list->n_plans > 0) {
        out.plan = list->plans[0];
        out.imbalance_before = out.plan->balancedness > 0
                               ? 1.0 / out.plan->balancedness : 0;
        out.imbalance_after = out.plan->planned_balancedness > 0
                              ? 1.0 / out.plan->planned_balancedness : 0;
    }
    for (size_t i = 0; i < list->n_plans && !in->dry_run; i++) {
        bt_info("admin: rebalance: model %s role %d at plan version %llu",
                list->plans[i]->model, (int)list->plans[i]->role,
                (unsigned long long)list->plans[i]->version);
    }
    bt_rpc_call_reply(call, &out.base);
}

static void bt_admin_rebalance(bt_rpc_call_t *call, const ProtobufCMessage *msg,
                               void *arg)
{
    const Baton__V1__RebalanceRequest *in = (const void *)msg;
    Baton__V1__PlacementRebalanceRequest req = BATON__V1__PLACEMENT_REBALANCE_REQUEST__INIT;

    req.model = in->model;
    req.role = in->role;
    req.dry_run = in->dry_run;
    bt_admin_store_call(arg, call, in, "/baton.v1.KvStore/Rebalance", &req.base,
                        &baton__v1__list_placements_response__descriptor,
                        bt_admin_rebalance_done, false);
}

/* ---- CacheStats ---- */

static void bt_admin_cache_done(bt_router_t *r, bt_rpc_call_t *call,
                                const void *req, const ProtobufCMessage *msg)
{
    const Baton__V1__CacheStatsRequest *in = req;
    const Baton__V1__StatsResponse *st = (const void *)msg;
    Baton__V1__CacheStatsResponse out = BATON__V1__CACHE_STATS_RESPONSE__INIT;
    Baton__V1__NodeCacheStats *c = calloc(BT_ROUTER_MAX_NODES + 2, sizeof(*c));
    Baton__V1__NodeCacheStats **cp = calloc(BT_ROUTER_MAX_NODES + 2, sizeof(*cp));
    bool named = in->node_id != NULL && in->node_id[0] != '\0';
    double queries = bt_metric_value(r->m.prefix_queries);
    double hits_node = bt_metric_value(r->m.hits_node);
    size_t n = 0;

    if (c == NULL || cp == NULL) {
        free(c);
        free(cp);
        bt_rpc_call_fail(call, BT_ERR_NO_MEMORY, NULL);
        return;
    }
    for (unsigned i = 0; i < BT_ROUTER_MAX_NODES; i++) {
        bt_node_t *node = bt_registry_slot(r->registry, i);

        if (node == NULL || node->role == BT_NODE_ROLE_KVSTORE ||
            (named && strcmp(in->node_id, node->id) != 0)) {
            continue;
        }
        baton__v1__node_cache_stats__init(&c[n]);
        c[n].node_id = node->id;
        c[n].tier = BATON__V1__KV_TIER__KV_TIER_DEVICE;
        c[n].capacity_blocks = node->total_blocks;
        c[n].blocks = node->total_blocks > node->load.free_blocks
                      ? node->total_blocks - node->load.free_blocks : 0;
        c[n].hit_tokens = node->cache_hit_tokens;
        c[n].lookup_tokens = node->cache_lookup_tokens;
        cp[n] = &c[n];
        n++;
    }
    /* the store sees the prompt tokens the prefill nodes missed */
    for (size_t t = 0; st != NULL && !named && t < st->n_tiers; t++) {
        const Baton__V1__TierStats *ts = st->tiers[t];

        baton__v1__node_cache_stats__init(&c[n]);
        c[n].node_id = "";
        c[n].tier = ts->tier;
        c[n].blocks = ts->blocks;
        /* blocks of the mean size held so far */
        c[n].capacity_blocks = ts->used_bytes > 0
            ? (uint64_t)((double)ts->capacity_bytes / (double)ts->used_bytes *
                         (double)ts->blocks) : 0;
        c[n].evictions = ts->evictions;
        if (ts->tier == BATON__V1__KV_TIER__KV_TIER_DRAM) {
            c[n].hit_tokens = (uint64_t)bt_metric_value(r->m.hits_kvstore);
            c[n].lookup_tokens = queries > hits_node ? (uint64_t)(queries - hits_node) : 0;
        }
        cp[n] = &c[n];
        n++;
    }
    if (named && n == 0) {
        bt_rpc_call_fail(call, BT_ERR_NOT_FOUND, "no serving node '%s'", in->node_id);
    } else {
        out.n_caches = n;
        out.caches = cp;
        out.hit_rate = queries > 0 ? bt_metric_value(r->m.prefix_hits) / queries : 0;
        bt_rpc_call_reply(call, &out.base);
    }
    free(c);
    free(cp);
}

static void bt_admin_cache_stats(bt_rpc_call_t *call, const ProtobufCMessage *msg,
                                 void *arg)
{
    const Baton__V1__CacheStatsRequest *in = (const void *)msg;
    Baton__V1__StatsRequest req = BATON__V1__STATS_REQUEST__INIT;

    if (in->node_id != NULL && in->node_id[0] != '\0') {
        bt_admin_cache_done(arg, call, in, NULL);
        return;
    }
    bt_admin_store_call(arg, call, in, "/baton.v1.KvStore/Stats", &req.base,
                        &baton__v1__stats_response__descriptor,
                        bt_admin_cache_done, true);
}

const bt_router_admin_method_t bt_router_admin_store_methods[] = {
    { "/baton.v1.Admin/GetPlacement", &baton__v1__admin_get_placement_request__descriptor,
      bt_admin_get_placement },
    { "/baton.v1.Admin/Rebalance", &baton__v1__rebalance_request__descriptor,
      bt_admin_rebalance },
    { "/baton.v1.Admin/CacheStats", &baton__v1__cache_stats_request__descriptor,
      bt_admin_cache_stats },
    { NULL, NULL, NULL },
};
