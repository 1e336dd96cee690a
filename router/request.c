/* The request object and its state machine; see request.h and DESIGN §2.
 *
 *   bt_rreq_start
 *    │
 *    ▼      no room                  RESOURCE_EXHAUSTED, or a failover
 *   NEW ─────────────▶ QUEUED ◀───── with no token sent yet (from
 *    │                   │           RESERVING or PREFILLING)
 *    │ placed            │ placed by a kick
 *    ▼                   ▼
 *   RESERVING ◀──────────┴────────── failover: another decode node (from
 *    │                               RESERVING, PREFILLING or DECODING)
 *    │ the reservation
 *    ▼
 *   PREFILLING ◀──── retry on another prefill node
 *    │
 *    │ the prefill's answer (the first token)
 *    ▼
 *   DECODING
 *
 *   any state but NEW ──▶ DONE: the end (the final message, a stop
 *   string, an error, a cancel, the queue timeout); on_end runs once.
 *   NEW ──▶ DONE: refused at admission (never counted, no on_end).
 *
 * bt_rreq_set_state is the only writer of req->state: it links the
 * request into r->requests on admission (n_inflight), into r->queue while
 * QUEUED (n_queued, queue_epoch), keeps the gauges, and aborts on an edge
 * not drawn here. */
#include "request_priv.h"

#include "base/clock.h"
#include "base/log.h"

#include <assert.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const bt_rreq_state_names[] = {
    "new", "queued", "reserving", "prefilling", "decoding", "done",
};

/* allowed[from] has bit `to` set for each edge of the diagram */
static const unsigned bt_rreq_edges[] = {
    [BT_RREQ_NEW] = 1u << BT_RREQ_QUEUED | 1u << BT_RREQ_RESERVING |
                    1u << BT_RREQ_DONE,
    [BT_RREQ_QUEUED] = 1u << BT_RREQ_RESERVING | 1u << BT_RREQ_DONE,
    [BT_RREQ_RESERVING] = 1u << BT_RREQ_QUEUED | 1u << BT_RREQ_RESERVING |
                          1u << BT_RREQ_PREFILLING | 1u << BT_RREQ_DONE,
    [BT_RREQ_PREFILLING] = 1u << BT_RREQ_QUEUED | 1u << BT_RREQ_RESERVING |
                           1u << BT_RREQ_PREFILLING | 1u << BT_RREQ_DECODING |
                           1u << BT_RREQ_DONE,
    [BT_RREQ_DECODING] = 1u << BT_RREQ_RESERVING | 1u << BT_RREQ_DONE,
    [BT_RREQ_DONE] = 0,
};

void bt_rreq_set_state(bt_rreq_t *req, bt_rreq_state_t to)
{
    bt_router_t *r = req->r;
    bt_rreq_state_t from = req->state;

    assert((bt_rreq_edges[from] >> to) & 1u);
    if (from == BT_RREQ_NEW && to != BT_RREQ_DONE) {
        /* admitted: newest first in r->requests (ListRequests' order) */
        bt_list_add_head(&r->requests, &req->link);
        r->n_inflight++;
        bt_gauge_set(r->m.inflight, (double)r->n_inflight);
    }
    if (from == BT_RREQ_QUEUED) {
        bt_rreq_queue_unlink(req);
    }
    req->state = to;
    if (to == BT_RREQ_QUEUED) {
        bt_rreq_queue_link(req);
    }
    if (to == BT_RREQ_DONE && from != BT_RREQ_NEW) {
        assert(r->n_inflight > 0);
        bt_list_del(&req->link);
        r->n_inflight--;
        bt_gauge_set(r->m.inflight, (double)r->n_inflight);
    }
}

void bt_router_requests_init(bt_router_t *r)
{
    bt_list_init(&r->requests);
    bt_list_init(&r->queue);
    if (r->node_ops == NULL) {
        r->node_ops = &bt_node_ops_grpc;
    }
}

void bt_rreq_call_cancel(bt_rreq_t *req, bt_node_call_t *call)
{
    req->r->node_ops->cancel(req->r, call);
}

const char *bt_rreq_id(const bt_rreq_t *req)
{
    return req->id;
}

