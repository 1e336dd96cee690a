/* Connections: accept (with a cap), read a request head and body under
 * a timeout, hand the request to its route, write the reply, keep the
 * connection alive or close it (lingering, so the last reply is not lost
 * to a reset).
 *
 * One request at a time per connection: pipelined requests wait in the
 * input buffer until the reply before them ends. */
#include "http_int.h"

#include "base/clock.h"
#include "base/log.h"

#include <event2/bufferevent_ssl.h>
#include <openssl/ssl.h>

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

/* After the last reply: how long a closing connection is drained. */
#define BT_HTTP_LINGER_MS 2000

enum { BT_CHUNK_SIZE, BT_CHUNK_DATA, BT_CHUNK_CRLF, BT_CHUNK_TRAILER };

static void bt_http_timer_arm(bt_http_conn_t *conn, int64_t ms)
{
    struct timeval tv;

    if (ms <= 0) {
        evtimer_del(conn->timer);
        return;
    }
    tv.tv_sec = ms / 1000;
    tv.tv_usec = (ms % 1000) * 1000;
    evtimer_add(conn->timer, &tv);
}

static void bt_http_req_reset(bt_http_req_t *req)
{
    free(req->head.text);
    memset(&req->head, 0, sizeof(req->head));
    req->head.minor = 1;
    evbuffer_drain(req->body, evbuffer_get_length(req->body));
    evbuffer_drain(req->out_hdrs, evbuffer_get_length(req->out_hdrs));
    req->started = false;
    req->streaming = false;
    req->close_cb = NULL;
    req->close_arg = NULL;
    req->t0_ns = 0;
    req->status = 0;
    req->bytes = 0;
    req->rid_sent = false;
    req->logged = false;
    req->rid[0] = '\0';
}

/* An X-Request-Id worth echoing and logging: 1 to 64 letters, digits,
 * '-', '_' or '.' (the router's own rule for request ids). */
static bool bt_http_rid_valid(const char *v)
{
    size_t n = 0;

    for (; v[n] != '\0'; n++) {
        char c = v[n];

        if (n >= BT_HTTP_RID_MAX ||
            !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.')) {
            return false;
        }
    }
    return n > 0;
}

static bool bt_http_is_probe(const char *path)
{
    return path != NULL && (strcmp(path, "/livez") == 0 ||
                            strcmp(path, "/healthz") == 0 ||
                            strcmp(path, "/readyz") == 0 ||
                            strcmp(path, "/metrics") == 0);
}

/* One line per request, once: when its reply ended, or when the
 * connection closed under it (`how`). */
static void bt_http_access_log(bt_http_req_t *req, const char *how)
{
    /* BT_HTTP_* bit i is names[i] */
    static const char *const names[] = { "GET", "POST", "HEAD", "PUT",
                                         "DELETE", "OPTIONS", "PATCH" };
    const char *method = "-";
    double ms;
    unsigned i;

    if (req->logged || !req->conn->srv->access_log) {
        return;
    }
    req->logged = true;
    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (req->head.method == 1 << i) {
            method = names[i];
        }
    }
    ms = req->t0_ns == 0 ? 0.0 : (double)(bt_now_ns() - req->t0_ns) / 1e6;
    if (bt_http_is_probe(req->head.path)) {
        BT_LOG_REQ(DEBUG, req->rid[0] ? req->rid : NULL,
                   "http %s %s %d %llu bytes %.1f ms%s", method, req->head.path,
                   req->status, (unsigned long long)req->bytes, ms, how);
    } else {
        BT_LOG_REQ(INFO, req->rid[0] ? req->rid : NULL,
                   "http %s %s %d %llu bytes %.1f ms%s", method,
                   req->head.path ? req->head.path : "-", req->status,
                   (unsigned long long)req->bytes, ms, how);
    }
}

