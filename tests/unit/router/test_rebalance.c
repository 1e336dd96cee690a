/* The role controller's rule (router/rebalance.h) on fabricated inputs. */
#include "rebalance.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

/* SLOs 500 ms / 50 ms, headroom 0.8, 10 tokens per ms, dwell 10 s,
 * one move per 5 s */
static const bt_rebalance_cfg_t cfg = { 500, 50, 0.8, 10, 10000, 5000 };

enum { PRE = 1, DEC = 2, BOTH = 3 };

/* f0 flexible prefill, f1 flexible decode, p fixed prefill, d fixed
 * decode; all in their role since t = 0 */
static bt_rebalance_node_t nodes[4];

static bt_rebalance_in_t steady(double ttft, double tpot)
{
    static const bt_rebalance_node_t init[4] = {
        { PRE, 0, true, false, 0 }, { DEC, 0, true, false, 0 },
        { PRE, 0, false, false, 0 }, { DEC, 0, false, false, 0 },
    };
    bt_rebalance_in_t in;

    memcpy(nodes, init, sizeof(nodes));
    memset(&in, 0, sizeof(in));
    in.ttft_ms = ttft;
    in.tpot_ms = tpot;
    in.nodes = nodes;
    in.n_nodes = 4;
    in.now_ms = 60000;
    return in;
}

static void test_meets_slo_no_move(void **state)
{
    bt_rebalance_in_t in = steady(300, 30);
    bt_rebalance_out_t o = bt_rebalance_decide(&cfg, &in);

    (void)state;
    assert_int_equal(o.node, -1);
    assert_non_null(strstr(o.why, "both meet their SLO"));
    /* no samples at all: nothing to go by */
    in = steady(-1, -1);
    assert_int_equal(bt_rebalance_decide(&cfg, &in).node, -1);
}

static void test_ttft_miss_moves_toward_prefill(void **state)
{
    bt_rebalance_in_t in = steady(900, 20);
    bt_rebalance_out_t o = bt_rebalance_decide(&cfg, &in);

    (void)state;
    /* the flexible decode node takes on prefill, keeping decode */
    assert_int_equal(o.node, 1);
    assert_int_equal(o.to, BOTH);
    assert_true(o.prefill_pressure > 1.79 && o.prefill_pressure < 1.81);
    assert_non_null(strstr(o.why, "more prefill: ttft 900 ms of slo 500"));
    /* once it serves both (and dwelt), the next step is prefill alone */
    nodes[1].serving = BOTH;
    o = bt_rebalance_decide(&cfg, &in);
    assert_int_equal(o.node, 1);
    assert_int_equal(o.to, PRE);
}

static void test_queue_alone_counts(void **state)
{
    /* TTFT of the last interval fine, but 8000 tokens queued on the two
     * prefill nodes: 400 ms of wait at 20 tokens/ms is under the SLO ... */
    bt_rebalance_in_t in = steady(100, 20);
    bt_rebalance_out_t o;

    (void)state;
    in.queued_prefill_tokens = 8000;
    assert_int_equal(bt_rebalance_decide(&cfg, &in).node, -1);
    /* ... 16000 is 800 ms: more prefill */
    in.queued_prefill_tokens = 16000;
    o = bt_rebalance_decide(&cfg, &in);
    assert_int_equal(o.node, 1);
    assert_int_equal(o.to, BOTH);
    /* requests waiting for decode room make decode miss */
    in = steady(100, 20);
    in.decode_waiting = 3;
    o = bt_rebalance_decide(&cfg, &in);
    assert_int_equal(o.node, 0);
    assert_int_equal(o.to, BOTH);
    assert_true(o.decode_pressure >= 4.0);
}

static void test_tpot_miss_moves_toward_decode(void **state)
{
    bt_rebalance_in_t in = steady(100, 80);
    bt_rebalance_out_t o = bt_rebalance_decide(&cfg, &in);

    (void)state;
    assert_int_equal(o.node, 0);
    assert_int_equal(o.to, BOTH);
    nodes[0].serving = BOTH;
    o = bt_rebalance_decide(&cfg, &in);
    assert_int_equal(o.node, 0);
    assert_int_equal(o.to, DEC);
}

static void test_hysteresis(void **state)
{
    bt_rebalance_in_t in = steady(900, 45);   /* decode at 0.9: no headroom */
    bt_rebalance_out_t o = bt_rebalance_decide(&cfg, &in);

    (void)state;
    assert_int_equal(o.node, -1);
    assert_non_null(strstr(o.why, "no headroom"));
    in = steady(900, 90);                       /* both miss */
    assert_int_equal(bt_rebalance_decide(&cfg, &in).node, -1);
    /* one move per interval */
    in = steady(900, 20);
    in.last_move_ms = in.now_ms - 4000;
    o = bt_rebalance_decide(&cfg, &in);
    assert_int_equal(o.node, -1);
    assert_string_equal(o.why, "one move per interval");
    in.last_move_ms = in.now_ms - 5000;
    assert_int_equal(bt_rebalance_decide(&cfg, &in).node, 1);
    /* dwell: a node 9 s in its role stays */
    nodes[1].role_since_ms = in.now_ms - 9000;
    assert_int_equal(bt_rebalance_decide(&cfg, &in).node, -1);
    nodes[1].role_since_ms = in.now_ms - 10000;
    assert_int_equal(bt_rebalance_decide(&cfg, &in).node, 1);
    /* a move under way: wait for it */
    nodes[0].moving_to = BOTH;
    o = bt_rebalance_decide(&cfg, &in);
    assert_int_equal(o.node, -1);
    assert_string_equal(o.why, "a move is under way");
}

static void test_never_the_last_of_a_role(void **state)
{
    bt_rebalance_in_t in = steady(100, 80);
    bt_rebalance_out_t o;

    (void)state;
    /* f0 serves both, the fixed prefill node drains: f0 is the only one
     * left serving prefill, so it does not go to decode alone */
    nodes[0].serving = BOTH;
    nodes[2].draining = true;
    o = bt_rebalance_decide(&cfg, &in);
    assert_int_equal(o.node, -1);
    assert_non_null(strstr(o.why, "no flexible node may move"));
    /* fixed nodes never move */
    in = steady(900, 20);
    nodes[1].flexible = false;
    o = bt_rebalance_decide(&cfg, &in);
    assert_int_equal(o.node, -1);
    /* the one longest in its role goes first */
    in = steady(900, 20);
    nodes[0].serving = DEC;
    nodes[0].role_since_ms = 100;
    nodes[1].role_since_ms = 50;
    assert_int_equal(bt_rebalance_decide(&cfg, &in).node, 1);
    nodes[1].role_since_ms = 200;
    assert_int_equal(bt_rebalance_decide(&cfg, &in).node, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_meets_slo_no_move),
        cmocka_unit_test(test_ttft_miss_moves_toward_prefill),
        cmocka_unit_test(test_queue_alone_counts),
        cmocka_unit_test(test_tpot_miss_moves_toward_decode),
        cmocka_unit_test(test_hysteresis),
        cmocka_unit_test(test_never_the_last_of_a_role),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
