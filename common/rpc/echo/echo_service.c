#include "echo_service.h"

#include "base/log.h"
#include "generate.pb-c.h"
#include "registry.pb-c.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    bt_echo_t     *echo;
    bt_rpc_call_t *call;
    struct event  *timer;
    uint32_t       next;     /* stream: next index to send */
    uint32_t       total;    /* stream: messages wanted; UINT32_MAX = forever */
    uint32_t       pending;  /* stream: sends whose sent callback is due */
    bool           final_sent;
    bool           ended;    /* stream: the call was ended (finish or cancel) */
} bt_echo_req_t;

static bt_echo_req_t *bt_echo_req_new(bt_echo_t *echo, bt_rpc_call_t *call)
{
    bt_echo_req_t *r = calloc(1, sizeof(*r));

    if (r != NULL) {
        r->echo = echo;
        r->call = call;
        echo->live++;
    }
    return r;
}

static void bt_echo_req_free(bt_echo_req_t *r)
{
    if (r->timer != NULL) {
        event_free(r->timer);
    }
    r->echo->live--;
    free(r);
}

static void bt_echo_on_cancel(bt_rpc_call_t *call, void *arg)
{
    bt_echo_req_t *r = arg;

    r->echo->cancels_seen++;
    bt_rpc_call_fail(call, BT_ERR_CANCELLED, NULL);
    bt_echo_req_free(r);
}

static void bt_echo_reply_ids(bt_rpc_call_t *call, const uint32_t *ids,
                              size_t n, uint32_t max_context)
{
    Baton__V1__TokenizeResponse resp = BATON__V1__TOKENIZE_RESPONSE__INIT;

    resp.n_token_ids = n;
    resp.token_ids = (uint32_t *)ids;
    resp.max_context = max_context;
    bt_rpc_call_reply(call, &resp.base);
}

static void bt_echo_on_timer(evutil_socket_t fd, short what, void *arg)
{
    bt_echo_req_t *r = arg;
    const uint32_t ids[1] = { 1 };

    bt_rpc_call_set_cancel_cb(r->call, NULL, NULL);
    bt_echo_reply_ids(r->call, ids, 1, 0);
    bt_echo_req_free(r);
}

static void bt_echo_pool_work(void *ctx)
{
    (void)ctx;
}

static void bt_echo_pool_done(void *ctx, bt_status_t status)
{
    bt_echo_req_t *r = ctx;
    const uint32_t ids[1] = { 2 };

    if (r->call == NULL) {   /* cancelled meanwhile */
        bt_echo_req_free(r);
        return;
    }
    bt_rpc_call_set_cancel_cb(r->call, NULL, NULL);
    bt_echo_reply_ids(r->call, ids, 1, 0);
    bt_echo_req_free(r);
}

static void bt_echo_pool_on_cancel(bt_rpc_call_t *call, void *arg)
{
    bt_echo_req_t *r = arg;

    r->echo->cancels_seen++;
    bt_rpc_call_fail(call, BT_ERR_CANCELLED, NULL);
    r->call = NULL;          /* the pool's done callback frees r */
}

