/* Admission and the wait queue with fake nodes (rreq_fixture.h): a full
 * queue and --max-inflight are refused with BT_ERR_EXHAUSTED by
 * bt_rreq_start, a wait past --queue-timeout ends with BT_ERR_EXHAUSTED
 * (BT_ERR_PEER_UNREACHABLE once no node serves the model), no node at
 * all is BT_ERR_PEER_UNREACHABLE; a reservation refused with
 * RESOURCE_EXHAUSTED goes back to the queue without spending a failover;
 * queued requests are placed oldest first, also when a kick comes from a
 * sink's on_end that starts another request. */
#include "rreq_fixture.h"
#include "request_priv.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <setjmp.h>
#include <stdarg.h>
#include <cmocka.h>

static void no_room(fixture_t *f)
{
    fx_set_free(f, f->d[0], 0);
    fx_set_free(f, f->d[1], 0);
}

static double counter(const bt_counter_t *c)
{
    return bt_metric_value(c);
}

static void test_queue_full(void **state)
{
    fixture_t *f = *state;
    fx_rec_t rec[2];
    char err[256];

    memset(rec, 0, sizeof(rec));
    no_room(f);
    f->r.cfg.max_queue = 1;
    assert_int_equal(fx_start(f, &rec[0], 8, err, sizeof(err)), BT_OK);
    assert_int_equal(f->r.n_queued, 1);
    assert_int_equal(fx_start(f, &rec[1], 8, err, sizeof(err)), BT_ERR_EXHAUSTED);
    assert_non_null(strstr(err, "queue"));
    assert_int_equal(rec[1].ends, 0);
    assert_true(counter(f->r.m.requests_rejected) == 1.0);
    assert_int_equal(f->r.n_inflight, 1);
    bt_rreq_cancel(rec[0].req, "done");
}

static void test_max_inflight(void **state)
{
    fixture_t *f = *state;
    fx_rec_t rec[2];
    char err[256];

    memset(rec, 0, sizeof(rec));
    f->r.cfg.max_inflight = 1;
    assert_int_equal(fx_start(f, &rec[0], 8, err, sizeof(err)), BT_OK);
    assert_int_equal(fx_start(f, &rec[1], 8, err, sizeof(err)), BT_ERR_EXHAUSTED);
    assert_non_null(strstr(err, "in flight"));
    bt_rreq_cancel(rec[0].req, "done");
}

static bool ended(fixture_t *f, void *arg)
{
    (void)f;
    return ((fx_rec_t *)arg)->ends > 0;
}

static void test_queue_timeout(void **state)
{
    fixture_t *f = *state;
    fx_rec_t rec = { 0 };
    char err[256];

    no_room(f);
    f->r.cfg.queue_timeout_ms = 20;
    assert_int_equal(fx_start(f, &rec, 8, err, sizeof(err)), BT_OK);
    assert_true(fx_wait(f, ended, &rec, 2000));
    assert_int_equal(rec.status, BT_ERR_EXHAUSTED);
    assert_non_null(strstr(rec.msg, "no decode node had room"));
    assert_int_equal(rec.n_ids, 0);
    assert_true(counter(f->r.m.requests_rejected) == 1.0);
}

/* The decode nodes left while it waited. */
static void test_queue_timeout_no_node(void **state)
{
    fixture_t *f = *state;
    fx_rec_t rec = { 0 };
    char err[256];

    no_room(f);
    f->r.cfg.queue_timeout_ms = 20;
    assert_int_equal(fx_start(f, &rec, 8, err, sizeof(err)), BT_OK);
    bt_registry_remove(f->r.registry, f->d[0]);
    bt_registry_remove(f->r.registry, f->d[1]);
    assert_true(fx_wait(f, ended, &rec, 2000));
    assert_int_equal(rec.status, BT_ERR_PEER_UNREACHABLE);
    assert_non_null(strstr(rec.msg, "no node serves the model"));
}

