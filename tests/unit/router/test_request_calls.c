/* A request's node calls with fake nodes (rreq_fixture.h): a prefill
 * retried on the other prefill node with a new reservation; a decode
 * node's failover, after which the tokens continue exactly, each once;
 * lease renewal (NOT_FOUND fails the decode node over at the next tick
 * unless the first token came, UNIMPLEMENTED stops the renewals); a
 * prefill answer lost after the decode node began is not retried; cancel
 * in each state, with every call to a node cancelled and ended. */
#include "rreq_fixture.h"

#include <stdio.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <cmocka.h>

#define T0 104
#define T1 262
#define T2 310
#define T3 554
#define T4 44

static const Baton__V1__FinishReason LENGTH =
    BATON__V1__FINISH_REASON__FINISH_REASON_LENGTH;

static void assert_ids(const fx_rec_t *rec, const uint32_t *ids, size_t n)
{
    assert_int_equal(rec->n_ids, n);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(rec->ids[i], ids[i]);
    }
}

/* Started, placed and its decode stream open: the decode call. */
static fx_call_t *start_to_reserving(fixture_t *f, fx_rec_t *rec)
{
    char err[256];
    fx_call_t *dc;

    assert_int_equal(fx_start(f, rec, 8, err, sizeof(err)), BT_OK);
    fx_pump(f);
    dc = fx_open(f, FX_DECODE);
    assert_non_null(dc);
    assert_string_equal(fx_state(f, bt_rreq_id(rec->req)), "reserving");
    return dc;
}

/* ... and reserved: the prefill call. */
static fx_call_t *reserve(fixture_t *f, fx_rec_t *rec, fx_call_t *dc,
                          uint64_t lease)
{
    fx_call_t *pc;

    fx_reserve(dc, lease);
    pc = fx_open(f, FX_PREFILL);
    assert_non_null(pc);
    assert_int_equal(pc->lease_id, lease);
    assert_string_equal(fx_state(f, bt_rreq_id(rec->req)), "prefilling");
    return pc;
}

static double counter(const bt_counter_t *c)
{
    return bt_metric_value(c);
}

/* The prefill node fails before any token of the decode node reached the
 * router: it may have died after its last write, so the decode node may
 * hold the KV and compute from those blocks already. The retry never
 * writes into them: the decode stream is cancelled (its node frees the
 * sequence or fences the lease) and the retry gets a new reservation on a
 * new stream; the old stream's late tokens are not the client's. */
static void test_prefill_retry(void **state)
{
    fixture_t *f = *state;
    fx_rec_t rec = { 0 };
    static const uint32_t stale[] = { T0, T4 };
    static const uint32_t out[] = { T0, T1, T2 };
    fx_call_t *dc, *pc, *dc2, *pc2;

    f->r.cfg.prefill_retries = 1;
    dc = start_to_reserving(f, &rec);
    pc = reserve(f, &rec, dc, 7);
    fx_fail(pc, BT_RPC_UNAVAILABLE, "prefill down");
    assert_true(dc->cancelled);
    /* tokens the old stream sent before its cancel reached the decode
     * node arrive before its end: they are not the client's */
    fx_tokens(dc, stale, 2);
    assert_int_equal(rec.n_ids, 0);
    assert_null(fx_open(f, FX_PREFILL));
    assert_true(counter(f->r.m.prefill_retries) == 1.0);
    assert_true(counter(f->r.m.decode_failovers) == 0.0);
    fx_pump(f);
    dc2 = fx_open(f, FX_DECODE);
    assert_non_null(dc2);
    assert_ptr_not_equal(dc2, dc);
    assert_int_equal(dc2->n_tokens, 7);
    assert_int_equal(dc2->n_generated, 0);
    /* the other prefill node, a new reservation */
    pc2 = reserve(f, &rec, dc2, 8);
    assert_string_not_equal(pc2->node, pc->node);
    assert_int_equal(pc2->n_tokens, 7);

    fx_prefill_ok(pc2, T0);
    assert_string_equal(fx_state(f, bt_rreq_id(rec.req)), "decoding");
    fx_tokens(dc2, out, 3);
    fx_final(dc2, LENGTH);
    assert_int_equal(rec.ends, 1);
    assert_int_equal(rec.status, BT_OK);
    assert_int_equal(rec.finish, LENGTH);
    assert_ids(&rec, out, 3);
    assert_int_equal(fx_count(f, FX_PREFILL), 2);
}

