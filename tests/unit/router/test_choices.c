/* Choices (n > 1, best_of): the seed of choice 0 is the request's, the
 * others are distinct, fixed values (a change would change every
 * client's choice i); best_of's ranking by cumulative logprob with ties to
 * the lower index and NaN last. */
#include "choices.h"

#include <math.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

static void test_seeds(void **state)
{
    uint64_t seen[64];

    (void)state;
    assert_true(bt_choice_seed(42, 0) == 42);
    assert_true(bt_choice_seed(0, 0) == 0);
    /* pinned: splitmix64 of seed + i * golden gamma (docs/api.md) */
    assert_true(bt_choice_seed(0, 1) == 0xe220a8397b1dcdafull);
    for (uint32_t i = 0; i < 64; i++) {
        seen[i] = bt_choice_seed(7, i);
        for (uint32_t j = 0; j < i; j++) {
            assert_true(seen[i] != seen[j]);
        }
        assert_true(bt_choice_seed(7, i) == seen[i]);   /* a function */
    }
}

static void test_rank(void **state)
{
    const double cum[6] = { -3.0, -1.0, -2.0, -1.0, NAN, -0.5 };
    uint32_t keep[6];

    (void)state;
    bt_choice_rank(cum, 6, 3, keep);
    assert_int_equal(keep[0], 5);
    assert_int_equal(keep[1], 1);   /* tie with 3: the lower index */
    assert_int_equal(keep[2], 3);
    bt_choice_rank(cum, 6, 6, keep);
    assert_int_equal(keep[3], 2);
    assert_int_equal(keep[4], 0);
    assert_int_equal(keep[5], 4);   /* NaN last */
    bt_choice_rank(cum, 6, 1, keep);
    assert_int_equal(keep[0], 5);
    bt_choice_rank(cum, 1, 1, keep);
    assert_int_equal(keep[0], 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seeds),
        cmocka_unit_test(test_rank),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
