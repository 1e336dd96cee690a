#include "select.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static bool bt_select_better(double score, const bt_node_t *node,
                             double best_score, const bt_node_t *best)
{
    if (best == NULL || score > best_score) {
        return true;
    }
    if (score < best_score) {
        return false;
    }
    if (node->last_chosen != best->last_chosen) {
        return node->last_chosen < best->last_chosen;
    }
    return node->slot < best->slot;
}

/* The node serves the request's model in `role` with its numerics id. */
static bool bt_select_serves(const bt_node_t *node, const bt_select_req_t *req,
                             unsigned role)
{
    return (node->role & role) && strcmp(node->model, req->model) == 0 &&
           (req->numerics == NULL || strcmp(node->numerics, req->numerics) == 0);
}

/* Nodes of the model that the numerics id rules out (for the log). */
static unsigned bt_select_other_numerics(bt_registry_t *reg,
                                         const bt_select_req_t *req)
{
    unsigned n = 0;

    for (unsigned i = 0; req->numerics != NULL && i < BT_ROUTER_MAX_NODES; i++) {
        bt_node_t *node = bt_registry_slot(reg, i);

        n += node != NULL && (node->role & BT_NODE_ROLE_BOTH) &&
             strcmp(node->model, req->model) == 0 &&
             strcmp(node->numerics, req->numerics) != 0;
    }
    return n;
}

/* " of numerics 'X'" when the request is bound to one (for errors). */
static const char *bt_select_numerics_str(const bt_select_req_t *req,
                                          char *buf, size_t size)
{
    if (req->numerics == NULL) {
        return "";
    }
    snprintf(buf, size, " of numerics '%s'", req->numerics);
    return buf;
}

static uint32_t bt_select_blocks_needed(const bt_node_t *node,
                                        const bt_select_req_t *req)
{
    uint64_t tokens = (uint64_t)req->prompt_tokens + req->max_new_tokens;

    return (uint32_t)((tokens + node->block_size - 1) / node->block_size);
}

uint32_t bt_select_free_blocks(const bt_node_t *node)
{
    uint64_t held = (uint64_t)node->resv_pending_blocks +
                    node->resv_unreported_blocks;

    return node->load.free_blocks > held
           ? (uint32_t)(node->load.free_blocks - held) : 0;
}

/* A decode node that may take the request at all (its room aside). */
static bool bt_select_decode_usable(const bt_node_t *node,
                                    const bt_select_req_t *req)
{
    return !node->load.draining &&
           !bt_node_set_has(&req->exclude_decode, node->slot);
}

static bool bt_select_decode_ok(const bt_node_t *node,
                                const bt_select_req_t *req)
{
    uint32_t need = bt_select_blocks_needed(node, req);

    return bt_select_decode_usable(node, req) &&
           bt_select_free_blocks(node) >= need &&
           (node->refused_blocks == 0 || need < node->refused_blocks);
}

static double bt_select_decode_score(const bt_node_t *node,
                                     const bt_select_weights_t *w)
{
    return (double)bt_select_free_blocks(node) * w->w_free -
           ((double)node->load.running_sequences + node->assigned) * w->w_batch;
}

/* Sets *matched_p to the prefix the node can reuse, its own cache first
 * then the kvstore replicas, and *store_p to the kvstore's part of it. */
static double bt_select_prefill_score(bt_registry_t *reg, bt_node_t *node,
                                      const bt_select_weights_t *w,
                                      const bt_select_req_t *req,
                                      size_t *matched_p, size_t *store_p)
{
    const bt_prefix_index_t *idx = bt_registry_index(reg);
    const uint64_t *stores = bt_registry_store_mask(reg);
    uint64_t mask[BT_PREFIX_WORDS];
    size_t own = bt_prefix_index_match(idx, req->block_hashes, req->n_blocks,
                                       node->slot);
    size_t all = own;
    bool any_store = false;

    for (unsigned i = 0; i < BT_PREFIX_WORDS; i++) {
        mask[i] = stores[i];
        any_store = any_store || stores[i] != 0;
    }
    if (any_store) {
        mask[node->slot / 64] |= 1ull << (node->slot % 64);
        all = bt_prefix_index_match_any(idx, req->block_hashes, req->n_blocks,
                                        mask);
    }
    *matched_p = all;
    *store_p = all - own;
    return (double)own * node->block_size * w->w_hit +
           (double)(all - own) * node->block_size * w->w_store_hit -
           (double)(node->load.queued_prefill_tokens +
                    node->assigned_prefill_tokens) * w->w_load;
}

