/* A real server on loopback; a client thread speaks raw HTTP/1.x,
 * including what hostile or slow clients send. */
#include "base/loop.h"
#include "http/http.h"
#include "http/http_int.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
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

/* A connected socket with a receive timeout of `secs`; -1 on failure. */
static int dial(int secs)
{
    struct sockaddr_in sa = { 0 };
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct timeval tv = { secs, 0 };

    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Reads until `needle` has arrived (or the close / timeout); the caller
 * frees. */
static char *read_until(int fd, const char *needle)
{
    char *resp = calloc(1, 1 << 16);
    size_t got = 0;
    ssize_t n;

    while (got < (1 << 16) - 1 &&
           (n = read(fd, resp + got, (1 << 16) - 1 - got)) > 0) {
        got += (size_t)n;
        resp[got] = '\0';
        if (needle != NULL && strstr(resp, needle) != NULL) {
            break;
        }
    }
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

static void echo_cb(bt_http_req_t *req, void *arg)
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

static void sse_cb(bt_http_req_t *req, void *arg)
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
static bt_http_limits_t limits = { 10000, 60000, 1024 };

static void with_server(client_fn fn)
{
    bt_metrics_t *reg = bt_metrics_create();
    bt_http_server_t *srv;
    pthread_t t;

    base = bt_loop_create();
    srv = bt_http_server_create(base, "127.0.0.1", 0, 4096, &port);
    assert_non_null(srv);
    bt_http_server_set_limits(srv, &limits);
    assert_true(port > 0);
    assert_int_equal(bt_http_add_standard(srv, ready_cb, NULL, reg), BT_OK);
    bt_counter_inc(bt_metrics_counter(reg, "baton_test_total", "a test counter", NULL));
    assert_int_equal(bt_http_route(srv, "/v1/echo", BT_HTTP_POST, echo_cb, NULL), BT_OK);
    assert_int_equal(bt_http_route(srv, "/v1/echo", BT_HTTP_POST, echo_cb, NULL),
                     BT_ERR_EXISTS);
    assert_int_equal(bt_http_route(srv, "/v1/sse", BT_HTTP_GET, sse_cb, NULL), BT_OK);
    current_client = fn;
    pthread_create(&t, NULL, client_main, NULL);
    event_base_dispatch(base);
    pthread_join(t, NULL);
    bt_http_server_destroy(srv);
    bt_metrics_destroy(reg);
    event_base_free(base);
}

static char *results[12];

static void client_standard(void)
{
    ready_flag = false;
    results[0] = get("/healthz");
    results[1] = get("/readyz");
    ready_flag = true;
    results[2] = get("/readyz");
    results[3] = get("/metrics");
    results[4] = get("/nope?x=1");
    ready_flag = false;     /* drained: not ready, still alive */
    results[5] = get("/livez");
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
    assert_non_null(strstr(results[5], "HTTP/1.1 200"));
    for (i = 0; i < 6; i++) {
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


/* Protocol errors are JSON in OpenAI's shape, never HTML. */
static const char *const bad_requests[] = {
    "GARBAGE\r\n\r\n",
    "GET /healthz HTTP/2.0\r\n\r\n",
    "POST /v1/echo HTTP/1.1\r\nContent-Length: 100000\r\n\r\n",
    "POST /v1/echo HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
    "POST /v1/echo HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
    "GET /healthz HTTP/1.1\r\nBad Header\r\n\r\n",
    "BREW /v1/echo HTTP/1.1\r\n\r\n",
    "GET /healthz HTTP/1.1\r\nX: a\r\n folded\r\n\r\n",
    "POST /v1/echo HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
    "GET x/healthz HTTP/1.1\r\n\r\n",
    "POST /v1/echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    "POST /v1/echo HTTP/1.1\r\nContent-Encoding: gzip\r\nContent-Length: 2\r\n\r\nab",
};
static const char *const bad_status[] = {
    "HTTP/1.1 400", "HTTP/1.1 505", "HTTP/1.1 413", "HTTP/1.1 400",
    "HTTP/1.1 400", "HTTP/1.1 400", "HTTP/1.1 405", "HTTP/1.1 400",
    "HTTP/1.1 501", "HTTP/1.1 400", "HTTP/1.1 400", "HTTP/1.1 415",
};
#define N_BAD (sizeof(bad_requests) / sizeof(bad_requests[0]))
static char *bad_results[N_BAD + 4];

static void client_bad(void)
{
    char *big = malloc(80 * 1024);
    size_t n;

    for (size_t i = 0; i < N_BAD; i++) {
        bad_results[i] = roundtrip(bad_requests[i], strlen(bad_requests[i]));
    }
    /* a head over 64 KiB */
    n = (size_t)sprintf(big, "GET /healthz HTTP/1.1\r\nX: ");
    memset(big + n, 'a', 70 * 1024);
    n += 70 * 1024;
    memcpy(big + n, "\r\n\r\n", 4);
    bad_results[N_BAD] = roundtrip(big, n + 4);
    /* a NUL in the head */
    bad_results[N_BAD + 1] = roundtrip("GET /healthz HTTP/1.1\r\nX: a\0b\r\n\r\n", 33);
    /* the server still serves */
    bad_results[N_BAD + 2] = get("/healthz");
    /* chunked trailers over 64 KiB */
    n = (size_t)sprintf(big, "POST /v1/echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
                        "\r\n0\r\n");
    for (int i = 0; i < 70; i++) {
        n += (size_t)sprintf(big + n, "X-T: %01000d\r\n", 0);
    }
    bad_results[N_BAD + 3] = roundtrip(big, n);
    free(big);
}

static void test_protocol_errors_are_json(void **state)
{
    (void)state;
    with_server(client_bad);
    for (size_t i = 0; i < N_BAD + 2; i++) {
        const char *want = i < N_BAD ? bad_status[i] :
                           i == N_BAD ? "HTTP/1.1 431" : "HTTP/1.1 400";

        if (strncmp(bad_results[i], want, strlen(want)) != 0 ||
            strstr(bad_results[i], "<HTML") != NULL ||
            strstr(bad_results[i], "Content-Type: application/json") == NULL ||
            strstr(bad_results[i], "{\"error\":{\"message\":") == NULL ||
            strstr(bad_results[i], "\"type\":\"invalid_request_error\"") == NULL) {
            fail_msg("request %zu: want %s as JSON, got: %.300s", i, want,
                     bad_results[i]);
        }
    }
    assert_non_null(strstr(bad_results[6], "Allow: POST"));
    assert_non_null(strstr(bad_results[N_BAD + 2], "HTTP/1.1 200"));
    assert_non_null(strstr(bad_results[N_BAD + 3], "HTTP/1.1 431"));
    for (size_t i = 0; i < N_BAD + 4; i++) {
        free(bad_results[i]);
    }
}

/* Keep-alive, pipelining, chunked bodies, HEAD, 100-continue, HTTP/1.0. */
static void client_framing(void)
{
    static const char two[] =
        "POST /v1/echo HTTP/1.1\r\nContent-Length: 1\r\n\r\nA"
        "POST /v1/echo HTTP/1.1\r\nContent-Length: 1\r\n\r\nB";
    static const char chunked[] =
        "POST /v1/echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
        "Connection: close\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nT: 1\r\n\r\n";
    static const char head[] = "HEAD /healthz HTTP/1.1\r\nConnection: close\r\n\r\n";
    static const char cont[] =
        "POST /v1/echo HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n"
        "Connection: close\r\n\r\n";
    static const char v10[] = "\r\nGET /healthz HTTP/1.0\r\n\r\n";
    static const char sse10[] = "GET /v1/sse HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
    static const char absolute[] = "GET http://x:1/healthz?a=b HTTP/1.1\r\nConnection: close\r\n\r\n";
    int fd = dial(10);

    (void)!write(fd, two, sizeof(two) - 1);
    results[0] = read_until(fd, "{\"echo\":\"B\"}");
    close(fd);
    results[1] = roundtrip(chunked, sizeof(chunked) - 1);
    results[2] = roundtrip(head, sizeof(head) - 1);
    fd = dial(10);
    (void)!write(fd, cont, sizeof(cont) - 1);
    results[3] = read_until(fd, "100 Continue\r\n\r\n");
    (void)!write(fd, "hi", 2);
    results[4] = read_until(fd, NULL);
    close(fd);
    results[5] = roundtrip(v10, sizeof(v10) - 1);
    results[6] = roundtrip(sse10, sizeof(sse10) - 1);
    results[7] = roundtrip(absolute, sizeof(absolute) - 1);
    /* a head that arrives a byte at a time (each byte its own segment) */
    {
        static const char drip[] = "GET /healthz HTTP/1.1\r\nX-A: b\r\n"
                                   "Connection: close\r\n\r\n";
        int one = 1;

        fd = dial(10);
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        for (size_t i = 0; i < sizeof(drip) - 1; i++) {
            struct timespec ts = { 0, 1000 * 1000 };

            (void)!send(fd, drip + i, 1, MSG_NOSIGNAL);
            nanosleep(&ts, NULL);
        }
        results[8] = read_until(fd, NULL);
        close(fd);
    }
}

static void test_framing(void **state)
{
    (void)state;
    with_server(client_framing);
    assert_non_null(strstr(results[0], "{\"echo\":\"A\"}"));
    assert_non_null(strstr(results[0], "{\"echo\":\"B\"}"));
    assert_non_null(strstr(results[1], "{\"echo\":\"abcde\"}"));
    assert_non_null(strstr(results[2], "HTTP/1.1 200"));
    assert_non_null(strstr(results[2], "Content-Length: 3"));
    assert_null(strstr(results[2], "ok\n"));
    assert_non_null(strstr(results[3], "HTTP/1.1 100 Continue"));
    assert_non_null(strstr(results[4], "{\"echo\":\"hi\"}"));
    assert_non_null(strstr(results[5], "HTTP/1.0 200"));
    assert_non_null(strstr(results[5], "Connection: close"));
    /* HTTP/1.0 stream: no Content-Length, no chunks, ends at the close */
    assert_non_null(strstr(results[6], "HTTP/1.0 200"));
    assert_null(strstr(results[6], "Content-Length"));
    assert_null(strstr(results[6], "Transfer-Encoding"));
    assert_non_null(strstr(results[6], "Connection: close"));
    assert_non_null(strstr(results[6], "\r\n\r\ndata: {\"i\":0}\n\ndata: {\"i\":1}"));
    assert_non_null(strstr(results[6], "data: [DONE]\n\n"));
    assert_non_null(strstr(results[7], "HTTP/1.1 200"));
    assert_non_null(strstr(results[7], "\r\n\r\nok\n"));
    assert_non_null(strstr(results[8], "HTTP/1.1 200"));
    for (int i = 0; i < 9; i++) {
        free(results[i]);
    }
}

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double slow_elapsed[4];

/* Slow loris: one byte every 100 ms never completes a head. */
static void client_slow(void)
{
    static const char req[] = "GET /healthz HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
    double t0 = now_s();
    int fd = dial(10);
    size_t i;

    for (i = 0; i < sizeof(req) - 1; i++) {
        struct timespec ts = { 0, 100 * 1000 * 1000 };

        if (send(fd, req + i, 1, MSG_NOSIGNAL) != 1) {
            break;
        }
        nanosleep(&ts, NULL);
        if (now_s() - t0 > 1.0) {
            break;  /* the server had its chance */
        }
    }
    results[0] = read_until(fd, NULL);
    slow_elapsed[0] = now_s() - t0;
    close(fd);
    /* a connection that sends nothing */
    t0 = now_s();
    fd = dial(10);
    results[1] = read_until(fd, NULL);
    slow_elapsed[1] = now_s() - t0;
    close(fd);
    /* an idle keep-alive connection is closed after its reply */
    fd = dial(10);
    (void)!write(fd, "GET /healthz HTTP/1.1\r\n\r\n", 25);
    t0 = now_s();
    results[2] = read_until(fd, NULL);
    slow_elapsed[2] = now_s() - t0;
    close(fd);
    results[3] = get("/healthz");
}

static void test_slow_clients(void **state)
{
    (void)state;
    limits.header_timeout_ms = 400;
    limits.idle_timeout_ms = 400;
    with_server(client_slow);
    limits = (bt_http_limits_t){ 10000, 60000, 1024 };
    assert_non_null(strstr(results[0], "HTTP/1.1 408"));
    assert_non_null(strstr(results[0], "\"code\":\"request_timeout\""));
    assert_true(slow_elapsed[0] < 5.0);
    assert_non_null(strstr(results[1], "HTTP/1.1 408"));
    assert_true(slow_elapsed[1] < 5.0);
    assert_non_null(strstr(results[2], "HTTP/1.1 200"));
    assert_true(slow_elapsed[2] >= 0.3 && slow_elapsed[2] < 5.0);
    assert_non_null(strstr(results[3], "HTTP/1.1 200"));
    for (int i = 0; i < 4; i++) {
        free(results[i]);
    }
}

/* Over the cap: 503 JSON with Retry-After, at once; room again after. */
static void client_cap(void)
{
    int fds[3];

    results[1] = NULL;
    for (int i = 0; i < 3; i++) {
        fds[i] = dial(10);
    }
    usleep(200 * 1000);     /* let the server accept them */
    results[0] = get("/healthz");
    for (int i = 0; i < 3; i++) {
        close(fds[i]);
    }
    for (int i = 0; i < 50; i++) {     /* the server sees the closes */
        free(results[1]);
        results[1] = get("/healthz");
        if (strstr(results[1], "HTTP/1.1 200") != NULL) {
            break;
        }
        usleep(100 * 1000);
    }
}

static void test_connection_cap(void **state)
{
    (void)state;
    limits.max_connections = 3;
    with_server(client_cap);
    limits = (bt_http_limits_t){ 10000, 60000, 1024 };
    assert_non_null(strstr(results[0], "HTTP/1.1 503"));
    assert_non_null(strstr(results[0], "Retry-After: 1"));
    assert_non_null(strstr(results[0], "\"code\":\"too_many_connections\""));
    assert_non_null(strstr(results[1], "HTTP/1.1 200"));
    free(results[0]);
    free(results[1]);
    results[1] = NULL;
}

/* The head parser on mutations of valid heads: never a crash, always 0
 * or an HTTP error status, and what it accepts is consistent. */
static void test_head_parse_mutations(void **state)
{
    static const char *const seeds[] = {
        "POST /v1/completions?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n"
        "Connection: keep-alive\r\nExpect: 100-continue\r\n\r\n",
        "GET http://h:1/p HTTP/1.0\nTransfer-Encoding: chunked\n\n",
        "HEAD / HTTP/1.1\r\nX:\r\nY:  v \t\r\n\r\n",
    };
    unsigned seed = 12345;

    (void)state;
    for (int iter = 0; iter < 20000; iter++) {
        const char *s = seeds[iter % 3];
        size_t len = strlen(s);
        char *text = malloc(len + 1);
        bt_http_head_t h;
        const char *why;
        int code;

        memcpy(text, s, len + 1);
        for (int k = 0; k < 1 + iter % 4; k++) {
            seed = seed * 1103515245u + 12345u;
            text[(seed >> 8) % len] = (char)(seed >> 20);
        }
        /* keep the end a head's end, as the reader guarantees */
        code = bt_http_head_parse(text, len, &h, &why);
        if (code == 0) {
            assert_true(h.minor == 0 || h.minor == 1);
            assert_non_null(h.path);
            assert_true(h.path[0] == '/');
            assert_false(h.chunked && h.content_length > 0);
        } else {
            assert_true(code >= 400 && code < 600);
            assert_non_null(why);
        }
        free(text);
    }
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
        cmocka_unit_test(test_protocol_errors_are_json),
        cmocka_unit_test(test_framing),
        cmocka_unit_test(test_slow_clients),
        cmocka_unit_test(test_connection_cap),
        cmocka_unit_test(test_head_parse_mutations),
        cmocka_unit_test(test_status_mapping),
    };

    return cmocka_run_group_tests_name("http", tests, NULL, NULL);
}
