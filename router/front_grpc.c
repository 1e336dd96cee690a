/* baton.v1.Generate over gRPC: Generate (server streaming), Tokenize and
 * ListModels. */
#include "front.h"
#include "model.h"
#include "request.h"

#include "base/array.h"
#include "base/log.h"

#include <stdlib.h>
#include <string.h>

/* Logprobs of one pending token (a copy: the node's message is gone by
 * the time a busy send queue has room). */
typedef struct {
    uint32_t token_id;
    float    logprob;
    uint32_t n_top;
    uint32_t top_ids[BT_SAMPLE_MAX_LOGPROBS];
    float    top_logprobs[BT_SAMPLE_MAX_LOGPROBS];
} bt_gen_lp_t;

/* A Generate stream: token deltas are batched while the client's send
 * queue is busy, so a slow client never stalls the router or drops text.
 *
 * Lifetime: three parties call into it (the request's sink, the call's
 * sent and cancel callbacks) and any of them can end the others from
 * inside its callback (a cancel ends the request, whose on_end ends the
 * call). While the prompt is tokenized on the pool there is no request
 * yet: a cancel then drops the job (it never starts one) and counts as
 * the request's end. Each entry point holds the stream for its duration; it is freed
 * when the request and the call are both over, no send is due and no
 * entry point is still on the stack. */
typedef struct {
    bt_router_t            *r;
    bt_rpc_call_t          *call;
    bt_rreq_t              *req;
    bt_front_job_t         *job;        /* the prompt on the pool */
    uint32_t               *ids;        /* pending, not yet sent */
    size_t                  n_ids;
    size_t                  cap_ids;
    bt_gen_lp_t            *lps;        /* [n_ids] when logprobs are asked */
    size_t                  cap_lps;
    bool                    want_lp;
    bt_buf_t                text;       /* pending text */
    int                     in_flight;  /* sends whose sent_cb is due */
    bool                    ended;      /* the request ended */
    bool                    call_done;  /* the call was ended or failed */
    bool                    any_sent;
    int                     holds;      /* entry points on the stack */
    bt_status_t             status;
    char                    message[256];
    char                    request_id[BT_RREQ_ID_MAX + 1];
    Baton__V1__FinishReason finish;
    Baton__V1__Usage        usage;
    bool                    echo;       /* GenerateRequest.echo */
    bool                    echo_sent;  /* the prompt's message is out */
    Baton__V1__GenerateResponse *echo_msg;  /* ready to send (unpacked) */
} bt_gen_stream_t;

#define BT_GEN_MAX_IN_FLIGHT 2

static void bt_gen_hold(bt_gen_stream_t *g)
{
    g->holds++;
}

static void bt_gen_release(bt_gen_stream_t *g)
{
    g->holds--;
    if (g->holds == 0 && g->call_done && g->ended && g->in_flight == 0) {
        free(g->ids);
        free(g->lps);
        bt_buf_cleanup(&g->text);
        if (g->echo_msg != NULL) {
            baton__v1__generate_response__free_unpacked(g->echo_msg, NULL);
        }
        free(g);
    }
}

static void bt_gen_flush(bt_gen_stream_t *g);

static void bt_gen_sent_cb(bt_rpc_call_t *call, bool ok, void *arg)
{
    bt_gen_stream_t *g = arg;

    (void)call;
    bt_gen_hold(g);
    g->in_flight--;
    if (!ok && !g->ended && g->req != NULL) {
        bt_rreq_cancel(g->req, "the client's stream broke");
    }
    bt_gen_flush(g);
    bt_gen_release(g);
}

/* The TokenLogprobs of the pending tokens, in heap arrays freed by
 * bt_gen_lp_msgs_free; TopLogprob.text is each token's text alone. */
typedef struct {
    Baton__V1__TokenLogprobs  *msgs;
    Baton__V1__TokenLogprobs **ptrs;
    Baton__V1__TopLogprob     *tops;
    Baton__V1__TopLogprob    **top_ptrs;
    size_t                    *text_off;
    bt_buf_t                   texts;
} bt_gen_lp_msgs_t;

static void bt_gen_lp_msgs_free(bt_gen_lp_msgs_t *lm)
{
    free(lm->msgs);
    free(lm->ptrs);
    free(lm->tops);
    free(lm->top_ptrs);
    free(lm->text_off);
    bt_buf_cleanup(&lm->texts);
}

