/* The kvstore's plan book (kvstore/plans): the decayed history, the
 * re-plan rule (threshold, interval, gain), versions, dry runs, shape
 * checks and the plans file across a restart. */
#include "plan_book_int.h"

#include "engine/model/experts_default.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define L 4
#define E 8
#define HALF 1000.0

static double loads_skewed[L * E], loads_flat[L * E], loads_other[L * E];

static void fill_loads(void)
{
    for (int l = 0; l < L; l++) {
        for (int e = 0; e < E; e++) {
            /* a node without a plan runs expert e on device e mod 2:
             * the even ones, all hot, on device 0: 0.55 */
            loads_skewed[l * E + e] = e % 2 == 0 ? 100 : 10;
            loads_flat[l * E + e] = 50;
            /* now the odd ones are hot */
            loads_other[l * E + e] = e % 2 == 0 ? 10 : 100 + e;
        }
    }
}

static bt_pbook_report_t report_of(const double *loads, uint64_t version)
{
    return (bt_pbook_report_t){ .n_layers = L, .n_experts = E, .n_devices = 2,
                                .slots = 4, .loads = loads,
                                .plan_version = version };
}

static bt_pbook_cfg_t cfg_default(const char *dir)
{
    return (bt_pbook_cfg_t){ .half_life_ms = HALF, .threshold = 0.9,
                             .min_interval_ms = 5000, .min_gain = 0.02,
                             .min_tokens = 100, .epsilon = 0.005, .dir = dir };
}

static bt_pbook_t *book_new(const char *dir)
{
    bt_pbook_cfg_t c = cfg_default(dir);
    bt_pbook_t *b = NULL;
    char err[256];

    assert_int_equal(bt_pbook_create(&c, &b, err, sizeof(err)), BT_OK);
    return b;
}

static uint64_t report(bt_pbook_t *b, const double *loads, uint64_t version,
                       uint64_t now)
{
    bt_pbook_report_t r = report_of(loads, version);
    uint64_t latest = 99;
    char err[256];

    assert_int_equal(bt_pbook_report(b, "moe", 1, &r, now, 1700000000000ull + now,
                                     &latest, err, sizeof(err)), BT_OK);
    return latest;
}

static void test_default_balance(void **state)
{
    (void)state;
    fill_loads();
    assert_true(fabs(bt_pbook_balance(NULL, loads_skewed, L, E, 2) - 0.55) < 1e-9);
    assert_true(fabs(bt_pbook_balance(NULL, loads_flat, L, E, 2) - 1.0) < 1e-9);
    /* the node's default, device by device (bt_ep_plan_round_robin) */
    for (int e = 0; e < E; e++) {
        assert_int_equal(bt_ep_default_device(e, 2), e % 2);
        assert_int_equal(bt_ep_default_device(e, 3), e % 3);
    }
}

static void test_decay_halves(void **state)
{
    bt_pbook_t *b = book_new(NULL);
    bt_pbook_entry_t *e;
    double zero[L * E] = { 0 };

    (void)state;
    fill_loads();
    report(b, loads_flat, 0, 10);
    e = &b->entries[0];
    assert_true(fabs(e->loads[0] - 50) < 1e-9);
    report(b, zero, 0, 10 + (uint64_t)HALF);
    assert_true(fabs(e->loads[0] - 25) < 1e-9);
    report(b, loads_flat, 0, 10 + 3 * (uint64_t)HALF);
    assert_true(fabs(e->loads[0] - (6.25 + 50)) < 1e-9);
    bt_pbook_destroy(b);
}

static void test_threshold_plans_once(void **state)
{
    bt_pbook_t *b = book_new(NULL);
    bt_pbook_view_t v;

    (void)state;
    fill_loads();
    /* balanced traffic: no plan */
    assert_int_equal(report(b, loads_flat, 0, 10), 0);
    /* skewed: measured 0.55 under the default placement, a plan */
    assert_int_equal(report(b, loads_skewed, 0, 20), 1);
    assert_true(bt_pbook_find(b, "moe", 1, &v));
    assert_int_equal(v.version, 1);
    assert_int_equal(v.n_devices, 2);
    assert_non_null(v.plan);
    assert_true(v.planned_balancedness > 0.95);
    assert_true(v.moved > 0);
    /* still skewed as measured under the new plan, but inside the
     * interval: no second plan */
    assert_int_equal(report(b, loads_other, 1, 30), 1);
    bt_pbook_destroy(b);
}

