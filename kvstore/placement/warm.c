/* Warm start for re-planning: keep what the current plan already has in
 * place, then pack only the copies that are missing. */
#include "placement_int.h"

#include <math.h>
#include <stdlib.h>

/* Removes e's copy from its most loaded device. */
static void drop_copy(bt_pl_layer_t *st, int32_t e)
{
    const int32_t *list = st->devs + (size_t)e * (size_t)st->n_devices;
    int32_t        best = list[0];

    for (int32_t i = 1; i < st->ncopy[e]; i++) {
        if (st->load[list[i]] > st->load[best]) {
            best = list[i];
        }
    }
    for (int32_t s = 0; s < st->slots; s++) {
        if (st->slot[(size_t)best * (size_t)st->slots + (size_t)s] == e) {
            bt_pl_layer_remove(st, best, s);
            return;
        }
    }
}

/* Frees slots on node n until its pending home copies fit, evicting
 * copies that are not the last home copy of an expert of n. */
static void make_room(bt_pl_layer_t *st, int32_t n, int32_t pending)
{
    int32_t dpn = st->dev_per_node, free_n = 0;

    for (int32_t d = n * dpn; d < (n + 1) * dpn; d++) {
        free_n += st->slots - st->fill[d];
    }
    while (free_n < pending) {
        int32_t bd = -1, bs = -1;

        for (int32_t d = n * dpn; d < (n + 1) * dpn; d++) {
            for (int32_t s = 0; s < st->slots; s++) {
                int32_t f = st->slot[(size_t)d * (size_t)st->slots + (size_t)s];

                if (f < 0 || (st->home_of[f] == n && st->home_cnt[f] <= 1)) {
                    continue;
                }
                if (bd < 0 || st->load[d] > st->load[bd]) {
                    bd = d;
                    bs = s;
                }
            }
        }
        if (bd < 0) {
            return; /* the input check rules this out */
        }
        bt_pl_layer_remove(st, bd, bs);
        free_n++;
    }
}

bt_status_t bt_pl_warm_start(bt_pl_layer_t *st, const int32_t *r,
                             bt_pl_copy_t *scratch, double cap)
{
    size_t  ne = (size_t)st->n_experts;
    int32_t n_nodes = st->n_devices / st->dev_per_node, n = 0;
    bt_status_t status;

    double  target = 0.0;
    int32_t *keep = malloc(ne * sizeof(*keep));

    if (keep == NULL) {
        return BT_ERR_NO_MEMORY;
    }
    for (int32_t e = 0; e < st->n_experts; e++) {
        target += st->w[e] * r[e];
    }
    target /= st->n_devices;
    for (int32_t d = 0; d < st->n_devices; d++) {
        int32_t k = 0;
        double  load = 0.0;

        for (int32_t e = 0; e < st->n_experts; e++) {
            if (st->old_has[(size_t)d * ne + (size_t)e] && st->ncopy[e] < r[e]) {
                keep[k++] = e;
                load += st->w[e];
            }
        }
        /* Fewer slots than before: drop the copies that bring the device
         * closest to the mean load (they move anyway). */
        while (k > st->slots) {
            int32_t drop = 0;

            for (int32_t i = 1; i < k; i++) {
                if (fabs(load - st->w[keep[i]] - target) <
                    fabs(load - st->w[keep[drop]] - target)) {
                    drop = i;
                }
            }
            load -= st->w[keep[drop]];
            keep[drop] = keep[--k];
        }
        for (int32_t i = 0; i < k; i++) {
            bt_pl_layer_add(st, d, keep[i]);
        }
    }
    free(keep);
    if (st->home_of[0] >= 0) {
        for (int32_t e = 0; e < st->n_experts; e++) {
            if (st->home_cnt[e] == 0 && st->ncopy[e] == r[e]) {
                drop_copy(st, e);
            }
        }
        for (int32_t k = 0; k < n_nodes; k++) {
            int32_t pending = 0;

            for (int32_t e = 0; e < st->n_experts; e++) {
                pending += st->home_of[e] == k && st->home_cnt[e] == 0;
            }
            make_room(st, k, pending);
        }
    }
    for (int32_t e = 0; e < st->n_experts; e++) {
        for (int32_t k = st->ncopy[e]; k < r[e]; k++) {
            scratch[n].w = st->w[e];
            scratch[n].expert = e;
            scratch[n].home = st->home_of[e] >= 0 && st->home_cnt[e] == 0 &&
                              k == st->ncopy[e];
            n++;
        }
    }
    qsort(scratch, (size_t)n, sizeof(*scratch), bt_pl_copy_cmp);
    status = bt_pl_pack(st, scratch, n, cap, true);
    if (status != BT_OK) {
        return status;
    }
    bt_pl_improve_max(st, cap, true, 20 * (int64_t)st->n_devices * st->slots);
    return BT_OK;
}
