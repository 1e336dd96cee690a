/* One server call: request decoding, the bounded send queue with one batch
 * in flight, the status, cancellation (RECV_CLOSE_ON_SERVER) and, for
 * bidirectional calls, the receive loop. Everything here runs on the loop
 * thread. */
#include "server_int.h"

#include "base/clock.h"
#include "base/log.h"

#include <grpc/support/alloc.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void bt_rpc_call_on_close(bt_rpc_tag_t *tag, bool ok);

/* Bad input from peers is logged at most once a second (a flood of it
 * must not flood the logs); the server's counters count every one. */
static bool bt_rpc_warn_allowed(void)
{
    static uint64_t last_ms;
    uint64_t now = bt_now_ms();

    if (last_ms != 0 && now - last_ms < 1000) {
        return false;
    }
    last_ms = now;
    return true;
}
static void bt_rpc_call_on_send(bt_rpc_tag_t *tag, bool ok);
static void bt_rpc_call_on_recv(bt_rpc_tag_t *tag, bool ok);
static void bt_rpc_call_pump(bt_rpc_call_t *call);

bt_rpc_call_t *bt_rpc_call_new(bt_rpc_server_t *srv, bt_rpc_method_t *method)
{
    bt_rpc_call_t *call = calloc(1, sizeof(*call));

    if (call == NULL) {
        return NULL;
    }
    call->srv = srv;
    call->method = method;
    bt_list_init(&call->link);
    bt_ring_init(&call->q, sizeof(bt_rpc_sendq_entry_t));
    call->tag_close.cb = bt_rpc_call_on_close;
    call->tag_send.cb = bt_rpc_call_on_send;
    call->tag_recv.cb = bt_rpc_call_on_recv;
    grpc_metadata_array_init(&call->md);
    grpc_call_details_init(&call->details);
    return call;
}

static void bt_rpc_call_drop_queue(bt_rpc_call_t *call)
{
    bt_rpc_sendq_entry_t e;

    while (bt_ring_pop(&call->q, &e)) {
        if (e.bb != NULL) {
            call->q_msgs--;
            grpc_byte_buffer_destroy(e.bb);
            if (e.cb != NULL) {
                e.cb(call, false, e.arg);
            }
        }
    }
}

void bt_rpc_call_free(bt_rpc_call_t *call)
{
    bt_rpc_md_copy_t *c, *next;

    if (call == NULL) {
        return;
    }
    for (c = call->md_copies; c != NULL; c = next) {
        next = c->next;
        free(c->key);
        free(c->value);
        free(c);
    }
    bt_ring_cleanup(&call->q);
    if (call->has_details) {
        grpc_slice_unref(call->status_details);
    }
    if (call->payload != NULL) {
        grpc_byte_buffer_destroy(call->payload);
    }
    if (call->req != NULL) {
        protobuf_c_message_free_unpacked(call->req, NULL);
    }
    grpc_metadata_array_destroy(&call->md);
    grpc_call_details_destroy(&call->details);
    if (call->call != NULL) {
        grpc_call_unref(call->call);
    }
    gpr_free(call->path_copy);
    free(call);
}

void bt_rpc_call_maybe_free(bt_rpc_call_t *call)
{
    if (!call->ended || call->ops > 0) {
        return;
    }
    if (call->srv != NULL) {
        bt_rpc_server_call_gone(call->srv, call);
    }
    bt_rpc_call_free(call);
}

/* Starts a batch; on error (a bug in this file) nothing is in flight. */
static bool bt_rpc_call_start(bt_rpc_call_t *call, const grpc_op *ops,
                              size_t n, bt_rpc_tag_t *tag)
{
    grpc_call_error err = grpc_call_start_batch(call->call, ops, n, tag, NULL);

    if (err != GRPC_CALL_OK) {
        bt_error("rpc call %s: start_batch failed with %d",
                 bt_rpc_call_method(call), (int)err);
        return false;
    }
    call->ops++;
    if (call->srv != NULL) {
        call->srv->ops++;
    }
    return true;
}

static void bt_rpc_call_op_done(bt_rpc_call_t *call)
{
    call->ops--;
    if (call->srv != NULL) {
        call->srv->ops--;
    }
}

