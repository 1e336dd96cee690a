/* The OpenAI-compatible HTTP API: /v1/completions, /v1/chat/completions
 * (whole responses, or Server-Sent Events with `stream: true`),
 * /v1/models and /v1/models/{id}; errors in OpenAI's shape.
 *
 * A stream's status line waits for its first token: whatever ends a
 * request before any output (unknown model, prompt over the context, a
 * full queue, no node) is a real HTTP status, never a 200 with an error
 * inside. A client that goes away cancels its request, streamed or not. */
#include "front.h"
#include "model.h"
#include "openai.h"
#include "openai_tools.h"

#include "base/arena.h"
#include "base/clock.h"
#include "base/log.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    bt_router_t            *r;
    bt_http_req_t          *http;         /* NULL once the client left */
    bt_rreq_t              *req;
    bt_front_job_t         *job;          /* the prompt on the pool */
    bt_openai_kind_t        kind;
    bool                    stream;
    bool                    include_usage;
    bool                    first;        /* no chunk sent yet */
    bool                    sse_started;  /* status line and headers out */
    bool                    ended;
    bool                    starting;
    bool                    want_lp;      /* logprobs asked for */
    json_t                 *lp;           /* logprobs not yet sent (all of
                                             them when not streaming) */
    size_t                  lp_bytes;     /* ~ JSON size of lp */
    size_t                  text_offset;  /* bytes of the tokens so far */
    bt_buf_t                tok_text;     /* scratch: one token's text */
    bt_buf_t                text;         /* whole response (non-streaming;
                                             streamed `auto` tool output) */
    bt_openai_tool_mode_t   tool_mode;
    char                  **tool_names;   /* malloc'ed, one block */
    size_t                  n_tool_names;
    bt_chat_family_t        family;
    bt_tool_stream_t        ts;           /* FORCED: the call as it comes */
    bool                    ts_bad;       /* FORCED output not a call */
    size_t                  auto_sent;    /* AUTO, streamed: bytes of text
                                             sent as content */
    bool                    echo;         /* completions' echo */
    bool                    echo_sent;    /* a stream's prompt chunk is out */
    bool                    plp_got;      /* the prompt's logprobs came */
    json_t                 *plp;          /* the prompt's logprobs (echo) */
    bt_buf_t                echo_text;    /* the prompt, as echoed */
    char                    id[80];
    char                    model[BT_NODE_MODEL_MAX + 1];
    uint64_t                created;
} bt_http_gen_t;

static void bt_http_gen_free(bt_http_gen_t *g)
{
    json_decref(g->lp);
    json_decref(g->plp);
    bt_buf_cleanup(&g->echo_text);
    bt_buf_cleanup(&g->tok_text);
    bt_buf_cleanup(&g->text);
    bt_tool_stream_cleanup(&g->ts);
    free(g->tool_names);
    free(g);
}

/* Retry-After (seconds) of our 429s and 503s. */
#define BT_HTTP_RETRY_AFTER_BUSY        1   /* 429: the cluster is full */
#define BT_HTTP_RETRY_AFTER_UNAVAILABLE 5   /* 503: no node, draining */

/* OpenAI's error `code` for a status (NULL: none). */
static const char *bt_http_err_code(bt_status_t s)
{
    switch (bt_http_status_code(s)) {
    case 401: return "invalid_api_key";
    case 404: return "model_not_found";
    case 413: return "request_too_large";
    case 429: return "rate_limit_exceeded";
    case 501: return "unsupported";
    case 503: return "service_unavailable";
    default:  return NULL;
    }
}

void bt_front_http_fail(bt_http_req_t *http, bt_status_t s,
                        const char *message, const char *param)
{
    const char *code = bt_http_err_code(s);
    int status = bt_http_status_code(s);

    char after[16];

    if (status == 429 || status == 503) {
        snprintf(after, sizeof(after), "%d", status == 429
                 ? BT_HTTP_RETRY_AFTER_BUSY : BT_HTTP_RETRY_AFTER_UNAVAILABLE);
        bt_http_add_header(http, "Retry-After", after);
    }
    bt_http_reply_error(http, status, bt_http_error_type(s), message,
                        param && param[0] ? param : NULL, code);
}

