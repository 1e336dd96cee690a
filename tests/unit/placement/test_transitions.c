/* Correlated synthetic traces: planning with transitions must cut the
 * cross-device transitions by at least 20% against a plan that only
 * balances load, at a balancedness no more than 0.01 below it. */
#include "pl_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

typedef struct {
    double  zipf;
    int32_t partners;
    double  epsilon;
    int64_t tokens;
} trace_t;

static void compare_trace(int32_t L, int32_t E, int32_t N, int32_t S, int32_t K,
                          int32_t G, double corr, uint64_t seed, trace_t tr)
{
    bt_placement_synth_t sy = { .n_layers = L, .n_experts = E,
                                .tokens = tr.tokens, .zipf_s = tr.zipf,
                                .correlation = corr, .seed = seed,
                                .partners = tr.partners };
    size_t  ee = (size_t)E * (size_t)E;
    double *loads = malloc((size_t)L * (size_t)E * sizeof(*loads));
    double *trans = malloc((size_t)(L - 1) * ee * sizeof(*trans));
    bt_placement_input_t in = { .n_layers = L, .n_experts = E, .loads = loads,
                                .n_devices = N, .slots = S, .n_nodes = K,
                                .n_groups = G, .epsilon = tr.epsilon };
    bt_placement_plan_t *flat, *aware;
    bt_placement_figures_t fb, ft;

    assert_non_null(loads);
    assert_non_null(trans);
    assert_int_equal(bt_placement_synth_run(&sy, loads, trans), BT_OK);
    flat = pl_test_plan(&in);          /* balance only */
    in.transitions = trans;
    aware = pl_test_plan(&in);
    fb = pl_test_eval(flat, &in);
    ft = pl_test_eval(aware, &in);
    print_message("# L %d E %d N %d S %d K %d G %d corr %.2f: cross %.0f -> "
                  "%.0f of %.0f (ratio %.3f), balancedness %.4f -> %.4f\n",
                  L, E, N, S, K, G, corr, fb.cross_device, ft.cross_device,
                  fb.transitions_total, ft.cross_device / fb.cross_device,
                  fb.balancedness_mean, ft.balancedness_mean);
    assert_true(ft.cross_device <= 0.8 * fb.cross_device);
    assert_true(ft.balancedness_mean >= fb.balancedness_mean - 0.01);
    bt_placement_plan_destroy(flat);
    bt_placement_plan_destroy(aware);
    free(loads);
    free(trans);
}

static void compare(int32_t L, int32_t E, int32_t N, int32_t S, int32_t K,
                    int32_t G, double corr, uint64_t seed)
{
    compare_trace(L, E, N, S, K, G, corr, seed,
                  (trace_t){ 0.8, 1, -1.0, 20000 });
}

static void test_flat(void **state)
{
    (void)state;
    compare(6, 64, 16, 5, 1, 0, 0.6, 1);
    compare(5, 32, 8, 5, 1, 0, 0.8, 2);
}

static void test_node_aware(void **state)
{
    (void)state;
    compare(6, 64, 16, 5, 4, 8, 0.6, 3);
}

/* Families held out from tuning (bench/placement/generalise.c, the docs'
 * "Generalisation"), at the kvstore's epsilon 0.005: other skews, two
 * and four partners per expert, other shapes. */
static void test_held_out_families(void **state)
{
    (void)state;
    compare_trace(12, 64, 16, 5, 1, 0, 0.7, 11, (trace_t){ 1.3, 2, 0.005, 6400 });
    compare_trace(32, 64, 8, 9, 1, 0, 0.9, 12, (trace_t){ 0.5, 1, 0.005, 6400 });
    compare_trace(24, 128, 32, 5, 1, 0, 0.4, 13, (trace_t){ 1.3, 1, 0.005, 12800 });
    compare_trace(8, 32, 8, 5, 1, 0, 0.7, 14, (trace_t){ 0.5, 4, 0.005, 3200 });
}

/* A held-out family the layer-by-layer pass missed (ratio 0.803 on the
 * second of these seeds): weak correlation spread over two partners
 * needs an expert placed next to its successors too (the refinement
 * sweep and the annealing, plan.c and anneal.c). */
static void test_weak_spread_affinity(void **state)
{
    (void)state;
    for (uint64_t k = 1; k <= 3; k++) {
        compare_trace(8, 32, 8, 5, 1, 0, 0.4, k * 7919 + 4,
                      (trace_t){ 0.5, 2, 0.005, 3200 });
    }
}

/* One partner draws the trace it drew before `partners` existed. */
static void test_synth_partners(void **state)
{
    bt_placement_synth_t sy = { .n_layers = 4, .n_experts = 16, .tokens = 800,
                                .zipf_s = 1.0, .correlation = 0.7, .seed = 5 };
    double a[64], b[64], ta[768], tb[768];

    (void)state;
    assert_int_equal(bt_placement_synth_run(&sy, a, ta), BT_OK);
    sy.partners = 1;
    assert_int_equal(bt_placement_synth_run(&sy, b, tb), BT_OK);
    assert_memory_equal(a, b, sizeof(a));
    assert_memory_equal(ta, tb, sizeof(ta));
    sy.partners = 3;
    assert_int_equal(bt_placement_synth_run(&sy, b, tb), BT_OK);
    assert_true(memcmp(ta, tb, sizeof(ta)) != 0);
    sy.partners = 17;
    assert_int_equal(bt_placement_synth_run(&sy, b, tb), BT_ERR_INVALID_ARG);
}

static void test_synth_deterministic(void **state)
{
    bt_placement_synth_t sy = { .n_layers = 3, .n_experts = 16,
                                .tokens = 500, .zipf_s = 1.2,
                                .correlation = 0.5, .seed = 9 };
    double a[48], b[48], ta[512], tb[512], sum = 0.0;

    (void)state;
    assert_int_equal(bt_placement_synth_run(&sy, a, ta), BT_OK);
    assert_int_equal(bt_placement_synth_run(&sy, b, tb), BT_OK);
    assert_memory_equal(a, b, sizeof(a));
    assert_memory_equal(ta, tb, sizeof(ta));
    for (int i = 0; i < 16; i++) {
        sum += a[i];
    }
    assert_true(sum == 500.0); /* one expert per token per layer */
    sum = 0.0;
    for (int i = 0; i < 256; i++) {
        sum += ta[i];
    }
    assert_true(sum == 500.0);
    sy.seed = 10;
    assert_int_equal(bt_placement_synth_run(&sy, b, tb), BT_OK);
    assert_true(memcmp(a, b, sizeof(a)) != 0);
    sy.correlation = 1.5;
    assert_int_equal(bt_placement_synth_run(&sy, b, tb), BT_ERR_INVALID_ARG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_flat),
        cmocka_unit_test(test_node_aware),
        cmocka_unit_test(test_synth_deterministic),
        cmocka_unit_test(test_held_out_families),
        cmocka_unit_test(test_weak_spread_affinity),
        cmocka_unit_test(test_synth_partners),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