void bt_http_conn_free(bt_http_conn_t *conn)
{
    bt_http_server_t *srv = conn->srv;

    if (conn->freeing) {
        return;
    }
    conn->freeing = true;
    if (conn->req.started) {
        bt_http_access_log(&conn->req, " (closed early)");
    }
    if (conn->req.close_cb != NULL) {
        void (*cb)(void *) = conn->req.close_cb;

        conn->req.close_cb = NULL;
        cb(conn->req.close_arg);
    }
    bt_list_del(&conn->link);
    srv->n_conns--;
    if (srv->m_open != NULL) {
        bt_gauge_set(srv->m_open, (double)srv->n_conns);
    }
    event_free(conn->timer);
    event_free(conn->kick);
    bufferevent_free(conn->bev);
    free(conn->req.head.text);
    evbuffer_free(conn->req.body);
    evbuffer_free(conn->req.out_hdrs);
    free(conn);
}

/* ---- replies ---- */

static bool bt_http_req_live(const bt_http_req_t *req)
{
    return req->conn != NULL && !req->conn->freeing &&
           req->conn->state != BT_HTTP_CONN_CLOSING;
}

/* A reply ended: read the next request, or close. */
static void bt_http_reply_end(bt_http_req_t *req, bool keep_alive)
{
    bt_http_conn_t *conn = req->conn;

    bt_http_access_log(req, "");
    req->close_cb = NULL;
    if (!keep_alive) {
        conn->state = BT_HTTP_CONN_CLOSING;
        evtimer_del(conn->timer);
        return; /* bt_http_write_cb closes once the reply is out */
    }
    bt_http_req_reset(req);
    conn->state = BT_HTTP_CONN_IDLE;
    conn->head_clock = false;
    bt_http_timer_arm(conn, conn->srv->limits.idle_timeout_ms);
    event_active(conn->kick, EV_TIMEOUT, 0);  /* pipelined input */
}

/* The status line and headers. `len` < 0: a stream. */
static bool bt_http_write_head(bt_http_req_t *req, int code,
                               const char *content_type, ssize_t len)
{
    struct evbuffer *o = bufferevent_get_output(req->conn->bev);
    bool keep_alive = req->head.keep_alive &&
                      !(len < 0 && req->head.minor == 0) &&
                      req->conn->state == BT_HTTP_CONN_BUSY;

    if (!req->rid_sent) {
        /* echo the client's id when the handler set none */
        const char *rid = bt_http_req_header(req, "X-Request-Id");

        if (rid != NULL && bt_http_rid_valid(rid)) {
            bt_http_add_header(req, "X-Request-Id", rid);
        }
    }
    req->started = true;
    req->status = code;
    evbuffer_add_printf(o, "HTTP/1.%d %d %s\r\n", req->head.minor, code,
                        bt_http_reason(code));
    if (content_type != NULL) {
        evbuffer_add_printf(o, "Content-Type: %s\r\n", content_type);
    }
    if (len >= 0) {
        evbuffer_add_printf(o, "Content-Length: %zd\r\n", len);
    } else if (req->head.minor == 1) {
        evbuffer_add_printf(o, "Transfer-Encoding: chunked\r\n");
    }
    if (!keep_alive) {
        evbuffer_add_printf(o, "Connection: close\r\n");
    } else if (req->head.minor == 0) {
        evbuffer_add_printf(o, "Connection: keep-alive\r\n");
    }
    evbuffer_add_buffer(o, req->out_hdrs);
    evbuffer_add(o, "\r\n", 2);
    return keep_alive;
}

void bt_http_add_header(bt_http_req_t *req, const char *name,
                        const char *value)
{
    if (bt_http_req_live(req) && !req->started) {
        evbuffer_add_printf(req->out_hdrs, "%s: %s\r\n", name, value);
        if (strcasecmp(name, "X-Request-Id") == 0) {
            req->rid_sent = true;
            snprintf(req->rid, sizeof(req->rid), "%s", value);
        }
    }
}

void bt_http_reply(bt_http_req_t *req, int code, const char *content_type,
                   const void *body, size_t len)
{
    bool keep_alive;

    if (!bt_http_req_live(req) || req->started) {
        return;
    }
    keep_alive = bt_http_write_head(req, code, content_type, (ssize_t)len);
    if (req->head.method != BT_HTTP_HEAD) {
        bufferevent_write(req->conn->bev, body, len);
        req->bytes += len;
    }
    bt_http_reply_end(req, keep_alive);
}