static bt_status_t bt_gen_lp_msgs(bt_gen_stream_t *g, bt_gen_lp_msgs_t *lm)
{
    size_t n_top = 0, k = 0;

    memset(lm, 0, sizeof(*lm));
    bt_buf_init(&lm->texts, 16u << 20);
    for (size_t i = 0; i < g->n_ids; i++) {
        n_top += g->lps[i].n_top;
    }
    lm->msgs = malloc(g->n_ids * sizeof(*lm->msgs));
    lm->ptrs = malloc(g->n_ids * sizeof(*lm->ptrs));
    lm->tops = malloc((n_top ? n_top : 1) * sizeof(*lm->tops));
    lm->top_ptrs = malloc((n_top ? n_top : 1) * sizeof(*lm->top_ptrs));
    lm->text_off = malloc((n_top ? n_top : 1) * sizeof(*lm->text_off));
    if (lm->msgs == NULL || lm->ptrs == NULL || lm->tops == NULL ||
        lm->top_ptrs == NULL || lm->text_off == NULL) {
        bt_gen_lp_msgs_free(lm);
        return BT_ERR_NO_MEMORY;
    }
    for (size_t i = 0; i < g->n_ids; i++) {
        const bt_gen_lp_t *lp = &g->lps[i];
        Baton__V1__TokenLogprobs *m = &lm->msgs[i];

        baton__v1__token_logprobs__init(m);
        m->token_id = lp->token_id;
        m->logprob = lp->logprob;
        m->n_top = lp->n_top;
        m->top = lp->n_top > 0 ? lm->top_ptrs + k : NULL;
        for (uint32_t t = 0; t < lp->n_top; t++, k++) {
            baton__v1__top_logprob__init(&lm->tops[k]);
            lm->tops[k].token_id = lp->top_ids[t];
            lm->tops[k].logprob = lp->top_logprobs[t];
            lm->top_ptrs[k] = &lm->tops[k];
            /* valid UTF-8 (a proto3 string), NUL-separated */
            lm->text_off[k] = lm->texts.len;
            bt_router_model_token_text(g->r, lp->top_ids[t], false, &lm->texts);
            if (bt_buf_append_byte(&lm->texts, '\0') != BT_OK) {
                bt_gen_lp_msgs_free(lm);
                return BT_ERR_NO_MEMORY;
            }
        }
        lm->ptrs[i] = m;
    }
    for (size_t t = 0; t < k; t++) {   /* the buffer no longer moves */
        lm->tops[t].text = lm->texts.data + lm->text_off[t];
    }
    return BT_OK;
}

/* echo: the prompt goes first, alone, once it is ready (with logprobs:
 * once the prefill sent them); tokens wait behind it. False while it
 * waits. */
static bool bt_gen_echo_flush(bt_gen_stream_t *g)
{
    if (!g->echo || g->echo_sent || (g->ended && g->status != BT_OK)) {
        return true;
    }
    if (g->echo_msg == NULL || g->in_flight >= BT_GEN_MAX_IN_FLIGHT) {
        return false;
    }
    if (bt_rpc_call_send(g->call, &g->echo_msg->base, bt_gen_sent_cb, g) != BT_OK) {
        return false;
    }
    g->in_flight++;
    g->any_sent = true;
    g->echo_sent = true;
    return true;
}

/* The prompt's message: its text and (lps, n; NULL: none) its logprobs,
 * packed and unpacked into a copy the stream owns. */
static void bt_gen_echo_ready(bt_gen_stream_t *g, const char *text,
                              const Baton__V1__TokenLogprobs *const *lps,
                              size_t n)
{
    Baton__V1__GenerateResponse m = BATON__V1__GENERATE_RESPONSE__INIT;
    uint8_t *buf;
    size_t len;

    m.text = (char *)"";
    m.prompt_text = (char *)text;
    m.n_prompt_logprobs = n;
    m.prompt_logprobs = (Baton__V1__TokenLogprobs **)lps;
    len = baton__v1__generate_response__get_packed_size(&m);
    buf = malloc(len ? len : 1);
    if (buf != NULL) {
        baton__v1__generate_response__pack(&m, buf);
        g->echo_msg = baton__v1__generate_response__unpack(NULL, len, buf);
        free(buf);
    }
    if (g->echo_msg == NULL && g->req != NULL) {
        bt_rreq_cancel(g->req, "out of memory");
    }
}

