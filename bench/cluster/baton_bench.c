/* baton-bench: a load generator for the router's OpenAI API.
 *
 * One libevent loop drives every stream (evhttp client, one connection per
 * request, Server-Sent Events read as they arrive through the chunk
 * callback). Requests are issued either closed-loop (--concurrency C) or
 * open-loop with seeded Poisson arrivals (--rate R). Prompts are P random
 * token ids in [100, 4000) from a seeded generator, so runs repeat.
 * With --trace FILE the requests replay a Mooncake-format trace instead
 * (trace.h: shared prefixes kept, lengths scaled), at its timestamps sped
 * up by --trace-speed or closed-loop, and the report adds the prefix-cache
 * hit ratio (usage.prompt_tokens_details.cached_tokens) beside the trace's
 * ideal.
 * Records TTFT (first token chunk), inter-token latencies and
 * end-to-end latency; prints percentiles and throughput, or one JSON
 * object with --json. Everything is bounded: per-connection inactivity
 * timeout, a whole-run deadline, SSE line and response size limits.
 *   baton-bench --url http://127.0.0.1:8000 --model M --requests N
 *               (--concurrency C | --rate R) --prompt-tokens P
 *               --output-tokens O [--json] */
#include "base/clock.h"
#include "base/json.h"
#include "base/opts.h"
#include "trace.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BENCH_MAX_LINE     (64 * 1024)        /* one SSE line */
#define BENCH_MAX_RESPONSE (16 * 1024 * 1024) /* one whole response */
#define BENCH_MAX_REQUESTS 100000
#define BENCH_TOKEN_LO     100
#define BENCH_TOKEN_HI     4000

typedef struct {
    const char *url;
    const char *model;
    int64_t     requests;
    int64_t     concurrency;
    double      rate;
    int64_t     prompt_tokens;
    int64_t     output_tokens;
    int64_t     seed;
    int64_t     timeout_ms;   /* inactivity, per connection */
    int64_t     deadline_ms;  /* the whole run */
    bool        json;
    const char *trace;        /* Mooncake trace file, NULL: synthetic */
    int64_t     trace_requests;
    int64_t     block_tokens;
    double      trace_speed;
    int64_t     max_output;
    int64_t     kv_block;
} bench_cfg_t;