void bt_http_sse_start(bt_http_req_t *req)
{
    if (!bt_http_req_live(req) || req->started) {
        return;
    }
    bt_http_add_header(req, "Cache-Control", "no-cache");
    req->streaming = true;
    /* keep-alive only with chunked framing: HTTP/1.0 ends at the close */
    req->head.keep_alive = bt_http_write_head(req, 200, "text/event-stream", -1);
}

void bt_http_sse_send(bt_http_req_t *req, const char *data, size_t len)
{
    struct evbuffer *o;

    if (!bt_http_req_live(req) || !req->streaming) {
        return;
    }
    o = bufferevent_get_output(req->conn->bev);
    if (req->head.minor == 1) {
        evbuffer_add_printf(o, "%zx\r\n", len + 8);
    }
    req->bytes += len + 8;
    evbuffer_add(o, "data: ", 6);
    evbuffer_add(o, data, len);
    evbuffer_add(o, "\n\n", 2);
    if (req->head.minor == 1) {
        evbuffer_add(o, "\r\n", 2);
    }
}

void bt_http_sse_done(bt_http_req_t *req)
{
    static const char done[] = "[DONE]";

    if (!bt_http_req_live(req) || !req->streaming) {
        return;
    }
    bt_http_sse_send(req, done, sizeof(done) - 1);
    if (req->head.minor == 1) {
        bufferevent_write(req->conn->bev, "0\r\n\r\n", 5);
    }
    bt_http_reply_end(req, req->head.keep_alive);
}

/* A protocol error before any handler saw the request: JSON, then close. */
static void bt_http_conn_fail(bt_http_conn_t *conn, int code, const char *why)
{
    bt_http_req_t *req = &conn->req;
    const char *err_code = code == 408 ? "request_timeout" :
                           code == 413 ? "request_too_large" :
                           code == 431 ? "headers_too_large" :
                           code == 505 ? "http_version_not_supported" :
                           code == 501 ? "not_implemented" :
                           code == 415 ? "unsupported_media_type" : "bad_request";

    if (req->started) {
        conn->state = BT_HTTP_CONN_CLOSING;
        return;
    }
    req->head.keep_alive = false;
    if (req->head.minor != 0) {
        req->head.minor = 1;
    }
    conn->state = BT_HTTP_CONN_BUSY;   /* so the reply may go out */
    bt_http_reply_error(req, code, "invalid_request_error", why, NULL, err_code);
}

/* ---- reading ---- */

/* Offset just past the empty line that ends a head in b[0..n); 0 when
 * it has not arrived. Bytes before `from` were scanned already (a head
 * dripping in byte by byte must not cost a scan of it all each time). */
static size_t bt_http_head_end(const unsigned char *b, size_t n, size_t from)
{
    for (size_t i = from > 2 ? from - 2 : 0; i + 1 < n; i++) {
        if (b[i] != '\n') {
            continue;
        }
        if (b[i + 1] == '\n') {
            return i + 2;
        }
        if (i + 2 < n && b[i + 1] == '\r' && b[i + 2] == '\n') {
            return i + 3;
        }
    }
    return 0;
}

