/* The request machinery (router/request_*.c) on the test router of
 * rreq_fixture.h with the real (gRPC) node ops and no node processes: a
 * decode node without a channel fails every request placed on it at
 * once, the path where a placement used to end requests synchronously.
 *
 * - bt_rreq_start never calls the sink: a refusal known at admission is
 *   its status, and on BT_OK the request lives until on_end.
 * - bt_router_queue_kick survives requests ending while it places others:
 *   it used to hold the next queued request across a placement that could
 *   end requests and re-enter the kick; of 8 queued requests 4 never
 *   ended (their clients would wait forever). */
#include "rreq_fixture.h"

#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

static bool g_in_start;
static int  g_ends_in_start;

static void note_end(fx_rec_t *rec)
{
    (void)rec;
    g_ends_in_start += g_in_start;
}

static bt_status_t start(fixture_t *f, fx_rec_t *rec, bt_rreq_t **req_p,
                         char *err, size_t err_size)
{
    bt_status_t s;

    rec->on_end_hook = note_end;
    g_in_start = true;
    s = fx_start(f, rec, 8, err, err_size);
    g_in_start = false;
    *req_p = s == BT_OK ? rec->req : NULL;
    return s;
}

static void set_free(fixture_t *f, uint32_t free_blocks)
{
    fx_set_free(f, f->d[0], free_blocks);
    fx_set_free(f, f->d[1], free_blocks);
}

static void run_loop(fixture_t *f)
{
    fx_pump(f);
}

/* A refusal is a status, never an on_end inside bt_rreq_start. */
static void test_start_never_ends_inside(void **state)
{
    fixture_t *f = *state;
    fx_rec_t rec[3];
    bt_rreq_t *req = NULL;
    char err[256];

    memset(rec, 0, sizeof(rec));
    g_ends_in_start = 0;
    set_free(f, 0);
    f->r.cfg.max_queue = 0;
    /* no room and no queue: 429 from the call itself */
    assert_int_equal(start(f, &rec[0], &req, err, sizeof(err)), BT_ERR_EXHAUSTED);
    assert_null(req);
    assert_int_equal(rec[0].ends, 0);
    assert_non_null(strstr(err, "queue"));
    assert_int_equal(f->r.n_inflight, 0);

    /* room: placed, yet nothing ends until the loop runs, where the
     * channel-less decode node fails it */
    set_free(f, 1000);
    assert_int_equal(start(f, &rec[1], &req, err, sizeof(err)), BT_OK);
    assert_non_null(req);
    assert_int_equal(rec[1].ends, 0);
    assert_string_equal(bt_rreq_id(req), bt_rreq_id(req)); /* alive */
    run_loop(f);
    assert_int_equal(rec[1].ends, 1);
    assert_int_equal(rec[1].status, BT_ERR_PEER_DIED);
    assert_int_equal(g_ends_in_start, 0);
    assert_int_equal(f->r.n_inflight, 0);

    /* queued, then cancelled: on_end inside the cancel, once */
    set_free(f, 0);
    f->r.cfg.max_queue = 10;
    req = NULL;
    assert_int_equal(start(f, &rec[2], &req, err, sizeof(err)), BT_OK);
    assert_int_equal(f->r.n_queued, 1);
    bt_rreq_cancel(req, "test");
    assert_int_equal(rec[2].ends, 1);
    assert_int_equal(rec[2].status, BT_ERR_CANCELLED);
    assert_int_equal(f->r.n_queued, 0);
    assert_int_equal(g_ends_in_start, 0);
}

/* Requests that end while the kick places others (here all of them). */
static void test_kick_survives_ending_requests(void **state)
{
    fixture_t *f = *state;
    fx_rec_t rec[8];
    bt_rreq_t *req;
    char err[256];
    int i, ended = 0;

    memset(rec, 0, sizeof(rec));
    set_free(f, 0);
    f->r.cfg.max_queue = 10;
    for (i = 0; i < 8; i++) {
        assert_int_equal(start(f, &rec[i], &req, err, sizeof(err)), BT_OK);
    }
    assert_int_equal(f->r.n_queued, 8);
    set_free(f, 1000);
    bt_router_queue_kick(&f->r);
    run_loop(f);
    for (i = 0; i < 8; i++) {
        ended += rec[i].ends;
        assert_int_equal(rec[i].deltas, 0);
    }
    assert_int_equal(ended, 8);
    assert_int_equal(f->r.n_queued, 0);
    assert_int_equal(f->r.n_inflight, 0);
    assert_true(bt_list_empty(&f->r.requests));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_start_never_ends_inside,
                                        fx_setup_grpc, fx_teardown),
        cmocka_unit_test_setup_teardown(test_kick_survives_ending_requests,
                                        fx_setup_grpc, fx_teardown),
    };

    return cmocka_run_group_tests_name("router_request", tests, NULL, NULL);
}
