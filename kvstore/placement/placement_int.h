/* Internals of the placement planner: the per-layer working state and the
 * steps run on it (replica counts, packing, local search). */
#ifndef BT_PLACEMENT_INT_H
#define BT_PLACEMENT_INT_H

#include "placement.h"

#include <stdbool.h>
#include <stdint.h>

/* One layer being packed. Arrays are owned by the state and sized for the
 * plan's N, S and E; bt_pl_layer_reset() empties them between layers. */
typedef struct {
    int32_t  n_devices;     /* N */
    int32_t  slots;         /* S */
    int32_t  n_experts;     /* E */
    int32_t  dev_per_node;  /* N / K */
    double  *w;             /* [E] load of one copy of e */
    int32_t *home_of;       /* [E] home node of e, -1 when flat */
    int32_t *slot;          /* [N][S] expert per slot, -1 free */
    int32_t *fill;          /* [N] used slots */
    double  *load;          /* [N] */
    uint8_t *has;           /* [N][E] */
    int32_t *ncopy;         /* [E] copies placed */
    int32_t *devs;          /* [E][N] devices holding e, first ncopy[e] valid */
    int32_t *home_cnt;      /* [E] copies of e on its home node */

    /* Affinity (objectives 2 and 3); all NULL when unused. */
    const int32_t *prev_slot;  /* [N][prev_slots] layer l-1, -1 free */
    int32_t        prev_slots;
    const uint8_t *prev_has;   /* [N][E] layer l-1 membership */
    const double  *trans;      /* [E][E]: a at l-1 -> b at l */
    /* Forward affinity (refinement sweeps only): layer l+1 as placed. */
    const int32_t *next_slot;  /* [N][next_slots] layer l+1, -1 free */
    int32_t        next_slots;
    const uint8_t *next_has;   /* [N][E] layer l+1 membership */
    const double  *trans_next; /* [E][E]: b at l -> c at l+1 */
    const uint8_t *old_has;    /* [N][E] current plan's layer l */
    double         move_weight;/* affinity of keeping one copy */
    double         aff_eps;    /* smallest affinity change that counts */
} bt_pl_layer_t;

bt_status_t bt_pl_layer_init(bt_pl_layer_t *st, int32_t n_devices,
                             int32_t slots, int32_t n_experts,
                             int32_t n_nodes);
void bt_pl_layer_cleanup(bt_pl_layer_t *st);
void bt_pl_layer_reset(bt_pl_layer_t *st);
void bt_pl_layer_add(bt_pl_layer_t *st, int32_t d, int32_t e);
void bt_pl_layer_remove(bt_pl_layer_t *st, int32_t d, int32_t s);
/* Exchanges the copy in slot s1 of d1 with the copy in slot s2 of d2. */
void bt_pl_layer_swap(bt_pl_layer_t *st, int32_t d1, int32_t s1, int32_t d2,
                      int32_t s2);
double bt_pl_layer_max_load(const bt_pl_layer_t *st);
static inline int32_t bt_pl_node_of(const bt_pl_layer_t *st, int32_t d)
{
    return d / st->dev_per_node;
}
/* Whether moving e's copy from d_from to d_to keeps e on its home node. */
bool bt_pl_layer_home_ok(const bt_pl_layer_t *st, int32_t e, int32_t d_from,
                         int32_t d_to);
/* Affinity e would add on d (T coverage from layer l-1 not already given
 * by e's copies other than on d and `skip_d`, plus the move weight when
 * the current plan held e on d). */
double bt_pl_layer_gain(const bt_pl_layer_t *st, int32_t e, int32_t d,
                        int32_t skip_d);
bool bt_pl_layer_has_affinity(const bt_pl_layer_t *st);

/* Replica counts: r[e] >= 1, sum r = N*S, r[e] <= N. Flat: each extra
 * copy goes to the expert of highest load per copy. Node-aware (home_of
 * not NULL): while a node's home copies per device outweigh the heaviest
 * copy, the extra copy goes to the expert of that node it relieves most. */
void bt_pl_replicas(const double *loads, int32_t n_experts, int32_t n_devices,
                    int32_t slots, int32_t n_nodes, const int32_t *home_of,
                    int32_t *r);

/* Home node per group: heaviest group first to the lightest node with
 * room for it. BT_ERR_INVALID_ARG when the groups cannot fit. */
bt_status_t bt_pl_group_homes(const double *loads, int32_t n_experts,
                              int32_t n_groups, int32_t n_nodes,
                              int32_t node_slots, int32_t *home);

/* A copy to pack: expert and whether it is the expert's home copy. */
typedef struct {
    double  w;     /* load of this copy: the sort key */
    int32_t expert;
    int32_t home;  /* 1: must land on the expert's home node */
} bt_pl_copy_t;

/* qsort order of copies: heaviest first, then expert, home copy first (a
 * total order, so qsort's instability cannot change a plan). */
int bt_pl_copy_cmp(const void *pa, const void *pb);

/* Greedy packing, heaviest copy first. Without affinity, onto the least
 * loaded device that can take it (LPT); with affinity, onto the device of
 * highest gain whose load stays within `cap`, else the least loaded.
 * BT_ERR_EXHAUSTED (not logged) when it corners itself: the caller falls
 * back to bt_pl_fallback() or drops the candidate. */
bt_status_t bt_pl_pack(bt_pl_layer_t *st, const bt_pl_copy_t *copies,
                       int32_t n_copies, double cap, bool use_affinity);

/* Packing that cannot fail (see fallback.c); may change r, sets st->w
 * from the final r, then lowers the max load by swaps. */
bt_status_t bt_pl_fallback(bt_pl_layer_t *st, const double *loads,
                           int32_t *r);

/* Lowers the max load by swaps between the most loaded device and any
 * other; with affinity, stops once under `cap` and prefers swaps that
 * keep affinity. Bounded by max_iters. */
void bt_pl_improve_max(bt_pl_layer_t *st, double cap, bool use_affinity,
                       int64_t max_iters);

/* Total affinity of the layer as it stands: transition tokens from layer
 * l-1 kept on one device plus move_weight per kept copy. */
double bt_pl_layer_score(const bt_pl_layer_t *st);

/* Warm start for re-planning: keeps the current plan's copies (as allowed
 * by the new replica counts r, the slots and the home nodes), then packs
 * the missing copies with affinity under `cap` and repairs the max load.
 * `old_has` must be set in st. */
bt_status_t bt_pl_warm_start(bt_pl_layer_t *st, const int32_t *r,
                             bt_pl_copy_t *scratch, double cap);

/* Swaps that raise affinity while both devices stay within `cap`. */
void bt_pl_improve_affinity(bt_pl_layer_t *st, double cap, int32_t passes);

/* Annealing over the whole plan (anneal.c): `moves` random swaps within
 * a layer (within a node when node-aware), each under caps[l], scored on
 * the transitions to both neighbouring layers plus move_w[l] per copy
 * the current plan had; `unit` sets the starting temperature. Leaves the
 * devices' slots unsorted. */
bt_status_t bt_pl_anneal(const bt_placement_input_t *in,
                         bt_placement_plan_t *plan, const double *caps,
                         const double *move_w, double unit, int64_t moves);

#endif
