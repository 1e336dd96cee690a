/* Placement and the wait queue; see request.h, docs/internals/router.md.
 *
 * A request the cluster cannot place now (no decode node has room) waits
 * in a FIFO queue, oldest first so a burst is served in order, of at most
 * --max-queue requests for at most --queue-timeout in all, then ends with
 * BT_ERR_EXHAUSTED (429). Kicks (a node reported, a request ended, a node
 * joined or left) place the queue's head while it fits. A request no node
 * serves at all gets BT_ERR_PEER_UNREACHABLE (503). Both count as
 * rejected (request_end.c ends them: nothing here ends a request). */
#include "request_priv.h"

#include "base/clock.h"
#include "base/log.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A request's own prefill: its uncached prompt at its prefill node's
 * measured rate (the configured one until it reports); a prefill already
 * under way counts in full, as the router does not see its progress. */
static double bt_rreq_prefill_ms(bt_router_t *r, const bt_rreq_t *req)
{
    const bt_node_t *p = bt_registry_slot(r->registry, req->p_slot);
    uint64_t tokens = req->p_assigned_tokens, cached;
    double rate;

    if (p == NULL || r->node_gen[req->p_slot] != req->p_gen) {
        return 0.0;
    }
    cached = (uint64_t)req->reuse_blocks * p->block_size;
    tokens = cached < tokens ? tokens - cached : 0;
    rate = bt_decide_rate(&r->weights.disagg, p->load.prefill_rate);
    return rate > 0 ? (double)tokens / rate : 0.0;
}

/* select.h's stall budget of `node`: every request it decodes, or will
 * (placed there, its prefill running elsewhere), may spend slo x (N - 1)
 * ms between its first and its last token (N its max_tokens); it has spent
 * the time since its first token and needs one decode step (the node's
 * measured step) per token left. The least left over among the requests
 * that can still meet both SLOs; INFINITY when none can. One whose first
 * token came after the TTFT SLO, or will not come within it (its age plus
 * its own prefill, bt_rreq_prefill_ms), or with nothing left over, has
 * missed already: keeping the node free does not save it, and it does not
 * keep a new prompt from its own TTFT. A request of one token has no TPOT. */
double bt_rreq_stall_budget(void *arg, const bt_node_t *node)
{
    bt_router_t *r = arg;
    const bt_disagg_cfg_t *cfg = &r->weights.disagg;
    const double step = node->load.decode_step_ms;
    const uint64_t now = bt_now_ns();
    double least = INFINITY;
    bt_list_t *it, *next;

    bt_list_foreach_safe(it, next, &r->requests) {
        const bt_rreq_t *req = BT_CONTAINER_OF(it, bt_rreq_t, link);
        const uint64_t first = req->n_gen > 0 && req->first_token_ns > 0
                               ? req->first_token_ns : 0;
        double b;

        if (!req->assigned || req->state == BT_RREQ_DONE ||
            req->d_slot != node->slot || req->d_gen != r->node_gen[node->slot]) {
            continue;
        }
        b = bt_decide_seq_budget(
            cfg, (uint64_t)req->sampling->max_tokens, req->n_gen,
            first > 0 ? (double)(first - req->created_ns) / 1e6
                      : (double)(now - req->created_ns) / 1e6 +
                        bt_rreq_prefill_ms(r, req),
            first > 0 && now > first ? (double)(now - first) / 1e6 : 0.0, step);
        if (b > 0 && b < least) {
            least = b;
        }
    }
    return least;
}

/* What a failed placement means for a request: select's statuses mapped
 * to the ones clients see. */
bt_status_t bt_rreq_place_status(bt_status_t s)
{
    switch (s) {
    case BT_ERR_NOT_FOUND:        return BT_ERR_PEER_UNREACHABLE;
    case BT_ERR_TOO_LARGE:        return BT_ERR_INVALID_ARG;
    default:                      return s;
    }
}

/* Puts the request in the wait queue (its age decides its place).
 * BT_ERR_EXHAUSTED with err when the queue is full or the request has
 * waited its --queue-timeout already; BT_ERR_SHUTDOWN while draining. */
bt_status_t bt_rreq_enqueue(bt_rreq_t *req, char *err, size_t err_size)
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
    bt_rreq_set_state(req, BT_RREQ_QUEUED);
    BT_RREQ_TRACE(req, "queued", "%zu waiting, deadline in %llu ms", r->n_queued,
                  (unsigned long long)left);
    evtimer_add(req->queue_ev, &tv);
    return BT_OK;
}

/* Selects a pair among the nodes of one numerics id (NULL: any; root
 * NULL: the layout is unknown, no prefix to match). */
