/* The lifecycle of a decode request (bt_dreq_t): one transition function,
 * bt_dreq_to, owns the state, the node's running count and the return of
 * the blocks, and asserts that each transition is one of these:
 *
 *   NEW --Reservation sent--> LEASED --kv-complete--> RUNNING --end--> FINISHING
 *    |                          |                        |                 |
 *    | fail                     | fail, expiry, cancel   | fail            | final
 *    v                          v                        v                 v sent
 *  ENDED <---------------+    HELD                     ENDED <-------------+ or fail
 *    |                   |      | fence, kv-complete,
 *    | no step holds it  |      | --lease-fence-timeout,
 *    v                   |      v shutdown
 *  RELEASED <------------+-- RELEASED --no sent callback due--> freed
 *
 * RUNNING counts in node->running. A request in a step (in_step, the
 * batch's flag) is RUNNING, or ENDED by a cancel meanwhile; its blocks go
 * back after the step. HELD is a lease that died before its KV arrived
 * while a prefill node may still write into its blocks (docs/internals/
 * node.md "Lease fence"). The memory outlives RELEASED until every sent
 * callback came back (sends_out). */
#include "decode_int.h"

#include "base/log.h"

#include <assert.h>
#include <stdlib.h>

/* Allowed targets of each state, as bits. */
#define B(_s) (1u << (_s))
static const unsigned bt_dreq_next[BT_DREQ_N_STATES] = {
    [BT_DREQ_NEW]       = B(BT_DREQ_LEASED) | B(BT_DREQ_ENDED),
    [BT_DREQ_LEASED]    = B(BT_DREQ_RUNNING) | B(BT_DREQ_HELD) |
                          B(BT_DREQ_ENDED),
    [BT_DREQ_RUNNING]   = B(BT_DREQ_FINISHING) | B(BT_DREQ_ENDED),
    [BT_DREQ_FINISHING] = B(BT_DREQ_ENDED),
    [BT_DREQ_HELD]      = B(BT_DREQ_RELEASED),
    [BT_DREQ_ENDED]     = B(BT_DREQ_RELEASED),
    [BT_DREQ_RELEASED]  = 0,
};
#undef B

/* Gives every block back: the sequence's and what is still reserved. */
static void bt_dreq_release(bt_dreq_t *r)
{
    bt_node_t *node = r->node;

    bt_kvseq_destroy(r->seq);
    r->seq = NULL;
    if (r->resv != NULL && r->resv_next < r->n_resv) {
        bt_kvpool_reserve_abort(node->pool, r->resv + r->resv_next,
                                r->n_resv - r->resv_next);
    }
    r->resv_next = r->n_resv;
    if (r->lease_ev != NULL) {
        event_free(r->lease_ev);
        r->lease_ev = NULL;
    }
}

void bt_dreq_enter(bt_decode_t *dec, bt_dreq_t *r)
{
    r->dec = dec;
    r->state = BT_DREQ_NEW;
    bt_list_add_tail(&dec->reqs, &r->link);
    bt_node_inflight_begin(dec->node, BT_NODE_SERVES_DECODE);
}

void bt_dreq_to(bt_dreq_t *r, bt_dreq_state_t to)
{
    bt_node_t *node = r->node;
    const bt_dreq_state_t from = r->state;

    assert(to < BT_DREQ_N_STATES && (bt_dreq_next[from] & (1u << to)) != 0);
    if (from == BT_DREQ_RUNNING) {
        assert(node->running > 0);
        node->running--;
    }
    if (from == BT_DREQ_LEASED) {
        bt_gauge_add(node->g_waiting, -1.0);
    }
    if ((from == BT_DREQ_NEW || from == BT_DREQ_LEASED) &&
        to != BT_DREQ_LEASED) {
        bt_decode_writer_set(r, false);   /* opened as the Reservation left */
    }
    r->state = to;
    if (r->stem != NULL && to != BT_DREQ_LEASED && to != BT_DREQ_RUNNING &&
        to != BT_DREQ_FINISHING) {
        bt_dstem_owner_lost(r);   /* its KV never came: no stem */
    }
    switch (to) {
    case BT_DREQ_LEASED:
        bt_gauge_add(node->g_waiting, 1.0);
        break;
    case BT_DREQ_RUNNING:
        node->running++;
        break;
    case BT_DREQ_RELEASED:
        assert(!r->in_step);
        bt_dreq_release(r);
        bt_node_inflight_done(node, BT_NODE_SERVES_DECODE);
        bt_node_metrics_update(node);
        break;
    default:
        break;
    }
}