bool bt_sampling_wants_logprobs(const Baton__V1__SamplingParams *sp)
{
    return sp != NULL && (sp->logprobs > 0 || sp->logprobs_chosen);
}

bt_node_t *bt_rreq_node(bt_rreq_t *req, unsigned slot, uint64_t gen)
{
    bt_node_t *node = bt_registry_slot(req->r->registry, slot);

    return node != NULL && gen != 0 && req->r->node_gen[slot] == gen ? node : NULL;
}

void bt_rreq_release_nodes(bt_rreq_t *req)
{
    if (req->d_pending) {
        bt_select_resv_dropped(bt_rreq_node(req, req->d_slot, req->d_gen),
                               req->d_blocks);
        req->d_pending = false;
    }
    if (req->assigned) {
        bt_select_release(bt_rreq_node(req, req->p_slot, req->p_gen),
                          bt_rreq_node(req, req->d_slot, req->d_gen),
                          req->p_assigned_tokens);
        req->assigned = false;
    }
}

void bt_rreq_maybe_free(bt_rreq_t *req)
{
    if (!bt_rreq_ended(req) || req->pending_cbs > 0) {
        return;
    }
    if (req->queue_ev != NULL) {
        event_free(req->queue_ev);
    }
    if (req->go_ev != NULL) {
        event_free(req->go_ev);
    }
    if (req->renew_ev != NULL) {
        event_free(req->renew_ev);
    }
    if (req->sampling != NULL) {
        baton__v1__sampling_params__free_unpacked(req->sampling, NULL);
    }
    if (req->resv != NULL) {
        baton__v1__reservation__free_unpacked(req->resv, NULL);
    }
    bt_tok_stream_destroy(req->detok);
    bt_stopstr_destroy(req->stops);
    bt_buf_cleanup(&req->text);
    free(req->prompt);
    free(req->gen);
    free(req);
}

void bt_rreq_end(bt_rreq_t *req, bt_status_t status, const char *msg,
                        Baton__V1__FinishReason finish)
{
    bt_router_t *r = req->r;
    Baton__V1__Usage usage = BATON__V1__USAGE__INIT;

    if (bt_rreq_ended(req)) {
        return;
    }
    if (status == BT_OK && !req->stopped) {
        bt_rreq_flush(req);
    }
    bt_rreq_set_state(req, BT_RREQ_DONE);
    bt_rreq_release_nodes(req);
    bt_rreq_renew_stop(req);
    if (req->queue_ev != NULL) {
        event_del(req->queue_ev);
    }
    if (req->go_ev != NULL) {
        event_del(req->go_ev);
    }

    usage.prompt_tokens = (uint32_t)req->n_prompt;
    usage.completion_tokens = (uint32_t)req->n_gen;
    usage.cached_tokens = req->cached_tokens;
    if (status == BT_OK) {
        bt_counter_inc(r->m.requests_ok);
        bt_counter_add(r->m.prompt_tokens, (double)req->n_prompt);
        bt_counter_add(r->m.cached_tokens, (double)req->cached_tokens);
        bt_histogram_observe(r->m.e2e, bt_elapsed_s(req->created_ns, bt_now_ns()));
        BT_LOG_REQ(INFO, req->id, "done: prompt %zu generated %zu cached %u finish %d",
                   req->n_prompt, req->n_gen, req->cached_tokens, (int)finish);
    } else {
        bt_counter_inc(r->m.requests_failed);
        BT_LOG_REQ(WARN, req->id, "failed after %zu tokens: %s (%s)", req->n_gen,
                   msg ? msg : "", bt_status_str(status));
    }
    req->sink->on_end(req, req->sink_arg, status, msg ? msg : bt_status_str(status),
                      status == BT_OK ? finish :
                      status == BT_ERR_CANCELLED ?
                          BATON__V1__FINISH_REASON__FINISH_REASON_CANCELLED :
                          BATON__V1__FINISH_REASON__FINISH_REASON_ERROR,
                      &usage);
    /* stop the nodes: cancelling the decode stream frees the lease */
    if (req->d_call != NULL) {
        bt_rreq_call_cancel(req, req->d_call);
    }
    if (req->p_call != NULL) {
        bt_rreq_call_cancel(req, req->p_call);
    }
    bt_rreq_maybe_free(req);
    bt_router_queue_kick(r);
}

