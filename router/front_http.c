/* The OpenAI-compatible HTTP API: /v1/completions, /v1/chat/completions
 * (whole responses, or Server-Sent Events with `stream: true`) and
 * /v1/models; errors in OpenAI's shape. */
#include "front.h"
#include "model.h"
#include "openai.h"

#include "base/arena.h"
#include "base/clock.h"
#include "base/log.h"

#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    bt_router_t            *r;
    struct evhttp_request  *http;
    bt_rreq_t              *req;
    bt_openai_kind_t        kind;
    bool                    stream;
    bool                    include_usage;
    bool                    first;        /* no chunk sent yet */
    bool                    ended;
    bool                    starting;
    bool                    want_lp;      /* logprobs asked for */
    json_t                 *lp;           /* logprobs not yet sent (all of
                                             them when not streaming) */
    size_t                  lp_bytes;     /* ~ JSON size of lp */
    size_t                  text_offset;  /* bytes of the tokens so far */
    bt_buf_t                tok_text;     /* scratch: one token's text */
    bt_buf_t                text;         /* whole response (non-streaming) */
    char                    id[80];
    char                    model[BT_NODE_MODEL_MAX + 1];
    uint64_t                created;
} bt_http_gen_t;

/* Logprobs of a whole response are bounded like its text. */
#define BT_HTTP_MAX_LP_BYTES (64u << 20)

static void bt_http_gen_free(bt_http_gen_t *g)
{
    json_decref(g->lp);
    bt_buf_cleanup(&g->tok_text);
    bt_buf_cleanup(&g->text);
    free(g);
}

static void bt_http_fail(struct evhttp_request *http, bt_status_t s,
                         const char *message, const char *param)
{
    const char *code = s == BT_ERR_NOT_FOUND ? "model_not_found" :
                       s == BT_ERR_EXHAUSTED ? "rate_limit_exceeded" :
                       s == BT_ERR_PERMISSION ? "invalid_api_key" : NULL;

    bt_http_reply_error(http, bt_http_status_code(s), bt_http_error_type(s),
                        message, param && param[0] ? param : NULL, code);
}

static void bt_http_send_chunk(bt_http_gen_t *g, const char *text, size_t len,
                               Baton__V1__FinishReason finish)
{
    json_t *chunk = bt_openai_chunk(g->kind, g->id, g->model, g->created, text,
                                    len, g->first, g->lp, finish);

    g->lp = NULL;   /* the chunk took it */

    if (chunk != NULL) {
        bt_http_sse_send_json(g->http, chunk);
        json_decref(chunk);
    }
    g->first = false;
}

/* Adds the logprobs of ids[0..n) to g->lp with each token's text. */
static bt_status_t bt_http_add_logprobs(bt_http_gen_t *g, size_t n,
                                        const Baton__V1__TokenLogprobs *const *lps)
{
    bt_openai_tok_lp_t chosen, top[BT_OPENAI_MAX_LOGPROBS];
    size_t off[BT_OPENAI_MAX_LOGPROBS + 1];

    for (size_t i = 0; i < n; i++) {
        const Baton__V1__TokenLogprobs *lp = lps[i];
        /* the request checked n_top against the request's <= 20 */
        const size_t n_top = lp->n_top <= BT_OPENAI_MAX_LOGPROBS
                             ? lp->n_top : BT_OPENAI_MAX_LOGPROBS;
        bt_status_t s;

        bt_buf_reset(&g->tok_text);
        bt_router_model_token_text(g->r, lp->token_id, true, &g->tok_text);
        off[0] = g->tok_text.len;
        for (size_t t = 0; t < n_top; t++) {
            bt_router_model_token_text(g->r, lp->top[t]->token_id, true,
                                       &g->tok_text);
            off[t + 1] = g->tok_text.len;
        }
        chosen.text = g->tok_text.data ? g->tok_text.data : "";
        chosen.len = off[0];
        chosen.logprob = lp->logprob;
        for (size_t t = 0; t < n_top; t++) {
            top[t].text = chosen.text + off[t];
            top[t].len = off[t + 1] - off[t];
            top[t].logprob = lp->top[t]->logprob;
        }
        s = bt_openai_logprobs_add(g->kind, &g->lp, &chosen, top, n_top,
                                   g->text_offset);
        if (s != BT_OK) {
            return s;
        }
        g->text_offset += chosen.len;
        /* a rough bound on the JSON (bytes arrays are ~4 chars a byte) */
        g->lp_bytes += 64 * (n_top + 1) + 5 * g->tok_text.len;
        if (g->lp_bytes > BT_HTTP_MAX_LP_BYTES) {
            return BT_ERR_TOO_LARGE;
        }
    }
    return BT_OK;
}

