/* Node calls: DecodeStream (the reservation, then the tokens), Prefill,
 * a prefill retried on another prefill node, a decode node's failover
 * (DESIGN §2). The calls go through r->node_ops (node_ops.h). */
#include "request_priv.h"

#include "base/clock.h"
#include "base/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* A token for the client; the request ends when it was the last (a stop
 * string) or could not be given. With workers its text comes later
 * (request_detok.c), a stop with it. */
static void bt_rreq_give_token(bt_rreq_t *req, uint32_t token,
                               const Baton__V1__TokenLogprobs *lp)
{
    const char *why = NULL;
    bt_status_t s = bt_rreq_emit_token(req, token, lp, &why);

    if (s != BT_OK) {
        bt_rreq_end(req, s, why, BATON__V1__FINISH_REASON__FINISH_REASON_ERROR);
    } else if (req->stopped) {
        bt_rreq_end(req, BT_OK, NULL, BATON__V1__FINISH_REASON__FINISH_REASON_STOP);
    } else {
        bt_rreq_detok_queue(req);
    }
}

/* prefill */

static void bt_rreq_prefill_done(void *arg, const bt_rpc_result_t *result,
                                 const ProtobufCMessage *resp);

static void bt_rreq_start_prefill(bt_rreq_t *req)
{
    bt_router_t *r = req->r;
    Baton__V1__PrefillRequest pr = BATON__V1__PREFILL_REQUEST__INIT;
    Baton__V1__TenantInfo tenant = BATON__V1__TENANT_INFO__INIT;
    bt_node_t *p = bt_rreq_node(req, req->p_slot, req->p_gen);
    bt_rreq_cb_t *cb;
    uint32_t *ids;
    bt_status_t s;

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
    pr.prompt_logprobs = req->plp_want && !req->plp_done;
    pr.reusable_blocks = req->reuse_blocks;
    pr.reusable_blocks_known = req->reuse_known;
    cb->req = req;
    cb->seq = ++req->p_call_seq;
    req->p_gone_why[0] = '\0';
    /* Stamped before the call leaves: gRPC may send it from its own thread
     * while this one is descheduled, and the node's timeline (counted from
     * the call's arrival) must not land after the router's later events. */
    BT_RREQ_TRACE(req, "prefill", "on %s, %zu tokens", req->p_id,
                  req->n_prompt + req->n_gen);
    req->p_sent_us = bt_trace_offset_us(req->trace);
    s = r->node_ops->prefill(r, p, &pr, bt_rreq_time_left_ms(req),
                             bt_rreq_prefill_done, cb, &req->p_call);
    free(ids);
    if (s != BT_OK) {
        free(cb);
        req->p_call = NULL;
        if (s == BT_ERR_NOT_FOUND) {
            bt_rreq_end(req, BT_ERR_PEER_UNREACHABLE, "the prefill node left",
                        BATON__V1__FINISH_REASON__FINISH_REASON_ERROR);
        } else {
            bt_rreq_end(req, s, "cannot call the prefill node",
                        BATON__V1__FINISH_REASON__FINISH_REASON_ERROR);
        }
        return;
    }
    req->pending_cbs++;
    bt_rreq_set_state(req, BT_RREQ_PREFILLING);
    bt_rreq_renew_arm(req);
    if (req->n_prefills < UINT8_MAX) {
        req->n_prefills++;
    }
    BT_LOG_REQ(DEBUG, req->id, "prefill on %s, %zu tokens", req->p_id,
               req->n_prompt + req->n_gen);
}

/* Ends the calls on the request's pair and lets go of the pair and its
 * reservation, before the request is placed again. */
static void bt_rreq_unplace(bt_rreq_t *req)
{
    if (req->p_call != NULL) {
        bt_rreq_call_cancel(req, req->p_call);
        req->p_call_seq++; /* its callback is stale now */
        req->p_call = NULL;
    }
    if (req->d_call != NULL) {
        bt_rreq_call_cancel(req, req->d_call);
        req->d_call_seq++;
        req->d_call = NULL;
    }
    bt_rreq_renew_stop(req);
    bt_rreq_release_nodes(req);
    if (req->resv != NULL) {
        baton__v1__reservation__free_unpacked(req->resv, NULL);
        req->resv = NULL;
    }
}

/* Another prefill node and a new reservation. The failed one may have
 * died after its last write, with the decode node already computing from
 * those blocks (its first token not at the router yet): a retry into the
 * same reservation would overwrite them. So the decode stream is
 * cancelled (the node frees a running sequence, or fences a lease still
 * waiting, its blocks held until the old writer's fence) and the request
 * is placed again, the failed prefill node excluded. */
