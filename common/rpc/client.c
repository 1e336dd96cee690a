/* Client calls: unary (one batch), server streaming and bidirectional
 * (TOOLCHAIN: initial batch, RECV_STATUS_ON_CLIENT under its own tag, then
 * one RECV_MESSAGE at a time). Everything runs on the loop thread. */
#include "client.h"
#include "rpc_int.h"

#include "base/list.h"
#include "base/log.h"
#include "base/ring.h"

#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>

#include <stdlib.h>
#include <string.h>

typedef enum {
    BT_RPC_CCALL_UNARY,
    BT_RPC_CCALL_STREAM,
    BT_RPC_CCALL_BIDI,
} bt_rpc_ccall_kind_t;

struct bt_rpc_client {
    struct event_base    *base;
    bt_rpc_bridge_t       bridge;
    uint32_t              max_message;
    uint32_t              send_queue_max;
    bt_list_t             channels; /* bt_rpc_channel_t.link */
    bt_list_t             calls;    /* bt_rpc_client_call_t.link */
    int                   ops;      /* batches in flight */
    const char           *token;    /* cluster token sent on every call */
};

struct bt_rpc_channel {
    bt_rpc_client_t  *cli;
    grpc_channel     *ch;
    char             *target;
    bt_list_t         link;     /* cli->channels */
};

struct bt_rpc_client_call {
    bt_rpc_client_t                  *cli;
    bt_rpc_ccall_kind_t               kind;
    grpc_call                        *call;
    const ProtobufCMessageDescriptor *desc;
    bt_rpc_unary_done_cb              unary_done;
    bt_rpc_msg_cb                     on_msg;
    bt_rpc_done_cb                    done;
    void                             *arg;
    bt_list_t                         link;     /* cli->calls */
    grpc_metadata                    *md;
    size_t                            n_md;
    grpc_byte_buffer                 *req_bb;
    grpc_metadata_array               initial_md;
    grpc_metadata_array               trailing_md;
    grpc_status_code                  status;
    grpc_slice                        details;
    grpc_byte_buffer                 *recv_bb;
    bt_rpc_tag_t                      tag_start;
    bt_rpc_tag_t                      tag_status;
    bt_rpc_tag_t                      tag_recv;
    bt_rpc_tag_t                      tag_send;
    int                               ops;
    bool                              status_done;
    bool                              recv_eof;
    bool                              done_called;
    ProtobufCMessage                 *resp;        /* unary */
    bt_rpc_code_t                     local_code;  /* our own failure, if any */
    const char                       *local_msg;
    /* bidi sends */
    bt_ring_t                         q;  /* grpc_byte_buffer *, to send */
    grpc_byte_buffer                 *send_bb;
    bool                              send_busy;
    bool                              close_wanted;
    bool                              close_sent;
};

bt_rpc_client_t *bt_rpc_client_create(struct event_base *base,
                                      const bt_rpc_client_opts_t *opts)
{
    bt_rpc_client_t *cli = calloc(1, sizeof(*cli));

    if (cli == NULL) {
        return NULL;
    }
    cli->base = base;
    bt_list_init(&cli->channels);
    bt_list_init(&cli->calls);
    cli->max_message = opts != NULL && opts->max_message_bytes != 0
                           ? opts->max_message_bytes
                           : BT_RPC_DEFAULT_MAX_MESSAGE;
    if (cli->max_message > BT_RPC_MAX_MESSAGE_LIMIT) {
        cli->max_message = BT_RPC_MAX_MESSAGE_LIMIT;
    }
    cli->send_queue_max = opts != NULL && opts->send_queue_max != 0
                              ? opts->send_queue_max
                              : BT_RPC_DEFAULT_SEND_QUEUE;
    grpc_init();
    if (bt_rpc_bridge_init(&cli->bridge, base) != BT_OK) {
        grpc_shutdown();
        free(cli);
        return NULL;
    }
    return cli;
}

void bt_rpc_client_set_token(bt_rpc_client_t *cli, const char *token)
{
    cli->token = token;
}

