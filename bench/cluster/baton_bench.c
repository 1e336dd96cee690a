/* baton-bench: a load generator for the router's OpenAI API.
 *
 * One libevent loop drives every stream (evhttp client, one connection per
 * request, Server-Sent Events read as they arrive through the chunk
 * callback). The requests are a workload (bench/workload/workload.h, the
 * one baton-sim replays too): closed loop (--concurrency C), seeded
 * Poisson arrivals (--rate R), prompt and output lengths fixed or drawn
 * from a distribution, or a Mooncake-format trace (--trace FILE, shared
 * prefixes kept, lengths scaled) at its timestamps sped up by
 * --trace-speed or closed loop, with the prefix-cache hit ratio
 * (usage.prompt_tokens_details.cached_tokens) beside the trace's ideal.
 * Records TTFT (first token chunk), inter-token latencies and end-to-end
 * latency; the report (bench/workload/report.h) adds the fraction of
 * requests meeting --slo-ttft and --slo-tpot and the goodput, as text,
 * one JSON object (--json) and, with --out DIR, report.json, report.md and
 * the TTFT/TPOT CDFs that bench/workload/plot.sh draws. A long run shows
 * its progress on stderr (a terminal, or --progress). Everything is
 * bounded: per-connection inactivity timeout, a whole-run deadline, SSE
 * line and response size limits.
 *   baton-bench --url http://127.0.0.1:8000 --model M --requests N
 *               (--concurrency C | --rate R) --prompt-tokens P
 *               --output-tokens O [--slo-ttft MS --slo-tpot MS] [--json]
 *               [--out DIR] [--prompt-as ids|text|chat]
 * --url takes several routers, comma-separated (request i goes to router
 * i mod n); --prompt-as text|chat makes the router tokenize. */
#include "base/clock.h"
#include "base/json.h"
#include "base/opts.h"
#include "report.h"
#include "workload.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BENCH_MAX_LINE     (64 * 1024)        /* one SSE line */
#define BENCH_MAX_RESPONSE (16 * 1024 * 1024) /* one whole response */
#define BENCH_MAX_REQUESTS 1000000

typedef struct {
    const char *url;
    const char *model;
    bt_wl_cfg_t wl;
    int64_t     timeout_ms;   /* inactivity, per connection */
    int64_t     deadline_ms;  /* the whole run */
    bool        json;
    double      slo_ttft_ms;
    double      slo_tpot_ms;
    const char *out;          /* folder for report.json, report.md, CDFs */
    const char *title;
    bool        progress;
    int         prompt_as;    /* BENCH_PROMPT_* */
} bench_cfg_t;

/* --prompt-as: how the workload's prompt ids are sent. `text` and `chat`
 * make the router tokenize (and render the chat template): each id
 * becomes a word, so the same seed sends the same text. */
enum { BENCH_PROMPT_IDS, BENCH_PROMPT_TEXT, BENCH_PROMPT_CHAT };