static void bt_gen_flush(bt_gen_stream_t *g)
{
    if (g->call_done || !bt_gen_echo_flush(g)) {
        return;
    }
    if ((g->n_ids > 0 || g->text.len > 0) && g->in_flight < BT_GEN_MAX_IN_FLIGHT) {
        Baton__V1__GenerateResponse m = BATON__V1__GENERATE_RESPONSE__INIT;
        bt_gen_lp_msgs_t lm;
        bt_status_t s;

        m.n_token_ids = g->n_ids;
        m.token_ids = g->ids;
        m.text = g->text.data ? g->text.data : (char *)"";
        if (g->want_lp && g->n_ids > 0) {
            if (bt_gen_lp_msgs(g, &lm) != BT_OK) {
                if (g->req != NULL) {
                    bt_rreq_cancel(g->req, "out of memory");
                }
                return;
            }
            m.n_logprobs = g->n_ids;
            m.logprobs = lm.ptrs;
        }
        s = bt_rpc_call_send(g->call, &m.base, bt_gen_sent_cb, g);
        if (g->want_lp && g->n_ids > 0) {
            bt_gen_lp_msgs_free(&lm);
        }
        if (s == BT_OK) {
            g->in_flight++;
            g->any_sent = true;
            g->n_ids = 0;
            bt_buf_reset(&g->text);
        }
    }
    if (!g->ended || g->n_ids > 0 || g->text.len > 0 || g->in_flight > 0) {
        return;
    }
    /* everything was sent: the final message, or an error status when
     * the request failed before producing anything */
    if (g->status != BT_OK && g->status != BT_ERR_CANCELLED && !g->any_sent) {
        bt_rpc_call_fail(g->call, g->status, "%s", g->message);
    } else if (g->status == BT_ERR_CANCELLED && !g->any_sent) {
        bt_rpc_call_fail(g->call, BT_ERR_CANCELLED, "%s", g->message);
    } else {
        Baton__V1__GenerateResponse m = BATON__V1__GENERATE_RESPONSE__INIT;
        Baton__V1__GenerateFinal fin = BATON__V1__GENERATE_FINAL__INIT;

        fin.finish_reason = g->finish;
        fin.usage = &g->usage;
        fin.error = (char *)(g->status == BT_OK ? "" : g->message);
        fin.request_id = g->request_id;
        m.text = (char *)"";
        m.final = &fin;
        bt_rpc_call_send(g->call, &m.base, NULL, NULL);
        bt_rpc_call_finish(g->call);
    }
    g->call_done = true;
}

static void bt_gen_on_delta_held(bt_gen_stream_t *g, const uint32_t *ids,
                                 size_t n,
                                 const Baton__V1__TokenLogprobs *const *lps,
                                 const char *text, size_t len);

static void bt_gen_on_delta(bt_rreq_t *req, void *arg, const uint32_t *ids,
                            size_t n, const Baton__V1__TokenLogprobs *const *lps,
                            const char *text, size_t len)
{
    bt_gen_stream_t *g = arg;

    (void)req;
    bt_gen_hold(g);
    bt_gen_on_delta_held(g, ids, n, lps, text, len);
    bt_gen_release(g);
}

static void bt_gen_on_delta_held(bt_gen_stream_t *g, const uint32_t *ids,
                                 size_t n,
                                 const Baton__V1__TokenLogprobs *const *lps,
                                 const char *text, size_t len)
{
    if (BT_ARRAY_RESERVE(g->ids, g->cap_ids, g->n_ids + n, 16) != BT_OK ||
        (g->want_lp &&
         BT_ARRAY_RESERVE(g->lps, g->cap_lps, g->n_ids + n, 16) != BT_OK)) {
        bt_rreq_cancel(g->req, "out of memory");
        return;
    }
    for (size_t i = 0; i < n && g->want_lp; i++) {
        bt_gen_lp_t *lp = &g->lps[g->n_ids + i];

        if (lps == NULL) {   /* not from a request that wants them */
            memset(lp, 0, sizeof(*lp));
            lp->token_id = ids[i];
            continue;
        }
        /* the request checked them: one per id, n_top <= 20 */
        lp->token_id = lps[i]->token_id;
        lp->logprob = lps[i]->logprob;
        lp->n_top = (uint32_t)lps[i]->n_top;
        for (uint32_t t = 0; t < lp->n_top; t++) {
            lp->top_ids[t] = lps[i]->top[t]->token_id;
            lp->top_logprobs[t] = lps[i]->top[t]->logprob;
        }
    }
    if (n > 0) {
        memcpy(g->ids + g->n_ids, ids, n * sizeof(*ids));
        g->n_ids += n;
    }
    if (bt_buf_append(&g->text, text, len) != BT_OK) {
        bt_rreq_cancel(g->req, "the client reads too slowly");
        return;
    }
    bt_gen_flush(g);
}

