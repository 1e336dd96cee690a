/* n > 1 choices sharing one prefill, with fake nodes (rreq_fixture.h): the
 * leader's DecodeStream carries fork_count and, once reserved, starts the
 * forks, which open DecodeStreams on the same node naming its lease and
 * decode with no prefill; a fork the node refuses is placed and prefilled
 * alone with no failover spent; a fork whose node dies mid-way fails over
 * alone, re-prefilling prompt ++ its own tokens. */
#include "rreq_fixture.h"

#include <stdio.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <cmocka.h>

#define N_FORKS 2
#define LEAD_LEASE 7

typedef struct {
    fixture_t *f;
    fx_rec_t   recs[N_FORKS];
    int        calls;      /* the plan's callback */
} forks_t;

static void start_forks(bt_rreq_t *leader, void *arg)
{
    forks_t *k = arg;
    char err[256];

    k->calls++;
    for (int i = 0; i < N_FORKS; i++) {
        assert_int_equal(fx_start_fork(k->f, &k->recs[i], leader, 100 + (uint64_t)i,
                                       err, sizeof(err)), BT_OK);
    }
}

/* The last call of that kind for that request (open or not), or NULL. */
static fx_call_t *call_of(fixture_t *f, fx_kind_t kind, const bt_rreq_t *req)
{
    for (size_t i = f->n_calls; i-- > 0;) {
        if (f->calls[i].kind == kind &&
            strcmp(f->calls[i].request_id, bt_rreq_id(req)) == 0) {
            return &f->calls[i];
        }
    }
    return NULL;
}

/* The leader reserved on its node; its forks' decode calls open there. */
static fx_call_t *lead_and_fork(fixture_t *f, fx_rec_t *lead, forks_t *k,
                                fx_call_t **pc_p)
{
    char err[256];
    fx_call_t *dc;

    k->f = f;
    assert_int_equal(fx_start(f, lead, 8, err, sizeof(err)), BT_OK);
    bt_rreq_fork_plan(lead->req, N_FORKS, start_forks, k);
    fx_pump(f);
    dc = fx_open(f, FX_DECODE);
    assert_non_null(dc);
    assert_int_equal(dc->fork_count, N_FORKS);
    assert_int_equal(dc->fork_lease, 0);
    fx_reserve(dc, LEAD_LEASE);
    assert_int_equal(k->calls, 1);
    *pc_p = fx_open(f, FX_PREFILL);
    assert_non_null(*pc_p);
    fx_pump(f);
    for (int i = 0; i < N_FORKS; i++) {
        fx_call_t *c = call_of(f, FX_DECODE, k->recs[i].req);

        assert_non_null(c);
        assert_string_equal(c->node, dc->node);
        assert_int_equal(c->fork_lease, LEAD_LEASE);
        assert_int_equal(c->fork_count, 0);
        assert_int_equal(c->n_tokens, 7);
        assert_int_equal(c->n_generated, 0);
        assert_int_equal(c->seed, 100 + i);
    }
    return dc;
}

static void test_one_prefill(void **state)
{
    fixture_t *f = *state;
    fx_rec_t lead = { 0 };
    forks_t k = { 0 };
    static const uint32_t toks[] = { 11, 12, 13 };
    fx_call_t *dc, *pc;

    dc = lead_and_fork(f, &lead, &k, &pc);
    for (int i = 0; i < N_FORKS; i++) {
        fx_call_t *c = call_of(f, FX_DECODE, k.recs[i].req);

        fx_reserve(c, 20 + (uint64_t)i);
        assert_string_equal(fx_state(f, bt_rreq_id(k.recs[i].req)), "decoding");
        fx_tokens(c, toks, 3);
        fx_final(c, BATON__V1__FINISH_REASON__FINISH_REASON_LENGTH);
        assert_int_equal(k.recs[i].ends, 1);
        assert_int_equal(k.recs[i].status, BT_OK);
        assert_int_equal(k.recs[i].n_ids, 3);
    }
    fx_pump(f);
    /* one prefill for the three choices; a later reservation of the
     * leader (none here) would not start forks again */
    assert_int_equal(fx_count(f, FX_PREFILL), 1);
    fx_prefill_ok(pc, 5);
    fx_final(dc, BATON__V1__FINISH_REASON__FINISH_REASON_LENGTH);
    assert_int_equal(lead.ends, 1);
    assert_int_equal(lead.status, BT_OK);
    assert_int_equal(k.calls, 1);
}