bt_rpc_channel_t *bt_rpc_channel_create(bt_rpc_client_t *cli,
                                        const char *target,
                                        const bt_rpc_tls_t *tls)
{
    grpc_channel_credentials *creds;
    bt_rpc_channel_t *ch;
    grpc_arg args[5];
    grpc_channel_args chargs;
    size_t n = 0;

    ch = calloc(1, sizeof(*ch));
    if (ch == NULL || (ch->target = strdup(target)) == NULL) {
        free(ch);
        return NULL;
    }
    creds = tls != NULL ? bt_rpc_channel_creds_create(tls)
                        : grpc_insecure_credentials_create();
    if (creds == NULL) {
        goto err_ch;
    }
    args[n].type = GRPC_ARG_INTEGER;
    args[n].key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
    args[n++].value.integer = (int)cli->max_message;
    args[n].type = GRPC_ARG_INTEGER;
    args[n].key = (char *)GRPC_ARG_MAX_SEND_MESSAGE_LENGTH;
    args[n++].value.integer = (int)cli->max_message;
    /* A restarted node is found again quickly. */
    args[n].type = GRPC_ARG_INTEGER;
    args[n].key = (char *)GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS;
    args[n++].value.integer = 100;
    args[n].type = GRPC_ARG_INTEGER;
    args[n].key = (char *)GRPC_ARG_MAX_RECONNECT_BACKOFF_MS;
    args[n++].value.integer = 5000;
    if (tls != NULL && tls->target_name != NULL) {
        args[n].type = GRPC_ARG_STRING;
        args[n].key = (char *)GRPC_SSL_TARGET_NAME_OVERRIDE_ARG;
        args[n++].value.string = (char *)tls->target_name;
    }
    chargs.num_args = n;
    chargs.args = args;
    ch->ch = grpc_channel_create(target, creds, &chargs);
    grpc_channel_credentials_release(creds);
    if (ch->ch == NULL) {
        bt_error("rpc channel %s: cannot create", target);
        goto err_ch;
    }
    ch->cli = cli;
    bt_list_add_head(&cli->channels, &ch->link);
    return ch;

err_ch:
    free(ch->target);
    free(ch);
    return NULL;
}

void bt_rpc_channel_destroy(bt_rpc_channel_t *ch)
{
    if (ch == NULL) {
        return;
    }
    bt_list_del(&ch->link);
    grpc_channel_destroy(ch->ch);
    free(ch->target);
    free(ch);
}

const char *bt_rpc_channel_target(const bt_rpc_channel_t *ch)
{
    return ch->target;
}

bool bt_rpc_channel_is_ready(bt_rpc_channel_t *ch, bool try_connect)
{
    grpc_connectivity_state s =
        grpc_channel_check_connectivity_state(ch->ch, try_connect);

    return s == GRPC_CHANNEL_READY;
}

/* ---- calls ---- */

static void bt_rpc_ccall_free(bt_rpc_client_call_t *c)
{
    grpc_byte_buffer *bb;

    bt_list_del(&c->link);   /* safe when it never joined the list */
    for (size_t i = 0; i < c->n_md; i++) {
        grpc_slice_unref(c->md[i].key);
        grpc_slice_unref(c->md[i].value);
    }
    free(c->md);
    if (c->req_bb != NULL) {
        grpc_byte_buffer_destroy(c->req_bb);
    }
    if (c->recv_bb != NULL) {
        grpc_byte_buffer_destroy(c->recv_bb);
    }
    if (c->send_bb != NULL) {
        grpc_byte_buffer_destroy(c->send_bb);
    }
    while (bt_ring_pop(&c->q, &bb)) {
        grpc_byte_buffer_destroy(bb);
    }
    bt_ring_cleanup(&c->q);
    if (c->resp != NULL) {
        protobuf_c_message_free_unpacked(c->resp, NULL);
    }
    grpc_metadata_array_destroy(&c->initial_md);
    grpc_metadata_array_destroy(&c->trailing_md);
    grpc_slice_unref(c->details);
    if (c->call != NULL) {
        grpc_call_unref(c->call);
    }
    free(c);
}

/* Runs `done` once the status is in and no operation is in flight. */
static void bt_rpc_ccall_maybe_done(bt_rpc_client_call_t *c)
{
    bt_rpc_result_t res;
    char *details = NULL;

    if (!c->status_done || c->ops > 0 || c->done_called) {
        return;
    }
    c->done_called = true;
    if (c->local_code != BT_RPC_OK) {
        res.code = c->local_code;
        res.message = c->local_msg;
    } else {
        res.code = (bt_rpc_code_t)c->status;
        details = grpc_slice_to_c_string(c->details);
        res.message = details != NULL ? details : "";
    }
    res.status = bt_rpc_status_from_code(res.code);
    if (c->kind == BT_RPC_CCALL_UNARY) {
        c->unary_done(c->arg, &res, res.code == BT_RPC_OK ? c->resp : NULL);
    } else {
        c->done(c->arg, &res);
    }
    gpr_free(details);
    bt_rpc_ccall_free(c);
}