static const bt_opt_t bench_opts[] = {
    {"url", 0, "BATON_BENCH_URL", NULL, "router http base url (http://host:port); "
     "several, comma-separated, share the requests round-robin",
     BT_OPT_STRING, 0, 0, NULL, offsetof(bench_cfg_t, url)},
    {"model", 0, "BATON_BENCH_MODEL", "builtin", "model name sent in each request",
     BT_OPT_STRING, 0, 0, NULL, offsetof(bench_cfg_t, model)},
    BT_WL_OPTS(bench_cfg_t, wl),
    {"timeout", 0, "BATON_BENCH_TIMEOUT", "60s", "per-connection inactivity timeout",
     BT_OPT_DURATION, 1, 3600000, NULL, offsetof(bench_cfg_t, timeout_ms)},
    {"deadline", 0, "BATON_BENCH_DEADLINE", "10m", "the whole run; unfinished count as errors",
     BT_OPT_DURATION, 1, 86400000, NULL, offsetof(bench_cfg_t, deadline_ms)},
    {"json", 0, "BATON_BENCH_JSON", "false", "print one json object", BT_OPT_BOOL, 0, 0,
     NULL, offsetof(bench_cfg_t, json)},
    {"slo-ttft", 0, "BATON_BENCH_SLO_TTFT", "0",
     "time-to-first-token objective in ms (0: none)", BT_OPT_DOUBLE, 0, 1e9,
     NULL, offsetof(bench_cfg_t, slo_ttft_ms)},
    {"slo-tpot", 0, "BATON_BENCH_SLO_TPOT", "0",
     "time-per-output-token objective in ms (0: none)", BT_OPT_DOUBLE, 0, 1e9,
     NULL, offsetof(bench_cfg_t, slo_tpot_ms)},
    {"out", 0, "BATON_BENCH_OUT", NULL,
     "write report.json, report.md, ttft_cdf.dat and tpot_cdf.dat here",
     BT_OPT_STRING, 0, 0, NULL, offsetof(bench_cfg_t, out)},
    {"title", 0, "BATON_BENCH_TITLE", "baton-bench", "the Markdown report's title",
     BT_OPT_STRING, 0, 0, NULL, offsetof(bench_cfg_t, title)},
    {"progress", 0, "BATON_BENCH_PROGRESS", "false",
     "show progress on stderr even when it is not a terminal", BT_OPT_BOOL,
     0, 0, NULL, offsetof(bench_cfg_t, progress)},
    {"prompt-as", 0, "BATON_BENCH_PROMPT_AS", "ids",
     "send prompts as token ids, text (/v1/completions) or chat "
     "(/v1/chat/completions): one word per workload id",
     BT_OPT_ENUM, 0, 0, "ids|text|chat", offsetof(bench_cfg_t, prompt_as)},
};

typedef struct bench bench_t;

typedef struct {
    bench_t                 *b;
    int64_t                  idx;
    struct evhttp_connection *conn;
    uint64_t                 t_start, t_first, t_second, t_last;
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

#define BENCH_MAX_URLS 8

struct bench {
    bench_cfg_t        cfg;
    struct event_base *base;
    char              *hosts[BENCH_MAX_URLS]; /* --url's routers, request i to i % n */
    int                ports[BENCH_MAX_URLS];
    int                n_urls;
    char               path[64];
    bt_wl_t            wl;
    int64_t            n;            /* requests in the workload */
    stream_t          *streams;
    bt_rep_rec_t      *recs;         /* per request, by index */
    int64_t            issued, finished, ok, in_flight;
    uint64_t           t0, t_end;
    double            *itl;
    size_t             n_itl, cap_itl;
    char               first_error[160];
    bool               show_progress;
    struct event      *progress_ev;
};

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
    bt_rep_rec_t *r = &b->recs[s->idx];

    if (s->finished) {
        return;
    }
    s->finished = true;
    b->finished++;
    b->in_flight--;
    r->prompt_tokens = b->wl.reqs[s->idx].n_prompt;
    r->ideal_cached = b->wl.reqs[s->idx].ideal_cached;
    if (ok && s->tokens > 0) {
        b->ok++;
        r->ok = true;
        /* the server's count when it sent one: chunks can merge tokens */
        r->out_tokens = (uint32_t)(s->usage_tokens >= 0 ? s->usage_tokens
                                                        : s->tokens);
        r->cached_tokens = (uint32_t)s->cached;
        r->ttft_ms = (double)(s->t_first - s->t_start) / 1e6;
        r->e2e_ms = (double)(now - s->t_start) / 1e6;
        r->tpot_ms = s->tokens > 1 ? (double)(s->t_last - s->t_first) / 1e6 /
                                     (double)(s->tokens - 1) : 0;
        r->itl1_ms = s->tokens > 1 ? (double)(s->t_second - s->t_first) / 1e6
                                   : 0;
    } else if (ok) {
        note_error(b, "stream ended without tokens");
    }
    free(s->line);
    s->line = NULL;
    /* the connection is in use by the caller: free it on the next turn */
    if (s->conn != NULL) {
        event_base_once(b->base, -1, EV_TIMEOUT, free_conn_cb, s->conn, NULL);
        s->conn = NULL;
    }
    if (b->finished == b->n) {
        b->t_end = now;
        event_base_loopexit(b->base, NULL);
    } else if (!b->wl.open) {
        issue_next(b);
    }
}

