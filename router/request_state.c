/* The request object's state machine and what it holds: its transitions
 * (the only writer of req->state), the lists and counters they keep, the
 * nodes it holds, its lease-renewal timer, its end of life (freeing).
 * The other request_*.c files build on this one (request_priv.h). See
 * request.h and DESIGN §2.
 *
 *   bt_rreq_start
 *    │
 *    ▼      no room                  RESOURCE_EXHAUSTED, a failover or a
 *   NEW ─────────────▶ QUEUED ◀───── prefill retry with no token sent yet
 *    │                   │           (from RESERVING or PREFILLING)
 *    │ placed            │ placed by a kick
 *    ▼                   ▼
 *   RESERVING ◀──────────┴────────── failover: another decode node (from
 *    │                               RESERVING, PREFILLING or DECODING);
 *    │ the reservation               a prefill retry: a new reservation,
 *    ▼                               another prefill node (PREFILLING)
 *   PREFILLING
 *    │
 *    │ the prefill's answer (the first token)
 *    ▼
 *   DECODING ◀────── a forked choice's reservation (RESERVING: no prefill)
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
                          1u << BT_RREQ_PREFILLING | 1u << BT_RREQ_DECODING |
                          1u << BT_RREQ_DONE,
    [BT_RREQ_PREFILLING] = 1u << BT_RREQ_QUEUED | 1u << BT_RREQ_RESERVING |
                           1u << BT_RREQ_DECODING | 1u << BT_RREQ_DONE,
    [BT_RREQ_DECODING] = 1u << BT_RREQ_RESERVING | 1u << BT_RREQ_DONE,
    [BT_RREQ_DONE] = 0,
};

/* r->queue, oldest first */
static void bt_rreq_queue_link(bt_rreq_t *req)
{
    bt_router_t *r = req->r;
    bt_list_t *after = r->queue.prev;

    /* a request put back (its node refused it) keeps its age */
    while (after != &r->queue &&
           BT_CONTAINER_OF(after, bt_rreq_t, qlink)->created_ns > req->created_ns) {
        after = after->prev;
    }
    bt_list_add_tail(after->next, &req->qlink);
    r->n_queued++;
    bt_gauge_set(r->m.queued, (double)r->n_queued);
}

static void bt_rreq_queue_unlink(bt_rreq_t *req)
{
    bt_router_t *r = req->r;

    assert(r->n_queued > 0);
    bt_list_del(&req->qlink);
    r->n_queued--;
    r->queue_epoch++;
    bt_gauge_set(r->m.queued, (double)r->n_queued);
    if (req->queue_ev != NULL) {
        event_del(req->queue_ev);
    }
}

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
    if (req->sent_ns == 0 && (to == BT_RREQ_RESERVING || to == BT_RREQ_PREFILLING)) {
        req->sent_ns = bt_now_ns();
        bt_histogram_observe(r->m.queue_time, bt_elapsed_s(req->created_ns, req->sent_ns));
    }
    bt_gauge_set(r->m.running, (double)(r->n_inflight - r->n_queued));
    bt_gauge_set(r->m.waiting, (double)r->n_queued);
}

void bt_router_requests_init(bt_router_t *r)
{
    bt_list_init(&r->requests);
    bt_list_init(&r->queue);
    if (r->node_ops == NULL) {
        r->node_ops = &bt_node_ops_grpc;
    }
    if (r->weights.stall_budget_ms == NULL) {
        r->weights.stall_budget_ms = bt_rreq_stall_budget;
        r->weights.stall_arg = r;
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

void bt_rreq_drop_waiting(bt_rreq_t *req, size_t from)
{
    for (size_t i = from; req->lpq != NULL && i < req->n_gen; i++) {
        if (req->lpq[i] != NULL) {
            baton__v1__token_logprobs__free_unpacked(req->lpq[i], NULL);
            req->lpq[i] = NULL;
        }
    }
}

void bt_rreq_job_free(bt_rreq_job_t *job)
{
    bt_tok_stream_destroy(job->detok);
    bt_stopstr_destroy(job->stops);
    bt_buf_cleanup(&job->piece);
    bt_buf_cleanup(&job->text);
    free(job->ids);
    free(job->ends);
    free(job);
}

void bt_rreq_maybe_free(bt_rreq_t *req)
{
    if (!bt_rreq_ended(req) || req->pending_cbs > 0 || req->end_held ||
        req->delivering) {
        return;
    }
    if (req->job != NULL && (req->job_out || req->job_ready)) {
        req->job->req = NULL; /* it frees itself when it comes back */
    } else if (req->job != NULL) {
        bt_rreq_job_free(req->job);
    }
    bt_rreq_drop_waiting(req, req->n_given);
    free(req->lpq);
    if (req->queue_ev != NULL) {
        event_free(req->queue_ev);
    }
    if (req->go_ev != NULL) {
        event_free(req->go_ev);
    }
    if (req->renew_ev != NULL) {
        event_free(req->renew_ev);
    }
    if (req->usage_ev != NULL) {
        event_free(req->usage_ev);
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
    bt_trace_finish(req->r->traces, req->trace);
    free(req->prompt);
    free(req->gen);
    free(req);
}

void bt_rreq_renew_stop(bt_rreq_t *req)
{
    if (req->renew_ev != NULL) {
        event_del(req->renew_ev);
    }
    if (req->renew_call != NULL) {
        bt_rreq_call_cancel(req, req->renew_call);
        req->renew_seq++; /* its callback is stale now */
        req->renew_call = NULL;
    }
}

/* Renews every lease/3 from now on while the request stays PREFILLING. */
void bt_rreq_renew_arm(bt_rreq_t *req)
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

const char *bt_rreq_state_name(bt_rreq_state_t state)
{
    return bt_rreq_state_names[state];
}

bool bt_rreq_call_done(bt_rreq_cb_t *cb, uint64_t seq, bt_node_call_t **call)
{
    bt_rreq_t *req = cb->req;
    bool current = cb->seq == seq;

    free(cb);
    assert(req->pending_cbs > 0);
    req->pending_cbs--;
    if (current) {
        *call = NULL;
    }
    if (bt_rreq_ended(req) || !current) {
        bt_rreq_maybe_free(req);
        return false;
    }
    return true;
}
