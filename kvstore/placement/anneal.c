/* Annealing over the whole plan (objectives 2 and 3 after the per-layer
 * passes): random swaps of two copies of one layer between two devices,
 * each under the layer's max-load cap, scored exactly against both
 * neighbouring layers. The greedy passes see a layer against the one
 * before it, and their swaps stop at the first local optimum; with weak
 * or spread affinity (each expert followed by several partners) that
 * optimum is poor, and accepting some worse swaps early finds clusters
 * of experts that feed each other across layers. Deterministic: the
 * random stream is splitmix64 from a fixed seed. */
#include "placement_int.h"

#include "base/log.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const bt_placement_input_t *in;
    bt_placement_plan_t        *plan;
    const double               *caps;      /* [L] */
    const double               *move_w;    /* [L] weight of a kept copy */
    int32_t   L, E, N, S, dpn;
    uint16_t *cnt;     /* [L-1][E][E] devices holding a at l and b at l+1 */
    uint8_t  *has;     /* [L][N][E] */
    uint8_t  *old;     /* [L][N][E] the current plan's; NULL without */
    double   *w;       /* [L][E] load of one copy */
    double   *load;    /* [L][N] */
    uint64_t  rng;
} pl_anneal_t;

static uint64_t an_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static int32_t *an_row(const pl_anneal_t *an, int32_t l, int32_t d)
{
    return an->plan->slot_expert +
           ((size_t)l * (size_t)an->N + (size_t)d) * (size_t)an->S;
}

/* Whether layers l and l+1 are both placed (their transitions count). */
static bool an_pair(const pl_anneal_t *an, int32_t l)
{
    return l >= 0 && l + 1 < an->L && !an->plan->dense[l] &&
           !an->plan->dense[l + 1];
}

/* cnt[a][b] += step for a on d at l, b = e (backward) ... and the mass
 * of pairs that became covered (+) or uncovered (-). */
static double an_shift(pl_anneal_t *an, int32_t l, int32_t d, int32_t e,
                       int step)
{
    size_t  ee = (size_t)an->E * (size_t)an->E;
    double  delta = 0.0;

    if (an_pair(an, l - 1)) {
        const int32_t *prev = an_row(an, l - 1, d);
        const double  *t = an->in->transitions + (size_t)(l - 1) * ee;
        uint16_t      *c = an->cnt + (size_t)(l - 1) * ee;

        for (int32_t s = 0; s < an->S; s++) {
            size_t i = (size_t)prev[s] * (size_t)an->E + (size_t)e;

            c[i] = (uint16_t)(c[i] + step);
            if (c[i] == (step > 0 ? 1 : 0)) {
                delta += step * t[i];
            }
        }
    }
    if (an_pair(an, l)) {
        const int32_t *next = an_row(an, l + 1, d);
        const double  *t = an->in->transitions + (size_t)l * ee;
        uint16_t      *c = an->cnt + (size_t)l * ee;

        for (int32_t s = 0; s < an->S; s++) {
            size_t i = (size_t)e * (size_t)an->E + (size_t)next[s];

            c[i] = (uint16_t)(c[i] + step);
            if (c[i] == (step > 0 ? 1 : 0)) {
                delta += step * t[i];
            }
        }
    }
    if (an->old != NULL) {
        delta += step * an->move_w[l] *
                 an->old[((size_t)l * (size_t)an->N + (size_t)d) *
                         (size_t)an->E + (size_t)e];
    }
    return delta;
}

/* Swaps x (slot s1 of d1) and y (slot s2 of d2) at layer l; returns the
 * change of the objective. Its own inverse. */
