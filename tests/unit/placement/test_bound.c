/* bt_placement_cross_bound: never above the true optimum (checked against
 * every plan of tiny inputs, with and without replicas, over three
 * layers), exact where the optimum is known, and below every plan the
 * planner makes on a synthetic trace. */
#include "pl_test.h"

#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#define MAX_E 5
#define MAX_N 3
#define L 3

/* Cross mass from a layer with devices holding masks ma to one with mb. */
static double cross_of(const double *t, int32_t E, int32_t N,
                       const uint32_t *ma, const uint32_t *mb)
{
    double cross = 0.0;

    for (int32_t a = 0; a < E; a++) {
        for (int32_t b = 0; b < E; b++) {
            bool local = false;

            for (int32_t d = 0; d < N; d++) {
                local = local || ((ma[d] >> a & 1) && (mb[d] >> b & 1));
            }
            cross += local ? 0.0 : t[a * E + b];
        }
    }
    return cross;
}

/* Every layer placement: N masks of S experts (one copy of an expert per
 * device), covering all E experts; returns the count written to out. */
static int32_t layer_plans(int32_t E, int32_t N, int32_t S,
                           uint32_t out[][MAX_N])
{
    uint32_t subsets[64];
    int32_t  ns = 0, n = 0, idx[MAX_N] = { 0 };

    for (uint32_t m = 0; m < (1u << E); m++) {
        if (__builtin_popcount(m) == S) {
            subsets[ns++] = m;
        }
    }
    for (;;) {
        uint32_t all = 0;

        for (int32_t d = 0; d < N; d++) {
            all |= subsets[idx[d]];
        }
        if (all == (1u << E) - 1) {
            for (int32_t d = 0; d < N; d++) {
                out[n][d] = subsets[idx[d]];
            }
            n++;
        }
        int32_t d = 0;

        while (d < N && ++idx[d] == ns) {
            idx[d++] = 0;
        }
        if (d == N) {
            return n;
        }
    }
}

/* The optimum over all plans of n_layers (2 or 3) layers by enumeration:
 * with three, min over the middle layer's plan j of the best first layer
 * for j plus the best last layer for j. */
static double brute_optimum(const double *trans, int32_t n_layers, int32_t E,
                            int32_t N, int32_t S)
{
    static uint32_t plans[4096][MAX_N];
    int32_t n = layer_plans(E, N, S, plans);
    size_t  ee = (size_t)E * (size_t)E;
    double  best = -1.0;

    for (int32_t j = 0; j < n; j++) {
        double in_best = -1.0, out_best = n_layers > 2 ? -1.0 : 0.0;

        for (int32_t i = 0; i < n; i++) {
            double c = cross_of(trans, E, N, plans[i], plans[j]);

            in_best = in_best < 0.0 || c < in_best ? c : in_best;
            if (n_layers > 2) {
                c = cross_of(trans + ee, E, N, plans[j], plans[i]);
                out_best = out_best < 0.0 || c < out_best ? c : out_best;
            }
        }
        best = best < 0.0 || in_best + out_best < best ? in_best + out_best
                                                       : best;
    }
    return best;
}

static void check_random(int32_t E, int32_t N, int32_t S, int rounds)
{
    uint64_t rng = 0x5eed0000u + (uint64_t)(E * 100 + N * 10 + S);
    double   loads[L * MAX_E], trans[(L - 1) * MAX_E * MAX_E];
    bt_placement_input_t in = { .n_layers = L, .n_experts = E, .loads = loads,
                                .transitions = trans, .n_devices = N,
                                .slots = S, .n_nodes = 1 };
    int tight = 0;

    for (int i = 0; i < L * E; i++) {
        loads[i] = 1.0;
    }
    for (int round = 0; round < rounds; round++) {
        double bound, total, opt, sum = 0.0;

        for (int i = 0; i < (L - 1) * E * E; i++) {
            /* sparse and skewed, as routing is */
            double u = pl_test_unit(&rng);

            trans[i] = u < 0.5 ? 0.0 : (double)(pl_test_rand(&rng) % 20);
            sum += trans[i];
        }
        assert_int_equal(bt_placement_cross_bound(&in, &bound, &total), BT_OK);
        opt = brute_optimum(trans, L, E, N, S);
        assert_true(total == sum);
        assert_true(bound >= 0.0);
        assert_true(bound <= opt + 1e-9);
        tight += bound >= opt - 1e-9;
    }
    print_message("# E %d N %d S %d: bound = optimum on %d of %d inputs\n", E,
                  N, S, tight, rounds);
}

