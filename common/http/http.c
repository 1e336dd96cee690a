/* Routes, JSON replies, errors and the standard endpoints. */
#include "http_int.h"

#include "base/json.h"
#include "base/log.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>

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
    case BT_ERR_PEER_DIED:        /* a node died before any output */
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

void bt_http_reply_json(bt_http_req_t *req, int code, const json_t *body)
{
    char *text = bt_json_dump(body);
    size_t len;

    if (text == NULL) {
        static const char oom[] = "{\"error\":{\"message\":\"out of memory\","
                                  "\"type\":\"server_error\",\"param\":null,"
                                  "\"code\":null}}\n";

        bt_http_reply(req, 500, "application/json", oom, sizeof(oom) - 1);
        return;
    }
    len = strlen(text);
    /* a newline after the document, for people reading with curl */
    {
        char *t = realloc(text, len + 2);

        if (t != NULL) {
            text = t;
            text[len++] = '\n';
        }
    }
    bt_http_reply(req, code, "application/json", text, len);
    free(text);
}

char *bt_http_error_body(const char *type, const char *message,
                         const char *param, const char *err_code)
{
    json_t *body = json_pack("{s:{s:s, s:s, s:s?, s:s?}}", "error",
                             "message", message, "type", type,
                             "param", param, "code", err_code);
    char *text;

    if (body == NULL) { /* e.g. invalid UTF-8 in the message */
        body = json_pack("{s:{s:s, s:s, s:n, s:n}}", "error", "message",
                         "request rejected", "type", type, "param", "code");
    }
    text = bt_json_dump(body);
    json_decref(body);
    return text;
}

void bt_http_reply_error(bt_http_req_t *req, int code, const char *type,
                         const char *message, const char *param,
                         const char *err_code)
{
    char *text = bt_http_error_body(type, message, param, err_code);

    if (text == NULL) {
        bt_http_reply_json(req, code, NULL);
        return;
    }
    bt_http_reply(req, code, "application/json", text, strlen(text));
    free(text);
}

static bt_http_route_t *bt_http_find(bt_http_server_t *srv, const char *path,
                                     bool exact)
{
    for (int i = 0; i < srv->n_routes; i++) {
        bt_http_route_t *r = &srv->routes[i];

        if (exact || !r->prefix) {
            if (strcmp(r->path, path) == 0) {
                return r;
            }
        } else if (strncmp(r->path, path, strlen(r->path)) == 0 &&
                   path[strlen(r->path)] != '\0') {
            return r;
        }
    }
    return NULL;
}

static void bt_http_allow(bt_http_req_t *req, int methods)
{
    static const struct { int bit; const char *name; } names[] = {
        { BT_HTTP_GET, "GET" },       { BT_HTTP_HEAD, "HEAD" },
        { BT_HTTP_POST, "POST" },     { BT_HTTP_PUT, "PUT" },
        { BT_HTTP_DELETE, "DELETE" }, { BT_HTTP_OPTIONS, "OPTIONS" },
        { BT_HTTP_PATCH, "PATCH" },
    };
    char allow[128] = "";

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (methods & names[i].bit) {
            if (allow[0] != '\0') {
                strcat(allow, ", ");
            }
            strcat(allow, names[i].name);
        }
    }
    bt_http_add_header(req, "Allow", allow);
}

/* Every request enters here: route by path (the query is ignored). */
void bt_http_dispatch(bt_http_server_t *srv, bt_http_req_t *req)
{
    const char *path = req->head.path;
    int method = req->head.method;
    bt_http_route_t *route;
    char msg[256];

    route = bt_http_find(srv, path, true);
    if (route == NULL) {
        route = bt_http_find(srv, path, false);
    }
    if (route == NULL) {
        snprintf(msg, sizeof(msg), "no such endpoint: %.200s", path);
        bt_http_reply_error(req, 404, "invalid_request_error", msg, NULL,
                            "not_found");
        return;
    }
    /* HEAD is GET without the body */
    if (method == BT_HTTP_HEAD && (route->methods & BT_HTTP_GET)) {
        method = BT_HTTP_GET;
    }
    if (!(method & route->methods)) {
        bt_http_allow(req, route->methods);
        bt_http_reply_error(req, 405, "invalid_request_error",
                            "method not allowed on this endpoint", NULL,
                            "method_not_allowed");
        return;
    }
    route->cb(req, route->arg);
}

