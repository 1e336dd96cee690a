/* Invariants on random and edge-case inputs: every device full, no two
 * copies of one expert on a device, every expert placed, groups complete
 * on their home node, deterministic output; and precise input errors. */
#include "pl_test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

static void random_input(uint64_t *rng, bt_placement_input_t *in,
                         double **loads_p, double **trans_p)
{
    static const int32_t experts[] = { 8, 12, 16, 32, 64 };
    int32_t E = experts[pl_test_rand(rng) % 5];
    int32_t N = 1 + (int32_t)(pl_test_rand(rng) % 16);
    int32_t smin = (E + N - 1) / N, S;
    int32_t L = 1 + (int32_t)(pl_test_rand(rng) % 5);
    double *loads = calloc((size_t)L * (size_t)E, sizeof(*loads));
    double *trans = NULL;

    S = smin + (int32_t)(pl_test_rand(rng) % 3);
    if (S > E) {
        S = E;
    }
    for (int32_t l = 0; l < L; l++) {
        bool dense = L > 1 && pl_test_rand(rng) % 4 == 0;
        double skew = 1.0 + 5.0 * pl_test_unit(rng);

        for (int32_t e = 0; e < E && !dense; e++) {
            /* some experts idle, some hot */
            loads[l * E + e] = pl_test_rand(rng) % 7 == 0 ? 0.0 :
                               floor(1000.0 * pow(pl_test_unit(rng), skew));
        }
    }
    if (L > 1 && pl_test_rand(rng) % 2 == 0) {
        trans = calloc((size_t)(L - 1) * (size_t)E * (size_t)E, sizeof(*trans));
        for (size_t i = 0; i < (size_t)(L - 1) * (size_t)E * (size_t)E; i++) {
            trans[i] = pl_test_rand(rng) % 5 == 0 ?
                       (double)(pl_test_rand(rng) % 100) : 0.0;
        }
    }
    memset(in, 0, sizeof(*in));
    in->n_layers = L;
    in->n_experts = E;
    in->loads = loads;
    in->transitions = trans;
    in->n_devices = N;
    in->slots = S;
    in->n_nodes = 1;
    in->epsilon = -1.0;
    /* Node-aware when a node count and group count fit. */
    for (int32_t k = 2; k <= N && pl_test_rand(rng) % 2 == 0; k++) {
        int32_t g = E / 4, gsize = 4;

        if (N % k == 0 && k * ((N / k * S) / gsize) >= g) {
            in->n_nodes = k;
            in->n_groups = g;
            break;
        }
    }
    *loads_p = loads;
    *trans_p = trans;
}

static void test_random_inputs(void **state)
{
    uint64_t rng = 12345;

    (void)state;
    for (int i = 0; i < 150; i++) {
        bt_placement_input_t in;
        bt_placement_plan_t *plan, *again;
        double *loads, *trans;

        random_input(&rng, &in, &loads, &trans);
        plan = pl_test_plan(&in);
        assert_int_equal(plan->version, 1);

        /* Re-plan from it on changed loads, sometimes on more devices. */
        for (size_t j = 0; j < (size_t)in.n_layers * (size_t)in.n_experts; j++) {
            if (loads[j] > 0.0) {
                loads[j] = floor(loads[j] * (0.5 + pl_test_unit(&rng)));
            }
        }
        in.current = plan;
        if (in.n_groups == 0 && pl_test_rand(&rng) % 2 == 0) {
            in.n_devices += 1 + (int32_t)(pl_test_rand(&rng) % 4);
        }
        again = pl_test_plan(&in);
        assert_int_equal(again->version, 2);
        bt_placement_plan_destroy(again);
        bt_placement_plan_destroy(plan);
        free(loads);
        free(trans);
    }
}

static bt_placement_input_t simple_input(const double *loads, int32_t L,
                                         int32_t E, int32_t N, int32_t S)
{
    bt_placement_input_t in = { .n_layers = L, .n_experts = E, .loads = loads,
                                .n_devices = N, .slots = S, .n_nodes = 1,
                                .epsilon = -1.0 };
    return in;
}

static void test_uniform_loads_need_repair(void **state)
{
    /* Equal weights: the greedy can corner itself into a device that
     * already holds the last expert; the repair must resolve it. */
    double loads[3 * 10];
    int32_t shapes[][3] = { { 10, 7, 5 }, { 10, 3, 9 }, { 10, 4, 7 },
                            { 10, 9, 10 } };

    (void)state;
    for (int i = 0; i < 30; i++) {
        loads[i] = 1.0;
    }
    for (size_t k = 0; k < sizeof(shapes) / sizeof(shapes[0]); k++) {
        bt_placement_input_t in = simple_input(loads, 3, shapes[k][0],
                                               shapes[k][1], shapes[k][2]);
        bt_placement_plan_t *p = pl_test_plan(&in);
        bt_placement_figures_t f = pl_test_eval(p, &in);

        assert_true(f.balancedness_min > 0.7);
        bt_placement_plan_destroy(p);
    }
}

