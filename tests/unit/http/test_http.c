/* A real evhttp server on loopback; a client thread speaks raw HTTP/1.1. */
#include "base/loop.h"
#include "http/http.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

static int port;
static struct event_base *base;
static bool ready_flag;

/* Sends `request` and returns everything read until the server closes. */
static char *roundtrip(const char *request, size_t len)
{
    struct sockaddr_in sa = { 0 };
    char *resp = calloc(1, 1 << 20);
    size_t got = 0;
    ssize_t n;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct timeval tv = { 5, 0 };

    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        close(fd);
        return resp;
    }
    if (write(fd, request, len) != (ssize_t)len) {
        close(fd);
        return resp;
    }
    while ((n = read(fd, resp + got, (1 << 20) - 1 - got)) > 0) {
        got += (size_t)n;
    }
    close(fd);
    return resp;
}

static char *get(const char *path)
{
    char req[512];
    int n = snprintf(req, sizeof(req),
                     "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", path);

    return roundtrip(req, (size_t)n);
}

static char *post(const char *path, const char *body, size_t len)
{
    char *req = malloc(len + 512);
    int n = snprintf(req, 512, "POST %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                     "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                     path, len);
    char *resp;

    memcpy(req + n, body, len);
    resp = roundtrip(req, (size_t)n + len);
    free(req);
    return resp;
}

static void echo_cb(struct evhttp_request *req, void *arg)
{
    bt_buf_t body;
    json_t *reply;
    bt_status_t status;

    (void)arg;
    bt_buf_init(&body, 1024);
    status = bt_http_read_body(req, &body);
    if (status != BT_OK) {
        bt_http_reply_error(req, bt_http_status_code(status),
                            bt_http_error_type(status), "body too large", NULL, NULL);
    } else {
        reply = json_pack("{s:s%}", "echo", body.data ? body.data : "", body.len);
        bt_http_reply_json(req, 200, reply);
        json_decref(reply);
    }
    bt_buf_cleanup(&body);
}

static void sse_cb(struct evhttp_request *req, void *arg)
{
    int i;

    (void)arg;
    bt_http_sse_start(req);
    for (i = 0; i < 3; i++) {
        json_t *ev = json_pack("{s:i}", "i", i);

        bt_http_sse_send_json(req, ev);
        json_decref(ev);
    }
    bt_http_sse_done(req);
}

static bool ready_cb(void *arg, const char **why_p)
{
    (void)arg;
    *why_p = "no decode node registered";
    return ready_flag;
}

typedef void (*client_fn)(void);

static client_fn current_client;

static void *client_main(void *arg)
{
    (void)arg;
    current_client();
    event_base_loopbreak(base);
    return NULL;
}

/* Runs `fn` on a client thread while this thread serves. */
static void with_server(client_fn fn)
{
    bt_metrics_t *reg = bt_metrics_create();
    bt_http_server_t *srv;
    pthread_t t;

    base = bt_loop_create();
    srv = bt_http_server_create(base, "127.0.0.1", 0, 4096, &port);
    assert_non_null(srv);
    assert_true(port > 0);
    assert_int_equal(bt_http_add_standard(srv, ready_cb, NULL, reg), BT_OK);
    bt_counter_inc(bt_metrics_counter(reg, "baton_test_total", "a test counter", NULL));
    assert_int_equal(bt_http_route(srv, "/v1/echo", EVHTTP_REQ_POST, echo_cb, NULL), BT_OK);
    assert_int_equal(bt_http_route(srv, "/v1/echo", EVHTTP_REQ_POST, echo_cb, NULL),
                     BT_ERR_EXISTS);
    assert_int_equal(bt_http_route(srv, "/v1/sse", EVHTTP_REQ_GET, sse_cb, NULL), BT_OK);
    current_client = fn;
    pthread_create(&t, NULL, client_main, NULL);
    event_base_dispatch(base);
    pthread_join(t, NULL);
    bt_http_server_destroy(srv);
    bt_metrics_destroy(reg);
    event_base_free(base);
}