static void bt_rreq_retry_prefill(bt_rreq_t *req, const char *why)
{
    bt_router_t *r = req->r;

    bt_node_set_add(&req->exclude_p, req->p_slot);
    if (++req->prefill_attempts > r->cfg.prefill_retries) {
        bt_rreq_end(req, BT_ERR_PEER_DIED, why,
                    BATON__V1__FINISH_REASON__FINISH_REASON_ERROR);
        return;
    }
    bt_counter_inc(r->m.prefill_retries);
    BT_LOG_REQ(WARN, req->id, "prefill on %s failed (%s): retrying with a new "
               "reservation", req->p_id, why);
    BT_RREQ_TRACE(req, "prefill_retry", "%s failed (%s): lease %llu on %s "
                  "dropped, placing again", req->p_id, why,
                  req->resv ? (unsigned long long)req->resv->lease_id : 0ull,
                  req->d_id);
    bt_rreq_unplace(req);
    bt_rreq_dispatch(req, why);
}

static void bt_rreq_prefill_done(void *arg, const bt_rpc_result_t *result,
                                 const ProtobufCMessage *resp)
{
    bt_rreq_t *req = ((bt_rreq_cb_t *)arg)->req;
    const Baton__V1__PrefillResult *pr = (const Baton__V1__PrefillResult *)resp;

    if (!bt_rreq_call_done(arg, req->p_call_seq, &req->p_call)) {
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
        if (req->n_gen > req->d_base) {
            /* the decode node already streams tokens: the KV cache arrived
             * and only the answer was lost with the prefill node. Another
             * prefill would write into the blocks it decodes from (the
             * fault matrix's kill-prefill found tokens changed mid-stream) */
            BT_LOG_REQ(WARN, req->id, "prefill on %s failed (%s) after the decode "
                       "node began: its kv cache had arrived, not retried",
                       req->p_id, why);
            BT_RREQ_TRACE(req, "prefill_lost", "%s: %s, decode already began",
                          req->p_id, why);
            if (req->state == BT_RREQ_PREFILLING) {
                bt_rreq_set_state(req, BT_RREQ_DECODING);
            }
            bt_rreq_renew_stop(req);
            if (req->usage_end_held) {
                bt_rreq_end(req, BT_OK, NULL, req->d_finish);
            }
            return;
        }
        bt_rreq_retry_prefill(req, why);
        return;
    }
    /* usage counts the prompt's cached tokens; a failover's re-prefill of
     * prompt ++ generated may have cached more */
    req->cached_tokens = pr->cached_tokens < req->n_prompt
                         ? pr->cached_tokens : (uint32_t)req->n_prompt;
    bt_counter_add(req->r->m.prefix_queries, (double)req->n_prompt);
    bt_counter_add(req->r->m.prefix_hits, (double)req->cached_tokens);
    if (pr->stats != NULL) {
        bt_node_t *pn = bt_registry_find(req->r->registry, req->p_id);

        if (pn != NULL) {
            pn->cache_lookup_tokens += (uint64_t)req->n_prompt;
            pn->cache_hit_tokens += pr->stats->node_cached_tokens;
        }
        bt_counter_add(req->r->m.hits_node, (double)pr->stats->node_cached_tokens);
        bt_counter_add(req->r->m.hits_kvstore, (double)pr->stats->kvstore_cached_tokens);
        BT_RREQ_TRACE(req, "prefill_done", "%s: %u cached (%u node, %u kvstore), "
                      "%u computed, %llu bytes sent in %llu us",
                      req->p_id, pr->cached_tokens, pr->stats->node_cached_tokens,
                      pr->stats->kvstore_cached_tokens, pr->stats->computed_tokens,
                      (unsigned long long)pr->stats->transfer_bytes,
                      (unsigned long long)pr->stats->transfer_us);
    } else {
        BT_RREQ_TRACE(req, "prefill_done", "%s: %u cached", req->p_id,
                      pr->cached_tokens);
    }
    bt_rreq_trace_prefill(req, pr);
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
        bt_rreq_set_state(req, BT_RREQ_DECODING);
    }
    bt_rreq_renew_stop(req); /* the KV is on the decode node */
    if (req->plp_want && !req->plp_done && !bt_rreq_prompt_lp(req, pr)) {
        return;
    }
    /* the decode stream may have delivered this token already */
    if (req->n_gen == req->d_base) {
        bt_rreq_give_token(req, pr->first_token, pr->first_logprobs);
    } else if (req->gen[req->d_base] != pr->first_token) {
        BT_LOG_REQ(ERROR, req->id, "prefill's first token %u differs from the "
                   "decode node's %u", pr->first_token, req->gen[req->d_base]);
    }
    if ((req->plp_end_held || req->usage_end_held) && !bt_rreq_ended(req)) {
        bt_rreq_end(req, BT_OK, NULL, req->d_finish);
    }
}

/* The prefill node did not answer within BT_RREQ_USAGE_WAIT_MS of the
 * decode node's end: the client gets its answer, the usage without the
 * cached tokens it could not learn. */
