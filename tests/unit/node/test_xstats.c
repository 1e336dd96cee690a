/* The prefill node's transfer statistics per decode peer: a peer dropped
 * to make room for a newer one takes its series out of /metrics. */
#include "node_xstats.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

static char *render(bt_metrics_t *reg)
{
    bt_buf_t b;

    bt_buf_init(&b, 1 << 22);
    assert_int_equal(bt_metrics_render(reg, &b), BT_OK);
    return bt_buf_steal(&b, NULL);
}

static size_t count(const char *text, const char *what)
{
    size_t n = 0;

    for (const char *p = text; (p = strstr(p, what)) != NULL; p++) {
        n++;
    }
    return n;
}

static void test_dropped_peer_leaves_metrics(void **state)
{
    bt_metrics_t *reg = bt_metrics_create_bare();
    bt_xstats_t *xs = bt_xstats_create(reg);
    char peer[32];
    char *text;

    (void)state;
    for (int i = 0; i <= BT_XSTATS_MAX_PEERS; i++) {   /* one too many */
        snprintf(peer, sizeof(peer), "d%d", i);
        bt_xstats_record(xs, peer, 100, 10, 5, BT_OK, 0);
        if (i == 0) {
            bt_xstats_record(xs, peer, 1, 1, 1, BT_ERR_TIMED_OUT, 0);
        }
    }
    text = render(reg);
    /* d0 was idle longest: gone from every family; the rest stay */
    assert_null(strstr(text, "decode=\"d0\""));
    assert_non_null(strstr(text, "baton_node_kv_transfers_total{decode=\"d1\"} 1\n"));
    assert_non_null(strstr(text, "baton_node_kv_transfers_total{decode=\"d64\"} 1\n"));
    assert_int_equal(count(text, "baton_node_kv_transfers_total{"),
                     BT_XSTATS_MAX_PEERS);
    assert_int_equal(count(text, "baton_node_kv_transfer_tail_seconds_count{"),
                     BT_XSTATS_MAX_PEERS);
    free(text);
    /* d0 back: it takes d1's place and starts from 0 */
    bt_xstats_record(xs, "d0", 100, 10, 5, BT_OK, 0);
    text = render(reg);
    assert_null(strstr(text, "decode=\"d1\""));
    assert_non_null(strstr(text, "baton_node_kv_transfers_total{decode=\"d0\"} 1\n"));
    assert_non_null(strstr(text, "baton_node_kv_transfer_errors_total{decode=\"d0\"} 0\n"));
    free(text);
    bt_xstats_destroy(xs);
    bt_metrics_destroy(reg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dropped_peer_leaves_metrics),
    };

    return cmocka_run_group_tests_name("node_xstats", tests, NULL, NULL);
}