static void bt_rpc_ccall_op_done(bt_rpc_client_call_t *c)
{
    c->ops--;
    c->cli->ops--;
}

static bool bt_rpc_ccall_start(bt_rpc_client_call_t *c, const grpc_op *ops,
                               size_t n, bt_rpc_tag_t *tag)
{
    grpc_call_error err = grpc_call_start_batch(c->call, ops, n, tag, NULL);

    if (err != GRPC_CALL_OK) {
        bt_error("rpc client call: start_batch failed with %d", (int)err);
        return false;
    }
    c->ops++;
    c->cli->ops++;
    return true;
}

/* Our own failure (undecodable response): cancel with a status of ours. */
static void bt_rpc_ccall_fail_local(bt_rpc_client_call_t *c, bt_rpc_code_t code,
                                    const char *msg)
{
    if (c->local_code == BT_RPC_OK) {
        c->local_code = code;
        c->local_msg = msg;
    }
    grpc_call_cancel_with_status(c->call, (grpc_status_code)code, msg, NULL);
}

static void bt_rpc_ccall_start_recv(bt_rpc_client_call_t *c)
{
    grpc_op op;

    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &c->recv_bb;
    if (!bt_rpc_ccall_start(c, &op, 1, &c->tag_recv)) {
        c->recv_eof = true;
    }
}

static void bt_rpc_ccall_on_recv(bt_rpc_tag_t *tag, bool ok)
{
    bt_rpc_client_call_t *c = BT_RPC_CONTAINER_OF(tag, bt_rpc_client_call_t,
                                                  tag_recv);
    grpc_byte_buffer *bb = c->recv_bb;

    c->recv_bb = NULL;
    if (!ok || bb == NULL || c->local_code != BT_RPC_OK) {
        c->recv_eof = true;
    } else {
        bt_status_t st;
        ProtobufCMessage *msg = bt_rpc_unpack(bb, c->desc, c->cli->max_message,
                                              &st);

        if (msg == NULL) {
            bt_warn("rpc client: cannot decode a %s message", c->desc->name);
            bt_rpc_ccall_fail_local(c, BT_RPC_INTERNAL,
                                    "cannot decode the response message");
            c->recv_eof = true;
        } else {
            c->on_msg(c->arg, msg);
            protobuf_c_message_free_unpacked(msg, NULL);
            bt_rpc_ccall_start_recv(c);
        }
    }
    if (bb != NULL) {
        grpc_byte_buffer_destroy(bb);
    }
    bt_rpc_ccall_op_done(c);
    bt_rpc_ccall_maybe_done(c);
}

static void bt_rpc_ccall_on_start(bt_rpc_tag_t *tag, bool ok)
{
    bt_rpc_client_call_t *c = BT_RPC_CONTAINER_OF(tag, bt_rpc_client_call_t,
                                                  tag_start);

    if (c->req_bb != NULL) {
        grpc_byte_buffer_destroy(c->req_bb);
        c->req_bb = NULL;
    }
    if (c->kind == BT_RPC_CCALL_UNARY) {
        /* The one batch also carried the response and the status. */
        c->status_done = true;
        if (!ok && c->local_code == BT_RPC_OK) {
            c->local_code = BT_RPC_UNKNOWN;
            c->local_msg = "call failed";
        } else if (c->status == GRPC_STATUS_OK && c->local_code == BT_RPC_OK) {
            bt_status_t st;

            c->resp = c->recv_bb == NULL
                          ? NULL
                          : bt_rpc_unpack(c->recv_bb, c->desc,
                                          c->cli->max_message, &st);
            if (c->resp == NULL) {
                bt_warn("rpc client: cannot decode a %s response",
                        c->desc->name);
                c->local_code = BT_RPC_INTERNAL;
                c->local_msg = "missing or undecodable response message";
            }
        }
    }
    bt_rpc_ccall_op_done(c);
    bt_rpc_ccall_maybe_done(c);
}

