/* The request machinery's test router and its fake nodes (rreq_fixture.h). */
#include "rreq_fixture.h"

#include "model.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <cmocka.h>

/* ---- the client's side ---- */

static void fx_on_delta(bt_rreq_t *req, void *arg, const uint32_t *ids, size_t n,
                        const Baton__V1__TokenLogprobs *const *lps,
                        const char *text, size_t text_len)
{
    fx_rec_t *rec = arg;

    (void)req;
    assert_true(rec->deltas < FX_MAX_IDS);
    assert_true(rec->text_len + text_len <= FX_MAX_TEXT);
    memcpy(rec->text + rec->text_len, text, text_len);
    rec->text_len += text_len;
    rec->delta_ends[rec->deltas++] = rec->text_len;
    rec->text_after_end |= rec->ends > 0;
    for (size_t i = 0; i < n; i++) {
        assert_true(rec->n_ids < FX_MAX_IDS);
        /* logprobs asked for: each token's, about it (fx_tokens_lp's) */
        if (lps != NULL) {
            assert_non_null(lps[i]);
            assert_int_equal(lps[i]->token_id, ids[i]);
            assert_int_equal(lps[i]->n_top, 1);
            assert_true(lps[i]->logprob < 0);
        }
        rec->ids[rec->n_ids++] = ids[i];
    }
}

static void fx_on_end(bt_rreq_t *req, void *arg, bt_status_t status,
                      const char *message, Baton__V1__FinishReason finish,
                      const Baton__V1__Usage *usage)
{
    fx_rec_t *rec = arg;

    (void)req;
    rec->ends++;
    rec->completion_tokens = usage != NULL ? usage->completion_tokens : 0;
    rec->status = status;
    rec->finish = finish;
    snprintf(rec->msg, sizeof(rec->msg), "%s", message ? message : "");
    if (rec->on_end_hook != NULL) {
        rec->on_end_hook(rec);
    }
}

static void fx_on_prompt(bt_rreq_t *req, void *arg,
                         const Baton__V1__TokenLogprobs *const *lps, size_t n)
{
    fx_rec_t *rec = arg;

    (void)req; (void)lps;
    rec->prompts++;
    rec->n_prompt_lps = n;
    rec->ends_at_prompt = rec->ends;
}

static const bt_rreq_sink_t fx_sink = { fx_on_delta, fx_on_end, fx_on_prompt };

static const uint32_t fx_prompt[] = { 4091, 104, 262, 310, 554, 44, 607 };
#define FX_N_PROMPT (sizeof(fx_prompt) / sizeof(fx_prompt[0]))

/* ---- fake nodes ---- */

/* The call kept for the test to answer; NULL for a node that left. */
static fx_call_t *fx_new_call(bt_router_t *r, fx_kind_t kind,
                              const bt_node_t *node, const char *request_id,
                              void *arg, bt_node_call_t **call_p)
{
    fixture_t *f = r->node_ops_ctx;
    fx_call_t *c;

    if (node == NULL) {
        return NULL;
    }
    assert_true(f->n_calls < FX_MAX_CALLS);
    c = &f->calls[f->n_calls++];
    memset(c, 0, sizeof(*c));
    c->kind = kind;
    snprintf(c->node, sizeof(c->node), "%s", node != NULL ? node->id : "");
    snprintf(c->request_id, sizeof(c->request_id), "%s", request_id);
    c->arg = arg;
    *call_p = (bt_node_call_t *)c;
    return c;
}

static bt_status_t fx_decode_stream(bt_router_t *r, const bt_node_t *node,
                                    const Baton__V1__DecodeRequest *rq,
                                    uint64_t timeout_ms, bt_rpc_msg_cb on_msg,
                                    bt_rpc_done_cb done, void *arg,
                                    bt_node_call_t **call_p)
{
    fx_call_t *c = fx_new_call(r, FX_DECODE, node, rq->request_id, arg, call_p);

    (void)timeout_ms;
    if (c == NULL) {
        return BT_ERR_NOT_FOUND;
    }
    c->on_msg = on_msg;
    c->stream_done = done;
    c->n_tokens = rq->n_token_ids;
    c->n_generated = rq->n_generated_ids;
    c->fork_count = rq->fork_count;
    c->fork_lease = rq->fork_lease_id;
    c->seed = rq->sampling != NULL ? rq->sampling->seed : 0;
    return BT_OK;
}

