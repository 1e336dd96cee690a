/* HTTP server helpers over libevent's evhttp, shared by every daemon:
 * routes, bounded request bodies, JSON replies, OpenAI-shaped errors,
 * Server-Sent Events, /healthz, /readyz and /metrics.
 *
 * Everything runs on the loop thread that owns the event_base. */
#ifndef BT_HTTP_H
#define BT_HTTP_H

#include "base/buf.h"
#include "base/status.h"
#include "metrics/metrics.h"

#include <event2/event.h>
#include <event2/http.h>
#include <jansson.h>
#include <stdbool.h>

typedef struct bt_http_server bt_http_server_t;

typedef void (*bt_http_handler_cb)(struct evhttp_request *req, void *arg);
/* Readiness for /readyz: true = ready; `why` (optional) says why not. */
typedef bool (*bt_http_ready_cb)(void *arg, const char **why_p);

/* Listens on addr:port (port 0 picks one; *bound_port_p gets it).
 * `max_body` bounds request bodies (413 beyond it), `max_headers` the
 * header bytes. NULL on failure (logged). */
bt_http_server_t *bt_http_server_create(struct event_base *base,
                                        const char *addr, int port,
                                        size_t max_body, int *bound_port_p);
void bt_http_server_destroy(bt_http_server_t *srv);

/* `methods`: EVHTTP_REQ_GET | EVHTTP_REQ_POST ...; another method on the
 * same path gets 405. Unknown paths get 404 in the error shape below. */
bt_status_t bt_http_route(bt_http_server_t *srv, const char *path,
                          int methods, bt_http_handler_cb cb, void *arg);

/* /healthz (200 while the process runs), /readyz (200 or 503 from
 * `ready`), /metrics (Prometheus text from `reg`, may be NULL). */
bt_status_t bt_http_add_standard(bt_http_server_t *srv, bt_http_ready_cb ready,
                                 void *ready_arg, bt_metrics_t *reg);

/* Copies the body into `out` (bounded by out->max); BT_ERR_TOO_LARGE
 * when larger. */
bt_status_t bt_http_read_body(struct evhttp_request *req, bt_buf_t *out);

/* Replies `code` with `body` serialised (Content-Type: application/json).
 * Does not take the reference. */
void bt_http_reply_json(struct evhttp_request *req, int code,
                        const json_t *body);

/* OpenAI's error shape:
 * {"error": {"message": ..., "type": ..., "param": ..., "code": ...}}
 * `param` and `err_code` may be NULL (rendered as null). */
void bt_http_reply_error(struct evhttp_request *req, int code,
                         const char *type, const char *message,
                         const char *param, const char *err_code);

/* The HTTP status and OpenAI error type for a bt_status_t. */
int bt_http_status_code(bt_status_t status);
const char *bt_http_error_type(bt_status_t status);

/* Server-Sent Events: start sends 200 with text/event-stream; each event
 * is one `data: <payload>\n\n` chunk; done sends `data: [DONE]` and ends
 * the reply. */
void bt_http_sse_start(struct evhttp_request *req);
void bt_http_sse_send(struct evhttp_request *req, const char *data, size_t len);
void bt_http_sse_send_json(struct evhttp_request *req, const json_t *event);
void bt_http_sse_done(struct evhttp_request *req);

/* Called once if the client's connection closes before the reply ends
 * (client cancel). */
void bt_http_on_close(struct evhttp_request *req,
                      void (*cb)(struct evhttp_connection *conn, void *arg),
                      void *arg);

#endif
