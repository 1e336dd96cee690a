/* EPLB-style baseline; see eplb_ref.h. */
#include "eplb_ref.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define BT_EPLB_MAX_NODES 4096

typedef struct {
    double  w;
    int32_t id;
} item_t;

static int item_cmp(const void *pa, const void *pb)
{
    const item_t *a = pa, *b = pb;

    if (a->w != b->w) {
        return a->w > b->w ? -1 : 1;
    }
    return (a->id > b->id) - (a->id < b->id);
}

/* Balanced packing: items heaviest first onto the lightest pack with room
 * (each pack takes `per_pack` items); pack loads summed into pack_load. */
static void balanced_pack(item_t *items, int32_t n_items, int32_t n_packs,
                          int32_t per_pack, double *pack_load, int32_t *owner)
{
    int32_t *cnt = calloc((size_t)n_packs, sizeof(*cnt));

    qsort(items, (size_t)n_items, sizeof(*items), item_cmp);
    for (int32_t p = 0; p < n_packs; p++) {
        pack_load[p] = 0.0;
    }
    for (int32_t i = 0; i < n_items; i++) {
        int32_t best = -1;

        for (int32_t p = 0; p < n_packs; p++) {
            if (cnt[p] < per_pack &&
                (best < 0 || pack_load[p] < pack_load[best])) {
                best = p;
            }
        }
        pack_load[best] += items[i].w;
        cnt[best]++;
        if (owner != NULL) {
            owner[items[i].id] = best;
        }
    }
    free(cnt);
}

/* Replicates `n` experts (loads w) into n_phy replicas; appends the
 * replicas to items as (load per replica, expert). */
static int32_t replicate(const double *w, const int32_t *ids, int32_t n,
                         int32_t n_phy, item_t *items)
{
    int32_t *r = calloc((size_t)n, sizeof(*r));
    int32_t  k = 0;

    for (int32_t i = 0; i < n; i++) {
        r[i] = 1;
    }
    for (int32_t x = n; x < n_phy; x++) {
        int32_t best = 0;

        for (int32_t i = 1; i < n; i++) {
            if (w[ids[i]] / r[i] > w[ids[best]] / r[best]) {
                best = i;
            }
        }
        r[best]++;
    }
    for (int32_t i = 0; i < n; i++) {
        for (int32_t j = 0; j < r[i]; j++) {
            items[k].w = w[ids[i]] / r[i];
            items[k].id = k;
            k++;
        }
    }
    free(r);
    return k;
}

static double balance_of(const double *dev_load, int32_t n)
{
    double total = 0.0, max = 0.0;

    for (int32_t d = 0; d < n; d++) {
        total += dev_load[d];
        if (dev_load[d] > max) {
            max = dev_load[d];
        }
    }
    return max > 0.0 ? total / n / max : 1.0;
}

int bt_eplb_ref_run(const double *loads, int32_t n_layers, int32_t n_experts,
                    int32_t n_devices, int32_t slots, int32_t n_nodes,
                    int32_t n_groups, bt_eplb_ref_result_t *res)
{
    int32_t n_phy = n_devices * slots;
    bool    hier = n_groups > 0 && n_nodes > 1;
    item_t *items = calloc((size_t)n_phy + (size_t)n_experts, sizeof(*items));
    int32_t *ids = calloc((size_t)n_experts, sizeof(*ids));
    int32_t *owner = calloc((size_t)n_experts, sizeof(*owner));
    double  *dev_load = calloc((size_t)n_devices, sizeof(*dev_load));
    double   sum = 0.0, min = 1.0;
    int32_t  moe = 0;

    if (!items || !ids || !owner || !dev_load ||
        (hier && (n_groups % n_nodes != 0 || n_experts % n_groups != 0 ||
                  n_devices % n_nodes != 0))) {
        free(items); free(ids); free(owner); free(dev_load);
        return -1;
    }
    for (int32_t l = 0; l < n_layers; l++) {
        const double *w = loads + (size_t)l * (size_t)n_experts;
        double total = 0.0, b;

        for (int32_t e = 0; e < n_experts; e++) {
            total += w[e];
        }
        if (total <= 0.0) {
            continue;
        }
        if (!hier) {
            for (int32_t e = 0; e < n_experts; e++) {
                ids[e] = e;
            }
            replicate(w, ids, n_experts, n_phy, items);
            balanced_pack(items, n_phy, n_devices, slots, dev_load, NULL);
        } else {
            int32_t gsize = n_experts / n_groups, dpn = n_devices / n_nodes;
            double  node_load[BT_EPLB_MAX_NODES];

            for (int32_t g = 0; g < n_groups; g++) {
                items[g].w = 0.0;
                items[g].id = g;
                for (int32_t i = 0; i < gsize; i++) {
                    items[g].w += w[g * gsize + i];
                }
            }
            balanced_pack(items, n_groups, n_nodes, n_groups / n_nodes,
                          node_load, owner);
            for (int32_t n = 0; n < n_nodes; n++) {
                int32_t k = 0, nr;

                for (int32_t g = 0; g < n_groups; g++) {
                    for (int32_t i = 0; owner[g] == n && i < gsize; i++) {
                        ids[k++] = g * gsize + i;
                    }
                }
                nr = replicate(w, ids, k, dpn * slots, items);
                balanced_pack(items, nr, dpn, slots, dev_load + n * dpn, NULL);
            }
        }
        b = balance_of(dev_load, n_devices);
        sum += b;
        if (b < min) {
            min = b;
        }
        moe++;
    }
    res->mean = moe > 0 ? sum / moe : 1.0;
    res->min = min;
    free(items); free(ids); free(owner); free(dev_load);
    return 0;
}
