#include "http.h"

#include "base/json.h"
#include "base/log.h"

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define BT_HTTP_MAX_ROUTES 64
#define BT_HTTP_MAX_HEADERS (64 * 1024)

typedef struct {
    char              *path;
    int                methods;
    bt_http_handler_cb cb;
    void              *arg;
} bt_http_route_t;

struct bt_http_server {
    struct evhttp          *http;
    bt_http_route_t         routes[BT_HTTP_MAX_ROUTES];
    int                     n_routes;
    bt_http_ready_cb        ready;
    void                   *ready_arg;
    bt_metrics_t           *metrics;
};

int bt_http_status_code(bt_status_t status)
{
    switch (status) {
    case BT_OK:                   return 200;
    case BT_ERR_INVALID_ARG:
    case BT_ERR_TRUNCATED:        return 400;
    case BT_ERR_PERMISSION:       return 401;
    case BT_ERR_NOT_FOUND:        return 404;
    case BT_ERR_TOO_LARGE:        return 413;
    case BT_ERR_EXHAUSTED:        return 429;
    case BT_ERR_UNSUPPORTED:      return 501;
    case BT_ERR_SHUTDOWN:
    case BT_ERR_PEER_UNREACHABLE: return 503;
    case BT_ERR_TIMED_OUT:        return 504;
    case BT_ERR_CANCELLED:        return 499;
    default:                      return 500;
    }
}

const char *bt_http_error_type(bt_status_t status)
{
    switch (bt_http_status_code(status)) {
    case 400:
    case 404:
    case 413: return "invalid_request_error";
    case 401: return "authentication_error";
    case 429: return "rate_limit_error";
    default:  return "server_error";
    }
}

void bt_http_reply_json(struct evhttp_request *req, int code,
                        const json_t *body)
{
    struct evbuffer *out = evbuffer_new();
    char *text = bt_json_dump(body);

    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "application/json");
    if (out == NULL || text == NULL) {
        evhttp_send_error(req, 500, "out of memory");
    } else {
        evbuffer_add(out, text, strlen(text));
        evbuffer_add(out, "\n", 1);
        evhttp_send_reply(req, code, NULL, out);
    }
    free(text);
    if (out != NULL) {
        evbuffer_free(out);
    }
}

void bt_http_reply_error(struct evhttp_request *req, int code,
                         const char *type, const char *message,
                         const char *param, const char *err_code)
{
    json_t *body = json_pack("{s:{s:s, s:s, s:s?, s:s?}}", "error",
                             "message", message, "type", type,
                             "param", param, "code", err_code);

    if (body == NULL) { /* e.g. invalid UTF-8 in the message */
        body = json_pack("{s:{s:s, s:s, s:n, s:n}}", "error", "message",
                         "request rejected", "type", type, "param", "code");
    }
    bt_http_reply_json(req, code, body);
    json_decref(body);
}

static bt_http_route_t *bt_http_find(bt_http_server_t *srv, const char *path)
{
    int i;

    for (i = 0; i < srv->n_routes; i++) {
        if (strcmp(srv->routes[i].path, path) == 0) {
            return &srv->routes[i];
        }
    }
    return NULL;
}

/* Every request enters here: route by exact path (the query is ignored). */
static void bt_http_dispatch(struct evhttp_request *req, void *arg)
{
    bt_http_server_t *srv = arg;
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    bt_http_route_t *route;
    char msg[256];

    if (path == NULL || path[0] == '\0') {
        path = "/";
    }
    route = bt_http_find(srv, path);
    if (route == NULL) {
        snprintf(msg, sizeof(msg), "no such endpoint: %.200s", path);
        bt_http_reply_error(req, 404, "invalid_request_error", msg, NULL,
                            "not_found");
        return;
    }
    if (!(evhttp_request_get_command(req) & route->methods)) {
        bt_http_reply_error(req, 405, "invalid_request_error",
                            "method not allowed on this endpoint", NULL,
                            "method_not_allowed");
        return;
    }
    route->cb(req, route->arg);
}

bt_http_server_t *bt_http_server_create(struct event_base *base,
                                        const char *addr, int port,
                                        size_t max_body, int *bound_port_p)
{
    bt_http_server_t *srv = calloc(1, sizeof(*srv));
    struct evhttp_bound_socket *sock;

    if (srv == NULL) {
        return NULL;
    }
    srv->http = evhttp_new(base);
    if (srv->http == NULL) {
        free(srv);
        return NULL;
    }
    evhttp_set_max_body_size(srv->http, (ev_ssize_t)max_body);
    evhttp_set_max_headers_size(srv->http, BT_HTTP_MAX_HEADERS);
    evhttp_set_allowed_methods(srv->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST |
                                          EVHTTP_REQ_HEAD | EVHTTP_REQ_DELETE |
                                          EVHTTP_REQ_PUT | EVHTTP_REQ_OPTIONS);
    evhttp_set_gencb(srv->http, bt_http_dispatch, srv);
    sock = evhttp_bind_socket_with_handle(srv->http, addr, (ev_uint16_t)port);
    if (sock == NULL) {
        bt_error("http: cannot listen on %s:%d: %s", addr, port, bt_strerror(errno));
        evhttp_free(srv->http);
        free(srv);
        return NULL;
    }
    if (bound_port_p != NULL) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        evutil_socket_t fd = evhttp_bound_socket_get_fd(sock);

        *bound_port_p = port;
        if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0) {
            if (ss.ss_family == AF_INET) {
                *bound_port_p = ntohs(((struct sockaddr_in *)&ss)->sin_port);
            } else if (ss.ss_family == AF_INET6) {
                *bound_port_p = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
            }
        }
    }
    return srv;
}

