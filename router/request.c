/* The life of a request in the router; see request.h and DESIGN §2. */
#include "request.h"

#include "base/clock.h"
#include "base/log.h"
#include "model.h"

#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum {
    BT_RREQ_QUEUED,      /* waiting for a node with room */
    BT_RREQ_RESERVING,   /* DecodeStream open, waiting for the reservation */
    BT_RREQ_PREFILLING,  /* Prefill in flight */
    BT_RREQ_DECODING,    /* the decode node generates */
    BT_RREQ_DONE,
} bt_rreq_state_t;

static const char *const bt_rreq_state_names[] = {
    "queued", "reserving", "prefilling", "decoding", "done",
};

struct bt_rreq {
    bt_rreq_t                 *next;
    bt_rreq_t                 *prev;
    bt_rreq_t                 *qnext;            /* the wait queue, oldest first */
    bt_rreq_t                 *qprev;
    bt_router_t               *r;
    char                       id[BT_RREQ_ID_MAX + 1];
    bt_rreq_state_t            state;
    uint64_t                   created_ns;
    uint64_t                   first_token_ns;
    uint64_t                   last_token_ns;
    uint64_t                   deadline_ms;       /* monotonic */

    uint32_t                  *prompt;
    size_t                     n_prompt;
    uint32_t                  *gen;               /* tokens given to the client */
    size_t                     n_gen;
    size_t                     cap_gen;
    Baton__V1__SamplingParams *sampling;          /* owned (unpacked copy) */
    char                       tenant[65];
    uint8_t                    salt[64];
    size_t                     salt_len;
    uint8_t                    root[BT_BLOCK_HASH_LEN];
    bool                       root_known;       /* once a node told the layout */

    /* the current pair; a node is identified by slot + generation */
    unsigned                   p_slot, d_slot;
    uint64_t                   p_gen, d_gen;
    char                       p_id[BT_NODE_ID_MAX + 1];
    char                       d_id[BT_NODE_ID_MAX + 1];
    uint32_t                   p_assigned_tokens;
    bool                       assigned;
    bt_node_set_t              exclude_p, exclude_d;
    int                        prefill_attempts;
    int                        decode_attempts;
    bt_rpc_client_call_t      *d_call;
    bt_rpc_client_call_t      *p_call;
    uint64_t                   d_call_seq;        /* tells stale callbacks apart */
    uint64_t                   p_call_seq;
    Baton__V1__Reservation    *resv;              /* owned (unpacked copy) */
    size_t                     d_base;            /* first index this D generates */
    size_t                     d_next;            /* next index expected from D */
    bool                       d_final;
    Baton__V1__FinishReason    d_finish;
    uint32_t                   cached_tokens;

    bt_tok_stream_t           *detok;
    bt_stopstr_t              *stops;
    bt_buf_t                   text;
    const bt_rreq_sink_t      *sink;
    void                      *sink_arg;
    bool                       ended;
    bool                       stopped;          /* a stop string matched */
    int                        pending_cbs;      /* RPC callbacks still to come */
    struct event              *queue_ev;         /* the queue timeout */
    uint64_t                   queue_deadline_ms; /* 0 until first queued */
    struct event              *go_ev;            /* opens the placed pair from the loop */

    /* the reservation asked of the decode node, counted there by select.c
     * until it comes back (d_pending) */
    uint32_t                   d_blocks;
    bool                       d_pending;
    /* lease renewal while the prefill waits (request.h) */
    struct event              *renew_ev;
    bt_rpc_client_call_t      *renew_call;
    uint64_t                   renew_seq;
    bool                       renew_off;        /* the node has no RenewLease */
    bool                       lease_gone;       /* a renewal got NOT_FOUND */
    /* why the router cancelled the current prefill / decode call (its
     * node left) */
    char                       p_gone_why[160];
    char                       d_gone_why[160];
};

/* A call's done callback gets one of these: the request may have moved
 * on to another call of the same kind since (a retry). */
typedef struct {
    bt_rreq_t *req;
    uint64_t   seq;
} bt_rreq_cb_t;

static void bt_rreq_dispatch(bt_rreq_t *req, const char *why);
static void bt_rreq_requeue(bt_rreq_t *req, const char *why);
static void bt_rreq_end(bt_rreq_t *req, bt_status_t status, const char *msg,
                        Baton__V1__FinishReason finish);
static void bt_rreq_failover(bt_rreq_t *req, const char *why);

const char *bt_rreq_id(const bt_rreq_t *req)
{
    return req->id;
}

bool bt_sampling_wants_logprobs(const Baton__V1__SamplingParams *sp)
{
    return sp != NULL && (sp->logprobs > 0 || sp->logprobs_chosen);
}

static bt_node_t *bt_rreq_node(bt_rreq_t *req, unsigned slot, uint64_t gen)
{
    bt_node_t *node = bt_registry_slot(req->r->registry, slot);

    return node != NULL && gen != 0 && req->r->node_gen[slot] == gen ? node : NULL;
}

static void bt_rreq_release_nodes(bt_rreq_t *req)
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

