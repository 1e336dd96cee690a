/* n > 1 and best_of (OpenAI): the sampling seed of each choice and the
 * ranking of best_of candidates (docs/internals/router.md "Choices"). */
#ifndef BT_ROUTER_CHOICES_H
#define BT_ROUTER_CHOICES_H

#include <stdint.h>

/* Upper bound of --max-choices (n and best_of). */
#define BT_CHOICES_LIMIT 128

/* The seed of choice i of a request with seed `seed`: choice 0 keeps it
 * (n = 1 is unchanged), choice i > 0 takes splitmix64's output for
 * seed + i * 0x9e3779b97f4a7c15. A request with that seed alone yields
 * the choice's text. */
uint64_t bt_choice_seed(uint64_t seed, uint32_t i);

/* The n_keep best of n candidates by cumulative logprob (higher first;
 * equal sums: the lower index first) into keep[0..n_keep), best first.
 * n_keep <= n. NaN sums rank last. */
void bt_choice_rank(const double *cum, uint32_t n, uint32_t n_keep,
                    uint32_t *keep);

#endif