static double an_swap(pl_anneal_t *an, int32_t l, int32_t d1, int32_t s1,
                      int32_t d2, int32_t s2)
{
    int32_t *r1 = an_row(an, l, d1), *r2 = an_row(an, l, d2);
    int32_t  x = r1[s1], y = r2[s2];
    uint8_t *h = an->has + (size_t)l * (size_t)an->N * (size_t)an->E;
    double  *ld = an->load + (size_t)l * (size_t)an->N;
    const double *w = an->w + (size_t)l * (size_t)an->E;
    double   delta = 0.0;

    delta += an_shift(an, l, d1, x, -1) + an_shift(an, l, d2, y, -1);
    r1[s1] = y;
    r2[s2] = x;
    h[(size_t)d1 * (size_t)an->E + (size_t)x] = 0;
    h[(size_t)d2 * (size_t)an->E + (size_t)y] = 0;
    h[(size_t)d1 * (size_t)an->E + (size_t)y] = 1;
    h[(size_t)d2 * (size_t)an->E + (size_t)x] = 1;
    ld[d1] += w[y] - w[x];
    ld[d2] += w[x] - w[y];
    delta += an_shift(an, l, d1, y, 1) + an_shift(an, l, d2, x, 1);
    return delta;
}

static bt_status_t an_init(pl_anneal_t *an)
{
    const bt_placement_input_t *in = an->in;
    const bt_placement_plan_t  *p = an->plan;
    size_t ee = (size_t)an->E * (size_t)an->E;
    size_t lne = (size_t)an->L * (size_t)an->N * (size_t)an->E;
    int32_t *r = calloc((size_t)an->E, sizeof(*r));

    an->cnt = calloc((size_t)(an->L - 1) * ee, sizeof(*an->cnt));
    an->has = calloc(lne, 1);
    an->old = in->current != NULL ? calloc(lne, 1) : NULL;
    an->w = calloc((size_t)an->L * (size_t)an->E, sizeof(*an->w));
    an->load = calloc((size_t)an->L * (size_t)an->N, sizeof(*an->load));
    if (r == NULL || an->cnt == NULL || an->has == NULL || an->w == NULL ||
        an->load == NULL || (in->current != NULL && an->old == NULL)) {
        free(r);
        return BT_ERR_NO_MEMORY;
    }
    for (int32_t l = 0; l < an->L; l++) {
        const int32_t *row = an_row(an, l, 0);
        uint8_t *h = an->has + (size_t)l * (size_t)an->N * (size_t)an->E;

        if (p->dense[l]) {
            continue;
        }
        memset(r, 0, (size_t)an->E * sizeof(*r));
        for (int32_t i = 0; i < an->N * an->S; i++) {
            r[row[i]]++;
        }
        for (int32_t e = 0; e < an->E; e++) {
            an->w[(size_t)l * (size_t)an->E + (size_t)e] =
                in->loads[(size_t)l * (size_t)an->E + (size_t)e] / r[e];
        }
        for (int32_t i = 0; i < an->N * an->S; i++) {
            int32_t d = i / an->S;

            h[(size_t)d * (size_t)an->E + (size_t)row[i]] = 1;
            an->load[(size_t)l * (size_t)an->N + (size_t)d] +=
                an->w[(size_t)l * (size_t)an->E + (size_t)row[i]];
        }
        if (an->old != NULL && !in->current->dense[l]) {
            const bt_placement_plan_t *c = in->current;
            int32_t nd = c->n_devices < an->N ? c->n_devices : an->N;

            for (int32_t d = 0; d < nd; d++) {
                const int32_t *cr = c->slot_expert +
                    ((size_t)l * (size_t)c->n_devices + (size_t)d) * (size_t)c->slots;

                for (int32_t s = 0; s < c->slots; s++) {
                    if (cr[s] >= 0 && cr[s] < an->E) {
                        an->old[((size_t)l * (size_t)an->N + (size_t)d) *
                                (size_t)an->E + (size_t)cr[s]] = 1;
                    }
                }
            }
        }
    }
    for (int32_t l = 0; l + 1 < an->L; l++) {
        if (!an_pair(an, l)) {
            continue;
        }
        for (int32_t d = 0; d < an->N; d++) {
            const int32_t *ra = an_row(an, l, d), *rb = an_row(an, l + 1, d);

            for (int32_t i = 0; i < an->S; i++) {
                for (int32_t j = 0; j < an->S; j++) {
                    an->cnt[(size_t)l * ee + (size_t)ra[i] * (size_t)an->E +
                            (size_t)rb[j]]++;
                }
            }
        }
    }
    free(r);
    return BT_OK;
}

static void an_cleanup(pl_anneal_t *an)
{
    free(an->cnt);
    free(an->has);
    free(an->old);
    free(an->w);
    free(an->load);
}