static void bt_rpc_call_on_send(bt_rpc_tag_t *tag, bool ok)
{
    bt_rpc_call_t *call = BT_RPC_CONTAINER_OF(tag, bt_rpc_call_t, tag_send);
    bt_rpc_sendq_entry_t e = call->inflight;

    bt_rpc_call_op_done(call);
    call->send_busy = false;
    call->inflight.bb = NULL;
    call->ops++;            /* hold the call across user callbacks */
    if (e.bb != NULL) {
        grpc_byte_buffer_destroy(e.bb);
        if (e.cb != NULL) {
            e.cb(call, ok, e.arg);
        }
    }
    if (!ok) {
        call->broken = true;
        bt_rpc_call_drop_queue(call);
    } else {
        bt_rpc_call_pump(call);
    }
    call->ops--;
    bt_rpc_call_maybe_free(call);
}

/* Sends the head of the queue: a message, a message and the status right
 * behind it (a unary reply: one batch), or the status alone. */
static void bt_rpc_call_pump(bt_rpc_call_t *call)
{
    grpc_op ops[3];
    size_t n = 0;
    bt_rpc_sendq_entry_t e;
    const bt_rpc_sendq_entry_t *next;

    if (call->send_busy || bt_ring_len(&call->q) == 0 || call->broken ||
        call->call == NULL) {
        return;
    }
    memset(ops, 0, sizeof(ops));
    bt_ring_pop(&call->q, &e);
    call->inflight = e;
    call->inflight_status = e.bb == NULL;
    if (!call->md_sent) {
        ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
        n++;
        call->md_sent = true;
    }
    if (e.bb != NULL) {
        call->q_msgs--;
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n].data.send_message.send_message = e.bb;
        /* More messages queued behind this one: let gRPC coalesce the
         * writes (the last one of a burst flushes). */
        next = bt_ring_at(&call->q, 0);
        if (next != NULL && next->bb != NULL) {
            ops[n].flags = GRPC_WRITE_BUFFER_HINT;
        }
        n++;
        if (bt_ring_len(&call->q) == 1 && next->bb == NULL) {
            bt_ring_pop(&call->q, NULL);
            call->inflight_status = true;
        }
    }
    if (call->inflight_status) {
        ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
        ops[n].data.send_status_from_server.status = call->status_code;
        ops[n].data.send_status_from_server.status_details =
            call->has_details ? &call->status_details : NULL;
        n++;
    }
    call->send_busy = true;
    if (!bt_rpc_call_start(call, ops, n, &call->tag_send)) {
        /* Not sent: behave as if the client went away. */
        call->send_busy = false;
        call->ops++;            /* what on_send gives back */
        if (call->srv != NULL) {
            call->srv->ops++;
        }
        bt_rpc_call_on_send(&call->tag_send, false);
    }
}

static bt_status_t bt_rpc_call_push(bt_rpc_call_t *call,
                                    bt_rpc_sendq_entry_t e)
{
    bt_status_t st = bt_ring_push(&call->q, &e);

    if (st != BT_OK) {
        return st;
    }
    if (e.bb != NULL) {
        call->q_msgs++;
    }
    return BT_OK;
}

static bool bt_rpc_call_gone(const bt_rpc_call_t *call)
{
    return call->cancelled || call->broken || call->call == NULL;
}

bt_status_t bt_rpc_call_send(bt_rpc_call_t *call, const ProtobufCMessage *msg,
                             bt_rpc_sent_cb sent_cb, void *arg)
{
    bt_rpc_sendq_entry_t e = { NULL, sent_cb, arg };
    bt_status_t st;
    uint32_t max_q = call->srv != NULL ? call->srv->send_queue_max : 1;
    size_t max_msg = call->srv != NULL ? call->srv->max_message : 0;

    if (call->ended || call->status_queued || bt_rpc_call_gone(call)) {
        return BT_ERR_CANCELLED;
    }
    if (call->q_msgs >= max_q) {
        return BT_ERR_EXHAUSTED;
    }
    e.bb = bt_rpc_pack(msg, max_msg, &st);
    if (e.bb == NULL) {
        return st;
    }
    st = bt_rpc_call_push(call, e);
    if (st != BT_OK) {
        grpc_byte_buffer_destroy(e.bb);
        return st;
    }
    bt_rpc_call_pump(call);
    return BT_OK;
}