/* 1: the head is in (state BODY), 0: wait for more, -1: failed. */
static int bt_http_read_head(bt_http_conn_t *conn, struct evbuffer *in)
{
    size_t len = evbuffer_get_length(in);
    size_t n = len < BT_HTTP_MAX_HEAD ? len : BT_HTTP_MAX_HEAD;
    unsigned char *b = evbuffer_pullup(in, (ssize_t)n);
    size_t end = b ? bt_http_head_end(b, n, conn->scanned) : 0;
    bt_http_head_t *h = &conn->req.head;
    const char *why;
    char *text;
    int code;

    conn->scanned = end == 0 ? n : 0;
    if (end == 0) {
        if (len >= BT_HTTP_MAX_HEAD) {
            bt_http_conn_fail(conn, 431, "the request head is over 64 KiB");
            return -1;
        }
        return 0;
    }
    text = malloc(end + 1);
    if (text == NULL) {
        bt_http_conn_fail(conn, 503, "out of memory");
        return -1;
    }
    evbuffer_remove(in, text, end);
    text[end] = '\0';
    code = bt_http_head_parse(text, end, h, &why);
    if (code != 0) {
        /* keep the version for the error's status line when it parsed */
        int minor = h->minor;

        free(h->text);
        memset(h, 0, sizeof(*h));
        h->minor = minor;
        bt_http_conn_fail(conn, code, why);
        return -1;
    }
    if (!h->chunked && h->content_length > conn->srv->max_body) {
        char msg[128];

        snprintf(msg, sizeof(msg), "the request body is over %zu bytes",
                 conn->srv->max_body);
        bt_http_conn_fail(conn, 413, msg);
        return -1;
    }
    conn->req.t0_ns = bt_now_ns();
    conn->body_left = h->chunked ? 0 : h->content_length;
    conn->chunk_state = BT_CHUNK_SIZE;
    if (h->expect_continue && (h->chunked || h->content_length > 0)) {
        bufferevent_write(conn->bev, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    }
    conn->state = BT_HTTP_CONN_BODY;
    bt_http_timer_arm(conn, conn->srv->limits.header_timeout_ms);
    return 1;
}

static bool bt_http_body_add(bt_http_conn_t *conn, struct evbuffer *in,
                             size_t n)
{
    if (evbuffer_get_length(conn->req.body) + n > conn->srv->max_body) {
        char msg[128];

        snprintf(msg, sizeof(msg), "the request body is over %zu bytes",
                 conn->srv->max_body);
        bt_http_conn_fail(conn, 413, msg);
        return false;
    }
    evbuffer_remove_buffer(in, conn->req.body, n);
    return true;
}

/* A chunked body: 1 complete, 0 wait, -1 failed. */
static int bt_http_read_chunked(bt_http_conn_t *conn, struct evbuffer *in)
{
    for (;;) {
        size_t len = evbuffer_get_length(in), n;
        char *line, *end;

        switch (conn->chunk_state) {
        case BT_CHUNK_SIZE:
        case BT_CHUNK_CRLF:
        case BT_CHUNK_TRAILER:
            line = evbuffer_readln(in, &n, EVBUFFER_EOL_CRLF);
            if (line == NULL) {
                if (len > BT_HTTP_MAX_CHUNK_LINE) {
                    bt_http_conn_fail(conn, 400, "malformed chunked body");
                    return -1;
                }
                return 0;
            }
            if (conn->chunk_state == BT_CHUNK_CRLF) {
                bool ok = n == 0;

                free(line);
                if (!ok) {
                    bt_http_conn_fail(conn, 400, "malformed chunked body");
                    return -1;
                }
                conn->chunk_state = BT_CHUNK_SIZE;
                continue;
            }
            if (conn->chunk_state == BT_CHUNK_TRAILER) {
                free(line);
                if (n == 0) {
                    return 1;
                }
                conn->body_left += n;   /* trailer bytes, bounded */
                if (conn->body_left > BT_HTTP_MAX_HEAD) {
                    bt_http_conn_fail(conn, 431, "the request's trailers are "
                                      "over 64 KiB");
                    return -1;
                }
                continue;
            }
            errno = 0;
            conn->body_left = strtoull(line, &end, 16);
            if (end == line || errno != 0 || (*end != '\0' && *end != ';' &&
                                              *end != ' ' && *end != '\t')) {
                free(line);
                bt_http_conn_fail(conn, 400, "malformed chunk size");
                return -1;
            }
            free(line);
            if (conn->body_left > conn->srv->max_body) {
                char msg[128];

                snprintf(msg, sizeof(msg), "the request body is over %zu bytes",
                         conn->srv->max_body);
                bt_http_conn_fail(conn, 413, msg);
                return -1;
            }
            conn->chunk_state = conn->body_left == 0 ? BT_CHUNK_TRAILER
                                                     : BT_CHUNK_DATA;
            continue;
        case BT_CHUNK_DATA:
            n = len < conn->body_left ? len : (size_t)conn->body_left;
            if (n == 0) {
                return 0;
            }
            if (!bt_http_body_add(conn, in, n)) {
                return -1;
            }
            conn->body_left -= n;
            if (conn->body_left == 0) {
                conn->chunk_state = BT_CHUNK_CRLF;
            }
            continue;
        }
    }
}

/* 1: the body is in, 0: wait, -1: failed. */
static int bt_http_read_body_bytes(bt_http_conn_t *conn, struct evbuffer *in)
{
    size_t n;

    if (conn->req.head.chunked) {
        return bt_http_read_chunked(conn, in);
    }
    n = evbuffer_get_length(in);
    if (n > conn->body_left) {
        n = (size_t)conn->body_left;
    }
    evbuffer_remove_buffer(in, conn->req.body, n);
    conn->body_left -= n;
    return conn->body_left == 0 ? 1 : 0;
}

static void bt_http_conn_process(bt_http_conn_t *conn)
{
    struct evbuffer *in = bufferevent_get_input(conn->bev);
    int r;

    if (conn->processing) {
        return;
    }
    conn->processing = true;
    for (;;) {
        switch (conn->state) {
        case BT_HTTP_CONN_IDLE: {
            size_t len = evbuffer_get_length(in);
            unsigned char *b = evbuffer_pullup(in, len < 64 ? (ssize_t)len : 64);
            size_t skip = 0;

            /* empty lines before a request line are allowed (RFC 9112) */
            while (skip < len && skip < 64 && (b[skip] == '\r' || b[skip] == '\n')) {
                skip++;
            }
            evbuffer_drain(in, skip);
            if (evbuffer_get_length(in) == 0) {
                goto out;
            }
            conn->state = BT_HTTP_CONN_HEAD;
            conn->scanned = 0;
            if (!conn->head_clock) {
                conn->head_clock = true;
                bt_http_timer_arm(conn, conn->srv->limits.header_timeout_ms);
            }
            continue;
        }
        case BT_HTTP_CONN_HEAD:
            r = bt_http_read_head(conn, in);
            if (r <= 0) {
                goto out;
            }
            continue;
        case BT_HTTP_CONN_BODY:
            r = bt_http_read_body_bytes(conn, in);
            if (r <= 0) {
                goto out;
            }
            conn->state = BT_HTTP_CONN_BUSY;
            conn->head_clock = false;
            evtimer_del(conn->timer);
            bt_http_dispatch(conn->srv, &conn->req);
            continue;   /* replied at once: the next pipelined request */
        case BT_HTTP_CONN_BUSY:
            /* pipelined input waits; beyond a head's worth, stop reading */
            if (evbuffer_get_length(in) > BT_HTTP_MAX_HEAD) {
                bufferevent_disable(conn->bev, EV_READ);
            }
            goto out;
        case BT_HTTP_CONN_CLOSING:
            evbuffer_drain(in, evbuffer_get_length(in));
            goto out;
        }
    }
out:
    conn->processing = false;
}

static void bt_http_read_cb(struct bufferevent *bev, void *arg)
{
    bt_http_conn_t *conn = arg;

    (void)bev;
    if (conn->state == BT_HTTP_CONN_BODY) {
        /* a body may pause, but not for longer than the header timeout */
        bt_http_timer_arm(conn, conn->srv->limits.header_timeout_ms);
    }
    bt_http_conn_process(conn);
}

static void bt_http_kick_cb(evutil_socket_t fd, short what, void *arg)
{
    bt_http_conn_t *conn = arg;

    (void)fd;
    (void)what;
    bufferevent_enable(conn->bev, EV_READ);
    bt_http_conn_process(conn);
}

static void bt_http_write_cb(struct bufferevent *bev, void *arg)
{
    bt_http_conn_t *conn = arg;

    if (conn->state != BT_HTTP_CONN_CLOSING ||
        evbuffer_get_length(bufferevent_get_output(bev)) > 0) {
        return;
    }
    /* lingering close: our FIN first, then drain what the client still
     * sends, so that unread input does not turn our close into a reset
     * that destroys the reply; over https a close_notify before the FIN */
    if (bufferevent_openssl_get_ssl(bev) != NULL) {
        (void)SSL_shutdown(bufferevent_openssl_get_ssl(bev));
    }
    if (shutdown(bufferevent_getfd(bev), SHUT_WR) != 0) {
        bt_http_conn_free(conn);
        return;
    }
    bufferevent_enable(bev, EV_READ);
    bt_http_timer_arm(conn, BT_HTTP_LINGER_MS);
}

static void bt_http_event_cb(struct bufferevent *bev, short what, void *arg)
{
    bt_http_conn_t *conn = arg;

    (void)bev;
    /* EOF, an error, or a reply the client stopped reading */
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT)) {
        bt_http_conn_free(conn);
    }
}