static void bt_http_on_delta(bt_rreq_t *req, void *arg, const uint32_t *ids,
                             size_t n, const Baton__V1__TokenLogprobs *const *lps,
                             const char *text, size_t len)
{
    bt_http_gen_t *g = arg;

    (void)req;
    (void)ids;
    if (g->want_lp && lps != NULL && n > 0) {
        bt_status_t s = bt_http_add_logprobs(g, n, lps);

        if (s != BT_OK) {
            bt_rreq_cancel(g->req, s == BT_ERR_TOO_LARGE
                           ? "response over the size limit" : "out of memory");
            return;
        }
    }
    if (g->stream) {
        /* a token's logprobs go out with the chunk of its turn, also
         * when its text is still held back */
        if (len > 0 || g->first || g->lp != NULL) {
            g->lp_bytes = 0;
            bt_http_send_chunk(g, text, len,
                               BATON__V1__FINISH_REASON__FINISH_REASON_UNSPECIFIED);
        }
    } else if (bt_buf_append(&g->text, text, len) != BT_OK) {
        bt_rreq_cancel(g->req, "response over the size limit");
    }
}

static void bt_http_on_end(bt_rreq_t *req, void *arg, bt_status_t status,
                           const char *message, Baton__V1__FinishReason finish,
                           const Baton__V1__Usage *usage)
{
    bt_http_gen_t *g = arg;
    struct evhttp_connection *conn;

    (void)req;
    g->ended = true;
    g->req = NULL;
    if (g->http == NULL) {
        goto out; /* the client is gone */
    }
    conn = evhttp_request_get_connection(g->http);
    if (conn != NULL) {
        evhttp_connection_set_closecb(conn, NULL, NULL);
    }
    if (!g->stream) {
        if (status != BT_OK) {
            bt_http_fail(g->http, status, message, NULL);
        } else {
            json_t *resp = bt_openai_response(g->kind, g->id, g->model, g->created,
                                              g->text.data ? g->text.data : "",
                                              g->text.len, g->lp, finish, usage);

            g->lp = NULL;   /* the response took it */

            bt_http_reply_json(g->http, 200, resp);
            json_decref(resp);
        }
        goto out;
    }
    if (status != BT_OK) {
        json_t *e = json_pack("{s:{s:s, s:s}}", "error", "message", message, "type",
                              bt_http_error_type(status));

        if (e != NULL) {
            bt_http_sse_send_json(g->http, e);
            json_decref(e);
        }
    } else {
        bt_http_send_chunk(g, "", 0, finish);
        if (g->include_usage) {
            json_t *u = bt_openai_usage_chunk(g->kind, g->id, g->model, g->created,
                                              usage);

            bt_http_sse_send_json(g->http, u);
            json_decref(u);
        }
    }
    bt_http_sse_done(g->http);
out:
    if (!g->starting) {
        bt_http_gen_free(g);
    }
}

static const bt_rreq_sink_t bt_http_sink = { bt_http_on_delta, bt_http_on_end };

/* The client closed the connection before the end. */
static void bt_http_closed(struct evhttp_connection *conn, void *arg)
{
    bt_http_gen_t *g = arg;

    evhttp_connection_set_closecb(conn, NULL, NULL);
    g->http = NULL;
    if (g->req != NULL) {
        bt_rreq_cancel(g->req, "the client closed the connection");
    }
}