/* Queues the status (after queued messages) and gives the call back. */
static bt_status_t bt_rpc_call_end(bt_rpc_call_t *call, bt_rpc_code_t code,
                                   const char *message)
{
    bt_rpc_sendq_entry_t e = { NULL, NULL, NULL };

    if (call->ended) {
        bt_error("rpc call %s ended twice", bt_rpc_call_method(call));
        return BT_ERR_INTERNAL;
    }
    call->ended = true;
    if (code != BT_RPC_OK) {
        call->failed = true;
        if (call->srv != NULL) {
            call->srv->stats.calls_failed++;
        }
    }
    if (bt_rpc_call_gone(call)) {
        bt_rpc_call_drop_queue(call);
        bt_rpc_call_maybe_free(call);
        return BT_ERR_CANCELLED;
    }
    call->status_code = (grpc_status_code)code;
    if (message != NULL && message[0] != '\0') {
        call->status_details = grpc_slice_from_copied_string(message);
        call->has_details = true;
    }
    call->status_queued = true;
    if (bt_rpc_call_push(call, e) != BT_OK) {
        /* No room for the status: cancel so the client is not left hanging. */
        grpc_call_cancel_with_status(call->call, GRPC_STATUS_INTERNAL,
                                     "server out of memory", NULL);
        return BT_ERR_NO_MEMORY;
    }
    bt_rpc_call_pump(call);
    return BT_OK;
}

bt_status_t bt_rpc_call_reply(bt_rpc_call_t *call, const ProtobufCMessage *msg)
{
    bt_status_t st;

    if (call->ended) {
        bt_error("rpc call %s ended twice", bt_rpc_call_method(call));
        return BT_ERR_INTERNAL;
    }
    st = bt_rpc_call_send(call, msg, NULL, NULL);
    if (st == BT_ERR_TOO_LARGE) {
        return bt_rpc_call_end(call, BT_RPC_RESOURCE_EXHAUSTED,
                               "response over the message size limit");
    }
    if (st != BT_OK && st != BT_ERR_CANCELLED) {
        bt_rpc_call_end(call, BT_RPC_INTERNAL, "cannot queue the response");
        return st;
    }
    bt_rpc_call_end(call, BT_RPC_OK, NULL);
    return st;
}

bt_status_t bt_rpc_call_fail_code(bt_rpc_call_t *call, bt_rpc_code_t code,
                                  const char *message)
{
    return bt_rpc_call_end(call, code == BT_RPC_OK ? BT_RPC_UNKNOWN : code,
                           message);
}

bt_status_t bt_rpc_call_fail(bt_rpc_call_t *call, bt_status_t status,
                             const char *fmt, ...)
{
    char text[512];

    if (fmt != NULL) {
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(text, sizeof(text), fmt, ap);
        va_end(ap);
    } else {
        snprintf(text, sizeof(text), "%s", bt_status_str(status));
    }
    return bt_rpc_call_fail_code(call, bt_rpc_code_from_status(status), text);
}

bt_status_t bt_rpc_call_finish(bt_rpc_call_t *call)
{
    return bt_rpc_call_end(call, BT_RPC_OK, NULL);
}

static void bt_rpc_call_on_close(bt_rpc_tag_t *tag, bool ok)
{
    bt_rpc_call_t *call = BT_RPC_CONTAINER_OF(tag, bt_rpc_call_t, tag_close);

    bt_rpc_call_op_done(call);
    if (call->no_message && ok && !call->close_cancelled &&
        call->srv != NULL) {
        call->srv->stats.decode_errors++;
        if (bt_rpc_warn_allowed()) {
            bt_warn("rpc call %s: missing request message (further ones "
                    "this second not logged)", bt_rpc_call_method(call));
        }
    }
    if (!ok || call->close_cancelled) {
        call->cancelled = true;
        call->ops++;
        bt_rpc_call_drop_queue(call);
        if (!call->ended) {
            if (call->srv != NULL) {
                call->srv->stats.calls_cancelled++;
            }
            if (call->cancel_cb != NULL) {
                call->cancel_cb(call, call->cancel_arg);
            }
        }
        call->ops--;
    }
    bt_rpc_call_maybe_free(call);
}