static void on_token(stream_t *s)
{
    bench_t *b = s->b;
    uint64_t now = bt_now_ns();

    if (s->tokens == 0) {
        s->t_first = now;
    } else if (s->tokens == 1) {
        s->t_second = now;
    }
    if (s->tokens > 0 && b->n_itl < b->cap_itl) {
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
        json_t *delta = json_object_get(c, "delta");
        json_t *text = json_is_object(delta) ? json_object_get(delta, "content")
                       : json_object_get(c, "text");
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

/* The prompt's ids as words: " " and the id in base 26 letters. */
static char *prompt_words(const int32_t *ids, uint32_t n)
{
    char *out = malloc((size_t)n * 9 + 1), *p = out;

    if (out == NULL) {
        return NULL;
    }
    for (uint32_t i = 0; i < n; i++) {
        uint32_t v = (uint32_t)ids[i];

        *p++ = ' ';
        do {
            *p++ = (char)('a' + v % 26);
            v /= 26;
        } while (v > 0);
    }
    *p = '\0';
    return out;
}

static json_t *prompt_json(bench_t *b, const int32_t *prompt, uint32_t n)
{
    json_t *ids;
    char   *words;

    if (b->cfg.prompt_as == BENCH_PROMPT_IDS) {
        ids = json_array();
        for (uint32_t i = 0; ids != NULL && i < n; i++) {
            json_array_append_new(ids, json_integer(prompt[i]));
        }
        return ids;
    }
    words = prompt_words(prompt, n);
    ids = words != NULL ? json_string(words) : NULL;
    free(words);
    if (ids != NULL && b->cfg.prompt_as == BENCH_PROMPT_CHAT) {
        return json_pack("[{s:s, s:o}]", "role", "user", "content", ids);
    }
    return ids;
}

static char *build_body(bench_t *b, int64_t idx)
{
    json_t *root = json_object(), *ids = NULL;
    const bt_wl_req_t *r = &b->wl.reqs[idx];
    int32_t *prompt = malloc((size_t)r->n_prompt * sizeof(int32_t));
    char   *text = NULL;

    if (root == NULL || prompt == NULL) {
        goto err_out;
    }
    bt_wl_prompt(&b->wl, (size_t)idx, prompt);
    ids = prompt_json(b, prompt, r->n_prompt);
    if (ids == NULL) {
        goto err_out;
    }
    json_object_set_new(root, "model", json_string(b->cfg.model));
    json_object_set(root, b->cfg.prompt_as == BENCH_PROMPT_CHAT ? "messages"
                    : "prompt", ids);
    json_object_set_new(root, "max_tokens", json_integer(r->max_tokens));
    json_object_set_new(root, "temperature", json_real(0.0));
    json_object_set_new(root, "ignore_eos", json_true());
    json_object_set_new(root, "stream", json_true());
    json_object_set_new(root, "stream_options",
                        json_pack("{s:b}", "include_usage", 1));
    text = bt_json_dump(root);
err_out:
    free(prompt);
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

    if (b->issued >= b->n) {
        return;
    }
    s = &b->streams[b->issued];
    s->b = b;
    s->idx = b->issued++;
    s->usage_tokens = -1;
    b->in_flight++;
    s->line = malloc(BENCH_MAX_LINE);
    body = build_body(b, s->idx);
    s->conn = evhttp_connection_base_new(b->base, NULL,
                                         b->hosts[s->idx % b->n_urls],
                                         (unsigned short)b->ports[s->idx % b->n_urls]);
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
    evhttp_add_header(hdr, "Host", b->hosts[s->idx % b->n_urls]);
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

/* Open loop: issue the next request, then wait for the one after it, at
 * its arrival time from the start of the run. */
static void arrival_cb(evutil_socket_t fd, short ev, void *arg)
{
    bench_t *b = arg;

    (void)fd;
    (void)ev;
    issue_next(b);
    if (b->issued < b->n) {
        double         at = b->wl.reqs[b->issued].t_s;
        double         now = (double)(bt_now_ns() - b->t0) / 1e9;
        double         gap = at > now ? at - now : 0;
        struct timeval tv;

        tv.tv_sec = (time_t)gap;
        tv.tv_usec = (suseconds_t)((gap - (double)tv.tv_sec) * 1e6);
        event_base_once(b->base, -1, EV_TIMEOUT, arrival_cb, b, &tv);
    }
}

static void progress_cb(evutil_socket_t fd, short ev, void *arg)
{
    bench_t *b = arg;

    (void)fd;
    (void)ev;
    bt_rep_progress(stderr, (size_t)b->finished, (size_t)b->n, (size_t)b->ok,
                    (double)(bt_now_ns() - b->t0) / 1e9, "baton-bench");
}

static void deadline_cb(evutil_socket_t fd, short ev, void *arg)
{
    bench_t *b = arg;

    (void)fd;
    (void)ev;
    note_error(b, "run deadline reached");
    event_base_loopbreak(b->base);
}

static json_t *trace_json(const bench_t *b, const bt_rep_t *rep)
{
    double hit = rep->prompt_tokens > 0 ? (double)rep->cached_tokens /
                                          (double)rep->prompt_tokens : 0;
    double ideal = rep->prompt_tokens > 0 ? (double)rep->ideal_cached /
                                            (double)rep->prompt_tokens : 0;

    return json_pack("{s:s,s:I,s:I,s:I,s:I,s:f,s:f,s:f,s:f,s:I,s:I}",
                     "file", b->cfg.wl.trace,
                     "block_tokens", (json_int_t)b->cfg.wl.block_tokens,
                     "prompt_tokens", (json_int_t)rep->prompt_tokens,
                     "cached_tokens", (json_int_t)rep->cached_tokens,
                     "ideal_cached_tokens", (json_int_t)rep->ideal_cached,
                     "hit_ratio", hit, "ideal_hit_ratio", ideal,
                     "hit_vs_ideal", ideal > 0 ? hit / ideal : 0.0,
                     "speed", b->cfg.wl.trace_speed,
                     "trace_blocks", (json_int_t)b->wl.trace.blocks,
                     "trace_hit_blocks", (json_int_t)b->wl.trace.hit_blocks);
}

static int report(bench_t *b)
{
    bt_rep_slo_t slo = {b->cfg.slo_ttft_ms, b->cfg.slo_tpot_ms};
    bt_rep_t     rep;
    char         err[256];

    bt_rep_compute(b->recs, (size_t)b->n, (double)(b->t_end - b->t0) / 1e9,
                   &slo, b->itl, b->n_itl, &rep);
    if (b->cfg.out != NULL &&
        bt_rep_write_dir(b->cfg.out, b->recs, (size_t)b->n, &rep,
                         b->cfg.title, err, sizeof(err)) != 0) {
        fprintf(stderr, "baton-bench: %s\n", err);
        return -1;
    }
    if (b->cfg.json) {
        json_t *o = bt_rep_json(&rep);
        char   *text;

        if (o != NULL) {
            json_object_set_new(o, "rate", json_real(b->cfg.wl.rate));
            json_object_set_new(o, "concurrency",
                                json_integer(b->cfg.wl.concurrency));
            json_object_set_new(o, "prompt_tokens",
                                json_string(b->cfg.wl.prompt_tokens));
            json_object_set_new(o, "first_error",
                                json_string(b->first_error));
            if (b->wl.has_trace) {
                json_object_set_new(o, "trace", trace_json(b, &rep));
            }
        }
        text = o != NULL ? bt_json_dump(o) : NULL;
        printf("%s\n", text != NULL ? text : "{}");
        free(text);
        json_decref(o);
        return 0;
    }
    bt_rep_print_text(stdout, &rep);
    if (b->wl.has_trace) {
        double hit = rep.prompt_tokens > 0 ? (double)rep.cached_tokens /
                                             (double)rep.prompt_tokens : 0;
        double ideal = rep.prompt_tokens > 0 ? (double)rep.ideal_cached /
                                               (double)rep.prompt_tokens : 0;

        printf("prefix cache: %llu of %llu prompt tokens cached, hit ratio "
               "%.4f; ideal %.4f (unbounded cache, in %lld-token blocks); "
               "ours / ideal %.3f\n", (unsigned long long)rep.cached_tokens,
               (unsigned long long)rep.prompt_tokens, hit, ideal,
               (long long)b->cfg.wl.kv_block, ideal > 0 ? hit / ideal : 0);
    }
    if (b->first_error[0] != '\0') {
        printf("first error: %s\n", b->first_error);
    }
    return 0;
}

/* One http://host[:port] of --url's comma-separated list. */
static bool parse_one_url(bench_t *b, const char *url)
{
    struct evhttp_uri *uri = evhttp_uri_parse(url);
    const char        *scheme, *host;

    if (uri == NULL || b->n_urls == BENCH_MAX_URLS) {
        goto err_bad;
    }
    scheme = evhttp_uri_get_scheme(uri);
    host = evhttp_uri_get_host(uri);
    if (scheme == NULL || strcmp(scheme, "http") != 0 || host == NULL ||
        strlen(host) > 255) {
        goto err_bad;
    }
    b->hosts[b->n_urls] = strdup(host);
    b->ports[b->n_urls] = evhttp_uri_get_port(uri) > 0 ? evhttp_uri_get_port(uri) : 80;
    evhttp_uri_free(uri);
    return b->hosts[b->n_urls++] != NULL;
err_bad:
    if (uri != NULL) {
        evhttp_uri_free(uri);
    }
    return false;
}

static bool parse_url(bench_t *b)
{
    char *list = strdup(b->cfg.url), *save = NULL;
    bool ok = list != NULL;

    for (char *u = list ? strtok_r(list, ",", &save) : NULL; ok && u != NULL;
         u = strtok_r(NULL, ",", &save)) {
        ok = parse_one_url(b, u);
    }
    free(list);
    if (!ok || b->n_urls == 0) {
        for (int i = 0; i < b->n_urls; i++) {
            free(b->hosts[i]);
        }
        b->n_urls = 0;
        fprintf(stderr, "baton-bench: --url must be http://host[:port], or up "
                "to %d of them separated by commas\n", BENCH_MAX_URLS);
        return false;
    }
    snprintf(b->path, sizeof(b->path), "%s", b->cfg.prompt_as == BENCH_PROMPT_CHAT
             ? "/v1/chat/completions" : "/v1/completions");
    return true;
}

static void free_urls(bench_t *b)
{
    for (int i = 0; i < b->n_urls; i++) {
        free(b->hosts[i]);
    }
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
    {
        char err[256];

        if (bt_wl_build(&b.cfg.wl, &b.wl, err, sizeof(err)) != 0) {
            fprintf(stderr, "baton-bench: %s\n", err);
            free_urls(&b);
            return 2;
        }
    }
    b.n = (int64_t)b.wl.n;
    b.show_progress = b.cfg.progress || isatty(STDERR_FILENO);
    /* inter-token gaps kept: 256 per request, 16M at most (128 MiB) */
    b.cap_itl = (size_t)b.n * 256 < (1u << 24) ? (size_t)b.n * 256 : (1u << 24);
    b.streams = calloc((size_t)b.n, sizeof(*b.streams));
    b.recs = calloc((size_t)b.n, sizeof(*b.recs));
    b.itl = calloc(b.cap_itl, sizeof(double));
    b.base = event_base_new();
    if (b.streams == NULL || b.recs == NULL || b.itl == NULL ||
        b.base == NULL) {
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
    if (b.show_progress) {
        struct timeval sec = {1, 0};

        b.progress_ev = event_new(b.base, -1, EV_PERSIST, progress_cb, &b);
        if (b.progress_ev != NULL) {
            evtimer_add(b.progress_ev, &sec);
        }
    }
    if (b.wl.open) {
        arrival_cb(-1, 0, &b);
    } else {
        for (size_t i = 0; i < b.wl.concurrency; i++) {
            issue_next(&b);
        }
    }
    if (b.finished < b.n) {
        event_base_dispatch(b.base);
    }
    if (b.t_end == 0) {
        b.t_end = bt_now_ns();
    }
    if (b.show_progress) {
        progress_cb(-1, 0, &b);
        fputc('\n', stderr);
    }
    rc = report(&b) == 0 && b.ok == b.n ? 0 : 1;
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
    if (b.progress_ev != NULL) {
        event_free(b.progress_ev);
    }
    if (b.base != NULL) {
        event_base_free(b.base);
    }
    free(b.streams);
    free(b.recs);
    free(b.itl);
    free_urls(&b);
    bt_wl_free(&b.wl);
    return rc;
}
