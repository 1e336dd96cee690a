/* The planner's driver: validates the input, then plans layer by layer.
 *
 * Per MoE layer: replica counts, a balance-only packing (LPT + swaps) whose
 * max load M sets the cap M*(1+epsilon); then, when transitions from the
 * previous layer or a current plan exist, a second packing that follows
 * affinity under that cap, repaired and improved by swaps. The affinity
 * plan is kept when it stays under the cap, else the balance-only one
 * (improved for affinity under the same cap). With transitions, every
 * layer placed, a refinement sweep swaps each layer's copies for the
 * transitions to both neighbours, then annealing (anneal.c) searches the
 * whole plan; both keep each layer under its cap. */
#include "placement_int.h"

#include "base/log.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PL_AFFINITY_PASSES 3
/* Chosen on the tuned families of baton-placementgen (placement.md,
 * "Generalisation"): a second sweep or more annealing gained < 0.002 of
 * ratio there for 15-30% more time. */
#define PL_REFINE_SWEEPS   1
#define PL_ANNEAL_EFFORT   100  /* swaps tried per copy placed */

static bool values_ok(const double *v, size_t n, size_t *bad_p)
{
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(v[i]) || v[i] < 0.0) {
            *bad_p = i;
            return false;
        }
    }
    return true;
}

bt_status_t bt_placement_input_check(const bt_placement_input_t *in,
                                     char *err, size_t err_size)
{
    const bt_placement_plan_t *cur;
    size_t bad;

#define PL_FAIL(...) do { snprintf(err, err_size, __VA_ARGS__); \
                          return BT_ERR_INVALID_ARG; } while (0)
    if (in == NULL || in->loads == NULL) {
        PL_FAIL("no loads given");
    }
    if (in->n_layers < 1 || in->n_layers > BT_PLACEMENT_MAX_LAYERS) {
        PL_FAIL("layers %d out of range 1..%d", in->n_layers,
                BT_PLACEMENT_MAX_LAYERS);
    }
    if (in->n_experts < 1 || in->n_experts > BT_PLACEMENT_MAX_EXPERTS) {
        PL_FAIL("experts %d out of range 1..%d", in->n_experts,
                BT_PLACEMENT_MAX_EXPERTS);
    }
    if (in->n_devices < 1 || in->n_devices > BT_PLACEMENT_MAX_DEVICES) {
        PL_FAIL("devices %d out of range 1..%d", in->n_devices,
                BT_PLACEMENT_MAX_DEVICES);
    }
    if (in->slots < 1 || in->slots > in->n_experts) {
        PL_FAIL("slots per device %d out of range 1..%d (a device holds at "
                "most one copy of each expert)", in->slots, in->n_experts);
    }
    if ((int64_t)in->n_devices * in->slots < in->n_experts) {
        PL_FAIL("devices %d x slots %d = %lld slots cannot hold %d experts",
                in->n_devices, in->slots,
                (long long)in->n_devices * in->slots, in->n_experts);
    }
    if (in->n_nodes < 1 || in->n_nodes > in->n_devices ||
        in->n_devices % in->n_nodes != 0) {
        PL_FAIL("nodes %d must divide devices %d", in->n_nodes,
                in->n_devices);
    }
    if (in->n_groups < 0 || in->n_groups > in->n_experts ||
        (in->n_groups > 0 && in->n_experts % in->n_groups != 0)) {
        PL_FAIL("groups %d must divide experts %d", in->n_groups,
                in->n_experts);
    }
    if (in->n_groups > 0) {
        int32_t gsize = in->n_experts / in->n_groups;
        int32_t node_slots = in->n_devices / in->n_nodes * in->slots;

        if ((int64_t)in->n_nodes * (node_slots / gsize) < in->n_groups) {
            PL_FAIL("%d groups of %d experts do not fit on %d nodes of %d "
                    "slots", in->n_groups, gsize, in->n_nodes, node_slots);
        }
    }
    if (!isfinite(in->move_price) || in->move_price > 1e6) {
        PL_FAIL("move price %g out of range (at most 1e6)", in->move_price);
    }
    if (!isfinite(in->epsilon) || in->epsilon > 1.0) {
        PL_FAIL("epsilon %g out of range (negative for the default, at "
                "most 1)", in->epsilon);
    }
    if (!values_ok(in->loads, (size_t)in->n_layers * (size_t)in->n_experts,
                   &bad)) {
        PL_FAIL("load of layer %zu expert %zu is %g (must be finite and >= 0)",
                bad / (size_t)in->n_experts, bad % (size_t)in->n_experts,
                in->loads[bad]);
    }
    if (in->transitions != NULL) {
        size_t ee = (size_t)in->n_experts * (size_t)in->n_experts;

        if (!values_ok(in->transitions, (size_t)(in->n_layers - 1) * ee,
                       &bad)) {
            PL_FAIL("transition of layer %zu from expert %zu to %zu is %g "
                    "(must be finite and >= 0)", bad / ee,
                    bad % ee / (size_t)in->n_experts,
                    bad % (size_t)in->n_experts, in->transitions[bad]);
        }
    }
    cur = in->current;
    if (cur != NULL) {
        if (cur->n_layers != in->n_layers || cur->n_experts != in->n_experts) {
            PL_FAIL("current plan has %d layers of %d experts, loads have %d "
                    "of %d", cur->n_layers, cur->n_experts, in->n_layers,
                    in->n_experts);
        }
        if (cur->n_devices < 1 || cur->n_devices > BT_PLACEMENT_MAX_DEVICES ||
            cur->slots < 1 || cur->slots > cur->n_experts) {
            PL_FAIL("current plan has devices %d slots %d", cur->n_devices,
                    cur->slots);
        }
    }