static void bt_rpc_call_start_recv(bt_rpc_call_t *call)
{
    grpc_op op;

    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &call->recv_bb;
    call->recv_busy = bt_rpc_call_start(call, &op, 1, &call->tag_recv);
}

static void bt_rpc_call_on_recv(bt_rpc_tag_t *tag, bool ok)
{
    bt_rpc_call_t *call = BT_RPC_CONTAINER_OF(tag, bt_rpc_call_t, tag_recv);
    grpc_byte_buffer *bb = call->recv_bb;
    bool live;

    bt_rpc_call_op_done(call);
    call->recv_busy = false;
    call->recv_bb = NULL;
    call->ops++;
    live = !call->ended && !bt_rpc_call_gone(call);
    if (bb == NULL || !ok) {
        if (live && ok) {
            call->method->recv(call, NULL, call->method->arg);
        }
    } else if (live) {
        bt_status_t st;
        size_t max = call->srv != NULL
                     ? bt_rpc_method_max(call->method, call->srv) : 0;
        ProtobufCMessage *msg = bt_rpc_unpack(bb, call->method->desc, max,
                                              &st);

        if (msg == NULL) {
            if (call->srv != NULL) {
                call->srv->stats.decode_errors++;
            }
            if (bt_rpc_warn_allowed()) {
                bt_warn("rpc call %s: cannot decode a %s message",
                        bt_rpc_call_method(call), call->method->desc->name);
            }
            grpc_call_cancel_with_status(
                call->call,
                st == BT_ERR_TOO_LARGE ? GRPC_STATUS_RESOURCE_EXHAUSTED
                                       : GRPC_STATUS_INVALID_ARGUMENT,
                st == BT_ERR_TOO_LARGE ? "message over the size limit"
                                       : "cannot decode the message",
                NULL);
        } else {
            call->method->recv(call, msg, call->method->arg);
            protobuf_c_message_free_unpacked(msg, NULL);
            if (!call->ended && !bt_rpc_call_gone(call)) {
                bt_rpc_call_start_recv(call);
            }
        }
    }
    if (bb != NULL) {
        grpc_byte_buffer_destroy(bb);
    }
    call->ops--;
    bt_rpc_call_maybe_free(call);
}

void bt_rpc_call_begin(bt_rpc_call_t *call)
{
    bt_rpc_method_t *m = call->method;
    grpc_op op;

    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    op.data.recv_close_on_server.cancelled = &call->close_cancelled;
    if (!bt_rpc_call_start(call, &op, 1, &call->tag_close)) {
        grpc_call_cancel(call->call, NULL);
        call->ended = true;
        call->cancelled = true;
        bt_rpc_call_maybe_free(call);
        return;
    }
    call->ops++;   /* hold across the handler */
    if (m->kind != BT_RPC_KIND_GENERIC && !bt_rpc_call_admit(call)) {
        call->ops--;
        bt_rpc_call_maybe_free(call);
        return;
    }
    switch (m->kind) {
    case BT_RPC_KIND_GENERIC: {
        char text[300];

        call->path_copy = grpc_slice_to_c_string(call->details.method);
        snprintf(text, sizeof(text), "unknown method %.256s", call->path_copy);
        bt_rpc_call_end(call, BT_RPC_UNIMPLEMENTED, text);
        if (call->srv != NULL) {
            call->srv->stats.unimplemented++;
        }
        break;
    }
    case BT_RPC_KIND_UNARY:
    case BT_RPC_KIND_STREAM: {
        bt_status_t st = BT_ERR_TRUNCATED;   /* no message at all */

        if (call->payload != NULL) {
            call->req = bt_rpc_unpack(call->payload, m->desc,
                                      bt_rpc_method_max(m, call->srv), &st);
            grpc_byte_buffer_destroy(call->payload);
            call->payload = NULL;
        }
        if (call->req == NULL && st == BT_ERR_TRUNCATED) {
            /* No message at all: a client that closed without one, or one
             * that went away first (its deadline fired, it cancelled);
             * gRPC hands both over alike, and the two clocks' deadlines
             * differ by the trip. Answer now; the close says which it was
             * (bt_rpc_call_on_close): only a client still there to take
             * the answer made a malformed call. */
            call->no_message = true;
            bt_rpc_call_end(call, BT_RPC_INVALID_ARGUMENT,
                            "missing request message");
            break;
        }
        if (call->req == NULL) {
            call->srv->stats.decode_errors++;
            const char *why =
                st == BT_ERR_TOO_LARGE ? "request over the message size limit"
                                       : "cannot decode the request message";

            if (bt_rpc_warn_allowed()) {
                bt_warn("rpc call %s: %s (further ones this second not logged)",
                        m->path, why);
            }
            bt_rpc_call_end(call,
                            st == BT_ERR_TOO_LARGE ? BT_RPC_RESOURCE_EXHAUSTED
                                                   : BT_RPC_INVALID_ARGUMENT,
                            why);
            break;
        }
        m->handler(call, call->req, m->arg);
        break;
    }
    case BT_RPC_KIND_BIDI:
        m->handler(call, NULL, m->arg);
        if (!call->ended && !bt_rpc_call_gone(call)) {
            bt_rpc_call_start_recv(call);
        }
        break;
    }
    call->ops--;
    bt_rpc_call_maybe_free(call);
}