static const bt_opt_t bench_opts[] = {
    {"url", 0, "BATON_BENCH_URL", NULL, "router http base url (http://host:port)",
     BT_OPT_STRING, 0, 0, NULL, offsetof(bench_cfg_t, url)},
    {"model", 0, "BATON_BENCH_MODEL", "builtin", "model name sent in each request",
     BT_OPT_STRING, 0, 0, NULL, offsetof(bench_cfg_t, model)},
    {"requests", 0, "BATON_BENCH_REQUESTS", "16", "number of requests", BT_OPT_INT, 1,
     BENCH_MAX_REQUESTS, NULL, offsetof(bench_cfg_t, requests)},
    {"concurrency", 'c', "BATON_BENCH_CONCURRENCY", "1", "streams in flight (closed loop)",
     BT_OPT_INT, 1, 4096, NULL, offsetof(bench_cfg_t, concurrency)},
    {"rate", 0, "BATON_BENCH_RATE", "0", "poisson arrivals per second (0: closed loop)",
     BT_OPT_DOUBLE, 0, 100000, NULL, offsetof(bench_cfg_t, rate)},
    {"prompt-tokens", 0, "BATON_BENCH_PROMPT_TOKENS", "128", "prompt length in token ids",
     BT_OPT_INT, 1, 1 << 20, NULL, offsetof(bench_cfg_t, prompt_tokens)},
    {"output-tokens", 0, "BATON_BENCH_OUTPUT_TOKENS", "16", "max_tokens per request (ignore_eos)",
     BT_OPT_INT, 1, 1 << 20, NULL, offsetof(bench_cfg_t, output_tokens)},
    {"seed", 0, "BATON_BENCH_SEED", "1", "seed of prompts and arrivals", BT_OPT_INT, 0,
     INT64_MAX, NULL, offsetof(bench_cfg_t, seed)},
    {"timeout", 0, "BATON_BENCH_TIMEOUT", "60s", "per-connection inactivity timeout",
     BT_OPT_DURATION, 1, 3600000, NULL, offsetof(bench_cfg_t, timeout_ms)},
    {"deadline", 0, "BATON_BENCH_DEADLINE", "10m", "the whole run; unfinished count as errors",
     BT_OPT_DURATION, 1, 86400000, NULL, offsetof(bench_cfg_t, deadline_ms)},
    {"json", 0, "BATON_BENCH_JSON", "false", "print one json object", BT_OPT_BOOL, 0, 0,
     NULL, offsetof(bench_cfg_t, json)},
    {"trace", 0, "BATON_BENCH_TRACE", NULL,
     "replay this Mooncake-format trace (jsonl) instead of random prompts",
     BT_OPT_STRING, 0, 0, NULL, offsetof(bench_cfg_t, trace)},
    {"trace-requests", 0, "BATON_BENCH_TRACE_REQUESTS", "0",
     "replay only the first N trace requests (0: all)", BT_OPT_INT, 0,
     BENCH_MAX_REQUESTS, NULL, offsetof(bench_cfg_t, trace_requests)},
    {"block-tokens", 0, "BATON_BENCH_BLOCK_TOKENS", "32",
     "tokens per 512-token trace block (lengths scale by this / 512)",
     BT_OPT_INT, 1, 512, NULL, offsetof(bench_cfg_t, block_tokens)},
    {"trace-speed", 0, "BATON_BENCH_TRACE_SPEED", "0",
     "replay at the trace's timestamps this many times faster (0: closed "
     "loop at --concurrency, in trace order)", BT_OPT_DOUBLE, 0, 1e6, NULL,
     offsetof(bench_cfg_t, trace_speed)},
    {"max-output", 0, "BATON_BENCH_MAX_OUTPUT", "64",
     "cap on a trace request's scaled output length", BT_OPT_INT, 1, 1 << 20,
     NULL, offsetof(bench_cfg_t, max_output)},
    {"kv-block", 0, "BATON_BENCH_KV_BLOCK", "16",
     "the cluster's kv block size (the ideal counts reuse in whole blocks)",
     BT_OPT_INT, 1, 4096, NULL, offsetof(bench_cfg_t, kv_block)},
};

typedef struct bench bench_t;

typedef struct {
    bench_t                 *b;
    int64_t                  idx;
    struct evhttp_connection *conn;
    uint64_t                 t_start, t_first, t_last;
    int64_t                  tokens;     /* token chunks seen */
    int64_t                  usage_tokens; /* usage.completion_tokens, -1 */
    int64_t                  cached;     /* usage...cached_tokens, 0 */
    size_t                   received;
    char                    *line;      /* partial SSE line */
    size_t                   line_len;
    bool                     done_seen; /* data: [DONE] */
    bool                     failed;
    bool                     finished;
} stream_t;

struct bench {
    bench_cfg_t        cfg;
    struct event_base *base;
    char              *host;
    int                port;
    char               path[64];
    uint64_t           rng;
    stream_t          *streams;
    int64_t            issued, finished, ok, errors, in_flight;
    uint64_t           t0, t_end;
    double            *ttft, *e2e, *tpot, *itl;
    size_t             n_ttft, n_e2e, n_tpot, n_itl, cap_itl;
    int64_t            out_tokens;
    char               first_error[160];
    bt_trace_t         trace;        /* --trace: the requests to replay */
    uint64_t           ok_prompt, ok_cached, ok_ideal; /* over ok requests */
};