static bt_status_t fx_prefill(bt_router_t *r, const bt_node_t *node,
                              const Baton__V1__PrefillRequest *rq,
                              uint64_t timeout_ms, bt_rpc_unary_done_cb done,
                              void *arg, bt_node_call_t **call_p)
{
    fx_call_t *c = fx_new_call(r, FX_PREFILL, node, rq->request_id, arg, call_p);

    (void)timeout_ms;
    if (c == NULL) {
        return BT_ERR_NOT_FOUND;
    }
    c->unary_done = done;
    c->n_tokens = rq->n_token_ids;
    c->n_generated = rq->generated_count;
    c->prompt_logprobs = rq->prompt_logprobs;
    c->lease_id = rq->reservation != NULL ? rq->reservation->lease_id : 0;
    return BT_OK;
}

static bt_status_t fx_renew_lease(bt_router_t *r, const bt_node_t *node,
                                  const Baton__V1__RenewLeaseRequest *rq,
                                  uint64_t timeout_ms, bt_rpc_unary_done_cb done,
                                  void *arg, bt_node_call_t **call_p)
{
    fx_call_t *c = fx_new_call(r, FX_RENEW, node, rq->request_id, arg, call_p);

    (void)timeout_ms;
    if (c == NULL) {
        return BT_ERR_NOT_FOUND;
    }
    c->unary_done = done;
    c->lease_id = rq->lease_id;
    return BT_OK;
}

static void fx_cancel(bt_router_t *r, bt_node_call_t *call)
{
    fx_call_t *c = (fx_call_t *)call;

    (void)r;
    assert_false(c->ended); /* node_ops.h: safe until done ran */
    c->cancelled = true;
}

static const bt_node_ops_t fx_ops = {
    fx_decode_stream, fx_prefill, fx_renew_lease, fx_cancel,
};

static void fx_done(fx_call_t *c, bt_rpc_code_t code, const char *message)
{
    bt_rpc_result_t res = { code, bt_rpc_status_from_code(code), message };

    assert_false(c->ended);
    c->ended = true;
    if (c->kind == FX_DECODE) {
        c->stream_done(c->arg, &res);
    } else {
        c->unary_done(c->arg, &res, NULL);
    }
}

void fx_fail(fx_call_t *c, bt_rpc_code_t code, const char *message)
{
    fx_done(c, code, message);
}

void fx_reserve(fx_call_t *c, uint64_t lease_id)
{
    Baton__V1__DecodeResponse m = BATON__V1__DECODE_RESPONSE__INIT;
    Baton__V1__Reservation resv = BATON__V1__RESERVATION__INIT;
    uint32_t blocks[2] = { 1, 2 };

    resv.lease_id = lease_id;
    resv.n_block_ids = 2;
    resv.block_ids = blocks;
    m.kind_case = BATON__V1__DECODE_RESPONSE__KIND_RESERVATION;
    m.reservation = &resv;
    c->on_msg(c->arg, &m.base);
}

void fx_tokens(fx_call_t *c, const uint32_t *ids, size_t n)
{
    Baton__V1__DecodeResponse m = BATON__V1__DECODE_RESPONSE__INIT;
    Baton__V1__DecodeTokens t = BATON__V1__DECODE_TOKENS__INIT;

    /* a call delivers nothing after its end (gRPC's order) */
    assert_false(c->ended);
    t.n_token_ids = n;
    t.token_ids = (uint32_t *)ids;
    m.kind_case = BATON__V1__DECODE_RESPONSE__KIND_TOKENS;
    m.tokens = &t;
    c->on_msg(c->arg, &m.base);
}

