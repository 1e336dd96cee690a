/* Synthetic routing traces: Zipf expert popularity with a tunable
 * cross-layer correlation, deterministic from a seed (splitmix64). */
#include "placement_int.h"

#include "base/log.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static uint64_t sm64_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Uniform in [0, 1) with 53 random bits. */
static double sm64_unit(uint64_t *state)
{
    return (double)(sm64_next(state) >> 11) * (1.0 / 9007199254740992.0);
}

static void shuffle(int32_t *v, int32_t n, uint64_t *state)
{
    for (int32_t i = 0; i < n; i++) {
        v[i] = i;
    }
    for (int32_t i = n - 1; i > 0; i--) {
        int32_t j = (int32_t)(sm64_next(state) % (uint64_t)(i + 1));
        int32_t t = v[i];

        v[i] = v[j];
        v[j] = t;
    }
}

static int32_t zipf_draw(const double *cdf, int32_t n, uint64_t *state)
{
    double  u = sm64_unit(state) * cdf[n - 1];
    int32_t lo = 0, hi = n - 1;

    while (lo < hi) {
        int32_t mid = lo + (hi - lo) / 2;

        if (cdf[mid] > u) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    return lo;
}

bt_status_t bt_placement_synth_run(const bt_placement_synth_t *cfg,
                                   double *loads, double *transitions)
{
    int32_t  L = cfg->n_layers, E = cfg->n_experts;
    int32_t  P = cfg->partners > 1 ? cfg->partners : 1;
    size_t   ee = (size_t)E * (size_t)E, LE = (size_t)L * (size_t)E;
    uint64_t state = cfg->seed;
    double  *cdf;
    int32_t *rank, *partner;

    if (L < 1 || L > BT_PLACEMENT_MAX_LAYERS || E < 1 ||
        E > BT_PLACEMENT_MAX_EXPERTS || cfg->tokens < 0 ||
        !(cfg->zipf_s >= 0.0) || !isfinite(cfg->zipf_s) ||
        !(cfg->correlation >= 0.0 && cfg->correlation <= 1.0) ||
        cfg->partners < 0 || cfg->partners > 16) {
        bt_error("placement: synth config out of range layers %d experts %d "
                 "zipf %g correlation %g partners %d", L, E, cfg->zipf_s,
                 cfg->correlation, cfg->partners);
        return BT_ERR_INVALID_ARG;
    }
    cdf = malloc((size_t)E * sizeof(*cdf));
    rank = malloc((size_t)L * (size_t)E * sizeof(*rank));
    partner = malloc((size_t)P * LE * sizeof(*partner));
    if (cdf == NULL || rank == NULL || partner == NULL) {
        free(cdf);
        free(rank);
        free(partner);
        bt_error("placement: out of memory for synth experts %d", E);
        return BT_ERR_NO_MEMORY;
    }
    for (int32_t k = 0; k < E; k++) {
        cdf[k] = (k > 0 ? cdf[k - 1] : 0.0) + pow((double)(k + 1), -cfg->zipf_s);
    }
    /* Per layer: which expert holds each popularity rank, and the partner
     * at layer l+1 of each expert at layer l. */
    for (int32_t l = 0; l < L; l++) {
        shuffle(rank + (size_t)l * (size_t)E, E, &state);
        shuffle(partner + (size_t)l * (size_t)E, E, &state);
    }
    /* more partners after: one partner keeps the draws it always had */
    for (int32_t k = 1; k < P; k++) {
        for (int32_t l = 0; l < L; l++) {
            shuffle(partner + (size_t)k * LE + (size_t)l * (size_t)E, E, &state);
        }
    }
    memset(loads, 0, (size_t)L * (size_t)E * sizeof(*loads));
    if (transitions != NULL && L > 1) {
        memset(transitions, 0, (size_t)(L - 1) * ee * sizeof(*transitions));
    }
    for (int64_t t = 0; t < cfg->tokens; t++) {
        int32_t e = rank[zipf_draw(cdf, E, &state)];

        loads[e] += 1.0;
        for (int32_t l = 1; l < L; l++) {
            int32_t next;

            if (sm64_unit(&state) < cfg->correlation) {
                size_t k = P > 1 ? (size_t)(sm64_next(&state) % (uint64_t)P) : 0;

                next = partner[k * LE + (size_t)(l - 1) * (size_t)E + (size_t)e];
            } else {
                next = rank[(size_t)l * (size_t)E +
                            (size_t)zipf_draw(cdf, E, &state)];
            }
            loads[(size_t)l * (size_t)E + (size_t)next] += 1.0;
            if (transitions != NULL) {
                transitions[(size_t)(l - 1) * ee + (size_t)e * (size_t)E +
                            (size_t)next] += 1.0;
            }
            e = next;
        }
    }
    free(cdf);
    free(rank);
    free(partner);
    return BT_OK;
}
