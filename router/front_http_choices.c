/* n > 1 and best_of on the OpenAI HTTP API (docs/internals/router.md
 * "Choices"): one router request per choice, choice i sampled with
 * bt_choice_seed(seed, i), so each is reproducible alone and any decode
 * failover of one continues its own text. Choice 0 is prefilled; the
 * others start once it has its decode reservation and fork its prompt's
 * KV on that node (bt_rreq_fork_plan, params.fork_from): one prefill for
 * all. The response gathers them:
 * streamed chunks carry each choice's `index`, a whole response has the n
 * choices (best_of: the n with the highest cumulative logprob of
 * best_of), usage counts the prompt once and every generated token. */
#include "choices.h"
#include "front.h"

#include "base/clock.h"

#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct bt_hc bt_hc_t;

typedef struct {
    bt_hc_t                *m;
    bt_rreq_t              *req;         /* NULL once ended */
    bool                    ended;
    bool                    first;       /* no chunk of it sent yet */
    bt_buf_t                text;        /* whole text (not streamed) */
    bt_front_lp_t           lp;
    double                  cum;         /* sum of its tokens' logprobs */
    Baton__V1__FinishReason finish;
    uint32_t                completion_tokens;
} bt_hc_choice_t;

struct bt_hc {
    bt_router_t            *r;
    bt_http_req_t          *http;        /* NULL once the client left */
    bt_openai_kind_t        kind;
    bool                    stream, include_usage, want_lp;
    bool                    starting, sse_started, failed;
    uint32_t                n, best_of, n_ended;
    bt_status_t             status;
    char                    message[512];
    Baton__V1__Usage        usage;       /* prompt once, every choice's output */
    bt_buf_t                tok_text;
    char                    id[80];
    char                    model[BT_NODE_MODEL_MAX + 1];
    uint64_t                created;
    uint64_t                seed;        /* the request's: choice i's derives */
    bt_front_auth_t         auth;        /* the forked choices' tenant */
    bt_hc_choice_t          c[];
};

static void bt_hc_free(bt_hc_t *m)
{
    for (uint32_t i = 0; i < m->best_of; i++) {
        bt_buf_cleanup(&m->c[i].text);
        json_decref(m->c[i].lp.lp);
    }
    bt_buf_cleanup(&m->tok_text);
    free(m);
}

/* The one choice object of `resp` (stolen from it), its index set. */
static json_t *bt_hc_take_choice(json_t *resp, uint32_t index)
{
    json_t *choice = json_array_get(json_object_get(resp, "choices"), 0);

    if (choice == NULL) {
        return NULL;
    }
    json_incref(choice);
    json_object_set_new(choice, "index", json_integer(index));
    return choice;
}

static void bt_hc_send(bt_hc_t *m, bt_hc_choice_t *c, const char *text,
                       size_t len, Baton__V1__FinishReason finish)
{
    json_t *chunk = bt_openai_chunk(m->kind, m->id, m->model, m->created, text,
                                    len, c->first, c->lp.lp, finish);
    json_t *choice = bt_hc_take_choice(chunk, (uint32_t)(c - m->c));

    c->lp.lp = NULL;   /* the chunk took it */
    c->lp.lp_bytes = 0;
    c->first = false;
    if (!m->sse_started) {
        m->sse_started = true;
        bt_http_sse_start(m->http);
    }
    if (chunk != NULL) {
        bt_http_sse_send_json(m->http, chunk);
    }
    json_decref(choice);
    json_decref(chunk);
}