#undef PL_FAIL
    return BT_OK;
}

bt_status_t bt_placement_plan_alloc(int32_t n_layers, int32_t n_experts,
                                    int32_t n_devices, int32_t slots,
                                    int32_t n_groups,
                                    bt_placement_plan_t **plan_p)
{
    bt_placement_plan_t *plan = calloc(1, sizeof(*plan));
    size_t cells = (size_t)n_layers * (size_t)n_devices * (size_t)slots;

    if (plan == NULL) {
        goto err_nomem;
    }
    plan->n_layers = n_layers;
    plan->n_experts = n_experts;
    plan->n_devices = n_devices;
    plan->slots = slots;
    plan->n_nodes = 1;
    plan->n_groups = n_groups;
    plan->version = 1;
    plan->dense = malloc((size_t)n_layers);
    plan->slot_expert = malloc(cells * sizeof(*plan->slot_expert));
    if (plan->dense == NULL || plan->slot_expert == NULL) {
        goto err_free;
    }
    memset(plan->dense, 1, (size_t)n_layers);
    for (size_t i = 0; i < cells; i++) {
        plan->slot_expert[i] = -1;
    }
    if (n_groups > 0) {
        plan->home = calloc((size_t)n_layers * (size_t)n_groups,
                            sizeof(*plan->home));
        if (plan->home == NULL) {
            goto err_free;
        }
    }
    *plan_p = plan;
    return BT_OK;

err_free:
    bt_placement_plan_destroy(plan);
err_nomem:
    bt_error("placement: out of memory for a plan of %d layers %d devices",
             n_layers, n_devices);
    return BT_ERR_NO_MEMORY;
}

void bt_placement_plan_destroy(bt_placement_plan_t *plan)
{
    if (plan == NULL) {
        return;
    }
    free(plan->dense);
    free(plan->slot_expert);
    free(plan->home);
    free(plan);
}

/* Scratch shared by all layers. */
typedef struct {
    bt_pl_layer_t bal;       /* balance-only packing */
    bt_pl_layer_t aff;       /* affinity packing */
    bt_pl_layer_t warm;      /* warm start from the current plan */
    bt_pl_copy_t *pending;   /* [N*S] copies a warm start still packs */
    int32_t      *home_new;  /* [G] homes chosen by load */
    int32_t      *home_old;  /* [G] homes of the current plan */
    int32_t      *warm_home_of; /* [E] */
    int32_t      *warm_r;    /* [E] */
    double       *warm_w;    /* [E] */
    int32_t      *r;         /* [E] */
    int32_t      *home_of;   /* [E] */
    double       *w;         /* [E] */
    bt_pl_copy_t *copies;    /* [N*S] */
    uint8_t      *prev_has;  /* [N][E] */
    uint8_t      *old_has;   /* [N][E] */
    uint8_t      *next_has;  /* [N][E] layer l+1 (refinement) */
    double       *caps;      /* [L] max-load cap per MoE layer */
    double       *move_w;    /* [L] weight of a kept copy, per layer */
    double        move_price;
} pl_scratch_t;