static void bt_rpc_ccall_on_status(bt_rpc_tag_t *tag, bool ok)
{
    bt_rpc_client_call_t *c = BT_RPC_CONTAINER_OF(tag, bt_rpc_client_call_t,
                                                  tag_status);

    c->status_done = true;
    bt_rpc_ccall_op_done(c);
    bt_rpc_ccall_maybe_done(c);
}

static void bt_rpc_ccall_pump(bt_rpc_client_call_t *c);

static void bt_rpc_ccall_on_send(bt_rpc_tag_t *tag, bool ok)
{
    bt_rpc_client_call_t *c = BT_RPC_CONTAINER_OF(tag, bt_rpc_client_call_t,
                                                  tag_send);

    c->send_busy = false;
    if (c->send_bb != NULL) {
        grpc_byte_buffer_destroy(c->send_bb);
        c->send_bb = NULL;
    }
    if (ok) {
        bt_rpc_ccall_pump(c);
    } else {
        c->close_sent = true;   /* the stream is gone: send nothing more */
    }
    bt_rpc_ccall_op_done(c);
    bt_rpc_ccall_maybe_done(c);
}

static void bt_rpc_ccall_pump(bt_rpc_client_call_t *c)
{
    grpc_op op;

    if (c->send_busy || c->close_sent || c->status_done) {
        return;
    }
    memset(&op, 0, sizeof(op));
    if (bt_ring_pop(&c->q, &c->send_bb)) {
        op.op = GRPC_OP_SEND_MESSAGE;
        op.data.send_message.send_message = c->send_bb;
    } else if (c->close_wanted) {
        op.op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
        c->close_sent = true;
    } else {
        return;
    }
    c->send_busy = bt_rpc_ccall_start(c, &op, 1, &c->tag_send);
}

static bt_status_t bt_rpc_ccall_md(bt_rpc_client_call_t *c,
                                   const bt_rpc_call_opts_t *opts)
{
    size_t n = opts != NULL ? opts->n_md : 0;

    if (n == 0 && c->cli->token == NULL) {
        return BT_OK;
    }
    if (n > 64) {
        bt_error("rpc client: %zu metadata entries, at most 64", n);
        return BT_ERR_INVALID_ARG;
    }
    c->md = calloc(n + 1, sizeof(*c->md));
    if (c->md == NULL) {
        return BT_ERR_NO_MEMORY;
    }
    for (size_t i = 0; i < n; i++) {
        grpc_slice key = grpc_slice_from_copied_string(opts->md[i].key);

        if (!grpc_header_key_is_legal(key) ||
            !grpc_header_nonbin_value_is_legal(
                grpc_slice_from_static_string(opts->md[i].value))) {
            grpc_slice_unref(key);
            bt_error("rpc client: bad metadata key or value (key %s)",
                     opts->md[i].key);
            return BT_ERR_INVALID_ARG;
        }
        c->md[i].key = key;
        c->md[i].value = grpc_slice_from_copied_string(opts->md[i].value);
        c->n_md++;
    }
    if (c->cli->token != NULL) {
        /* the client's, borrowed: it outlives its calls (auth.h) */
        c->md[c->n_md].key = grpc_slice_from_static_string(BT_RPC_AUTH_MD_KEY);
        c->md[c->n_md].value = grpc_slice_from_static_string(c->cli->token);
        c->n_md++;
    }
    return BT_OK;
}

