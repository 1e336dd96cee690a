/* The kvstore's planner thread (kvstore/plan_lane.c) and the plan book's
 * jobs under it: a re-plan runs off the loop thread (the loop serves
 * timers and new reports meanwhile, the history it snapshotted is not
 * touched by them), one job per (model, role) at a time, requests
 * answered in order exactly once, and the running plan still published
 * when the lane stops. Also run under ThreadSanitizer (make tsan). */
#include "plan_lane.h"

#include "base/clock.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#define L 4
#define E 8

static double skewed[L * E], other[L * E];

static void fill(void)
{
    for (int i = 0; i < L * E; i++) {
        /* without a plan the even experts run on device 0: 0.55 */
        skewed[i] = i % 2 == 0 ? 100 : 10;
        other[i] = i % 2 == 0 ? 10 : 100 + i % E;
    }
}

static bt_pbook_t *book_new(double threshold)
{
    bt_pbook_cfg_t c = { .half_life_ms = 1e9, .threshold = threshold,
                         .min_interval_ms = 0, .min_gain = 0.02,
                         .min_tokens = 100, .epsilon = 0.005 };
    bt_pbook_t *b = NULL;
    char err[256];

    assert_int_equal(bt_pbook_create(&c, &b, err, sizeof(err)), BT_OK);
    return b;
}

/* Adds one report; returns whether the rule asked for a re-plan. */
static bool add(bt_pbook_t *b, const double *loads, uint64_t version)
{
    bt_pbook_report_t r = { .n_layers = L, .n_experts = E, .n_devices = 2,
                            .slots = 4, .loads = loads,
                            .plan_version = version };
    uint64_t latest;
    bool replan = false;
    char err[256];

    assert_int_equal(bt_pbook_add_report(b, "moe", 1, &r, bt_now_ms(), &latest,
                                         &replan, err, sizeof(err)), BT_OK);
    return replan;
}

typedef struct {
    int         calls;
    int         order;      /* when it was answered, 1-based */
    bt_status_t st;
    uint64_t    version;
} answer_t;

static int answered;

static void on_done(void *arg, bt_status_t st, const bt_pbook_view_t *v,
                    const char *err)
{
    answer_t *a = arg;

    (void)err;
    a->calls++;
    a->order = ++answered;
    a->st = st;
    a->version = st == BT_OK ? v->version : 0;
}

static void run_until(struct event_base *base, const bt_kvsd_lane_t *ln,
                      uint64_t ms)
{
    uint64_t end = bt_now_ms() + ms;

    while (!bt_kvsd_lane_idle(ln) && bt_now_ms() < end) {
        struct timeval tv = { 0, 2000 };

        event_base_loopexit(base, &tv);
        event_base_dispatch(base);
    }
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (*(int *)arg)++;
}

/* The loop runs timers and takes reports while a (slowed) re-plan runs;
 * the reports change the history, not the job's snapshot of it (TSan
 * would see the planner thread read what the loop writes). */
static void test_loop_serves_while_planning(void **state)
{
    struct event_base *base = event_base_new();
    bt_pbook_t *b = book_new(0.9);
    bt_kvsd_lane_t *ln = bt_kvsd_lane_create(base, b, 2000);
    struct timeval every = { 0, 10000 };
    struct event *tick;
    answer_t a = { 0 };
    bt_pbook_view_t v;
    int ticks = 0;

    (void)state;
    fill();
    assert_true(add(b, skewed, 0));
    assert_int_equal(bt_kvsd_lane_push(ln, BT_PBOOK_JOB_AUTO, "moe", 1, on_done,
                                       &a), BT_OK);
    assert_false(bt_kvsd_lane_idle(ln));
    tick = event_new(base, -1, EV_PERSIST, tick_cb, &ticks);
    event_add(tick, &every);
    /* while it plans: reports change the history, the rule stays quiet */
    for (int i = 0; i < 10 && a.calls == 0; i++) {
        struct timeval tv = { 0, 5000 };

        assert_false(add(b, other, 0));
        event_base_loopexit(base, &tv);
        event_base_dispatch(base);
    }
    assert_int_equal(a.calls, 0);
    assert_true(ticks >= 2);
    run_until(base, ln, 10000);
    assert_int_equal(a.calls, 1);
    assert_int_equal(a.st, BT_OK);
    assert_int_equal(a.version, 1);
    assert_true(bt_pbook_find(b, "moe", 1, &v));
    assert_int_equal(v.version, 1);
    event_free(tick);
    bt_kvsd_lane_destroy(ln);
    bt_pbook_destroy(b);
    event_base_free(base);
}

