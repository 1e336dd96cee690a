/* MoE expert placement planner (DESIGN §6, docs/internals/placement.md).
 *
 * Given per-layer expert loads, optional cross-layer transitions, a device
 * topology and optionally the plan in force, computes a versioned plan:
 * for each MoE layer, which devices hold a copy of each expert. Every
 * device holds exactly `slots` copies, never two copies of one expert, and
 * every expert has at least one copy. Objective, in this order:
 *   1. balancedness = mean / max device load per layer (an expert's load
 *      is split evenly over its copies);
 *   2. cross-device transitions: tokens routed a (layer l) -> b (layer l+1)
 *      where no device holds both;
 *   3. moved copies: (layer, expert, device) copies not in the current plan.
 * Node-aware mode (n_groups > 0): experts form n_groups consecutive groups;
 * every group gets a home node holding a copy of each of its experts.
 *
 * The algorithm is pure (no I/O, no threads) and deterministic: the same
 * input gives a byte-identical plan.
 */
#ifndef BT_PLACEMENT_H
#define BT_PLACEMENT_H

#include "base/status.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* Upper bounds accepted on input (protect memory and run time). */
#define BT_PLACEMENT_MAX_LAYERS  1024
#define BT_PLACEMENT_MAX_EXPERTS 4096
#define BT_PLACEMENT_MAX_DEVICES 4096

/* Default relative slack on the balance-only max load granted to the
 * second and third objectives (0.1%). */
#define BT_PLACEMENT_DEFAULT_EPSILON 0.001

/* Default move price (see bt_placement_input_t.move_price). */
#define BT_PLACEMENT_DEFAULT_MOVE_PRICE 0.1

typedef struct {
    int32_t  n_layers;
    int32_t  n_experts;
    int32_t  n_devices;
    int32_t  slots;        /* copies per device */
    int32_t  n_nodes;      /* 1 when flat */
    int32_t  n_groups;     /* 0 when flat */
    uint64_t version;      /* 1 from scratch, current's + 1 when re-planned */
    uint8_t *dense;        /* [n_layers] 1: no experts (dense layer), no copies */
    int32_t *slot_expert;  /* [n_layers][n_devices][slots] expert per slot,
                            * ascending within a device; unused for dense */
    int32_t *home;         /* [n_layers][n_groups] home node; NULL when flat */
} bt_placement_plan_t;

typedef struct {
    int32_t       n_layers;
    int32_t       n_experts;
    const double *loads;       /* [n_layers][n_experts] tokens, finite, >= 0;
                                * an all-zero layer is dense (no placement) */
    const double *transitions; /* [n_layers-1][n_experts][n_experts] tokens
                                * routed to a at l and b at l+1; or NULL */
    int32_t       n_devices;
    int32_t       slots;       /* copies per device; n_experts <= n_devices*slots */
    int32_t       n_nodes;     /* devices n*N/K .. (n+1)*N/K-1 form node n; >= 1 */
    int32_t       n_groups;    /* 0: flat; else node-aware, n_experts % n_groups == 0 */
    const bt_placement_plan_t *current; /* plan in force, or NULL; it may
                                * have other device or slot counts, only
                                * its layer and expert counts must match */
    double        epsilon;     /* max-load slack for objectives 2 and 3;
                                * < 0 means BT_PLACEMENT_DEFAULT_EPSILON */
    double        move_price;  /* with transitions and a current plan: the
                                * share of a layer's transition mass that
                                * keeping all its copies is worth; <= 0
                                * means BT_PLACEMENT_DEFAULT_MOVE_PRICE */
} bt_placement_input_t;

typedef struct {
    double  balancedness_mean; /* mean over MoE layers of mean/max load */
    double  balancedness_min;  /* worst MoE layer */
    double  cross_device;      /* transition tokens between devices */
    double  transitions_total; /* all transition tokens between MoE layers */
    int64_t moved;             /* copies absent from the current plan */
    int64_t copies;            /* copies in the plan (MoE layers only) */
    int32_t moe_layers;
} bt_placement_figures_t;

/* BT_OK, or BT_ERR_INVALID_ARG with a one-line reason in `err`. Checks
 * counts, bounds, finiteness, topology and the current plan's shape. */
bt_status_t bt_placement_input_check(const bt_placement_input_t *in,
                                     char *err, size_t err_size);

/* Plans. On success *plan_p is a new plan (bt_placement_plan_destroy). The
 * input is only read and may be freed afterwards. */