static void test_never_above_optimum(void **state)
{
    (void)state;
    check_random(4, 2, 2, 40);  /* no replicas: two 2+2 blocks */
    check_random(4, 2, 3, 40);  /* two extra copies per layer */
    check_random(5, 2, 3, 30);  /* one extra copy */
    check_random(5, 3, 2, 10);  /* three devices, one extra copy */
}

static void test_exact_cases(void **state)
{
    double loads[2 * 4] = { 1, 1, 1, 1, 1, 1, 1, 1 }, trans[16];
    bt_placement_input_t in = { .n_layers = 2, .n_experts = 4, .loads = loads,
                                .transitions = trans, .n_devices = 2,
                                .slots = 2, .n_nodes = 1 };
    double bound, total;

    (void)state;
    /* a permutation: every pair can be local, the optimum is 0 */
    memset(trans, 0, sizeof(trans));
    trans[0 * 4 + 2] = 5;
    trans[1 * 4 + 0] = 7;
    trans[2 * 4 + 3] = 1;
    trans[3 * 4 + 1] = 2;
    assert_int_equal(bt_placement_cross_bound(&in, &bound, &total), BT_OK);
    assert_true(bound == 0.0 && total == 15.0);
    /* all pairs equal: each expert meets exactly 2 of 4, the cross mass is
     * 8 of 16 in every plan, and the bound says so */
    for (int i = 0; i < 16; i++) {
        trans[i] = 1.0;
    }
    assert_int_equal(bt_placement_cross_bound(&in, &bound, &total), BT_OK);
    assert_true(bound == 8.0 && total == 16.0);
    assert_true(brute_optimum(trans, 2, 4, 2, 2) == 8.0);
    /* a dense layer carries no transitions */
    loads[4] = loads[5] = loads[6] = loads[7] = 0.0;
    assert_int_equal(bt_placement_cross_bound(&in, &bound, &total), BT_OK);
    assert_true(bound == 0.0 && total == 0.0);
    in.transitions = NULL;
    assert_int_equal(bt_placement_cross_bound(&in, &bound, &total),
                     BT_ERR_INVALID_ARG);
}

/* Below what the planner reaches, with transitions and balance given up,
 * on a weak-affinity trace like the five families it misses. */
static void test_below_planner(void **state)
{
    enum { LL = 4, E = 32 };
    bt_placement_synth_t sy = { .n_layers = LL, .n_experts = E, .tokens = 3200,
                                .zipf_s = 0.5, .correlation = 0.4, .seed = 3,
                                .partners = 4 };
    double *loads = malloc(LL * E * sizeof(double));
    double *trans = malloc((LL - 1) * E * E * sizeof(double));
    bt_placement_input_t in = { .n_layers = LL, .n_experts = E, .loads = loads,
                                .transitions = trans, .n_devices = 8,
                                .slots = 5, .n_nodes = 1, .epsilon = 1.0 };
    bt_placement_plan_t *plan;
    bt_placement_figures_t f;
    double bound, total;

    (void)state;
    assert_non_null(loads);
    assert_non_null(trans);
    assert_int_equal(bt_placement_synth_run(&sy, loads, trans), BT_OK);
    plan = pl_test_plan(&in);
    f = pl_test_eval(plan, &in);
    assert_int_equal(bt_placement_cross_bound(&in, &bound, &total), BT_OK);
    print_message("# bound %.0f, planner %.0f of %.0f\n", bound, f.cross_device,
                  total);
    assert_true(total == f.transitions_total);
    assert_true(bound > 0.0 && bound <= f.cross_device);
    bt_placement_plan_destroy(plan);
    free(loads);
    free(trans);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_never_above_optimum),
        cmocka_unit_test(test_exact_cases),
        cmocka_unit_test(test_below_planner),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