void fx_tokens_lp(fx_call_t *c, const uint32_t *ids, size_t n)
{
    Baton__V1__DecodeResponse m = BATON__V1__DECODE_RESPONSE__INIT;
    Baton__V1__DecodeTokens t = BATON__V1__DECODE_TOKENS__INIT;
    Baton__V1__TokenLogprobs *lps = calloc(n, sizeof(*lps));
    Baton__V1__TokenLogprobs **ptrs = calloc(n, sizeof(*ptrs));
    Baton__V1__TopLogprob *tops = calloc(n, sizeof(*tops));
    Baton__V1__TopLogprob **top_ptrs = calloc(n, sizeof(*top_ptrs));

    assert_false(c->ended);
    assert_true(lps != NULL && ptrs != NULL && tops != NULL && top_ptrs != NULL);
    for (size_t i = 0; i < n; i++) {
        baton__v1__token_logprobs__init(&lps[i]);
        baton__v1__top_logprob__init(&tops[i]);
        tops[i].token_id = ids[i];
        tops[i].logprob = -(float)(i + 1) / 8;
        top_ptrs[i] = &tops[i];
        lps[i].token_id = ids[i];
        lps[i].logprob = -(float)(i + 1) / 8;
        lps[i].n_top = 1;
        lps[i].top = &top_ptrs[i];
        ptrs[i] = &lps[i];
    }
    t.n_token_ids = n;
    t.token_ids = (uint32_t *)ids;
    t.n_logprobs = n;
    t.logprobs = ptrs;
    m.kind_case = BATON__V1__DECODE_RESPONSE__KIND_TOKENS;
    m.tokens = &t;
    c->on_msg(c->arg, &m.base);
    /* the router keeps nothing of the message past its callback */
    free(top_ptrs);
    free(tops);
    free(ptrs);
    free(lps);
}

void fx_final(fx_call_t *c, Baton__V1__FinishReason finish)
{
    Baton__V1__DecodeResponse m = BATON__V1__DECODE_RESPONSE__INIT;
    Baton__V1__DecodeFinal fin = BATON__V1__DECODE_FINAL__INIT;

    fin.finish_reason = finish;
    m.kind_case = BATON__V1__DECODE_RESPONSE__KIND_FINAL;
    m.final = &fin;
    c->on_msg(c->arg, &m.base);
    fx_done(c, BT_RPC_OK, "");
}

void fx_prefill_ok(fx_call_t *c, uint32_t first_token)
{
    Baton__V1__PrefillResult pr = BATON__V1__PREFILL_RESULT__INIT;
    bt_rpc_result_t res = { BT_RPC_OK, BT_OK, "" };

    assert_false(c->ended);
    pr.first_token = first_token;
    c->ended = true;
    c->unary_done(c->arg, &res, &pr.base);
}

void fx_prefill_ok_plp(fx_call_t *c, uint32_t first_token, bool wrong)
{
    Baton__V1__PrefillResult pr = BATON__V1__PREFILL_RESULT__INIT;
    Baton__V1__TokenLogprobs lps[FX_N_PROMPT - 1], *ptrs[FX_N_PROMPT - 1];
    bt_rpc_result_t res = { BT_RPC_OK, BT_OK, "" };

    assert_false(c->ended);
    for (size_t i = 0; i + 1 < FX_N_PROMPT; i++) {
        baton__v1__token_logprobs__init(&lps[i]);
        lps[i].token_id = fx_prompt[i + 1] + (wrong && i == 1 ? 1 : 0);
        lps[i].logprob = -1.0f - (float)i;
        ptrs[i] = &lps[i];
    }
    pr.first_token = first_token;
    pr.n_prompt_logprobs = FX_N_PROMPT - 1;
    pr.prompt_logprobs = ptrs;
    c->ended = true;
    c->unary_done(c->arg, &res, &pr.base);
}

void fx_renew_ok(fx_call_t *c)
{
    Baton__V1__RenewLeaseResponse rr = BATON__V1__RENEW_LEASE_RESPONSE__INIT;
    bt_rpc_result_t res = { BT_RPC_OK, BT_OK, "" };

    assert_false(c->ended);
    rr.expiry_unix_ms = 1;
    c->ended = true;
    c->unary_done(c->arg, &res, &rr.base);
}

