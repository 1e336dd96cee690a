/* Packing copies onto devices and the local searches that follow. */
#include "placement_int.h"

#include "base/log.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Relative guard so that float noise never counts as an improvement. */
#define PL_REL_TINY 1e-12

int bt_pl_copy_cmp(const void *pa, const void *pb)
{
    const bt_pl_copy_t *a = pa, *b = pb;

    if (a->w != b->w) {
        return a->w > b->w ? -1 : 1;
    }
    if (a->expert != b->expert) {
        return a->expert < b->expert ? -1 : 1;
    }
    return b->home - a->home;
}

typedef struct {
    int32_t *free_node;    /* [K] free slots per node */
    int32_t *pending_home; /* [K] home copies not yet placed per node */
} pl_reserve_t;

static bool pack_allowed(const bt_pl_layer_t *st, const pl_reserve_t *rs,
                         const bt_pl_copy_t *c, int32_t d)
{
    int32_t e = c->expert, n;

    if (st->fill[d] >= st->slots ||
        st->has[(size_t)d * (size_t)st->n_experts + (size_t)e]) {
        return false;
    }
    if (st->home_of[e] < 0) {
        return true;
    }
    n = bt_pl_node_of(st, d);
    if (c->home) {
        return n == st->home_of[e];
    }
    /* Keep enough free slots on each node for its pending home copies. */
    return rs->free_node[n] - rs->pending_home[n] >= 1;
}

/* Whether a free slot on d may be used by copy c (node reservations). */
static bool slot_usable(const bt_pl_layer_t *st, const pl_reserve_t *rs,
                        const bt_pl_copy_t *c, int32_t d)
{
    int32_t n = bt_pl_node_of(st, d);

    if (st->fill[d] >= st->slots) {
        return false;
    }
    if (st->home_of[c->expert] < 0) {
        return true;
    }
    return rs->free_node[n] - rs->pending_home[n] >= 1 ||
           (c->home && n == st->home_of[c->expert]);
}

/* Whether the chain ending at x may also move f from x to y: f must keep
 * a copy on its home node after every move of the chain that takes one of
 * its copies off it (the chain is walked back through prev/via). */
static bool chain_home_ok(const bt_pl_layer_t *st, const int32_t *prev,
                          const int32_t *via, int32_t f, int32_t x, int32_t y)
{
    int32_t h = st->home_of[f], left;

    if (h < 0 || bt_pl_node_of(st, x) != h || bt_pl_node_of(st, y) == h) {
        return true;
    }
    left = st->home_cnt[f] - 1;
    for (int32_t z = x; prev[z] >= 0; z = prev[z]) {
        int32_t p = prev[z];

        if (st->slot[(size_t)p * (size_t)st->slots + (size_t)via[z]] == f &&
            bt_pl_node_of(st, p) == h && bt_pl_node_of(st, z) != h) {
            left--;
        }
    }
    return left >= 1;
}

/* No device can take e directly (the free slots are on devices that hold
 * e already, or reserved). Breadth-first search for a chain: e goes to x0,
 * which passes one of its copies to x1, ..., until a device with a usable
 * free slot. Returns the device whose free slot was used. */
