/* gRPC client on the libevent loop.
 *
 *   cli = bt_rpc_client_create(base, NULL);
 *   ch = bt_rpc_channel_create(cli, "ipv4:127.0.0.1:7000", NULL);
 *   bt_rpc_client_unary(ch, "/baton.v1.Generate/Tokenize", &req.base,
 *                       &baton__v1__tokenize_response__descriptor,
 *                       &(bt_rpc_call_opts_t){ .timeout_ms = 1000 },
 *                       done_cb, arg, NULL);
 *
 * A channel connects lazily and reconnects by itself (gRPC's backoff). Each
 * call ends with exactly one `done` callback (also after a cancel, and from
 * bt_rpc_client_destroy for calls still in flight); the call handle is
 * invalid after it. Responses are borrowed for the callback only. */
#ifndef BT_RPC_CLIENT_H
#define BT_RPC_CLIENT_H

#include "auth.h"
#include "rpc.h"

#include <event2/event.h>

typedef struct bt_rpc_client bt_rpc_client_t;
typedef struct bt_rpc_channel bt_rpc_channel_t;
typedef struct bt_rpc_client_call bt_rpc_client_call_t;

typedef struct {
    uint32_t max_message_bytes;   /* 0 = 4 MiB, both directions */
    uint32_t send_queue_max;      /* bidi messages queued; 0 = 64 */
} bt_rpc_client_opts_t;

typedef struct {
    uint64_t           timeout_ms;  /* 0 = no deadline */
    const bt_rpc_md_t *md;          /* request metadata, copied */
    size_t             n_md;
} bt_rpc_call_opts_t;

/* Unary: `resp` is NULL unless result->code is OK. */
typedef void (*bt_rpc_unary_done_cb)(void *arg, const bt_rpc_result_t *result,
                                     const ProtobufCMessage *resp);
/* Streams: one per message received. */
typedef void (*bt_rpc_msg_cb)(void *arg, const ProtobufCMessage *msg);
typedef void (*bt_rpc_done_cb)(void *arg, const bt_rpc_result_t *result);

bt_rpc_client_t *bt_rpc_client_create(struct event_base *base,
                                      const bt_rpc_client_opts_t *opts);
/* Cancels the calls in flight (their done_cb runs, CANCELLED), waits for
 * gRPC, destroys channels still open, frees. NULL-safe; not from inside a
 * callback of this client. */
void bt_rpc_client_destroy(bt_rpc_client_t *cli);

/* The cluster token (auth.h) sent as BT_RPC_AUTH_MD_KEY metadata on every
 * later call of this client; NULL: none. Borrowed: it must outlive the
 * client. */
void bt_rpc_client_set_token(bt_rpc_client_t *cli, const char *token);

/* `target`: "ipv4:127.0.0.1:7000", "dns:host:port", "unix:/path".
 * `tls` NULL = insecure. */
bt_rpc_channel_t *bt_rpc_channel_create(bt_rpc_client_t *cli,
                                        const char *target,
                                        const bt_rpc_tls_t *tls);
/* Calls in flight on it go on to their end. NULL-safe. */
void bt_rpc_channel_destroy(bt_rpc_channel_t *ch);
const char *bt_rpc_channel_target(const bt_rpc_channel_t *ch);
/* True when connected (or connecting: `try_connect` starts it). */
bool bt_rpc_channel_is_ready(bt_rpc_channel_t *ch, bool try_connect);

/* Each returns BT_OK and later calls `done` once, or an error and never
 * calls it. `opts` may be NULL. `call_p` (may be NULL) receives a handle
 * for cancel/send. */
bt_status_t bt_rpc_client_unary(bt_rpc_channel_t *ch, const char *method,
                                const ProtobufCMessage *req,
                                const ProtobufCMessageDescriptor *resp_desc,
                                const bt_rpc_call_opts_t *opts,
                                bt_rpc_unary_done_cb done, void *arg,
                                bt_rpc_client_call_t **call_p);
/* Server streaming. */
bt_status_t bt_rpc_client_stream(bt_rpc_channel_t *ch, const char *method,
                                 const ProtobufCMessage *req,
                                 const ProtobufCMessageDescriptor *resp_desc,
                                 const bt_rpc_call_opts_t *opts,
                                 bt_rpc_msg_cb on_msg, bt_rpc_done_cb done,
                                 void *arg, bt_rpc_client_call_t **call_p);
/* Bidirectional: send with bt_rpc_client_call_send, end the sending side
 * with bt_rpc_client_call_close_send. */
bt_status_t bt_rpc_client_bidi(bt_rpc_channel_t *ch, const char *method,
                               const ProtobufCMessageDescriptor *resp_desc,
                               const bt_rpc_call_opts_t *opts,
                               bt_rpc_msg_cb on_msg, bt_rpc_done_cb done,
                               void *arg, bt_rpc_client_call_t **call_p);

/* Bidi: queue a message. BT_ERR_EXHAUSTED when the queue is full,
 * BT_ERR_TOO_LARGE over the limit, BT_ERR_CANCELLED when the call ended or
 * the sending side was closed. */
bt_status_t bt_rpc_client_call_send(bt_rpc_client_call_t *call,
                                    const ProtobufCMessage *msg);
void bt_rpc_client_call_close_send(bt_rpc_client_call_t *call);

/* Ask gRPC to cancel; `done` follows with CANCELLED (unless the call had
 * already ended on the wire). Safe until `done` has run. */
void bt_rpc_client_call_cancel(bt_rpc_client_call_t *call);

#endif
