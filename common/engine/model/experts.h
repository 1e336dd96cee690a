/* Expert parallelism inside a node: a MoE model's experts spread over N
 * expert devices following a placement plan (docs/internals/engine.md,
 * "Expert devices"; the node side of docs/internals/placement.md).
 *
 * On CPU a device is a group of worker threads (its own backend context)
 * with its own copy of the experts placed on it. Each expert of each MoE
 * layer lives on one or more devices (replicas split its tokens), at most
 * `slots` experts per device and layer. A layer step dispatches every
 * (token, top-k slot) row to one device holding its expert; the devices
 * run at once and write each row's output to the row's own place, and the
 * forward pass combines the rows in slot order as on one device. A row's
 * output depends only on its input and the expert's weights (the same
 * bits on every device; kernels are batch-invariant, backend.h), so the
 * results are bit-identical whatever the plan, the device count and the
 * replica picked.
 *
 * A new plan is staged (the experts it moves are copied, on any thread,
 * while steps go on) and switched to at the next step boundary
 * (bt_ep_commit, called by the forward pass before a step's first layer):
 * no step runs with half a plan, and staging never holds up a step. */
#ifndef BT_ENGINE_EXPERTS_H
#define BT_ENGINE_EXPERTS_H

#include "backend.h"
#include "base/status.h"
#include "model.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BT_EP_MAX_DEVICES 32

/* Where each expert lives. where[l * n_experts + e] has bit d set when
 * device d holds a copy of expert e of layer l; 0 on dense layers. */
typedef struct {
    int       n_layers;
    int       n_experts;
    int       n_devices;
    uint64_t  version;     /* 0: the built-in round-robin plan */
    uint32_t *where;       /* [n_layers][n_experts], owned */
} bt_ep_plan_t;

/* An all-zero plan of that shape. */
bt_status_t bt_ep_plan_init(bt_ep_plan_t *p, int n_layers, int n_experts,
                            int n_devices);
void bt_ep_plan_cleanup(bt_ep_plan_t *p);    /* NULL-safe */
/* Expert e of every MoE layer on device e mod n_devices (version 0). */
void bt_ep_plan_round_robin(const bt_model_config_t *c, bt_ep_plan_t *p);
/* Slots per device and layer when the caller asks none: room for an even
 * share of the experts and one replica. */
int bt_ep_default_slots(int n_experts, int n_devices);
/* BT_ERR_INVALID_ARG with the reason in err (a sentence naming the layer
 * and expert or device) unless `p` fits the model, n_devices and slots:
 * every expert of a MoE layer on >= 1 device, none on a dense layer,
 * no device over `slots` experts in a layer. */
bt_status_t bt_ep_plan_check(const bt_model_config_t *c, int n_devices,
                             int slots, const bt_ep_plan_t *p, char *err,
                             size_t err_size);

typedef struct bt_ep bt_ep_t;

/* n_devices in [1, BT_EP_MAX_DEVICES], each with `threads_per_device`
 * backend threads; slots <= 0: bt_ep_default_slots. Starts under the
 * round-robin plan (its experts copied). `model` must outlive the ep. */
bt_status_t bt_ep_create(const bt_model_t *model, const bt_backend_ops_t *ops,
                         int n_devices, int threads_per_device, int slots,
                         bt_ep_t **ep_p);
void bt_ep_destroy(bt_ep_t *ep);             /* NULL-safe */
int bt_ep_devices(const bt_ep_t *ep);
int bt_ep_slots(const bt_ep_t *ep);

/* Checks `plan`, copies the experts it places on a device that does not
 * hold them yet, and leaves it staged for the next step boundary. Any
 * thread, concurrently with steps. moved_p (may be NULL): copies made.
 * BT_ERR_EXISTS while another plan is staged or being staged;
 * BT_ERR_INVALID_ARG (err says why) for a plan that does not fit;
 * BT_ERR_NO_MEMORY. On any error the plan in force stays, untouched. */
bt_status_t bt_ep_stage(bt_ep_t *ep, const bt_ep_plan_t *plan, int *moved_p,
                        char *err, size_t err_size);
/* The stepping thread, between steps (or any thread while no step runs
 * and none can start): switches to a staged plan and frees the copies it
 * no longer uses. True when it switched. */
bool bt_ep_commit(bt_ep_t *ep);
/* True while a plan is being staged or staged and not yet in force. */
bool bt_ep_busy(bt_ep_t *ep);
/* Version of the plan in force; of the staged one, 0 when none. */
uint64_t bt_ep_version(bt_ep_t *ep);
uint64_t bt_ep_staged_version(bt_ep_t *ep);
/* A copy of the plan in force (cleanup with bt_ep_plan_cleanup). */
bt_status_t bt_ep_plan_get(bt_ep_t *ep, bt_ep_plan_t *out);

/* Scratch for steps of up to `rows` (token, slot) rows; before the step
 * writes anything. */
bt_status_t bt_ep_reserve(bt_ep_t *ep, int rows);
/* One MoE layer's experts: sel[T][K] experts chosen per token, xn[T][H]
 * their inputs; fills slot_out[T][K][H] (row t*K + j: expert sel[t*K+j]
 * applied to token t). Stepping thread, after bt_ep_reserve(T * K). */
void bt_ep_layer(bt_ep_t *ep, int layer, int T, int K, const int *sel,
                 const float *xn, float *slot_out);

/* Rows each device computed since the last reset, and balancedness over
 * them: the mean over MoE layers with rows of (mean device load / max
 * device load), 1 with no rows. Any thread. */
typedef struct {
    int      n_devices;
    uint64_t rows[BT_EP_MAX_DEVICES];
    double   balancedness;
} bt_ep_load_t;
void bt_ep_load(bt_ep_t *ep, bool reset, bt_ep_load_t *out);

#endif