static void bt_http_timeout_count(bt_http_server_t *srv)
{
    if (srv->m_timeouts != NULL) {
        bt_counter_inc(srv->m_timeouts);
    }
}

static void bt_http_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    bt_http_conn_t *conn = arg;
    char msg[128];

    (void)fd;
    (void)what;
    switch (conn->state) {
    case BT_HTTP_CONN_IDLE:
        if (!conn->head_clock) {
            if (evbuffer_get_length(bufferevent_get_output(conn->bev)) > 0) {
                /* the last reply is still going out: not idle */
                bt_http_timer_arm(conn, conn->srv->limits.idle_timeout_ms);
                return;
            }
            bt_http_timeout_count(conn->srv);
            bt_http_conn_free(conn);
            return;
        }
        /* a new connection that sent nothing */
        bt_http_timeout_count(conn->srv);
        snprintf(msg, sizeof(msg), "the request did not arrive within %lld ms",
                 (long long)conn->srv->limits.header_timeout_ms);
        bt_http_conn_fail(conn, 408, msg);
        return;
    case BT_HTTP_CONN_HEAD:
    case BT_HTTP_CONN_BODY:
        bt_http_timeout_count(conn->srv);
        snprintf(msg, sizeof(msg), "the request did not arrive within %lld ms",
                 (long long)conn->srv->limits.header_timeout_ms);
        bt_http_conn_fail(conn, 408, msg);
        return;
    case BT_HTTP_CONN_BUSY:
        return;
    case BT_HTTP_CONN_CLOSING:
        bt_http_conn_free(conn);    /* lingered long enough */
        return;
    }
}

