/* A node's MoE expert placement (docs/internals/placement.md, "On the
 * nodes"): --expert-devices N spreads the experts over N expert devices
 * (engine/model/experts.h). Every --expert-window the node
 *  - reads the routing counters and per-device loads of the window, sets
 *    the metrics (per-device load, balancedness, plan version in force),
 *  - reports the counters to the kvstore (ReportExpertStats) for its
 *    model and role,
 *  - asks the kvstore for a newer plan (GetPlacement) and applies it: the
 *    experts that move are copied on a thread of their own while steps go
 *    on, and the next step runs under the new plan. A plan that does not
 *    fit is refused: the old one stays, the reason is logged and counted.
 * The placement calls go to the first replica of the sorted --kvstore
 * list. Loop thread only. */
#ifndef BT_NODE_EXPERTS_H
#define BT_NODE_EXPERTS_H

#include "base/status.h"
#include "common.pb-c.h"
#include "engine/model/experts.h"
#include "engine/model/model_config.h"

#include <stdint.h>

struct bt_node;
typedef struct bt_node_experts bt_node_experts_t;

/* Sets up the expert devices (node->fwd) and, for a MoE model, the window
 * timer. Nothing for a dense model. Before the first step. */
bt_status_t bt_node_experts_init(struct bt_node *node);
/* Stops the timer and waits for a plan being copied. NULL-safe. */
void bt_node_experts_destroy(struct bt_node *node);
/* The scheduler, on the loop thread, once a step ended and before the next
 * starts: a window that came during the step is read now. NULL-safe for a
 * dense model (node->experts NULL). */
void bt_node_experts_step_end(struct bt_node *node);

/* Turns a kvstore plan into the engine's (cleanup with
 * bt_ep_plan_cleanup); BT_ERR_INVALID_ARG with the reason in err, and
 * `plan` zeroed, when it does not describe this model on n_devices
 * devices (the slot count is checked when it is staged). */
bt_status_t bt_node_experts_from_proto(const Baton__V1__PlacementPlan *pb,
                                       const bt_model_config_t *cfg,
                                       int n_devices, bt_ep_plan_t *plan,
                                       char *err, size_t err_size);

#endif