static bt_status_t bt_rreq_select_in(bt_rreq_t *req, const char *numerics,
                                     const uint8_t *root, bool dry,
                                     bt_select_req_t *sreq,
                                     bt_select_result_t *sel, size_t *match_p,
                                     char *err, size_t err_size)
{
    bt_router_t *r = req->r;
    uint8_t (*hashes)[BT_BLOCK_HASH_LEN] = NULL;
    size_t n_blocks = 0;
    bt_status_t s = BT_OK;

    if (root != NULL) {
        bt_router_model_hashes(r, root, req->prompt, req->n_prompt, req->gen,
                               req->n_gen, &hashes, &n_blocks);
    }
    sreq->numerics = numerics;
    sreq->block_hashes = hashes ? &hashes[0][0] : NULL;
    sreq->n_blocks = n_blocks;
    if (dry) {
        *match_p = bt_select_best_match(r->registry, &r->weights, sreq);
    } else {
        s = bt_select_pair(r->registry, &r->weights, sreq, sel, err, err_size);
    }
    free(hashes);
    sreq->block_hashes = NULL;
    return s;
}

/* How hopeful a failed placement is: waiting helps most first. */
static int bt_rreq_place_rank(bt_status_t s)
{
    return s == BT_ERR_EXHAUSTED ? 0 : s == BT_ERR_PEER_UNREACHABLE ? 1
           : s == BT_ERR_TOO_LARGE ? 2 : 3;
}

/* A request not placed yet may go to any numerics group of the cluster
 * (kv-spec v2): the groups are tried longest cached prefix first, then in
 * slot order, and the first that places it binds it (its root and every
 * later placement, failovers included, stay in that group). One group,
 * the usual case, is one selection. */
static bt_status_t bt_rreq_select_group(bt_rreq_t *req, bt_select_req_t *sreq,
                                        bt_select_result_t *sel,
                                        char *err, size_t err_size)
{
    enum { MAX_GROUPS = 8 };
    bt_router_t *r = req->r;
    char ids[MAX_GROUPS][BT_KV_NUMERICS_MAX + 1];
    uint8_t roots[MAX_GROUPS][BT_BLOCK_HASH_LEN];
    size_t match[MAX_GROUPS], order[MAX_GROUPS];
    size_t n = bt_registry_numerics(r->registry, bt_router_model_name(r), ids,
                                    MAX_GROUPS);
    bt_status_t s, worst = BT_OK;
    char e[256];

    if (n == 0 || bt_router_model_root(r, ids[0], req->salt, req->salt_len,
                                       roots[0]) != BT_OK) {
        /* no node, or none told the KV layout: selection says why */
        return bt_rreq_select_in(req, NULL, NULL, false, sreq, sel, NULL, err,
                                 err_size);
    }
    for (size_t i = 0; i < n; i++) {
        order[i] = i;
        match[i] = 0;
        if (i > 0) {
            (void)bt_router_model_root(r, ids[i], req->salt, req->salt_len,
                                       roots[i]);
        }
        if (n > 1) {
            (void)bt_rreq_select_in(req, ids[i], roots[i], true, sreq, NULL,
                                    &match[i], NULL, 0);
        }
    }
    for (size_t i = 1; i < n; i++) {   /* stable: longest match first */
        for (size_t j = i; j > 0 && match[order[j]] > match[order[j - 1]]; j--) {
            size_t t = order[j];

            order[j] = order[j - 1];
            order[j - 1] = t;
        }
    }
    for (size_t k = 0; k < n; k++) {
        size_t g = order[k];

        s = bt_rreq_select_in(req, ids[g], roots[g], false, sreq, sel, NULL, e,
                              sizeof(e));
        if (s == BT_OK) {
            snprintf(req->numerics, sizeof(req->numerics), "%s", ids[g]);
            memcpy(req->root, roots[g], sizeof(req->root));
            req->root_known = true;
            return BT_OK;
        }
        if (k == 0 || bt_rreq_place_rank(s) < bt_rreq_place_rank(worst)) {
            worst = s;
            snprintf(err, err_size, "%s", e);
        }
    }
    return worst;
}

/* Picks (P, D) for the request now and opens the decode stream from the
 * loop (go_ev): this never ends or frees a request, so callers may hold
 * pointers across it. BT_OK, or bt_select_pair's status with err. */
