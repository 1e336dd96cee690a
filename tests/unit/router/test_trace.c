/* router/trace.c: events in order and bounded (the end always kept), live
 * and finished lookups, the finished ring dropping the oldest (with its
 * spans), spans kept as given and bounded. */
#include "trace.h"

#include <stdio.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

static void test_trace_events_bounded(void **state)
{
    bt_traces_t *ts = bt_traces_create(4);
    bt_trace_t *t = bt_trace_begin(ts, "req-a");
    const bt_trace_t *f;
    int i;

    (void)state;
    assert_non_null(t);
    bt_trace_add(t, "admitted", "prompt %d tokens", 5);
    for (i = 0; i < 100; i++) {
        bt_trace_add(t, "lease_renewed", "lease %d", i);
    }
    bt_trace_add(t, "end", "ok");
    assert_int_equal(t->n_events, BT_TRACE_MAX_EVENTS);
    assert_int_equal(t->dropped, 101 - (BT_TRACE_MAX_EVENTS - 1));
    assert_string_equal(t->events[0].kind, "admitted");
    assert_string_equal(t->events[0].detail, "prompt 5 tokens");
    assert_string_equal(t->events[BT_TRACE_MAX_EVENTS - 1].kind, "end");
    for (i = 1; i < BT_TRACE_MAX_EVENTS; i++) {
        assert_true(t->events[i].offset_us >= t->events[i - 1].offset_us);
    }
    f = bt_traces_find(ts, "req-a");
    assert_ptr_equal(f, t);
    assert_true(f->live);
    assert_true(f->ended);
    bt_trace_finish(ts, t);
    f = bt_traces_find(ts, "req-a");
    assert_non_null(f);
    assert_false(f->live);
    assert_null(bt_traces_find(ts, "req-b"));
    bt_traces_destroy(ts);
}

static void test_trace_ring_keeps_last(void **state)
{
    bt_traces_t *ts = bt_traces_create(3);
    bt_trace_t *live = bt_trace_begin(ts, "live-1");
    char id[16];
    int i;

    (void)state;
    for (i = 0; i < 5; i++) {
        bt_trace_t *t;

        snprintf(id, sizeof(id), "done-%d", i);
        t = bt_trace_begin(ts, id);
        bt_trace_add(t, "end", "ok %d", i);
        bt_trace_finish(ts, t);
    }
    assert_null(bt_traces_find(ts, "done-0"));
    assert_null(bt_traces_find(ts, "done-1"));
    for (i = 2; i < 5; i++) {
        snprintf(id, sizeof(id), "done-%d", i);
        assert_non_null(bt_traces_find(ts, id));
    }
    assert_ptr_equal(bt_traces_find(ts, "live-1"), live);
    /* NULL traces (no memory, no store) are accepted everywhere */
    bt_trace_add(NULL, "end", "x");
    bt_trace_finish(ts, NULL);
    bt_trace_finish(NULL, NULL);
    assert_null(bt_trace_begin(NULL, "x"));
    bt_traces_destroy(ts);   /* frees the live one too */
}

static void test_trace_spans_bounded(void **state)
{
    bt_traces_t *ts = bt_traces_create(1);
    bt_trace_t *t = bt_trace_begin(ts, "spans");
    bt_trace_span_t s = { BT_TRACE_SPAN_CHUNK, 1, 0, 16, 0, 10, 20 };
    int i;

    (void)state;
    bt_trace_span(t, &s);
    s = (bt_trace_span_t){ BT_TRACE_SPAN_LAYER, 2, 3, 0, 4096, 15, 0 };
    bt_trace_span(t, &s);
    assert_int_equal(t->n_spans, 2);
    assert_int_equal(t->spans[0].kind, BT_TRACE_SPAN_CHUNK);
    assert_int_equal(t->spans[0].tokens, 16);
    assert_int_equal(t->spans[0].end_us, 20);
    assert_int_equal(t->spans[1].attempt, 2);
    assert_int_equal(t->spans[1].index, 3);
    assert_int_equal(t->spans[1].bytes, 4096);
    assert_int_equal(t->spans[1].end_us, 0);
    for (i = 0; i < BT_TRACE_MAX_SPANS; i++) {
        bt_trace_span(t, &s);
    }
    assert_int_equal(t->n_spans, BT_TRACE_MAX_SPANS);
    assert_int_equal(t->dropped, 2);
    assert_true(bt_trace_offset_us(t) < 60u * 1000 * 1000);
    assert_int_equal(bt_trace_offset_us(NULL), 0);
    bt_trace_span(NULL, &s);
    bt_trace_finish(ts, t);
    /* the next finished one pushes it (and its spans) out of the ring */
    bt_trace_finish(ts, bt_trace_begin(ts, "next"));
    assert_null(bt_traces_find(ts, "spans"));
    bt_traces_destroy(ts);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_trace_events_bounded),
        cmocka_unit_test(test_trace_ring_keeps_last),
        cmocka_unit_test(test_trace_spans_bounded),
    };

    return cmocka_run_group_tests_name("router_trace", tests, NULL, NULL);
}