/* ---- accessors ---- */

void bt_rpc_call_set_cancel_cb(bt_rpc_call_t *call, bt_rpc_cancel_cb cb,
                               void *arg)
{
    call->cancel_cb = cb;
    call->cancel_arg = arg;
}

void bt_rpc_call_set_ctx(bt_rpc_call_t *call, void *ctx)
{
    call->ctx = ctx;
}

void *bt_rpc_call_ctx(const bt_rpc_call_t *call)
{
    return call->ctx;
}

bool bt_rpc_call_is_cancelled(const bt_rpc_call_t *call)
{
    return bt_rpc_call_gone(call);
}

uint32_t bt_rpc_call_send_queued(const bt_rpc_call_t *call)
{
    return call->q_msgs + (call->send_busy && call->inflight.bb != NULL);
}

uint64_t bt_rpc_call_deadline_left_ms(const bt_rpc_call_t *call)
{
    gpr_timespec now, left;

    if (gpr_time_cmp(call->deadline, gpr_inf_future(call->deadline.clock_type))
        == 0) {
        return UINT64_MAX;
    }
    now = gpr_now(call->deadline.clock_type);
    if (gpr_time_cmp(call->deadline, now) <= 0) {
        return 0;
    }
    left = gpr_time_sub(call->deadline, now);
    return (uint64_t)left.tv_sec * 1000u + (uint64_t)left.tv_nsec / 1000000u;
}

const char *bt_rpc_call_metadata(bt_rpc_call_t *call, const char *key)
{
    bt_rpc_md_copy_t *c;

    for (c = call->md_copies; c != NULL; c = c->next) {
        if (strcmp(c->key, key) == 0) {
            return c->value;
        }
    }
    for (size_t i = 0; i < call->md.count; i++) {
        const grpc_metadata *m = &call->md.metadata[i];
        size_t len = GRPC_SLICE_LENGTH(m->value);

        if (grpc_slice_str_cmp(m->key, key) != 0) {
            continue;
        }
        if (len > BT_RPC_MAX_METADATA_VALUE) {
            return NULL;
        }
        c = calloc(1, sizeof(*c));
        if (c == NULL || (c->key = strdup(key)) == NULL ||
            (c->value = malloc(len + 1)) == NULL) {
            if (c != NULL) {
                free(c->key);
            }
            free(c);
            return NULL;
        }
        memcpy(c->value, GRPC_SLICE_START_PTR(m->value), len);
        c->value[len] = '\0';
        c->next = call->md_copies;
        call->md_copies = c;
        return c->value;
    }
    return NULL;
}

const char *bt_rpc_call_method(const bt_rpc_call_t *call)
{
    if (call->method->kind == BT_RPC_KIND_GENERIC) {
        return call->path_copy != NULL ? call->path_copy : "(unknown)";
    }
    return call->method->path;
}

bt_rpc_server_t *bt_rpc_call_server(const bt_rpc_call_t *call)
{
    return call->srv;
}