static void test_old_version_reports_do_not_trigger(void **state)
{
    bt_pbook_t *b = book_new(NULL);
    bt_pbook_report_t r;
    uint64_t latest;
    char err[256];

    (void)state;
    fill_loads();
    assert_int_equal(report(b, loads_skewed, 0, 10), 1);
    /* a node still on no plan reports 0.3: says nothing of version 1 */
    r = report_of(loads_skewed, 0);
    r.balancedness = 0.3;
    assert_int_equal(bt_pbook_report(b, "moe", 1, &r, 10 + 60000, 1, &latest,
                                     err, sizeof(err)), BT_OK);
    assert_int_equal(latest, 1);
    assert_true(b->entries[0].measured == 0);
    /* the node's own figure under version 1, past the interval: a re-plan
     * only when the planner beats it (it is at its best already) */
    r.plan_version = 1;
    r.balancedness = 0.5;
    assert_int_equal(bt_pbook_report(b, "moe", 1, &r, 10 + 70000, 1, &latest,
                                     err, sizeof(err)), BT_OK);
    assert_true(b->entries[0].measured == 0.5);
    assert_int_equal(latest, 1);
    bt_pbook_destroy(b);
}

static void test_rebalance_versions(void **state)
{
    bt_pbook_t *b = book_new(NULL);
    bt_pbook_view_t v;
    char err[256];

    (void)state;
    fill_loads();
    assert_int_equal(bt_pbook_rebalance(b, "moe", 1, false, 1, 1, &v, err,
                                        sizeof(err)), BT_ERR_NOT_FOUND);
    b->cfg.threshold = 0;   /* only on demand */
    assert_int_equal(report(b, loads_skewed, 0, 10), 0);
    assert_int_equal(bt_pbook_rebalance(b, "moe", 1, true, 11, 1, &v, err,
                                        sizeof(err)), BT_OK);
    assert_true(v.owned);
    assert_int_equal(v.version, 1);
    bt_pbook_view_release(&v);
    assert_int_equal(b->entries[0].version, 0);   /* a dry run publishes nothing */
    assert_int_equal(bt_pbook_rebalance(b, "moe", 1, false, 12, 1, &v, err,
                                        sizeof(err)), BT_OK);
    assert_int_equal(v.version, 1);
    assert_true(fabs(v.balancedness - 0.55) < 1e-9);   /* before */
    assert_true(v.planned_balancedness > 0.95);
    /* the same history again: the plan in force is kept, no new version */
    assert_int_equal(bt_pbook_rebalance(b, "moe", 1, false, 13, 1, &v, err,
                                        sizeof(err)), BT_OK);
    assert_int_equal(v.version, 1);
    assert_int_equal(v.moved, b->entries[0].moved);
    /* other traffic for a while: a new version */
    for (int i = 0; i < 10; i++) {
        report(b, loads_other, 1, 20 + (uint64_t)(i + 1) * (uint64_t)HALF);
    }
    assert_int_equal(bt_pbook_rebalance(b, "moe", 1, false, 20000, 1, &v, err,
                                        sizeof(err)), BT_OK);
    assert_int_equal(v.version, 2);
    assert_true(v.moved > 0);
    bt_pbook_destroy(b);
}

static void test_shape_mismatch_changes_nothing(void **state)
{
    bt_pbook_t *b = book_new(NULL);
    bt_pbook_report_t r;
    double big[(L + 1) * E];
    uint64_t latest;
    char err[256];

    (void)state;
    fill_loads();
    report(b, loads_flat, 0, 10);
    memset(big, 0, sizeof(big));
    big[0] = 1e6;
    r = report_of(big, 0);
    r.n_layers = L + 1;
    assert_int_equal(bt_pbook_report(b, "moe", 1, &r, 20, 1, &latest, err,
                                     sizeof(err)), BT_ERR_INVALID_ARG);
    assert_non_null(strstr(err, "do not match"));
    assert_true(b->entries[0].loads[0] == 50);
    r.n_layers = L;
    r.n_experts = E / 2;
    assert_int_equal(bt_pbook_report(b, "moe", 1, &r, 20, 1, &latest, err,
                                     sizeof(err)), BT_ERR_INVALID_ARG);
    assert_true(b->entries[0].loads[0] == 50);
    assert_int_equal(b->n, 1);
    bt_pbook_destroy(b);
}

