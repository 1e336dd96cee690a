/* Figures of a plan (balancedness, cross-device transitions, moves) and
 * the check of its invariants. */
#include "placement_int.h"

#include "base/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const int32_t *layer_row(const bt_placement_plan_t *p, int32_t l,
                                int32_t d)
{
    return p->slot_expert +
           ((size_t)l * (size_t)p->n_devices + (size_t)d) * (size_t)p->slots;
}

static bool layer_is_dense(const bt_placement_input_t *in, int32_t l)
{
    const double *v = in->loads + (size_t)l * (size_t)in->n_experts;

    for (int32_t e = 0; e < in->n_experts; e++) {
        if (v[e] > 0.0) {
            return false;
        }
    }
    return true;
}

/* has[d][e] of layer l (N x E). */
static void layer_has(const bt_placement_plan_t *p, int32_t l, uint8_t *has)
{
    size_t ne = (size_t)p->n_experts;

    memset(has, 0, (size_t)p->n_devices * ne);
    for (int32_t d = 0; d < p->n_devices; d++) {
        const int32_t *row = layer_row(p, l, d);

        for (int32_t s = 0; s < p->slots; s++) {
            if (row[s] >= 0 && row[s] < p->n_experts) {
                has[(size_t)d * ne + (size_t)row[s]] = 1;
            }
        }
    }
}

static double layer_balance(const bt_placement_plan_t *p, int32_t l,
                            const double *loads, int32_t *r, double *dload)
{
    double total = 0.0, max = 0.0;

    memset(r, 0, (size_t)p->n_experts * sizeof(*r));
    for (int32_t d = 0; d < p->n_devices; d++) {
        const int32_t *row = layer_row(p, l, d);

        for (int32_t s = 0; s < p->slots; s++) {
            r[row[s]]++;
        }
    }
    for (int32_t d = 0; d < p->n_devices; d++) {
        const int32_t *row = layer_row(p, l, d);

        dload[d] = 0.0;
        for (int32_t s = 0; s < p->slots; s++) {
            dload[d] += loads[row[s]] / r[row[s]];
        }
        total += dload[d];
        if (dload[d] > max) {
            max = dload[d];
        }
    }
    return max > 0.0 ? total / p->n_devices / max : 1.0;
}

/* Cross-device tokens from layer l to l+1: pairs (a, b) with no device
 * holding both. devs is [E][N] scratch, cnt [E]. */
static double layer_cross(const bt_placement_plan_t *p, int32_t l,
                          const double *trans, const uint8_t *has_next,
                          int32_t *devs, int32_t *cnt, double *total_p)
{
    size_t ne = (size_t)p->n_experts, nd = (size_t)p->n_devices;
    double cross = 0.0, total = 0.0;

    memset(cnt, 0, ne * sizeof(*cnt));
    for (int32_t d = 0; d < p->n_devices; d++) {
        const int32_t *row = layer_row(p, l, d);

        for (int32_t s = 0; s < p->slots; s++) {
            devs[(size_t)row[s] * nd + (size_t)cnt[row[s]]++] = d;
        }
    }
    for (size_t a = 0; a < ne; a++) {
        for (size_t b = 0; b < ne; b++) {
            double t = trans[a * ne + b];
            bool   covered = false;

            if (t <= 0.0) {
                continue;
            }
            total += t;
            for (int32_t i = 0; i < cnt[a] && !covered; i++) {
                covered = has_next[(size_t)devs[a * nd + (size_t)i] * ne + b];
            }
            if (!covered) {
                cross += t;
            }
        }
    }
    *total_p += total;
    return cross;
}