/* The prefill node dies after its KV cache arrived and the decode node
 * began (tokens come), before its answer: no second prefill writes into
 * the blocks the decode node is using; the stream goes on, each token once. */
static void test_prefill_lost_after_decode_began(void **state)
{
    fixture_t *f = *state;
    fx_rec_t rec = { 0 };
    static const uint32_t first[] = { T0, T1 };
    static const uint32_t rest[] = { T2, T3 };
    static const uint32_t out[] = { T0, T1, T2, T3 };
    fx_call_t *dc, *pc;

    f->r.cfg.prefill_retries = 1;
    dc = start_to_reserving(f, &rec);
    pc = reserve(f, &rec, dc, 7);
    fx_tokens(dc, first, 2);
    fx_fail(pc, BT_RPC_UNAVAILABLE, "recvmsg:Connection reset by peer");
    assert_null(fx_open(f, FX_PREFILL));
    assert_true(counter(f->r.m.prefill_retries) == 0.0);
    assert_false(dc->cancelled);
    assert_string_equal(fx_state(f, bt_rreq_id(rec.req)), "decoding");
    fx_tokens(dc, rest, 2);
    fx_final(dc, LENGTH);
    assert_int_equal(rec.ends, 1);
    assert_int_equal(rec.status, BT_OK);
    assert_ids(&rec, out, 4);
}

/* Retries spent: the request ends, its decode stream is cancelled. */
static void test_prefill_retries_spent(void **state)
{
    fixture_t *f = *state;
    fx_rec_t rec = { 0 };
    fx_call_t *dc, *pc;

    f->r.cfg.prefill_retries = 1;
    dc = start_to_reserving(f, &rec);
    pc = reserve(f, &rec, dc, 7);
    fx_fail(pc, BT_RPC_UNAVAILABLE, "prefill down");
    fx_pump(f);
    dc = fx_open(f, FX_DECODE);
    assert_non_null(dc);
    pc = reserve(f, &rec, dc, 8);
    fx_fail(pc, BT_RPC_INTERNAL, "prefill broke");
    assert_int_equal(rec.ends, 1);
    assert_int_equal(rec.status, BT_ERR_PEER_DIED);
    assert_non_null(strstr(rec.msg, "prefill broke"));
    assert_true(dc->cancelled);
    assert_int_equal(fx_count(f, FX_PREFILL), 2);
    assert_int_equal(fx_count(f, FX_DECODE), 2);
}

/* D fails after three tokens: the other decode node gets them as
 * generated, the new prefill computes prompt + them, and the client sees
 * each token once, in order, whichever of prefill and stream comes first. */
static void test_decode_failover(void **state)
{
    fixture_t *f = *state;
    fx_rec_t rec = { 0 };
    static const uint32_t first[] = { T0, T1, T2 };
    static const uint32_t second[] = { T3, T4 };
    static const uint32_t out[] = { T0, T1, T2, T3, T4 };
    fx_call_t *dc, *pc, *dc2, *pc2;

    f->r.cfg.decode_failovers = 1;
    dc = start_to_reserving(f, &rec);
    pc = reserve(f, &rec, dc, 7);
    fx_prefill_ok(pc, T0);
    fx_tokens(dc, first, 3);
    assert_ids(&rec, first, 3);
    fx_fail(dc, BT_RPC_UNAVAILABLE, "decode down");
    assert_int_equal(rec.ends, 0);
    fx_pump(f);
    dc2 = fx_open(f, FX_DECODE);
    assert_non_null(dc2);
    assert_string_not_equal(dc2->node, dc->node);
    assert_int_equal(dc2->n_tokens, 7);
    assert_int_equal(dc2->n_generated, 3);
    assert_true(counter(f->r.m.decode_failovers) == 1.0);

    pc2 = reserve(f, &rec, dc2, 8);
    assert_int_equal(pc2->n_tokens, 10);
    assert_int_equal(pc2->n_generated, 3);
    /* the stream's first tokens before the prefill's answer */
    fx_tokens(dc2, second, 2);
    fx_prefill_ok(pc2, T3);
    fx_final(dc2, LENGTH);
    assert_int_equal(rec.ends, 1);
    assert_int_equal(rec.status, BT_OK);
    assert_ids(&rec, out, 5);
}

