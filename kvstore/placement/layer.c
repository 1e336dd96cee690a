/* The per-layer working state: slots, loads, membership and the
 * affinity (transition coverage and kept copies) of a candidate copy. */
#include "placement_int.h"

#include "base/log.h"

#include <stdlib.h>
#include <string.h>

bt_status_t bt_pl_layer_init(bt_pl_layer_t *st, int32_t n_devices,
                             int32_t slots, int32_t n_experts,
                             int32_t n_nodes)
{
    size_t n = (size_t)n_devices, s = (size_t)slots, e = (size_t)n_experts;

    memset(st, 0, sizeof(*st));
    st->n_devices    = n_devices;
    st->slots        = slots;
    st->n_experts    = n_experts;
    st->dev_per_node = n_devices / (n_nodes > 0 ? n_nodes : 1);
    st->w        = calloc(e, sizeof(*st->w));
    st->home_of  = calloc(e, sizeof(*st->home_of));
    st->slot     = calloc(n * s, sizeof(*st->slot));
    st->fill     = calloc(n, sizeof(*st->fill));
    st->load     = calloc(n, sizeof(*st->load));
    st->has      = calloc(n * e, sizeof(*st->has));
    st->ncopy    = calloc(e, sizeof(*st->ncopy));
    st->devs     = calloc(e * n, sizeof(*st->devs));
    st->home_cnt = calloc(e, sizeof(*st->home_cnt));
    if (!st->w || !st->home_of || !st->slot || !st->fill || !st->load ||
        !st->has || !st->ncopy || !st->devs || !st->home_cnt) {
        bt_error("placement: out of memory for layer state devices %d "
                 "experts %d", n_devices, n_experts);
        bt_pl_layer_cleanup(st);
        return BT_ERR_NO_MEMORY;
    }
    bt_pl_layer_reset(st);
    return BT_OK;
}

void bt_pl_layer_cleanup(bt_pl_layer_t *st)
{
    if (st == NULL) {
        return;
    }
    free(st->w);
    free(st->home_of);
    free(st->slot);
    free(st->fill);
    free(st->load);
    free(st->has);
    free(st->ncopy);
    free(st->devs);
    free(st->home_cnt);
    memset(st, 0, sizeof(*st));
}

void bt_pl_layer_reset(bt_pl_layer_t *st)
{
    size_t n = (size_t)st->n_devices, e = (size_t)st->n_experts;

    for (size_t i = 0; i < n * (size_t)st->slots; i++) {
        st->slot[i] = -1;
    }
    memset(st->fill, 0, n * sizeof(*st->fill));
    memset(st->load, 0, n * sizeof(*st->load));
    memset(st->has, 0, n * e);
    memset(st->ncopy, 0, e * sizeof(*st->ncopy));
    memset(st->home_cnt, 0, e * sizeof(*st->home_cnt));
}

static void devs_add(bt_pl_layer_t *st, int32_t e, int32_t d)
{
    st->devs[(size_t)e * (size_t)st->n_devices + (size_t)st->ncopy[e]] = d;
    st->ncopy[e]++;
    if (st->home_of[e] >= 0 && bt_pl_node_of(st, d) == st->home_of[e]) {
        st->home_cnt[e]++;
    }
}

static void devs_del(bt_pl_layer_t *st, int32_t e, int32_t d)
{
    int32_t *list = st->devs + (size_t)e * (size_t)st->n_devices;

    for (int32_t i = 0; i < st->ncopy[e]; i++) {
        if (list[i] == d) {
            list[i] = list[st->ncopy[e] - 1];
            st->ncopy[e]--;
            break;
        }
    }
    if (st->home_of[e] >= 0 && bt_pl_node_of(st, d) == st->home_of[e]) {
        st->home_cnt[e]--;
    }
}

void bt_pl_layer_add(bt_pl_layer_t *st, int32_t d, int32_t e)
{
    int32_t *row = st->slot + (size_t)d * (size_t)st->slots;

    for (int32_t s = 0; s < st->slots; s++) {
        if (row[s] < 0) {
            row[s] = e;
            break;
        }
    }
    st->fill[d]++;
    st->load[d] += st->w[e];
    st->has[(size_t)d * (size_t)st->n_experts + (size_t)e] = 1;
    devs_add(st, e, d);
}