static bt_status_t bt_rpc_ccall_create(bt_rpc_channel_t *ch,
                                       bt_rpc_ccall_kind_t kind,
                                       const char *method,
                                       const ProtobufCMessage *req,
                                       const ProtobufCMessageDescriptor *desc,
                                       const bt_rpc_call_opts_t *opts,
                                       bt_rpc_client_call_t **c_p)
{
    bt_rpc_client_t *cli = ch->cli;
    bt_rpc_client_call_t *c;
    bt_status_t st;

    if (method == NULL || method[0] != '/' || desc == NULL) {
        bt_error("rpc client: bad method or descriptor");
        return BT_ERR_INVALID_ARG;
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        return BT_ERR_NO_MEMORY;
    }
    c->cli = cli;
    bt_list_init(&c->link);
    bt_ring_init(&c->q, sizeof(grpc_byte_buffer *));
    c->kind = kind;
    c->desc = desc;
    c->details = grpc_empty_slice();
    c->tag_start.cb = bt_rpc_ccall_on_start;
    c->tag_status.cb = bt_rpc_ccall_on_status;
    c->tag_recv.cb = bt_rpc_ccall_on_recv;
    c->tag_send.cb = bt_rpc_ccall_on_send;
    grpc_metadata_array_init(&c->initial_md);
    grpc_metadata_array_init(&c->trailing_md);
    bt_list_add_head(&cli->calls, &c->link);
    st = bt_rpc_ccall_md(c, opts);
    if (st != BT_OK) {
        goto err;
    }
    if (req != NULL && (c->req_bb = bt_rpc_pack(req, cli->max_message, &st))
                           == NULL) {
        goto err;
    }
    c->call = grpc_channel_create_call(
        ch->ch, NULL, GRPC_PROPAGATE_DEFAULTS, cli->bridge.cq,
        grpc_slice_from_static_string(method), NULL,
        bt_rpc_deadline_from_ms(opts != NULL ? opts->timeout_ms : 0), NULL);
    if (c->call == NULL) {
        bt_error("rpc client: cannot create a call to %s", method);
        st = BT_ERR_INTERNAL;
        goto err;
    }
    *c_p = c;
    return BT_OK;

err:
    bt_rpc_ccall_free(c);
    return st;
}

/* Starts the batches; on failure cancels and lets the call end through
 * its tags (the caller returns an error and `done` must not run). */
static bt_status_t bt_rpc_ccall_go(bt_rpc_client_call_t *c)
{
    grpc_op ops[6];
    size_t n = 0;

    memset(ops, 0, sizeof(ops));
    ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[n].data.send_initial_metadata.count = c->n_md;
    ops[n++].data.send_initial_metadata.metadata = c->md;
    if (c->kind != BT_RPC_CCALL_BIDI) {
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n++].data.send_message.send_message = c->req_bb;
        ops[n++].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    }
    ops[n].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[n++].data.recv_initial_metadata.recv_initial_metadata = &c->initial_md;
    if (c->kind == BT_RPC_CCALL_UNARY) {
        ops[n].op = GRPC_OP_RECV_MESSAGE;
        ops[n++].data.recv_message.recv_message = &c->recv_bb;
        ops[n].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
        ops[n].data.recv_status_on_client.trailing_metadata = &c->trailing_md;
        ops[n].data.recv_status_on_client.status = &c->status;
        ops[n++].data.recv_status_on_client.status_details = &c->details;
        if (!bt_rpc_ccall_start(c, ops, n, &c->tag_start)) {
            bt_rpc_ccall_free(c);
            return BT_ERR_INTERNAL;
        }
        return BT_OK;
    }
    if (!bt_rpc_ccall_start(c, ops, n, &c->tag_start)) {
        bt_rpc_ccall_free(c);
        return BT_ERR_INTERNAL;
    }
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[0].data.recv_status_on_client.trailing_metadata = &c->trailing_md;
    ops[0].data.recv_status_on_client.status = &c->status;
    ops[0].data.recv_status_on_client.status_details = &c->details;
    if (!bt_rpc_ccall_start(c, ops, 1, &c->tag_status)) {
        /* Cannot happen short of a bug; end the call as failed. */
        c->status_done = true;
        c->local_code = BT_RPC_INTERNAL;
        c->local_msg = "cannot start the call";
        grpc_call_cancel(c->call, NULL);
        return BT_OK;
    }
    bt_rpc_ccall_start_recv(c);
    return BT_OK;
}

bt_status_t bt_rpc_client_unary(bt_rpc_channel_t *ch, const char *method,
                                const ProtobufCMessage *req,
                                const ProtobufCMessageDescriptor *resp_desc,
                                const bt_rpc_call_opts_t *opts,
                                bt_rpc_unary_done_cb done, void *arg,
                                bt_rpc_client_call_t **call_p)
{
    bt_rpc_client_call_t *c;
    bt_status_t st;

    if (req == NULL || done == NULL) {
        return BT_ERR_INVALID_ARG;
    }
    st = bt_rpc_ccall_create(ch, BT_RPC_CCALL_UNARY, method, req, resp_desc,
                             opts, &c);
    if (st != BT_OK) {
        return st;
    }
    c->unary_done = done;
    c->arg = arg;
    st = bt_rpc_ccall_go(c);
    if (st == BT_OK && call_p != NULL) {
        *call_p = c;
    }
    return st;
}

