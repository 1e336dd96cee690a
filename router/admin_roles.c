/* baton.v1.Admin's role methods (batonctl role, batonctl events): moving a
 * flexible node (roles.c) and the router's events log. */
#include "router.h"

#include "admin.pb-c.h"
#include "base/clock.h"
#include "base/log.h"

#include <stdlib.h>

static void bt_admin_set_role(bt_rpc_call_t *call, const ProtobufCMessage *msg,
                              void *arg)
{
    bt_router_t *r = arg;
    const Baton__V1__SetRoleRequest *in = (const Baton__V1__SetRoleRequest *)msg;
    Baton__V1__SetRoleResponse out = BATON__V1__SET_ROLE_RESPONSE__INIT;
    bt_node_t *n = in->node_id != NULL && in->node_id[0] != '\0'
                   ? bt_registry_find(r->registry, in->node_id) : NULL;
    bt_rpc_code_t code;
    char err[384];

    if (n == NULL) {
        bt_rpc_call_fail(call, BT_ERR_NOT_FOUND, "no node '%s'",
                         in->node_id ? in->node_id : "");
        return;
    }
    if (bt_router_role_move(r, n, (unsigned)in->role, "operator", &code, err,
                            sizeof(err)) != BT_OK) {
        bt_info("admin: role of node %s not moved: %s", n->id, err);
        bt_rpc_call_fail_code(call, code, err);
        return;
    }
    out.role = (Baton__V1__NodeRole)n->serving;
    out.target_role = (Baton__V1__NodeRole)n->moving_to;
    bt_rpc_call_reply(call, &out.base);
}

static void bt_admin_list_events(bt_rpc_call_t *call, const ProtobufCMessage *msg,
                                 void *arg)
{
    bt_router_t *r = arg;
    const Baton__V1__ListEventsRequest *in = (const Baton__V1__ListEventsRequest *)msg;
    Baton__V1__ListEventsResponse out = BATON__V1__LIST_EVENTS_RESPONSE__INIT;
    Baton__V1__RouterEvent *evs = calloc(BT_ROUTER_EVENTS_MAX, sizeof(*evs));
    Baton__V1__RouterEvent **list = calloc(BT_ROUTER_EVENTS_MAX, sizeof(*list));
    const bt_router_event_t *e;
    size_t n = 0, skip = 0;

    if (evs == NULL || list == NULL) {
        free(evs);
        free(list);
        bt_rpc_call_fail(call, BT_ERR_NO_MEMORY, NULL);
        return;
    }
    while (bt_router_event_get(r, n) != NULL) {
        n++;
    }
    if (in->limit > 0 && in->limit < n) {
        skip = n - in->limit;
    }
    for (size_t i = skip; (e = bt_router_event_get(r, i)) != NULL; i++) {
        Baton__V1__RouterEvent *m = &evs[out.n_events];

        baton__v1__router_event__init(m);
        m->unix_ms = e->unix_ms;
        m->node_id = (char *)e->node_id;
        m->kind = (char *)e->kind;
        m->from_role = (Baton__V1__NodeRole)e->from;
        m->to_role = (Baton__V1__NodeRole)e->to;
        m->reason = (char *)e->reason;
        list[out.n_events++] = m;
    }
    out.events = list;
    out.now_unix_ms = bt_wall_ms();
    bt_rpc_call_reply(call, &out.base);
    free(evs);
    free(list);
}

const bt_router_admin_method_t bt_router_admin_role_methods[] = {
    { "/baton.v1.Admin/SetRole", &baton__v1__set_role_request__descriptor,
      bt_admin_set_role },
    { "/baton.v1.Admin/ListEvents", &baton__v1__list_events_request__descriptor,
      bt_admin_list_events },
    { NULL, NULL, NULL },
};
