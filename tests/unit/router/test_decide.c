/* The disaggregate-or-not rule (router/decide.h) on its own. */
#include "decide.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <math.h>
#include <stdint.h>
#include <cmocka.h>

static const bt_disagg_cfg_t cfg_auto = { BT_DISAGG_AUTO, 64, 10.0, 2.0, 0, 0 };

static bt_decide_in_t uncached(uint64_t prompt)
{
    bt_decide_in_t in = { prompt, prompt, prompt, 0, 0, false, -1, 0, 0,
                          INFINITY, INFINITY };

    return in;
}

static void expect(const bt_disagg_cfg_t *cfg, const bt_decide_in_t *in,
                   bt_decide_t d, bt_decide_reason_t why)
{
    bt_decide_out_t o = bt_decide(cfg, in);

    assert_string_equal(bt_decide_str(o.decision), bt_decide_str(d));
    assert_string_equal(bt_decide_reason_str(o.reason), bt_decide_reason_str(why));
}

static void test_decide_prompt_length(void **state)
{
    bt_decide_in_t in = uncached(40);
    bt_decide_out_t o;

    (void)state;
    expect(&cfg_auto, &in, BT_DECIDE_LOCAL, BT_DECIDE_SHORT);
    in = uncached(63);
    expect(&cfg_auto, &in, BT_DECIDE_LOCAL, BT_DECIDE_SHORT);
    /* long, nothing cached, P idle: P computes it, D keeps decoding */
    in = uncached(1000);
    o = bt_decide(&cfg_auto, &in);
    assert_int_equal(o.decision, BT_DECIDE_DISAGG);
    assert_int_equal(o.reason, BT_DECIDE_OFFLOAD);
    assert_true(o.xfer_ms == 2.0);                 /* none measured: the default */
    assert_true(o.cost_local == 2000.0);
    assert_true(o.cost_disagg == 1000.0 + 2.0 * 10.0);
    in = uncached(64);
    expect(&cfg_auto, &in, BT_DECIDE_DISAGG, BT_DECIDE_OFFLOAD);
}

static void test_decide_cache_place(void **state)
{
    bt_decide_in_t in = uncached(1000);

    (void)state;
    /* D holds most of the prompt: what is left is short */
    in.uncached_d = 40;
    expect(&cfg_auto, &in, BT_DECIDE_LOCAL, BT_DECIDE_CACHED);
    /* D holds some, P more: P still pays */
    in.uncached_d = 700;
    in.uncached_p = 100;
    expect(&cfg_auto, &in, BT_DECIDE_DISAGG, BT_DECIDE_OFFLOAD);
    /* P holds nothing, D half: P's full prefill costs more than D's rest */
    in.uncached_d = 450;
    in.uncached_p = 1000;
    expect(&cfg_auto, &in, BT_DECIDE_LOCAL, BT_DECIDE_BUSY);
}

static void test_decide_queues_and_transfer(void **state)
{
    bt_decide_in_t in = uncached(1000);
    bt_decide_out_t o;

    (void)state;
    in.queued_p = 5000;                   /* P is far behind */
    expect(&cfg_auto, &in, BT_DECIDE_LOCAL, BT_DECIDE_BUSY);
    in.queued_d = 5000;                   /* so is D */
    expect(&cfg_auto, &in, BT_DECIDE_DISAGG, BT_DECIDE_OFFLOAD);
    in = uncached(1000);
    in.xfer_ms = 150.0;                   /* measured, slow: 1500 tokens' worth */
    o = bt_decide(&cfg_auto, &in);
    assert_int_equal(o.decision, BT_DECIDE_LOCAL);
    assert_int_equal(o.reason, BT_DECIDE_BUSY);
    assert_true(o.xfer_ms == 150.0);
    in.xfer_ms = 0.5;                     /* measured, fast */
    expect(&cfg_auto, &in, BT_DECIDE_DISAGG, BT_DECIDE_OFFLOAD);
    /* a P that also decodes pays the stall too: equal nodes stay local */
    in.p_decodes = true;
    expect(&cfg_auto, &in, BT_DECIDE_LOCAL, BT_DECIDE_BUSY);
    in.uncached_p = 100;
    expect(&cfg_auto, &in, BT_DECIDE_DISAGG, BT_DECIDE_OFFLOAD);
}