static void bt_hc_on_delta(bt_rreq_t *req, void *arg, const uint32_t *ids,
                           size_t n, const Baton__V1__TokenLogprobs *const *lps,
                           const char *text, size_t len)
{
    bt_hc_choice_t *c = arg;
    bt_hc_t *m = c->m;

    (void)ids;
    for (size_t i = 0; lps != NULL && i < n; i++) {
        c->cum += lps[i]->logprob;
    }
    if (m->want_lp && lps != NULL && n > 0) {
        c->lp.tok_text = &m->tok_text;
        if (bt_front_lp_add(m->r, m->kind, &c->lp, n, lps) != BT_OK) {
            bt_rreq_cancel(req, "response over the size limit");
            return;
        }
    }
    if (m->stream) {
        if (m->http != NULL && (len > 0 || c->first || c->lp.lp != NULL)) {
            bt_hc_send(m, c, text, len,
                       BATON__V1__FINISH_REASON__FINISH_REASON_UNSPECIFIED);
        }
    } else if (bt_buf_append(&c->text, text, len) != BT_OK) {
        bt_rreq_cancel(req, "response over the size limit");
    }
}

/* Every choice ended: the response (or the stream's end, or the error). */
static void bt_hc_finish(bt_hc_t *m)
{
    uint32_t keep[BT_CHOICES_LIMIT];
    double cum[BT_CHOICES_LIMIT];
    json_t *resp = NULL, *choices;

    if (m->http == NULL) {
        return;
    }
    bt_http_on_close(m->http, NULL, NULL);
    if (m->failed && !m->sse_started) {
        bt_front_http_fail(m->http, m->status, m->message, NULL);
        return;
    }
    if (m->failed || m->stream) {
        if (!m->sse_started) {
            m->sse_started = true;
            bt_http_sse_start(m->http);
        }
        if (m->failed) {
            char *e = bt_http_error_body(bt_http_error_type(m->status),
                                         m->message, NULL, NULL);

            if (e != NULL) {
                bt_http_sse_send(m->http, e, strlen(e));
                free(e);
            }
        } else if (m->include_usage) {
            json_t *u = bt_openai_usage_chunk(m->kind, m->id, m->model,
                                              m->created, &m->usage);

            bt_http_sse_send_json(m->http, u);
            json_decref(u);
        }
        bt_http_sse_done(m->http);
        return;
    }
    for (uint32_t i = 0; i < m->best_of; i++) {
        cum[i] = m->c[i].cum;
        keep[i] = i;
    }
    if (m->best_of > m->n) {
        bt_choice_rank(cum, m->best_of, m->n, keep);
    }
    for (uint32_t k = 0; k < m->n; k++) {
        bt_hc_choice_t *c = &m->c[keep[k]];
        json_t *one = bt_openai_response(m->kind, m->id, m->model, m->created,
                                         c->text.data ? c->text.data : "",
                                         c->text.len, c->lp.lp, c->finish,
                                         &m->usage);

        c->lp.lp = NULL;   /* the response took it */
        if (one == NULL) {
            break;
        }
        if (resp == NULL) {
            resp = one;
            json_object_set_new(json_array_get(json_object_get(resp, "choices"), 0),
                                "index", json_integer(0));
            continue;
        }
        choices = json_object_get(resp, "choices");
        json_array_append_new(choices, bt_hc_take_choice(one, k));
        json_decref(one);
    }
    if (resp == NULL) {
        bt_front_http_fail(m->http, BT_ERR_NO_MEMORY, "out of memory", NULL);
        return;
    }
    bt_http_reply_json(m->http, 200, resp);
    json_decref(resp);
}

/* Choices never started (they wait for choice 0's reservation) end with
 * the request. */
static void bt_hc_drop_unstarted(bt_hc_t *m)
{
    for (uint32_t i = 0; i < m->best_of; i++) {
        if (!m->c[i].ended && m->c[i].req == NULL) {
            m->c[i].ended = true;
            m->n_ended++;
        }
    }
}

/* Choice i could not start (status s, err): the request fails whole. */
static void bt_hc_start_failed(bt_hc_t *m, uint32_t i, bt_status_t s,
                               const char *err)
{
    m->c[i].ended = true;
    m->n_ended++;
    if (m->failed) {
        return;
    }
    m->failed = true;
    m->status = s;
    snprintf(m->message, sizeof(m->message), "%s", err);
    for (uint32_t j = 0; j < m->best_of; j++) {
        if (m->c[j].req != NULL) {
            bt_rreq_cancel(m->c[j].req, "another choice of the request could "
                           "not start");
        }
    }
    bt_hc_drop_unstarted(m);
}

