#include "rpc_test.h"

#include "base/loop.h"
#include "generate.pb-c.h"
#include "test_time.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

static void bt_rpc_test_on_timeout(evutil_socket_t fd, short what, void *arg)
{
    event_base_loopbreak(arg);
}

static void bt_rpc_test_on_tick(evutil_socket_t fd, short what, void *arg)
{
    event_base_loopbreak(arg);
}

bool bt_rpc_run_until(struct event_base *base, const bool *flag,
                      uint64_t timeout_ms)
{
    uint64_t wait_ms = bt_test_scaled_ms(timeout_ms);
    struct timeval tv = { (time_t)(wait_ms / 1000),
                          (suseconds_t)(wait_ms % 1000) * 1000 };
    struct timeval tick = { 0, 5000 };
    struct event *timeout = evtimer_new(base, bt_rpc_test_on_timeout, base);
    struct event *ticker = event_new(base, -1, EV_PERSIST,
                                     bt_rpc_test_on_tick, base);
    bool timed_out = false;

    evtimer_add(timeout, &tv);
    evtimer_add(ticker, &tick);
    while (!*flag && !timed_out) {
        event_base_loop(base, EVLOOP_ONCE);
        timed_out = !evtimer_pending(timeout, NULL);
    }
    event_free(ticker);
    event_free(timeout);
    return *flag;
}

bool bt_rpc_run_until_count(struct event_base *base, const int *counter,
                            int target, uint64_t timeout_ms)
{
    uint64_t wait_ms = bt_test_scaled_ms(timeout_ms);
    struct timeval tv = { (time_t)(wait_ms / 1000),
                          (suseconds_t)(wait_ms % 1000) * 1000 };
    struct timeval tick = { 0, 5000 };
    struct event *timeout = evtimer_new(base, bt_rpc_test_on_timeout, base);
    struct event *ticker = event_new(base, -1, EV_PERSIST,
                                     bt_rpc_test_on_tick, base);
    bool timed_out = false;

    evtimer_add(timeout, &tv);
    evtimer_add(ticker, &tick);
    while (*counter < target && !timed_out) {
        event_base_loop(base, EVLOOP_ONCE);
        timed_out = !evtimer_pending(timeout, NULL);
    }
    event_free(ticker);
    event_free(timeout);
    return *counter >= target;
}

void bt_rpc_fixture_up(bt_rpc_fixture_t *fx, uint32_t max_message,
                       const bt_rpc_tls_t *server_tls,
                       const bt_rpc_tls_t *client_tls)
{
    bt_rpc_server_opts_t so = { .max_message_bytes = max_message };
    bt_rpc_client_opts_t co = { .max_message_bytes = 0 };

    memset(fx, 0, sizeof(*fx));
    fx->base = bt_loop_create();
    assert_non_null(fx->base);
    fx->pool = bt_tpool_create(fx->base, 1, 1024);
    assert_non_null(fx->pool);
    fx->srv = bt_rpc_server_create(fx->base, &so);
    assert_non_null(fx->srv);
    assert_int_equal(bt_echo_register(&fx->echo, fx->srv, fx->base, fx->pool),
                     BT_OK);
    assert_int_equal(bt_rpc_server_listen(fx->srv, "ipv4:127.0.0.1:0",
                                          server_tls, &fx->port), BT_OK);
    assert_true(fx->port > 0);
    assert_int_equal(bt_rpc_server_start(fx->srv), BT_OK);
    snprintf(fx->target, sizeof(fx->target), "ipv4:127.0.0.1:%d", fx->port);
    fx->cli = bt_rpc_client_create(fx->base, &co);
    assert_non_null(fx->cli);
    fx->ch = bt_rpc_channel_create(fx->cli, fx->target, client_tls);
    assert_non_null(fx->ch);
}

void bt_rpc_fixture_down(bt_rpc_fixture_t *fx)
{
    bt_rpc_client_destroy(fx->cli);
    bt_rpc_server_destroy(fx->srv);
    bt_tpool_destroy(fx->pool);
    event_base_free(fx->base);
}

void bt_rpc_test_unary_done(void *arg, const bt_rpc_result_t *res,
                            const ProtobufCMessage *resp)
{
    bt_rpc_unary_out_t *out = arg;

    out->done = true;
    out->code = res->code;
    out->status = res->status;
    snprintf(out->message, sizeof(out->message), "%s", res->message);
    if (resp != NULL) {
        const Baton__V1__TokenizeResponse *tr = (const void *)resp;

        out->n_ids = tr->n_token_ids < 64 ? tr->n_token_ids : 64;
        if (out->n_ids > 0) {
            memcpy(out->ids, tr->token_ids, out->n_ids * sizeof(uint32_t));
        }
        out->max_context = tr->max_context;
    }
}

void bt_rpc_test_tokenize(bt_rpc_fixture_t *fx, const char *prompt,
                          uint64_t timeout_ms, const bt_rpc_md_t *md,
                          size_t n_md, bt_rpc_unary_out_t *out)
{
    Baton__V1__TokenizeRequest req = BATON__V1__TOKENIZE_REQUEST__INIT;
    bt_rpc_call_opts_t opts = { timeout_ms, md, n_md };

    memset(out, 0, sizeof(*out));
    req.model = "echo";
    req.input_case = BATON__V1__TOKENIZE_REQUEST__INPUT_PROMPT;
    req.prompt = (char *)prompt;
    assert_int_equal(bt_rpc_client_unary(fx->ch, "/baton.v1.Generate/Tokenize",
                                         &req.base,
                                         &baton__v1__tokenize_response__descriptor,
                                         &opts, bt_rpc_test_unary_done, out,
                                         NULL), BT_OK);
    assert_true(bt_rpc_run_until(fx->base, &out->done, 10000));
}