static void scratch_cleanup(pl_scratch_t *sc)
{
    bt_pl_layer_cleanup(&sc->bal);
    bt_pl_layer_cleanup(&sc->aff);
    bt_pl_layer_cleanup(&sc->warm);
    free(sc->pending);
    free(sc->home_new);
    free(sc->home_old);
    free(sc->warm_home_of);
    free(sc->warm_r);
    free(sc->warm_w);
    free(sc->r);
    free(sc->home_of);
    free(sc->w);
    free(sc->copies);
    free(sc->prev_has);
    free(sc->old_has);
    free(sc->next_has);
    free(sc->caps);
    free(sc->move_w);
}

static bt_status_t scratch_init(pl_scratch_t *sc, const bt_placement_input_t *in)
{
    size_t ne = (size_t)in->n_experts, nd = (size_t)in->n_devices;
    bt_status_t status;

    memset(sc, 0, sizeof(*sc));
    status = bt_pl_layer_init(&sc->bal, in->n_devices, in->slots,
                              in->n_experts, in->n_nodes);
    if (status != BT_OK) {
        return status;
    }
    status = bt_pl_layer_init(&sc->aff, in->n_devices, in->slots,
                              in->n_experts, in->n_nodes);
    if (status == BT_OK) {
        status = bt_pl_layer_init(&sc->warm, in->n_devices, in->slots,
                                  in->n_experts, in->n_nodes);
    }
    if (status != BT_OK) {
        scratch_cleanup(sc);
        return status;
    }
    sc->r = calloc(ne, sizeof(*sc->r));
    sc->home_of = calloc(ne, sizeof(*sc->home_of));
    sc->w = calloc(ne, sizeof(*sc->w));
    sc->copies = calloc(nd * (size_t)in->slots, sizeof(*sc->copies));
    sc->pending = calloc(nd * (size_t)in->slots, sizeof(*sc->pending));
    sc->home_new = calloc(ne, sizeof(*sc->home_new));
    sc->home_old = calloc(ne, sizeof(*sc->home_old));
    sc->warm_home_of = calloc(ne, sizeof(*sc->warm_home_of));
    sc->warm_r = calloc(ne, sizeof(*sc->warm_r));
    sc->warm_w = calloc(ne, sizeof(*sc->warm_w));
    sc->prev_has = calloc(nd * ne, 1);
    sc->old_has = calloc(nd * ne, 1);
    sc->next_has = calloc(nd * ne, 1);
    sc->caps = calloc((size_t)in->n_layers, sizeof(*sc->caps));
    sc->move_w = calloc((size_t)in->n_layers, sizeof(*sc->move_w));
    if (!sc->r || !sc->home_of || !sc->w || !sc->copies || !sc->pending ||
        !sc->home_new || !sc->home_old || !sc->warm_home_of || !sc->warm_r ||
        !sc->warm_w || !sc->prev_has || !sc->old_has || !sc->next_has ||
        !sc->caps || !sc->move_w) {
        bt_error("placement: out of memory for scratch experts %d devices %d",
                 in->n_experts, in->n_devices);
        scratch_cleanup(sc);
        return BT_ERR_NO_MEMORY;
    }
    return BT_OK;
}

static void state_setup(bt_pl_layer_t *st, const double *w,
                        const int32_t *home_of)
{
    bt_pl_layer_reset(st);
    memcpy(st->w, w, (size_t)st->n_experts * sizeof(*st->w));
    memcpy(st->home_of, home_of, (size_t)st->n_experts * sizeof(*st->home_of));
    st->prev_slot = NULL;
    st->prev_has = NULL;
    st->trans = NULL;
    st->next_slot = NULL;
    st->next_has = NULL;
    st->trans_next = NULL;
    st->old_has = NULL;
    st->move_weight = 0.0;
    st->aff_eps = 0.0;
}

static int int_cmp(const void *pa, const void *pb)
{
    int32_t a = *(const int32_t *)pa, b = *(const int32_t *)pb;

    return (a > b) - (a < b);
}

/* Writes the chosen state into layer l of the plan, each device sorted;
 * `home` NULL keeps the layer's homes. */