/* Headers of a stream, sent with its first output. */
static void bt_http_stream_start(bt_http_gen_t *g)
{
    if (!g->sse_started) {
        g->sse_started = true;
        bt_http_sse_start(g->http);
    }
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
    bt_front_lp_t st = { g->lp, g->lp_bytes, g->text_offset, &g->tok_text };
    bt_status_t s = bt_front_lp_add(g->r, g->kind, &st, n, lps);

    g->lp = st.lp;
    g->lp_bytes = st.lp_bytes;
    g->text_offset = st.text_offset;
    return s;
}

/* A stream's first chunk with echo: the prompt, what was held back
 * waiting for the prompt's logprobs, and `text`. */
static void bt_http_send_echo(bt_http_gen_t *g, const char *text, size_t len)
{
    if (bt_buf_append(&g->echo_text, g->text.data, g->text.len) != BT_OK ||
        bt_buf_append(&g->echo_text, text, len) != BT_OK) {
        bt_rreq_cancel(g->req, "response over the size limit");
        return;
    }
    bt_buf_reset(&g->text);
    g->lp = bt_openai_logprobs_join(g->plp, g->lp);
    g->plp = NULL;
    g->echo_sent = true;
    bt_http_stream_start(g);
    bt_http_send_chunk(g, g->echo_text.data ? g->echo_text.data : "",
                       g->echo_text.len,
                       BATON__V1__FINISH_REASON__FINISH_REASON_UNSPECIFIED);
}

/* A tool-call chunk (name, or a piece of the arguments) of call `index`. */
static void bt_http_tool_send(bt_http_gen_t *g, size_t index, const char *name,
                              const char *args, size_t args_len)
{
    json_t *chunk = bt_openai_chunk(g->kind, g->id, g->model, g->created, "", 0,
                                    g->first, g->lp,
                                    BATON__V1__FINISH_REASON__FINISH_REASON_UNSPECIFIED);

    g->lp = NULL;
    g->lp_bytes = 0;
    bt_http_stream_start(g);
    if (chunk != NULL &&
        bt_openai_tool_chunk(chunk, index, g->id, name, args, args_len) == BT_OK) {
        bt_http_sse_send_json(g->http, chunk);
    }
    json_decref(chunk);
    g->first = false;
}

/* FORCED: the text is one call; streamed as its name, then pieces of its
 * arguments. False when the text is not a call after all (it then goes
 * out as text). */
static bool bt_http_tool_delta(bt_http_gen_t *g, const char *text, size_t len)
{
    const char *name, *args;
    size_t args_len;
    bt_status_t s = bt_tool_stream_feed(&g->ts, text, len, false, &name, &args,
                                        &args_len);

    if (s == BT_ERR_NO_MEMORY) {
        bt_rreq_cancel(g->req, "response over the size limit");
        return true;
    }
    if (!g->stream) {
        g->ts_bad = s != BT_OK;
        return false;   /* the whole text is kept; the end reads ts */
    }
    if (s != BT_OK) {
        g->ts_bad = true;
        if (!g->ts.named) {   /* nothing sent yet: all of it as text */
            bt_http_stream_start(g);
            bt_http_send_chunk(g, g->ts.buf.data, g->ts.buf.len,
                               BATON__V1__FINISH_REASON__FINISH_REASON_UNSPECIFIED);
        }
        return true;
    }
    if (name != NULL || args_len > 0) {
        bt_http_tool_send(g, 0, name, args, args_len);
    }
    return true;
}