static void test_book_full(void **state)
{
    bt_pbook_t *b = book_new(NULL);
    bt_pbook_report_t r;
    uint64_t latest;
    char err[256], model[32];

    (void)state;
    fill_loads();
    r = report_of(loads_flat, 0);
    for (int i = 0; i < BT_PBOOK_MAX_ENTRIES; i++) {
        snprintf(model, sizeof(model), "m%d", i);
        assert_int_equal(bt_pbook_report(b, model, 2, &r, 1, 1, &latest, err,
                                         sizeof(err)), BT_OK);
    }
    assert_int_equal(bt_pbook_report(b, "one-more", 2, &r, 1, 1, &latest, err,
                                     sizeof(err)), BT_ERR_EXHAUSTED);
    assert_int_equal(b->n, BT_PBOOK_MAX_ENTRIES);
    bt_pbook_destroy(b);
}

static void test_restart_keeps_versions(void **state)
{
    char dir[] = "/tmp/bt_plan_book_XXXXXX", path[256], err[256];
    bt_pbook_t *b;
    bt_pbook_view_t v, w;
    bt_pbook_cfg_t c;
    FILE *f;

    (void)state;
    fill_loads();
    assert_non_null(mkdtemp(dir));
    b = book_new(dir);
    assert_int_equal(report(b, loads_skewed, 0, 10), 1);
    b->cfg.threshold = 0;
    for (int i = 0; i < 10; i++) {
        report(b, loads_other, 1, 20 + (uint64_t)(i + 1) * (uint64_t)HALF);
    }
    assert_int_equal(bt_pbook_rebalance(b, "moe", 1, false, 20000, 1, &v, err,
                                        sizeof(err)), BT_OK);
    assert_int_equal(v.version, 2);
    snprintf(path, sizeof(path), "%s/plans.json.tmp", dir);
    assert_int_not_equal(access(path, F_OK), 0);   /* renamed away */
    bt_pbook_destroy(b);

    b = book_new(dir);
    assert_true(bt_pbook_find(b, "moe", 1, &w));
    assert_int_equal(w.version, 2);
    assert_int_equal(w.n_devices, 2);
    assert_int_equal(w.slots, 4);
    assert_false(w.has_history);
    assert_true(fabs(w.planned_balancedness - b->entries[0].planned_balancedness) < 1e-12);
    assert_memory_equal(w.plan->slot_expert, b->entries[0].plan->slot_expert,
                        sizeof(int32_t) * L * 2 * 4);
    /* the next plan after a restart is version 3 */
    for (int i = 0; i < 10; i++) {
        report(b, loads_skewed, 2, 30000 + (uint64_t)(i + 1) * (uint64_t)HALF);
    }
    b->cfg.threshold = 0;
    assert_int_equal(bt_pbook_rebalance(b, "moe", 1, false, 60000, 1, &v, err,
                                        sizeof(err)), BT_OK);
    assert_int_equal(v.version, 3);
    bt_pbook_destroy(b);

    /* a damaged file stops the start rather than restart the versions */
    snprintf(path, sizeof(path), "%s/plans.json", dir);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs("{\"format\":\"baton-placement-plans/1\",\"plans\":[{\"model\":1}]}", f);
    fclose(f);
    c = cfg_default(dir);
    b = NULL;
    assert_int_equal(bt_pbook_create(&c, &b, err, sizeof(err)), BT_ERR_INVALID_ARG);
    assert_null(b);
    assert_non_null(strstr(err, "plans.json"));
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_balance),
        cmocka_unit_test(test_decay_halves),
        cmocka_unit_test(test_threshold_plans_once),
        cmocka_unit_test(test_old_version_reports_do_not_trigger),
        cmocka_unit_test(test_rebalance_versions),
        cmocka_unit_test(test_shape_mismatch_changes_nothing),
        cmocka_unit_test(test_book_full),
        cmocka_unit_test(test_restart_keeps_versions),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