int bt_http_req_method(const bt_http_req_t *req)
{
    return req->head.method;
}

const char *bt_http_req_path(const bt_http_req_t *req)
{
    return req->head.path;
}

const char *bt_http_req_header(const bt_http_req_t *req, const char *name)
{
    for (size_t i = 0; i < req->head.n_hdr; i++) {
        if (strcasecmp(req->head.hdr[i].name, name) == 0) {
            return req->head.hdr[i].value;
        }
    }
    return NULL;
}

void bt_http_on_close(bt_http_req_t *req, void (*cb)(void *arg), void *arg)
{
    req->close_cb = cb;
    req->close_arg = arg;
}

static bool bt_http_listen(bt_http_server_t *srv, const char *addr, int port)
{
    struct evutil_addrinfo hints, *ai = NULL;
    char port_s[16];
    int rc;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = EVUTIL_AI_PASSIVE | EVUTIL_AI_ADDRCONFIG;
    snprintf(port_s, sizeof(port_s), "%d", port);
    rc = evutil_getaddrinfo(addr, port_s, &hints, &ai);
    if (rc != 0 || ai == NULL) {
        bt_error("http: cannot resolve %s: %s", addr, evutil_gai_strerror(rc));
        return false;
    }
    srv->listener = evconnlistener_new_bind(
        srv->base, bt_http_accept_cb, srv,
        LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC,
        1024, ai->ai_addr, (int)ai->ai_addrlen);
    evutil_freeaddrinfo(ai);
    if (srv->listener == NULL) {
        bt_error("http: cannot listen on %s:%d: %s", addr, port,
                 bt_strerror(errno));
        return false;
    }
    return true;
}

/* The connection cap needs descriptors: raise the soft limit to fit. */
static void bt_http_fd_room(int64_t max_conns)
{
    struct rlimit rl;
    rlim_t want = (rlim_t)max_conns + 256;

    if (max_conns <= 0 || getrlimit(RLIMIT_NOFILE, &rl) != 0 ||
        rl.rlim_cur >= want) {
        return;
    }
    rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= want
                  ? want : rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur < want) {
        bt_warn("http: %lld connections allowed but only %llu file "
                "descriptors", (long long)max_conns,
                (unsigned long long)rl.rlim_cur);
    }
}