/* FORCED: the output is a whole call (a stop string may have cut it). */
static bool bt_http_tool_whole(const bt_http_gen_t *g)
{
    json_t *v;

    if (g->ts_bad || !g->ts.named) {
        return false;
    }
    v = json_loadb(g->ts.buf.data, g->ts.buf.len, 0, NULL);
    json_decref(v);
    return v != NULL;
}

/* The end of a stream with tools: the calls (or the buffered text), then
 * the finish chunk. */
static void bt_http_tool_stream_end(bt_http_gen_t *g,
                                    Baton__V1__FinishReason finish)
{
    const bool forced = g->tool_mode == BT_OPENAI_TOOLS_FORCED;
    /* the text not sent yet: FORCED holds it in ts until the name ends */
    const bt_buf_t *held = forced ? &g->ts.buf : &g->text;
    const size_t off = forced ? 0 : g->auto_sent;   /* sent already */
    json_t *calls = NULL, *chunk;
    /* (FORCED with the name sent: the rest went out as arguments) */
    size_t content_len = forced && (g->ts_bad || g->ts.named) ? 0 : held->len;
    bool called = forced && bt_http_tool_whole(g);

    if (g->tool_mode == BT_OPENAI_TOOLS_AUTO &&
        finish == BATON__V1__FINISH_REASON__FINISH_REASON_STOP) {
        calls = bt_tool_calls_parse(g->family, held->data ? held->data : "",
                                    held->len, (const char *const *)g->tool_names,
                                    g->n_tool_names, &content_len);
    }
    content_len = content_len > off ? content_len - off : 0;
    if (content_len > 0 || (g->first && !called && calls == NULL)) {
        bt_http_stream_start(g);
        bt_http_send_chunk(g, held->data ? held->data + off : "", content_len,
                           BATON__V1__FINISH_REASON__FINISH_REASON_UNSPECIFIED);
    }
    for (size_t i = 0; i < json_array_size(calls); i++) {
        const char *a = json_string_value(json_object_get(json_array_get(calls, i),
                                                          "arguments"));

        bt_http_tool_send(g, i, json_string_value(json_object_get(
                              json_array_get(calls, i), "name")), NULL, 0);
        bt_http_tool_send(g, i, NULL, a, strlen(a));
    }
    called = called || calls != NULL;
    json_decref(calls);
    chunk = bt_openai_chunk(g->kind, g->id, g->model, g->created, "", 0, false,
                            g->lp, finish);
    g->lp = NULL;
    if (chunk != NULL && called &&
        finish == BATON__V1__FINISH_REASON__FINISH_REASON_STOP) {
        json_object_set_new(json_array_get(json_object_get(chunk, "choices"), 0),
                            "finish_reason", json_string("tool_calls"));
    }
    if (chunk != NULL) {
        bt_http_sse_send_json(g->http, chunk);
    }
    json_decref(chunk);
}

