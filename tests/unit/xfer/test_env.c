/* The UCX defaults the library sets before UCX reads its configuration:
 * each only where UCX_TLS may use its transport, never over a value the
 * user set. */
#include "xfer/xfer.h"

#include "base/loop.h"

#include <event2/event.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

static const char *const names[] = {
    "UCX_POSIX_ERROR_HANDLING", "UCX_SYSV_ERROR_HANDLING",
    "UCX_KEEPALIVE_INTERVAL", "UCX_ADAPTIVE_PROGRESS", "UCX_TCP_RX_SEG_SIZE",
    "UCX_TCP_PUT_ENABLE", "UCX_TCP_CONN_NB", "UCX_TCP_SYN_CNT",
    "UCX_TCP_TX_MAX_BUFS", "UCX_NET_DEVICES",
};

static int clear_env(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        unsetenv(names[i]);
    }
    unsetenv("UCX_TLS");
    return 0;
}

static void assert_env(const char *name, const char *want)
{
    const char *v = getenv(name);

    if (want == NULL) {
        assert_null(v);
    } else {
        assert_non_null(v);
        assert_string_equal(v, want);
    }
}

static void test_tcp_only(void **state)
{
    (void)state;
    setenv("UCX_TLS", "tcp,self", 1);
    bt_xfer_env_defaults();
    assert_env("UCX_TCP_RX_SEG_SIZE", "512K");
    assert_env("UCX_TCP_PUT_ENABLE", "n");
    assert_env("UCX_TCP_CONN_NB", "y");
    assert_env("UCX_TCP_SYN_CNT", "3");
    assert_env("UCX_TCP_TX_MAX_BUFS", "-1");
    assert_env("UCX_ADAPTIVE_PROGRESS", "n");
    assert_env("UCX_KEEPALIVE_INTERVAL", "1s");
    assert_env("UCX_POSIX_ERROR_HANDLING", NULL);
    assert_env("UCX_SYSV_ERROR_HANDLING", NULL);
}

static void test_shm_only(void **state)
{
    (void)state;
    setenv("UCX_TLS", "posix,sysv,cma,self", 1);
    bt_xfer_env_defaults();
    assert_env("UCX_POSIX_ERROR_HANDLING", "y");
    assert_env("UCX_SYSV_ERROR_HANDLING", "y");
    assert_env("UCX_TCP_RX_SEG_SIZE", NULL);
    assert_env("UCX_TCP_PUT_ENABLE", NULL);
    assert_env("UCX_TCP_SYN_CNT", NULL);
}

static void test_all_transports(void **state)
{
    (void)state;
    bt_xfer_env_defaults();   /* UCX_TLS unset: UCX may pick any */
    assert_env("UCX_POSIX_ERROR_HANDLING", "y");
    assert_env("UCX_TCP_RX_SEG_SIZE", "512K");
    clear_env(state);
    setenv("UCX_TLS", "^ib", 1);
    bt_xfer_env_defaults();
    assert_env("UCX_SYSV_ERROR_HANDLING", "y");
    assert_env("UCX_TCP_RX_SEG_SIZE", "512K");
}

/* "^shm" excludes the whole family by its alias: no shm variables. */
static void test_excluded_family(void **state)
{
    (void)state;
    setenv("UCX_TLS", "^shm", 1);
    bt_xfer_env_defaults();
    assert_env("UCX_POSIX_ERROR_HANDLING", NULL);
    assert_env("UCX_SYSV_ERROR_HANDLING", NULL);
    assert_env("UCX_TCP_RX_SEG_SIZE", "512K");
}

static void test_user_value_wins(void **state)
{
    (void)state;
    setenv("UCX_TLS", "tcp", 1);
    setenv("UCX_TCP_RX_SEG_SIZE", "64K", 1);
    setenv("UCX_ADAPTIVE_PROGRESS", "y", 1);
    bt_xfer_env_defaults();
    assert_env("UCX_TCP_RX_SEG_SIZE", "64K");
    assert_env("UCX_ADAPTIVE_PROGRESS", "y");
    assert_env("UCX_KEEPALIVE_INTERVAL", "1s");
}

/* UCX 1.13 spills a SYN_CNT set in the environment onto TX_MAX_BUFS
 * (ctx.c): with the defaults a tcp worker starts, whatever SYN_CNT the
 * user chose. Fails without the TX_MAX_BUFS default ("Invalid memory
 * pool parameter(s)"). */
static void test_tcp_worker_starts(void **state)
{
    static const char *const syn[] = {NULL, "5"};

    (void)state;
    for (size_t i = 0; i < sizeof(syn) / sizeof(syn[0]); i++) {
        struct event_base *base = bt_loop_create();
        bt_xfer_ctx_t *ctx = NULL;

        clear_env(state);
        setenv("UCX_TLS", "tcp,self", 1);
        setenv("UCX_NET_DEVICES", "lo", 1);
        if (syn[i] != NULL) {
            setenv("UCX_TCP_SYN_CNT", syn[i], 1);
        }
        assert_non_null(base);
        assert_int_equal(bt_xfer_ctx_create(base, NULL, &ctx), BT_OK);
        assert_env("UCX_TCP_SYN_CNT", syn[i] != NULL ? syn[i] : "3");
        bt_xfer_ctx_destroy(ctx);
        event_base_free(base);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_tcp_only, clear_env),
        cmocka_unit_test_setup(test_shm_only, clear_env),
        cmocka_unit_test_setup(test_all_transports, clear_env),
        cmocka_unit_test_setup(test_excluded_family, clear_env),
        cmocka_unit_test_setup(test_user_value_wins, clear_env),
        cmocka_unit_test_setup(test_tcp_worker_starts, clear_env),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