bt_http_server_t *bt_http_server_create(struct event_base *base,
                                        const char *addr, int port,
                                        size_t max_body, int *bound_port_p)
{
    bt_http_server_t *srv = calloc(1, sizeof(*srv));

    if (srv == NULL) {
        return NULL;
    }
    srv->base = base;
    bt_list_init(&srv->conns);
    srv->max_body = max_body;
    srv->limits.header_timeout_ms = BT_HTTP_HEADER_TIMEOUT_MS;
    srv->limits.idle_timeout_ms = BT_HTTP_IDLE_TIMEOUT_MS;
    srv->limits.max_connections = BT_HTTP_MAX_CONNECTIONS;
    srv->access_log = true;
    if (!bt_http_listen(srv, addr, port)) {
        free(srv);
        return NULL;
    }
    bt_http_fd_room(srv->limits.max_connections);
    if (bound_port_p != NULL) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        evutil_socket_t fd = evconnlistener_get_fd(srv->listener);

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

void bt_http_server_set_access_log(bt_http_server_t *srv, bool on)
{
    srv->access_log = on;
}

void bt_http_server_set_limits(bt_http_server_t *srv,
                               const bt_http_limits_t *limits)
{
    srv->limits = *limits;
    bt_http_fd_room(limits->max_connections);
}

size_t bt_http_server_connections(const bt_http_server_t *srv)
{
    return srv->n_conns;
}

void bt_http_server_destroy(bt_http_server_t *srv)
{
    if (srv == NULL) {
        return;
    }
    evconnlistener_free(srv->listener);
    while (!bt_list_empty(&srv->conns)) {
        bt_http_conn_free(BT_CONTAINER_OF(srv->conns.next, bt_http_conn_t,
                                          link));
    }
    bt_http_tls_cleanup(srv);
    for (int i = 0; i < srv->n_routes; i++) {
        free(srv->routes[i].path);
    }
    free(srv);
}

bt_status_t bt_http_route(bt_http_server_t *srv, const char *path,
                          int methods, bt_http_handler_cb cb, void *arg)
{
    size_t len = strlen(path);
    bool prefix = len >= 2 && strcmp(path + len - 2, "/*") == 0;
    bt_http_route_t *r;

    if (srv->n_routes == BT_HTTP_MAX_ROUTES) {
        return BT_ERR_EXHAUSTED;
    }
    r = &srv->routes[srv->n_routes];
    r->path = prefix ? strndup(path, len - 1) : strdup(path);
    if (r->path == NULL) {
        return BT_ERR_NO_MEMORY;
    }
    for (int i = 0; i < srv->n_routes; i++) {
        if (srv->routes[i].prefix == prefix &&
            strcmp(srv->routes[i].path, r->path) == 0) {
            free(r->path);
            return BT_ERR_EXISTS;
        }
    }
    r->prefix = prefix;
    r->methods = methods;
    r->cb = cb;
    r->arg = arg;
    srv->n_routes++;
    return BT_OK;
}

static void bt_http_reply_text(bt_http_req_t *req, int code,
                               const char *content_type, const char *text,
                               size_t len)
{
    bt_http_reply(req, code, content_type, text, len);
}

/* Liveness: answered on the loop thread, so a reply means the process is
 * up and its loop turns. Draining changes readiness, never this: a
 * liveness probe that followed readiness would have Kubernetes restart
 * every drained pod. */
static void bt_http_healthz(bt_http_req_t *req, void *arg)
{
    (void)arg;
    bt_http_reply_text(req, 200, "text/plain", "ok\n", 3);
}

static void bt_http_readyz(bt_http_req_t *req, void *arg)
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

static void bt_http_metrics(bt_http_req_t *req, void *arg)
{
    bt_http_server_t *srv = arg;
    bt_buf_t b;

    bt_buf_init(&b, 64u << 20);
    if (srv->metrics != NULL && bt_metrics_render(srv->metrics, &b) != BT_OK) {
        bt_buf_cleanup(&b);
        bt_http_reply_error(req, 500, "server_error", "metrics too large",
                            NULL, NULL);
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
    if (reg != NULL) {
        srv->m_open = bt_metrics_gauge(reg, "baton_http_connections",
                                       "HTTP connections open", NULL);
        srv->m_refused = bt_metrics_counter(reg, "baton_http_refused_total",
                                            "HTTP connections refused over "
                                            "the connection cap", NULL);
        srv->m_timeouts = bt_metrics_counter(reg, "baton_http_timeouts_total",
                                             "HTTP connections closed by the "
                                             "header or idle timeout", NULL);
        if (srv->m_open != NULL) {
            bt_gauge_set(srv->m_open, (double)srv->n_conns);
        }
    }
    status = bt_http_route(srv, "/healthz", BT_HTTP_GET,
                           bt_http_healthz, srv);
    if (status == BT_OK) {
        status = bt_http_route(srv, "/livez", BT_HTTP_GET, bt_http_healthz, srv);
    }
    if (status == BT_OK) {
        status = bt_http_route(srv, "/readyz", BT_HTTP_GET,
                               bt_http_readyz, srv);
    }
    if (status == BT_OK) {
        status = bt_http_route(srv, "/metrics", BT_HTTP_GET,
                               bt_http_metrics, srv);
    }
    return status;
}

bt_status_t bt_http_read_body(bt_http_req_t *req, bt_buf_t *out)
{
    size_t len = evbuffer_get_length(req->body);
    bt_status_t status;

    status = bt_buf_reserve(out, len);
    if (status != BT_OK) {
        return status;
    }
    evbuffer_copyout(req->body, out->data + out->len, len);
    out->len += len;
    out->data[out->len] = '\0';
    return BT_OK;
}

void bt_http_sse_send_json(bt_http_req_t *req, const json_t *event)
{
    char *text = bt_json_dump(event);

    if (text != NULL) {
        bt_http_sse_send(req, text, strlen(text));
        free(text);
    }
}