/* One proposal at layer l: a random copy and a random other device
 * (of the same node in node-aware mode, so homes hold). Returns the
 * accepted change, 0 when refused or rejected. */
static double an_step(pl_anneal_t *an, int32_t l, double temp)
{
    int32_t  N = an->N, S = an->S, E = an->E;
    int32_t  d1 = (int32_t)(an_next(&an->rng) % (uint64_t)N);
    int32_t  d2 = (int32_t)(an_next(&an->rng) % (uint64_t)(an->dpn - 1));
    int32_t  s1 = (int32_t)(an_next(&an->rng) % (uint64_t)S);
    int32_t  s2 = (int32_t)(an_next(&an->rng) % (uint64_t)S);
    const uint8_t *h = an->has + (size_t)l * (size_t)N * (size_t)E;
    const double  *ld = an->load + (size_t)l * (size_t)N;
    const double  *w = an->w + (size_t)l * (size_t)E;
    int32_t  x, y;
    double   delta, cap = an->caps[l];

    /* d2: another device of d1's node */
    d2 += d1 / an->dpn * an->dpn;
    if (d2 >= d1) {
        d2++;
    }
    x = an_row(an, l, d1)[s1];
    y = an_row(an, l, d2)[s2];
    if (x == y || h[(size_t)d2 * (size_t)E + (size_t)x] ||
        h[(size_t)d1 * (size_t)E + (size_t)y] ||
        ld[d1] + w[y] - w[x] > cap || ld[d2] + w[x] - w[y] > cap) {
        return 0.0;
    }
    delta = an_swap(an, l, d1, s1, d2, s2);
    /* a neutral swap is undone: copies move only for a reason */
    if (delta > 0.0 ||
        (delta < 0.0 && temp > 0.0 &&
         (double)(an_next(&an->rng) >> 11) * 0x1p-53 < exp(delta / temp))) {
        return delta;
    }
    (void)an_swap(an, l, d1, s1, d2, s2);
    return 0.0;
}

bt_status_t bt_pl_anneal(const bt_placement_input_t *in,
                         bt_placement_plan_t *plan, const double *caps,
                         const double *move_w, double unit, int64_t moves)
{
    pl_anneal_t an = {
        .in = in, .plan = plan, .caps = caps, .move_w = move_w,
        .L = plan->n_layers, .E = plan->n_experts, .N = plan->n_devices,
        .S = plan->slots, .dpn = plan->n_devices / plan->n_nodes,
        .rng = 0x5eed0fba7014ULL,
    };
    size_t   cells = (size_t)an.L * (size_t)an.N * (size_t)an.S;
    int32_t *start = NULL, *layers = NULL, n_layers = 0;
    double   gain = 0.0;
    bt_status_t st;

    if (an.dpn < 2 || moves <= 0) {
        return BT_OK;
    }
    layers = malloc((size_t)an.L * sizeof(*layers));
    start = malloc(cells * sizeof(*start));
    if (layers == NULL || start == NULL || (st = an_init(&an)) != BT_OK) {
        free(layers);
        free(start);
        an_cleanup(&an);
        bt_error("placement: out of memory for the annealing of %d layers",
                 an.L);
        return BT_ERR_NO_MEMORY;
    }
    memcpy(start, plan->slot_expert, cells * sizeof(*start));
    for (int32_t l = 0; l < an.L; l++) {
        if (an_pair(&an, l) || an_pair(&an, l - 1)) {
            layers[n_layers++] = l;
        }
    }
    /* temperature from `unit` (the mean transition of a pair) down
     * geometrically; the last fifth is a plain descent */
    for (int64_t i = 0; n_layers > 0 && i < moves; i++) {
        int64_t hot = moves * 4 / 5;
        double  temp = i < hot ? unit * pow(1e-3, (double)i / (double)hot) : 0.0;

        gain += an_step(&an, layers[i % n_layers], temp);
    }
    /* never worse than the passes' plan (float sums aside) */
    if (gain < 0.0) {
        memcpy(plan->slot_expert, start, cells * sizeof(*start));
    }
    an_cleanup(&an);
    free(layers);
    free(start);
    return BT_OK;
}