static void bt_echo_tokenize(bt_rpc_call_t *call, const ProtobufCMessage *req,
                             void *arg)
{
    bt_echo_t *echo = arg;
    const Baton__V1__TokenizeRequest *tr = (const void *)req;
    const char *prompt = tr->input_case == BATON__V1__TOKENIZE_REQUEST__INPUT_PROMPT
                             ? tr->prompt : "";
    size_t len = strlen(prompt);

    if (strncmp(prompt, "fail:", 5) == 0) {
        bt_rpc_call_fail_code(call, (bt_rpc_code_t)atoi(prompt + 5),
                              "failed as asked");
    } else if (strncmp(prompt, "sleep:", 6) == 0 || strcmp(prompt, "never") == 0) {
        bt_echo_req_t *r = bt_echo_req_new(echo, call);
        struct timeval tv = { 0, 0 };
        long ms = prompt[0] == 's' ? atol(prompt + 6) : -1;

        if (r == NULL) {
            bt_rpc_call_fail(call, BT_ERR_NO_MEMORY, NULL);
            return;
        }
        bt_rpc_call_set_cancel_cb(call, bt_echo_on_cancel, r);
        if (ms >= 0) {
            r->timer = evtimer_new(echo->base, bt_echo_on_timer, r);
            tv.tv_sec = ms / 1000;
            tv.tv_usec = (ms % 1000) * 1000;
            evtimer_add(r->timer, &tv);
        }
    } else if (strcmp(prompt, "pool") == 0) {
        bt_echo_req_t *r = bt_echo_req_new(echo, call);

        if (r == NULL) {
            bt_rpc_call_fail(call, BT_ERR_NO_MEMORY, NULL);
            return;
        }
        bt_rpc_call_set_cancel_cb(call, bt_echo_pool_on_cancel, r);
        if (echo->pool == NULL ||
            bt_tpool_submit(echo->pool, bt_echo_pool_work, bt_echo_pool_done,
                            r) != BT_OK) {
            r->call = NULL;
            bt_echo_pool_done(r, BT_OK);
            bt_rpc_call_fail(call, BT_ERR_EXHAUSTED, "pool full");
        }
    } else if (strcmp(prompt, "deadline") == 0) {
        uint64_t left = bt_rpc_call_deadline_left_ms(call);
        const uint32_t ids[1] = { 3 };

        bt_echo_reply_ids(call, ids, 1,
                          left > UINT32_MAX ? UINT32_MAX : (uint32_t)left);
    } else if (strcmp(prompt, "stats") == 0) {
        bt_rpc_server_stats_t st;
        uint32_t ids[5];

        bt_rpc_server_get_stats(bt_rpc_call_server(call), &st);
        ids[0] = (uint32_t)st.calls_started;
        ids[1] = (uint32_t)st.calls_cancelled;
        ids[2] = (uint32_t)st.decode_errors;
        ids[3] = (uint32_t)st.unimplemented;
        ids[4] = (uint32_t)echo->cancels_seen;
        bt_echo_reply_ids(call, ids, 5, 0);
    } else {
        const char *auth = bt_rpc_call_metadata(call, "authorization");
        uint32_t *ids = malloc((len + 1) * sizeof(*ids));

        if (ids == NULL) {
            bt_rpc_call_fail(call, BT_ERR_NO_MEMORY, NULL);
            return;
        }
        for (size_t i = 0; i < len; i++) {
            ids[i] = (unsigned char)prompt[i];
        }
        bt_echo_reply_ids(call, ids, len,
                          auth != NULL ? (uint32_t)strlen(auth) : 0);
        free(ids);
    }
}

static void bt_echo_list_models(bt_rpc_call_t *call, const ProtobufCMessage *req,
                                void *arg)
{
    Baton__V1__ListModelsResponse resp = BATON__V1__LIST_MODELS_RESPONSE__INIT;
    Baton__V1__ModelInfo model = BATON__V1__MODEL_INFO__INIT;
    Baton__V1__ModelInfo *models[1] = { &model };

    model.name = "echo";
    model.max_context = 4096;
    resp.n_models = 1;
    resp.models = models;
    bt_rpc_call_reply(call, &resp.base);
}

static void bt_echo_stream_pump(bt_echo_req_t *r);

/* Every accepted send gets its sent callback, also after the call ended:
 * the state lives until the last one. */
static void bt_echo_stream_release(bt_echo_req_t *r)
{
    if (r->ended && r->pending == 0) {
        bt_echo_req_free(r);
    }
}

static void bt_echo_stream_sent(bt_rpc_call_t *call, bool ok, void *arg)
{
    bt_echo_req_t *r = arg;

    r->pending--;
    if (ok && !r->ended) {
        bt_echo_stream_pump(r);
    }
    bt_echo_stream_release(r);
}

static void bt_echo_stream_on_cancel(bt_rpc_call_t *call, void *arg)
{
    bt_echo_req_t *r = arg;

    r->echo->cancels_seen++;
    bt_rpc_call_fail(call, BT_ERR_CANCELLED, NULL);
    r->ended = true;
    bt_echo_stream_release(r);
}

/* Sends until the queue is full; the sent callback of the last queued
 * message resumes. */
static void bt_echo_stream_pump(bt_echo_req_t *r)
{
    for (;;) {
        Baton__V1__GenerateResponse msg = BATON__V1__GENERATE_RESPONSE__INIT;
        Baton__V1__GenerateFinal fin = BATON__V1__GENERATE_FINAL__INIT;
        Baton__V1__Usage usage = BATON__V1__USAGE__INIT;
        char text[16];
        uint32_t id = r->next;
        bt_status_t st;

        if (r->next >= r->total) {
            fin.finish_reason = BATON__V1__FINISH_REASON__FINISH_REASON_LENGTH;
            usage.completion_tokens = r->total;
            fin.usage = &usage;
            msg.final = &fin;
            msg.text = "";
            if (bt_rpc_call_send(r->call, &msg.base, NULL, NULL) ==
                BT_ERR_EXHAUSTED) {
                return;  /* retried from a sent callback */
            }
            r->final_sent = true;
            r->echo->streams_done++;
            bt_rpc_call_set_cancel_cb(r->call, NULL, NULL);
            bt_rpc_call_finish(r->call);
            r->ended = true;   /* freed by the caller's release */
            return;
        }
        snprintf(text, sizeof(text), "t%u", id);
        msg.n_token_ids = 1;
        msg.token_ids = &id;
        msg.text = text;
        st = bt_rpc_call_send(r->call, &msg.base, bt_echo_stream_sent, r);
        if (st == BT_ERR_EXHAUSTED) {
            return;
        }
        if (st != BT_OK) {
            return;   /* cancelled: the cancel callback ends r */
        }
        r->pending++;
        r->next++;
        /* Continue from sent callbacks once a few are queued. */
        if (bt_rpc_call_send_queued(r->call) >= 8) {
            return;
        }
    }
}

