/* Tokens to text on the worker pool (router/request_detok.c) with fake
 * nodes (rreq_fixture.h) and a real pool: the client gets what the loop
 * alone gives it (the same deltas, text, stop, finish and usage) when the
 * tokens come in one job, in many, or while the request's job is out;
 * a stop string spanning two jobs cuts the text at the same byte and
 * cancels the decode; a client that leaves while its tokens are on the
 * pool, or while its end waits for them, ends once and frees everything
 * (ASan). */
#include "rreq_fixture.h"
#include "request_priv.h"

#include "base/tpool.h"

#include <event2/event.h>
#include <stdio.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <cmocka.h>

#define N_GEN 300

static const Baton__V1__FinishReason LENGTH =
    BATON__V1__FINISH_REASON__FINISH_REASON_LENGTH;
static const Baton__V1__FinishReason STOP =
    BATON__V1__FINISH_REASON__FINISH_REASON_STOP;

/* How the tokens after the first come: all in one loop pass; a pass each
 * chunk with the previous chunk's job still out; or each chunk's text
 * given before the next arrives. */
typedef enum { ONE_PASS, JOB_OUT, DRAINED } arrival_t;

static uint32_t gen_ids[N_GEN];

static void make_ids(void)
{
    /* a spread of the tiny model's vocabulary, words and bytes alike */
    for (size_t i = 0; i < N_GEN; i++) {
        gen_ids[i] = (uint32_t)(100 + (i * 37 + i / 7) % 3900);
    }
}

/* The first token's text given: its job came back. */
static bool first_given(fixture_t *f, void *arg)
{
    (void)f;
    return ((fx_rec_t *)arg)->n_ids == 1;
}

static bool ended(fixture_t *f, void *arg)
{
    (void)f;
    return ((fx_rec_t *)arg)->ends > 0;
}

/* One loop iteration: the pass's job goes to the pool (and stays out
 * until a later iteration reads the pool's wake-up). */