void bt_pl_layer_remove(bt_pl_layer_t *st, int32_t d, int32_t s)
{
    int32_t e = st->slot[(size_t)d * (size_t)st->slots + (size_t)s];

    st->slot[(size_t)d * (size_t)st->slots + (size_t)s] = -1;
    st->fill[d]--;
    st->load[d] -= st->w[e];
    st->has[(size_t)d * (size_t)st->n_experts + (size_t)e] = 0;
    devs_del(st, e, d);
}

void bt_pl_layer_swap(bt_pl_layer_t *st, int32_t d1, int32_t s1, int32_t d2,
                      int32_t s2)
{
    size_t  i1 = (size_t)d1 * (size_t)st->slots + (size_t)s1;
    size_t  i2 = (size_t)d2 * (size_t)st->slots + (size_t)s2;
    int32_t e1 = st->slot[i1], e2 = st->slot[i2];
    size_t  ne = (size_t)st->n_experts;

    st->slot[i1] = e2;
    st->slot[i2] = e1;
    st->load[d1] += st->w[e2] - st->w[e1];
    st->load[d2] += st->w[e1] - st->w[e2];
    st->has[(size_t)d1 * ne + (size_t)e1] = 0;
    st->has[(size_t)d2 * ne + (size_t)e2] = 0;
    st->has[(size_t)d1 * ne + (size_t)e2] = 1;
    st->has[(size_t)d2 * ne + (size_t)e1] = 1;
    devs_del(st, e1, d1);
    devs_add(st, e1, d2);
    devs_del(st, e2, d2);
    devs_add(st, e2, d1);
}

double bt_pl_layer_max_load(const bt_pl_layer_t *st)
{
    double m = st->load[0];

    for (int32_t d = 1; d < st->n_devices; d++) {
        if (st->load[d] > m) {
            m = st->load[d];
        }
    }
    return m;
}

bool bt_pl_layer_home_ok(const bt_pl_layer_t *st, int32_t e, int32_t d_from,
                         int32_t d_to)
{
    int32_t h = st->home_of[e];

    if (h < 0 || bt_pl_node_of(st, d_from) != h ||
        bt_pl_node_of(st, d_to) == h) {
        return true;
    }
    return st->home_cnt[e] > 1;
}

bool bt_pl_layer_has_affinity(const bt_pl_layer_t *st)
{
    return st->trans != NULL || st->old_has != NULL;
}

double bt_pl_layer_gain(const bt_pl_layer_t *st, int32_t e, int32_t d,
                        int32_t skip_d)
{
    double gain = 0.0;
    size_t ne = (size_t)st->n_experts;

    if (st->trans != NULL) {
        const int32_t *prev = st->prev_slot + (size_t)d * (size_t)st->prev_slots;
        const int32_t *list = st->devs + (size_t)e * (size_t)st->n_devices;

        for (int32_t s = 0; s < st->prev_slots; s++) {
            int32_t a = prev[s];
            double  t;
            bool    covered = false;

            if (a < 0) {
                continue;
            }
            t = st->trans[(size_t)a * ne + (size_t)e];
            if (t <= 0.0) {
                continue;
            }
            for (int32_t i = 0; i < st->ncopy[e] && !covered; i++) {
                int32_t o = list[i];

                covered = o != d && o != skip_d &&
                          st->prev_has[(size_t)o * ne + (size_t)a];
            }
            if (!covered) {
                gain += t;
            }
        }
    }
    if (st->old_has != NULL && st->old_has[(size_t)d * ne + (size_t)e]) {
        gain += st->move_weight;
    }
    return gain;
}

double bt_pl_layer_score(const bt_pl_layer_t *st)
{
    size_t ne = (size_t)st->n_experts;
    double score = 0.0;

    if (st->trans != NULL) {
        for (int32_t b = 0; b < st->n_experts; b++) {
            const int32_t *list = st->devs + (size_t)b * (size_t)st->n_devices;

            for (int32_t a = 0; a < st->n_experts; a++) {
                double t = st->trans[(size_t)a * ne + (size_t)b];

                if (t <= 0.0) {
                    continue;
                }
                for (int32_t i = 0; i < st->ncopy[b]; i++) {
                    if (st->prev_has[(size_t)list[i] * ne + (size_t)a]) {
                        score += t;
                        break;
                    }
                }
            }
        }
    }
    if (st->old_has != NULL) {
        for (int32_t d = 0; d < st->n_devices; d++) {
            for (int32_t s = 0; s < st->slots; s++) {
                int32_t e = st->slot[(size_t)d * (size_t)st->slots + (size_t)s];

                if (e >= 0 && st->old_has[(size_t)d * ne + (size_t)e]) {
                    score += st->move_weight;
                }
            }
        }
    }
    return score;
}