/* With a TPOT SLO: a prefill on D whose time, with what D has queued,
 * is more than D's sequences can absorb (the stall budget) goes to P,
 * whatever the costs say (the case the cost rule alone kept local: P far
 * behind). */
static void test_decide_tpot_guard(void **state)
{
    bt_disagg_cfg_t slo = cfg_auto;
    bt_decide_in_t in = uncached(1024);
    bt_decide_out_t o;

    (void)state;
    slo.slo_tpot_ms = 25.0;
    in.queued_p = 6656;                   /* P is far behind */
    expect(&cfg_auto, &in, BT_DECIDE_LOCAL, BT_DECIDE_BUSY);
    expect(&slo, &in, BT_DECIDE_LOCAL, BT_DECIDE_BUSY);  /* D decodes nothing */
    /* 1024 tokens at 10 per ms: 102.4 ms of stall */
    in.budget_d_ms = 100.0;
    expect(&cfg_auto, &in, BT_DECIDE_LOCAL, BT_DECIDE_BUSY);  /* no SLO, no guard */
    expect(&slo, &in, BT_DECIDE_DISAGG, BT_DECIDE_TPOT);
    o = bt_decide(&slo, &in);
    assert_true(o.stall_d_ms == 102.4);
    assert_true(o.stall_p_ms == (6656.0 + 1024.0) / 10.0);
    in.budget_d_ms = 103.0;
    expect(&slo, &in, BT_DECIDE_LOCAL, BT_DECIDE_BUSY);
    /* D's measured speed, not the configured one: twice as fast fits */
    in.budget_d_ms = 100.0;
    in.rate_d = 20.0;
    expect(&slo, &in, BT_DECIDE_LOCAL, BT_DECIDE_BUSY);
    in.rate_d = 5.0;
    in.budget_d_ms = 200.0;                /* 204.8 ms */
    expect(&slo, &in, BT_DECIDE_DISAGG, BT_DECIDE_TPOT);
    /* what D has queued stalls its sequences first */
    in.rate_d = 0;
    in.budget_d_ms = 150.0;
    expect(&slo, &in, BT_DECIDE_LOCAL, BT_DECIDE_BUSY);
    in.queued_d = 500;                     /* 152.4 ms */
    expect(&slo, &in, BT_DECIDE_DISAGG, BT_DECIDE_TPOT);
    /* D holds all but 40 tokens: a short step, it stays */
    in.queued_d = 0;
    in.uncached_d = 40;
    expect(&slo, &in, BT_DECIDE_LOCAL, BT_DECIDE_CACHED);
    /* a short prompt is short for the batch too, while the budget holds it */
    in = uncached(40);
    in.budget_d_ms = 10.0;
    expect(&slo, &in, BT_DECIDE_LOCAL, BT_DECIDE_SHORT);
    in.budget_d_ms = 3.0;
    expect(&slo, &in, BT_DECIDE_DISAGG, BT_DECIDE_TPOT);
    /* P decodes sequences of its own with less room: no side is free of
     * the stall, the cost rule chooses */
    in = uncached(1024);
    in.queued_p = 6656;
    in.budget_d_ms = 100.0;
    in.p_decodes = true;
    in.budget_p_ms = 500.0;                /* P's stall: 768 ms */
    expect(&slo, &in, BT_DECIDE_LOCAL, BT_DECIDE_BUSY);
    in.budget_p_ms = INFINITY;
    expect(&slo, &in, BT_DECIDE_DISAGG, BT_DECIDE_TPOT);
    in.budget_p_ms = 800.0;
    expect(&slo, &in, BT_DECIDE_DISAGG, BT_DECIDE_TPOT);
    /* forced modes ignore it */
    slo.mode = BT_DISAGG_NEVER;
    expect(&slo, &in, BT_DECIDE_LOCAL, BT_DECIDE_FORCED);
    slo.mode = BT_DISAGG_AUTO;
    assert_false(bt_decide_stalls(&cfg_auto, 100000, 0, 1.0));
    assert_false(bt_decide_stalls(&slo, 100000, 0, INFINITY));
    assert_true(bt_decide_stalls(&slo, 251, 0, 25.0));
    assert_false(bt_decide_stalls(&slo, 250, 0, 25.0));
    assert_false(bt_decide_stalls(&slo, 500, 20.0, 25.0));
    assert_true(bt_decide_stalls(&slo, 501, 20.0, 25.0));
    assert_true(bt_decide_rate(&slo, 0) == 10.0);
    assert_true(bt_decide_rate(&slo, 3.5) == 3.5);
    assert_string_equal(bt_decide_reason_str(BT_DECIDE_TPOT), "tpot");
}