static void bt_echo_generate(bt_rpc_call_t *call, const ProtobufCMessage *req,
                             void *arg)
{
    bt_echo_t *echo = arg;
    const Baton__V1__GenerateRequest *gr = (const void *)req;
    bt_echo_req_t *r = bt_echo_req_new(echo, call);
    int32_t n = gr->sampling != NULL ? gr->sampling->max_tokens : 0;

    if (r == NULL) {
        bt_rpc_call_fail(call, BT_ERR_NO_MEMORY, NULL);
        return;
    }
    if (n < 0 || n > 1000000) {
        bt_echo_req_free(r);
        bt_rpc_call_fail(call, BT_ERR_INVALID_ARG, "max_tokens %d out of range",
                         (int)n);
        return;
    }
    r->total = (uint32_t)n;
    if (gr->input_case == BATON__V1__GENERATE_REQUEST__INPUT_PROMPT &&
        strcmp(gr->prompt, "forever") == 0) {
        r->total = UINT32_MAX;
    }
    bt_rpc_call_set_cancel_cb(call, bt_echo_stream_on_cancel, r);
    bt_echo_stream_pump(r);
    bt_echo_stream_release(r);
}

static void bt_echo_register_start(bt_rpc_call_t *call,
                                   const ProtobufCMessage *req, void *arg)
{
    bt_echo_t *echo = arg;
    bt_echo_req_t *r = bt_echo_req_new(echo, call);

    if (r == NULL) {
        bt_rpc_call_fail(call, BT_ERR_NO_MEMORY, NULL);
        return;
    }
    bt_rpc_call_set_ctx(call, r);
    bt_rpc_call_set_cancel_cb(call, bt_echo_on_cancel, r);
}

static void bt_echo_register_recv(bt_rpc_call_t *call,
                                  const ProtobufCMessage *msg, void *arg)
{
    bt_echo_req_t *r = bt_rpc_call_ctx(call);
    const Baton__V1__NodeMessage *nm = (const void *)msg;
    Baton__V1__RouterMessage out = BATON__V1__ROUTER_MESSAGE__INIT;
    Baton__V1__Ack ack = BATON__V1__ACK__INIT;

    if (nm == NULL) {
        bt_rpc_call_set_cancel_cb(call, NULL, NULL);
        bt_rpc_call_finish(call);
        bt_echo_req_free(r);
        return;
    }
    ack.ok = true;
    switch (nm->kind_case) {
    case BATON__V1__NODE_MESSAGE__KIND_HELLO:
        ack.command_id = strlen(nm->hello->node_id);
        out.heartbeat_interval_ms = 1000;
        break;
    case BATON__V1__NODE_MESSAGE__KIND_STATUS:
        ack.command_id = nm->status->running_sequences;
        break;
    default:
        ack.ok = false;
        ack.error = "unexpected message";
        break;
    }
    out.kind_case = BATON__V1__ROUTER_MESSAGE__KIND_ACK;
    out.ack = &ack;
    if (bt_rpc_call_send(call, &out.base, NULL, NULL) != BT_OK) {
        bt_rpc_call_set_cancel_cb(call, NULL, NULL);
        bt_rpc_call_fail(call, BT_ERR_EXHAUSTED, "client too slow");
        bt_echo_req_free(r);
    }
}

bt_status_t bt_echo_register(bt_echo_t *echo, bt_rpc_server_t *srv,
                             struct event_base *base, bt_tpool_t *pool)
{
    bt_status_t st;

    memset(echo, 0, sizeof(*echo));
    echo->base = base;
    echo->srv = srv;
    echo->pool = pool;
    st = bt_rpc_server_add_unary(srv, "/baton.v1.Generate/Tokenize",
                                 &baton__v1__tokenize_request__descriptor,
                                 bt_echo_tokenize, echo);
    if (st == BT_OK) {
        st = bt_rpc_server_add_unary(srv, "/baton.v1.Generate/ListModels",
                                     &baton__v1__list_models_request__descriptor,
                                     bt_echo_list_models, echo);
    }
    if (st == BT_OK) {
        st = bt_rpc_server_add_stream(srv, "/baton.v1.Generate/Generate",
                                      &baton__v1__generate_request__descriptor,
                                      bt_echo_generate, echo);
    }
    if (st == BT_OK) {
        st = bt_rpc_server_add_bidi(srv, "/baton.v1.Registry/Register",
                                    &baton__v1__node_message__descriptor,
                                    bt_echo_register_start,
                                    bt_echo_register_recv, echo);
    }
    return st;
}
