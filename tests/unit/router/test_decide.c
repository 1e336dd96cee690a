/* The disaggregate-or-not rule (router/decide.h) on its own. */
#include "decide.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

static const bt_disagg_cfg_t cfg_auto = { BT_DISAGG_AUTO, 64, 10.0, 2.0, 0 };

static bt_decide_in_t uncached(uint64_t prompt)
{
    bt_decide_in_t in = { prompt, prompt, prompt, 0, 0, false, -1, 0, 0, 0 };

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

/* With a TPOT SLO: a prefill on D whose one chunk would hold D's decoding
 * sequences longer than the SLO goes to P, whatever the token costs say
 * (the case the cost rule alone kept local: P far behind). */
static void test_decide_tpot_guard(void **state)
{
    bt_disagg_cfg_t slo = cfg_auto;
    bt_decide_in_t in = uncached(1024);

    (void)state;
    slo.slo_tpot_ms = 25.0;               /* 250 tokens at 10 per ms */
    in.queued_p = 6656;                   /* P is far behind */
    expect(&cfg_auto, &in, BT_DECIDE_LOCAL, BT_DECIDE_BUSY);
    expect(&slo, &in, BT_DECIDE_LOCAL, BT_DECIDE_BUSY);  /* D decodes nothing */
    in.running_d = 1;
    expect(&cfg_auto, &in, BT_DECIDE_LOCAL, BT_DECIDE_BUSY);  /* no SLO, no guard */
    expect(&slo, &in, BT_DECIDE_DISAGG, BT_DECIDE_TPOT);
    /* the stall is one chunk: 200-token chunks fit, 251 do not */
    in.chunk_d = 200;
    expect(&slo, &in, BT_DECIDE_LOCAL, BT_DECIDE_BUSY);
    in.chunk_d = 251;
    expect(&slo, &in, BT_DECIDE_DISAGG, BT_DECIDE_TPOT);
    /* D holds all but 240 tokens: one short step, it stays */
    in.uncached_d = 240;
    expect(&slo, &in, BT_DECIDE_LOCAL, BT_DECIDE_BUSY);
    in.uncached_d = 40;
    expect(&slo, &in, BT_DECIDE_LOCAL, BT_DECIDE_CACHED);
    /* a short prompt is short for the batch too */
    in = uncached(40);
    in.running_d = 8;
    expect(&slo, &in, BT_DECIDE_LOCAL, BT_DECIDE_SHORT);
    /* P decodes sequences of its own: no side is free of the stall, the
     * cost rule chooses */
    in = uncached(1024);
    in.queued_p = 6656;
    in.running_d = 1;
    in.p_decodes = true;
    in.running_p = 2;
    expect(&slo, &in, BT_DECIDE_LOCAL, BT_DECIDE_BUSY);
    in.running_p = 0;
    expect(&slo, &in, BT_DECIDE_DISAGG, BT_DECIDE_TPOT);
    /* forced modes ignore it */
    slo.mode = BT_DISAGG_NEVER;
    expect(&slo, &in, BT_DECIDE_LOCAL, BT_DECIDE_FORCED);
    assert_false(bt_decide_stalls(&cfg_auto, 100000, 0, 10));
    assert_false(bt_decide_stalls(&slo, 100000, 0, 0));
    assert_true(bt_decide_stalls(&slo, 251, 0, 1));
    assert_false(bt_decide_stalls(&slo, 250, 0, 1));
    assert_string_equal(bt_decide_reason_str(BT_DECIDE_TPOT), "tpot");
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
        cmocka_unit_test(test_decide_forced),
    };

    return cmocka_run_group_tests_name("router_decide", tests, NULL, NULL);
}
