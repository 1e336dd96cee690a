/* A packing that cannot fail, for inputs where the greedy corners itself
 * (tiny clusters with a few very hot experts). Copies are spread over
 * nodes first (at most one copy of an expert per device of a node), then
 * dealt round-robin within each node: an expert's copies are consecutive
 * in the deal and number at most the node's devices, so they land on
 * distinct devices and every device gets exactly `slots` copies. */
#include "placement_int.h"

#include "base/log.h"

#include <stdlib.h>

bt_status_t bt_pl_fallback(bt_pl_layer_t *st, const double *loads, int32_t *r)
{
    int32_t  E = st->n_experts, dpn = st->dev_per_node;
    int32_t  K = st->n_devices / dpn, dropped = 0;
    int32_t *cnt = calloc((size_t)E * (size_t)K, sizeof(*cnt));
    int32_t *spare = calloc((size_t)K, sizeof(*spare));
    int32_t *order = calloc((size_t)E, sizeof(*order));

    if (cnt == NULL || spare == NULL || order == NULL) {
        free(cnt);
        free(spare);
        free(order);
        bt_error("placement: out of memory in fallback packing");
        return BT_ERR_NO_MEMORY;
    }
    bt_pl_layer_reset(st);
    for (int32_t n = 0; n < K; n++) {
        spare[n] = dpn * st->slots;
    }
    /* Home copies first (flat: no home, every copy is free to go). */
    for (int32_t e = 0; e < E; e++) {
        int32_t h = st->home_of[e];

        order[e] = e;
        if (h >= 0) {
            cnt[(size_t)e * (size_t)K + (size_t)h] = 1;
            spare[h]--;
        }
    }
    /* Experts with most copies first: they are the hardest to spread. */
    for (int32_t i = 1; i < E; i++) {
        for (int32_t j = i; j > 0 && r[order[j]] > r[order[j - 1]]; j--) {
            int32_t t = order[j];

            order[j] = order[j - 1];
            order[j - 1] = t;
        }
    }
    for (int32_t i = 0; i < E; i++) {
        int32_t e = order[i];
        int32_t *c = cnt + (size_t)e * (size_t)K;

        for (int32_t k = st->home_of[e] >= 0 ? 1 : 0; k < r[e]; k++) {
            int32_t best = -1;

            for (int32_t n = 0; n < K; n++) {
                if (spare[n] > 0 && c[n] < dpn &&
                    (best < 0 || spare[n] > spare[best])) {
                    best = n;
                }
            }
            if (best < 0) {
                r[e]--;
                k--;
                dropped++;
                continue;
            }
            c[best]++;
            spare[best]--;
        }
    }
    /* Give dropped copies to experts that still fit: a node with a free
     * slot always has an expert with fewer copies there than devices. */
    for (; dropped > 0; dropped--) {
        int32_t be = -1, bn = -1;

        for (int32_t n = 0; n < K; n++) {
            for (int32_t e = 0; spare[n] > 0 && e < E; e++) {
                if (cnt[(size_t)e * (size_t)K + (size_t)n] < dpn &&
                    (be < 0 || loads[e] / (r[e] + 1) > loads[be] / (r[be] + 1))) {
                    be = e;
                    bn = n;
                }
            }
        }
        if (be < 0) {
            break;
        }
        cnt[(size_t)be * (size_t)K + (size_t)bn]++;
        spare[bn]--;
        r[be]++;
    }
    for (int32_t e = 0; e < E; e++) {
        st->w[e] = loads[e] / r[e];
    }
    for (int32_t n = 0; n < K; n++) {
        int32_t i = 0;

        for (int32_t e = 0; e < E; e++) {
            for (int32_t k = 0; k < cnt[(size_t)e * (size_t)K + (size_t)n];
                 k++, i++) {
                bt_pl_layer_add(st, n * dpn + i % dpn, e);
            }
        }
    }
    free(cnt);
    free(spare);
    free(order);
    bt_pl_improve_max(st, 0.0, false, 20 * (int64_t)st->n_devices * st->slots);
    return BT_OK;
}
