/* The daemon skeleton: option checks, the hooks in their order, the
 * SIGTERM drain (until the work in flight ends, or its timeout), and the
 * teardown hooks between the servers' and the client's close. */
#include "daemon/daemon.h"
#include "generate.pb-c.h"

#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
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

/* ---- a drain does not cut off an answer already given ----
 * The handler queues a long answer, ends the call and raises SIGTERM: no
 * work is in flight then, but the answer is still in gRPC's hands. A
 * client in another process (this program re-run with --stream-client)
 * must get every message and the OK status. */
#define DRAIN_MSGS 12
#define DRAIN_IDS  60000    /* ~180 KB a message: beyond gRPC's windows */
#define DRAIN_PATH "/baton.test.Drain/Stream"

static char self_path[4096];

static void h_stream(bt_rpc_call_t *call, const ProtobufCMessage *req,
                     void *arg)
{
    Baton__V1__TokenizeResponse resp = BATON__V1__TOKENIZE_RESPONSE__INIT;
    uint32_t *ids = calloc(DRAIN_IDS, sizeof(*ids));

    (void)req;
    (void)arg;
    assert_non_null(ids);
    for (uint32_t i = 0; i < DRAIN_IDS; i++) {
        ids[i] = 100000 + i;
    }
    resp.token_ids = ids;
    resp.n_token_ids = DRAIN_IDS;
    for (int i = 0; i < DRAIN_MSGS; i++) {
        assert_int_equal(bt_rpc_call_send(call, &resp.base, NULL, NULL), BT_OK);
    }
    assert_int_equal(bt_rpc_call_finish(call), BT_OK);
    free(ids);
    raise(SIGTERM);
}

static bt_status_t h_grpc_register_stream(void *arg, bt_daemon_t *d)
{
    mark(arg, 'g');
    return bt_rpc_server_add_stream(d->grpc, DRAIN_PATH,
                                    &baton__v1__tokenize_request__descriptor,
                                    h_stream, arg);
}

static void test_drain_sends_ended_answers(void **state)
{
    bt_daemon_ops_t o = ops;
    bt_daemon_cfg_t cfg = cfg_of(10000);
    fake_t f;
    bt_daemon_t d;
    char port[16];
    pid_t child;
    int wstatus = 0;

    (void)state;
    memset(&f, 0, sizeof(f));
    cfg.tls = &no_tls;
    cfg.max_message = 4u << 20;
    o.grpc_register = h_grpc_register_stream;
    f.d = &d;
    assert_int_equal(bt_daemon_init(&d, &cfg, &o, &f), BT_OK);
    assert_int_equal(bt_daemon_serve(&d), BT_OK);
    snprintf(port, sizeof(port), "%d", d.grpc_port);
    child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        execl(self_path, self_path, "--stream-client", port, (char *)NULL);
        _exit(127);
    }
    assert_int_equal(run_quietly(&d), 0);
    bt_daemon_cleanup(&d);
    assert_int_equal(waitpid(child, &wstatus, 0), child);
    assert_true(WIFEXITED(wstatus));
    assert_int_equal(WEXITSTATUS(wstatus), 0);
}

typedef struct {
    int           msgs;
    bool          done;
    bt_rpc_code_t code;
} stream_out_t;

static void client_msg(void *arg, const ProtobufCMessage *msg)
{
    const Baton__V1__TokenizeResponse *r =
        (const Baton__V1__TokenizeResponse *)msg;
    stream_out_t *out = arg;

    if (r->n_token_ids == DRAIN_IDS && r->token_ids[DRAIN_IDS - 1] == 100000 + DRAIN_IDS - 1) {
        out->msgs++;
    }
}

static void client_done(void *arg, const bt_rpc_result_t *res)
{
    stream_out_t *out = arg;

    out->done = true;
    out->code = res->code;
}

/* The client half: exits 0 when every message and OK arrived. */
static int stream_client(const char *port)
{
    struct event_base *base = event_base_new();
    bt_rpc_client_opts_t copts = { .max_message_bytes = 4u << 20 };
    bt_rpc_client_t *cli = bt_rpc_client_create(base, &copts);
    Baton__V1__TokenizeRequest req = BATON__V1__TOKENIZE_REQUEST__INIT;
    bt_rpc_call_opts_t opts = { .timeout_ms = 20000 };
    stream_out_t out = { 0, false, BT_RPC_UNKNOWN };
    char target[64];
    bt_rpc_channel_t *ch;

    snprintf(target, sizeof(target), "ipv4:127.0.0.1:%s", port);
    ch = bt_rpc_channel_create(cli, target, NULL);
    req.input_case = BATON__V1__TOKENIZE_REQUEST__INPUT_PROMPT;
    req.prompt = "x";
    if (bt_rpc_client_stream(ch, DRAIN_PATH, &req.base,
                             &baton__v1__tokenize_response__descriptor, &opts,
                             client_msg, client_done, &out, NULL) != BT_OK) {
        return 2;
    }
    while (!out.done) {
        event_base_loop(base, EVLOOP_ONCE);
    }
    bt_rpc_channel_destroy(ch);
    bt_rpc_client_destroy(cli);
    event_base_free(base);
    fprintf(stderr, "stream client: %d of %d messages, %s\n", out.msgs,
            DRAIN_MSGS, bt_rpc_code_name(out.code));
    return out.msgs == DRAIN_MSGS && out.code == BT_RPC_OK ? 0 : 1;
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_checks),
        cmocka_unit_test(test_cleanup_of_zeroed),
        cmocka_unit_test(test_failed_start_tears_down),
        cmocka_unit_test(test_drain_waits_for_work),
        cmocka_unit_test(test_drain_times_out),
        cmocka_unit_test(test_drain_sends_ended_answers),
    };

    bt_log_init("test", BT_LOG_LEVEL_ERROR, BT_LOG_FORMAT_TEXT);
    if (argc == 3 && strcmp(argv[1], "--stream-client") == 0) {
        return stream_client(argv[2]);
    }
    if (realpath("/proc/self/exe", self_path) == NULL) {
        return 1;
    }
    return cmocka_run_group_tests(tests, NULL, NULL);
}
