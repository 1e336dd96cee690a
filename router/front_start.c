/* What both front ends share to start a request: the checks that need
 * no tokenizer, the prompt (text, chat or ids) to token ids, and
 * bt_rreq_start. bt_front_start_async tokenizes on the router's worker
 * pool (--threads) and starts the request when the loop thread gets the
 * ids back; the request's state stays the loop thread's alone. */
#include "front.h"
#include "model.h"
#include "request.h"
#include "response_format.h"

#include "base/tpool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Turns the request's input into token ids. */
static bt_status_t bt_front_tokens(bt_router_t *r,
                                   const Baton__V1__GenerateRequest *in,
                                   bt_tok_ids_t *ids, char *err, size_t err_size)
{
    switch (in->input_case) {
    case BATON__V1__GENERATE_REQUEST__INPUT_PROMPT:
        if (in->prompt == NULL || in->prompt[0] == '\0') {
            snprintf(err, err_size, "the prompt is empty");
            return BT_ERR_INVALID_ARG;
        }
        return bt_router_model_encode(r, in->prompt, strlen(in->prompt), ids, err,
                                      err_size);
    case BATON__V1__GENERATE_REQUEST__INPUT_CHAT:
        if (in->chat == NULL || in->chat->n_messages == 0) {
            snprintf(err, err_size, "the chat has no messages");
            return BT_ERR_INVALID_ARG;
        }
        return bt_router_model_encode_chat(r, in->chat, ids, err, err_size);
    case BATON__V1__GENERATE_REQUEST__INPUT_TOKENS: {
        size_t i;

        if (in->tokens == NULL || in->tokens->n_ids == 0) {
            snprintf(err, err_size, "the prompt is empty");
            return BT_ERR_INVALID_ARG;
        }
        for (i = 0; i < in->tokens->n_ids; i++) {
            bt_status_t s = bt_tok_ids_push(ids, (int32_t)in->tokens->ids[i]);

            if (s != BT_OK) {
                snprintf(err, err_size, "the prompt has more than %zu tokens", ids->max);
                return BT_ERR_INVALID_ARG;
            }
        }
        return BT_OK;
    }
    default:
        snprintf(err, err_size, "set one of prompt, chat or tokens");
        return BT_ERR_INVALID_ARG;
    }
}

bt_status_t bt_front_check_sampling(const Baton__V1__SamplingParams *sp,
                                    char *err, size_t err_size)
{
    if (sp == NULL) {
        return BT_OK;
    }
#define BT_CHECK(_cond, ...) \
    do { \
        if (!(_cond)) { \
            snprintf(err, err_size, __VA_ARGS__); \
            return BT_ERR_INVALID_ARG; \
        } \
    } while (0)
    BT_CHECK(sp->max_tokens >= 0, "max_tokens must be at least 1 (0 = the default)");
    BT_CHECK(sp->temperature >= 0 && sp->temperature <= 100, "temperature must be in [0, 100]");
    BT_CHECK(sp->top_p >= 0 && sp->top_p <= 1, "top_p must be in (0, 1]");
    BT_CHECK(sp->top_k >= 0, "top_k must be >= 0");
    BT_CHECK(sp->min_p >= 0 && sp->min_p <= 1, "min_p must be in [0, 1]");
    BT_CHECK(sp->presence_penalty >= -2 && sp->presence_penalty <= 2,
             "presence_penalty must be in [-2, 2]");
    BT_CHECK(sp->frequency_penalty >= -2 && sp->frequency_penalty <= 2,
             "frequency_penalty must be in [-2, 2]");
    BT_CHECK(sp->repetition_penalty >= 0 && sp->repetition_penalty <= 10,
             "repetition_penalty must be in (0, 10]");
    BT_CHECK(sp->logprobs >= 0 && sp->logprobs <= BT_SAMPLE_MAX_LOGPROBS,
             "logprobs must be in [0, %d]", BT_SAMPLE_MAX_LOGPROBS);
    BT_CHECK(sp->n_stop <= BT_STOPSTR_MAX, "at most %d stop strings", BT_STOPSTR_MAX);
    BT_CHECK(sp->n_stop_token_ids <= BT_SAMPLE_MAX_STOP_IDS - 1,
             "at most %d stop token ids", BT_SAMPLE_MAX_STOP_IDS - 1);
#undef BT_CHECK
    return BT_OK;
}

