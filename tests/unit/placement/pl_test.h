/* Helpers shared by the placement tests. */
#ifndef BT_PL_TEST_H
#define BT_PL_TEST_H

#include "placement.h"

#include <stdbool.h>
#include <stdint.h>

/* Deterministic PRNG for test inputs. */
uint64_t pl_test_rand(uint64_t *state);
double pl_test_unit(uint64_t *state);

/* Plans, asserts the invariants (bt_placement_plan_verify) and that a
 * second run gives a byte-identical plan; returns the plan. */
bt_placement_plan_t *pl_test_plan(const bt_placement_input_t *in);

bt_placement_figures_t pl_test_eval(const bt_placement_plan_t *plan,
                                    const bt_placement_input_t *in);

/* Loads $BATON_SHARED_DATA/moe/<name>; NULL after a skip message when
 * absent (a failure under CI=true). */
double *pl_test_load_counts(const char *name, int32_t *n_layers_p,
                            int32_t *n_experts_p);

#endif