static void one_pass(fixture_t *f)
{
    event_base_loop(f->r.base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
}

/* Started and prefilled (the first token from the prefill; with
 * logprobs from the decode node before it, with its logprobs): the
 * decode call, which streams the rest. */
static fx_call_t *start_decoding(fixture_t *f, fx_rec_t *rec,
                                 const Baton__V1__SamplingParams *sp)
{
    char err[256];
    fx_call_t *dc, *pc;

    assert_int_equal(fx_start_sp(f, rec, sp, err, sizeof(err)), BT_OK);
    fx_pump(f);
    dc = fx_open(f, FX_DECODE);
    assert_non_null(dc);
    fx_reserve(dc, 7);
    pc = fx_open(f, FX_PREFILL);
    assert_non_null(pc);
    if (sp->logprobs > 0) {
        fx_tokens_lp(dc, gen_ids, 1);
    }
    fx_prefill_ok(pc, gen_ids[0]);
    return dc;
}

/* gen_ids[0..n) from the decode node (the first again: it also streams
 * the token the prefill gave) in chunks of `chunk`, then its end. */
static void stream(fixture_t *f, fx_call_t *dc, size_t n, size_t chunk,
                   arrival_t how, bool lp)
{
    /* with logprobs the decode node gave the first token already */
    for (size_t i = lp ? 1 : 0; i < n && !dc->cancelled; i += chunk) {
        size_t k = n - i < chunk ? n - i : chunk;

        if (lp) {
            fx_tokens_lp(dc, gen_ids + i, k);
        } else {
            fx_tokens(dc, gen_ids + i, k);
        }
        if (how == JOB_OUT) {
            one_pass(f);
        } else if (how == DRAINED) {
            fx_pump(f);
        }
    }
    if (!dc->cancelled && !dc->ended) {
        fx_final(dc, LENGTH);
    }
}

static void run(fixture_t *f, fx_rec_t *rec, const Baton__V1__SamplingParams *sp,
                size_t n, size_t chunk, arrival_t how, bool lp)
{
    fx_call_t *dc = start_decoding(f, rec, sp);

    stream(f, dc, n, chunk, how, lp);
    assert_true(fx_wait(f, ended, rec, 20000));
    fx_pump(f);
}

static void assert_same(const fx_rec_t *got, const fx_rec_t *want)
{
    assert_int_equal(got->ends, 1);
    assert_false(got->text_after_end);
    assert_int_equal(got->status, want->status);
    assert_int_equal(got->finish, want->finish);
    assert_int_equal(got->completion_tokens, want->completion_tokens);
    assert_int_equal(got->n_ids, want->n_ids);
    assert_memory_equal(got->ids, want->ids, want->n_ids * sizeof(want->ids[0]));
    assert_int_equal(got->deltas, want->deltas);
    assert_int_equal(got->text_len, want->text_len);
    assert_memory_equal(got->text, want->text, want->text_len);
    assert_memory_equal(got->delta_ends, want->delta_ends,
                        (size_t)want->deltas * sizeof(want->delta_ends[0]));
}

static bt_tpool_t *with_pool(fixture_t *f, int64_t inline_max)
{
    bt_tpool_t *pool = bt_tpool_create(f->r.base, 2, 100);

    assert_non_null(pool);
    f->r.encode_pool = pool;
    f->r.cfg.detok_inline = inline_max;
    return pool;
}

static void without_pool(fixture_t *f, bt_tpool_t *pool)
{
    fx_pump(f);
    bt_tpool_destroy(pool);
    f->r.encode_pool = NULL;
    assert_int_equal(f->r.n_end_held, 0);
}

/* The same deltas as on the loop, however the tokens group into jobs. */
static void test_order_many_per_job(void **state)
{
    fixture_t *f = *state;
    Baton__V1__SamplingParams sp = BATON__V1__SAMPLING_PARAMS__INIT;
    static fx_rec_t want, got;
    static const struct { size_t chunk; arrival_t how; } runs[] = {
        { N_GEN, ONE_PASS }, { 1, ONE_PASS }, { 37, JOB_OUT }, { 1, JOB_OUT },
        { 5, DRAINED },
    };
    bt_tpool_t *pool;

    make_ids();
    sp.max_tokens = N_GEN;
    memset(&want, 0, sizeof(want));
    run(f, &want, &sp, N_GEN, 1, DRAINED, false);  /* on the loop alone */
    assert_int_equal(want.n_ids, N_GEN);
    assert_int_equal(want.finish, LENGTH);

    pool = with_pool(f, 0);
    for (size_t i = 0; i < sizeof(runs) / sizeof(runs[0]); i++) {
        memset(&got, 0, sizeof(got));
        run(f, &got, &sp, N_GEN, runs[i].chunk, runs[i].how, false);
        assert_same(&got, &want);
    }
    /* a small pass done on the loop, the larger ones on the pool */
    f->r.cfg.detok_inline = 4;
    memset(&got, 0, sizeof(got));
    run(f, &got, &sp, N_GEN, 3, JOB_OUT, false);
    assert_same(&got, &want);
    without_pool(f, pool);
}

/* Logprobs copied for the tokens that wait: each delta has its token's. */
static void test_logprobs_wait(void **state)
{
    fixture_t *f = *state;
    Baton__V1__SamplingParams sp = BATON__V1__SAMPLING_PARAMS__INIT;
    static fx_rec_t want, got;
    bt_tpool_t *pool;

    make_ids();
    sp.max_tokens = 64;
    sp.logprobs = 1;
    memset(&want, 0, sizeof(want));
    run(f, &want, &sp, 64, 1, DRAINED, true);
    assert_int_equal(want.n_ids, 64);
    assert_int_equal(want.finish, LENGTH);
    pool = with_pool(f, 0);
    memset(&got, 0, sizeof(got));
    run(f, &got, &sp, 64, 9, JOB_OUT, true);  /* fx_on_delta checks each lp */
    assert_same(&got, &want);
    without_pool(f, pool);
}

/* A stop string made of two tokens' texts, the first token in one job and
 * the second in the next: the text ends where the loop ends it, with
 * STOP, no token after the stop's, and the decode call cancelled. */
static void test_stop_across_jobs(void **state)
{
    fixture_t *f = *state;
    Baton__V1__SamplingParams sp = BATON__V1__SAMPLING_PARAMS__INIT;
    static fx_rec_t full, want, got;
    char stop[BT_STOPSTR_MAX_LEN + 1];
    char *stops[1] = { stop };
    size_t s_tok = 0, e_tok = 0, pos = 0;
    bt_tpool_t *pool;
    fx_call_t *dc;

    make_ids();
    sp.max_tokens = N_GEN;
    memset(&full, 0, sizeof(full));
    run(f, &full, &sp, N_GEN, 1, DRAINED, false);
    /* tokens k and k + 1 with text, whose joined text first occurs
     * across two tokens */
    for (size_t k = 20; k + 1 < N_GEN && e_tok == 0; k++) {
        size_t a = full.delta_ends[k - 1], b = full.delta_ends[k];
        size_t c = full.delta_ends[k + 1];
        const char *hit;

        if (b == a || c == b || c - a > BT_STOPSTR_MAX_LEN) {
            continue;
        }
        memcpy(stop, full.text + a, c - a);
        stop[c - a] = '\0';
        hit = memmem(full.text, full.text_len, stop, c - a);
        pos = (size_t)(hit - full.text);
        for (s_tok = 0; full.delta_ends[s_tok] <= pos; s_tok++) {
        }
        for (e_tok = s_tok; full.delta_ends[e_tok] < pos + (c - a); e_tok++) {
        }
        if (e_tok == s_tok || e_tok + 10 > N_GEN) {
            e_tok = 0;
        }
    }
    assert_true(e_tok > s_tok);
    sp.n_stop = 1;
    sp.stop = stops;

    memset(&want, 0, sizeof(want));
    run(f, &want, &sp, N_GEN, 1, DRAINED, false);
    assert_int_equal(want.finish, STOP);
    assert_int_equal(want.text_len, pos);
    assert_int_equal(want.completion_tokens, e_tok + 1);

    pool = with_pool(f, 0);
    for (int how = JOB_OUT; how <= DRAINED; how++) {
        memset(&got, 0, sizeof(got));
        dc = start_decoding(f, &got, &sp);
        /* up to the stop's first token, then the rest with more after */
        fx_tokens(dc, gen_ids, s_tok + 1);
        if (how == JOB_OUT) {
            one_pass(f);
        } else {
            fx_pump(f);
        }
        fx_tokens(dc, gen_ids + 1 + s_tok, N_GEN - 1 - s_tok);
        assert_true(fx_wait(f, ended, &got, 20000));
        assert_true(dc->cancelled);   /* the stop, found on the pool */
        fx_pump(f);
        assert_same(&got, &want);
    }
    without_pool(f, pool);
}

/* A failure after 100 tokens whose text is still to be made (the decode
 * node's normal end while text is out: test_order_many_per_job): the
 * client gets every text first, then the error. */
static void test_end_after_text(void **state)
{
    fixture_t *f = *state;
    Baton__V1__SamplingParams sp = BATON__V1__SAMPLING_PARAMS__INIT;
    static fx_rec_t want, got;
    bt_tpool_t *pool;
    fx_call_t *dc;

    make_ids();
    sp.max_tokens = N_GEN;
    memset(&want, 0, sizeof(want));
    dc = start_decoding(f, &want, &sp);
    fx_tokens(dc, gen_ids, 100);
    fx_fail(dc, BT_RPC_UNAVAILABLE, "gone");  /* no failover left */
    fx_pump(f);
    assert_int_equal(want.ends, 1);
    assert_int_equal(want.n_ids, 100);

    pool = with_pool(f, 0);
    memset(&got, 0, sizeof(got));
    dc = start_decoding(f, &got, &sp);
    fx_tokens(dc, gen_ids, 100);
    fx_fail(dc, BT_RPC_UNAVAILABLE, "gone");
    assert_int_equal(got.ends, 0);              /* held for the text */
    assert_int_equal(f->r.n_end_held, 1);
    assert_true(fx_wait(f, ended, &got, 20000));
    assert_same(&got, &want);
    assert_non_null(strstr(got.msg, "UNAVAILABLE: gone"));
    without_pool(f, pool);
}

/* Clients that leave while their tokens are on the pool (the request
 * freed before its job comes back), while its end waits for its job, or
 * while its tokens wait for the pass: each ends once, cancelled, gets no
 * text after; another request in the same job is untouched. */
static void test_leave_while_detokenizing(void **state)
{
    fixture_t *f = *state;
    Baton__V1__SamplingParams sp = BATON__V1__SAMPLING_PARAMS__INIT;
    static fx_rec_t want, stay, leave, held, queued;
    bt_tpool_t *pool;
    fx_call_t *dc_stay, *dc_leave, *dc_held, *dc_queued;

    make_ids();
    sp.max_tokens = N_GEN;
    memset(&want, 0, sizeof(want));
    run(f, &want, &sp, N_GEN, N_GEN, ONE_PASS, false);

    pool = with_pool(f, 0);
    memset(&stay, 0, sizeof(stay));
    memset(&leave, 0, sizeof(leave));
    memset(&held, 0, sizeof(held));
    memset(&queued, 0, sizeof(queued));
    dc_stay = start_decoding(f, &stay, &sp);
    dc_leave = start_decoding(f, &leave, &sp);
    dc_held = start_decoding(f, &held, &sp);
    assert_true(fx_wait(f, first_given, &stay, 20000));
    assert_true(fx_wait(f, first_given, &leave, 20000));
    assert_true(fx_wait(f, first_given, &held, 20000));
    dc_queued = start_decoding(f, &queued, &sp);
    assert_true(fx_wait(f, first_given, &queued, 20000));
    fx_tokens(dc_stay, gen_ids, N_GEN);
    fx_tokens(dc_leave, gen_ids, N_GEN);
    fx_tokens(dc_held, gen_ids, N_GEN);
    fx_final(dc_held, LENGTH);                    /* its end waits */
    one_pass(f);
    assert_true(leave.req->job_out);
    assert_true(held.req->job_out && held.req->end_held);
    assert_int_equal(f->r.n_end_held, 1);

    bt_rreq_cancel(leave.req, "the client left");
    bt_rreq_cancel(held.req, "the client left");
    /* the node ends the cancelled stream before the job is back: the
     * request is freed, its job let go */
    fx_fail(dc_leave, BT_RPC_CANCELLED, "Cancelled");
    fx_tokens(dc_queued, gen_ids, N_GEN);
    assert_true(queued.req->job_ready);
    bt_rreq_cancel(queued.req, "the client left");
    fx_fail(dc_queued, BT_RPC_CANCELLED, "Cancelled");
    assert_int_equal(queued.ends, 1);
    assert_int_equal(queued.status, BT_ERR_CANCELLED);
    assert_int_equal(leave.ends, 1);
    assert_int_equal(leave.status, BT_ERR_CANCELLED);
    assert_int_equal(held.ends, 1);
    assert_int_equal(held.status, BT_ERR_CANCELLED);
    assert_int_equal(f->r.n_end_held, 0);

    fx_final(dc_stay, LENGTH);
    assert_true(fx_wait(f, ended, &stay, 20000));
    fx_pump(f);
    assert_same(&stay, &want);
    assert_int_equal(leave.ends, 1);
    assert_false(leave.text_after_end);
    assert_int_equal(held.ends, 1);
    assert_false(held.text_after_end);
    assert_int_equal(queued.n_ids, 1);
    assert_int_equal(queued.ends, 1);
    without_pool(f, pool);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_order_many_per_job, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_logprobs_wait, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_stop_across_jobs, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_end_after_text, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_leave_while_detokenizing, fx_setup,
                                        fx_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