/* What needs no tokenizer: the model's name, sampling, stop ids, bias. */
static bt_status_t bt_front_check(bt_router_t *r,
                                  const Baton__V1__GenerateRequest *in,
                                  char *err, size_t err_size)
{
    bt_status_t s;

    if (in->model == NULL || strcmp(in->model, bt_router_model_name(r)) != 0) {
        snprintf(err, err_size, "the model '%s' does not exist; this router serves '%s'",
                 in->model ? in->model : "", bt_router_model_name(r));
        return BT_ERR_NOT_FOUND;
    }
    s = bt_front_check_sampling(in->sampling, err, err_size);
    if (s == BT_OK && in->sampling != NULL) {
        s = bt_response_format_check(in->sampling->response_format, err, err_size,
                                     in->sampling->ignore_eos);
    }
    if (s != BT_OK) {
        return s;
    }
    for (size_t i = 0; in->sampling != NULL && i < in->sampling->n_stop_token_ids; i++) {
        uint32_t id = in->sampling->stop_token_ids[i];

        if (id >= (uint32_t)bt_router_model_vocab_size(r)) {
            snprintf(err, err_size, "stop_token_ids[%zu] = %u is outside the "
                     "vocabulary of %d", i, id, bt_router_model_vocab_size(r));
            return BT_ERR_INVALID_ARG;
        }
    }
    return bt_front_check_bias(in->sampling, (uint32_t)bt_router_model_vocab_size(r),
                               err, err_size);
}

/* The prompt tokenized: the request's parameters to bt_rreq_start. */
static bt_status_t bt_front_begin(bt_router_t *r,
                                  const Baton__V1__GenerateRequest *in,
                                  const bt_front_auth_t *auth,
                                  const bt_tok_ids_t *ids,
                                  const bt_rreq_sink_t *sink, void *sink_arg,
                                  bt_rreq_t **req_p, char *err, size_t err_size)
{
    Baton__V1__SamplingParams def = BATON__V1__SAMPLING_PARAMS__INIT;
    Baton__V1__SamplingParams sampling;
    bt_rreq_params_t p;

    sampling = in->sampling ? *in->sampling : def;
    /* proto zero values that mean "off" */
    if (sampling.top_p == 0) {
        sampling.top_p = 1;
    }
    if (sampling.repetition_penalty == 0) {
        sampling.repetition_penalty = 1;
    }
    memset(&p, 0, sizeof(p));
    p.request_id = in->request_id;
    p.tenant = auth ? auth->tenant : NULL;
    p.salt = auth ? auth->salt : NULL;
    p.salt_len = auth ? auth->salt_len : 0;
    p.prompt = (const uint32_t *)ids->ids;
    p.n_prompt = ids->n;
    p.sampling = &sampling;
    p.prompt_logprobs = in->echo && bt_sampling_wants_logprobs(in->sampling);
    return bt_rreq_start(r, &p, sink, sink_arg, req_p, err, err_size);
}

bt_status_t bt_front_start(bt_router_t *r, const Baton__V1__GenerateRequest *in,
                           const bt_front_auth_t *auth, const bt_rreq_sink_t *sink,
                           void *sink_arg, bt_rreq_t **req_p, char *err,
                           size_t err_size)
{
    bt_tok_ids_t ids;
    bt_status_t s;

    s = bt_front_check(r, in, err, err_size);
    if (s != BT_OK) {
        return s;
    }
    bt_tok_ids_init(&ids, bt_router_model_max_context(r));
    s = bt_front_tokens(r, in, &ids, err, err_size);
    if (s == BT_OK) {
        s = bt_front_begin(r, in, auth, &ids, sink, sink_arg, req_p, err, err_size);
    } else if (s == BT_ERR_TOO_LARGE) {
        s = BT_ERR_INVALID_ARG;
    }
    bt_tok_ids_cleanup(&ids);
    return s;
}

/* A request whose prompt a worker tokenizes. The worker reads `packed`
 * and writes `in`, `ids`, `status` and `err`; the loop thread reads them
 * only in bt_front_job_done, after the pool handed the job back, and the
 * loop thread alone touches `cancelled` and the router. */
struct bt_front_job {
    bt_router_t                 *r;
    uint8_t                     *packed;   /* the request, protobuf */
    size_t                       packed_len;
    Baton__V1__GenerateRequest  *in;       /* unpacked by the worker */
    bt_tok_ids_t                 ids;
    bt_status_t                  status;
    char                         err[512];
    bt_front_auth_t              auth;
    const bt_rreq_sink_t        *sink;
    void                        *sink_arg;
    bt_front_started_cb          started;
    void                        *started_arg;
    bool                         cancelled;
};