static void plan_store(bt_placement_plan_t *plan, int32_t l,
                       const bt_pl_layer_t *st, const int32_t *home)
{
    if (plan->n_groups > 0 && home != NULL) {
        memcpy(plan->home + (size_t)l * (size_t)plan->n_groups, home,
               (size_t)plan->n_groups * sizeof(*home));
    }
    size_t  ns = (size_t)plan->n_devices * (size_t)plan->slots;
    int32_t *dst = plan->slot_expert + (size_t)l * ns;

    memcpy(dst, st->slot, ns * sizeof(*dst));
    for (int32_t d = 0; d < plan->n_devices; d++) {
        qsort(dst + (size_t)d * (size_t)plan->slots, (size_t)plan->slots,
              sizeof(*dst), int_cmp);
    }
    plan->dense[l] = 0;
}

static void membership(const bt_placement_plan_t *p, int32_t l,
                       int32_t n_devices, uint8_t *has)
{
    size_t ne = (size_t)p->n_experts;
    int32_t nd = p->n_devices < n_devices ? p->n_devices : n_devices;

    memset(has, 0, (size_t)n_devices * ne);
    for (int32_t d = 0; d < nd; d++) {
        const int32_t *row = p->slot_expert +
            ((size_t)l * (size_t)p->n_devices + (size_t)d) * (size_t)p->slots;

        for (int32_t s = 0; s < p->slots; s++) {
            if (row[s] >= 0 && row[s] < p->n_experts) {
                has[(size_t)d * ne + (size_t)row[s]] = 1;
            }
        }
    }
}

/* Backward affinity from `trans` (layer l-1 -> l; NULL: none); the move
 * weight and the smallest affinity change that counts are scaled by
 * `price` (the layer's transitions: trans, or in a refinement of the
 * first MoE layer its forward ones). */
static void set_affinity(bt_pl_layer_t *st, const bt_placement_plan_t *plan,
                         int32_t l, const pl_scratch_t *sc,
                         const double *trans, const double *price,
                         bool have_old)
{
    size_t ee = (size_t)st->n_experts * (size_t)st->n_experts;
    double unit = 1.0, sum = 0.0;

    if (price != NULL) {
        int64_t nz = 0;

        for (size_t i = 0; i < ee; i++) {
            if (price[i] > 0.0) {
                sum += price[i];
                nz++;
            }
        }
        unit = nz > 0 ? sum / (double)nz : 1.0;
    }
    if (trans != NULL) {
        st->prev_slot = plan->slot_expert + (size_t)(l - 1) *
                        (size_t)plan->n_devices * (size_t)plan->slots;
        st->prev_slots = plan->slots;
        st->prev_has = sc->prev_has;
        st->trans = trans;
    }
    if (have_old) {
        st->old_has = sc->old_has;
        /* With transitions, keeping every copy is worth move_price of
         * the layer's transition mass: a strict lexicographic order would
         * reshuffle a whole layer for one token more on a device, and the
         * next layers would follow (their current copies no longer line
         * up), so a re-plan on unchanged input would move almost all. */
        st->move_weight = price != NULL ?
            sc->move_price * sum / ((double)st->n_devices * st->slots) : 1.0;
    }
    st->aff_eps = price != NULL ? 1e-9 * unit : 1e-3;
}

static void consider(bt_pl_layer_t *st, double cap, bt_pl_layer_t **chosen_p,
                     double *best_p)
{
    double score;

    if (bt_pl_layer_max_load(st) > cap) {
        return;
    }
    score = bt_pl_layer_score(st);
    if (score > *best_p) {
        *best_p = score;
        *chosen_p = st;
    }
}

/* Homes of the current plan's layer (sc->old_has): for each group the
 * first node holding all its experts. False when a group has none or the
 * homes would overfill a node. */
static bool old_homes(const bt_placement_input_t *in, pl_scratch_t *sc)
{
    int32_t E = in->n_experts, G = in->n_groups, K = in->n_nodes;
    int32_t gsize = E / G, dpn = in->n_devices / K;
    int32_t node_slots = dpn * in->slots;
    int32_t used[BT_PLACEMENT_MAX_DEVICES] = { 0 };

    for (int32_t g = 0; g < G; g++) {
        int32_t home = -1;

        for (int32_t n = 0; n < K && home < 0; n++) {
            bool all = true;

            for (int32_t e = g * gsize; e < (g + 1) * gsize && all; e++) {
                bool found = false;

                for (int32_t d = n * dpn; d < (n + 1) * dpn && !found; d++) {
                    found = sc->old_has[(size_t)d * (size_t)E + (size_t)e];
                }
                all = found;
            }
            if (all && used[n] + gsize <= node_slots) {
                home = n;
            }
        }
        if (home < 0) {
            return false;
        }
        sc->home_old[g] = home;
        used[home] += gsize;
    }
    return true;
}