static char *results[8];

static void client_standard(void)
{
    ready_flag = false;
    results[0] = get("/healthz");
    results[1] = get("/readyz");
    ready_flag = true;
    results[2] = get("/readyz");
    results[3] = get("/metrics");
    results[4] = get("/nope?x=1");
}

static void test_standard_endpoints(void **state)
{
    int i;

    (void)state;
    with_server(client_standard);
    assert_non_null(strstr(results[0], "HTTP/1.1 200"));
    assert_non_null(strstr(results[1], "HTTP/1.1 503"));
    assert_non_null(strstr(results[1], "not ready: no decode node registered"));
    assert_non_null(strstr(results[2], "HTTP/1.1 200"));
    assert_non_null(strstr(results[3], "baton_test_total 1\n"));
    assert_non_null(strstr(results[3], "text/plain; version=0.0.4"));
    assert_non_null(strstr(results[4], "HTTP/1.1 404"));
    assert_non_null(strstr(results[4], "\"error\":{\"message\":\"no such endpoint: /nope\""));
    for (i = 0; i < 5; i++) {
        free(results[i]);
    }
}

static void client_bodies(void)
{
    char big[8192];

    memset(big, 'a', sizeof(big));
    results[0] = post("/v1/echo", "{\"a\":1}", 7);
    results[1] = post("/v1/echo", big, sizeof(big)); /* over max_body 4096 */
    results[2] = get("/v1/echo");                    /* wrong method */
    results[3] = post("/v1/echo", "x", 1);           /* server still serves */
}

static void test_bodies_limits_methods(void **state)
{
    int i;

    (void)state;
    with_server(client_bodies);
    assert_non_null(strstr(results[0], "HTTP/1.1 200"));
    assert_non_null(strstr(results[0], "{\"echo\":\"{\\\"a\\\":1}\"}"));
    assert_non_null(strstr(results[1], "HTTP/1.1 413"));
    assert_non_null(strstr(results[2], "HTTP/1.1 405"));
    assert_non_null(strstr(results[2], "\"type\":\"invalid_request_error\""));
    assert_non_null(strstr(results[3], "{\"echo\":\"x\"}"));
    for (i = 0; i < 4; i++) {
        free(results[i]);
    }
}

static void client_sse(void)
{
    results[0] = get("/v1/sse");
}

static void test_sse_stream(void **state)
{
    (void)state;
    with_server(client_sse);
    assert_non_null(strstr(results[0], "Content-Type: text/event-stream"));
    assert_non_null(strstr(results[0], "data: {\"i\":0}\n\n"));
    assert_non_null(strstr(results[0], "data: {\"i\":2}\n\n"));
    assert_non_null(strstr(results[0], "data: [DONE]\n\n"));
    free(results[0]);
}

static void test_status_mapping(void **state)
{
    (void)state;
    assert_int_equal(bt_http_status_code(BT_ERR_INVALID_ARG), 400);
    assert_int_equal(bt_http_status_code(BT_ERR_EXHAUSTED), 429);
    assert_int_equal(bt_http_status_code(BT_ERR_PERMISSION), 401);
    assert_int_equal(bt_http_status_code(BT_ERR_TOO_LARGE), 413);
    assert_int_equal(bt_http_status_code(BT_ERR_INTERNAL), 500);
    assert_string_equal(bt_http_error_type(BT_ERR_EXHAUSTED), "rate_limit_error");
    assert_string_equal(bt_http_error_type(BT_ERR_NOT_FOUND), "invalid_request_error");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_standard_endpoints),
        cmocka_unit_test(test_bodies_limits_methods),
        cmocka_unit_test(test_sse_stream),
        cmocka_unit_test(test_status_mapping),
    };

    return cmocka_run_group_tests_name("http", tests, NULL, NULL);
}