static void test_no_node(void **state)
{
    fixture_t *f = *state;
    fx_rec_t rec = { 0 };
    char err[256];

    bt_registry_remove(f->r.registry, f->d[0]);
    bt_registry_remove(f->r.registry, f->d[1]);
    assert_int_equal(fx_start(f, &rec, 8, err, sizeof(err)),
                     BT_ERR_PEER_UNREACHABLE);
    assert_non_null(strstr(err, "no decode node serves"));
    assert_int_equal(rec.ends, 0);
    assert_true(counter(f->r.m.requests_rejected) == 1.0);
    assert_int_equal(f->r.n_inflight, 0);
}

/* D's report was stale: RESOURCE_EXHAUSTED puts the request back in the
 * queue (no failover spent: none is allowed here); D's next report lets
 * it in. */
static void test_refused_reservation_requeued(void **state)
{
    fixture_t *f = *state;
    fx_rec_t rec = { 0 };
    fx_call_t *dc, *pc;
    char err[256];

    fx_set_free(f, f->d[1], 0);
    assert_int_equal(fx_start(f, &rec, 8, err, sizeof(err)), BT_OK);
    fx_pump(f);
    dc = fx_open(f, FX_DECODE);
    assert_string_equal(dc->node, "d0");
    fx_fail(dc, BT_RPC_RESOURCE_EXHAUSTED, "no room");
    fx_pump(f);
    assert_int_equal(rec.ends, 0);
    assert_int_equal(f->r.n_queued, 1);
    assert_string_equal(fx_state(f, bt_rreq_id(rec.req)), "queued");
    assert_int_equal(fx_count(f, FX_DECODE), 1);
    assert_true(counter(f->r.m.decode_failovers) == 0.0);

    fx_set_free(f, f->d[0], 1000);
    bt_router_queue_kick(&f->r);
    fx_pump(f);
    dc = fx_open(f, FX_DECODE);
    assert_non_null(dc);
    assert_string_equal(dc->node, "d0");
    fx_reserve(dc, 9);
    pc = fx_open(f, FX_PREFILL);
    fx_prefill_ok(pc, 104);
    fx_final(dc, BATON__V1__FINISH_REASON__FINISH_REASON_STOP);
    assert_int_equal(rec.status, BT_OK);
    assert_int_equal(f->r.n_queued, 0);
}

static fixture_t *g_f;
static fx_rec_t   g_late;

/* A's on_end kicks the queue and starts another request. */
static void kick_and_start(fx_rec_t *rec)
{
    char err[256];

    (void)rec;
    bt_router_queue_kick(&g_f->r);
    assert_int_equal(fx_start(g_f, &g_late, 8, err, sizeof(err)), BT_OK);
    assert_string_equal(fx_state(g_f, bt_rreq_id(g_late.req)), "queued");
}

static void test_kick_order_and_reentry(void **state)
{
    fixture_t *f = *state;
    fx_rec_t rec[3];
    const fx_rec_t *order[3];
    char err[256];
    size_t i, n = 0;

    g_f = f;
    memset(rec, 0, sizeof(rec));
    memset(&g_late, 0, sizeof(g_late));
    no_room(f);
    for (i = 0; i < 3; i++) {
        assert_int_equal(fx_start(f, &rec[i], 8, err, sizeof(err)), BT_OK);
    }
    assert_int_equal(f->r.n_queued, 3);
    rec[0].on_end_hook = kick_and_start;
    bt_rreq_cancel(rec[0].req, "client left");
    assert_int_equal(rec[0].ends, 1);
    assert_int_equal(f->r.n_queued, 3); /* B, C and the late one */

    fx_set_free(f, f->d[0], 1000);
    bt_router_queue_kick(&f->r);
    assert_int_equal(f->r.n_queued, 0);
    fx_pump(f);
    /* decode streams opened oldest first */
    order[0] = &rec[1];
    order[1] = &rec[2];
    order[2] = &g_late;
    for (i = 0; i < f->n_calls; i++) {
        if (f->calls[i].kind == FX_DECODE) {
            assert_true(n < 3);
            assert_string_equal(f->calls[i].request_id, bt_rreq_id(order[n]->req));
            n++;
        }
    }
    assert_int_equal(n, 3);
    for (i = 0; i < 3; i++) {
        bt_rreq_cancel(order[i]->req, "done");
    }
}