void bt_rreq_usage_wait_cb(evutil_socket_t fd, short what, void *arg)
{
    bt_rreq_t *req = arg;

    (void)fd;
    (void)what;
    if (!bt_rreq_ended(req) && req->usage_end_held) {
        BT_LOG_REQ(INFO, req->id, "prefill on %s did not answer within %d ms "
                   "of the decode's end: usage without its cached tokens",
                   req->p_id, BT_RREQ_USAGE_WAIT_MS);
        bt_rreq_end(req, BT_OK, NULL, req->d_finish);
    }
}

/* decode stream */

static void bt_rreq_on_decode_msg(void *arg, const ProtobufCMessage *m)
{
    bt_rreq_cb_t *cb = arg;
    bt_rreq_t *req = cb->req;
    const Baton__V1__DecodeResponse *msg = (const Baton__V1__DecodeResponse *)m;
    size_t i;

    if (bt_rreq_ended(req) || cb->seq != req->d_call_seq) {
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
        BT_RREQ_TRACE(req, "reserved", "%zu blocks on %s (lease %llu)",
                      req->resv ? req->resv->n_block_ids : 0, req->d_id,
                      req->resv ? (unsigned long long)req->resv->lease_id : 0ull);
        BT_LOG_REQ(DEBUG, req->id, "reserved %zu blocks on %s (lease %llu)",
                   req->resv ? req->resv->n_block_ids : 0, req->d_id,
                   req->resv ? (unsigned long long)req->resv->lease_id : 0ull);
        /* a forked choice decodes on its leader's KV: no prefill */
        if (bt_rreq_fork_reserved(req) || bt_rreq_ended(req)) {
            return;
        }
        bt_rreq_start_prefill(req);
        return;
    }
    case BATON__V1__DECODE_RESPONSE__KIND_TOKENS:
        bt_rreq_renew_stop(req); /* the decode node has the KV */
        for (i = 0; i < msg->tokens->n_token_ids && !bt_rreq_ended(req); i++) {
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
            bt_rreq_give_token(req, t, lp);
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
        if (req->plp_want && !req->plp_done) {
            req->plp_end_held = true;   /* the prompt's logprobs come first */
            return;
        }
        if (req->state == BT_RREQ_PREFILLING) {
            /* the prefill's answer (the usage's cached tokens) is on its
             * way: the end waits for it, briefly */
            static const struct timeval wait = {
                BT_RREQ_USAGE_WAIT_MS / 1000, BT_RREQ_USAGE_WAIT_MS % 1000 * 1000,
            };

            req->usage_end_held = true;
            evtimer_add(req->usage_ev, &wait);
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
    bt_rreq_t *req = ((bt_rreq_cb_t *)arg)->req;
    char why[256];

    if (!bt_rreq_call_done(arg, req->d_call_seq, &req->d_call)) {
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
    if (bt_rreq_fork_failed(req, result->code, why)) {
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

void bt_rreq_open_decode(bt_rreq_t *req)
{
    bt_router_t *r = req->r;
    Baton__V1__DecodeRequest dr = BATON__V1__DECODE_REQUEST__INIT;
    Baton__V1__TenantInfo tenant = BATON__V1__TENANT_INFO__INIT;
    bt_node_t *d = bt_rreq_node(req, req->d_slot, req->d_gen);
    bt_rreq_cb_t *cb;
    bt_status_t s;

    if ((cb = malloc(sizeof(*cb))) == NULL) {
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
    bt_rreq_fork_fill(req, &dr);
    cb->req = req;
    cb->seq = ++req->d_call_seq;
    req->d_gone_why[0] = '\0';
    req->d_base = req->n_gen;
    req->d_next = req->n_gen;
    req->d_final = false;
    bt_rreq_set_state(req, BT_RREQ_RESERVING);
    s = r->node_ops->decode_stream(r, d, &dr, bt_rreq_time_left_ms(req),
                                   bt_rreq_on_decode_msg, bt_rreq_on_decode_done,
                                   cb, &req->d_call);
    if (s == BT_OK) {
        req->pending_cbs++;
    } else {
        free(cb);
        req->d_call = NULL;
        bt_rreq_failover(req, s == BT_ERR_NOT_FOUND ? "the decode node left"
                                                    : "cannot call the decode node");
    }
}

/* The placed pair is opened from the loop (request_queue.c sets go_ev). */
void bt_rreq_go_cb(evutil_socket_t fd, short what, void *arg)
{
    bt_rreq_t *req = arg;

    (void)fd;
    (void)what;
    if (!bt_rreq_ended(req) && req->state == BT_RREQ_RESERVING && req->d_call == NULL) {
        bt_rreq_open_decode(req);
    }
}

/* The decode node failed: reserve elsewhere and re-prefill what the client
 * already has (DESIGN §2: KV-preserving failover). */
void bt_rreq_failover(bt_rreq_t *req, const char *why)
{
    bt_router_t *r = req->r;

    bt_rreq_unplace(req);
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
    BT_RREQ_TRACE(req, "failover", "decode %s: %s, after %zu tokens", req->d_id, why,
                  req->n_gen);
    bt_node_set_add(&req->exclude_d, req->d_slot);
    bt_rreq_dispatch(req, why);
}