static void bt_gen_on_end(bt_rreq_t *req, void *arg, bt_status_t status,
                          const char *message, Baton__V1__FinishReason finish,
                          const Baton__V1__Usage *usage)
{
    bt_gen_stream_t *g = arg;

    bt_gen_hold(g);
    g->ended = true;
    g->status = status;
    snprintf(g->message, sizeof(g->message), "%s", message);
    snprintf(g->request_id, sizeof(g->request_id), "%s", bt_rreq_id(req));
    g->finish = finish;
    g->usage = *usage;
    g->req = NULL;      /* the request is gone once on_end returns */
    bt_gen_flush(g);
    bt_gen_release(g);
}

/* echo with logprobs: the prompt's message can go now */
static void bt_gen_on_prompt(bt_rreq_t *req, void *arg,
                             const Baton__V1__TokenLogprobs *const *lps,
                             size_t n)
{
    bt_gen_stream_t *g = arg;
    size_t n_prompt = 0;
    const uint32_t *ids = bt_rreq_prompt(req, &n_prompt);
    bt_buf_t text;

    bt_gen_hold(g);
    bt_buf_init(&text, 64u << 20);
    if (bt_router_model_decode(g->r, ids, n_prompt, &text) == BT_OK &&
        bt_buf_append_byte(&text, '\0') == BT_OK) {
        bt_gen_echo_ready(g, text.data, lps, n);
    } else {
        bt_rreq_cancel(req, "out of memory");
    }
    bt_buf_cleanup(&text);
    bt_gen_flush(g);
    bt_gen_release(g);
}

static const bt_rreq_sink_t bt_gen_sink = { bt_gen_on_delta, bt_gen_on_end,
                                            bt_gen_on_prompt };

static void bt_gen_cancel_cb(bt_rpc_call_t *call, void *arg)
{
    bt_gen_stream_t *g = arg;

    bt_gen_hold(g);
    if (g->job != NULL) {
        bt_front_job_cancel(g->job);
        g->job = NULL;
        g->ended = true;   /* no request will start */
    }
    if (g->req != NULL) {
        bt_rreq_cancel(g->req, "the client cancelled the call");
    }
    if (!g->call_done) {
        g->call_done = true;
        bt_rpc_call_fail(call, BT_ERR_CANCELLED, NULL);
    }
    bt_gen_release(g);
}

/* The request started, or was refused (now or from the pool). */
static void bt_gen_started(bt_gen_stream_t *g, bt_status_t s, const char *err)
{
    if (s != BT_OK) {
        if (!g->call_done) {
            bt_rpc_call_fail(g->call, s, "%s", err);
        }
        g->ended = g->call_done = true;
    } else if (!g->ended && g->echo && !g->want_lp) {
        bt_gen_on_prompt(g->req, g, NULL, 0);   /* the prompt is ready */
    }
}

static void bt_gen_started_cb(void *arg, bt_status_t s, bt_rreq_t *req,
                              const char *err,
                              const Baton__V1__GenerateRequest *in)
{
    bt_gen_stream_t *g = arg;

    (void)in;
    bt_gen_hold(g);
    g->job = NULL;
    g->req = req;
    bt_gen_started(g, s, err);
    bt_gen_release(g);
}

static void bt_grpc_generate(bt_rpc_call_t *call, const ProtobufCMessage *msg,
                             void *arg)
{
    bt_router_t *r = arg;
    const Baton__V1__GenerateRequest *in = (const Baton__V1__GenerateRequest *)msg;
    bt_front_auth_t auth;
    bt_gen_stream_t *g;
    char err[512];
    bt_status_t s;

    s = bt_front_authenticate(r, bt_rpc_call_metadata(call, "authorization"),
                              &auth, err, sizeof(err));
    if (s != BT_OK) {
        bt_rpc_call_fail(call, s, "%s", err);
        return;
    }
    g = calloc(1, sizeof(*g));
    if (g == NULL) {
        bt_rpc_call_fail(call, BT_ERR_NO_MEMORY, NULL);
        return;
    }
    g->r = r;
    g->call = call;
    g->want_lp = bt_sampling_wants_logprobs(in->sampling);
    g->echo = in->echo;
    bt_buf_init(&g->text, 16u << 20);
    bt_gen_hold(g);
    s = bt_front_start_async(r, in, &auth, &bt_gen_sink, g, bt_gen_started_cb, g,
                             &g->job, &g->req, err, sizeof(err));
    if (s == BT_OK || s == BT_IN_PROGRESS) {
        bt_rpc_call_set_cancel_cb(call, bt_gen_cancel_cb, g);
    }
    if (s != BT_IN_PROGRESS) {
        bt_gen_started(g, s, err);
    }
    bt_gen_release(g);   /* frees it when the request ended inside start */
}