/* Echo's prompt logprobs: asked of the prefill; the decode node's tokens
 * and its end may come first, but the end waits for them; after a
 * failover they are not asked again; wrong ones fail the request. */
static void test_prompt_logprobs(void **state)
{
    fixture_t *f = *state;
    fx_rec_t rec = { 0 }, bad = { 0 };
    static const uint32_t first[] = { T0, T1 };
    static const uint32_t out[] = { T0, T1, T2 };
    char err[256];
    fx_call_t *dc, *pc, *dc2, *pc2;

    f->r.cfg.decode_failovers = 1;
    assert_int_equal(fx_start_echo(f, &rec, 3, err, sizeof(err)), BT_OK);
    fx_pump(f);
    dc = fx_open(f, FX_DECODE);
    fx_reserve(dc, 7);
    pc = fx_open(f, FX_PREFILL);
    assert_true(pc->prompt_logprobs);
    /* the decode node is faster than the prefill's answer */
    fx_prefill_ok_plp(pc, T0, false);
    assert_int_equal(rec.prompts, 1);
    assert_int_equal(rec.n_prompt_lps, 6);
    fx_tokens(dc, first, 2);
    fx_fail(dc, BT_RPC_UNAVAILABLE, "decode down");
    fx_pump(f);
    dc2 = fx_open(f, FX_DECODE);
    assert_non_null(dc2);
    fx_reserve(dc2, 8);
    pc2 = fx_open(f, FX_PREFILL);
    assert_false(pc2->prompt_logprobs);   /* they came already */
    fx_tokens(dc2, out + 2, 1);
    fx_prefill_ok(pc2, T2);
    fx_final(dc2, LENGTH);
    assert_int_equal(rec.ends, 1);
    assert_int_equal(rec.prompts, 1);
    assert_int_equal(rec.status, BT_OK);
    assert_ids(&rec, out, 3);

    /* tokens and the decode node's end before the prefill's answer: the
     * end waits for the prompt logprobs */
    memset(&rec, 0, sizeof(rec));
    assert_int_equal(fx_start_echo(f, &rec, 3, err, sizeof(err)), BT_OK);
    fx_pump(f);
    dc = fx_open(f, FX_DECODE);
    fx_reserve(dc, 9);
    pc = fx_open(f, FX_PREFILL);
    fx_tokens(dc, out, 3);
    fx_final(dc, LENGTH);
    assert_int_equal(rec.ends, 0);
    assert_int_equal(rec.n_ids, 3);
    fx_prefill_ok_plp(pc, T0, false);
    assert_int_equal(rec.prompts, 1);
    assert_int_equal(rec.ends_at_prompt, 0);
    assert_int_equal(rec.ends, 1);
    assert_int_equal(rec.status, BT_OK);
    assert_int_equal(rec.finish, LENGTH);
    assert_ids(&rec, out, 3);

    /* a prompt logprob about another token: the request fails */
    assert_int_equal(fx_start_echo(f, &bad, 3, err, sizeof(err)), BT_OK);
    fx_pump(f);
    dc = fx_open(f, FX_DECODE);
    fx_reserve(dc, 10);
    pc = fx_open(f, FX_PREFILL);
    fx_prefill_ok_plp(pc, T0, true);
    fx_pump(f);
    assert_int_equal(bad.prompts, 0);
    assert_int_equal(bad.ends, 1);
    assert_int_equal(bad.status, BT_ERR_PEER_PROTOCOL);
    assert_non_null(strstr(bad.msg, "prompt logprobs"));
}

/* No failover left: the error names the node and why. */
static void test_decode_failovers_spent(void **state)
{
    fixture_t *f = *state;
    fx_rec_t rec = { 0 };
    fx_call_t *dc, *pc;

    dc = start_to_reserving(f, &rec);
    pc = reserve(f, &rec, dc, 7);
    fx_prefill_ok(pc, T0);
    fx_fail(dc, BT_RPC_UNAVAILABLE, "decode down");
    assert_int_equal(rec.ends, 1);
    assert_int_equal(rec.status, BT_ERR_PEER_DIED);
    assert_non_null(strstr(rec.msg, "decode down"));
    assert_int_equal(fx_count(f, FX_DECODE), 1);
}

