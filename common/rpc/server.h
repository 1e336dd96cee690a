/* gRPC server on the libevent loop.
 *
 *   srv = bt_rpc_server_create(base, &opts);
 *   bt_rpc_server_listen(srv, "ipv4:127.0.0.1:0", NULL, &port);
 *   bt_rpc_server_add_unary(srv, "/baton.v1.Generate/Tokenize",
 *                           &baton__v1__tokenize_request__descriptor,
 *                           tokenize_cb, ctx);
 *   bt_rpc_server_start(srv);
 *   ...
 *   bt_rpc_server_shutdown(srv, 5000, drained_cb, ctx);  // graceful
 *   bt_rpc_server_destroy(srv);                          // in drained_cb or later
 *
 * A handler gets a bt_rpc_call_t and the unpacked request (borrowed until
 * the call ends). It must end the call exactly once, now or later from any
 * loop callback: bt_rpc_call_reply() / bt_rpc_call_fail() (unary),
 * bt_rpc_call_finish() / bt_rpc_call_fail() (streams). After the client
 * cancels or the deadline passes, the cancel callback (if set) runs, sends
 * fail with BT_ERR_CANCELLED and the ending call is still required: it
 * then only releases the call. grpc.health.v1.Health is served on every
 * server. */
#ifndef BT_RPC_SERVER_H
#define BT_RPC_SERVER_H

#include "auth.h"
#include "rpc.h"

#include <event2/event.h>

typedef struct bt_rpc_server bt_rpc_server_t;
typedef struct bt_rpc_call bt_rpc_call_t;

typedef struct {
    /* Largest message received or sent, bytes; 0 = 4 MiB. A bigger request
     * fails with RESOURCE_EXHAUSTED; a bigger reply fails the send with
     * BT_ERR_TOO_LARGE. */
    uint32_t max_message_bytes;
    /* Messages a stream may queue before bt_rpc_call_send() answers
     * BT_ERR_EXHAUSTED; 0 = 64. */
    uint32_t send_queue_max;
    /* Calls a method may have waiting to be accepted at once; 0 = 4. */
    uint32_t accept_slots;
} bt_rpc_server_opts_t;

/* Unary and server-streaming: `req` is the unpacked request, borrowed until
 * the call ends. */
typedef void (*bt_rpc_handler_cb)(bt_rpc_call_t *call,
                                  const ProtobufCMessage *req, void *arg);
/* Bidirectional: `msg` is the next message from the client, borrowed for
 * the callback only; NULL when the client closed its side. Not called
 * after the call was cancelled or ended. */
typedef void (*bt_rpc_recv_cb)(bt_rpc_call_t *call,
                               const ProtobufCMessage *msg, void *arg);
typedef void (*bt_rpc_cancel_cb)(bt_rpc_call_t *call, void *arg);
/* A message queued by bt_rpc_call_send() was written (`ok`) or dropped
 * because the call broke (!ok). */
typedef void (*bt_rpc_sent_cb)(bt_rpc_call_t *call, bool ok, void *arg);
typedef void (*bt_rpc_server_done_cb)(bt_rpc_server_t *srv, void *arg);

/* Calls grpc_init(). NULL on failure (logged). `opts` may be NULL. */
bt_rpc_server_t *bt_rpc_server_create(struct event_base *base,
                                      const bt_rpc_server_opts_t *opts);

/* Before start. `addr`: "ipv4:127.0.0.1:PORT", "0.0.0.0:PORT", "[::]:PORT",
 * "unix:/path"; port 0 picks one, reported in `port_p` (may be NULL; 0 for
 * unix sockets). `tls` NULL = insecure. */
bt_status_t bt_rpc_server_listen(bt_rpc_server_t *srv, const char *addr,
                                 const bt_rpc_tls_t *tls, int *port_p);

/* Before start. `path` is "/package.Service/Method" (copied). */
bt_status_t bt_rpc_server_add_unary(bt_rpc_server_t *srv, const char *path,
                                    const ProtobufCMessageDescriptor *req_desc,
                                    bt_rpc_handler_cb handler, void *arg);
bt_status_t bt_rpc_server_add_stream(bt_rpc_server_t *srv, const char *path,
                                     const ProtobufCMessageDescriptor *req_desc,
                                     bt_rpc_handler_cb handler, void *arg);
/* `start` runs when the call arrives (`req` NULL), then `recv` per message. */
bt_status_t bt_rpc_server_add_bidi(bt_rpc_server_t *srv, const char *path,
                                   const ProtobufCMessageDescriptor *req_desc,
                                   bt_rpc_handler_cb start, bt_rpc_recv_cb recv,
                                   void *arg);

/* A smaller receive limit for one method than the server's (a public API
 * on a server whose internal streams carry larger messages): a request
 * over it ends with RESOURCE_EXHAUSTED before its handler runs. gRPC has
 * read the bytes by then (up to the server's limit), but never decodes
 * them. Before bt_rpc_server_start; BT_ERR_NOT_FOUND for an unknown path. */
bt_status_t bt_rpc_server_method_limit(bt_rpc_server_t *srv, const char *path,
                                       size_t max_message_bytes);

bt_status_t bt_rpc_server_start(bt_rpc_server_t *srv);

/* The control plane's admission (auth.h): once set, a call to a method of
 * bt_rpc_auth_method_roles() needs a credential granting one of its roles:
 * a token of `auth` (may be NULL) in the call's metadata or, with
 * `cert_roles`, a role URI in the verified client certificate. Else it ends
 * before its handler with UNAUTHENTICATED (no or unknown credential) or
 * PERMISSION_DENIED (another role), counted in the stats. Neither set: every
 * call is admitted with every role. `auth` must outlive the server. */
