/* Flexible nodes moving between roles (docs/internals/router.md "Roles
 * that move"). The node is the authority on its role: this router asks
 * with SET_ROLE and follows the node's statuses, as every other router
 * registered with it does. From the moment it asks (the others: from the
 * node's next status, which the node sends at once), the registry's
 * `role` loses the roles the node leaves, so selection places no new work
 * of those on it; the node finishes what it holds and then announces the
 * new role, and selection places work of that role from then on. The
 * events of each move are kept for `batonctl events`. */
#include "request.h"
#include "router.h"

#include "base/clock.h"
#include "base/log.h"
#include "registry.pb-c.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct bt_router_events {
    bt_router_event_t ev[BT_ROUTER_EVENTS_MAX];
    size_t            first, n;     /* a ring: the oldest at `first` */
};

const char *bt_router_role_word(unsigned role)
{
    return role == BT_NODE_ROLE_PREFILL ? "prefill"
           : role == BT_NODE_ROLE_DECODE ? "decode"
           : role == BT_NODE_ROLE_BOTH ? "both" : "none";
}

void bt_router_event_add(bt_router_t *r, const char *node_id, const char *kind,
                         unsigned from, unsigned to, const char *reason)
{
    bt_router_events_t *e = r->events;
    bt_router_event_t *ev;

    if (e == NULL && (e = r->events = calloc(1, sizeof(*e))) == NULL) {
        return;   /* the log line still says it */
    }
    if (e->n == BT_ROUTER_EVENTS_MAX) {
        e->first = (e->first + 1) % BT_ROUTER_EVENTS_MAX;
        e->n--;
    }
    ev = &e->ev[(e->first + e->n++) % BT_ROUTER_EVENTS_MAX];
    memset(ev, 0, sizeof(*ev));
    ev->unix_ms = bt_wall_ms();
    snprintf(ev->node_id, sizeof(ev->node_id), "%s", node_id);
    snprintf(ev->kind, sizeof(ev->kind), "%s", kind);
    ev->from = from;
    ev->to = to;
    snprintf(ev->reason, sizeof(ev->reason), "%s", reason ? reason : "");
}

const bt_router_event_t *bt_router_event_get(const bt_router_t *r, size_t i)
{
    const bt_router_events_t *e = r->events;

    if (e == NULL || i >= e->n) {
        return NULL;
    }
    return &e->ev[(e->first + i) % BT_ROUTER_EVENTS_MAX];
}

void bt_router_events_free(bt_router_t *r)
{
    free(r->events);
    r->events = NULL;
}

static void bt_router_roles_gauge(bt_router_t *r)
{
    size_t moving = 0;

    for (unsigned i = 0; i < BT_ROUTER_MAX_NODES; i++) {
        const bt_node_t *n = bt_registry_slot(r->registry, i);

        moving += n != NULL && n->moving_to != 0;
    }
    bt_gauge_set(r->m.nodes_moving, (double)moving);
}

/* After the roles new work may take changed: the gauges, readiness and
 * the queue (a node that took on decode has room for it). */
static void bt_router_roles_changed(bt_router_t *r)
{
    bt_router_roles_gauge(r);
    bt_router_metrics_nodes(r);
    bt_router_readiness_sync(r);
    bt_router_queue_kick(r);
}

/* Another usable node of n's model serves `role` (a NodeRole bit). */
static bool bt_router_role_other(bt_router_t *r, const bt_node_t *n,
                                 unsigned role)
{
    for (unsigned i = 0; i < BT_ROUTER_MAX_NODES; i++) {
        const bt_node_t *o = bt_registry_slot(r->registry, i);

        if (o != NULL && o != n && ((unsigned)o->role & role) &&
            !o->load.draining && !o->load.drained &&
            strcmp(o->model, n->model) == 0) {
            return true;
        }
    }
    return false;
}