static bool renew_open(fixture_t *f, void *arg)
{
    (void)arg;
    return fx_open(f, FX_RENEW) != NULL;
}

static bool decode_calls(fixture_t *f, void *arg)
{
    return fx_count(f, FX_DECODE) >= *(size_t *)arg;
}

/* NOT_FOUND: the lease is gone; at the next tick the decode node fails
 * over (the prefill and the stream are cancelled). */
static void test_lease_not_found(void **state)
{
    fixture_t *f = *state;
    fx_rec_t rec = { 0 };
    static const uint32_t out[] = { T0 };
    fx_call_t *dc, *pc, *rc, *dc2;
    size_t two = 2;

    f->r.cfg.lease_ms = 30;
    f->r.cfg.decode_failovers = 1;
    dc = start_to_reserving(f, &rec);
    pc = reserve(f, &rec, dc, 7);
    assert_true(fx_wait(f, renew_open, NULL, 2000));
    rc = fx_open(f, FX_RENEW);
    assert_int_equal(rc->lease_id, 7);
    assert_string_equal(rc->request_id, bt_rreq_id(rec.req));
    assert_string_equal(rc->node, dc->node);
    fx_fail(rc, BT_RPC_NOT_FOUND, "no such lease");
    assert_true(fx_wait(f, decode_calls, &two, 2000));
    assert_true(pc->cancelled);
    assert_true(dc->cancelled);
    assert_true(counter(f->r.m.decode_failovers) == 1.0);
    dc2 = fx_open(f, FX_DECODE);
    assert_string_not_equal(dc2->node, dc->node);
    assert_int_equal(rec.ends, 0);

    f->r.cfg.lease_ms = 30000;
    pc = reserve(f, &rec, dc2, 8);
    fx_prefill_ok(pc, T0);
    fx_final(dc2, LENGTH);
    assert_int_equal(rec.status, BT_OK);
    assert_ids(&rec, out, 1);
}

/* NOT_FOUND, then the first token before the next tick: D admitted the
 * sequence; no failover. */
static void test_lease_not_found_then_token(void **state)
{
    fixture_t *f = *state;
    fx_rec_t rec = { 0 };
    fx_call_t *dc, *pc;

    f->r.cfg.lease_ms = 30;
    dc = start_to_reserving(f, &rec);
    pc = reserve(f, &rec, dc, 7);
    assert_true(fx_wait(f, renew_open, NULL, 2000));
    fx_fail(fx_open(f, FX_RENEW), BT_RPC_NOT_FOUND, "no such lease");
    fx_prefill_ok(pc, T0);
    assert_false(fx_wait(f, renew_open, NULL, 60));
    assert_int_equal(fx_count(f, FX_DECODE), 1);
    assert_false(dc->cancelled);
    fx_final(dc, LENGTH);
    assert_int_equal(rec.status, BT_OK);
    assert_true(counter(f->r.m.decode_failovers) == 0.0);
}

/* Renewed once, then UNIMPLEMENTED (an older node): no more renewals. */
static void test_lease_unimplemented(void **state)
{
    fixture_t *f = *state;
    fx_rec_t rec = { 0 };
    fx_call_t *dc, *pc;

    f->r.cfg.lease_ms = 30;
    dc = start_to_reserving(f, &rec);
    pc = reserve(f, &rec, dc, 7);
    assert_true(fx_wait(f, renew_open, NULL, 2000));
    fx_renew_ok(fx_open(f, FX_RENEW));
    assert_true(fx_wait(f, renew_open, NULL, 2000));
    fx_fail(fx_open(f, FX_RENEW), BT_RPC_UNIMPLEMENTED, "unknown method");
    assert_false(fx_wait(f, renew_open, NULL, 60));
    assert_int_equal(fx_count(f, FX_RENEW), 2);
    assert_false(pc->cancelled);
    fx_prefill_ok(pc, T0);
    fx_final(dc, LENGTH);
    assert_int_equal(rec.status, BT_OK);
}

/* ---- cancel in each state ---- */

static void assert_cancelled(fixture_t *f, const fx_rec_t *rec)
{
    assert_int_equal(rec->ends, 1);
    assert_int_equal(rec->status, BT_ERR_CANCELLED);
    assert_int_equal(rec->finish, BATON__V1__FINISH_REASON__FINISH_REASON_CANCELLED);
    assert_int_equal(f->r.n_inflight, 0);
    assert_int_equal(f->r.n_queued, 0);
}