/* ---- accepting ---- */

void bt_http_answer_close(evutil_socket_t fd, const char *status,
                          const char *headers, const char *body)
{
    char head[256], drain[4096];
    int n;

    if (body != NULL) {
        n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %s\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n%sConnection: close\r\n\r\n",
                     status, strlen(body), headers);
        if (n > 0 && (size_t)n < sizeof(head)) {
            (void)!send(fd, head, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
            (void)!send(fd, body, strlen(body), MSG_NOSIGNAL | MSG_DONTWAIT);
        }
    }
    shutdown(fd, SHUT_WR);
    /* what already arrived, read so the close is not a reset (bounded:
     * a client sending fast must not hold the loop) */
    for (int i = 0; i < 16 && recv(fd, drain, sizeof(drain), MSG_DONTWAIT) > 0; i++) {
    }
    evutil_closesocket(fd);
}

/* Over the cap: a 503 at once, without a connection object. */
static void bt_http_refuse(bt_http_server_t *srv, evutil_socket_t fd)
{
    char *body = bt_http_error_body("server_error",
                                    "the server has too many open connections; "
                                    "retry later", NULL, "too_many_connections");
    char retry[64];
    uint64_t now = bt_now_ms();

    if (srv->m_refused != NULL) {
        bt_counter_inc(srv->m_refused);
    }
    if (now - (uint64_t)srv->last_full_log_ms >= 10000) {
        srv->last_full_log_ms = (int64_t)now;
        bt_warn("http: %zu connections open, the cap; refusing new ones",
                srv->n_conns);
    }
    snprintf(retry, sizeof(retry), "Retry-After: %d\r\n",
             BT_HTTP_RETRY_AFTER_FULL);
    bt_http_answer_close(fd, "503 Service Unavailable", retry, body);
    free(body);
}

