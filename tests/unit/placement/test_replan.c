/* Re-planning from the plan in force: unchanged loads move nothing; loads
 * drifted by +-5% move few copies (bounded) where a plan from scratch
 * moves most; a grown cluster keeps what it can. */
#include "pl_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#define L 12
#define E 64

static void make_loads(double *loads, uint64_t seed)
{
    bt_placement_synth_t sy = { .n_layers = L, .n_experts = E,
                                .tokens = 50000, .zipf_s = 1.0,
                                .correlation = 0.0, .seed = seed };

    assert_int_equal(bt_placement_synth_run(&sy, loads, NULL), BT_OK);
}

static void test_same_loads_move_nothing(void **state)
{
    static double loads[L * E];
    bt_placement_input_t in = { .n_layers = L, .n_experts = E, .loads = loads,
                                .n_devices = 16, .slots = 5, .n_nodes = 1,
                                .epsilon = -1.0 };
    bt_placement_plan_t *cur, *next;
    bt_placement_figures_t f;

    (void)state;
    make_loads(loads, 1);
    cur = pl_test_plan(&in);
    in.current = cur;
    next = pl_test_plan(&in);
    f = pl_test_eval(next, &in);
    assert_int_equal(f.moved, 0);
    assert_int_equal(next->version, cur->version + 1);
    bt_placement_plan_destroy(next);
    bt_placement_plan_destroy(cur);
}

static void drifted(const double *loads, double *out, uint64_t seed)
{
    for (int i = 0; i < L * E; i++) {
        out[i] = loads[i] * (0.95 + 0.1 * pl_test_unit(&seed));
    }
}

static void drift_case(int32_t N, int32_t S, int32_t K, int32_t G)
{
    static double loads[L * E], drift[L * E];
    bt_placement_input_t in = { .n_layers = L, .n_experts = E, .loads = loads,
                                .n_devices = N, .slots = S, .n_nodes = K,
                                .n_groups = G, .epsilon = 0.01 };
    bt_placement_plan_t *cur, *scratch, *next;
    bt_placement_figures_t fs, fn;

    make_loads(loads, 2);
    cur = pl_test_plan(&in);
    drifted(loads, drift, 3);
    in.loads = drift;
    scratch = pl_test_plan(&in);
    in.current = cur;
    next = pl_test_plan(&in);
    fs = pl_test_eval(scratch, &in); /* moves counted against cur */
    fn = pl_test_eval(next, &in);
    print_message("# N %d S %d K %d G %d: from scratch moved %lld of %lld "
                  "(bal %.4f), from current moved %lld (bal %.4f)\n", N, S, K,
                  G, (long long)fs.moved, (long long)fs.copies,
                  fs.balancedness_mean, (long long)fn.moved,
                  fn.balancedness_mean);
    assert_true(fn.moved * 10 <= fn.copies);          /* <= 10% of copies */
    assert_true(fs.moved * 2 >= fs.copies);           /* scratch: >= 50% */
    assert_true(fn.balancedness_mean >= fs.balancedness_mean - 0.011);
    bt_placement_plan_destroy(next);
    bt_placement_plan_destroy(scratch);
    bt_placement_plan_destroy(cur);
}

static void test_drift_moves_few(void **state)
{
    (void)state;
    drift_case(16, 5, 1, 0);
    drift_case(16, 5, 4, 8);
}

static void test_grown_cluster(void **state)
{
    static double loads[L * E];
    bt_placement_input_t in = { .n_layers = L, .n_experts = E, .loads = loads,
                                .n_devices = 16, .slots = 5, .n_nodes = 1,
                                .epsilon = -1.0 };
    bt_placement_plan_t *cur, *next;
    bt_placement_figures_t f;

    (void)state;
    make_loads(loads, 4);
    cur = pl_test_plan(&in);
    in.current = cur;
    in.n_devices = 20;      /* four devices join */
    in.slots = 4;           /* with fewer slots each */
    in.epsilon = 0.01;
    next = pl_test_plan(&in);
    f = pl_test_eval(next, &in);
    print_message("# 16x5 -> 20x4: moved %lld of %lld, bal %.4f\n",
                  (long long)f.moved, (long long)f.copies, f.balancedness_mean);
    assert_true(f.moved * 2 < f.copies);
    assert_true(f.balancedness_mean > 0.95);
    bt_placement_plan_destroy(next);
    bt_placement_plan_destroy(cur);
}

/* With transitions too: at move price 1 a re-plan on unchanged input keeps
 * (nearly) all copies, and a higher move price trades cross-device tokens for moves. */
static void test_with_transitions(void **state)
{
    static double loads[L * E], drift[L * E], trans[(L - 1) * E * E];
    bt_placement_synth_t sy = { .n_layers = L, .n_experts = E,
                                .tokens = 20000, .zipf_s = 0.8,
                                .correlation = 0.6, .seed = 6 };
    bt_placement_input_t in = { .n_layers = L, .n_experts = E, .loads = loads,
                                .transitions = trans, .n_devices = 16,
                                .slots = 5, .n_nodes = 1, .epsilon = -1.0 };
    bt_placement_plan_t *cur, *same, *lo, *hi;
    bt_placement_figures_t fs, fl, fh;

    (void)state;
    assert_int_equal(bt_placement_synth_run(&sy, loads, trans), BT_OK);
    cur = pl_test_plan(&in);
    in.current = cur;
    in.move_price = 1.0;
    same = pl_test_plan(&in);
    fs = pl_test_eval(same, &in);
    in.move_price = 0.0; /* default */
    drifted(loads, drift, 8);
    in.loads = drift;
    lo = pl_test_plan(&in);
    in.move_price = 1.0;
    hi = pl_test_plan(&in);
    fl = pl_test_eval(lo, &in);
    fh = pl_test_eval(hi, &in);
    print_message("# transitions: same input moved %lld of %lld; drift: price "
                  "0.1 moved %lld cross %.0f, price 1 moved %lld cross %.0f\n",
                  (long long)fs.moved, (long long)fs.copies,
                  (long long)fl.moved, fl.cross_device, (long long)fh.moved,
                  fh.cross_device);
    assert_true(fs.moved * 100 <= fs.copies);
    assert_true(fh.moved < fl.moved);
    assert_true(fh.cross_device >= fl.cross_device);
    bt_placement_plan_destroy(hi);
    bt_placement_plan_destroy(lo);
    bt_placement_plan_destroy(same);
    bt_placement_plan_destroy(cur);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_loads_move_nothing),
        cmocka_unit_test(test_drift_moves_few),
        cmocka_unit_test(test_grown_cluster),
        cmocka_unit_test(test_with_transitions),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