static void test_cancel_queued(void **state)
{
    fixture_t *f = *state;
    fx_rec_t rec = { 0 };
    char err[256];

    fx_set_free(f, f->d[0], 0);
    fx_set_free(f, f->d[1], 0);
    assert_int_equal(fx_start(f, &rec, 8, err, sizeof(err)), BT_OK);
    assert_string_equal(fx_state(f, bt_rreq_id(rec.req)), "queued");
    assert_int_equal(f->r.n_queued, 1);
    bt_rreq_cancel(rec.req, "client left");
    assert_cancelled(f, &rec);
    fx_pump(f);
    assert_int_equal(f->n_calls, 0);
}

/* Placed, its decode stream not opened yet (the loop has not run). */
static void test_cancel_placed(void **state)
{
    fixture_t *f = *state;
    fx_rec_t rec = { 0 };
    char err[256];

    assert_int_equal(fx_start(f, &rec, 8, err, sizeof(err)), BT_OK);
    assert_string_equal(fx_state(f, bt_rreq_id(rec.req)), "reserving");
    bt_rreq_cancel(rec.req, "client left");
    assert_cancelled(f, &rec);
    fx_pump(f);
    assert_int_equal(f->n_calls, 0);
}

static void test_cancel_reserving(void **state)
{
    fixture_t *f = *state;
    fx_rec_t rec = { 0 };
    fx_call_t *dc = start_to_reserving(f, &rec);

    bt_rreq_cancel(rec.req, "client left");
    assert_cancelled(f, &rec);
    assert_true(dc->cancelled);
}

static void test_cancel_prefilling(void **state)
{
    fixture_t *f = *state;
    fx_rec_t rec = { 0 };
    fx_call_t *dc = start_to_reserving(f, &rec);
    fx_call_t *pc = reserve(f, &rec, dc, 7);

    assert_int_equal(bt_router_request_cancel_by_id(&f->r, bt_rreq_id(rec.req)),
                     BT_OK);
    assert_cancelled(f, &rec);
    assert_true(dc->cancelled);
    assert_true(pc->cancelled);
}

static void test_cancel_decoding(void **state)
{
    fixture_t *f = *state;
    fx_rec_t rec = { 0 };
    fx_call_t *dc = start_to_reserving(f, &rec);
    fx_call_t *pc = reserve(f, &rec, dc, 7);

    fx_prefill_ok(pc, T0);
    assert_string_equal(fx_state(f, bt_rreq_id(rec.req)), "decoding");
    bt_rreq_cancel(rec.req, "client left");
    assert_cancelled(f, &rec);
    assert_true(dc->cancelled);
    assert_int_equal(rec.n_ids, 1);
}

static void cancel_inside_on_end(fx_rec_t *rec)
{
    bt_rreq_cancel(rec->req, "again");
}

/* Done: a cancel from inside on_end is a no-op, and the id is gone. */
static void test_cancel_done(void **state)
{
    fixture_t *f = *state;
    fx_rec_t rec = { 0 };
    fx_call_t *dc = start_to_reserving(f, &rec);
    fx_call_t *pc = reserve(f, &rec, dc, 7);
    char id[BT_RREQ_ID_MAX + 1];

    snprintf(id, sizeof(id), "%s", bt_rreq_id(rec.req));
    rec.on_end_hook = cancel_inside_on_end;
    fx_prefill_ok(pc, T0);
    fx_final(dc, LENGTH);
    assert_int_equal(rec.ends, 1);
    assert_int_equal(rec.status, BT_OK);
    assert_string_equal(fx_state(f, id), "");
    assert_int_equal(bt_router_request_cancel_by_id(&f->r, id), BT_ERR_NOT_FOUND);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_prefill_retry, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_prefill_lost_after_decode_began,
                                        fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_prefill_retries_spent, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_decode_failover, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_prompt_logprobs, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_decode_failovers_spent, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_lease_not_found, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_lease_not_found_then_token, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_lease_unimplemented, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_cancel_queued, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_cancel_placed, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_cancel_reserving, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_cancel_prefilling, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_cancel_decoding, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_cancel_done, fx_setup, fx_teardown),
    };

    return cmocka_run_group_tests_name("router_request_calls", tests, NULL, NULL);
}