static void bt_hc_on_end(bt_rreq_t *req, void *arg, bt_status_t status,
                         const char *message, Baton__V1__FinishReason finish,
                         const Baton__V1__Usage *usage)
{
    bt_hc_choice_t *c = arg;
    bt_hc_t *m = c->m;

    (void)req;
    c->ended = true;
    c->req = NULL;
    c->finish = finish;
    m->n_ended++;
    if (status == BT_OK && usage != NULL) {
        m->usage.prompt_tokens = usage->prompt_tokens;
        if (c == &m->c[0]) {   /* the choice whose prefill ran */
            m->usage.cached_tokens = usage->cached_tokens;
        }
        m->usage.completion_tokens += usage->completion_tokens;
    }
    if (status != BT_OK && !m->failed) {
        m->failed = true;
        m->status = status;
        snprintf(m->message, sizeof(m->message), "%s", message ? message : "");
        bool starting = m->starting;

        /* one choice failed: the response cannot be whole. Their ends
         * come inside the cancels; the last frees m, here, once. */
        m->starting = true;
        for (uint32_t i = 0; i < m->best_of; i++) {
            if (m->c[i].req != NULL) {
                bt_rreq_cancel(m->c[i].req, "another choice of the request failed");
            }
        }
        bt_hc_drop_unstarted(m);
        m->starting = starting;
    } else if (status == BT_OK && m->stream && m->http != NULL && !m->failed) {
        bt_hc_send(m, c, "", 0, finish);
    }
    if (m->n_ended == m->best_of && !m->starting) {
        bt_hc_finish(m);
        bt_hc_free(m);
    }
}

static const bt_rreq_sink_t bt_hc_sink = { bt_hc_on_delta, bt_hc_on_end, NULL };

/* Choice 0 has its reservation: the others fork its prompt's KV there. */
static void bt_hc_on_reserved(bt_rreq_t *req, void *arg)
{
    bt_hc_choice_t *c0 = arg;
    bt_hc_t *m = c0->m;
    bool starting = m->starting;
    Baton__V1__SamplingParams sp = BATON__V1__SAMPLING_PARAMS__INIT;
    bt_rreq_params_t p;
    char err[512];
    size_t n_prompt;

    memset(&p, 0, sizeof(p));
    p.tenant = m->auth.tenant;
    p.salt = m->auth.salt;
    p.salt_len = m->auth.salt_len;
    p.prompt = bt_rreq_prompt(req, &n_prompt);
    p.n_prompt = n_prompt;
    p.sampling = &sp;
    p.fork_from = req;
    sp.seed_opt_case = BATON__V1__SAMPLING_PARAMS__SEED_OPT_SEED;
    m->starting = true;   /* a failure below ends choices: free once, after */
    for (uint32_t i = 1; i < m->best_of; i++) {
        bt_hc_choice_t *c = &m->c[i];
        bt_status_t s;

        if (c->ended || c->req != NULL) {
            continue;
        }
        sp.seed = bt_choice_seed(m->seed, i);
        s = bt_rreq_start(m->r, &p, &bt_hc_sink, c, &c->req, err, sizeof(err));
        if (s != BT_OK) {
            bt_hc_start_failed(m, i, s, err);
        }
    }
    m->starting = starting;
    if (m->n_ended == m->best_of && !m->starting) {
        bt_hc_finish(m);
        bt_hc_free(m);
    }
}

static void bt_hc_closed(void *arg)
{
    bt_hc_t *m = arg;

    m->http = NULL;
    m->starting = true;   /* cancels below end choices: free once, after */
    for (uint32_t i = 0; i < m->best_of; i++) {
        if (m->c[i].req != NULL) {
            bt_rreq_cancel(m->c[i].req, "the client closed the connection");
        }
    }
    bt_hc_drop_unstarted(m);
    m->starting = false;
    if (m->n_ended == m->best_of) {
        bt_hc_free(m);
    }
}