/* Weights from replica counts and the sorted list of copies to pack. */
static int32_t build_copies(pl_scratch_t *sc, const double *loads, int32_t E,
                            bool grouped)
{
    int32_t n = 0;

    for (int32_t e = 0; e < E; e++) {
        sc->w[e] = loads[e] / sc->r[e];
        for (int32_t k = 0; k < sc->r[e]; k++) {
            sc->copies[n].w = sc->w[e];
            sc->copies[n].expert = e;
            sc->copies[n].home = grouped && k == 0;
            n++;
        }
    }
    qsort(sc->copies, (size_t)n, sizeof(*sc->copies), bt_pl_copy_cmp);
    return n;
}

static bt_status_t plan_layer(const bt_placement_input_t *in,
                              bt_placement_plan_t *plan, int32_t l,
                              pl_scratch_t *sc, bool prev_moe, double eps)
{
    const double *loads = in->loads + (size_t)l * (size_t)in->n_experts;
    const double *trans = NULL;
    int32_t E = in->n_experts, n_copies = 0;
    int64_t iters = 20 * (int64_t)in->n_devices * in->slots;
    bool    have_old;
    double  m, cap;
    bt_pl_layer_t *chosen = &sc->bal;
    const int32_t *warm_home = sc->home_new;
    bt_status_t status;

    for (int32_t e = 0; e < E; e++) {
        sc->home_of[e] = -1;
    }
    if (in->n_groups > 0) {
        int32_t gsize = E / in->n_groups;

        status = bt_pl_group_homes(loads, E, in->n_groups, in->n_nodes,
                                   in->n_devices / in->n_nodes * in->slots,
                                   sc->home_new);
        if (status != BT_OK) {
            return status;
        }
        for (int32_t e = 0; e < E; e++) {
            sc->home_of[e] = sc->home_new[e / gsize];
        }
    }
    bt_pl_replicas(loads, E, in->n_devices, in->slots, in->n_nodes,
                   in->n_groups > 0 ? sc->home_of : NULL, sc->r);
    n_copies = build_copies(sc, loads, E, in->n_groups > 0);

    state_setup(&sc->bal, sc->w, sc->home_of);
    status = bt_pl_pack(&sc->bal, sc->copies, n_copies, 0.0, false);
    if (status == BT_ERR_EXHAUSTED) {
        status = bt_pl_fallback(&sc->bal, loads, sc->r);
        if (status != BT_OK) {
            return status;
        }
        /* The fallback may have changed replica counts. */
        n_copies = build_copies(sc, loads, E, in->n_groups > 0);
    } else if (status != BT_OK) {
        return status;
    }
    bt_pl_improve_max(&sc->bal, 0.0, false, iters);
    m = bt_pl_layer_max_load(&sc->bal);
    cap = m * (1.0 + eps);
    sc->caps[l] = cap;

    if (in->transitions != NULL && l > 0 && prev_moe) {
        trans = in->transitions + (size_t)(l - 1) * (size_t)E * (size_t)E;
        membership(plan, l - 1, in->n_devices, sc->prev_has);
    }
    have_old = in->current != NULL && !in->current->dense[l];
    if (have_old) {
        membership(in->current, l, in->n_devices, sc->old_has);
    }
    if (trans != NULL || have_old) {
        double best_score;

        /* Candidates under the cap, best affinity wins; the balance-only
         * packing is always one. */
        set_affinity(&sc->bal, plan, l, sc, trans, trans, have_old);
        best_score = bt_pl_layer_score(&sc->bal);
        state_setup(&sc->aff, sc->w, sc->home_of);
        set_affinity(&sc->aff, plan, l, sc, trans, trans, have_old);
        /* A candidate whose greedy corners itself is dropped. */
        status = bt_pl_pack(&sc->aff, sc->copies, n_copies, cap, true);
        if (status == BT_OK) {
            bt_pl_improve_max(&sc->aff, cap, true, iters);
            consider(&sc->aff, cap, &chosen, &best_score);
        } else if (status != BT_ERR_EXHAUSTED) {
            return status;
        }
        if (have_old) {
            /* Keeping the current homes keeps whole groups in place. */
            if (in->n_groups > 0 && old_homes(in, sc)) {
                warm_home = sc->home_old;
                for (int32_t e = 0; e < E; e++) {
                    sc->warm_home_of[e] = warm_home[e / (E / in->n_groups)];
                }
                bt_pl_replicas(loads, E, in->n_devices, in->slots,
                               in->n_nodes, sc->warm_home_of, sc->warm_r);
                for (int32_t e = 0; e < E; e++) {
                    sc->warm_w[e] = loads[e] / sc->warm_r[e];
                }
            } else {
                memcpy(sc->warm_home_of, sc->home_of,
                       (size_t)E * sizeof(*sc->home_of));
                memcpy(sc->warm_r, sc->r, (size_t)E * sizeof(*sc->r));
                memcpy(sc->warm_w, sc->w, (size_t)E * sizeof(*sc->w));
            }
            state_setup(&sc->warm, sc->warm_w, sc->warm_home_of);
            set_affinity(&sc->warm, plan, l, sc, trans, trans, have_old);
            status = bt_pl_warm_start(&sc->warm, sc->warm_r, sc->pending,
                                      cap);
            if (status == BT_OK) {
                consider(&sc->warm, cap, &chosen, &best_score);
            } else if (status != BT_ERR_EXHAUSTED) {
                return status;
            }
        }
        bt_pl_improve_affinity(chosen, cap, PL_AFFINITY_PASSES);
        sc->move_w[l] = chosen->old_has != NULL ? chosen->move_weight : 0.0;
    }
    plan_store(plan, l, chosen, chosen == &sc->warm ? warm_home : sc->home_new);
    return BT_OK;
}