static void bt_front_job_free(bt_front_job_t *job)
{
    if (job->in != NULL) {
        baton__v1__generate_request__free_unpacked(job->in, NULL);
    }
    bt_tok_ids_cleanup(&job->ids);
    free(job->packed);
    free(job);
}

/* worker thread: the tokenizer and the chat templates are immutable once
 * loaded (tokenizer.h), so workers share them without locks */
static void bt_front_job_work(void *arg)
{
    bt_front_job_t *job = arg;

    job->in = baton__v1__generate_request__unpack(NULL, job->packed_len,
                                                   job->packed);
    if (job->in == NULL) {
        snprintf(job->err, sizeof(job->err), "out of memory");
        job->status = BT_ERR_NO_MEMORY;
        return;
    }
    job->status = bt_front_tokens(job->r, job->in, &job->ids, job->err,
                                  sizeof(job->err));
    if (job->status == BT_ERR_TOO_LARGE) {
        job->status = BT_ERR_INVALID_ARG;
    }
}

/* loop thread */
static void bt_front_job_done(void *arg, bt_status_t pool_status)
{
    bt_front_job_t *job = arg;
    bt_router_t *r = job->r;
    bt_rreq_t *req = NULL;
    bt_status_t s = job->status;

    r->n_encoding--;
    bt_gauge_set(r->m.tokenizing, (double)r->n_encoding);
    if (job->cancelled) {
        bt_front_job_free(job);
        return;
    }
    if (pool_status != BT_OK) {
        s = pool_status;
        snprintf(job->err, sizeof(job->err), "the router is shutting down");
    } else if (s == BT_OK) {
        s = bt_front_begin(r, job->in, &job->auth, &job->ids, job->sink,
                           job->sink_arg, &req, job->err, sizeof(job->err));
    }
    job->started(job->started_arg, s, req, job->err, job->in);
    bt_front_job_free(job);
}

bt_status_t bt_front_start_async(bt_router_t *r,
                                 const Baton__V1__GenerateRequest *in,
                                 const bt_front_auth_t *auth,
                                 const bt_rreq_sink_t *sink, void *sink_arg,
                                 bt_front_started_cb started, void *started_arg,
                                 bt_front_job_t **job_p, bt_rreq_t **req_p,
                                 char *err, size_t err_size)
{
    bt_front_job_t *job;
    bt_status_t s;

    /* token ids need no tokenizer: the round trip would cost more */
    if (r->encode_pool == NULL ||
        in->input_case == BATON__V1__GENERATE_REQUEST__INPUT_TOKENS) {
        return bt_front_start(r, in, auth, sink, sink_arg, req_p, err, err_size);
    }
    s = bt_front_check(r, in, err, err_size);
    if (s != BT_OK) {
        return s;
    }
    job = calloc(1, sizeof(*job));
    if (job == NULL) {
        snprintf(err, err_size, "out of memory");
        return BT_ERR_NO_MEMORY;
    }
    job->r = r;
    job->packed_len = baton__v1__generate_request__get_packed_size(in);
    job->packed = malloc(job->packed_len ? job->packed_len : 1);
    if (job->packed == NULL) {
        free(job);
        snprintf(err, err_size, "out of memory");
        return BT_ERR_NO_MEMORY;
    }
    baton__v1__generate_request__pack(in, job->packed);
    bt_tok_ids_init(&job->ids, bt_router_model_max_context(r));
    if (auth != NULL) {
        job->auth = *auth;
    }
    job->sink = sink;
    job->sink_arg = sink_arg;
    job->started = started;
    job->started_arg = started_arg;
    s = bt_tpool_submit(r->encode_pool, bt_front_job_work, bt_front_job_done, job);
    if (s != BT_OK) {
        bt_front_job_free(job);
        snprintf(err, err_size, s == BT_ERR_EXHAUSTED ? "the router's tokenizer "
                 "queue is full; retry later" : "the router is shutting down");
        return s;
    }
    r->n_encoding++;
    bt_gauge_set(r->m.tokenizing, (double)r->n_encoding);
    *job_p = job;
    return BT_IN_PROGRESS;
}

void bt_front_job_cancel(bt_front_job_t *job)
{
    if (job != NULL) {
        job->cancelled = true;
    }
}