bool bt_dreq_open(const bt_dreq_t *r)
{
    return r->state <= BT_DREQ_FINISHING;
}

void bt_dreq_free(bt_dreq_t *r)
{
    bt_node_gram_close(r->gram);
    free(r->prompt);
    free(r->out);
    free(r->resv);
    free(r->pending);
    free(r->pending_lp);
    if (r->lease_ev != NULL) {
        event_free(r->lease_ev);
    }
    free(r);
}

void bt_dreq_put(bt_dreq_t *r)
{
    if (r->in_step || r->state == BT_DREQ_HELD) {
        return;
    }
    if (r->state != BT_DREQ_RELEASED) {
        bt_dreq_to(r, BT_DREQ_RELEASED);
    }
    if (r->sends_out > 0) {
        return;
    }
    bt_list_del(&r->link);
    bt_dreq_free(r);
}

void bt_dreq_hold_end(bt_dreq_t *r)
{
    bt_dreq_to(r, BT_DREQ_RELEASED);
    bt_dreq_put(r);
}

void bt_dreq_hold_try_end(bt_dreq_t *r)
{
    uint64_t pid = 0;

    /* a writer on this host stopped inside a copy for this lease finishes
     * that copy when it resumes: the blocks wait for it (the guard) */
    if (r->node->region != NULL &&
        bt_xfer_region_guard_busy(r->node->region, r->lease_id, &pid)) {
        if (!r->guard_wait) {
            BT_LOG_REQ(WARN, r->id, "lease %llu: process %llu is stopped or "
                       "stalled inside a copy into its blocks; they go back "
                       "once it leaves the copy or dies",
                       (unsigned long long)r->lease_id,
                       (unsigned long long)pid);
            r->guard_wait = true;
            bt_counter_inc(r->node->c_guard_waits);
        }
        bt_node_timer_arm(r->lease_ev, BT_DREQ_GUARD_POLL_MS);
        return;
    }
    bt_dreq_hold_end(r);
}

/* A lease that ends before its KV arrived (cancelled, expired, failed)
 * keeps its blocks until no prefill node can still write into them: until
 * a writer's end-of-writes message for the lease arrives (kv-complete or
 * the fence of an aborted prefill; both go out after a flush of the
 * writer's endpoint, so every byte it posted has landed), or at most
 * --lease-fence-timeout for a lease whose writer never got it or died.
 * docs/internals/node.md "Lease fence" says what this guarantees. */
void bt_dreq_fail(bt_dreq_t *r, bt_rpc_code_t code, const char *msg)
{
    if (bt_dreq_open(r)) {
        BT_LOG_REQ(INFO, r->id, "decode failed: %s (%s) after %u tokens", msg,
                   bt_rpc_code_name(code), r->n_out);
    }
    switch (r->state) {
    case BT_DREQ_LEASED:
        if (r->fork_of != 0) {
            /* a forked choice: nobody writes into its blocks */
            bt_rpc_call_fail_code(r->call, code, msg);
            bt_dreq_to(r, BT_DREQ_ENDED);
            break;
        }
        bt_rpc_call_fail_code(r->call, code, msg);
        bt_dreq_to(r, BT_DREQ_HELD);
        bt_node_timer_arm(r->lease_ev, (uint64_t)r->node->cfg.lease_fence_ms);
        BT_LOG_REQ(DEBUG, r->id, "lease %llu ended before its kv cache; its %u "
                   "blocks wait for the writer's fence",
                   (unsigned long long)r->lease_id, r->n_resv - r->resv_next);
        return;
    case BT_DREQ_NEW:
    case BT_DREQ_RUNNING:
    case BT_DREQ_FINISHING:
        bt_rpc_call_fail_code(r->call, code, msg);
        bt_dreq_to(r, BT_DREQ_ENDED);
        break;
    default:
        break;   /* the call is over already */
    }
    if (!r->in_step) {
        bt_dreq_put(r);
    }
}