void bt_http_server_destroy(bt_http_server_t *srv)
{
    int i;

    if (srv == NULL) {
        return;
    }
    evhttp_free(srv->http);
    for (i = 0; i < srv->n_routes; i++) {
        free(srv->routes[i].path);
    }
    free(srv);
}

bt_status_t bt_http_route(bt_http_server_t *srv, const char *path,
                          int methods, bt_http_handler_cb cb, void *arg)
{
    bt_http_route_t *r;

    if (bt_http_find(srv, path) != NULL) {
        return BT_ERR_EXISTS;
    }
    if (srv->n_routes == BT_HTTP_MAX_ROUTES) {
        return BT_ERR_EXHAUSTED;
    }
    r = &srv->routes[srv->n_routes];
    r->path = strdup(path);
    if (r->path == NULL) {
        return BT_ERR_NO_MEMORY;
    }
    r->methods = methods;
    r->cb = cb;
    r->arg = arg;
    srv->n_routes++;
    return BT_OK;
}

static void bt_http_reply_text(struct evhttp_request *req, int code,
                               const char *content_type, const char *text,
                               size_t len)
{
    struct evbuffer *out = evbuffer_new();

    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      content_type);
    evbuffer_add(out, text, len);
    evhttp_send_reply(req, code, NULL, out);
    evbuffer_free(out);
}

static void bt_http_healthz(struct evhttp_request *req, void *arg)
{
    (void)arg;
    bt_http_reply_text(req, 200, "text/plain", "ok\n", 3);
}

static void bt_http_readyz(struct evhttp_request *req, void *arg)
{
    bt_http_server_t *srv = arg;
    const char *why = "not ready";
    char text[256];
    int n;

    if (srv->ready == NULL || srv->ready(srv->ready_arg, &why)) {
        bt_http_reply_text(req, 200, "text/plain", "ready\n", 6);
        return;
    }
    n = snprintf(text, sizeof(text), "not ready: %s\n", why);
    bt_http_reply_text(req, 503, "text/plain", text,
                       n < (int)sizeof(text) ? (size_t)n : sizeof(text) - 1);
}

static void bt_http_metrics(struct evhttp_request *req, void *arg)
{
    bt_http_server_t *srv = arg;
    bt_buf_t b;

    bt_buf_init(&b, 64u << 20);
    if (srv->metrics != NULL && bt_metrics_render(srv->metrics, &b) != BT_OK) {
        bt_buf_cleanup(&b);
        evhttp_send_error(req, 500, "metrics too large");
        return;
    }
    bt_http_reply_text(req, 200, "text/plain; version=0.0.4",
                       b.data ? b.data : "", b.len);
    bt_buf_cleanup(&b);
}

bt_status_t bt_http_add_standard(bt_http_server_t *srv, bt_http_ready_cb ready,
                                 void *ready_arg, bt_metrics_t *reg)
{
    bt_status_t status;

    srv->ready = ready;
    srv->ready_arg = ready_arg;
    srv->metrics = reg;
    status = bt_http_route(srv, "/healthz", EVHTTP_REQ_GET | EVHTTP_REQ_HEAD,
                           bt_http_healthz, srv);
    if (status == BT_OK) {
        status = bt_http_route(srv, "/readyz", EVHTTP_REQ_GET | EVHTTP_REQ_HEAD,
                               bt_http_readyz, srv);
    }
    if (status == BT_OK) {
        status = bt_http_route(srv, "/metrics", EVHTTP_REQ_GET,
                               bt_http_metrics, srv);
    }
    return status;
}

bt_status_t bt_http_read_body(struct evhttp_request *req, bt_buf_t *out)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    bt_status_t status;

    status = bt_buf_reserve(out, len);
    if (status != BT_OK) {
        return status;
    }
    evbuffer_copyout(in, out->data + out->len, len);
    out->len += len;
    out->data[out->len] = '\0';
    return BT_OK;
}

void bt_http_sse_start(struct evhttp_request *req)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);

    evhttp_add_header(h, "Content-Type", "text/event-stream");
    evhttp_add_header(h, "Cache-Control", "no-cache");
    evhttp_send_reply_start(req, 200, "OK");
}

void bt_http_sse_send(struct evhttp_request *req, const char *data, size_t len)
{
    struct evbuffer *out = evbuffer_new();

    if (out == NULL) {
        return;
    }
    evbuffer_add(out, "data: ", 6);
    evbuffer_add(out, data, len);
    evbuffer_add(out, "\n\n", 2);
    evhttp_send_reply_chunk(req, out);
    evbuffer_free(out);
}

void bt_http_sse_send_json(struct evhttp_request *req, const json_t *event)
{
    char *text = bt_json_dump(event);

    if (text != NULL) {
        bt_http_sse_send(req, text, strlen(text));
        free(text);
    }
}

void bt_http_sse_done(struct evhttp_request *req)
{
    static const char done[] = "[DONE]";

    bt_http_sse_send(req, done, sizeof(done) - 1);
    evhttp_send_reply_end(req);
}

void bt_http_on_close(struct evhttp_request *req,
                      void (*cb)(struct evhttp_connection *conn, void *arg),
                      void *arg)
{
    struct evhttp_connection *conn = evhttp_request_get_connection(req);

    if (conn != NULL) {
        evhttp_connection_set_closecb(conn, cb, arg);
    }
}