static uint64_t rng_next(uint64_t *s)
{
    /* splitmix64: small, seedable, good enough for ids and arrivals */
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static double rng_unit(uint64_t *s) /* (0, 1] */
{
    return ((double)(rng_next(s) >> 11) + 1.0) / 9007199254740992.0;
}

static void note_error(bench_t *b, const char *what)
{
    if (b->first_error[0] == '\0') {
        snprintf(b->first_error, sizeof(b->first_error), "%.*s",
                 (int)sizeof(b->first_error) - 1, what);
    }
}

static void free_conn_cb(evutil_socket_t fd, short ev, void *arg)
{
    (void)fd;
    (void)ev;
    evhttp_connection_free(arg);
}

static void issue_next(bench_t *b);

static void stream_finish(stream_t *s, bool ok)
{
    bench_t *b = s->b;
    uint64_t now = bt_now_ns();

    if (s->finished) {
        return;
    }
    s->finished = true;
    b->finished++;
    b->in_flight--;
    if (ok && s->tokens > 0) {
        b->ok++;
        /* the server's count when it sent one: chunks can merge tokens */
        b->out_tokens += s->usage_tokens >= 0 ? s->usage_tokens : s->tokens;
        if (b->cfg.trace != NULL) {
            b->ok_prompt += b->trace.reqs[s->idx].n_prompt;
            b->ok_ideal += b->trace.reqs[s->idx].ideal_cached;
            b->ok_cached += (uint64_t)s->cached;
        }
        b->ttft[b->n_ttft++] = (double)(s->t_first - s->t_start) / 1e6;
        b->e2e[b->n_e2e++] = (double)(now - s->t_start) / 1e6;
        if (s->tokens > 1) {
            b->tpot[b->n_tpot++] = (double)(s->t_last - s->t_first) / 1e6 /
                                   (double)(s->tokens - 1);
        }
    } else {
        if (ok) {
            note_error(b, "stream ended without tokens");
        }
        b->errors++;
    }
    free(s->line);
    s->line = NULL;
    /* the connection is in use by the caller: free it on the next turn */
    if (s->conn != NULL) {
        event_base_once(b->base, -1, EV_TIMEOUT, free_conn_cb, s->conn, NULL);
        s->conn = NULL;
    }
    if (b->finished == b->cfg.requests) {
        b->t_end = now;
        event_base_loopexit(b->base, NULL);
    } else if (b->cfg.rate == 0 &&
               (b->cfg.trace == NULL || b->cfg.trace_speed == 0)) {
        issue_next(b);
    }
}

static void on_token(stream_t *s)
{
    bench_t *b = s->b;
    uint64_t now = bt_now_ns();

    if (s->tokens == 0) {
        s->t_first = now;
    } else if (b->n_itl < b->cap_itl) {
        b->itl[b->n_itl++] = (double)(now - s->t_last) / 1e6;
    }
    s->t_last = now;
    s->tokens++;
}

/* One SSE line: "data: {json}" or "data: [DONE]"; others are ignored. */
static void on_line(stream_t *s, const char *line, size_t len)
{
    json_t *root = NULL, *choices, *usage;
    json_error_t jerr;
    char    err[BT_JSON_ERR_SIZE + 32];

    if (len > 0 && line[len - 1] == '\r') {
        len--;
    }
    if (len < 5 || memcmp(line, "data:", 5) != 0) {
        return;
    }
    line += 5;
    len -= 5;
    if (len > 0 && line[0] == ' ') {
        line++;
        len--;
    }
    if (len == 6 && memcmp(line, "[DONE]", 6) == 0) {
        s->done_seen = true;
        return;
    }
    /* a token may decode to U+0000: the server sends it as "\u0000",
     * valid JSON that jansson refuses without JSON_ALLOW_NUL */
    root = len <= BENCH_MAX_LINE
           ? json_loadb(line, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr)
           : NULL;
    if (root == NULL) {
        snprintf(err, sizeof(err), "bad json in stream: %s",
                 len > BENCH_MAX_LINE ? "line too long" : jerr.text);
        note_error(s->b, err);
        s->failed = true;
        return;
    }
    if (json_object_get(root, "error") != NULL) {
        json_t *msg = json_object_get(json_object_get(root, "error"),
                                      "message");
        char    what[160];

        snprintf(what, sizeof(what), "error event in stream: %s",
                 json_is_string(msg) ? json_string_value(msg) : "?");
        note_error(s->b, what);
        s->failed = true;
    }
    usage = json_object_get(root, "usage");
    if (json_is_object(usage) &&
        json_is_integer(json_object_get(usage, "completion_tokens"))) {
        s->usage_tokens =
            json_integer_value(json_object_get(usage, "completion_tokens"));
        json_t *cached = json_object_get(
            json_object_get(usage, "prompt_tokens_details"), "cached_tokens");

        s->cached = json_is_integer(cached) && json_integer_value(cached) > 0
                    ? json_integer_value(cached) : 0;
    }
    /* a token chunk has text, or is not the finish chunk (an empty delta
     * can be a token ending inside a UTF-8 sequence); the final chunk with
     * only finish_reason is not a token */
    choices = json_object_get(root, "choices");
    if (json_is_array(choices) && json_array_size(choices) > 0) {
        json_t *c = json_array_get(choices, 0);
        json_t *text = json_object_get(c, "text");
        json_t *fin = json_object_get(c, "finish_reason");

        if ((json_is_string(text) && json_string_length(text) > 0) ||
            fin == NULL || json_is_null(fin)) {
            on_token(s);
        }
    }
    json_decref(root);
}

static void chunk_cb(struct evhttp_request *req, void *arg)
{
    stream_t        *s = arg;
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    char             buf[4096];
    int              n;

    if (evhttp_request_get_response_code(req) != HTTP_OK) {
        evbuffer_drain(in, evbuffer_get_length(in));
        return;
    }
    while ((n = evbuffer_remove(in, buf, sizeof(buf))) > 0) {
        s->received += (size_t)n;
        if (s->received > BENCH_MAX_RESPONSE) {
            note_error(s->b, "response over the size limit");
            s->failed = true;
            evbuffer_drain(in, evbuffer_get_length(in));
            return;
        }
        for (int i = 0; i < n; i++) {
            if (buf[i] == '\n') {
                on_line(s, s->line, s->line_len);
                s->line_len = 0;
            } else if (s->line_len < BENCH_MAX_LINE) {
                s->line[s->line_len++] = buf[i];
            } else {
                note_error(s->b, "sse line over the size limit");
                s->failed = true;
            }
        }
    }
}

static void done_cb(struct evhttp_request *req, void *arg)
{
    stream_t *s = arg;
    char      what[96];
    int       code;

    if (req == NULL) {
        note_error(s->b, "connection failed or timed out");
        stream_finish(s, false);
        return;
    }
    code = evhttp_request_get_response_code(req);
    if (code == 0) {
        note_error(s->b, "connection failed or timed out");
        stream_finish(s, false);
        return;
    }
    if (code != HTTP_OK) {
        snprintf(what, sizeof(what), "http status %d", code);
        note_error(s->b, what);
        stream_finish(s, false);
        return;
    }
    if (!s->done_seen) {
        note_error(s->b, "stream ended before [DONE]");
    }
    stream_finish(s, s->done_seen && !s->failed);
}

static char *build_body(bench_t *b, int64_t idx)
{
    json_t *root = json_object(), *ids = json_array();
    char   *text = NULL;
    int64_t max_tokens = b->cfg.output_tokens;

    if (root == NULL || ids == NULL) {
        goto err_out;
    }
    if (b->cfg.trace != NULL) {
        const bt_trace_req_t *r = &b->trace.reqs[idx];

        for (uint32_t i = 0; i < r->n_prompt; i++) {
            json_array_append_new(ids, json_integer(r->prompt[i]));
        }
        max_tokens = r->max_tokens;
    } else {
        for (int64_t i = 0; i < b->cfg.prompt_tokens; i++) {
            int64_t id = BENCH_TOKEN_LO +
                         (int64_t)(rng_next(&b->rng) %
                                   (BENCH_TOKEN_HI - BENCH_TOKEN_LO));
            json_array_append_new(ids, json_integer(id));
        }
    }
    json_object_set_new(root, "model", json_string(b->cfg.model));
    json_object_set(root, "prompt", ids);
    json_object_set_new(root, "max_tokens", json_integer(max_tokens));
    json_object_set_new(root, "temperature", json_real(0.0));
    json_object_set_new(root, "ignore_eos", json_true());
    json_object_set_new(root, "stream", json_true());
    json_object_set_new(root, "stream_options",
                        json_pack("{s:b}", "include_usage", 1));
    text = bt_json_dump(root);
err_out:
    json_decref(ids);
    json_decref(root);
    return text;
}

static void issue_next(bench_t *b)
{
    stream_t              *s;
    struct evhttp_request *req;
    struct evkeyvalq      *hdr;
    char                  *body;
    char                   len[32];

    if (b->issued >= b->cfg.requests) {
        return;
    }
    s = &b->streams[b->issued];
    s->b = b;
    s->idx = b->issued++;
    s->usage_tokens = -1;
    b->in_flight++;
    s->line = malloc(BENCH_MAX_LINE);
    body = build_body(b, s->idx);
    s->conn = evhttp_connection_base_new(b->base, NULL, b->host,
                                         (unsigned short)b->port);
    if (s->line == NULL || body == NULL || s->conn == NULL) {
        note_error(b, "out of memory");
        free(body);
        stream_finish(s, false);
        return;
    }
    evhttp_connection_set_timeout(s->conn, (int)((b->cfg.timeout_ms + 999) /
                                                 1000));
    evhttp_connection_set_retries(s->conn, 0);
    req = evhttp_request_new(done_cb, s);
    if (req == NULL) {
        free(body);
        note_error(b, "out of memory");
        stream_finish(s, false);
        return;
    }
    evhttp_request_set_chunked_cb(req, chunk_cb);
    hdr = evhttp_request_get_output_headers(req);
    snprintf(len, sizeof(len), "%zu", strlen(body));
    evhttp_add_header(hdr, "Host", b->host);
    evhttp_add_header(hdr, "Content-Type", "application/json");
    evhttp_add_header(hdr, "Accept", "text/event-stream");
    evhttp_add_header(hdr, "Connection", "close");
    evbuffer_add(evhttp_request_get_output_buffer(req), body, strlen(body));
    free(body);
    s->t_start = bt_now_ns();
    if (evhttp_make_request(s->conn, req, EVHTTP_REQ_POST, b->path) != 0) {
        /* evhttp frees req on failure */
        note_error(b, "cannot send request");
        stream_finish(s, false);
    }
}

static void arrival_cb(evutil_socket_t fd, short ev, void *arg)
{
    bench_t       *b = arg;
    double         gap = -log(rng_unit(&b->rng)) / b->cfg.rate;
    struct timeval tv;

    (void)fd;
    (void)ev;
    issue_next(b);
    if (b->issued < b->cfg.requests) {
        tv.tv_sec = (time_t)gap;
        tv.tv_usec = (suseconds_t)((gap - (double)tv.tv_sec) * 1e6);
        event_base_once(b->base, -1, EV_TIMEOUT, arrival_cb, b, &tv);
    }
}

/* --trace-speed > 0: issue the next trace request and wait for the one
 * after it, at its timestamp / speed from the start of the run */
static void trace_arrival_cb(evutil_socket_t fd, short ev, void *arg)
{
    bench_t *b = arg;

    (void)fd;
    (void)ev;
    issue_next(b);
    if (b->issued < b->cfg.requests) {
        double         at = (double)b->trace.reqs[b->issued].t_ms /
                            b->cfg.trace_speed / 1e3;
        double         now = (double)(bt_now_ns() - b->t0) / 1e9;
        double         gap = at > now ? at - now : 0;
        struct timeval tv;

        tv.tv_sec = (time_t)gap;
        tv.tv_usec = (suseconds_t)((gap - (double)tv.tv_sec) * 1e6);
        event_base_once(b->base, -1, EV_TIMEOUT, trace_arrival_cb, b, &tv);
    }
}

static void deadline_cb(evutil_socket_t fd, short ev, void *arg)
{
    bench_t *b = arg;

    (void)fd;
    (void)ev;
    note_error(b, "run deadline reached");
    event_base_loopbreak(b->base);
}

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, c = *(const double *)y;

    return a < c ? -1 : a > c;
}