/* The measured speeds time the stalls only: the costs stay in tokens,
 * the transfer turned into tokens at the configured rate. */
static void test_decide_measured_rates(void **state)
{
    bt_decide_in_t in = uncached(1000);
    bt_decide_out_t o;

    (void)state;
    in.queued_p = 1500;                    /* P behind: local */
    in.rate_p = 40.0;
    in.rate_d = 5.0;
    o = bt_decide(&cfg_auto, &in);
    assert_int_equal(o.decision, BT_DECIDE_LOCAL);
    assert_int_equal(o.reason, BT_DECIDE_BUSY);
    assert_true(o.cost_local == 2000.0);
    assert_true(o.cost_disagg == 2500.0 + 2.0 * 10.0);
    assert_true(o.stall_d_ms == 200.0);
    assert_true(o.stall_p_ms == 2500.0 / 40.0);
}

/* One request's part of a stall budget: 25 ms x 15 gaps less the time
 * decoding so far and a 2 ms step per token left; nothing to protect
 * once it missed an SLO, or with one token or none left. */
static void test_decide_seq_budget(void **state)
{
    bt_disagg_cfg_t slo = cfg_auto;

    (void)state;
    slo.slo_tpot_ms = 25.0;
    slo.slo_ttft_ms = 800.0;
    assert_true(bt_decide_seq_budget(&slo, 16, 0, 100.0, 0.0, 2.0) == 375.0 - 32.0);
    assert_true(bt_decide_seq_budget(&slo, 16, 6, 100.0, 50.0, 2.0) == 375.0 - 50.0 - 20.0);
    assert_true(bt_decide_seq_budget(&slo, 16, 6, 801.0, 50.0, 2.0) == 0.0);
    assert_true(bt_decide_seq_budget(&slo, 16, 6, 100.0, 400.0, 2.0) == 0.0);
    assert_true(bt_decide_seq_budget(&slo, 16, 16, 100.0, 50.0, 2.0) == 0.0);
    assert_true(bt_decide_seq_budget(&slo, 1, 0, 100.0, 0.0, 2.0) == 0.0);
    slo.slo_ttft_ms = 0;                         /* no TTFT SLO: any TTFT counts */
    assert_true(bt_decide_seq_budget(&slo, 16, 6, 5000.0, 50.0, 2.0) == 305.0);
}

static void test_decide_forced(void **state)
{
    bt_disagg_cfg_t always = cfg_auto, never = cfg_auto;
    bt_decide_in_t in = uncached(10);

    (void)state;
    always.mode = BT_DISAGG_ALWAYS;
    never.mode = BT_DISAGG_NEVER;
    expect(&always, &in, BT_DECIDE_DISAGG, BT_DECIDE_FORCED);
    in = uncached(100000);
    expect(&never, &in, BT_DECIDE_LOCAL, BT_DECIDE_FORCED);
    in.queued_p = 1u << 30;
    expect(&always, &in, BT_DECIDE_DISAGG, BT_DECIDE_FORCED);
    assert_string_equal(bt_disagg_mode_str(BT_DISAGG_AUTO), "auto");
    assert_string_equal(bt_disagg_mode_str(BT_DISAGG_ALWAYS), "always");
    assert_string_equal(bt_disagg_mode_str(BT_DISAGG_NEVER), "never");
    assert_string_equal(bt_decide_reason_str(BT_DECIDE_N_REASONS), "unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decide_prompt_length),
        cmocka_unit_test(test_decide_cache_place),
        cmocka_unit_test(test_decide_queues_and_transfer),
        cmocka_unit_test(test_decide_tpot_guard),
        cmocka_unit_test(test_decide_measured_rates),
        cmocka_unit_test(test_decide_seq_budget),
        cmocka_unit_test(test_decide_forced),
    };

    return cmocka_run_group_tests_name("router_decide", tests, NULL, NULL);
}