bt_status_t bt_placement_plan_create(const bt_placement_input_t *in,
                                     bt_placement_plan_t **plan_p);

/* An empty plan of the given shape (all layers dense); for parsers. */
bt_status_t bt_placement_plan_alloc(int32_t n_layers, int32_t n_experts,
                                    int32_t n_devices, int32_t slots,
                                    int32_t n_groups,
                                    bt_placement_plan_t **plan_p);

void bt_placement_plan_destroy(bt_placement_plan_t *plan);

/* Figures of `plan` against the loads, transitions and current plan of
 * `in` (which must have the plan's layer and expert counts). */
bt_status_t bt_placement_plan_eval(const bt_placement_plan_t *plan,
                                   const bt_placement_input_t *in,
                                   bt_placement_figures_t *figures_p);

/* Checks the plan's invariants for `in`: dense layers match, every device
 * full, no duplicate expert on a device, every expert placed, and in
 * node-aware mode every group complete on its home node. BT_ERR_CORRUPT
 * with a reason in `err` when one fails. */
bt_status_t bt_placement_plan_verify(const bt_placement_plan_t *plan,
                                     const bt_placement_input_t *in,
                                     char *err, size_t err_size);

/* JSON: {"version", "balancedness_mean", "balancedness_min",
 * "cross_device", "moved", "plan": [layer][expert] -> [devices]} and, in
 * node-aware mode, "home": [layer][group] -> node. Dense layers are empty
 * lists. `figures` may be NULL (figure keys left out). NULL on no memory. */
json_t *bt_placement_plan_to_json(const bt_placement_plan_t *plan,
                                  const bt_placement_figures_t *figures);

/* Parses what bt_placement_plan_to_json writes (only "plan" and an
 * optional "version" are read). The layer and expert counts must be
 * n_layers and n_experts; the device count is the highest device named
 * plus one and every device must hold the same number of copies. */
bt_status_t bt_placement_plan_from_json(const json_t *root, int32_t n_layers,
                                        int32_t n_experts,
                                        bt_placement_plan_t **plan_p,
                                        char *err, size_t err_size);

/* {"logical_count": [layers][experts]}: numbers >= 0, rectangular. On
 * success *loads_p is malloc'ed (free it). No I/O: the caller parses the
 * file with a size bound (bt_json_load_file). */
bt_status_t bt_placement_loads_from_json(const json_t *root, double **loads_p,
                                         int32_t *n_layers_p,
                                         int32_t *n_experts_p, char *err,
                                         size_t err_size);

/* {"transitions": [n_layers-1][n_experts][n_experts]}: numbers >= 0. On
 * success *trans_p is malloc'ed (free it). */
bt_status_t bt_placement_transitions_from_json(const json_t *root,
                                               int32_t n_layers,
                                               int32_t n_experts,
                                               double **trans_p, char *err,
                                               size_t err_size);

/* A lower bound on the cross-device transitions of every plan of `in`
 * (which needs transitions), whatever its balance: per pair of MoE layers,
 * a copy of an expert can share its device with at most `slots` experts of
 * the neighbouring layer (bound.c). *total_p gets all transitions between
 * MoE layers, as bt_placement_plan_eval counts them. */
bt_status_t bt_placement_cross_bound(const bt_placement_input_t *in,
                                     double *bound_p, double *total_p);

/* Synthetic routing traces for tests and benchmarks: each of `tokens`
 * tokens picks one expert per layer; at layer 0 from a Zipf(zipf_s)
 * popularity over a per-layer random ranking, and at layer l+1, with
 * probability `correlation`, a fixed partner of its layer-l expert (one
 * of `partners` per-layer random permutations, uniformly), else a fresh
 * popularity draw. */
typedef struct {
    int32_t  n_layers;
    int32_t  n_experts;
    int64_t  tokens;
    double   zipf_s;       /* >= 0; 0 is uniform */
    double   correlation;  /* 0 .. 1 */
    uint64_t seed;
    int32_t  partners;     /* 0 or 1: one partner (the same draws as
                            * before the field existed); at most 16 */
} bt_placement_synth_t;

/* Fills loads [n_layers][n_experts] and, when transitions is not NULL,
 * transitions [n_layers-1][n_experts][n_experts] (caller-allocated).
 * Deterministic from the seed. */
bt_status_t bt_placement_synth_run(const bt_placement_synth_t *cfg,
                                   double *loads, double *transitions);

#endif