typedef struct {
    double p50, p90, p99, mean;
    size_t n;
} dist_t;

static dist_t summarize(double *v, size_t n)
{
    dist_t d = {0, 0, 0, 0, n};
    double sum = 0;

    if (n == 0) {
        return d;
    }
    qsort(v, n, sizeof(*v), cmp_double);
    for (size_t i = 0; i < n; i++) {
        sum += v[i];
    }
    /* nearest rank */
    d.p50 = v[(size_t)ceil(0.50 * (double)n) - 1];
    d.p90 = v[(size_t)ceil(0.90 * (double)n) - 1];
    d.p99 = v[(size_t)ceil(0.99 * (double)n) - 1];
    d.mean = sum / (double)n;
    return d;
}

static json_t *dist_json(dist_t d)
{
    return json_pack("{s:f,s:f,s:f,s:f,s:I}", "p50", d.p50, "p90", d.p90,
                     "p99", d.p99, "mean", d.mean, "n", (json_int_t)d.n);
}

static json_t *trace_json(const bench_t *b)
{
    double hit = b->ok_prompt > 0 ? (double)b->ok_cached /
                                    (double)b->ok_prompt : 0;
    double ideal = b->ok_prompt > 0 ? (double)b->ok_ideal /
                                      (double)b->ok_prompt : 0;

    return json_pack("{s:s,s:I,s:I,s:I,s:I,s:f,s:f,s:f,s:f,s:I,s:I}",
                     "file", b->cfg.trace,
                     "block_tokens", (json_int_t)b->cfg.block_tokens,
                     "prompt_tokens", (json_int_t)b->ok_prompt,
                     "cached_tokens", (json_int_t)b->ok_cached,
                     "ideal_cached_tokens", (json_int_t)b->ok_ideal,
                     "hit_ratio", hit, "ideal_hit_ratio", ideal,
                     "hit_vs_ideal", ideal > 0 ? hit / ideal : 0.0,
                     "speed", b->cfg.trace_speed,
                     "trace_blocks", (json_int_t)b->trace.blocks,
                     "trace_hit_blocks", (json_int_t)b->trace.hit_blocks);
}