bt_status_t bt_placement_plan_eval(const bt_placement_plan_t *plan,
                                   const bt_placement_input_t *in,
                                   bt_placement_figures_t *figures_p)
{
    bt_placement_figures_t f;
    size_t   ne = (size_t)plan->n_experts, nd = (size_t)plan->n_devices;
    int32_t *r = calloc(ne, sizeof(*r));
    int32_t *devs = calloc(ne * nd, sizeof(*devs));
    double  *dload = calloc(nd, sizeof(*dload));
    uint8_t *has = calloc(nd * ne, 1);
    uint8_t *old = calloc(nd * ne, 1);
    double   sum = 0.0;
    const bt_placement_plan_t *cur = in->current;

    if (!r || !devs || !dload || !has || !old) {
        free(r); free(devs); free(dload); free(has); free(old);
        bt_error("placement: out of memory evaluating a plan");
        return BT_ERR_NO_MEMORY;
    }
    if (in->n_layers != plan->n_layers || in->n_experts != plan->n_experts) {
        free(r); free(devs); free(dload); free(has); free(old);
        bt_error("placement: plan of %d x %d evaluated against input %d x %d",
                 plan->n_layers, plan->n_experts, in->n_layers, in->n_experts);
        return BT_ERR_INVALID_ARG;
    }
    memset(&f, 0, sizeof(f));
    f.balancedness_min = 1.0;
    for (int32_t l = 0; l < plan->n_layers; l++) {
        double b;

        if (plan->dense[l]) {
            continue;
        }
        b = layer_balance(plan, l, in->loads + (size_t)l * ne, r, dload);
        sum += b;
        if (b < f.balancedness_min) {
            f.balancedness_min = b;
        }
        f.moe_layers++;
        f.copies += (int64_t)nd * plan->slots;
        if (in->transitions != NULL && l + 1 < plan->n_layers &&
            !plan->dense[l + 1]) {
            layer_has(plan, l + 1, has);
            f.cross_device += layer_cross(plan, l, in->transitions +
                                          (size_t)l * ne * ne, has, devs, r,
                                          &f.transitions_total);
        }
        if (cur != NULL) {
            bool cur_moe = l < cur->n_layers && !cur->dense[l];

            if (cur_moe) {
                /* The current plan may have other device and slot counts. */
                memset(old, 0, nd * ne);
                for (int32_t d = 0; d < plan->n_devices && d < cur->n_devices;
                     d++) {
                    const int32_t *row = layer_row(cur, l, d);

                    for (int32_t s = 0; s < cur->slots; s++) {
                        if (row[s] >= 0 && row[s] < plan->n_experts) {
                            old[(size_t)d * ne + (size_t)row[s]] = 1;
                        }
                    }
                }
            }
            for (int32_t d = 0; d < plan->n_devices; d++) {
                const int32_t *row = layer_row(plan, l, d);

                for (int32_t s = 0; s < plan->slots; s++) {
                    if (!cur_moe || !old[(size_t)d * ne + (size_t)row[s]]) {
                        f.moved++;
                    }
                }
            }
        }
    }
    f.balancedness_mean = f.moe_layers > 0 ? sum / f.moe_layers : 1.0;
    if (f.moe_layers == 0) {
        f.balancedness_min = 1.0;
    }
    free(r); free(devs); free(dload); free(has); free(old);
    *figures_p = f;
    return BT_OK;
}

bt_status_t bt_placement_plan_verify(const bt_placement_plan_t *plan,
                                     const bt_placement_input_t *in,
                                     char *err, size_t err_size)
{
    size_t   ne = (size_t)in->n_experts;
    int32_t *cnt = calloc(ne, sizeof(*cnt));
    uint8_t *seen = calloc(ne, 1);
    bt_status_t status = BT_ERR_CORRUPT;

#define PL_BAD(...) do { snprintf(err, err_size, __VA_ARGS__); goto out; } while (0)
    if (cnt == NULL || seen == NULL) {
        snprintf(err, err_size, "out of memory");
        status = BT_ERR_NO_MEMORY;
        goto out;
    }
    if (plan->n_layers != in->n_layers || plan->n_experts != in->n_experts ||
        plan->n_devices != in->n_devices || plan->slots != in->slots ||
        plan->n_groups != in->n_groups) {
        PL_BAD("plan shape %d layers %d experts %d devices %d slots %d groups "
               "differs from the input", plan->n_layers, plan->n_experts,
               plan->n_devices, plan->slots, plan->n_groups);
    }
    for (int32_t l = 0; l < plan->n_layers; l++) {
        bool dense = layer_is_dense(in, l);

        if (dense != (plan->dense[l] != 0)) {
            PL_BAD("layer %d: dense in %s only", l, dense ? "input" : "plan");
        }
        if (dense) {
            continue;
        }
        memset(cnt, 0, ne * sizeof(*cnt));
        for (int32_t d = 0; d < plan->n_devices; d++) {
            const int32_t *row = layer_row(plan, l, d);

            memset(seen, 0, ne);
            for (int32_t s = 0; s < plan->slots; s++) {
                if (row[s] < 0 || row[s] >= in->n_experts) {
                    PL_BAD("layer %d device %d slot %d: not full (expert %d)",
                           l, d, s, row[s]);
                }
                if (seen[row[s]]) {
                    PL_BAD("layer %d device %d: two copies of expert %d", l, d,
                           row[s]);
                }
                seen[row[s]] = 1;
                cnt[row[s]]++;
            }
        }
        for (int32_t e = 0; e < in->n_experts; e++) {
            if (cnt[e] == 0) {
                PL_BAD("layer %d: expert %d has no copy", l, e);
            }
        }
        for (int32_t g = 0; g < in->n_groups; g++) {
            int32_t h = plan->home[(size_t)l * (size_t)in->n_groups + (size_t)g];
            int32_t dpn = in->n_devices / in->n_nodes;
            int32_t gsize = in->n_experts / in->n_groups;

            if (h < 0 || h >= in->n_nodes) {
                PL_BAD("layer %d group %d: home node %d out of range", l, g, h);
            }
            memset(seen, 0, ne);
            for (int32_t d = h * dpn; d < (h + 1) * dpn; d++) {
                const int32_t *row = layer_row(plan, l, d);

                for (int32_t s = 0; s < plan->slots; s++) {
                    seen[row[s]] = 1;
                }
            }
            for (int32_t e = g * gsize; e < (g + 1) * gsize; e++) {
                if (!seen[e]) {
                    PL_BAD("layer %d group %d: expert %d missing on home node "
                           "%d", l, g, e, h);
                }
            }
        }
    }
#undef PL_BAD
    status = BT_OK;
out:
    free(cnt);
    free(seen);
    return status;
}