static bool fx_end_cancelled(fixture_t *f)
{
    bool any = false;

    for (size_t i = 0; i < f->n_calls; i++) {
        if (f->calls[i].cancelled && !f->calls[i].ended) {
            fx_done(&f->calls[i], BT_RPC_CANCELLED, "Cancelled");
            any = true;
        }
    }
    return any;
}

void fx_pump(fixture_t *f)
{
    for (int i = 0; i < 10; i++) {
        event_base_loop(f->r.base, EVLOOP_NONBLOCK);
        fx_end_cancelled(f);
    }
}

bool fx_wait(fixture_t *f, bool (*cond)(fixture_t *f, void *arg), void *arg,
             int ms)
{
    for (int i = 0; i < ms; i++) {
        fx_pump(f);
        if (cond(f, arg)) {
            return true;
        }
        usleep(1000);
    }
    return cond(f, arg);
}

fx_call_t *fx_open(fixture_t *f, fx_kind_t kind)
{
    for (size_t i = f->n_calls; i-- > 0;) {
        if (f->calls[i].kind == kind && !f->calls[i].ended &&
            !f->calls[i].cancelled) {
            return &f->calls[i];
        }
    }
    return NULL;
}

size_t fx_count(fixture_t *f, fx_kind_t kind)
{
    size_t n = 0;

    for (size_t i = 0; i < f->n_calls; i++) {
        n += f->calls[i].kind == kind;
    }
    return n;
}

typedef struct {
    const char *id;
    const char *state;
} fx_find_t;

static void fx_find_cb(void *arg, const bt_rreq_info_t *info)
{
    fx_find_t *q = arg;

    if (strcmp(info->id, q->id) == 0) {
        q->state = info->state;
    }
}

const char *fx_state(fixture_t *f, const char *id)
{
    fx_find_t q = { id, "" };

    bt_router_requests_foreach(&f->r, fx_find_cb, &q);
    return q.state;
}

/* ---- the router ---- */

static bt_node_t *fx_add_node(bt_router_t *r, const char *id, bt_node_role_t role)
{
    bt_node_hello_t hello = { id, role, "tiny", "ipv4:127.0.0.1:1", NULL, 0,
                              1000, 16, 8, 512, 3, "cpu/exact/tp1/k1",
                              NULL, NULL };
    bt_node_t *node = NULL;
    char err[256];

    assert_int_equal(bt_registry_add(r->registry, &hello, 1000, NULL, &node,
                                     err, sizeof(err)), BT_OK);
    r->node_gen[node->slot] = ++r->next_gen;
    return node;
}

void fx_set_free(fixture_t *f, bt_node_t *d, uint32_t free_blocks)
{
    bt_node_load_t load = { 0, 0, free_blocks, 0, false, false, 0, 0 };

    bt_registry_update_load(f->r.registry, d, &load, 2000);
}

static int fx_setup_with(void **state, bool fake)
{
    fixture_t *f = calloc(1, sizeof(*f));
    const char *build = getenv("BATON_BUILD_ROOT");
    bt_router_t *r;
    char cmd[512], err[256];

    assert_non_null(f);
    assert_non_null(build);
    r = &f->r;
    snprintf(f->dir, sizeof(f->dir), "/tmp/bt-rreq-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(cmd, sizeof(cmd), "%s/tools/baton-mkmodel builtin --out %s/tiny "
             ">/dev/null 2>&1", build, f->dir);
    assert_int_equal(system(cmd), 0);

    r->cfg.max_inflight = 100;
    r->cfg.max_queue = 10;
    r->cfg.queue_timeout_ms = 60000;
    r->cfg.prefill_retries = 0;
    r->cfg.decode_failovers = 0;
    r->cfg.request_timeout_ms = 60000;
    r->cfg.default_max_tokens = 16;
    r->cfg.lease_ms = 30000;
    r->weights = (bt_select_weights_t){ 1.0, 1.0, 1.0, 8.0, 0.9,
                                        { BT_DISAGG_AUTO, 256, 10.0, 2.0, 0, 0 },
                                        NULL, NULL };
    if (fake) {
        r->node_ops = &fx_ops;
        r->node_ops_ctx = f;
    }
    bt_router_requests_init(r);
    r->base = event_base_new();
    r->metrics = bt_metrics_create();
    r->registry = bt_registry_create(1024, 1000000);
    assert_non_null(r->base);
    assert_non_null(r->metrics);
    assert_non_null(r->registry);
    snprintf(cmd, sizeof(cmd), "%s/tiny", f->dir);
    assert_int_equal(bt_router_model_load(r, cmd, NULL, NULL, err, sizeof(err)),
                     BT_OK);
    bt_router_metrics_init(r);
    f->p[0] = fx_add_node(r, "p0", BT_NODE_ROLE_PREFILL);
    f->p[1] = fx_add_node(r, "p1", BT_NODE_ROLE_PREFILL);
    f->d[0] = fx_add_node(r, "d0", BT_NODE_ROLE_DECODE);
    f->d[1] = fx_add_node(r, "d1", BT_NODE_ROLE_DECODE);
    fx_set_free(f, f->d[0], 1000);
    fx_set_free(f, f->d[1], 1000);
    *state = f;
    return 0;
}