bt_status_t bt_rreq_place(bt_rreq_t *req, char *err, size_t err_size)
{
    bt_router_t *r = req->r;
    bt_select_result_t sel;
    bt_select_req_t sreq;
    size_t n_blocks;
    bt_status_t s;

    memset(&sreq, 0, sizeof(sreq));
    sreq.model = bt_router_model_name(r);
    sreq.prompt_tokens = (uint32_t)(req->n_prompt + req->n_gen);
    sreq.max_new_tokens = (uint32_t)req->sampling->max_tokens -
                          (uint32_t)(req->n_gen < (size_t)req->sampling->max_tokens ?
                                     req->n_gen : (size_t)req->sampling->max_tokens);
    sreq.exclude_prefill = req->exclude_p;
    sreq.exclude_decode = req->exclude_d;
    /* placed once: its KV is of that numerics id, so is every later pair */
    s = req->root_known
        ? bt_rreq_select_in(req, req->numerics, req->root, false, &sreq, &sel,
                            NULL, err, err_size)
        : bt_rreq_select_group(req, &sreq, &sel, err, err_size);
    if (s != BT_OK) {
        return s;
    }
    n_blocks = sreq.n_blocks;
    req->assigned = true;
    req->fork_lease = 0;   /* placed: a forked choice now goes alone */
    req->p_slot = sel.prefill->slot;
    req->p_gen = r->node_gen[sel.prefill->slot];
    req->d_slot = sel.decode->slot;
    req->d_gen = r->node_gen[sel.decode->slot];
    req->p_assigned_tokens = sreq.prompt_tokens;
    /* the prefill node may skip a kvstore that holds nothing past its own
     * cache; not after a failover, whose last blocks the kvstore may have
     * committed a moment before the router hears of them */
    req->reuse_known = req->n_gen == 0 && bt_registry_has_store(r->registry);
    req->reuse_blocks = (uint32_t)sel.matched_blocks;
    req->d_blocks = sel.decode_blocks;
    req->d_pending = true;
    snprintf(req->p_id, sizeof(req->p_id), "%s", sel.prefill->id);
    snprintf(req->d_id, sizeof(req->d_id), "%s", sel.decode->id);
    if (r->m.disagg_decisions[sel.decide.decision][sel.decide.reason] != NULL) {
        bt_counter_inc(r->m.disagg_decisions[sel.decide.decision][sel.decide.reason]);
    }
    /* one line per placement: the pair, and the rule's choice with its
     * inputs (decide.h) */
    BT_LOG_REQ(INFO, req->id, "pair prefill %s (score %.1f, %zu of %zu blocks cached, "
               "%u candidates) decode %s (score %.1f, %u candidates) numerics %s "
               "(%u nodes of other numerics not candidates) %s/%s "
               "(prompt %u, uncached D %llu P %llu, queued D %llu P %llu, "
               "transfer %.2f ms, cost local %.0f disagg %.0f, rate D %.2f P %.2f "
               "tokens/ms, stall D %.1f P %.1f ms of budget D %.1f P %.1f ms)",
               sel.prefill->id, sel.prefill_score, sel.matched_blocks, n_blocks,
               sel.prefill_candidates, sel.decode->id, sel.decode_score,
               sel.decode_candidates, req->numerics, sel.numerics_skipped,
               bt_decide_str(sel.decide.decision),
               bt_decide_reason_str(sel.decide.reason), sreq.prompt_tokens,
               (unsigned long long)sel.decide_in.uncached_d,
               (unsigned long long)sel.decide_in.uncached_p,
               (unsigned long long)sel.decide_in.queued_d,
               (unsigned long long)sel.decide_in.queued_p, sel.decide.xfer_ms,
               sel.decide.cost_local, sel.decide.cost_disagg,
               sel.decide.rate_d, sel.decide.rate_p,
               sel.decide.stall_d_ms, sel.decide.stall_p_ms,
               sel.decide_in.budget_d_ms, sel.decide_in.budget_p_ms);
    BT_RREQ_TRACE(req, "pair", "prefill %s (score %.2f, %zu of %zu blocks cached, "
                  "%u candidates) decode %s (score %.2f, %u candidates, %u blocks) %s/%s",
                  sel.prefill->id, sel.prefill_score, sel.matched_blocks, n_blocks,
                  sel.prefill_candidates, sel.decode->id, sel.decode_score,
                  sel.decode_candidates, sel.decode_blocks,
                  bt_decide_str(sel.decide.decision),
                  bt_decide_reason_str(sel.decide.reason));
    bt_rreq_set_state(req, BT_RREQ_RESERVING);
    event_active(req->go_ev, EV_TIMEOUT, 1);
    return BT_OK;
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
        bt_list_t *it = r->queue.next;

        r->kick_again = false;
        while (it != &r->queue) {
            bt_rreq_t *req = BT_CONTAINER_OF(it, bt_rreq_t, qlink);
            uint64_t epoch = r->queue_epoch;
            bt_list_t *next = it->next;
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
            it = next;
        }
    } while (r->kick_again);
    r->kicking = false;
}

/* The first placement: now, or in the queue. A request never jumps the
 * queue: while others wait it waits behind them. */
bt_status_t bt_rreq_admit(bt_rreq_t *req, char *err, size_t err_size)
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