void bt_front_http_choices(bt_router_t *r, bt_http_req_t *http,
                           bt_openai_req_t *oreq, const bt_front_auth_t *auth)
{
    const Baton__V1__SamplingParams *in = oreq->gen.sampling;
    uint64_t seed = 0;
    bt_hc_t *m;
    char err[512];

    if (oreq->best_of > (uint32_t)r->cfg.max_choices) {
        snprintf(err, sizeof(err), "field '%s' (%u) is over this server's limit "
                 "of %lld choices", oreq->best_of > oreq->n ? "best_of" : "n",
                 oreq->best_of, (long long)r->cfg.max_choices);
        bt_front_http_fail(http, BT_ERR_INVALID_ARG, err,
                           oreq->best_of > oreq->n ? "best_of" : "n");
        return;
    }
    m = calloc(1, sizeof(*m) + oreq->best_of * sizeof(m->c[0]));
    if (m == NULL) {
        bt_front_http_fail(http, BT_ERR_NO_MEMORY, "out of memory", NULL);
        return;
    }
    m->r = r;
    m->http = http;
    m->kind = oreq->kind;
    m->stream = oreq->stream;
    m->include_usage = oreq->include_usage;
    m->want_lp = bt_sampling_wants_logprobs(in);
    m->n = oreq->n;
    m->best_of = oreq->best_of;
    m->created = bt_wall_ms() / 1000;
    snprintf(m->model, sizeof(m->model), "%s", oreq->gen.model);
    bt_buf_init(&m->tok_text, 1u << 20);
    /* one seed for the request, fixed here so every choice derives from it */
    if (in != NULL && in->seed_opt_case == BATON__V1__SAMPLING_PARAMS__SEED_OPT_SEED) {
        seed = in->seed;
    } else {
        RAND_bytes((unsigned char *)&seed, sizeof(seed));
    }
    m->seed = seed;
    if (auth != NULL) {
        m->auth = *auth;
    }
    for (uint32_t i = 0; i < m->best_of; i++) {
        m->c[i].m = m;
        m->c[i].first = true;
        bt_buf_init(&m->c[i].text, 64u << 20);
    }
    /* choice 0 is prefilled; the others fork its KV (bt_hc_on_reserved) */
    m->starting = true;
    {
        Baton__V1__SamplingParams sp = *in;
        Baton__V1__GenerateRequest gen = oreq->gen;
        bt_hc_choice_t *c = &m->c[0];
        bt_status_t s;

        sp.seed_opt_case = BATON__V1__SAMPLING_PARAMS__SEED_OPT_SEED;
        sp.seed = bt_choice_seed(seed, 0);
        /* best_of ranks by the chosen tokens' logprobs */
        sp.logprobs_chosen = sp.logprobs_chosen || m->best_of > m->n;
        gen.sampling = &sp;
        gen.request_id = (char *)"";
        s = bt_front_start(r, &gen, auth, &bt_hc_sink, c, &c->req, err,
                           sizeof(err));
        if (s != BT_OK) {
            bt_hc_start_failed(m, 0, s, err);
        } else {
            bt_rreq_fork_plan(c->req, m->best_of - 1, bt_hc_on_reserved, c);
            snprintf(m->id, sizeof(m->id), "%s-%s", m->kind == BT_OPENAI_CHAT
                     ? "chatcmpl" : "cmpl", bt_rreq_id(c->req));
            bt_http_add_header(http, "X-Request-Id", bt_rreq_id(c->req));
        }
    }
    m->starting = false;
    if (m->n_ended == m->best_of) {
        bt_hc_finish(m);
        bt_hc_free(m);
        return;
    }
    bt_http_on_close(http, bt_hc_closed, m);
}