bt_status_t bt_rpc_client_stream(bt_rpc_channel_t *ch, const char *method,
                                 const ProtobufCMessage *req,
                                 const ProtobufCMessageDescriptor *resp_desc,
                                 const bt_rpc_call_opts_t *opts,
                                 bt_rpc_msg_cb on_msg, bt_rpc_done_cb done,
                                 void *arg, bt_rpc_client_call_t **call_p)
{
    bt_rpc_client_call_t *c;
    bt_status_t st;

    if (req == NULL || on_msg == NULL || done == NULL) {
        return BT_ERR_INVALID_ARG;
    }
    st = bt_rpc_ccall_create(ch, BT_RPC_CCALL_STREAM, method, req, resp_desc,
                             opts, &c);
    if (st != BT_OK) {
        return st;
    }
    c->on_msg = on_msg;
    c->done = done;
    c->arg = arg;
    st = bt_rpc_ccall_go(c);
    if (st == BT_OK && call_p != NULL) {
        *call_p = c;
    }
    return st;
}

bt_status_t bt_rpc_client_bidi(bt_rpc_channel_t *ch, const char *method,
                               const ProtobufCMessageDescriptor *resp_desc,
                               const bt_rpc_call_opts_t *opts,
                               bt_rpc_msg_cb on_msg, bt_rpc_done_cb done,
                               void *arg, bt_rpc_client_call_t **call_p)
{
    bt_rpc_client_call_t *c;
    bt_status_t st;

    if (on_msg == NULL || done == NULL) {
        return BT_ERR_INVALID_ARG;
    }
    st = bt_rpc_ccall_create(ch, BT_RPC_CCALL_BIDI, method, NULL, resp_desc,
                             opts, &c);
    if (st != BT_OK) {
        return st;
    }
    c->on_msg = on_msg;
    c->done = done;
    c->arg = arg;
    st = bt_rpc_ccall_go(c);
    if (st == BT_OK && call_p != NULL) {
        *call_p = c;
    }
    return st;
}

bt_status_t bt_rpc_client_call_send(bt_rpc_client_call_t *c,
                                    const ProtobufCMessage *msg)
{
    grpc_byte_buffer *bb;
    bt_status_t st;

    if (c->kind != BT_RPC_CCALL_BIDI || c->close_wanted || c->close_sent ||
        c->status_done) {
        return BT_ERR_CANCELLED;
    }
    if (bt_ring_len(&c->q) >= c->cli->send_queue_max) {
        return BT_ERR_EXHAUSTED;
    }
    bb = bt_rpc_pack(msg, c->cli->max_message, &st);
    if (bb == NULL) {
        return st;
    }
    st = bt_ring_push(&c->q, &bb);
    if (st != BT_OK) {
        grpc_byte_buffer_destroy(bb);
        return st;
    }
    bt_rpc_ccall_pump(c);
    return BT_OK;
}

void bt_rpc_client_call_close_send(bt_rpc_client_call_t *c)
{
    if (c->kind != BT_RPC_CCALL_BIDI || c->close_wanted) {
        return;
    }
    c->close_wanted = true;
    bt_rpc_ccall_pump(c);
}

void bt_rpc_client_call_cancel(bt_rpc_client_call_t *c)
{
    if (c != NULL && !c->done_called) {
        grpc_call_cancel(c->call, NULL);
    }
}

void bt_rpc_client_destroy(bt_rpc_client_t *cli)
{
    uint64_t waited_ms = 0;
    bt_list_t *it, *next;

    if (cli == NULL) {
        return;
    }
    bt_list_foreach_safe(it, next, &cli->calls) {
        grpc_call_cancel(BT_CONTAINER_OF(it, bt_rpc_client_call_t, link)->call, NULL);
    }
    while (cli->ops > 0 && waited_ms < 30000) {
        if (bt_rpc_bridge_run(&cli->bridge, 100) == 0) {
            waited_ms += 100;
        }
    }
    if (cli->ops > 0) {
        bt_error("rpc client destroy: %d operations never came back", cli->ops);
    }
    while (!bt_list_empty(&cli->channels)) {
        bt_rpc_channel_destroy(BT_CONTAINER_OF(cli->channels.next, bt_rpc_channel_t,
                                               link));
    }
    bt_rpc_bridge_cleanup(&cli->bridge);
    grpc_shutdown();
    free(cli);
}
