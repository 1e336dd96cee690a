/* The daemon skeleton: option checks, the hooks in their order, the
 * SIGTERM drain (until the work in flight ends, or its timeout), and the
 * teardown hooks between the servers' and the client's close. */
#include "daemon/daemon.h"

#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

typedef struct {
    char          order[64];   /* one letter per hook, in call order */
    size_t        inflight;
    bt_daemon_t  *d;
    struct event *ev;
} fake_t;

static void mark(fake_t *f, char c)
{
    size_t n = strlen(f->order);

    if (n + 1 < sizeof(f->order)) {
        f->order[n] = c;
    }
}

static bt_status_t h_grpc_register(void *arg, bt_daemon_t *d)
{
    assert_non_null(d->grpc);
    assert_true(d->grpc_port > 0);
    mark(arg, 'g');
    return BT_OK;
}

static bt_status_t h_grpc_started(void *arg, bt_daemon_t *d)
{
    assert_null(d->http);
    mark(arg, 's');
    return BT_OK;
}

static bt_status_t h_started(void *arg, bt_daemon_t *d)
{
    assert_non_null(d->http);
    assert_true(d->http_port > 0);
    mark(arg, 'h');
    return BT_OK;
}

static bt_status_t h_started_fails(void *arg, bt_daemon_t *d)
{
    (void)d;
    mark(arg, 'h');
    return BT_ERR_INVALID_ARG;
}

static void h_drain(void *arg)
{
    mark(arg, 'd');
}

static size_t h_inflight(void *arg)
{
    return ((fake_t *)arg)->inflight;
}

static void h_stop(void *arg)
{
    fake_t *f = arg;

    assert_non_null(f->d->http);
    mark(f, '1');
}

static void h_release(void *arg)
{
    fake_t *f = arg;

    assert_null(f->d->http);
    assert_null(f->d->grpc);
    assert_non_null(f->d->client);
    mark(f, '2');
}

static void h_free(void *arg)
{
    fake_t *f = arg;

    assert_null(f->d->client);
    assert_non_null(f->d->base);
    if (f->ev != NULL) {
        event_free(f->ev);
        f->ev = NULL;
    }
    mark(f, '3');
}

static const bt_daemon_ops_t ops = {
    .grpc_register = h_grpc_register, .grpc_started = h_grpc_started,
    .started = h_started, .drain = h_drain, .inflight = h_inflight,
    .stop = h_stop, .release = h_release, .free = h_free,
};

static bt_daemon_cfg_t cfg_of(int64_t drain_timeout_ms)
{
    return (bt_daemon_cfg_t){
        .listen = "127.0.0.1", .grpc_port = 0, .http_port = 0,
        .tls = NULL, .max_message = 1u << 20, .send_queue_max = 16,
        .client = true, .max_body = 1 << 16, .access_log = false,
        .drain_timeout_ms = drain_timeout_ms, .work = "requests",
    };
}

static bt_rpc_tls_cfg_t no_tls;

/* The signal, then the last request ending 50 ms later. */
static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    fake_t *f = arg;
    struct timeval later = { 0, 50000 };

    (void)fd;
    (void)what;
    if (strchr(f->order, 'd') == NULL) {
        raise(SIGTERM);
        evtimer_add(f->ev, &later);
    } else {
        f->inflight = 0;
    }
}

/* bt_daemon_run prints the port line: keep it out of the TAP stream */
static int run_quietly(bt_daemon_t *d)
{
    int saved = dup(STDOUT_FILENO), null = open("/dev/null", O_WRONLY);
    int rc;

    fflush(stdout);
    dup2(null, STDOUT_FILENO);
    rc = bt_daemon_run(d);
    fflush(stdout);
    dup2(saved, STDOUT_FILENO);
    close(null);
    close(saved);
    return rc;
}

static void run_case(int64_t drain_timeout_ms, size_t inflight,
                     const char *want)
{
    bt_daemon_cfg_t cfg = cfg_of(drain_timeout_ms);
    fake_t f;
    bt_daemon_t d;
    struct timeval soon = { 0, 10000 };

    memset(&f, 0, sizeof(f));
    cfg.tls = &no_tls;
    f.d = &d;
    f.inflight = inflight;
    assert_int_equal(bt_daemon_init(&d, &cfg, &ops, &f), BT_OK);
    assert_int_equal(bt_daemon_serve(&d), BT_OK);
    f.ev = evtimer_new(d.base, on_tick, &f);
    evtimer_add(f.ev, &soon);
    assert_int_equal(run_quietly(&d), 0);
    bt_daemon_cleanup(&d);
    assert_string_equal(f.order, want);
}

static void test_drain_waits_for_work(void **state)
{
    (void)state;
    run_case(10000, 1, "gshd123");
}

static void test_drain_times_out(void **state)
{
    (void)state;
    run_case(0, 5, "gshd123");
}

static void test_failed_start_tears_down(void **state)
{
    bt_daemon_ops_t o = ops;
    bt_daemon_cfg_t cfg = cfg_of(0);
    fake_t f;
    bt_daemon_t d;

    (void)state;
    memset(&f, 0, sizeof(f));
    cfg.tls = &no_tls;
    o.started = h_started_fails;
    f.d = &d;
    assert_int_equal(bt_daemon_init(&d, &cfg, &o, &f), BT_OK);
    assert_int_equal(bt_daemon_serve(&d), BT_ERR_INVALID_ARG);
    bt_daemon_cleanup(&d);
    assert_string_equal(f.order, "gsh123");
}

static void test_cleanup_of_zeroed(void **state)
{
    bt_daemon_t d;

    (void)state;
    memset(&d, 0, sizeof(d));
    bt_daemon_cleanup(&d);
}

static void test_checks(void **state)
{
    bt_log_level_t level;
    bt_rpc_tls_cfg_t tls;

    (void)state;
    assert_true(bt_daemon_level_parse("t", "debug", &level));
    assert_int_equal(level, BT_LOG_LEVEL_DEBUG);
    assert_false(bt_daemon_level_parse("t", "loud", &level));
    memset(&tls, 0, sizeof(tls));
    assert_string_equal(bt_daemon_tls_mode(&tls), "plaintext");
    tls.enabled = true;
    assert_string_equal(bt_daemon_tls_mode(&tls), "tls");
    tls.ca_file = "ca.pem";
    assert_string_equal(bt_daemon_tls_mode(&tls), "mtls");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_checks),
        cmocka_unit_test(test_cleanup_of_zeroed),
        cmocka_unit_test(test_failed_start_tears_down),
        cmocka_unit_test(test_drain_waits_for_work),
        cmocka_unit_test(test_drain_times_out),
    };

    bt_log_init("test", BT_LOG_LEVEL_ERROR, BT_LOG_FORMAT_TEXT);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