bt_status_t bt_router_role_move(bt_router_t *r, bt_node_t *n, unsigned to,
                                const char *why, bt_rpc_code_t *code_p,
                                char *err, size_t err_size)
{
    unsigned leaving;
    uint64_t id = 0;

    *code_p = BT_RPC_FAILED_PRECONDITION;
    if (to != BT_NODE_ROLE_PREFILL && to != BT_NODE_ROLE_DECODE &&
        to != BT_NODE_ROLE_BOTH) {
        *code_p = BT_RPC_INVALID_ARGUMENT;
        snprintf(err, err_size, "role %u: a node serves as prefill, decode or "
                 "both", to);
        return BT_ERR_INVALID_ARG;
    }
    if (!n->flexible) {
        snprintf(err, err_size, "node %s was not started with --role flexible: "
                 "its role (%s) is fixed", n->id,
                 n->serving == BT_NODE_ROLE_KVSTORE ? "kvstore"
                 : bt_router_role_word(n->serving));
        return BT_ERR_UNSUPPORTED;
    }
    if (n->load.draining || n->load.drained) {
        snprintf(err, err_size, "node %s is draining: undrain it first", n->id);
        return BT_ERR_SHUTDOWN;
    }
    if (n->moving_to == to || (n->moving_to == 0 && n->serving == to)) {
        return BT_OK;   /* under way, or done */
    }
    if (n->moving_to != 0) {
        snprintf(err, err_size, "node %s is moving from %s to %s already",
                 n->id, bt_router_role_word(n->serving),
                 bt_router_role_word(n->moving_to));
        return BT_ERR_EXISTS;
    }
    leaving = (unsigned)n->serving & ~to;
    for (unsigned bit = BT_NODE_ROLE_PREFILL; bit <= BT_NODE_ROLE_DECODE; bit <<= 1) {
        if ((leaving & bit) && !bt_router_role_other(r, n, bit)) {
            snprintf(err, err_size, "node %s is the last node of model '%s' "
                     "that serves %s: moving it to %s would leave none",
                     n->id, n->model, bt_router_role_word(bit),
                     bt_router_role_word(to));
            return BT_ERR_EXHAUSTED;
        }
    }
    if (bt_router_node_set_role(r, n, (bt_node_role_t)to, &id) != BT_OK) {
        *code_p = BT_RPC_UNAVAILABLE;
        snprintf(err, err_size, "cannot reach node %s", n->id);
        return BT_ERR_PEER_UNREACHABLE;
    }
    n->role_cmd_id = id;
    /* no new work of the roles it leaves from now on */
    bt_registry_set_role(n, n->serving, (bt_node_role_t)to);
    if (leaving == 0) {   /* it only gains a role: nothing to finish */
        bt_info("role move: node %s %s -> %s (%s): it keeps its work and "
                "takes %s work too once it announces the move", n->id,
                bt_router_role_word(n->serving), bt_router_role_word(to), why,
                bt_router_role_word(to & ~(unsigned)n->serving));
    } else {
        bt_info("role move: node %s %s -> %s (%s): no new %s work on it; it "
                "finishes %u requests", n->id, bt_router_role_word(n->serving),
                bt_router_role_word(to), why,
                leaving == BT_NODE_ROLE_BOTH ? "prefill or decode"
                : bt_router_role_word(leaving), n->assigned);
    }
    bt_router_event_add(r, n->id, "move-started", n->serving, to, why);
    bt_router_roles_changed(r);
    return BT_OK;
}

void bt_router_role_report(bt_router_t *r, bt_node_t *n, unsigned serving,
                           unsigned moving_to)
{
    unsigned was = n->serving, was_to = n->moving_to;
    char why[64];

    if (!n->flexible || serving < BT_NODE_ROLE_PREFILL ||
        serving > BT_NODE_ROLE_BOTH || moving_to > BT_NODE_ROLE_BOTH) {
        return;
    }
    /* a status the node sent before it saw this router's SET_ROLE: keep
     * the move until the Ack */
    if (moving_to == 0 && n->role_cmd_id != 0 && serving != was_to) {
        moving_to = was_to;
    }
    if (serving == was && moving_to == was_to) {
        return;
    }
    bt_registry_set_role(n, (bt_node_role_t)serving, (bt_node_role_t)moving_to);
    if (serving != was) {
        n->role_since_ms = bt_now_ms();
        bt_counter_inc(r->m.role_moves[serving - 1]);
        bt_info("role move: node %s %s -> %s done: it serves as %s", n->id,
                bt_router_role_word(was), bt_router_role_word(serving),
                bt_router_role_word(serving));
        snprintf(why, sizeof(why), "announced by the node");
        bt_router_event_add(r, n->id, "move-done", was, serving, why);
    } else if (moving_to != 0 && was_to == 0) {
        /* another router (or an operator on it) moves the node */
        bt_info("role move: node %s %s -> %s (asked elsewhere): no new work "
                "of the roles it leaves", n->id, bt_router_role_word(serving),
                bt_router_role_word(moving_to));
        bt_router_event_add(r, n->id, "move-started", serving, moving_to,
                            "another router");
    }
    bt_router_roles_changed(r);
}

void bt_router_role_ack(bt_router_t *r, bt_node_t *n, uint64_t id, bool ok,
                        const char *error)
{
    if (id == 0 || id != n->role_cmd_id) {
        if (!ok) {
            bt_warn("node %s refused command %llu: %s", n->id,
                    (unsigned long long)id, error ? error : "");
        }
        return;
    }
    n->role_cmd_id = 0;
    if (ok) {
        return;   /* its statuses tell the rest */
    }
    bt_warn("role move: node %s refused the move to %s: %s", n->id,
            bt_router_role_word(n->moving_to), error ? error : "");
    bt_router_event_add(r, n->id, "move-refused", n->serving, n->moving_to,
                        error);
    bt_registry_set_role(n, n->serving, 0);
    bt_router_roles_changed(r);
}
