/* A small HTTP/1.x server shared by every daemon: routes, bounded request
 * heads and bodies, JSON replies, OpenAI-shaped errors, Server-Sent
 * Events, /livez, /healthz, /readyz and /metrics.
 *
 * It is our own (over libevent's bufferevents, not evhttp) so that every
 * answer, protocol errors included, is JSON in OpenAI's error shape, and
 * so that slow or idle clients are bounded: a request head must arrive
 * within the header timeout, an idle keep-alive connection is closed after
 * the idle timeout, and connections over the cap get a 503 at once.
 *
 * Everything runs on the loop thread that owns the event_base. */
#ifndef BT_HTTP_H
#define BT_HTTP_H

#include "base/buf.h"
#include "base/status.h"
#include "metrics/metrics.h"

#include <event2/event.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct bt_http_server bt_http_server_t;
typedef struct bt_http_req bt_http_req_t;

/* Methods, as bits for bt_http_route. */
enum {
    BT_HTTP_GET     = 1 << 0,
    BT_HTTP_POST    = 1 << 1,
    BT_HTTP_HEAD    = 1 << 2,
    BT_HTTP_PUT     = 1 << 3,
    BT_HTTP_DELETE  = 1 << 4,
    BT_HTTP_OPTIONS = 1 << 5,
    BT_HTTP_PATCH   = 1 << 6,
};

typedef void (*bt_http_handler_cb)(bt_http_req_t *req, void *arg);
/* Readiness for /readyz: true = ready; `why` (optional) says why not. */
typedef bool (*bt_http_ready_cb)(void *arg, const char **why_p);

/* Limits on clients. A timeout or cap of 0 turns it off. */
typedef struct {
    int64_t header_timeout_ms;  /* a request head (and each pause in its
                                   body) must arrive within this; 408 */
    int64_t idle_timeout_ms;    /* keep-alive connection with no request,
                                   or a reply the client does not read */
    int64_t max_connections;    /* more get 503 and are closed */
} bt_http_limits_t;

#define BT_HTTP_HEADER_TIMEOUT_MS 10000
#define BT_HTTP_IDLE_TIMEOUT_MS   60000
#define BT_HTTP_MAX_CONNECTIONS   1024
/* Retry-After (seconds) of a 503 for a connection over the cap. */
#define BT_HTTP_RETRY_AFTER_FULL  1

/* Listens on addr:port (port 0 picks one; *bound_port_p gets it), with
 * the default limits above. `max_body` bounds request bodies (413
 * beyond it). NULL on failure (logged). */
bt_http_server_t *bt_http_server_create(struct event_base *base,
                                        const char *addr, int port,
                                        size_t max_body, int *bound_port_p);
/* Serves HTTPS (TLS 1.2+) with a PEM certificate chain and key instead of
 * plain HTTP, for connections accepted from now on; a client speaking plain
 * HTTP to it gets a 400 saying to use https and the connection closes.
 * BT_ERR_INVALID_ARG with one line in `err` when OpenSSL refuses the files
 * (unreadable, not PEM, key not of the certificate). */
bt_status_t bt_http_server_set_tls(bt_http_server_t *srv, const char *cert_file,
                                   const char *key_file, char *err,
                                   size_t err_size);
bool bt_http_server_is_tls(const bt_http_server_t *srv);
/* The same checks of the files without a server (option checks). */
bt_status_t bt_http_tls_check(const char *cert_file, const char *key_file,
                              char *err, size_t err_size);
/* Closes every connection (their close callbacks run) and frees. */
void bt_http_server_destroy(bt_http_server_t *srv);
/* Applies to connections accepted from now on (and to timers armed from
 * now on on existing ones). */
void bt_http_server_set_limits(bt_http_server_t *srv,
                               const bt_http_limits_t *limits);
/* The access log: a line per request (method, path, status, body bytes,
 * duration, request id) at info, or debug for the probes and /metrics.
 * On by default. */
void bt_http_server_set_access_log(bt_http_server_t *srv, bool on);
/* Connections open now. */
size_t bt_http_server_connections(const bt_http_server_t *srv);

/* `methods`: BT_HTTP_GET | BT_HTTP_POST ...; another method on the same
 * path gets 405. A path ending in "/" + "*" matches every path under it.
 * Unknown paths get 404 in the error shape below. */
bt_status_t bt_http_route(bt_http_server_t *srv, const char *path,
                          int methods, bt_http_handler_cb cb, void *arg);

/* /livez and /healthz (liveness: 200 while the process runs and its loop
 * turns; draining never changes it), /readyz (200 or 503 from `ready`:
 * "send me work"), /metrics (Prometheus text from `reg`, may be NULL). */
bt_status_t bt_http_add_standard(bt_http_server_t *srv, bt_http_ready_cb ready,
                                 void *ready_arg, bt_metrics_t *reg);

/* The request. Strings live as long as the request (until its reply
 * ends or its close callback returns). */
int bt_http_req_method(const bt_http_req_t *req);
const char *bt_http_req_path(const bt_http_req_t *req);   /* no query */
/* A request header's value (case-insensitive name); NULL when absent. */
const char *bt_http_req_header(const bt_http_req_t *req, const char *name);

/* Copies the body into `out` (bounded by out->max); BT_ERR_TOO_LARGE
 * when larger. */
bt_status_t bt_http_read_body(bt_http_req_t *req, bt_buf_t *out);

/* Adds a header to the reply (before it starts). Copied. */
void bt_http_add_header(bt_http_req_t *req, const char *name,
                        const char *value);

/* The whole reply. `req` must not be used after a reply. */
void bt_http_reply(bt_http_req_t *req, int code, const char *content_type,
                   const void *body, size_t len);

/* Replies `code` with `body` serialised (Content-Type: application/json).
 * Does not take the reference. */
void bt_http_reply_json(bt_http_req_t *req, int code, const json_t *body);

/* OpenAI's error shape:
 * {"error": {"message": ..., "type": ..., "param": ..., "code": ...}}
 * `param` and `err_code` may be NULL (rendered as null). */
void bt_http_reply_error(bt_http_req_t *req, int code, const char *type,
                         const char *message, const char *param,
                         const char *err_code);
/* The same body, as text (for replies made outside a request); NULL on
 * out of memory. Free with free(). */
char *bt_http_error_body(const char *type, const char *message,
                         const char *param, const char *err_code);

/* The HTTP status and OpenAI error type for a bt_status_t. */
int bt_http_status_code(bt_status_t status);
const char *bt_http_error_type(bt_status_t status);

/* Server-Sent Events: start sends 200 with text/event-stream (chunked on
 * HTTP/1.1; on HTTP/1.0 the body ends when the connection closes); each
 * event is one `data: <payload>\n\n`; done sends `data: [DONE]` and ends
 * the reply; end ends it without [DONE]. */
void bt_http_sse_start(bt_http_req_t *req);
void bt_http_sse_send(bt_http_req_t *req, const char *data, size_t len);
void bt_http_sse_send_json(bt_http_req_t *req, const json_t *event);
void bt_http_sse_done(bt_http_req_t *req);

/* `cb` is called once if the client's connection closes (or the server
 * is destroyed) before the reply ends; `req` is gone once it returns.
 * NULL clears it. */
void bt_http_on_close(bt_http_req_t *req, void (*cb)(void *arg), void *arg);

#endif