static void bt_rreq_maybe_free(bt_rreq_t *req)
{
    if (!req->ended || req->pending_cbs > 0) {
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

/* ---- output ---- */

/* Flushes `text` (held back by the stop-string matcher or the detokenizer)
 * to the sink with the token ids of this step. */
static void bt_rreq_emit_text(bt_rreq_t *req, const uint32_t *ids, size_t n,
                              const Baton__V1__TokenLogprobs *const *lps,
                              const char *text, size_t len)
{
    if ((n > 0 || len > 0) && req->sink->on_delta != NULL) {
        req->sink->on_delta(req, req->sink_arg, ids, n, lps, text, len);
    }
}

/* A node's logprobs for `token`: present when asked for, about that
 * token, at most the top-n asked for, ids in the vocabulary. */
static bool bt_rreq_lp_ok(const bt_rreq_t *req, uint32_t token,
                          const Baton__V1__TokenLogprobs *lp)
{
    int32_t vocab = bt_router_model_vocab_size(req->r);

    if (lp == NULL || lp->token_id != token ||
        lp->n_top > (size_t)req->sampling->logprobs) {
        return false;
    }
    for (size_t i = 0; i < lp->n_top; i++) {
        if (lp->top[i] == NULL || lp->top[i]->token_id >= (uint32_t)vocab) {
            return false;
        }
    }
    return true;
}

/* Gives token (the next output index) to the client. `lp`: its logprobs
 * from the node (NULL when none came). */
static void bt_rreq_emit_token(bt_rreq_t *req, uint32_t token,
                               const Baton__V1__TokenLogprobs *lp)
{
    const char *out = NULL;
    size_t out_len = 0;
    bool stopped = false;
    uint64_t now = bt_now_ns();
    const bool want_lp = bt_sampling_wants_logprobs(req->sampling);

    if (want_lp && !bt_rreq_lp_ok(req, token, lp)) {
        BT_LOG_REQ(ERROR, req->id, "node %s sent no valid logprobs for output "
                   "token %zu", req->state == BT_RREQ_PREFILLING ? req->p_id
                   : req->d_id, req->n_gen);
        bt_rreq_end(req, BT_ERR_PEER_PROTOCOL, "a node returned no valid "
                    "logprobs", BATON__V1__FINISH_REASON__FINISH_REASON_ERROR);
        return;
    }

    if (req->n_gen == req->cap_gen) {
        size_t cap = req->cap_gen ? req->cap_gen * 2 : 64;
        uint32_t *g = realloc(req->gen, cap * sizeof(*g));

        if (g == NULL) {
            bt_rreq_end(req, BT_ERR_NO_MEMORY, "out of memory",
                        BATON__V1__FINISH_REASON__FINISH_REASON_ERROR);
            return;
        }
        req->gen = g;
        req->cap_gen = cap;
    }
    req->gen[req->n_gen++] = token;
    if (req->first_token_ns == 0) {
        req->first_token_ns = now;
        bt_histogram_observe(req->r->m.ttft, bt_elapsed_s(req->created_ns, now));
    } else {
        bt_histogram_observe(req->r->m.itl, bt_elapsed_s(req->last_token_ns, now));
    }
    req->last_token_ns = now;
    bt_counter_inc(req->r->m.tokens_out);

    bt_buf_reset(&req->text);
    if (bt_tok_stream_feed(req->detok, (int32_t)token, &req->text) != BT_OK) {
        bt_buf_reset(&req->text);
    }
    if (req->stops != NULL) {
        bt_stopstr_feed(req->stops, req->text.data ? req->text.data : "",
                        req->text.len, &out, &out_len, &stopped);
    } else {
        out = req->text.data ? req->text.data : "";
        out_len = req->text.len;
    }
    bt_rreq_emit_text(req, &token, 1, want_lp ? &lp : NULL, out, out_len);
    if (stopped) {
        req->stopped = true;
        bt_rreq_end(req, BT_OK, NULL, BATON__V1__FINISH_REASON__FINISH_REASON_STOP);
    }
}

static void bt_rreq_flush(bt_rreq_t *req)
{
    const char *out = NULL;
    size_t out_len = 0;
    bool stopped = false;

    bt_buf_reset(&req->text);
    bt_tok_stream_finish(req->detok, &req->text);
    if (req->stops != NULL) {
        if (req->text.len > 0) {
            bt_stopstr_feed(req->stops, req->text.data, req->text.len, &out,
                            &out_len, &stopped);
            bt_rreq_emit_text(req, NULL, 0, NULL, out, out_len);
        }
        if (!stopped) {
            bt_stopstr_flush(req->stops, &out, &out_len);
            bt_rreq_emit_text(req, NULL, 0, NULL, out, out_len);
        }
    } else {
        bt_rreq_emit_text(req, NULL, 0, NULL,
                          req->text.data ? req->text.data : "", req->text.len);
    }
}

static void bt_rreq_unlink(bt_rreq_t *req)
{
    bt_router_t *r = req->r;

    if (req->prev != NULL) {
        req->prev->next = req->next;
    } else if (r->requests == req) {
        r->requests = req->next;
    }
    if (req->next != NULL) {
        req->next->prev = req->prev;
    }
    req->next = req->prev = NULL;
}

/* ---- the wait queue: oldest first, so a burst is served in order ---- */

static void bt_rreq_queue_link(bt_rreq_t *req)
{
    bt_router_t *r = req->r;
    bt_rreq_t *after = r->queue_tail;

    /* a request put back (its node refused it) keeps its age */
    while (after != NULL && after->created_ns > req->created_ns) {
        after = after->qprev;
    }
    req->qprev = after;
    req->qnext = after != NULL ? after->qnext : r->queue_head;
    if (req->qnext != NULL) {
        req->qnext->qprev = req;
    } else {
        r->queue_tail = req;
    }
    if (after != NULL) {
        after->qnext = req;
    } else {
        r->queue_head = req;
    }
    r->n_queued++;
    bt_gauge_set(r->m.queued, (double)r->n_queued);
}

static void bt_rreq_queue_unlink(bt_rreq_t *req)
{
    bt_router_t *r = req->r;

    if (req->qprev != NULL) {
        req->qprev->qnext = req->qnext;
    } else {
        r->queue_head = req->qnext;
    }
    if (req->qnext != NULL) {
        req->qnext->qprev = req->qprev;
    } else {
        r->queue_tail = req->qprev;
    }
    req->qnext = req->qprev = NULL;
    r->n_queued--;
    r->queue_epoch++;
    bt_gauge_set(r->m.queued, (double)r->n_queued);
    if (req->queue_ev != NULL) {
        event_del(req->queue_ev);
    }
}

static void bt_rreq_renew_stop(bt_rreq_t *req)
{
    if (req->renew_ev != NULL) {
        event_del(req->renew_ev);
    }
    if (req->renew_call != NULL) {
        bt_rpc_client_call_cancel(req->renew_call);
        req->renew_seq++; /* its callback is stale now */
        req->renew_call = NULL;
    }
}

static void bt_rreq_end(bt_rreq_t *req, bt_status_t status, const char *msg,
                        Baton__V1__FinishReason finish)
{
    bt_router_t *r = req->r;
    Baton__V1__Usage usage = BATON__V1__USAGE__INIT;

    if (req->ended) {
        return;
    }
    if (status == BT_OK && !req->stopped) {
        bt_rreq_flush(req);
    }
    req->ended = true;
    if (req->state == BT_RREQ_QUEUED) {
        bt_rreq_queue_unlink(req);
    }
    req->state = BT_RREQ_DONE;
    r->n_inflight--;
    bt_gauge_set(r->m.inflight, (double)r->n_inflight);
    bt_rreq_release_nodes(req);
    bt_rreq_unlink(req);
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
        bt_rpc_client_call_cancel(req->d_call);
    }
    if (req->p_call != NULL) {
        bt_rpc_client_call_cancel(req->p_call);
    }
    bt_rreq_maybe_free(req);
    bt_router_queue_kick(r);
}

/* ---- calls to the nodes ---- */

static void bt_rreq_fill_tenant(bt_rreq_t *req, Baton__V1__TenantInfo *tenant)
{
    tenant->tenant = req->tenant;
    tenant->salt.data = req->salt;
    tenant->salt.len = req->salt_len;
    tenant->root_hash.data = req->root;
    tenant->root_hash.len = BT_BLOCK_HASH_LEN;
}

/* Each call to a node gets what is left of the request's deadline. */
static uint64_t bt_rreq_time_left_ms(const bt_rreq_t *req)
{
    uint64_t now = bt_now_ms();

    return req->deadline_ms > now ? req->deadline_ms - now : 1;
}

/* ---- lease renewal ----
 *
 * The decode node frees a reservation whose KV has not arrived when its
 * lease ends. A prefill node with a backlog may start the request later
 * than that, so while the request waits for its prefill (PREFILLING) the
 * router renews the lease every lease/3 (Decode/RenewLease). */

static void bt_rreq_renew_done(void *arg, const bt_rpc_result_t *result,
                               const ProtobufCMessage *resp)
{
    bt_rreq_cb_t *cb = arg;
    bt_rreq_t *req = cb->req;
    bool current = cb->seq == req->renew_seq;

    free(cb);
    req->pending_cbs--;
    if (current) {
        req->renew_call = NULL;
    }
    if (req->ended || !current) {
        bt_rreq_maybe_free(req);
        return;
    }
    switch (result->code) {
    case BT_RPC_OK:
        /* for ListRequests; 0: the KV arrived, the lease no longer ends */
        if (resp != NULL && req->resv != NULL) {
            req->resv->expiry_unix_ms =
                ((const Baton__V1__RenewLeaseResponse *)resp)->expiry_unix_ms;
        }
        BT_LOG_REQ(DEBUG, req->id, "lease %llu on %s renewed",
                   (unsigned long long)req->resv->lease_id, req->d_id);
        return;
    case BT_RPC_NOT_FOUND:
        /* the lease is gone, or the KV arrived a moment ago and D admitted
         * the sequence (its first token is on its way): the next tick
         * decides, if neither the first token nor the stream's end came */
        req->lease_gone = true;
        BT_LOG_REQ(DEBUG, req->id, "lease %llu on %s not found: %s",
                   (unsigned long long)req->resv->lease_id, req->d_id,
                   result->message);
        return;
    case BT_RPC_UNIMPLEMENTED:
        /* an older node: its lease runs its course, as before */
        bt_rreq_renew_stop(req);
        req->renew_off = true;
        BT_LOG_REQ(INFO, req->id, "decode node %s cannot renew leases: the "
                   "lease is not renewed", req->d_id);
        return;
    default:
        /* a slow or restarting node: the decode stream says if it died */
        BT_LOG_REQ(WARN, req->id, "renewing lease on %s: %s: %s", req->d_id,
                   bt_rpc_code_name(result->code), result->message);
        return;
    }
}

static void bt_rreq_renew_cb(evutil_socket_t fd, short what, void *arg)
{
    bt_rreq_t *req = arg;
    bt_router_t *r = req->r;
    Baton__V1__RenewLeaseRequest rq = BATON__V1__RENEW_LEASE_REQUEST__INIT;
    bt_rpc_channel_t *ch;
    bt_rpc_call_opts_t opts = { 0, NULL, 0 };
    bt_rreq_cb_t *cb;

    (void)fd;
    (void)what;
    if (req->ended || req->state != BT_RREQ_PREFILLING || req->resv == NULL ||
        req->renew_off) {
        bt_rreq_renew_stop(req);
        return;
    }
    if (req->renew_call != NULL) {
        return; /* the last one is still out */
    }
    if (req->lease_gone) {
        /* D freed the blocks: the prefill has nowhere to go */
        char why[256];

        snprintf(why, sizeof(why), "decode node %s: lease %llu is gone "
                 "(RenewLease: NOT_FOUND)", req->d_id,
                 (unsigned long long)req->resv->lease_id);
        bt_rreq_renew_stop(req);
        bt_rreq_failover(req, why);
        return;
    }
    ch = bt_router_node_channel(r, bt_rreq_node(req, req->d_slot, req->d_gen));
    if (ch == NULL || (cb = malloc(sizeof(*cb))) == NULL) {
        return; /* the decode stream's end reports a node that left */
    }
    rq.lease_id = req->resv->lease_id;
    rq.request_id = req->id;
    rq.lease_ms = (uint32_t)r->cfg.lease_ms;
    opts.timeout_ms = (uint64_t)r->cfg.lease_ms / 3 > 0 ? (uint64_t)r->cfg.lease_ms / 3 : 1;
    cb->req = req;
    cb->seq = ++req->renew_seq;
    if (bt_rpc_client_unary(ch, "/baton.v1.Decode/RenewLease", &rq.base,
                            &baton__v1__renew_lease_response__descriptor, &opts,
                            bt_rreq_renew_done, cb, &req->renew_call) == BT_OK) {
        req->pending_cbs++;
    } else {
        free(cb);
        req->renew_call = NULL;
    }
}

/* Renews every lease/3 from now on while the request stays PREFILLING. */
static void bt_rreq_renew_arm(bt_rreq_t *req)
{
    uint64_t period = (uint64_t)req->r->cfg.lease_ms / 3;
    struct timeval tv = { (time_t)(period / 1000),
                          (suseconds_t)((period % 1000) * 1000) };

    if (req->renew_off || req->renew_ev == NULL ||
        event_pending(req->renew_ev, EV_TIMEOUT, NULL)) {
        return;
    }
    event_add(req->renew_ev, &tv);
}

/* ---- prefill ---- */

static void bt_rreq_prefill_done(void *arg, const bt_rpc_result_t *result,
                                 const ProtobufCMessage *resp);

static void bt_rreq_start_prefill(bt_rreq_t *req)
{
    bt_router_t *r = req->r;
    Baton__V1__PrefillRequest pr = BATON__V1__PREFILL_REQUEST__INIT;
    Baton__V1__TenantInfo tenant = BATON__V1__TENANT_INFO__INIT;
    bt_node_t *p = bt_rreq_node(req, req->p_slot, req->p_gen);
    bt_rpc_channel_t *ch = bt_router_node_channel(r, p);
    bt_rpc_call_opts_t opts = { 0, NULL, 0 };
    bt_rreq_cb_t *cb;
    uint32_t *ids;
    bt_status_t s;

    if (ch == NULL) {
        bt_rreq_end(req, BT_ERR_PEER_UNREACHABLE, "the prefill node left",
                    BATON__V1__FINISH_REASON__FINISH_REASON_ERROR);
        return;
    }
    ids = malloc((req->n_prompt + req->n_gen + 1) * sizeof(*ids));
    cb = malloc(sizeof(*cb));
    if (ids == NULL || cb == NULL) {
        free(ids);
        free(cb);
        bt_rreq_end(req, BT_ERR_NO_MEMORY, "out of memory",
                    BATON__V1__FINISH_REASON__FINISH_REASON_ERROR);
        return;
    }
    /* after a decode failover the tokens already generated are part of
     * the prompt the new prefill computes */
    memcpy(ids, req->prompt, req->n_prompt * sizeof(*ids));
    if (req->n_gen > 0) {
        memcpy(ids + req->n_prompt, req->gen, req->n_gen * sizeof(*ids));
    }
    pr.request_id = req->id;
    pr.model = (char *)bt_router_model_name(r);
    pr.n_token_ids = req->n_prompt + req->n_gen;
    pr.token_ids = ids;
    pr.sampling = req->sampling;
    pr.reservation = req->resv;
    bt_rreq_fill_tenant(req, &tenant);
    pr.tenant = &tenant;
    pr.generated_count = (uint32_t)req->n_gen;
    opts.timeout_ms = bt_rreq_time_left_ms(req);
    cb->req = req;
    cb->seq = ++req->p_call_seq;
    req->p_gone_why[0] = '\0';
    req->state = BT_RREQ_PREFILLING;
    s = bt_rpc_client_unary(ch, "/baton.v1.Prefill/Prefill", &pr.base,
                            &baton__v1__prefill_result__descriptor, &opts,
                            bt_rreq_prefill_done, cb, &req->p_call);
    free(ids);
    if (s == BT_OK) {
        req->pending_cbs++;
    } else {
        free(cb);
        req->p_call = NULL;
        bt_rreq_end(req, s, "cannot call the prefill node",
                    BATON__V1__FINISH_REASON__FINISH_REASON_ERROR);
        return;
    }
    bt_rreq_renew_arm(req);
    BT_LOG_REQ(DEBUG, req->id, "prefill on %s, %zu tokens", req->p_id,
               req->n_prompt + req->n_gen);
}

/* Another prefill node, same decode node and reservation. */
static void bt_rreq_retry_prefill(bt_rreq_t *req, const char *why)
{
    bt_router_t *r = req->r;
    bt_select_result_t sel;
    bt_select_req_t sreq;
    char err[256];
    bt_status_t s;

    bt_node_set_add(&req->exclude_p, req->p_slot);
    if (++req->prefill_attempts > r->cfg.prefill_retries) {
        bt_rreq_end(req, BT_ERR_PEER_DIED, why,
                    BATON__V1__FINISH_REASON__FINISH_REASON_ERROR);
        return;
    }
    memset(&sreq, 0, sizeof(sreq));
    sreq.model = bt_router_model_name(r);
    sreq.prompt_tokens = (uint32_t)(req->n_prompt + req->n_gen);
    sreq.exclude_prefill = req->exclude_p;
    s = bt_select_prefill(r->registry, &r->weights, &sreq, &sel, err, sizeof(err));
    if (s != BT_OK) {
        bt_rreq_end(req, BT_ERR_PEER_DIED, why,
                    BATON__V1__FINISH_REASON__FINISH_REASON_ERROR);
        return;
    }
    bt_counter_inc(r->m.prefill_retries);
    BT_LOG_REQ(WARN, req->id, "prefill on %s failed (%s): retrying on %s", req->p_id,
               why, sel.prefill->id);
    bt_select_release(bt_rreq_node(req, req->p_slot, req->p_gen), NULL,
                      req->p_assigned_tokens);
    req->p_slot = sel.prefill->slot;
    req->p_gen = r->node_gen[sel.prefill->slot];
    snprintf(req->p_id, sizeof(req->p_id), "%s", sel.prefill->id);
    req->p_assigned_tokens = sreq.prompt_tokens;
    bt_rreq_start_prefill(req);
}

static void bt_rreq_prefill_done(void *arg, const bt_rpc_result_t *result,
                                 const ProtobufCMessage *resp)
{
    bt_rreq_cb_t *cb = arg;
    bt_rreq_t *req = cb->req;
    const Baton__V1__PrefillResult *pr = (const Baton__V1__PrefillResult *)resp;
    bool current = cb->seq == req->p_call_seq;

    free(cb);
    req->pending_cbs--;
    if (current) {
        req->p_call = NULL;
    }
    if (req->ended || !current) {
        bt_rreq_maybe_free(req);
        return;
    }
    if (result->code != BT_RPC_OK) {
        char why[256];

        if (req->p_gone_why[0] != '\0') {
            snprintf(why, sizeof(why), "%s", req->p_gone_why);
            req->p_gone_why[0] = '\0';
        } else {
            snprintf(why, sizeof(why), "prefill node %s: %s: %s", req->p_id,
                     bt_rpc_code_name(result->code), result->message);
        }
        if (result->code == BT_RPC_INVALID_ARGUMENT ||
            result->code == BT_RPC_OUT_OF_RANGE) {
            bt_rreq_end(req, BT_ERR_INVALID_ARG, why,
                        BATON__V1__FINISH_REASON__FINISH_REASON_ERROR);
            return;
        }
        bt_rreq_retry_prefill(req, why);
        return;
    }
    /* usage counts the prompt's cached tokens; a failover's re-prefill of
     * prompt ++ generated may have cached more */
    req->cached_tokens = pr->cached_tokens < req->n_prompt
                         ? pr->cached_tokens : (uint32_t)req->n_prompt;
    if (pr->stats != NULL) {
        BT_LOG_REQ(INFO, req->id, "prefilled on %s: %u tokens, %u cached (%u "
                   "node, %u kvstore), %u computed, %llu bytes in %llu us",
                   req->p_id, pr->stats->computed_tokens + pr->cached_tokens,
                   pr->cached_tokens, pr->stats->node_cached_tokens,
                   pr->stats->kvstore_cached_tokens, pr->stats->computed_tokens,
                   (unsigned long long)pr->stats->transfer_bytes,
                   (unsigned long long)pr->stats->transfer_us);
    }
    if (req->state == BT_RREQ_PREFILLING) {
        req->state = BT_RREQ_DECODING;
    }
    bt_rreq_renew_stop(req); /* the KV is on the decode node */
    /* the decode stream may have delivered this token already */
    if (req->n_gen == req->d_base) {
        bt_rreq_emit_token(req, pr->first_token, pr->first_logprobs);
    } else if (req->gen[req->d_base] != pr->first_token) {
        BT_LOG_REQ(ERROR, req->id, "prefill's first token %u differs from the "
                   "decode node's %u", pr->first_token, req->gen[req->d_base]);
    }
}

/* ---- decode stream ---- */

static void bt_rreq_on_decode_msg(void *arg, const ProtobufCMessage *m)
{
    bt_rreq_cb_t *cb = arg;
    bt_rreq_t *req = cb->req;
    const Baton__V1__DecodeResponse *msg = (const Baton__V1__DecodeResponse *)m;
    size_t i;

    if (req->ended || cb->seq != req->d_call_seq) {
        return;
    }
    switch (msg->kind_case) {
    case BATON__V1__DECODE_RESPONSE__KIND_RESERVATION: {
        size_t len;
        uint8_t *buf;

        if (req->state != BT_RREQ_RESERVING) {
            return;
        }
        len = baton__v1__reservation__get_packed_size(msg->reservation);
        buf = malloc(len ? len : 1);
        if (buf == NULL) {
            bt_rreq_end(req, BT_ERR_NO_MEMORY, "out of memory",
                        BATON__V1__FINISH_REASON__FINISH_REASON_ERROR);
            return;
        }
        baton__v1__reservation__pack(msg->reservation, buf);
        if (req->resv != NULL) {
            baton__v1__reservation__free_unpacked(req->resv, NULL);
        }
        req->resv = baton__v1__reservation__unpack(NULL, len, buf);
        free(buf);
        req->lease_gone = false;
        if (req->d_pending) {
            bt_select_resv_answered(bt_rreq_node(req, req->d_slot, req->d_gen),
                                    req->d_blocks);
            req->d_pending = false;
        }
        BT_LOG_REQ(DEBUG, req->id, "reserved %zu blocks on %s (lease %llu)",
                   req->resv ? req->resv->n_block_ids : 0, req->d_id,
                   req->resv ? (unsigned long long)req->resv->lease_id : 0ull);
        bt_rreq_start_prefill(req);
        return;
    }
    case BATON__V1__DECODE_RESPONSE__KIND_TOKENS:
        bt_rreq_renew_stop(req); /* the decode node has the KV */
        for (i = 0; i < msg->tokens->n_token_ids && !req->ended; i++) {
            uint32_t t = msg->tokens->token_ids[i];
            size_t idx = req->d_next++;
            /* one per token when asked for; anything else is refused */
            const Baton__V1__TokenLogprobs *lp =
                msg->tokens->n_logprobs == msg->tokens->n_token_ids
                ? msg->tokens->logprobs[i] : NULL;

            if (idx < req->n_gen) {
                if (req->gen[idx] != t) {
                    BT_LOG_REQ(ERROR, req->id, "decode token %zu is %u, expected %u",
                               idx, t, req->gen[idx]);
                }
                continue;
            }
            bt_rreq_emit_token(req, t, lp);
        }
        return;
    case BATON__V1__DECODE_RESPONSE__KIND_FINAL:
        req->d_final = true;
        req->d_finish = msg->final->finish_reason;
        if (msg->final->finish_reason == BATON__V1__FINISH_REASON__FINISH_REASON_ERROR) {
            bt_rreq_end(req, BT_ERR_PEER_REJECTED,
                        msg->final->error && msg->final->error[0] ?
                        msg->final->error : "the decode node failed",
                        BATON__V1__FINISH_REASON__FINISH_REASON_ERROR);
            return;
        }
        bt_rreq_end(req, BT_OK, NULL, msg->final->finish_reason);
        return;
    default:
        return;
    }
}

static void bt_rreq_on_decode_done(void *arg, const bt_rpc_result_t *result)
{
    bt_rreq_cb_t *cb = arg;
    bt_rreq_t *req = cb->req;
    bool current = cb->seq == req->d_call_seq;
    char why[256];

    free(cb);
    req->pending_cbs--;
    if (current) {
        req->d_call = NULL;
    }
    if (req->ended || !current) {
        bt_rreq_maybe_free(req);
        return;
    }
    if (result->code == BT_RPC_OK && req->d_final) {
        return; /* ended already by the final message */
    }
    if (req->d_gone_why[0] != '\0') {
        snprintf(why, sizeof(why), "%s", req->d_gone_why);
        req->d_gone_why[0] = '\0';
    } else {
        snprintf(why, sizeof(why), "decode node %s: %s: %s", req->d_id,
                 bt_rpc_code_name(result->code),
                 result->code == BT_RPC_OK ? "stream ended early" : result->message);
    }
    if (result->code == BT_RPC_INVALID_ARGUMENT ||
        result->code == BT_RPC_OUT_OF_RANGE) {
        bt_rreq_end(req, BT_ERR_INVALID_ARG, why,
                    BATON__V1__FINISH_REASON__FINISH_REASON_ERROR);
        return;
    }
    if (result->code == BT_RPC_RESOURCE_EXHAUSTED && req->state == BT_RREQ_RESERVING) {
        /* the node filled up since its last report: no failure of the
         * node, so no failover attempt is spent */
        bt_select_resv_refused(bt_rreq_node(req, req->d_slot, req->d_gen),
                               req->d_blocks);
        req->d_pending = false;
        if (req->n_gen == 0) {
            bt_rreq_requeue(req, why);
            return;
        }
        bt_node_set_add(&req->exclude_d, req->d_slot);
    }
    bt_rreq_failover(req, why);
}

static void bt_rreq_open_decode(bt_rreq_t *req)
{
    bt_router_t *r = req->r;
    Baton__V1__DecodeRequest dr = BATON__V1__DECODE_REQUEST__INIT;
    Baton__V1__TenantInfo tenant = BATON__V1__TENANT_INFO__INIT;
    bt_node_t *d = bt_rreq_node(req, req->d_slot, req->d_gen);
    bt_rpc_channel_t *ch = bt_router_node_channel(r, d);
    bt_rpc_call_opts_t opts = { 0, NULL, 0 };
    bt_rreq_cb_t *cb;
    bt_status_t s;

    if (ch == NULL || (cb = malloc(sizeof(*cb))) == NULL) {
        bt_rreq_failover(req, "the decode node left");
        return;
    }
    dr.request_id = req->id;
    dr.model = (char *)bt_router_model_name(r);
    dr.n_token_ids = req->n_prompt;
    dr.token_ids = req->prompt;
    dr.n_generated_ids = req->n_gen;
    dr.generated_ids = req->gen;
    dr.sampling = req->sampling;
    bt_rreq_fill_tenant(req, &tenant);
    dr.tenant = &tenant;
    dr.lease_ms = (uint32_t)r->cfg.lease_ms;
    opts.timeout_ms = bt_rreq_time_left_ms(req);
    cb->req = req;
    cb->seq = ++req->d_call_seq;
    req->d_gone_why[0] = '\0';
    req->d_base = req->n_gen;
    req->d_next = req->n_gen;
    req->d_final = false;
    req->state = BT_RREQ_RESERVING;
    s = bt_rpc_client_stream(ch, "/baton.v1.Decode/DecodeStream", &dr.base,
                             &baton__v1__decode_response__descriptor, &opts,
                             bt_rreq_on_decode_msg, bt_rreq_on_decode_done, cb,
                             &req->d_call);
    if (s == BT_OK) {
        req->pending_cbs++;
    } else {
        free(cb);
        req->d_call = NULL;
        bt_rreq_failover(req, "cannot call the decode node");
    }
}

/* The decode node failed: reserve elsewhere and re-prefill what the client
 * already has (DESIGN §2: KV-preserving failover). */
static void bt_rreq_failover(bt_rreq_t *req, const char *why)
{
    bt_router_t *r = req->r;

    if (req->p_call != NULL) {
        bt_rpc_client_call_cancel(req->p_call);
        req->p_call_seq++; /* its callback is stale now */
        req->p_call = NULL;
    }
    if (req->d_call != NULL) {
        bt_rpc_client_call_cancel(req->d_call);
        req->d_call_seq++;
        req->d_call = NULL;
    }
    bt_rreq_renew_stop(req);
    bt_rreq_release_nodes(req);
    if (++req->decode_attempts > r->cfg.decode_failovers) {
        bt_rreq_end(req, BT_ERR_PEER_DIED, why,
                    BATON__V1__FINISH_REASON__FINISH_REASON_ERROR);
        return;
    }
    if (req->state != BT_RREQ_RESERVING || req->n_gen > 0) {
        bt_counter_inc(r->m.decode_failovers);
    }
    BT_LOG_REQ(WARN, req->id, "%s: moving to another decode node after %zu tokens",
               why, req->n_gen);
    bt_node_set_add(&req->exclude_d, req->d_slot);
    if (req->resv != NULL) {
        baton__v1__reservation__free_unpacked(req->resv, NULL);
        req->resv = NULL;
    }
    bt_rreq_dispatch(req, why);
}

/* ---- placement and the wait queue ----
 *
 * A request the cluster cannot place now (no decode node has room) waits
 * in a FIFO queue of at most --max-queue requests for at most
 * --queue-timeout in all, then ends with BT_ERR_EXHAUSTED (429). Kicks
 * (a node reported, a request ended, a node joined or left) place the
 * queue's head while it fits. A request no node serves at all gets
 * BT_ERR_PEER_UNREACHABLE (503). Both count as rejected. */

/* A rejection before any token: counted, and the sink learns it first. */
static void bt_rreq_reject(bt_rreq_t *req, bt_status_t s, const char *msg)
{
    bt_counter_inc(req->r->m.requests_rejected);
    bt_rreq_end(req, s, msg, BATON__V1__FINISH_REASON__FINISH_REASON_ERROR);
}

/* What a failed placement means for a request: select's statuses mapped
 * to the ones clients see. */
static bt_status_t bt_rreq_place_status(bt_status_t s)
{
    switch (s) {
    case BT_ERR_NOT_FOUND:        return BT_ERR_PEER_UNREACHABLE;
    case BT_ERR_TOO_LARGE:        return BT_ERR_INVALID_ARG;
    default:                      return s;
    }
}

static void bt_rreq_queue_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    bt_rreq_t *req = arg;
    bt_router_t *r = req->r;
    char msg[256];
    bool any = bt_registry_count(r->registry, BT_NODE_ROLE_PREFILL,
                                 bt_router_model_name(r)) > 0 &&
               bt_registry_count(r->registry, BT_NODE_ROLE_DECODE,
                                 bt_router_model_name(r)) > 0;

    (void)fd;
    (void)what;
    if (req->state != BT_RREQ_QUEUED) {
        return;
    }
    snprintf(msg, sizeof(msg), any ?
             "no decode node had room for the request within %lld ms; retry later" :
             "no node serves the model; none joined within %lld ms",
             (long long)r->cfg.queue_timeout_ms);
    bt_rreq_reject(req, any ? BT_ERR_EXHAUSTED : BT_ERR_PEER_UNREACHABLE, msg);
}