int fx_setup(void **state)
{
    return fx_setup_with(state, true);
}

int fx_setup_grpc(void **state)
{
    return fx_setup_with(state, false);
}

int fx_teardown(void **state)
{
    fixture_t *f = *state;
    char cmd[128];

    /* every request ended and was freed */
    fx_pump(f);
    assert_true(bt_list_empty(&f->r.requests));
    assert_int_equal(f->r.n_inflight, 0);
    assert_int_equal(f->r.n_queued, 0);
    for (size_t i = 0; i < f->n_calls; i++) {
        assert_true(f->calls[i].ended);
    }
    bt_router_requests_cleanup(&f->r);
    bt_router_model_free(&f->r);
    bt_registry_destroy(f->r.registry);
    bt_metrics_destroy(f->r.metrics);
    event_base_free(f->r.base);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

static bt_status_t fx_start_with(fixture_t *f, fx_rec_t *rec, int max_tokens,
                                 bool echo, char *err, size_t err_size)
{
    Baton__V1__SamplingParams sp = BATON__V1__SAMPLING_PARAMS__INIT;
    bt_rreq_params_t p;

    memset(&p, 0, sizeof(p));
    sp.max_tokens = max_tokens;
    p.prompt = fx_prompt;
    p.n_prompt = FX_N_PROMPT;
    p.sampling = &sp;
    p.prompt_logprobs = echo;
    return bt_rreq_start(&f->r, &p, &fx_sink, rec, &rec->req, err, err_size);
}

bt_status_t fx_start(fixture_t *f, fx_rec_t *rec, int max_tokens,
                     char *err, size_t err_size)
{
    return fx_start_with(f, rec, max_tokens, false, err, err_size);
}

bt_status_t fx_start_echo(fixture_t *f, fx_rec_t *rec, int max_tokens,
                          char *err, size_t err_size)
{
    return fx_start_with(f, rec, max_tokens, true, err, err_size);
}

bt_status_t fx_start_sp(fixture_t *f, fx_rec_t *rec,
                        const Baton__V1__SamplingParams *sp, char *err,
                        size_t err_size)
{
    bt_rreq_params_t p;

    memset(&p, 0, sizeof(p));
    p.prompt = fx_prompt;
    p.n_prompt = FX_N_PROMPT;
    p.sampling = sp;
    return bt_rreq_start(&f->r, &p, &fx_sink, rec, &rec->req, err, err_size);
}

bt_status_t fx_start_fork(fixture_t *f, fx_rec_t *rec, const bt_rreq_t *from,
                          uint64_t seed, char *err, size_t err_size)
{
    Baton__V1__SamplingParams sp = BATON__V1__SAMPLING_PARAMS__INIT;
    bt_rreq_params_t p;

    memset(&p, 0, sizeof(p));
    sp.seed_opt_case = BATON__V1__SAMPLING_PARAMS__SEED_OPT_SEED;
    sp.seed = seed;
    p.prompt = fx_prompt;
    p.n_prompt = FX_N_PROMPT;
    p.sampling = &sp;
    p.fork_from = from;
    return bt_rreq_start(&f->r, &p, &fx_sink, rec, &rec->req, err, err_size);
}