/* A whole response with tools: the calls when the output holds some. */
static void bt_http_tool_response(bt_http_gen_t *g, json_t *resp,
                                  Baton__V1__FinishReason finish)
{
    json_t *calls = NULL;
    size_t content_len = 0;
    const char *text = g->text.data ? g->text.data : "";

    if (finish != BATON__V1__FINISH_REASON__FINISH_REASON_STOP || resp == NULL) {
        return;
    }
    if (g->tool_mode == BT_OPENAI_TOOLS_FORCED && bt_http_tool_whole(g)) {
        /* the grammar made it one call: its arguments as generated */
        calls = json_pack("[{s:s, s:s%}]", "name", g->ts.name, "arguments",
                          g->ts.buf.data + g->ts.args_at,
                          g->ts.buf.len - 1 - g->ts.args_at);
    } else if (g->tool_mode == BT_OPENAI_TOOLS_AUTO) {
        calls = bt_tool_calls_parse(g->family, text, g->text.len,
                                    (const char *const *)g->tool_names,
                                    g->n_tool_names, &content_len);
    }
    if (calls != NULL) {
        bt_openai_tool_response(resp, calls, text, content_len, g->id);
        json_decref(calls);
    }
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
    if (g->tool_mode == BT_OPENAI_TOOLS_FORCED && !g->ts_bad &&
        bt_http_tool_delta(g, text, len)) {
        return;
    }
    if (g->stream && g->echo && !g->echo_sent) {
        if (g->want_lp && !g->plp_got) {
            /* the prompt's logprobs go first: hold this back */
            if (bt_buf_append(&g->text, text, len) != BT_OK) {
                bt_rreq_cancel(g->req, "response over the size limit");
            }
        } else {
            bt_http_send_echo(g, text, len);
        }
    } else if (g->stream && g->tool_mode == BT_OPENAI_TOOLS_AUTO) {
        /* content streams up to what may become a call */
        size_t safe;

        if (bt_buf_append(&g->text, text, len) != BT_OK) {
            bt_rreq_cancel(g->req, "response over the size limit");
            return;
        }
        safe = bt_tool_text_safe(g->family, g->text.data, g->text.len);
        if (safe > g->auto_sent) {
            g->lp_bytes = 0;
            bt_http_stream_start(g);
            bt_http_send_chunk(g, g->text.data + g->auto_sent,
                               safe - g->auto_sent,
                               BATON__V1__FINISH_REASON__FINISH_REASON_UNSPECIFIED);
            g->auto_sent = safe;
        }
    } else if (g->stream) {
        /* a token's logprobs go out with the chunk of its turn, also
         * when its text is still held back */
        if (len > 0 || g->first || g->lp != NULL) {
            g->lp_bytes = 0;
            bt_http_stream_start(g);
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

    (void)req;
    g->ended = true;
    g->req = NULL;
    if (g->http == NULL) {
        goto out; /* the client is gone */
    }
    bt_http_on_close(g->http, NULL, NULL);
    if (!g->stream || (status != BT_OK && !g->sse_started)) {
        if (status != BT_OK) {
            bt_front_http_fail(g->http, status, message, NULL);
        } else {
            json_t *resp;

            g->lp = bt_openai_logprobs_join(g->plp, g->lp);
            g->plp = NULL;
            resp = bt_openai_response(g->kind, g->id, g->model, g->created,
                                      g->text.data ? g->text.data : "",
                                      g->text.len, g->lp, finish, usage);
            g->lp = NULL;   /* the response took it */
            if (g->tool_mode != BT_OPENAI_TOOLS_NONE) {
                bt_http_tool_response(g, resp, finish);
            }

            bt_http_reply_json(g->http, 200, resp);
            json_decref(resp);
        }
        goto out;
    }
    bt_http_stream_start(g);
    if (status != BT_OK) {
        /* the stream has started: the error can only go in it */
        char *e = bt_http_error_body(bt_http_error_type(status), message, NULL,
                                     bt_http_err_code(status));

        if (e != NULL) {
            bt_http_sse_send(g->http, e, strlen(e));
            free(e);
        }
    } else {
        if (g->echo && !g->echo_sent) {
            bt_http_send_echo(g, "", 0);
        }
        if (g->tool_mode != BT_OPENAI_TOOLS_NONE) {
            bt_http_tool_stream_end(g, finish);
        } else {
            bt_http_send_chunk(g, "", 0, finish);
        }
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

/* The prompt's logprobs (echo): the first token's entry is null. They
 * are kept apart from the generated tokens' (which may have come first)
 * and joined before them when sent. */
static void bt_http_on_prompt(bt_rreq_t *req, void *arg,
                              const Baton__V1__TokenLogprobs *const *lps,
                              size_t n)
{
    bt_http_gen_t *g = arg;
    size_t n_prompt = 0;
    const uint32_t *prompt = bt_rreq_prompt(req, &n_prompt);
    json_t *gen_lp = g->lp;
    size_t gen_offset = g->text_offset;
    bt_status_t s;

    g->plp_got = true;
    g->lp = NULL;
    bt_buf_reset(&g->tok_text);
    bt_router_model_token_text(g->r, prompt[0], true, &g->tok_text);
    s = bt_openai_logprobs_add_first(&g->lp, g->tok_text.data ? g->tok_text.data
                                     : "", g->tok_text.len);
    g->text_offset = g->tok_text.len;
    if (s == BT_OK) {
        s = bt_http_add_logprobs(g, n, lps);
    }
    g->plp = g->lp;
    g->lp = gen_lp;
    g->text_offset = gen_offset;
    if (s != BT_OK) {
        bt_rreq_cancel(req, s == BT_ERR_TOO_LARGE ? "response over the size "
                       "limit" : "out of memory");
        return;
    }
    if (g->stream && !g->echo_sent) {
        bt_http_send_echo(g, "", 0);
    }
}

/* The prompt as echoed: with logprobs the tokens' texts end to end (their
 * text_offset adds up), else the prompt string as given, or the token
 * ids decoded. Generated text follows it. */
static bt_status_t bt_http_echo_start(bt_http_gen_t *g,
                                      const Baton__V1__GenerateRequest *in)
{
    size_t n = 0;
    const uint32_t *ids = bt_rreq_prompt(g->req, &n);
    bt_status_t s = BT_OK;

    if (g->want_lp) {
        for (size_t i = 0; i < n; i++) {
            bt_router_model_token_text(g->r, ids[i], true, &g->echo_text);
        }
        g->text_offset = g->echo_text.len;
    } else if (in->input_case == BATON__V1__GENERATE_REQUEST__INPUT_PROMPT) {
        s = bt_buf_append(&g->echo_text, in->prompt, strlen(in->prompt));
    } else {
        s = bt_router_model_decode(g->r, ids, n, &g->echo_text);
    }
    if (s == BT_OK && !g->stream) {
        s = bt_buf_append(&g->text, g->echo_text.data, g->echo_text.len);
    }
    return s;
}

static const bt_rreq_sink_t bt_http_sink = { bt_http_on_delta, bt_http_on_end,
                                             bt_http_on_prompt };

/* The client closed the connection before the end. */
static void bt_http_closed(void *arg)
{
    bt_http_gen_t *g = arg;

    g->http = NULL;
    if (g->job != NULL) {   /* no request yet: it never starts */
        bt_front_job_cancel(g->job);
        bt_http_gen_free(g);
    } else if (g->req != NULL) {
        bt_rreq_cancel(g->req, "the client closed the connection");
    }
}

/* Copies what the output side needs of the request's tools (the
 * request's arena is freed once it started). */
static bt_status_t bt_http_tool_setup(bt_router_t *r, bt_http_gen_t *g,
                                      const bt_openai_req_t *oreq)
{
    size_t bytes = 0;
    char *p;

    g->tool_mode = oreq->tool_mode;
    if (g->tool_mode == BT_OPENAI_TOOLS_NONE) {
        return BT_OK;
    }
    if (!bt_router_model_chat_family(r, &g->family)) {
        g->family = BT_CHAT_CHATML;   /* the request fails at encoding */
    }
    for (size_t i = 0; i < oreq->n_tool_names; i++) {
        bytes += sizeof(char *) + strlen(oreq->tool_names[i]) + 1;
    }
    g->tool_names = malloc(bytes + 1);
    if (g->tool_names == NULL) {
        return BT_ERR_NO_MEMORY;
    }
    p = (char *)(g->tool_names + oreq->n_tool_names);
    for (size_t i = 0; i < oreq->n_tool_names; i++) {
        g->tool_names[i] = p;
        p = stpcpy(p, oreq->tool_names[i]) + 1;
    }
    g->n_tool_names = oreq->n_tool_names;
    return BT_OK;
}

/* The request started, or was refused (now or from the pool): what
 * follows the start. `in`: the request as parsed (NULL only when
 * refused). */
static void bt_http_started(bt_http_gen_t *g, bt_status_t s, const char *err,
                            const Baton__V1__GenerateRequest *in)
{
    bt_http_req_t *http = g->http;

    if (s != BT_OK) {
        bt_http_on_close(http, NULL, NULL);
        bt_front_http_fail(http, s, err, s == BT_ERR_NOT_FOUND ? "model"
                     : strncmp(err, "logit_bias", 10) == 0 ? "logit_bias" : NULL);
        bt_http_gen_free(g);
        return;
    }
    if (g->ended) {
        bt_http_gen_free(g);
        return;
    }
    if (g->echo && bt_http_echo_start(g, in) != BT_OK) {
        bt_rreq_cancel(g->req, "response over the size limit"); /* frees g */
        return;
    }
    snprintf(g->id, sizeof(g->id), "%s-%s",
             g->kind == BT_OPENAI_CHAT ? "chatcmpl" : "cmpl", bt_rreq_id(g->req));
    bt_http_add_header(http, "X-Request-Id", bt_rreq_id(g->req));
    bt_http_on_close(http, bt_http_closed, g);
}

static void bt_http_started_cb(void *arg, bt_status_t s, bt_rreq_t *req,
                               const char *err,
                               const Baton__V1__GenerateRequest *in)
{
    bt_http_gen_t *g = arg;

    g->job = NULL;
    g->req = req;
    bt_http_started(g, s, err, in);
}

static void bt_http_generate(bt_http_req_t *http, bt_router_t *r,
                             bt_openai_kind_t kind)
{
    bt_arena_t *arena = NULL;
    bt_openai_req_t oreq;
    bt_front_auth_t auth;
    bt_http_gen_t *g = NULL;
    bt_buf_t body;
    char err[512], param[64] = "";
    bt_status_t s;

    bt_buf_init(&body, r->cfg.max_body);
    if (r->draining) {
        bt_front_http_fail(http, BT_ERR_SHUTDOWN, "the router is shutting down", NULL);
        goto out;
    }
    s = bt_front_authenticate(r, bt_http_req_header(http, "Authorization"),
                              &auth, err, sizeof(err));
    if (s != BT_OK) {
        bt_front_http_fail(http, s, err, NULL);
        goto out;
    }
    s = bt_http_read_body(http, &body);
    if (s != BT_OK) {
        bt_front_http_fail(http, s, "the request body is too large", NULL);
        goto out;
    }
    arena = bt_arena_create(16384, r->cfg.max_body * 4 + (1 << 20));
    if (arena == NULL) {
        bt_front_http_fail(http, BT_ERR_NO_MEMORY, "out of memory", NULL);
        goto out;
    }
    s = bt_openai_parse(kind, body.data ? body.data : "", body.len, r->cfg.max_body,
                        arena, &oreq, err, sizeof(err), param, sizeof(param));
    if (s != BT_OK) {
        bt_front_http_fail(http, s, err, param);
        goto out;
    }
    {
        const char *rid = bt_http_req_header(http, "X-Request-Id");

        oreq.gen.request_id = (char *)(rid ? rid : "");
    }
    if (oreq.best_of > 1) {
        bt_front_http_choices(r, http, &oreq, &auth);
        goto out;
    }
    g = calloc(1, sizeof(*g));
    if (g == NULL) {
        bt_front_http_fail(http, BT_ERR_NO_MEMORY, "out of memory", NULL);
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
    bt_buf_init(&g->echo_text, 64u << 20);
    g->echo = oreq.gen.echo;
    bt_tool_stream_init(&g->ts);
    if (bt_http_tool_setup(r, g, &oreq) != BT_OK) {
        bt_front_http_fail(http, BT_ERR_NO_MEMORY, "out of memory", NULL);
        bt_http_gen_free(g);
        goto out;
    }
    g->starting = true;
    s = bt_front_start_async(r, &oreq.gen, &auth, &bt_http_sink, g,
                             bt_http_started_cb, g, &g->job, &g->req, err,
                             sizeof(err));
    g->starting = false;
    if (s == BT_IN_PROGRESS) {
        bt_http_on_close(http, bt_http_closed, g);   /* drops the job */
    } else {
        bt_http_started(g, s, err, &oreq.gen);
    }
out:
    bt_buf_cleanup(&body);
    bt_arena_destroy(arena);
}

static void bt_http_completions(bt_http_req_t *http, void *arg)
{
    bt_http_generate(http, arg, BT_OPENAI_COMPLETIONS);
}

static void bt_http_chat(bt_http_req_t *http, void *arg)
{
    bt_http_generate(http, arg, BT_OPENAI_CHAT);
}

static json_t *bt_http_model_obj(bt_router_t *r)
{
    return json_pack("{s:s, s:s, s:I, s:s, s:I}", "id", bt_router_model_name(r),
                     "object", "model", "created", (json_int_t)r->http_started_s,
                     "owned_by", "baton", "max_model_len",
                     (json_int_t)bt_router_model_max_context(r));
}

static void bt_http_models(bt_http_req_t *http, void *arg)
{
    json_t *body = json_pack("{s:s, s:[o]}", "object", "list", "data",
                             bt_http_model_obj(arg));

    bt_http_reply_json(http, 200, body);
    json_decref(body);
}

/* %XX decoded in place; false on a malformed escape or a NUL. */
static bool bt_http_unescape(char *s)
{
    char *w = s;

    for (const char *p = s; *p; p++) {
        if (*p == '%') {
            unsigned v;

            if (sscanf(p + 1, "%2x", &v) != 1 || !isxdigit((unsigned char)p[1]) ||
                !isxdigit((unsigned char)p[2]) || v == 0) {
                return false;
            }
            *w++ = (char)v;
            p += 2;
        } else {
            *w++ = *p;
        }
    }
    *w = '\0';
    return true;
}

/* GET /v1/models/{id}: ids may hold '/' (org/name). */
static void bt_http_model(bt_http_req_t *http, void *arg)
{
    bt_router_t *r = arg;
    const char *path = bt_http_req_path(http) + strlen("/v1/models/");
    char id[BT_NODE_MODEL_MAX + 1], msg[BT_NODE_MODEL_MAX + 96];
    json_t *body;

    if (strlen(path) > BT_NODE_MODEL_MAX) {
        path = "";   /* longer than any name: unknown */
    }
    snprintf(id, sizeof(id), "%s", path);
    if (!bt_http_unescape(id) || strcmp(id, bt_router_model_name(r)) != 0) {
        snprintf(msg, sizeof(msg), "The model '%.*s' does not exist",
                 BT_NODE_MODEL_MAX, id);
        bt_http_reply_error(http, 404, "invalid_request_error", msg, "model",
                            "model_not_found");
        return;
    }
    body = bt_http_model_obj(r);
    bt_http_reply_json(http, 200, body);
    json_decref(body);
}

bt_status_t bt_front_http_register(bt_router_t *r)
{
    bt_status_t s;

    r->http_started_s = bt_wall_ms() / 1000;
    s = bt_http_route(r->http, "/v1/completions", BT_HTTP_POST,
                      bt_http_completions, r);
    if (s == BT_OK) {
        s = bt_http_route(r->http, "/v1/chat/completions", BT_HTTP_POST,
                          bt_http_chat, r);
    }
    if (s == BT_OK) {
        s = bt_http_route(r->http, "/v1/models", BT_HTTP_GET, bt_http_models, r);
    }
    if (s == BT_OK) {
        s = bt_http_route(r->http, "/v1/models/*", BT_HTTP_GET, bt_http_model, r);
    }
    return s;
}