void bt_rpc_server_set_auth(bt_rpc_server_t *srv, const bt_rpc_auth_t *auth,
                            bool cert_roles);
bool bt_rpc_server_auth_on(const bt_rpc_server_t *srv);
/* Called on the loop for each call the admission (or bt_rpc_call_deny)
 * refused, with its code; NULL clears it. */
typedef void (*bt_rpc_refusal_cb)(void *arg, bt_rpc_code_t code);
void bt_rpc_server_on_refusal(bt_rpc_server_t *srv, bt_rpc_refusal_cb cb,
                              void *arg);

/* Health of `service` ("" = the whole server; a full service name such as
 * "baton.v1.Generate" otherwise). Check on a service never set answers
 * NOT_FOUND. Watchers get the change. A new server is SERVING for "". */
void bt_rpc_server_set_serving(bt_rpc_server_t *srv, const char *service,
                               bool serving);

/* Graceful shutdown: health goes NOT_SERVING, no new calls are accepted,
 * calls in flight may finish for `grace_ms`, then they are cancelled.
 * `done_cb` runs on the loop once every call has ended (handlers must end
 * their calls once cancelled). Calling it twice is harmless. */
void bt_rpc_server_shutdown(bt_rpc_server_t *srv, uint64_t grace_ms,
                            bt_rpc_server_done_cb done_cb, void *arg);

/* Cancels whatever is left (without grace), waits for gRPC to hand back
 * every operation, frees everything. Calls still held by a handler stay
 * valid until it ends them (ending them then only frees). NULL-safe.
 * Call on the loop thread, not from inside a callback of this server. */
void bt_rpc_server_destroy(bt_rpc_server_t *srv);

/* Calls their handler has ended whose stream gRPC has not yet closed (the
 * last messages or the status still on their way): a drain waits for
 * them, or the server's destroy would cancel an answer already given.
 * NULL-safe. */
uint32_t bt_rpc_server_answers_pending(bt_rpc_server_t *srv);

/* Counters for tests and metrics. */
typedef struct {
    uint64_t calls_started;
    uint64_t calls_cancelled;      /* cancel seen before the handler ended it */
    uint64_t calls_failed;         /* ended with a status other than OK */
    uint64_t decode_errors;
    uint64_t unimplemented;
    uint64_t refused_unauthenticated; /* no or unknown cluster credential */
    uint64_t refused_permission;      /* a credential without the role */
    uint32_t calls_live;
} bt_rpc_server_stats_t;

void bt_rpc_server_get_stats(const bt_rpc_server_t *srv,
                             bt_rpc_server_stats_t *stats_p);

/* ---- the call, from a handler ---- */

/* Unary: send `msg` and status OK. */
bt_status_t bt_rpc_call_reply(bt_rpc_call_t *call, const ProtobufCMessage *msg);

/* End the call with `status` (mapped through the status table) or with a
 * precise gRPC code; `fmt` is printf-like, NULL = the status's text. */
bt_status_t bt_rpc_call_fail(bt_rpc_call_t *call, bt_status_t status,
                             const char *fmt, ...);
bt_status_t bt_rpc_call_fail_code(bt_rpc_call_t *call, bt_rpc_code_t code,
                                  const char *message);

/* Streams: queue one message (packed now; `msg` need not outlive the call).
 * One send is in flight at a time; the rest wait in a bounded queue.
 * BT_ERR_EXHAUSTED when the queue is full (wait for a sent_cb), BT_ERR_TOO_LARGE
 * over the message limit, BT_ERR_CANCELLED when the call is gone or ended.
 * `sent_cb` may be NULL; on success it runs exactly once, later. */
bt_status_t bt_rpc_call_send(bt_rpc_call_t *call, const ProtobufCMessage *msg,
                             bt_rpc_sent_cb sent_cb, void *arg);
/* Streams: after the queued messages, end with OK. */
bt_status_t bt_rpc_call_finish(bt_rpc_call_t *call);

void bt_rpc_call_set_cancel_cb(bt_rpc_call_t *call, bt_rpc_cancel_cb cb,
                               void *arg);
/* Handler data. */
void bt_rpc_call_set_ctx(bt_rpc_call_t *call, void *ctx);
void *bt_rpc_call_ctx(const bt_rpc_call_t *call);

bool bt_rpc_call_is_cancelled(const bt_rpc_call_t *call);
uint32_t bt_rpc_call_send_queued(const bt_rpc_call_t *call);
/* Milliseconds until the client's deadline; UINT64_MAX when none. May
 * read a few ms over the client's figure (grpc-timeout is rounded up). */
uint64_t bt_rpc_call_deadline_left_ms(const bt_rpc_call_t *call);
/* First value of request metadata `key` (lowercase), NUL-terminated and
 * owned by the call; NULL when absent. */
const char *bt_rpc_call_metadata(bt_rpc_call_t *call, const char *key);
/* The method path ("/baton.v1.Generate/Tokenize"). */
const char *bt_rpc_call_method(const bt_rpc_call_t *call);
bt_rpc_server_t *bt_rpc_call_server(const bt_rpc_call_t *call);
/* The roles the call's credentials grant (BT_RPC_ROLE_*): every role when
 * the server's admission is off. */
unsigned bt_rpc_call_roles(const bt_rpc_call_t *call);
/* Ends the call with PERMISSION_DENIED and `text`, counted and logged as
 * the admission's refusals are (a request for more than the credential
 * grants, found by the handler). */
bt_status_t bt_rpc_call_deny(bt_rpc_call_t *call, const char *text);

#endif