void bt_http_accept_cb(struct evconnlistener *l, evutil_socket_t fd,
                       struct sockaddr *sa, int socklen, void *arg)
{
    bt_http_server_t *srv = arg;
    int one = 1;

    (void)l;
    (void)socklen;
    if (srv->limits.max_connections > 0 &&
        srv->n_conns + srv->n_sniffs >= (size_t)srv->limits.max_connections) {
        bt_http_refuse(srv, fd);
        return;
    }
    if (sa->sa_family == AF_INET || sa->sa_family == AF_INET6) {
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    if (srv->ssl_ctx != NULL) {
        bt_http_tls_accept(srv, fd);   /* then bt_http_conn_open */
        return;
    }
    bt_http_conn_open(srv, fd, NULL);
}

void bt_http_conn_open(bt_http_server_t *srv, evutil_socket_t fd, SSL *ssl)
{
    bt_http_conn_t *conn;

    conn = calloc(1, sizeof(*conn));
    if (conn == NULL) {
        SSL_free(ssl);
        evutil_closesocket(fd);
        return;
    }
    conn->srv = srv;
    bt_list_init(&conn->link);
    if (ssl != NULL) {
        conn->bev = bufferevent_openssl_socket_new(srv->base, fd, ssl,
                                                   BUFFEREVENT_SSL_ACCEPTING,
                                                   BEV_OPT_CLOSE_ON_FREE);
        if (conn->bev == NULL) {
            SSL_free(ssl);
        } else {
            /* a client closing without close_notify is an EOF, not an error */
            bufferevent_openssl_set_allow_dirty_shutdown(conn->bev, 1);
        }
    } else {
        conn->bev = bufferevent_socket_new(srv->base, fd, BEV_OPT_CLOSE_ON_FREE);
    }
    conn->timer = evtimer_new(srv->base, bt_http_timer_cb, conn);
    conn->kick = event_new(srv->base, -1, 0, bt_http_kick_cb, conn);
    conn->req.body = evbuffer_new();
    conn->req.out_hdrs = evbuffer_new();
    if (conn->bev == NULL || conn->timer == NULL || conn->kick == NULL ||
        conn->req.body == NULL || conn->req.out_hdrs == NULL) {
        bt_warn("http: out of memory for a connection");
        if (conn->bev != NULL) {
            bufferevent_free(conn->bev);
        } else {
            evutil_closesocket(fd);
        }
        if (conn->timer != NULL) {
            event_free(conn->timer);
        }
        if (conn->kick != NULL) {
            event_free(conn->kick);
        }
        if (conn->req.body != NULL) {
            evbuffer_free(conn->req.body);
        }
        if (conn->req.out_hdrs != NULL) {
            evbuffer_free(conn->req.out_hdrs);
        }
        free(conn);
        return;
    }
    conn->req.conn = conn;
    conn->req.head.minor = 1;
    bufferevent_setcb(conn->bev, bt_http_read_cb, bt_http_write_cb,
                      bt_http_event_cb, conn);
    if (srv->limits.idle_timeout_ms > 0) {
        /* a reply the client does not read for this long: it is gone */
        struct timeval tv = { srv->limits.idle_timeout_ms / 1000,
                              (srv->limits.idle_timeout_ms % 1000) * 1000 };

        bufferevent_set_timeouts(conn->bev, NULL, &tv);
    }
    bufferevent_enable(conn->bev, EV_READ);
    bt_list_add_head(&srv->conns, &conn->link);
    srv->n_conns++;
    if (srv->m_open != NULL) {
        bt_gauge_set(srv->m_open, (double)srv->n_conns);
    }
    conn->state = BT_HTTP_CONN_IDLE;
    conn->head_clock = true;    /* a new connection owes a request */
    bt_http_timer_arm(conn, srv->limits.header_timeout_ms);
}