/* A refinement sweep's layer: layer l as placed, improved by swaps under
 * its cap for the transitions from layer l-1 and to layer l+1 as they now
 * stand (the forward pass saw only l-1, so an expert could not yet be
 * placed next to the successors it feeds). Swaps keep replica counts and
 * homes, so the layer's balance and invariants hold. */
static void refine_layer(const bt_placement_input_t *in,
                         bt_placement_plan_t *plan, int32_t l,
                         pl_scratch_t *sc)
{
    int32_t E = in->n_experts, N = plan->n_devices, S = plan->slots;
    size_t  ee = (size_t)E * (size_t)E;
    const double  *loads = in->loads + (size_t)l * (size_t)E;
    const int32_t *row = plan->slot_expert + (size_t)l * (size_t)N * (size_t)S;
    const double  *back = NULL;
    bt_pl_layer_t *st = &sc->aff;
    bool have_old = in->current != NULL && !in->current->dense[l];

    memset(sc->r, 0, (size_t)E * sizeof(*sc->r));
    for (int32_t i = 0; i < N * S; i++) {
        sc->r[row[i]]++;
    }
    for (int32_t e = 0; e < E; e++) {
        sc->w[e] = loads[e] / sc->r[e];
        sc->home_of[e] = plan->n_groups > 0 ?
            plan->home[(size_t)l * (size_t)plan->n_groups +
                       (size_t)(e / (E / plan->n_groups))] : -1;
    }
    state_setup(st, sc->w, sc->home_of);
    for (int32_t d = 0; d < N; d++) {
        for (int32_t s = 0; s < S; s++) {
            bt_pl_layer_add(st, d, row[(size_t)d * (size_t)S + (size_t)s]);
        }
    }
    if (l > 0 && !plan->dense[l - 1]) {
        back = in->transitions + (size_t)(l - 1) * ee;
        membership(plan, l - 1, N, sc->prev_has);
    }
    if (have_old) {
        membership(in->current, l, N, sc->old_has);
    }
    /* the first MoE layer prices moves by its forward transitions */
    set_affinity(st, plan, l, sc, back, back != NULL ? back :
                 in->transitions + (size_t)l * ee, have_old);
    sc->move_w[l] = have_old ? st->move_weight : 0.0;
    st->next_slot = plan->slot_expert + (size_t)(l + 1) * (size_t)N * (size_t)S;
    st->next_slots = S;
    st->next_has = sc->next_has;
    st->trans_next = in->transitions + (size_t)l * ee;
    membership(plan, l + 1, N, sc->next_has);
    bt_pl_improve_affinity(st, sc->caps[l], PL_AFFINITY_PASSES);
    plan_store(plan, l, st, NULL);
}

/* Sweeps over the MoE layers followed by a MoE layer (the last one has
 * no forward transitions: the forward pass already did its best). */