static void bt_select_record_prefill(bt_registry_t *reg, bt_select_result_t *r,
                                     const bt_select_req_t *req)
{
    uint64_t computed = req->prompt_tokens -
                        r->matched_blocks * r->prefill->block_size;

    r->prefill->last_chosen = bt_registry_next_choice(reg);
    r->prefill->assigned_prefill_tokens += computed;
}

/* The best prefill node for the request other than `skip` (NULL: none
 * skipped) into r's prefill fields; *n_prefill_p counts the nodes that
 * serve the model in that role (skip included). */
static void bt_select_best_prefill(bt_registry_t *reg,
                                   const bt_select_weights_t *w,
                                   const bt_select_req_t *req,
                                   const bt_node_t *skip,
                                   bt_select_result_t *r, size_t *n_prefill_p)
{
    size_t n_prefill = 0;

    r->prefill = NULL;
    r->prefill_candidates = 0;
    for (unsigned i = 0; i < BT_ROUTER_MAX_NODES; i++) {
        bt_node_t *node = bt_registry_slot(reg, i);
        size_t matched, store;
        double score;

        if (node == NULL ||
            !bt_select_serves(node, req, BT_NODE_ROLE_PREFILL)) {
            continue;
        }
        n_prefill++;
        if (node == skip || node->load.draining ||
            bt_node_set_has(&req->exclude_prefill, node->slot)) {
            continue;
        }
        r->prefill_candidates++;
        score = bt_select_prefill_score(reg, node, w, req, &matched, &store);
        if (bt_select_better(score, node, r->prefill_score, r->prefill)) {
            r->prefill = node;
            r->prefill_score = score;
            r->matched_blocks = matched;
            r->store_blocks = store;
        }
    }
    *n_prefill_p = n_prefill;
}

size_t bt_select_best_match(bt_registry_t *reg, const bt_select_weights_t *w,
                            const bt_select_req_t *req)
{
    size_t best = 0;

    for (unsigned i = 0; i < BT_ROUTER_MAX_NODES; i++) {
        bt_node_t *node = bt_registry_slot(reg, i);
        size_t matched, store;

        if (node == NULL || !bt_select_serves(node, req, BT_NODE_ROLE_PREFILL) ||
            node->load.draining) {
            continue;
        }
        (void)bt_select_prefill_score(reg, node, w, req, &matched, &store);
        best = matched > best ? matched : best;
    }
    return best;
}

bt_status_t bt_select_prefill(bt_registry_t *reg, const bt_select_weights_t *w,
                              const bt_select_req_t *req,
                              bt_select_result_t *result_p, char *err,
                              size_t err_size)
{
    bt_select_result_t r;
    size_t n_prefill = 0;
    char nbuf[BT_KV_NUMERICS_MAX + 24];
    const char *num = bt_select_numerics_str(req, nbuf, sizeof(nbuf));

    memset(&r, 0, sizeof(r));
    bt_select_best_prefill(reg, w, req, NULL, &r, &n_prefill);
    if (r.prefill == NULL) {
        snprintf(err, err_size, n_prefill == 0 ?
                 "no prefill node%s serves model '%s'" :
                 "every prefill node%s of model '%s' is draining or failed this "
                 "request", num, req->model);
        return n_prefill == 0 ? BT_ERR_NOT_FOUND : BT_ERR_EXHAUSTED;
    }
    bt_select_record_prefill(reg, &r, req);
    *result_p = r;
    return BT_OK;
}

static uint64_t bt_select_uncached(const bt_node_t *node,
                                   const bt_select_req_t *req, size_t matched)
{
    uint64_t cached = (uint64_t)matched * node->block_size;

    return req->prompt_tokens > cached ? req->prompt_tokens - cached : 0;
}

static uint64_t bt_select_queued(const bt_node_t *node)
{
    return node->load.queued_prefill_tokens + node->assigned_prefill_tokens;
}

/* n's stall budget (select.h); INFINITY without a guard. */
static double bt_select_budget(const bt_select_weights_t *w, const bt_node_t *n)
{
    return w->stall_budget_ms != NULL ? w->stall_budget_ms(w->stall_arg, n)
                                      : INFINITY;
}

