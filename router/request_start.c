/* bt_rreq_start: a request's parameters checked and copied, its events
 * made, and its admission (placed now, queued, or refused). See request.h
 * for the contract. */
#include "request_priv.h"

#include "base/clock.h"
#include "base/log.h"

#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void bt_rreq_make_id(char *out, size_t size)
{
    uint8_t rnd[12];
    size_t i;
    static const char hex[] = "0123456789abcdef";

    if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
        uint64_t t = bt_now_ns();

        memcpy(rnd, &t, sizeof(t));
    }
    snprintf(out, size, "req-");
    for (i = 0; i < sizeof(rnd) && 4 + 2 * i + 2 < size; i++) {
        out[4 + 2 * i] = hex[rnd[i] >> 4];
        out[4 + 2 * i + 1] = hex[rnd[i] & 15];
    }
    out[4 + 2 * i] = '\0';
}

static bool bt_rreq_id_valid(const char *id)
{
    size_t n = 0;

    for (; *id != '\0'; id++, n++) {
        char c = *id;

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.')) {
            return false;
        }
    }
    return n >= 1 && n <= BT_RREQ_ID_MAX;
}

static Baton__V1__SamplingParams *bt_rreq_copy_sampling(
    const Baton__V1__SamplingParams *in)
{
    Baton__V1__SamplingParams def = BATON__V1__SAMPLING_PARAMS__INIT;
    size_t len;
    uint8_t *buf;
    Baton__V1__SamplingParams *out;

    if (in == NULL) {
        in = &def;
    }
    len = baton__v1__sampling_params__get_packed_size(in);
    buf = malloc(len ? len : 1);
    if (buf == NULL) {
        return NULL;
    }
    baton__v1__sampling_params__pack(in, buf);
    out = baton__v1__sampling_params__unpack(NULL, len, buf);
    free(buf);
    return out;
}

