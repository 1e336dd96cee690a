/* --role flexible (docs/internals/node.md "Roles that move"): the process
 * runs both roles' machinery and serves as prefill, decode or both, as the
 * router's SET_ROLE command moves it. A move takes no new work of the roles
 * it leaves (the routers see `moving_to` in the next status, sent at once),
 * finishes what those roles hold, then serves as the new role and says so
 * in a status to every router and in the hello of later registrations. */
#include "node.h"

#include "base/clock.h"
#include "base/log.h"

#include <stdio.h>

const char *bt_node_serves_str(unsigned serves)
{
    return serves == BT_NODE_SERVES_PREFILL ? "prefill"
           : serves == BT_NODE_SERVES_DECODE ? "decode"
           : serves == (BT_NODE_SERVES_PREFILL | BT_NODE_SERVES_DECODE) ? "both"
           : "none";
}

/* What the roles it leaves still hold. */
static uint32_t bt_node_flex_held(const bt_node_t *node)
{
    unsigned leaving = node->serving & ~node->moving_to;

    return ((leaving & BT_NODE_SERVES_PREFILL) ? node->held[0] : 0) +
           ((leaving & BT_NODE_SERVES_DECODE) ? node->held[1] : 0);
}

void bt_node_flex_check(bt_node_t *node)
{
    unsigned from = node->serving;

    if (node->moving_to == 0 || bt_node_flex_held(node) > 0) {
        return;
    }
    node->serving = node->moving_to;
    node->moving_to = 0;
    bt_counter_inc(node->c_role_moves);
    bt_info("role move %s -> %s done in %llu ms: serving as %s",
            bt_node_serves_str(from), bt_node_serves_str(node->serving),
            (unsigned long long)(bt_now_ms() - node->move_started_ms),
            bt_node_serves_str(node->serving));
    if (node->reg != NULL) {
        bt_registrar_set_role(node->reg, (int)node->serving);
        bt_registrar_send_status(node->reg);
    }
}

bt_status_t bt_node_flex_move(bt_node_t *node, unsigned to, char *err,
                              size_t err_size)
{
    if (node->role != BT_NODE_FLEXIBLE) {
        snprintf(err, err_size, "node %s was not started with --role flexible: "
                 "it serves as %s for good", node->node_id,
                 bt_node_serves_str(node->serving));
        return BT_ERR_UNSUPPORTED;
    }
    if (to < BT_NODE_SERVES_PREFILL ||
        to > (BT_NODE_SERVES_PREFILL | BT_NODE_SERVES_DECODE)) {
        snprintf(err, err_size, "role %u is not prefill, decode or both", to);
        return BT_ERR_INVALID_ARG;
    }
    if (node->draining) {
        snprintf(err, err_size, "node %s is draining", node->node_id);
        return BT_ERR_SHUTDOWN;
    }
    if (node->moving_to == to || (node->moving_to == 0 && node->serving == to)) {
        return BT_OK;   /* asked again (another router, a retry) */
    }
    if (node->moving_to != 0) {
        snprintf(err, err_size, "node %s is moving from %s to %s already",
                 node->node_id, bt_node_serves_str(node->serving),
                 bt_node_serves_str(node->moving_to));
        return BT_ERR_EXISTS;
    }
    node->moving_to = to;
    node->move_started_ms = bt_now_ms();
    bt_info("role move %s -> %s: finishing %u prefills and %u decode streams "
            "of the roles it leaves", bt_node_serves_str(node->serving),
            bt_node_serves_str(to),
            (node->serving & ~to & BT_NODE_SERVES_PREFILL) ? node->held[0] : 0,
            (node->serving & ~to & BT_NODE_SERVES_DECODE) ? node->held[1] : 0);
    if (node->reg != NULL) {
        bt_registrar_send_status(node->reg);
    }
    bt_node_flex_check(node);
    return BT_OK;
}

void bt_node_flex_call(bt_node_t *node, unsigned role)
{
    if (node->role == BT_NODE_FLEXIBLE && !(node->serving & role)) {
        bt_counter_inc(node->c_role_late);
    }
}