/* Puts the request in the wait queue (its age decides its place).
 * BT_ERR_EXHAUSTED with err when the queue is full or the request has
 * waited its --queue-timeout already; BT_ERR_SHUTDOWN while draining. */
static bt_status_t bt_rreq_enqueue(bt_rreq_t *req, char *err, size_t err_size)
{
    bt_router_t *r = req->r;
    uint64_t now = bt_now_ms(), left;
    struct timeval tv;

    if (r->draining) {
        snprintf(err, err_size, "the router is shutting down");
        return BT_ERR_SHUTDOWN;
    }
    if (r->n_queued >= (size_t)r->cfg.max_queue) {
        snprintf(err, err_size, "no decode node has room and the queue holds "
                 "%zu requests, its maximum; retry later", r->n_queued);
        return BT_ERR_EXHAUSTED;
    }
    if (req->queue_deadline_ms == 0) {
        req->queue_deadline_ms = now + (uint64_t)r->cfg.queue_timeout_ms;
    } else if (now >= req->queue_deadline_ms) {
        snprintf(err, err_size, "no decode node had room for the request "
                 "within %lld ms; retry later", (long long)r->cfg.queue_timeout_ms);
        return BT_ERR_EXHAUSTED;
    }
    left = req->queue_deadline_ms - now;
    tv.tv_sec = (time_t)(left / 1000);
    tv.tv_usec = (suseconds_t)((left % 1000) * 1000);
    req->state = BT_RREQ_QUEUED;
    bt_rreq_queue_link(req);
    evtimer_add(req->queue_ev, &tv);
    return BT_OK;
}