static void bt_grpc_tokenize(bt_rpc_call_t *call, const ProtobufCMessage *msg,
                             void *arg)
{
    bt_router_t *r = arg;
    const Baton__V1__TokenizeRequest *in = (const Baton__V1__TokenizeRequest *)msg;
    Baton__V1__TokenizeResponse out = BATON__V1__TOKENIZE_RESPONSE__INIT;
    bt_tok_ids_t ids;
    char err[512];
    bt_status_t s = BT_OK;

    if (in->model == NULL || strcmp(in->model, bt_router_model_name(r)) != 0) {
        bt_rpc_call_fail(call, BT_ERR_NOT_FOUND, "the model '%s' does not exist",
                         in->model ? in->model : "");
        return;
    }
    bt_tok_ids_init(&ids, 1u << 22);
    if (in->input_case == BATON__V1__TOKENIZE_REQUEST__INPUT_CHAT) {
        if (in->chat == NULL || in->chat->n_messages == 0) {
            snprintf(err, sizeof(err), "the chat has no messages");
            s = BT_ERR_INVALID_ARG;
        } else {
            s = bt_router_model_encode_chat(r, in->chat, &ids, err, sizeof(err));
        }
    } else if (in->input_case == BATON__V1__TOKENIZE_REQUEST__INPUT_PROMPT) {
        /* a chat's template writes its special tokens itself */
        s = bt_router_model_encode_text(r, in->prompt, strlen(in->prompt),
                                        in->add_special_tokens, &ids, err,
                                        sizeof(err));
    } else {
        snprintf(err, sizeof(err), "set prompt or chat");
        s = BT_ERR_INVALID_ARG;
    }
    if (s != BT_OK) {
        bt_tok_ids_cleanup(&ids);
        bt_rpc_call_fail(call, s == BT_ERR_TOO_LARGE ? BT_ERR_INVALID_ARG : s, "%s", err);
        return;
    }
    out.n_token_ids = ids.n;
    out.token_ids = (uint32_t *)ids.ids;
    out.max_context = bt_router_model_max_context(r);
    bt_rpc_call_reply(call, &out.base);
    bt_tok_ids_cleanup(&ids);
}

static void bt_grpc_list_models(bt_rpc_call_t *call, const ProtobufCMessage *msg,
                                void *arg)
{
    bt_router_t *r = arg;
    Baton__V1__ListModelsResponse out = BATON__V1__LIST_MODELS_RESPONSE__INIT;
    Baton__V1__ModelInfo info = BATON__V1__MODEL_INFO__INIT;
    Baton__V1__ModelInfo *list[1] = { &info };

    (void)msg;
    info.name = (char *)bt_router_model_name(r);
    info.max_context = bt_router_model_max_context(r);
    info.vocab_size = (uint32_t)bt_router_model_vocab_size(r);
    info.owned_by = (char *)"baton";
    out.n_models = 1;
    out.models = list;
    bt_rpc_call_reply(call, &out.base);
}

bt_status_t bt_front_grpc_register(bt_router_t *r)
{
    bt_status_t s;

    s = bt_rpc_server_add_stream(r->grpc, "/baton.v1.Generate/Generate",
                                 &baton__v1__generate_request__descriptor,
                                 bt_grpc_generate, r);
    if (s == BT_OK) {
        s = bt_rpc_server_add_unary(r->grpc, "/baton.v1.Generate/Tokenize",
                                    &baton__v1__tokenize_request__descriptor,
                                    bt_grpc_tokenize, r);
    }
    if (s == BT_OK) {
        s = bt_rpc_server_add_unary(r->grpc, "/baton.v1.Generate/ListModels",
                                    &baton__v1__list_models_request__descriptor,
                                    bt_grpc_list_models, r);
    }
    /* The public API keeps gRPC's 4 MiB default; the server's own limit
     * is larger for the nodes' Register streams. */
    for (size_t i = 0; s == BT_OK && i < 3; i++) {
        static const char *const paths[] = {
            "/baton.v1.Generate/Generate", "/baton.v1.Generate/Tokenize",
            "/baton.v1.Generate/ListModels",
        };

        s = bt_rpc_server_method_limit(r->grpc, paths[i], BT_RPC_DEFAULT_MAX_MESSAGE);
    }
    return s;
}
