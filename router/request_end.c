/* A request's outcomes: its end (the sink's on_end, once), a rejection,
 * a new placement after losing its decode node, a return to the queue,
 * cancel, and the admin views over all requests. See request.h. */
#include "request_priv.h"

#include "base/clock.h"
#include "base/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The finish reason by name, for log lines. */
static const char *bt_rreq_finish_str(Baton__V1__FinishReason finish)
{
    switch (finish) {
    case BATON__V1__FINISH_REASON__FINISH_REASON_STOP:      return "stop";
    case BATON__V1__FINISH_REASON__FINISH_REASON_LENGTH:    return "length";
    case BATON__V1__FINISH_REASON__FINISH_REASON_CANCELLED: return "cancelled";
    case BATON__V1__FINISH_REASON__FINISH_REASON_ERROR:     return "error";
    default:                                                return "unspecified";
    }
}

/* What the client, the trace, the metrics and the log learn of the end. */
static void bt_rreq_tell_end(bt_rreq_t *req, bt_status_t status, const char *msg,
                             Baton__V1__FinishReason finish)
{
    bt_router_t *r = req->r;
    Baton__V1__Usage usage = BATON__V1__USAGE__INIT;

    if (req->n_gen > 1 && req->last_token_ns > req->first_token_ns) {
        BT_RREQ_TRACE(req, "decode", "%zu tokens after the first on %s, %.2f ms "
                      "per token", req->n_gen - 1, req->d_id,
                      (double)(req->last_token_ns - req->first_token_ns) / 1e6 /
                      (double)(req->n_gen - 1));
    }
    if (status == BT_OK) {
        BT_RREQ_TRACE(req, "end", "ok: finish %s, prompt %zu, generated %zu, cached %u",
                      bt_rreq_finish_str(finish), req->n_prompt, req->n_gen,
                      req->cached_tokens);
    } else {
        BT_RREQ_TRACE(req, "end", "%s: %s, after %zu tokens", bt_status_str(status),
                      msg ? msg : "", req->n_gen);
    }
    usage.prompt_tokens = (uint32_t)req->n_prompt;
    usage.completion_tokens = (uint32_t)req->n_gen;
    usage.cached_tokens = req->cached_tokens;
    if (status == BT_OK) {
        bt_counter_inc(r->m.requests_ok);
        bt_counter_add(r->m.prompt_tokens, (double)req->n_prompt);
        bt_counter_add(r->m.cached_tokens, (double)req->cached_tokens);
        bt_histogram_observe(r->m.e2e, bt_elapsed_s(req->created_ns, bt_now_ns()));
        if (req->first_token_ns != 0) {
            bt_histogram_observe(r->m.decode_time,
                                 bt_elapsed_s(req->first_token_ns, req->last_token_ns));
        }
        bt_counter_inc(finish == BATON__V1__FINISH_REASON__FINISH_REASON_LENGTH
                       ? r->m.success_length : r->m.success_stop);
        BT_LOG_REQ(INFO, req->id, "done: prompt %zu generated %zu cached %u finish %s",
                   req->n_prompt, req->n_gen, req->cached_tokens,
                   bt_rreq_finish_str(finish));
    } else {
        bt_counter_inc(r->m.requests_failed);
        if (status == BT_ERR_CANCELLED) {
            /* a client that goes away is normal: info, not a warning */
            bt_counter_inc(r->m.success_abort);
            BT_LOG_REQ(INFO, req->id, "ended after %zu tokens: %s (%s)",
                       req->n_gen, msg ? msg : "", bt_status_str(status));
        } else {
            BT_LOG_REQ(WARN, req->id, "failed after %zu tokens: %s (%s)",
                       req->n_gen, msg ? msg : "", bt_status_str(status));
        }
    }
    req->told_end = true;
    req->sink->on_end(req, req->sink_arg, status, msg ? msg : bt_status_str(status),
                      status == BT_OK ? finish :
                      status == BT_ERR_CANCELLED ?
                          BATON__V1__FINISH_REASON__FINISH_REASON_CANCELLED :
                          BATON__V1__FINISH_REASON__FINISH_REASON_ERROR,
                      &usage);
}

/* Text still to come from the pool (request_detok.c) holds the end
 * that the client learns: it comes after that text, as it would have
 * with the text made on the loop. The request stops at once all the same
 * (its nodes and calls let go). A client that leaves needs no text. */
void bt_rreq_end(bt_rreq_t *req, bt_status_t status, const char *msg,
                 Baton__V1__FinishReason finish)
{
    bt_router_t *r = req->r;
    bool hold;

    if (bt_rreq_ended(req)) {
        return;
    }
    hold = status != BT_ERR_CANCELLED && req->n_given < req->n_gen;
    if (status == BT_OK && !req->stopped && !hold) {
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
    if (req->usage_ev != NULL) {
        event_del(req->usage_ev);
    }
    if (hold) {
        req->end_held = true;
        r->n_end_held++;
        req->held_status = status;
        req->held_finish = finish;
        snprintf(req->held_msg, sizeof(req->held_msg), "%s", msg ? msg : "");
    } else {
        bt_rreq_tell_end(req, status, msg, finish);
    }
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

void bt_rreq_end_release(bt_rreq_t *req)
{
    req->end_held = false;
    req->r->n_end_held--;
    if (req->held_status == BT_OK && !req->stopped) {
        bt_rreq_flush(req);
    }
    bt_rreq_tell_end(req, req->held_status,
                     req->held_msg[0] != '\0' ? req->held_msg : NULL,
                     req->held_finish);
    bt_rreq_maybe_free(req);
}

/* ---- start, cancel, admin ---- */

/* A rejection before any token: counted, and the sink learns it first. */
void bt_rreq_reject(bt_rreq_t *req, bt_status_t s, const char *msg)
{
    bt_counter_inc(req->r->m.requests_rejected);
    bt_rreq_end(req, s, msg, BATON__V1__FINISH_REASON__FINISH_REASON_ERROR);
}

void bt_rreq_queue_timeout_cb(evutil_socket_t fd, short what, void *arg)
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

/* Places a request that lost its decode node (`why`), or waits for room
 * when it has given the client nothing yet; otherwise it ends. */
void bt_rreq_dispatch(bt_rreq_t *req, const char *why)
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
void bt_rreq_requeue(bt_rreq_t *req, const char *why)
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

void bt_rreq_cancel(bt_rreq_t *req, const char *why)
{
    if (req->end_held) {
        /* ended, its last text still on the pool: the client needs none */
        BT_LOG_REQ(INFO, req->id, "cancelled: %s", why);
        req->held_status = BT_ERR_CANCELLED;
        req->held_finish = BATON__V1__FINISH_REASON__FINISH_REASON_CANCELLED;
        snprintf(req->held_msg, sizeof(req->held_msg), "%s", why);
        bt_rreq_end_release(req);
        return;
    }
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
        info.state = bt_rreq_state_name(req->state);
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