static void report(bench_t *b)
{
    double wall = (double)(b->t_end - b->t0) / 1e9;
    dist_t ttft = summarize(b->ttft, b->n_ttft);
    dist_t tpot = summarize(b->tpot, b->n_tpot);
    dist_t itl = summarize(b->itl, b->n_itl);
    dist_t e2e = summarize(b->e2e, b->n_e2e);
    double tok_s = wall > 0 ? (double)b->out_tokens / wall : 0;
    double req_s = wall > 0 ? (double)b->ok / wall : 0;

    if (b->cfg.json) {
        json_t *o = json_pack(
            "{s:I,s:I,s:I,s:f,s:I,s:I,s:I,s:f,s:f,s:f,s:o,s:o,s:o,s:o,s:s}",
            "requests", (json_int_t)b->cfg.requests, "ok", (json_int_t)b->ok,
            "errors", (json_int_t)(b->cfg.requests - b->ok), "rate",
            b->cfg.rate, "concurrency", (json_int_t)b->cfg.concurrency,
            "prompt_tokens", (json_int_t)b->cfg.prompt_tokens,
            "output_tokens", (json_int_t)b->out_tokens, "wall_s", wall,
            "output_tok_s", tok_s, "req_s", req_s, "ttft_ms",
            dist_json(ttft), "tpot_ms", dist_json(tpot), "itl_ms",
            dist_json(itl), "e2e_ms", dist_json(e2e), "first_error",
            b->first_error);
        char *text;

        if (o != NULL && b->cfg.trace != NULL) {
            json_object_set_new(o, "trace", trace_json(b));
        }
        text = o != NULL ? bt_json_dump(o) : NULL;

        printf("%s\n", text != NULL ? text : "{}");
        free(text);
        json_decref(o);
        return;
    }
    printf("requests %lld  ok %lld  errors %lld  wall %.3f s\n",
           (long long)b->cfg.requests, (long long)b->ok,
           (long long)(b->cfg.requests - b->ok), wall);
    printf("%-6s %10s %10s %10s %10s\n", "ms", "p50", "p90", "p99", "mean");
    printf("%-6s %10.2f %10.2f %10.2f %10.2f\n", "ttft", ttft.p50, ttft.p90,
           ttft.p99, ttft.mean);
    printf("%-6s %10.2f %10.2f %10.2f %10.2f\n", "tpot", tpot.p50, tpot.p90,
           tpot.p99, tpot.mean);
    printf("%-6s %10.2f %10.2f %10.2f %10.2f\n", "itl", itl.p50, itl.p90,
           itl.p99, itl.mean);
    printf("%-6s %10.2f %10.2f %10.2f %10.2f\n", "e2e", e2e.p50, e2e.p90,
           e2e.p99, e2e.mean);
    printf("throughput %.1f output tok/s  %.2f req/s\n", tok_s, req_s);
    if (b->cfg.trace != NULL) {
        double hit = b->ok_prompt > 0 ? (double)b->ok_cached /
                                        (double)b->ok_prompt : 0;
        double ideal = b->ok_prompt > 0 ? (double)b->ok_ideal /
                                          (double)b->ok_prompt : 0;

        printf("prefix cache: %llu of %llu prompt tokens cached, hit ratio "
               "%.4f; ideal %.4f (unbounded cache, in %lld-token blocks); "
               "ours / ideal %.3f\n", (unsigned long long)b->ok_cached,
               (unsigned long long)b->ok_prompt, hit, ideal,
               (long long)b->cfg.kv_block, ideal > 0 ? hit / ideal : 0);
    }
    if (b->first_error[0] != '\0') {
        printf("first error: %s\n", b->first_error);
    }
}