/* Picks (P, D) for the request now and opens the decode stream from the
 * loop (go_ev): this never ends or frees a request, so callers may hold
 * pointers across it. BT_OK, or bt_select_pair's status with err. */
static bt_status_t bt_rreq_place(bt_rreq_t *req, char *err, size_t err_size)
{
    bt_router_t *r = req->r;
    size_t n_blocks = 0;
    uint8_t (*hashes)[BT_BLOCK_HASH_LEN] = NULL;
    bt_select_result_t sel;
    bt_select_req_t sreq;
    bt_status_t s;

    memset(&sreq, 0, sizeof(sreq));
    sreq.model = bt_router_model_name(r);
    sreq.prompt_tokens = (uint32_t)(req->n_prompt + req->n_gen);
    sreq.max_new_tokens = (uint32_t)req->sampling->max_tokens -
                          (uint32_t)(req->n_gen < (size_t)req->sampling->max_tokens ?
                                     req->n_gen : (size_t)req->sampling->max_tokens);
    sreq.exclude_prefill = req->exclude_p;
    sreq.exclude_decode = req->exclude_d;
    if (!req->root_known &&
        bt_router_model_root(r, req->salt, req->salt_len, req->root) == BT_OK) {
        req->root_known = true;
    }
    bt_router_model_hashes(r, req->root, req->prompt, req->n_prompt, req->gen,
                           req->n_gen, &hashes, &n_blocks);
    sreq.block_hashes = hashes ? &hashes[0][0] : NULL;
    sreq.n_blocks = n_blocks;
    s = bt_select_pair(r->registry, &r->weights, &sreq, &sel, err, err_size);
    free(hashes);
    if (s != BT_OK) {
        return s;
    }
    if (req->state == BT_RREQ_QUEUED) {
        bt_rreq_queue_unlink(req);
    }
    req->assigned = true;
    req->p_slot = sel.prefill->slot;
    req->p_gen = r->node_gen[sel.prefill->slot];
    req->d_slot = sel.decode->slot;
    req->d_gen = r->node_gen[sel.decode->slot];
    req->p_assigned_tokens = sreq.prompt_tokens;
    req->d_blocks = sel.decode_blocks;
    req->d_pending = true;
    snprintf(req->p_id, sizeof(req->p_id), "%s", sel.prefill->id);
    snprintf(req->d_id, sizeof(req->d_id), "%s", sel.decode->id);
    BT_LOG_REQ(INFO, req->id, "pair prefill %s (score %.1f, %zu of %zu blocks cached, "
               "%u candidates) decode %s (score %.1f, %u candidates)",
               sel.prefill->id, sel.prefill_score, sel.matched_blocks, n_blocks,
               sel.prefill_candidates, sel.decode->id, sel.decode_score,
               sel.decode_candidates);
    req->state = BT_RREQ_RESERVING;
    event_active(req->go_ev, EV_TIMEOUT, 1);
    return BT_OK;
}