/* The transfer tail P's heartbeats report towards D; -1 when none. */
static double bt_select_xfer_ms(const bt_node_t *p, const bt_node_t *d)
{
    for (size_t i = 0; i < p->n_xfers; i++) {
        if (p->xfers[i].ops > 0 && strcmp(p->xfers[i].decode_node, d->id) == 0) {
            return p->xfers[i].latency_p50_ms;
        }
    }
    return -1;
}

/* D (r->decode) can prefill: weighs it against r->prefill, the best other
 * prefill node (NULL: none), and leaves r->prefill the one that prefills. */
static void bt_select_local_or_remote(bt_registry_t *reg,
                                      const bt_select_weights_t *w,
                                      const bt_select_req_t *req,
                                      bt_select_result_t *r)
{
    bt_node_t *d = r->decode, *p = r->prefill;
    size_t d_matched, d_store;
    double d_score = bt_select_prefill_score(reg, d, w, req, &d_matched, &d_store);
    bt_decide_in_t *in = &r->decide_in;

    r->prefill_candidates++;
    if (p == NULL) {
        r->decide.decision = BT_DECIDE_LOCAL;
        r->decide.reason = BT_DECIDE_NO_REMOTE;
    } else {
        in->prompt_tokens = req->prompt_tokens;
        in->uncached_d = bt_select_uncached(d, req, d_matched);
        in->uncached_p = bt_select_uncached(p, req, r->matched_blocks);
        in->queued_d = bt_select_queued(d);
        in->queued_p = bt_select_queued(p);
        in->p_decodes = (p->role & BT_NODE_ROLE_DECODE) != 0;
        in->xfer_ms = bt_select_xfer_ms(p, d);
        in->rate_d = d->load.prefill_rate;
        in->rate_p = p->load.prefill_rate;
        in->budget_d_ms = bt_select_budget(w, d);
        in->budget_p_ms = in->p_decodes ? bt_select_budget(w, p) : INFINITY;
        r->decide = bt_decide(&w->disagg, in);
    }
    if (r->decide.decision == BT_DECIDE_LOCAL) {
        r->prefill = d;
        r->prefill_score = d_score;
        r->matched_blocks = d_matched;
        r->store_blocks = d_store;
    }
}

/* The best prefill node decodes too (D does not prefill): keeping the KV
 * there would stall its own decodes past their stall budget (auto only). */
static bool bt_select_colocated_stalls(const bt_select_weights_t *w,
                                       const bt_select_req_t *req,
                                       const bt_select_result_t *r)
{
    const bt_node_t *p = r->prefill;

    return w->disagg.mode == BT_DISAGG_AUTO &&
           bt_decide_stalls(&w->disagg,
                            bt_select_queued(p) +
                            bt_select_uncached(p, req, r->matched_blocks),
                            p->load.prefill_rate, bt_select_budget(w, p));
}