static bool pack_repair(bt_pl_layer_t *st, const pl_reserve_t *rs,
                        const bt_pl_copy_t *c, int32_t *used_p)
{
    int32_t  n = st->n_devices, e = c->expert, head = 0, tail = 0, end = -1;
    size_t   ne = (size_t)st->n_experts;
    int32_t *prev = malloc((size_t)n * sizeof(*prev));
    int32_t *via = malloc((size_t)n * sizeof(*via));
    int32_t *queue = malloc((size_t)n * sizeof(*queue));
    bool     ok = false;

    if (prev == NULL || via == NULL || queue == NULL) {
        goto out;
    }
    for (int32_t d = 0; d < n; d++) {
        prev[d] = -2;
        if (!st->has[(size_t)d * ne + (size_t)e] &&
            (!c->home || bt_pl_node_of(st, d) == st->home_of[e])) {
            prev[d] = -1;
            queue[tail++] = d;
            if (slot_usable(st, rs, c, d)) {
                end = d;
                break;
            }
        }
    }
    while (end < 0 && head < tail) {
        int32_t x = queue[head++];

        for (int32_t s = 0; s < st->slots && end < 0; s++) {
            int32_t f = st->slot[(size_t)x * (size_t)st->slots + (size_t)s];

            if (f < 0) {
                continue;
            }
            for (int32_t y = 0; y < n && end < 0; y++) {
                if (prev[y] != -2 || st->has[(size_t)y * ne + (size_t)f] ||
                    !chain_home_ok(st, prev, via, f, x, y)) {
                    continue;
                }
                prev[y] = x;
                via[y] = s;
                queue[tail++] = y;
                if (slot_usable(st, rs, c, y)) {
                    end = y;
                }
            }
        }
    }
    if (end < 0) {
        goto out;
    }
    *used_p = end;
    /* Apply from the free end back to x0, then put e on x0. */
    for (int32_t y = end; prev[y] >= 0; y = prev[y]) {
        int32_t x = prev[y];
        int32_t f = st->slot[(size_t)x * (size_t)st->slots + (size_t)via[y]];

        bt_pl_layer_remove(st, x, via[y]);
        bt_pl_layer_add(st, y, f);
    }
    for (int32_t y = end;; y = prev[y]) {
        if (prev[y] == -1) {
            bt_pl_layer_add(st, y, e);
            break;
        }
    }
    ok = true;
out:
    free(prev);
    free(via);
    free(queue);
    return ok;
}

bt_status_t bt_pl_pack(bt_pl_layer_t *st, const bt_pl_copy_t *copies,
                       int32_t n_copies, double cap, bool use_affinity)
{
    int32_t      n_nodes = st->n_devices / st->dev_per_node;
    int32_t      free_node[BT_PLACEMENT_MAX_DEVICES];
    int32_t      pending_home[BT_PLACEMENT_MAX_DEVICES];
    pl_reserve_t rs = { free_node, pending_home };

    /* The state may already hold copies (a warm start from the current
     * plan): count the free slots per node as they are. */
    for (int32_t n = 0; n < n_nodes; n++) {
        free_node[n] = 0;
        pending_home[n] = 0;
    }
    for (int32_t d = 0; d < st->n_devices; d++) {
        free_node[bt_pl_node_of(st, d)] += st->slots - st->fill[d];
    }
    for (int32_t i = 0; i < n_copies; i++) {
        if (copies[i].home) {
            pending_home[st->home_of[copies[i].expert]]++;
        }
    }
    for (int32_t i = 0; i < n_copies; i++) {
        const bt_pl_copy_t *c = &copies[i];
        int32_t e = c->expert, best = -1, least = -1;
        double  best_gain = 0.0, w = st->w[e];

        for (int32_t d = 0; d < st->n_devices; d++) {
            if (!pack_allowed(st, &rs, c, d)) {
                continue;
            }
            if (least < 0 || st->load[d] < st->load[least]) {
                least = d;
            }
            if (use_affinity && st->load[d] + w <= cap) {
                double g = bt_pl_layer_gain(st, e, d, -1);

                if (best < 0 || g > best_gain ||
                    (g == best_gain && st->load[d] < st->load[best])) {
                    best = d;
                    best_gain = g;
                }
            }
        }
        if (best < 0) {
            best = least;
        }
        if (best >= 0) {
            bt_pl_layer_add(st, best, e);
        } else if (!pack_repair(st, &rs, c, &best)) {
            bt_debug("placement: greedy packing cornered at expert %d "
                     "(devices %d slots %d)", e, st->n_devices, st->slots);
            return BT_ERR_EXHAUSTED;
        }
        free_node[bt_pl_node_of(st, best)]--;
        if (c->home) {
            pending_home[st->home_of[e]]--;
        }
    }
    return BT_OK;
}

/* Affinity change of moving x from d1 to d2 and y from d2 to d1. */
static double swap_affinity(const bt_pl_layer_t *st, int32_t x, int32_t d1,
                            int32_t y, int32_t d2)
{
    return bt_pl_layer_gain(st, x, d2, d1) - bt_pl_layer_gain(st, x, d1, d1) +
           bt_pl_layer_gain(st, y, d1, d2) - bt_pl_layer_gain(st, y, d2, d2);
}