/* ---- start, cancel, admin ---- */

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
    req->sampling = bt_rreq_copy_sampling(p->sampling);
    if (req->prompt == NULL || req->sampling == NULL) {
        s = BT_ERR_NO_MEMORY;
        goto err_free;
    }
    memcpy(req->prompt, p->prompt, p->n_prompt * sizeof(uint32_t));
    req->n_prompt = p->n_prompt;

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
    if (req->queue_ev == NULL || req->go_ev == NULL || req->renew_ev == NULL) {
        s = BT_ERR_NO_MEMORY;
        goto err_free;
    }

    /* placed now, queued, or refused here: nothing reaches the sink
     * before this function returns (request.h); admission (NEW to QUEUED
     * or RESERVING) counts it in flight */
    s = bt_rreq_admit(req, err, err_size);
    if (s != BT_OK) {
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

void bt_rreq_cancel(bt_rreq_t *req, const char *why)
{
    if (bt_rreq_ended(req)) {
        return;
    }
    BT_LOG_REQ(INFO, req->id, "cancelled: %s", why);
    bt_rreq_end(req, BT_ERR_CANCELLED, why,
                BATON__V1__FINISH_REASON__FINISH_REASON_CANCELLED);
}

void bt_router_requests_node_gone(bt_router_t *r, bt_node_t *node,
                                  const char *why)
{
    uint64_t gen = r->node_gen[node->slot];
    bt_list_t *it, *next;

    bt_list_foreach_safe(it, next, &r->requests) {
        bt_rreq_t *req = BT_CONTAINER_OF(it, bt_rreq_t, link);

        /* cancelling the calls makes their callbacks retry or fail over;
         * they tell why instead of the bare CANCELLED they get */
        if (req->d_slot == node->slot && req->d_gen == gen && req->d_call != NULL) {
            snprintf(req->d_gone_why, sizeof(req->d_gone_why),
                     "decode node %s %s", node->id, why);
            bt_rreq_call_cancel(req, req->d_call);
        }
        if (req->p_slot == node->slot && req->p_gen == gen && req->p_call != NULL) {
            snprintf(req->p_gone_why, sizeof(req->p_gone_why),
                     "prefill node %s %s", node->id, why);
            bt_rreq_call_cancel(req, req->p_call);
        }
    }
}

bt_status_t bt_router_request_cancel_by_id(bt_router_t *r, const char *id)
{
    bt_list_t *it, *next;

    bt_list_foreach_safe(it, next, &r->requests) {
        bt_rreq_t *req = BT_CONTAINER_OF(it, bt_rreq_t, link);

        if (strcmp(req->id, id) == 0) {
            bt_rreq_cancel(req, "cancelled by an operator");
            return BT_OK;
        }
    }
    return BT_ERR_NOT_FOUND;
}

void bt_router_requests_foreach(bt_router_t *r,
                                void (*cb)(void *arg, const bt_rreq_info_t *info),
                                void *arg)
{
    uint64_t now = bt_now_ns();
    bt_list_t *it, *next;

    bt_list_foreach_safe(it, next, &r->requests) {
        const bt_rreq_t *req = BT_CONTAINER_OF(it, bt_rreq_t, link);
        bt_rreq_info_t info;

        info.id = req->id;
        info.state = bt_rreq_state_names[req->state];
        info.prefill_node = req->p_id;
        info.decode_node = req->d_id;
        info.prompt_tokens = (uint32_t)req->n_prompt;
        info.generated_tokens = (uint32_t)req->n_gen;
        info.age_ms = (now - req->created_ns) / 1000000u;
        info.tenant = req->tenant;
        info.lease_id = req->resv != NULL ? req->resv->lease_id : 0;
        info.lease_blocks = req->resv != NULL ? (uint32_t)req->resv->n_block_ids : 0;
        info.lease_expiry_unix_ms = req->resv != NULL ? req->resv->expiry_unix_ms : 0;
        cb(arg, &info);
    }
}