bt_status_t bt_select_pair(bt_registry_t *reg, const bt_select_weights_t *w,
                           const bt_select_req_t *req,
                           bt_select_result_t *result_p, char *err,
                           size_t err_size)
{
    bt_select_result_t r;
    size_t n_prefill = 0, n_decode = 0, n_usable = 0, n_fit = 0;
    uint32_t largest = 0;
    bool d_prefills;
    unsigned i;
    char nbuf[BT_KV_NUMERICS_MAX + 24];
    const char *num = bt_select_numerics_str(req, nbuf, sizeof(nbuf));

    memset(&r, 0, sizeof(r));
    for (i = 0; i < BT_ROUTER_MAX_NODES; i++) {
        bt_node_t *node = bt_registry_slot(reg, i);
        double score;

        if (node == NULL ||
            !bt_select_serves(node, req, BT_NODE_ROLE_DECODE)) {
            continue;
        }
        n_decode++;
        if (bt_select_decode_usable(node, req)) {
            n_usable++;
            n_fit += node->total_blocks >= bt_select_blocks_needed(node, req);
            largest = node->total_blocks > largest ? node->total_blocks : largest;
        }
        if (bt_select_decode_ok(node, req)) {
            r.decode_candidates++;
            score = bt_select_decode_score(node, w);
            if (bt_select_better(score, node, r.decode_score, r.decode)) {
                r.decode = node;
                r.decode_score = score;
            }
        }
    }
    /* a decode node that can prefill is weighed against the best other
     * prefill node, so one pass finds that one (D's own score aside) */
    d_prefills = r.decode != NULL && (r.decode->role & BT_NODE_ROLE_PREFILL) &&
                 !r.decode->load.draining &&
                 !bt_node_set_has(&req->exclude_prefill, r.decode->slot);
    bt_select_best_prefill(reg, w, req, d_prefills ? r.decode : NULL, &r,
                           &n_prefill);

    if (n_prefill == 0 || n_decode == 0) {
        snprintf(err, err_size, "no %s node%s serves model '%s'",
                 n_prefill == 0 ? "prefill" : "decode", num, req->model);
        return BT_ERR_NOT_FOUND;
    }
    if (r.prefill == NULL && !d_prefills) {
        snprintf(err, err_size, "all %zu prefill nodes%s of model '%s' are "
                 "draining or failed this request", n_prefill, num, req->model);
        return BT_ERR_PEER_UNREACHABLE;
    }
    if (n_usable == 0) {
        snprintf(err, err_size, "all %zu decode nodes%s of model '%s' are "
                 "draining or failed this request", n_decode, num, req->model);
        return BT_ERR_PEER_UNREACHABLE;
    }
    if (n_fit == 0) {
        snprintf(err, err_size, "%u tokens need more KV blocks than the "
                 "largest decode node%s of model '%s' holds (%u)",
                 req->prompt_tokens + req->max_new_tokens, num, req->model,
                 largest);
        return BT_ERR_TOO_LARGE;
    }
    if (r.decode == NULL) {
        snprintf(err, err_size, "no decode node%s of model '%s' has room for "
                 "%u tokens now", num, req->model,
                 req->prompt_tokens + req->max_new_tokens);
        return BT_ERR_EXHAUSTED;
    }
    if (d_prefills) {
        bt_select_local_or_remote(reg, w, req, &r);
    } else if ((r.prefill->role & BT_NODE_ROLE_DECODE) &&
               bt_select_decode_ok(r.prefill, req) &&
               w->disagg.mode != BT_DISAGG_ALWAYS &&
               !bt_select_colocated_stalls(w, req, &r)) {
        /* the best prefill node decodes too: the KV stays there */
        r.decode = r.prefill;
        r.decode_score = bt_select_decode_score(r.prefill, w);
        r.decide.decision = BT_DECIDE_LOCAL;
        r.decide.reason = BT_DECIDE_COLOCATED;
    } else {
        bool could = (r.prefill->role & BT_NODE_ROLE_DECODE) &&
                     bt_select_decode_ok(r.prefill, req);

        r.decide.decision = BT_DECIDE_DISAGG;
        r.decide.reason = !could ? BT_DECIDE_NO_LOCAL
                          : w->disagg.mode == BT_DISAGG_ALWAYS ? BT_DECIDE_FORCED
                          : BT_DECIDE_TPOT;
    }

    bt_select_record_prefill(reg, &r, req);
    r.numerics_skipped = bt_select_other_numerics(reg, req);
    r.decode->last_chosen = bt_registry_next_choice(reg);
    r.decode->assigned++;
    r.decode_blocks = bt_select_blocks_needed(r.decode, req);
    r.decode->resv_pending_blocks += r.decode_blocks;
    *result_p = r;
    return BT_OK;
}

void bt_select_release(bt_node_t *prefill, bt_node_t *decode,
                       uint32_t prefill_tokens)
{
    if (prefill != NULL && prefill->live) {
        prefill->assigned_prefill_tokens =
            prefill->assigned_prefill_tokens > prefill_tokens ?
            prefill->assigned_prefill_tokens - prefill_tokens : 0;
    }
    if (decode != NULL && decode->live && decode->assigned > 0) {
        decode->assigned--;
    }
}

static void bt_select_resv_unpend(bt_node_t *decode, uint32_t blocks)
{
    decode->resv_pending_blocks = decode->resv_pending_blocks > blocks
                                  ? decode->resv_pending_blocks - blocks : 0;
}

void bt_select_resv_answered(bt_node_t *decode, uint32_t blocks)
{
    if (decode != NULL && decode->live) {
        bt_select_resv_unpend(decode, blocks);
        decode->resv_unreported_blocks += blocks;
    }
}

void bt_select_resv_dropped(bt_node_t *decode, uint32_t blocks)
{
    if (decode != NULL && decode->live) {
        bt_select_resv_unpend(decode, blocks);
    }
}

void bt_select_resv_refused(bt_node_t *decode, uint32_t blocks)
{
    if (decode != NULL && decode->live) {
        bt_select_resv_unpend(decode, blocks);
        if (decode->refused_blocks == 0 || blocks < decode->refused_blocks) {
            decode->refused_blocks = blocks;
        }
    }
}