static void refine(const bt_placement_input_t *in, bt_placement_plan_t *plan,
                   pl_scratch_t *sc)
{
    for (int32_t sweep = 0; sweep < PL_REFINE_SWEEPS; sweep++) {
        for (int32_t l = 0; l + 1 < in->n_layers; l++) {
            if (!plan->dense[l] && !plan->dense[l + 1]) {
                refine_layer(in, plan, l, sc);
            }
        }
    }
}

/* The mean of the positive transitions (the scale of one pair's
 * affinity); 0 when there are none. */
static double trans_unit(const bt_placement_input_t *in)
{
    size_t  n = (size_t)(in->n_layers - 1) * (size_t)in->n_experts *
                (size_t)in->n_experts;
    double  sum = 0.0;
    int64_t nz = 0;

    for (size_t i = 0; i < n; i++) {
        if (in->transitions[i] > 0.0) {
            sum += in->transitions[i];
            nz++;
        }
    }
    return nz > 0 ? sum / (double)nz : 0.0;
}

/* The annealing after the sweeps, its budget in proportion to the copies
 * placed; each device's slots sorted again after it. */
static bt_status_t anneal(const bt_placement_input_t *in,
                          bt_placement_plan_t *plan, pl_scratch_t *sc,
                          double unit)
{
    size_t  ns = (size_t)plan->n_devices * (size_t)plan->slots;
    int64_t copies = 0;
    bt_status_t st;

    for (int32_t l = 0; l < in->n_layers; l++) {
        copies += plan->dense[l] ? 0 : (int64_t)ns;
    }
    st = bt_pl_anneal(in, plan, sc->caps, sc->move_w, unit,
                      PL_ANNEAL_EFFORT * copies);
    for (int32_t l = 0; st == BT_OK && l < in->n_layers; l++) {
        int32_t *row = plan->slot_expert + (size_t)l * ns;

        for (int32_t d = 0; !plan->dense[l] && d < plan->n_devices; d++) {
            qsort(row + (size_t)d * (size_t)plan->slots, (size_t)plan->slots,
                  sizeof(*row), int_cmp);
        }
    }
    return st;
}

bt_status_t bt_placement_plan_create(const bt_placement_input_t *in,
                                     bt_placement_plan_t **plan_p)
{
    bt_placement_plan_t *plan = NULL;
    pl_scratch_t sc;
    char         err[256];
    double       eps, unit;
    bool         prev_moe = false;
    bt_status_t  status;

    status = bt_placement_input_check(in, err, sizeof(err));
    if (status != BT_OK) {
        bt_error("placement: %s", err);
        return status;
    }
    eps = in->epsilon < 0.0 ? BT_PLACEMENT_DEFAULT_EPSILON : in->epsilon;
    status = bt_placement_plan_alloc(in->n_layers, in->n_experts,
                                     in->n_devices, in->slots, in->n_groups,
                                     &plan);
    if (status != BT_OK) {
        return status;
    }
    plan->n_nodes = in->n_nodes;
    plan->version = in->current != NULL ? in->current->version + 1 : 1;
    status = scratch_init(&sc, in);
    if (status != BT_OK) {
        goto err_plan;
    }
    sc.move_price = in->move_price > 0.0 ? in->move_price :
                    BT_PLACEMENT_DEFAULT_MOVE_PRICE;
    for (int32_t l = 0; l < in->n_layers; l++) {
        const double *loads = in->loads + (size_t)l * (size_t)in->n_experts;
        double total = 0.0;

        for (int32_t e = 0; e < in->n_experts; e++) {
            total += loads[e];
        }
        if (total <= 0.0) {
            prev_moe = false; /* dense layer: nothing to place */
            continue;
        }
        status = plan_layer(in, plan, l, &sc, prev_moe, eps);
        if (status != BT_OK) {
            goto err_scratch;
        }
        prev_moe = true;
    }
    /* all-zero transitions give nothing to search for */
    unit = in->transitions != NULL ? trans_unit(in) : 0.0;
    if (unit > 0.0) {
        refine(in, plan, &sc);
        status = anneal(in, plan, &sc, unit);
        if (status != BT_OK) {
            goto err_scratch;
        }
    }
    scratch_cleanup(&sc);
    *plan_p = plan;
    return BT_OK;

err_scratch:
    scratch_cleanup(&sc);
err_plan:
    bt_placement_plan_destroy(plan);
    return status;
}