static bool parse_url(bench_t *b)
{
    struct evhttp_uri *uri = evhttp_uri_parse(b->cfg.url);
    const char        *scheme, *host;

    if (uri == NULL) {
        goto err_bad;
    }
    scheme = evhttp_uri_get_scheme(uri);
    host = evhttp_uri_get_host(uri);
    if (scheme == NULL || strcmp(scheme, "http") != 0 || host == NULL ||
        strlen(host) > 255) {
        evhttp_uri_free(uri);
        goto err_bad;
    }
    b->host = strdup(host);
    b->port = evhttp_uri_get_port(uri) > 0 ? evhttp_uri_get_port(uri) : 80;
    snprintf(b->path, sizeof(b->path), "/v1/completions");
    evhttp_uri_free(uri);
    return b->host != NULL;
err_bad:
    fprintf(stderr, "baton-bench: --url must be http://host[:port]\n");
    return false;
}

int main(int argc, char **argv)
{
    static const bt_opts_spec_t spec = {
        "baton-bench", "[OPTIONS]",
        "load generator for the router's openai api: streams completions "
        "and prints ttft, tpot/itl, e2e percentiles and throughput.",
        bench_opts, BT_OPTS_COUNT(bench_opts)};
    bench_t        b;
    struct event  *deadline = NULL;
    struct timeval tv;
    int            rc = 1;

    memset(&b, 0, sizeof(b));
    bt_opts_parse_or_exit(&spec, &b.cfg, argc, argv);
    if (b.cfg.url == NULL) {
        /* `make bench` runs every baton-* with no arguments */
        printf("baton-bench: no --url; run bench/cluster/run_cluster_bench.sh "
               "BUILD_DIR for cluster figures (--help for options)\n");
        return 0;
    }
    if (!parse_url(&b)) {
        return 2;
    }
    if (b.cfg.trace != NULL) {
        bt_trace_opts_t to = {
            (uint32_t)b.cfg.block_tokens, (uint32_t)b.cfg.kv_block,
            (uint32_t)b.cfg.max_output, BENCH_TOKEN_LO, BENCH_TOKEN_HI,
            (uint64_t)b.cfg.seed,
            b.cfg.trace_requests > 0 ? (size_t)b.cfg.trace_requests
                                     : BENCH_MAX_REQUESTS};
        char err[256];

        if (bt_trace_load(b.cfg.trace, &to, &b.trace, err, sizeof(err)) != 0) {
            fprintf(stderr, "baton-bench: %s\n", err);
            free(b.host);
            return 1;
        }
        b.cfg.requests = (int64_t)b.trace.n;
    }
    b.rng = (uint64_t)b.cfg.seed;
    b.cap_itl = (size_t)b.cfg.requests * 256;
    b.streams = calloc((size_t)b.cfg.requests, sizeof(*b.streams));
    b.ttft = calloc((size_t)b.cfg.requests, sizeof(double));
    b.e2e = calloc((size_t)b.cfg.requests, sizeof(double));
    b.tpot = calloc((size_t)b.cfg.requests, sizeof(double));
    b.itl = calloc(b.cap_itl, sizeof(double));
    b.base = event_base_new();
    if (b.streams == NULL || b.ttft == NULL || b.e2e == NULL ||
        b.tpot == NULL || b.itl == NULL || b.base == NULL) {
        fprintf(stderr, "baton-bench: out of memory\n");
        goto err_free;
    }
    tv.tv_sec = (time_t)(b.cfg.deadline_ms / 1000);
    tv.tv_usec = (suseconds_t)(b.cfg.deadline_ms % 1000) * 1000;
    deadline = evtimer_new(b.base, deadline_cb, &b);
    if (deadline == NULL || evtimer_add(deadline, &tv) != 0) {
        goto err_free;
    }
    b.t0 = bt_now_ns();
    if (b.cfg.trace != NULL && b.cfg.trace_speed > 0) {
        trace_arrival_cb(-1, 0, &b);
    } else if (b.cfg.rate > 0 && b.cfg.trace == NULL) {
        arrival_cb(-1, 0, &b);
    } else {
        for (int64_t i = 0; i < b.cfg.concurrency; i++) {
            issue_next(&b);
        }
    }
    if (b.finished < b.cfg.requests) {
        event_base_dispatch(b.base);
    }
    if (b.t_end == 0) {
        b.t_end = bt_now_ns();
    }
    report(&b);
    rc = b.ok == b.cfg.requests ? 0 : 1;
err_free:
    if (b.streams != NULL) {
        for (int64_t i = 0; i < b.issued; i++) {
            free(b.streams[i].line);
            if (b.streams[i].conn != NULL) {
                evhttp_connection_free(b.streams[i].conn);
            }
        }
    }
    if (deadline != NULL) {
        event_free(deadline);
    }
    if (b.base != NULL) {
        event_base_free(b.base);
    }
    free(b.streams);
    free(b.ttft);
    free(b.e2e);
    free(b.tpot);
    free(b.itl);
    free(b.host);
    bt_trace_free(&b.trace);
    return rc;
}