static void test_refused_fork_goes_alone(void **state)
{
    fixture_t *f = *state;
    fx_rec_t lead = { 0 };
    forks_t k = { 0 };
    fx_call_t *dc, *pc, *c, *c2, *pc2;

    f->r.cfg.decode_failovers = 0;   /* a refused fork spends none */
    dc = lead_and_fork(f, &lead, &k, &pc);
    c = call_of(f, FX_DECODE, k.recs[0].req);
    fx_fail(c, BT_RPC_FAILED_PRECONDITION, "no prompt kv cache to fork");
    fx_pump(f);
    c2 = call_of(f, FX_DECODE, k.recs[0].req);
    assert_true(c2 != c && !c2->ended);
    assert_int_equal(c2->fork_lease, 0);
    assert_int_equal(c2->n_generated, 0);
    assert_int_equal(k.recs[0].ends, 0);
    fx_reserve(c2, 30);
    pc2 = call_of(f, FX_PREFILL, k.recs[0].req);
    assert_non_null(pc2);
    assert_int_equal(pc2->lease_id, 30);
    assert_int_equal(pc2->n_tokens, 7);
    /* no room for a fork: alone as well, not a failure */
    c = call_of(f, FX_DECODE, k.recs[1].req);
    fx_fail(c, BT_RPC_RESOURCE_EXHAUSTED, "cannot reserve");
    fx_pump(f);
    c2 = call_of(f, FX_DECODE, k.recs[1].req);
    assert_true(c2 != c && !c2->ended && c2->fork_lease == 0);
    assert_int_equal(k.recs[1].ends, 0);
    bt_rreq_cancel(k.recs[0].req, "test over");
    bt_rreq_cancel(k.recs[1].req, "test over");
    bt_rreq_cancel(lead.req, "test over");
    (void)dc;
    (void)pc;
}

static void test_fork_fails_over_alone(void **state)
{
    fixture_t *f = *state;
    fx_rec_t lead = { 0 };
    forks_t k = { 0 };
    static const uint32_t toks[] = { 11, 12 };
    fx_call_t *dc, *pc, *c, *c2, *pc2;
    char why[] = "decode down";

    f->r.cfg.decode_failovers = 1;
    dc = lead_and_fork(f, &lead, &k, &pc);
    c = call_of(f, FX_DECODE, k.recs[0].req);
    fx_reserve(c, 21);
    fx_tokens(c, toks, 2);
    fx_fail(c, BT_RPC_UNAVAILABLE, why);
    fx_pump(f);
    c2 = call_of(f, FX_DECODE, k.recs[0].req);
    assert_true(c2 != c && !c2->ended);
    assert_string_not_equal(c2->node, dc->node);
    assert_int_equal(c2->fork_lease, 0);
    assert_int_equal(c2->n_generated, 2);
    fx_reserve(c2, 31);
    pc2 = call_of(f, FX_PREFILL, k.recs[0].req);
    assert_non_null(pc2);
    assert_int_equal(pc2->n_tokens, 9);   /* prompt ++ its two tokens */
    assert_int_equal(pc2->n_generated, 2);
    /* the other fork and the leader did not notice */
    assert_false(call_of(f, FX_DECODE, k.recs[1].req)->ended);
    assert_false(dc->ended);
    bt_rreq_cancel(k.recs[0].req, "test over");
    bt_rreq_cancel(k.recs[1].req, "test over");
    bt_rreq_cancel(lead.req, "test over");
    (void)pc;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_one_prefill, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_refused_fork_goes_alone, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_fork_fails_over_alone, fx_setup,
                                        fx_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