static void test_edge_shapes(void **state)
{
    double loads[2 * 6] = { 5, 1, 0, 9, 2, 2, 0, 0, 0, 0, 0, 0 };
    bt_placement_plan_t *p;
    bt_placement_input_t in;

    (void)state;
    /* S == E: every device holds every expert. */
    in = simple_input(loads, 2, 6, 3, 6);
    p = pl_test_plan(&in);
    assert_int_equal(p->dense[0], 0);
    assert_int_equal(p->dense[1], 1); /* all-zero layer is dense */
    for (int32_t d = 0; d < 3; d++) {
        for (int32_t s = 0; s < 6; s++) {
            assert_int_equal(p->slot_expert[d * 6 + s], s);
        }
    }
    bt_placement_plan_destroy(p);
    /* N * S == E: no replica at all. One device. */
    in = simple_input(loads, 2, 6, 1, 6);
    p = pl_test_plan(&in);
    bt_placement_plan_destroy(p);
    in = simple_input(loads, 2, 6, 2, 3);
    p = pl_test_plan(&in);
    /* {9, 1, 0} | {5, 2, 2}: 9.5 / 10 is the best partition. */
    assert_true(fabs(pl_test_eval(p, &in).balancedness_mean - 0.95) < 1e-9);
    bt_placement_plan_destroy(p);
    /* Every layer dense: nothing to place, figures neutral. */
    in = simple_input(loads + 6, 1, 6, 2, 3);
    p = pl_test_plan(&in);
    assert_int_equal(p->dense[0], 1);
    assert_int_equal(pl_test_eval(p, &in).moe_layers, 0);
    bt_placement_plan_destroy(p);
}

static void expect_invalid(const bt_placement_input_t *in, const char *needle)
{
    char err[256] = "";
    bt_placement_plan_t *p = NULL;

    assert_int_equal(bt_placement_input_check(in, err, sizeof(err)),
                     BT_ERR_INVALID_ARG);
    if (strstr(err, needle) == NULL) {
        fail_msg("error '%s' lacks '%s'", err, needle);
    }
    assert_int_equal(bt_placement_plan_create(in, &p), BT_ERR_INVALID_ARG);
    assert_null(p);
}

static void test_bad_inputs(void **state)
{
    double loads[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
    double bad[8] = { 1, 2, -3, 4, 5, 6, 7, 8 };
    double trans[64] = { 0 };
    bt_placement_input_t in;
    bt_placement_plan_t *other = NULL;

    (void)state;
    in = simple_input(loads, 1, 8, 3, 2);
    expect_invalid(&in, "cannot hold 8 experts");
    in = simple_input(loads, 1, 8, 1, 9);
    expect_invalid(&in, "slots per device 9");
    in = simple_input(loads, 1, 8, 4, 2);
    in.n_nodes = 3;
    expect_invalid(&in, "nodes 3 must divide devices 4");
    in = simple_input(loads, 1, 8, 4, 2);
    in.n_nodes = 2;
    in.n_groups = 3;
    expect_invalid(&in, "groups 3 must divide experts 8");
    in = simple_input(loads, 1, 8, 4, 3);
    in.n_nodes = 4;
    in.n_groups = 2; /* groups of 4 on nodes of 3 slots */
    expect_invalid(&in, "do not fit");
    in = simple_input(bad, 1, 8, 4, 2);
    expect_invalid(&in, "layer 0 expert 2 is -3");
    bad[2] = NAN;
    expect_invalid(&in, "layer 0 expert 2");
    in = simple_input(loads, 2, 4, 2, 2);
    trans[5] = -1.0;
    in.transitions = trans;
    expect_invalid(&in, "from expert 1 to 1");
    in = simple_input(loads, 1, 8, 4, 2);
    in.epsilon = INFINITY;
    expect_invalid(&in, "epsilon");
    assert_int_equal(bt_placement_plan_alloc(2, 8, 4, 2, 0, &other), BT_OK);
    in.epsilon = -1.0;
    in.current = other; /* 2 layers against 1 */
    expect_invalid(&in, "current plan has 2 layers");
    bt_placement_plan_destroy(other);
    in.current = NULL;
    in.loads = NULL;
    expect_invalid(&in, "no loads");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_inputs),
        cmocka_unit_test(test_uniform_loads_need_repair),
        cmocka_unit_test(test_edge_shapes),
        cmocka_unit_test(test_bad_inputs),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