static bool swap_ok(const bt_pl_layer_t *st, int32_t x, int32_t d1, int32_t y,
                    int32_t d2)
{
    size_t ne = (size_t)st->n_experts;

    return x != y && !st->has[(size_t)d2 * ne + (size_t)x] &&
           !st->has[(size_t)d1 * ne + (size_t)y] &&
           bt_pl_layer_home_ok(st, x, d1, d2) &&
           bt_pl_layer_home_ok(st, y, d2, d1);
}

void bt_pl_improve_max(bt_pl_layer_t *st, double cap, bool use_affinity,
                       int64_t max_iters)
{
    int32_t n = st->n_devices, s = st->slots;

    for (int64_t it = 0; it < max_iters; it++) {
        int32_t dm = 0, b_s1 = -1, b_d2 = -1, b_s2 = -1;
        double  m, limit, b_key = 0.0, b_aff = 0.0, b_pair = 0.0;

        for (int32_t d = 1; d < n; d++) {
            if (st->load[d] > st->load[dm]) {
                dm = d;
            }
        }
        m = st->load[dm];
        if (use_affinity && m <= cap) {
            return;
        }
        limit = m - PL_REL_TINY * fabs(m);
        for (int32_t s1 = 0; s1 < s; s1++) {
            int32_t x = st->slot[(size_t)dm * (size_t)s + (size_t)s1];
            double  wx = st->w[x];

            for (int32_t d2 = 0; d2 < n; d2++) {
                if (d2 == dm || st->load[d2] >= limit) {
                    continue;
                }
                for (int32_t s2 = 0; s2 < s; s2++) {
                    int32_t y = st->slot[(size_t)d2 * (size_t)s + (size_t)s2];
                    double  wy = st->w[y], n1, n2, pair, key, aff = 0.0;

                    if (wy >= wx) {
                        continue;
                    }
                    n1 = m - wx + wy;
                    n2 = st->load[d2] + wx - wy;
                    if (n1 >= limit || n2 >= limit ||
                        !swap_ok(st, x, dm, y, d2)) {
                        continue;
                    }
                    pair = n1 > n2 ? n1 : n2;
                    key = pair;
                    if (use_affinity) {
                        key = pair > cap ? pair : cap;
                        aff = swap_affinity(st, x, dm, y, d2);
                    }
                    if (b_s1 < 0 || key < b_key ||
                        (key == b_key && (aff > b_aff ||
                                          (aff == b_aff && pair < b_pair)))) {
                        b_s1 = s1;
                        b_d2 = d2;
                        b_s2 = s2;
                        b_key = key;
                        b_aff = aff;
                        b_pair = pair;
                    }
                }
            }
        }
        if (b_s1 < 0) {
            return;
        }
        bt_pl_layer_swap(st, dm, b_s1, b_d2, b_s2);
    }
}

void bt_pl_improve_affinity(bt_pl_layer_t *st, double cap, int32_t passes)
{
    int32_t n = st->n_devices, s = st->slots;

    for (int32_t p = 0; p < passes; p++) {
        bool improved = false;

        for (int32_t d1 = 0; d1 < n; d1++) {
            for (int32_t s1 = 0; s1 < s; s1++) {
                for (int32_t d2 = d1 + 1; d2 < n; d2++) {
                    for (int32_t s2 = 0; s2 < s; s2++) {
                        int32_t x = st->slot[(size_t)d1 * (size_t)s + (size_t)s1];
                        int32_t y = st->slot[(size_t)d2 * (size_t)s + (size_t)s2];
                        double  d = st->w[y] - st->w[x];

                        if (st->load[d1] + d > cap || st->load[d2] - d > cap ||
                            !swap_ok(st, x, d1, y, d2)) {
                            continue;
                        }
                        if (swap_affinity(st, x, d1, y, d2) > st->aff_eps) {
                            bt_pl_layer_swap(st, d1, s1, d2, s2);
                            improved = true;
                        }
                    }
                }
            }
        }
        if (!improved) {
            return;
        }
    }
}