bt_status_t bt_rreq_start(bt_router_t *r, const bt_rreq_params_t *p,
                          const bt_rreq_sink_t *sink, void *sink_arg,
                          bt_rreq_t **req_p, char *err, size_t err_size)
{
    bt_rreq_t *req;
    uint32_t max_ctx = bt_router_model_max_context(r);
    bt_status_t s;

    if (r->draining) {
        snprintf(err, err_size, "the router is shutting down");
        return BT_ERR_SHUTDOWN;
    }
    if (p->request_id != NULL && p->request_id[0] != '\0' &&
        !bt_rreq_id_valid(p->request_id)) {
        snprintf(err, err_size, "request id must be 1 to %d letters, digits, "
                 "'-', '_' or '.'", BT_RREQ_ID_MAX);
        return BT_ERR_INVALID_ARG;
    }
    if (p->n_prompt == 0) {
        snprintf(err, err_size, "the prompt is empty");
        return BT_ERR_INVALID_ARG;
    }
    if (p->n_prompt >= max_ctx) {
        snprintf(err, err_size, "the prompt has %zu tokens; the model's context "
                 "is %u tokens", p->n_prompt, max_ctx);
        return BT_ERR_INVALID_ARG;
    }
    if (p->salt_len > sizeof(req->salt)) {
        snprintf(err, err_size, "tenant salt over %zu bytes", sizeof(req->salt));
        return BT_ERR_INVALID_ARG;
    }
    if (r->n_inflight >= (size_t)r->cfg.max_inflight) {
        bt_counter_inc(r->m.requests_rejected);
        snprintf(err, err_size, "the router is at its limit of %lld requests in "
                 "flight; retry later", (long long)r->cfg.max_inflight);
        return BT_ERR_EXHAUSTED;
    }

    req = calloc(1, sizeof(*req));
    if (req == NULL) {
        return BT_ERR_NO_MEMORY;
    }
    req->r = r;
    bt_list_init(&req->link);
    bt_list_init(&req->qlink);
    req->sink = sink;
    req->sink_arg = sink_arg;
    req->created_ns = bt_now_ns();
    req->deadline_ms = bt_now_ms() + (uint64_t)r->cfg.request_timeout_ms;
    bt_buf_init(&req->text, 1 << 20);
    if (p->request_id != NULL && p->request_id[0] != '\0') {
        snprintf(req->id, sizeof(req->id), "%s", p->request_id);
    } else {
        bt_rreq_make_id(req->id, sizeof(req->id));
    }
    snprintf(req->tenant, sizeof(req->tenant), "%s", p->tenant ? p->tenant : "");
    if (p->salt_len > 0) {
        memcpy(req->salt, p->salt, p->salt_len);
    }
    req->salt_len = p->salt_len;
    req->prompt = malloc(p->n_prompt * sizeof(uint32_t));
    /* a forked choice runs under its leader's parameters, its seed apart */
    req->sampling = bt_rreq_copy_sampling(p->fork_from != NULL
                                          ? p->fork_from->sampling : p->sampling);
    if (req->prompt == NULL || req->sampling == NULL) {
        s = BT_ERR_NO_MEMORY;
        goto err_free;
    }
    memcpy(req->prompt, p->prompt, p->n_prompt * sizeof(uint32_t));
    req->n_prompt = p->n_prompt;
    req->plp_want = p->prompt_logprobs && p->fork_from == NULL;
    if (p->fork_from != NULL && p->sampling != NULL) {
        req->sampling->seed_opt_case = BATON__V1__SAMPLING_PARAMS__SEED_OPT_SEED;
        req->sampling->seed = p->sampling->seed;
    }

    /* the router decides what "default" means, once, so that a failover
     * continues under the same parameters */
    if (req->sampling->max_tokens <= 0) {
        uint64_t room = max_ctx - p->n_prompt;

        req->sampling->max_tokens = (int32_t)(room < (uint64_t)r->cfg.default_max_tokens ?
                                              room : (uint64_t)r->cfg.default_max_tokens);
    } else if ((uint64_t)p->n_prompt + (uint64_t)req->sampling->max_tokens > max_ctx) {
        snprintf(err, err_size, "the prompt (%zu tokens) plus max_tokens (%d) "
                 "exceeds the model's context of %u tokens", p->n_prompt,
                 req->sampling->max_tokens, max_ctx);
        s = BT_ERR_INVALID_ARG;
        goto err_free;
    }
    if (req->sampling->seed_opt_case != BATON__V1__SAMPLING_PARAMS__SEED_OPT_SEED) {
        uint64_t seed = 0;

        RAND_bytes((unsigned char *)&seed, sizeof(seed));
        req->sampling->seed_opt_case = BATON__V1__SAMPLING_PARAMS__SEED_OPT_SEED;
        req->sampling->seed = seed;
    }
    s = bt_router_model_check_tokens(r, req->prompt, req->n_prompt, err, err_size);
    if (s != BT_OK) {
        goto err_free;
    }
    s = bt_router_model_detok(r, &req->detok);
    if (s == BT_OK && req->sampling->n_stop > 0) {
        s = bt_stopstr_create((const char *const *)req->sampling->stop,
                              (uint32_t)req->sampling->n_stop, &req->stops);
        if (s != BT_OK) {
            snprintf(err, err_size, "invalid stop strings (at most %d of 1 to %d bytes)",
                     BT_STOPSTR_MAX, BT_STOPSTR_MAX_LEN);
            /* the client's input, not a resource of ours */
            s = s == BT_ERR_NO_MEMORY ? s : BT_ERR_INVALID_ARG;
        }
    }
    if (s != BT_OK) {
        goto err_free;
    }
    req->queue_ev = evtimer_new(r->base, bt_rreq_queue_timeout_cb, req);
    req->go_ev = event_new(r->base, -1, 0, bt_rreq_go_cb, req);
    req->renew_ev = event_new(r->base, -1, EV_PERSIST, bt_rreq_renew_cb, req);
    req->usage_ev = evtimer_new(r->base, bt_rreq_usage_wait_cb, req);
    if (req->queue_ev == NULL || req->go_ev == NULL || req->renew_ev == NULL ||
        req->usage_ev == NULL) {
        s = BT_ERR_NO_MEMORY;
        goto err_free;
    }

    /* placed now, queued, or refused here: nothing reaches the sink
     * before this function returns (request.h); admission (NEW to QUEUED
     * or RESERVING) counts it in flight */
    req->trace = bt_trace_begin(r->traces, req->id);
    BT_RREQ_TRACE(req, "admitted", "tenant %s, prompt %zu tokens, max_tokens %d",
                  req->tenant[0] ? req->tenant : "-", req->n_prompt,
                  req->sampling->max_tokens);
    s = p->fork_from != NULL ? bt_rreq_fork_admit(req, p->fork_from, err, err_size)
                             : bt_rreq_admit(req, err, err_size);
    if (s != BT_OK) {
        BT_RREQ_TRACE(req, "end", "refused: %s (%s)", err, bt_status_str(s));
        if (s == BT_ERR_EXHAUSTED || s == BT_ERR_PEER_UNREACHABLE ||
            s == BT_ERR_SHUTDOWN) {
            bt_counter_inc(r->m.requests_rejected);
        }
        BT_LOG_REQ(INFO, req->id, "refused: %s", err);
        goto err_free;
    }
    BT_LOG_REQ(INFO, req->id, "admitted: tenant %s prompt %zu tokens max_tokens %d%s",
               req->tenant[0] ? req->tenant : "-", req->n_prompt,
               req->sampling->max_tokens,
               req->state == BT_RREQ_QUEUED ? ", waiting for a decode node with room" : "");
    *req_p = req;
    return BT_OK;

err_free:
    bt_rreq_set_state(req, BT_RREQ_DONE); /* from NEW: never admitted */
    bt_rreq_maybe_free(req);
    return s;
}