static void bt_http_generate(struct evhttp_request *http, bt_router_t *r,
                             bt_openai_kind_t kind)
{
    struct evkeyvalq *headers = evhttp_request_get_input_headers(http);
    bt_arena_t *arena = NULL;
    bt_openai_req_t oreq;
    bt_front_auth_t auth;
    bt_http_gen_t *g = NULL;
    bt_buf_t body;
    char err[512], param[64] = "";
    bt_status_t s;

    bt_buf_init(&body, r->cfg.max_body);
    if (r->draining) {
        bt_http_fail(http, BT_ERR_SHUTDOWN, "the router is shutting down", NULL);
        goto out;
    }
    s = bt_front_authenticate(r, evhttp_find_header(headers, "Authorization"),
                              &auth, err, sizeof(err));
    if (s != BT_OK) {
        bt_http_fail(http, s, err, NULL);
        goto out;
    }
    s = bt_http_read_body(http, &body);
    if (s != BT_OK) {
        bt_http_fail(http, s, "the request body is too large", NULL);
        goto out;
    }
    arena = bt_arena_create(16384, r->cfg.max_body * 4 + (1 << 20));
    if (arena == NULL) {
        bt_http_fail(http, BT_ERR_NO_MEMORY, "out of memory", NULL);
        goto out;
    }
    s = bt_openai_parse(kind, body.data ? body.data : "", body.len, r->cfg.max_body,
                        arena, &oreq, err, sizeof(err), param, sizeof(param));
    if (s != BT_OK) {
        bt_http_fail(http, s, err, param);
        goto out;
    }
    {
        const char *rid = evhttp_find_header(headers, "X-Request-Id");

        oreq.gen.request_id = (char *)(rid ? rid : "");
    }
    g = calloc(1, sizeof(*g));
    if (g == NULL) {
        bt_http_fail(http, BT_ERR_NO_MEMORY, "out of memory", NULL);
        goto out;
    }
    g->r = r;
    g->http = http;
    g->kind = kind;
    g->stream = oreq.stream;
    g->include_usage = oreq.include_usage;
    g->want_lp = bt_sampling_wants_logprobs(oreq.gen.sampling);
    g->first = true;
    g->created = bt_wall_ms() / 1000;
    snprintf(g->model, sizeof(g->model), "%s", oreq.gen.model);
    bt_buf_init(&g->text, 64u << 20);
    bt_buf_init(&g->tok_text, 1u << 20);
    if (g->stream) {
        bt_http_sse_start(http);
    }
    g->starting = true;
    s = bt_front_start(r, &oreq.gen, &auth, &bt_http_sink, g, &g->req, err,
                       sizeof(err));
    g->starting = false;
    if (s != BT_OK) {
        if (g->stream) { /* headers are out: report in the stream */
            json_t *e = json_pack("{s:{s:s, s:s}}", "error", "message", err, "type",
                                  bt_http_error_type(s));

            bt_http_sse_send_json(http, e);
            json_decref(e);
            bt_http_sse_done(http);
        } else {
            bt_http_fail(http, s, err, NULL);
        }
        bt_http_gen_free(g);
        goto out;
    }
    if (g->ended) {
        bt_http_gen_free(g);
        goto out;
    }
    snprintf(g->id, sizeof(g->id), "%s-%s",
             kind == BT_OPENAI_CHAT ? "chatcmpl" : "cmpl", bt_rreq_id(g->req));
    bt_http_on_close(http, bt_http_closed, g);
out:
    bt_buf_cleanup(&body);
    bt_arena_destroy(arena);
}

static void bt_http_completions(struct evhttp_request *http, void *arg)
{
    bt_http_generate(http, arg, BT_OPENAI_COMPLETIONS);
}

static void bt_http_chat(struct evhttp_request *http, void *arg)
{
    bt_http_generate(http, arg, BT_OPENAI_CHAT);
}

static void bt_http_models(struct evhttp_request *http, void *arg)
{
    bt_router_t *r = arg;
    json_t *body = json_pack("{s:s, s:[{s:s, s:s, s:I, s:s, s:I}]}", "object", "list",
                             "data", "id", bt_router_model_name(r), "object", "model",
                             "created", (json_int_t)0, "owned_by", "baton",
                             "max_model_len",
                             (json_int_t)bt_router_model_max_context(r));

    bt_http_reply_json(http, 200, body);
    json_decref(body);
}

bt_status_t bt_front_http_register(bt_router_t *r)
{
    bt_status_t s;

    s = bt_http_route(r->http, "/v1/completions", EVHTTP_REQ_POST,
                      bt_http_completions, r);
    if (s == BT_OK) {
        s = bt_http_route(r->http, "/v1/chat/completions", EVHTTP_REQ_POST,
                          bt_http_chat, r);
    }
    if (s == BT_OK) {
        s = bt_http_route(r->http, "/v1/models", EVHTTP_REQ_GET, bt_http_models, r);
    }
    return s;
}
