/* A lower bound on the cross-device transitions of ANY plan of an input
 * (docs/internals/placement.md, "A bound"): it tells a planner weakness
 * from a target no placement can meet.
 *
 * Per pair of consecutive MoE layers: a copy of expert a at layer l shares
 * its device with S experts of layer l+1, so a's r_a copies make at most
 * r_a*S of its successors local, at best its r_a*S heaviest: local mass
 * <= sum_a top(r_a*S, row a). Every expert has 1..N copies and a layer N*S
 * in all; the top sums are concave in r_a (rows sorted descending), so
 * handing out the N*S-E extra copies greedily by marginal gain gives the
 * maximum over all replica counts exactly. The same holds column-wise
 * (b's copies meet S experts of layer l each); the smaller of the two
 * bounds the local mass, and the pair's total minus it bounds the cross
 * mass. Load balance, homes and slot sharing between experts of one
 * device are ignored, so the bound is valid for every plan, and loose. */
#include "placement_int.h"

#include "base/log.h"

#include <stdlib.h>
#include <string.h>

static int cmp_desc(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;

    return (a < b) - (a > b);
}

/* Max over replica counts of sum_e top(r_e*S) of the rows of m (E x E,
 * row e at m + e*stride_row, entries stride_col apart). sorted and
 * prefix are [E][E+1] scratch, r [E]. */
static double side_bound(const double *m, size_t stride_row,
                         size_t stride_col, int32_t E, int32_t N, int32_t S,
                         double *prefix, int32_t *r)
{
    size_t ne = (size_t)E, w = ne + 1;
    double local = 0.0;

    for (size_t e = 0; e < ne; e++) {
        double *p = prefix + e * w;

        for (size_t k = 0; k < ne; k++) {
            p[k + 1] = m[e * stride_row + k * stride_col];
        }
        qsort(p + 1, ne, sizeof(double), cmp_desc);
        p[0] = 0.0;
        for (size_t k = 1; k <= ne; k++) {
            p[k] += p[k - 1];
        }
        r[e] = 1;
        local += p[S < E ? S : E];
    }
    for (int64_t extra = (int64_t)N * S - E; extra > 0; extra--) {
        double  best = 0.0;
        int32_t at = -1;

        for (int32_t e = 0; e < E; e++) {
            const double *p = prefix + (size_t)e * w;
            int64_t       have = (int64_t)r[e] * S, more = have + S;
            double        gain;

            if (r[e] >= N || have >= E) {
                continue;
            }
            gain = p[more < E ? more : E] - p[have];
            if (gain > best) {
                best = gain;
                at = e;
            }
        }
        if (at < 0) {
            break; /* nothing left to gain */
        }
        r[at]++;
        local += best;
    }
    return local;
}

static bool dense_layer(const bt_placement_input_t *in, int32_t l)
{
    const double *v = in->loads + (size_t)l * (size_t)in->n_experts;

    for (int32_t e = 0; e < in->n_experts; e++) {
        if (v[e] > 0.0) {
            return false;
        }
    }
    return true;
}

bt_status_t bt_placement_cross_bound(const bt_placement_input_t *in,
                                     double *bound_p, double *total_p)
{
    char     err[160];
    int32_t  E = in->n_experts;
    size_t   ne = (size_t)E, ee = ne * ne;
    double  *prefix;
    int32_t *r;
    double   bound = 0.0, total = 0.0;

    if (bt_placement_input_check(in, err, sizeof(err)) != BT_OK ||
        in->transitions == NULL) {
        bt_error("placement: no bound: %s",
                 in->transitions == NULL ? "no transitions" : err);
        return BT_ERR_INVALID_ARG;
    }
    prefix = malloc(ne * (ne + 1) * sizeof(*prefix));
    r = malloc(ne * sizeof(*r));
    if (prefix == NULL || r == NULL) {
        free(prefix);
        free(r);
        bt_error("placement: out of memory for the bound, experts %d", E);
        return BT_ERR_NO_MEMORY;
    }
    for (int32_t l = 0; l + 1 < in->n_layers; l++) {
        const double *t = in->transitions + (size_t)l * ee;
        double        pair = 0.0, rows, cols;

        if (dense_layer(in, l) || dense_layer(in, l + 1)) {
            continue;
        }
        for (size_t i = 0; i < ee; i++) {
            pair += t[i];
        }
        rows = side_bound(t, ne, 1, E, in->n_devices, in->slots, prefix, r);
        cols = side_bound(t, 1, ne, E, in->n_devices, in->slots, prefix, r);
        total += pair;
        bound += pair - (rows < cols ? rows : cols);
    }
    free(prefix);
    free(r);
    *bound_p = bound > 0.0 ? bound : 0.0;
    *total_p = total;
    return BT_OK;
}
