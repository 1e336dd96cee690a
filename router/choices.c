/* Seeds of the choices of one request and best_of's ranking. */
#include "choices.h"

#include <stdbool.h>

uint64_t bt_choice_seed(uint64_t seed, uint32_t i)
{
    uint64_t z;

    if (i == 0) {
        return seed;
    }
    z = seed + (uint64_t)i * 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static bool bt_choice_better(const double *cum, uint32_t a, uint32_t b)
{
    bool na = cum[a] != cum[a], nb = cum[b] != cum[b];

    if (na != nb) {
        return nb;
    }
    if (!na && cum[a] != cum[b]) {
        return cum[a] > cum[b];
    }
    return a < b;
}

void bt_choice_rank(const double *cum, uint32_t n, uint32_t n_keep,
                    uint32_t *keep)
{
    uint32_t k = 0;

    /* insertion into the kept list: n <= BT_CHOICES_LIMIT */
    for (uint32_t i = 0; i < n; i++) {
        uint32_t j;

        if (k == n_keep && (n_keep == 0 || !bt_choice_better(cum, i, keep[k - 1]))) {
            continue;
        }
        j = k < n_keep ? k++ : k - 1;
        while (j > 0 && bt_choice_better(cum, i, keep[j - 1])) {
            keep[j] = keep[j - 1];
            j--;
        }
        keep[j] = i;
    }
}