/* A second job of one (model, role) cannot begin while one runs; the
 * lane runs its requests one after the other, in the order pushed. */
static void test_one_job_per_entry_in_order(void **state)
{
    struct event_base *base = event_base_new();
    bt_pbook_t *b = book_new(0);
    bt_kvsd_lane_t *ln = bt_kvsd_lane_create(base, b, 0);
    bt_pbook_job_t *j1, *j2;
    answer_t a[3] = { { 0 } };
    bt_pbook_view_t v;
    char err[256];

    (void)state;
    fill();
    answered = 0;
    (void)add(b, skewed, 0);
    assert_int_equal(bt_pbook_job_begin(b, "moe", 1, BT_PBOOK_JOB_DRY_RUN, 1, &j1,
                                        err, sizeof(err)), BT_OK);
    assert_int_equal(bt_pbook_job_begin(b, "moe", 1, BT_PBOOK_JOB_REBALANCE, 1,
                                        &j2, err, sizeof(err)), BT_ERR_EXISTS);
    bt_pbook_job_run(j1);
    assert_int_equal(bt_pbook_job_finish(b, j1, true, 1, &v, err, sizeof(err)),
                     BT_OK);
    assert_int_equal(v.version, 1);      /* the version it would get */
    bt_pbook_view_release(&v);
    assert_false(bt_pbook_find(b, "moe", 1, &v) && v.version != 0);

    assert_int_equal(bt_kvsd_lane_push(ln, BT_PBOOK_JOB_REBALANCE, "moe", 1,
                                       on_done, &a[0]), BT_OK);
    assert_int_equal(bt_kvsd_lane_push(ln, BT_PBOOK_JOB_REBALANCE, "moe", 1,
                                       on_done, &a[1]), BT_OK);
    /* no statistics for another model: answered in its turn */
    assert_int_equal(bt_kvsd_lane_push(ln, BT_PBOOK_JOB_REBALANCE, "none", 1,
                                       on_done, &a[2]), BT_OK);
    run_until(base, ln, 10000);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(a[i].calls, 1);
        assert_int_equal(a[i].order, i + 1);
    }
    /* the second plans from the first's plan: same statistics, no move */
    assert_int_equal(a[0].version, 1);
    assert_int_equal(a[1].version, 1);
    assert_int_equal(a[2].st, BT_ERR_NOT_FOUND);
    bt_kvsd_lane_destroy(ln);
    bt_pbook_destroy(b);
    event_base_free(base);
}

/* Stopping: the running plan is finished and published, the queued
 * requests are answered SHUTDOWN, each exactly once; nothing after. */
static void test_destroy_finishes_running(void **state)
{
    struct event_base *base = event_base_new();
    bt_pbook_t *b = book_new(0);
    bt_kvsd_lane_t *ln = bt_kvsd_lane_create(base, b, 100);
    answer_t a[3] = { { 0 } };
    bt_pbook_view_t v;

    (void)state;
    fill();
    answered = 0;
    (void)add(b, skewed, 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(bt_kvsd_lane_push(ln, BT_PBOOK_JOB_REBALANCE, "moe", 1,
                                           on_done, &a[i]), BT_OK);
    }
    bt_kvsd_lane_destroy(ln);
    assert_int_equal(a[0].calls, 1);
    assert_int_equal(a[0].st, BT_OK);
    for (int i = 1; i < 3; i++) {
        assert_int_equal(a[i].calls, 1);
        assert_int_equal(a[i].st, BT_ERR_SHUTDOWN);
    }
    assert_true(bt_pbook_find(b, "moe", 1, &v));
    assert_int_equal(v.version, 1);
    bt_pbook_destroy(b);
    event_base_free(base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_loop_serves_while_planning),
        cmocka_unit_test(test_one_job_per_entry_in_order),
        cmocka_unit_test(test_destroy_finishes_running),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
