/* The simulator's event core: time order, FIFO among equal times, the
 * clock, and many events through a growing heap. */
#include "event.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

static void test_time_order(void **state)
{
    bt_sim_evq_t q;
    bt_sim_ev_t ev;
    const double t[] = {5, 1, 3, 2, 4};

    (void)state;
    bt_sim_evq_init(&q);
    for (uint32_t i = 0; i < 5; i++) {
        assert_true(bt_sim_evq_push(&q, t[i], 7, i, i * 10));
    }
    for (int k = 1; k <= 5; k++) {
        assert_true(bt_sim_evq_pop(&q, &ev));
        assert_true(ev.t == (double)k);
        assert_true(q.now == (double)k);
        assert_int_equal(ev.kind, 7);
        assert_int_equal(ev.b, ev.a * 10);
    }
    assert_false(bt_sim_evq_pop(&q, &ev));
    assert_true(bt_sim_evq_empty(&q));
    bt_sim_evq_free(&q);
}

static void test_ties_fifo_and_past(void **state)
{
    bt_sim_evq_t q;
    bt_sim_ev_t ev;

    (void)state;
    bt_sim_evq_init(&q);
    for (uint32_t i = 0; i < 100; i++) {
        assert_true(bt_sim_evq_push(&q, 1.0, 0, i, 0));
    }
    for (uint32_t i = 0; i < 100; i++) {
        assert_true(bt_sim_evq_pop(&q, &ev));
        assert_int_equal(ev.a, i);   /* pushed first, out first */
    }
    /* an event in the past happens now, after what is due now */
    assert_true(bt_sim_evq_push(&q, 0.5, 1, 1, 0));
    assert_true(bt_sim_evq_pop(&q, &ev));
    assert_true(ev.t == 1.0);
    bt_sim_evq_free(&q);
}

static void test_many_interleaved(void **state)
{
    bt_sim_evq_t q;
    bt_sim_ev_t ev;
    uint64_t x = 12345;
    double last = 0;
    size_t n = 0;

    (void)state;
    bt_sim_evq_init(&q);
    for (int i = 0; i < 20000; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        assert_true(bt_sim_evq_push(&q, (double)(x >> 40), 0, 0, 0));
    }
    /* pop half, push more relative to now, then drain: never backwards */
    while (bt_sim_evq_pop(&q, &ev)) {
        assert_true(ev.t >= last);
        last = ev.t;
        if (++n < 10000) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            assert_true(bt_sim_evq_push(&q, q.now + (double)(x >> 50), 0, 0, 0));
        }
    }
    assert_int_equal(n, 20000 + 9999);
    assert_int_equal(q.popped, n);
    bt_sim_evq_free(&q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_time_order),
        cmocka_unit_test(test_ties_fifo_and_past),
        cmocka_unit_test(test_many_interleaved),
    };

    return cmocka_run_group_tests_name("sim_event", tests, NULL, NULL);
}