static void bt_rreq_go_cb(evutil_socket_t fd, short what, void *arg)
{
    bt_rreq_t *req = arg;

    (void)fd;
    (void)what;
    if (!req->ended && req->state == BT_RREQ_RESERVING && req->d_call == NULL) {
        bt_rreq_open_decode(req);
    }
}

/* Places a request that lost its decode node (`why`), or waits for room
 * when it has given the client nothing yet; otherwise it ends. */
static void bt_rreq_dispatch(bt_rreq_t *req, const char *why)
{
    char err[256], msg[640];
    bt_status_t s = bt_rreq_place(req, err, sizeof(err));

    if (s == BT_OK) {
        return;
    }
    if (s == BT_ERR_EXHAUSTED && req->n_gen == 0) {
        s = bt_rreq_enqueue(req, err, sizeof(err));
        if (s == BT_OK) {
            BT_LOG_REQ(INFO, req->id, "%s: waiting for a decode node with room",
                       why);
            return;
        }
    }
    snprintf(msg, sizeof(msg), "%s; %s", why, err);
    if (req->n_gen > 0) {
        bt_rreq_end(req, BT_ERR_PEER_DIED, msg,
                    BATON__V1__FINISH_REASON__FINISH_REASON_ERROR);
    } else {
        bt_rreq_reject(req, bt_rreq_place_status(s), msg);
    }
}

