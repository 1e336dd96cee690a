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
    return st->trans != NULL || st->trans_next != NULL || st->old_has != NULL;
}

/* Transition mass between e on d and the experts on d in the other
 * layer (`slot`, `n_slots`; `t` is T[x][e] backward, T[e][x] forward),
 * counting only pairs no other copy of e (on neither d nor skip_d)
 * covers already. */
static double side_gain(const bt_pl_layer_t *st, int32_t e, int32_t d,
                        int32_t skip_d, const int32_t *slot, int32_t n_slots,
                        const uint8_t *other_has, const double *t_row,
                        size_t t_stride)
{
    const int32_t *row = slot + (size_t)d * (size_t)n_slots;
    const int32_t *list = st->devs + (size_t)e * (size_t)st->n_devices;
    size_t ne = (size_t)st->n_experts;
    double gain = 0.0;

    for (int32_t s = 0; s < n_slots; s++) {
        int32_t x = row[s];
        double  t;
        bool    covered = false;

        if (x < 0) {
            continue;
        }
        t = t_row[(size_t)x * t_stride];
        if (t <= 0.0) {
            continue;
        }
        for (int32_t i = 0; i < st->ncopy[e] && !covered; i++) {
            int32_t o = list[i];

            covered = o != d && o != skip_d &&
                      other_has[(size_t)o * ne + (size_t)x];
        }
        if (!covered) {
            gain += t;
        }
    }
    return gain;
}

double bt_pl_layer_gain(const bt_pl_layer_t *st, int32_t e, int32_t d,
                        int32_t skip_d)
{
    double gain = 0.0;
    size_t ne = (size_t)st->n_experts;

    if (st->trans != NULL) {
        /* T[a][e] for a on d at l-1: column e, stride E */
        gain += side_gain(st, e, d, skip_d, st->prev_slot, st->prev_slots,
                          st->prev_has, st->trans + (size_t)e, ne);
    }
    if (st->trans_next != NULL) {
        /* T[e][c] for c on d at l+1: row e, stride 1 */
        gain += side_gain(st, e, d, skip_d, st->next_slot, st->next_slots,
                          st->next_has, st->trans_next + (size_t)e * ne, 1);
    }
    if (st->old_has != NULL && st->old_has[(size_t)d * ne + (size_t)e]) {
        gain += st->move_weight;
    }
    return gain;
}

/* Adds to *score the transition mass between each expert b of the layer
 * and the experts x of the other layer that share a device with a copy
 * of b; T of (b, x) is t[x * sx + b * sb]. */
static void side_score(const bt_pl_layer_t *st, const uint8_t *other_has,
                       const double *t, size_t sx, size_t sb, double *score)
{
    size_t ne = (size_t)st->n_experts;

    for (int32_t b = 0; b < st->n_experts; b++) {
        const int32_t *list = st->devs + (size_t)b * (size_t)st->n_devices;

        for (int32_t x = 0; x < st->n_experts; x++) {
            double v = t[(size_t)x * sx + (size_t)b * sb];

            if (v <= 0.0) {
                continue;
            }
            for (int32_t i = 0; i < st->ncopy[b]; i++) {
                if (other_has[(size_t)list[i] * ne + (size_t)x]) {
                    *score += v;
                    break;
                }
            }
        }
    }
}

double bt_pl_layer_score(const bt_pl_layer_t *st)
{
    size_t ne = (size_t)st->n_experts;
    double score = 0.0;

    if (st->trans != NULL) {
        side_score(st, st->prev_has, st->trans, ne, 1, &score);
    }
    if (st->trans_next != NULL) {
        side_score(st, st->next_has, st->trans_next, 1, ne, &score);
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