/* The TPOT guard's stall budget (select.h) from the router's requests:
 * one placed on d0 whose prefill runs elsewhere has all of slo x (N - 1)
 * ms less a decode step per token; once it has its first token the time
 * since counts as spent; one that missed an SLO already (nothing left
 * over, or its first token after the TTFT SLO) and one that ended hold no
 * budget; d1 holds none at all. */
static void test_stall_budget(void **state)
{
    fixture_t *f = *state;
    fx_rec_t rec = { 0 };
    fx_call_t *dc, *pc;
    const uint32_t ids[7] = { 1, 2, 3, 4, 5, 6, 7 };
    const struct timespec pause = { 0, 30 * 1000000L };
    char err[256];
    double b;

    f->r.weights.disagg.slo_tpot_ms = 25.0;
    f->r.weights.disagg.slo_ttft_ms = 60000.0;
    fx_set_free(f, f->d[1], 0);
    assert_true(isinf(bt_rreq_stall_budget(&f->r, f->d[0])));
    assert_int_equal(fx_start(f, &rec, 8, err, sizeof(err)), BT_OK);
    fx_pump(f);
    dc = fx_open(f, FX_DECODE);
    assert_string_equal(dc->node, "d0");
    f->d[0]->load.decode_step_ms = 2.0;
    assert_true(bt_rreq_stall_budget(&f->r, f->d[0]) == 25.0 * 7 - 2.0 * 8);
    assert_true(isinf(bt_rreq_stall_budget(&f->r, f->d[1])));
    /* its prefill node computes so slowly that its first token cannot
     * come within the TTFT SLO: lost already, nothing to protect */
    f->p[0]->load.prefill_rate = 1e-6;
    f->p[1]->load.prefill_rate = 1e-6;
    assert_true(isinf(bt_rreq_stall_budget(&f->r, f->d[0])));
    f->p[0]->load.prefill_rate = 0;
    f->p[1]->load.prefill_rate = 0;
    fx_reserve(dc, 11);
    fx_pump(f);
    pc = fx_open(f, FX_PREFILL);
    fx_prefill_ok(pc, 42);
    fx_pump(f);
    assert_int_equal(rec.n_ids, 1);
    nanosleep(&pause, NULL);
    b = bt_rreq_stall_budget(&f->r, f->d[0]);
    assert_true(b <= 25.0 * 7 - 30.0 - 2.0 * 7);
    assert_true(b > 0);
    /* late already: nothing to protect, the node is free to prefill */
    f->d[0]->load.decode_step_ms = 1000.0;
    assert_true(isinf(bt_rreq_stall_budget(&f->r, f->d[0])));
    f->d[0]->load.decode_step_ms = 2.0;
    assert_true(bt_rreq_stall_budget(&f->r, f->d[0]) > 0);
    f->r.weights.disagg.slo_ttft_ms = 0.001;   /* its first token was later */
    assert_true(isinf(bt_rreq_stall_budget(&f->r, f->d[0])));
    f->r.weights.disagg.slo_ttft_ms = 0;       /* no TTFT SLO: all count */
    assert_false(isinf(bt_rreq_stall_budget(&f->r, f->d[0])));
    fx_tokens(dc, ids, 7);
    fx_final(dc, BATON__V1__FINISH_REASON__FINISH_REASON_LENGTH);
    assert_true(fx_wait(f, ended, &rec, 2000));
    assert_int_equal(rec.status, BT_OK);
    assert_true(isinf(bt_rreq_stall_budget(&f->r, f->d[0])));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_queue_full, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_max_inflight, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_queue_timeout, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_queue_timeout_no_node, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_no_node, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_refused_reservation_requeued,
                                        fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_stall_budget, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_kick_order_and_reentry, fx_setup,
                                        fx_teardown),
    };

    return cmocka_run_group_tests_name("router_request_queue", tests, NULL, NULL);
}