/* The decode node refused the reservation for lack of room (its report
 * was stale): back to the queue, no failover attempt spent. */
static void bt_rreq_requeue(bt_rreq_t *req, const char *why)
{
    char err[256], msg[640];
    bt_status_t s;

    bt_rreq_release_nodes(req);
    if (req->resv != NULL) {
        baton__v1__reservation__free_unpacked(req->resv, NULL);
        req->resv = NULL;
    }
    s = bt_rreq_enqueue(req, err, sizeof(err));
    if (s != BT_OK) {
        snprintf(msg, sizeof(msg), "%s; %s", why, err);
        bt_rreq_reject(req, s, msg);
        return;
    }
    BT_LOG_REQ(INFO, req->id, "%s: waiting for room", why);
    bt_router_queue_kick(req->r);
}

/* Places queued requests, oldest first, while the oldest fits. Safe to
 * call from anywhere, also from inside itself (an ending request kicks):
 * a nested call only asks the running one to go round again, and no
 * pointer into the queue is kept across a placement. */
void bt_router_queue_kick(bt_router_t *r)
{
    char err[256];

    if (r->kicking) {
        r->kick_again = true;
        return;
    }
    r->kicking = true;
    do {
        bt_rreq_t *req = r->queue_head;

        r->kick_again = false;
        while (req != NULL) {
            uint64_t epoch = r->queue_epoch;
            bt_rreq_t *next = req->qnext;
            bt_status_t s = bt_rreq_place(req, err, sizeof(err));

            if (s == BT_ERR_EXHAUSTED || s == BT_ERR_NOT_FOUND) {
                break; /* no room (or no node) for the oldest: all wait */
            }
            /* placed (it left the queue) or it cannot fit the nodes there
             * are now (it waits for others or its timeout); if anything
             * else left the queue meanwhile, start again from the head */
            if (r->queue_epoch != epoch + (s == BT_OK)) {
                r->kick_again = true;
                break;
            }
            req = next;
        }
    } while (r->kick_again);
    r->kicking = false;
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

/* The first placement: now, or in the queue. A request never jumps the
 * queue: while others wait it waits behind them. */
static bt_status_t bt_rreq_admit(bt_rreq_t *req, char *err, size_t err_size)
{
    bt_router_t *r = req->r;
    const char *model = bt_router_model_name(r);
    bt_status_t s;

    if (bt_registry_count(r->registry, BT_NODE_ROLE_PREFILL, model) == 0 ||
        bt_registry_count(r->registry, BT_NODE_ROLE_DECODE, model) == 0) {
        snprintf(err, err_size, "no %s node serves model '%s' now; retry later",
                 bt_registry_count(r->registry, BT_NODE_ROLE_PREFILL, model) == 0
                 ? "prefill" : "decode", model);
        return BT_ERR_PEER_UNREACHABLE;
    }
    if (r->n_queued == 0) {
        s = bt_rreq_place(req, err, err_size);
        if (s != BT_ERR_EXHAUSTED) {
            return bt_rreq_place_status(s);
        }
        return bt_rreq_enqueue(req, err, err_size);
    }
    s = bt_rreq_enqueue(req, err, err_size);
    if (s == BT_OK) {
        /* those ahead may wait for nodes they cannot fit (a kick steps
         * over them); placing never ends a request, so this is safe here */
        bt_router_queue_kick(r);
    }
    return s;
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
     * before this function returns (request.h) */
    req->state = BT_RREQ_RESERVING; /* placement sets the real state */
    s = bt_rreq_admit(req, err, err_size);
    if (s != BT_OK) {
        if (s == BT_ERR_EXHAUSTED || s == BT_ERR_PEER_UNREACHABLE ||
            s == BT_ERR_SHUTDOWN) {
            bt_counter_inc(r->m.requests_rejected);
        }
        BT_LOG_REQ(INFO, req->id, "refused: %s", err);
        goto err_free;
    }
    req->next = r->requests;
    if (r->requests != NULL) {
        r->requests->prev = req;
    }
    r->requests = req;
    r->n_inflight++;
    bt_gauge_set(r->m.inflight, (double)r->n_inflight);
    BT_LOG_REQ(INFO, req->id, "admitted: tenant %s prompt %zu tokens max_tokens %d%s",
               req->tenant[0] ? req->tenant : "-", req->n_prompt,
               req->sampling->max_tokens,
               req->state == BT_RREQ_QUEUED ? ", waiting for a decode node with room" : "");
    *req_p = req;
    return BT_OK;

err_free:
    req->ended = true;
    bt_rreq_maybe_free(req);
    return s;
}

void bt_rreq_cancel(bt_rreq_t *req, const char *why)
{
    if (req->ended) {
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
    bt_rreq_t *req;

    for (req = r->requests; req != NULL; req = req->next) {
        /* cancelling the calls makes their callbacks retry or fail over;
         * they tell why instead of the bare CANCELLED they get */
        if (req->d_slot == node->slot && req->d_gen == gen && req->d_call != NULL) {
            snprintf(req->d_gone_why, sizeof(req->d_gone_why),
                     "decode node %s %s", node->id, why);
            bt_rpc_client_call_cancel(req->d_call);
        }
        if (req->p_slot == node->slot && req->p_gen == gen && req->p_call != NULL) {
            snprintf(req->p_gone_why, sizeof(req->p_gone_why),
                     "prefill node %s %s", node->id, why);
            bt_rpc_client_call_cancel(req->p_call);
        }
    }
}

bt_status_t bt_router_request_cancel_by_id(bt_router_t *r, const char *id)
{
    bt_rreq_t *req;

    for (req = r->requests; req != NULL; req = req->next) {
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
    bt_rreq_t *req;

    for (req = r->requests; req != NULL; req = req->next) {
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
