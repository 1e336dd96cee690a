/* The lifecycle of a prefill job (bt_pjob_t): one transition function,
 * bt_pjob_to, owns the state, the FIFO with node->queued_prefill_tokens,
 * the count in flight and the job's memory, and asserts that each
 * transition is one of these:
 *
 *   NEW --prefix found--> QUEUED --last chunk--> SENT --local: replied--> FREED
 *    |                      |                     |
 *    | fail                 | fail, cancel,       | stream done (replied
 *    |                      | stream failed       | or not), fail
 *    +--------------------->+-------> ENDING <----+
 *                                     |  ^  |
 *                          fence sent |  |  | no fence needed (kv landed,
 *                                     v  |  | --role both, teardown)
 *                               FENCING -+  v
 *                                  |  refused
 *                                  +------> FREED
 *                              fence landed
 *
 * ENDING waits for a step that holds the job (in_step, the scheduler's);
 * step_done ends it then. A job that ends without its kv-complete having
 * landed fences the lease first, and answers its error only after the
 * fence (docs/internals/node.md "Lease fence"). */
#include "prefill_int.h"
#include "node_kvs.h"
#include "node_lp.h"

#include "base/clock.h"
#include "base/log.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Allowed targets of each state, as bits. */
#define B(_s) (1u << (_s))
static const unsigned bt_pjob_next[BT_PJOB_N_STATES] = {
    [BT_PJOB_NEW]     = B(BT_PJOB_QUEUED) | B(BT_PJOB_ENDING),
    [BT_PJOB_QUEUED]  = B(BT_PJOB_SENT) | B(BT_PJOB_ENDING),
    [BT_PJOB_SENT]    = B(BT_PJOB_ENDING) | B(BT_PJOB_FREED),
    [BT_PJOB_ENDING]  = B(BT_PJOB_ENDING) | B(BT_PJOB_FENCING) |
                        B(BT_PJOB_FREED),
    [BT_PJOB_FENCING] = B(BT_PJOB_ENDING) | B(BT_PJOB_FREED),
    [BT_PJOB_FREED]   = 0,
};
#undef B

/* Tests: BATON_TEST_PREFILL_REPLY_DELAY_MS holds the loop that long before
 * each answer, so the decode node's end reaches the router first (a race
 * max_tokens 1 has by nature; tests/integration/router_usage_race.py). */
static void bt_pjob_test_reply_delay(void)
{
    static long delay_ms = -1;

    bt_node_test_pause("BATON_TEST_PREFILL_REPLY_DELAY_MS", &delay_ms);
}

static void bt_pjob_free(bt_pjob_t *j)
{
    bt_node_t *node = j->node;

    if (j->end_ev != NULL) {
        event_free(j->end_ev);
    }
    bt_xfer_stream_destroy(j->stream);
    /* full blocks stay cached here (KV events announce them) */
    bt_kvseq_destroy(j->seq);
    bt_node_gram_close(j->gram);
    free(j->tokens);
    free(j->u32);
    free(j->dst);
    free(j->sl);
    bt_plp_free(j);
    bt_ptl_free(&j->tl);
    free(j);
    bt_node_inflight_done(node, BT_NODE_SERVES_PREFILL);
    bt_node_metrics_update(node);
}

void bt_pjob_enter(bt_prefill_t *pf, bt_pjob_t *j)
{
    j->pf = pf;
    j->state = BT_PJOB_NEW;
    bt_list_init(&j->link);
    bt_node_inflight_begin(pf->node, BT_NODE_SERVES_PREFILL);
}

void bt_pjob_to(bt_pjob_t *j, bt_pjob_state_t to)
{
    bt_node_t *node = j->node;
    const bt_pjob_state_t from = j->state;

    assert(to < BT_PJOB_N_STATES && (bt_pjob_next[from] & (1u << to)) != 0);
    if (from == BT_PJOB_QUEUED) {
        assert(node->queued_prefill_tokens >= j->n - j->next_tok);
        node->queued_prefill_tokens -= j->n - j->next_tok;
        bt_list_del(&j->link);
        bt_gauge_add(node->g_waiting, -1.0);
    }
    j->state = to;
    switch (to) {
    case BT_PJOB_QUEUED:
        node->queued_prefill_tokens += j->n - j->next_tok;
        bt_list_add_tail(&j->pf->queue, &j->link);
        bt_gauge_add(node->g_waiting, 1.0);
        break;
    case BT_PJOB_FREED:
        /* callbacks of the teardown see FREED and return */
        bt_pjob_free(j);
        break;
    default:
        break;
    }
}

void bt_pjob_advance(bt_pjob_t *j)
{
    const uint32_t len = j->chunk_b - j->chunk_a;

    assert(j->state == BT_PJOB_QUEUED && j->next_tok == j->chunk_a &&
           j->node->queued_prefill_tokens >= len);
    j->node->queued_prefill_tokens -= len;
    j->next_tok = j->chunk_b;
}

void bt_pjob_publish(bt_pjob_t *j)
{
    const uint32_t bs = bt_kvpool_geom(j->node->pool)->block_size;
    uint32_t from = j->cached / bs, to = j->n / bs;

    if (bt_node_kvs_on(j->node) && j->seq != NULL && to > from) {
        bt_node_kvs_publish(j->node, j->seq, j->u32 + (size_t)from * bs,
                            from, to);
    }
}

void bt_pjob_reply(bt_pjob_t *j)
{
    Baton__V1__PrefillResult res = BATON__V1__PREFILL_RESULT__INIT;
    Baton__V1__PrefillStats st = BATON__V1__PREFILL_STATS__INIT;
    Baton__V1__TokenLogprobs lp;
    Baton__V1__TopLogprob tops[BT_SAMPLE_MAX_LOGPROBS];
    Baton__V1__TopLogprob *top_ptrs[BT_SAMPLE_MAX_LOGPROBS];
    void *plp_mem = NULL;
    bt_ptl_proto_t tl;

    st.computed_tokens = j->n - j->cached;
    st.node_cached_tokens = j->cached - j->store_cached;
    st.kvstore_cached_tokens = j->store_cached;
    st.queue_us = j->queue_us;
    st.compute_us = j->compute_us;
    st.transfer_us = bt_now_us() - j->xfer_start_us;
    st.transfer_bytes = j->bytes;
    res.first_token = (uint32_t)j->first;
    if (j->sp.logprobs >= 0) {
        bt_node_lp_to_proto(&j->first_lp, &lp, tops, top_ptrs);
        res.first_logprobs = &lp;
    }
    if (j->prompt_lp && bt_plp_to_proto(j, &res, &plp_mem) != BT_OK) {
        bt_rpc_call_fail_code(j->call, BT_RPC_RESOURCE_EXHAUSTED,
                              "out of memory for the prompt logprobs");
        j->replied = true;
        return;
    }
    res.stats = &st;
    res.cached_tokens = j->cached;
    res.finish_reason = j->finish == BT_FINISH_STOP
                        ? BATON__V1__FINISH_REASON__FINISH_REASON_STOP
                        : j->finish == BT_FINISH_LENGTH
                        ? BATON__V1__FINISH_REASON__FINISH_REASON_LENGTH
                        : BATON__V1__FINISH_REASON__FINISH_REASON_UNSPECIFIED;
    bt_ptl_to_proto(&j->tl, &res, &tl);
    bt_pjob_test_reply_delay();
    bt_rpc_call_reply(j->call, &res.base);
    free(plp_mem);
    bt_ptl_proto_free(&tl);
    j->replied = true;
    bt_histogram_observe(j->node->h_prefill, (double)j->compute_us / 1e6);
    BT_LOG_REQ(INFO, j->id, "prefill answered: %u tokens computed, %u cached, "
               "%llu bytes transferred in %llu us (queued %llu us, compute "
               "%llu us)", st.computed_tokens, j->cached,
               (unsigned long long)st.transfer_bytes,
               (unsigned long long)st.transfer_us,
               (unsigned long long)st.queue_us,
               (unsigned long long)st.compute_us);
    bt_counter_inc(j->node->c_prefills);
}

static void bt_pjob_reply_err(bt_pjob_t *j)
{
    if (!j->replied && j->err_code != BT_RPC_OK) {
        bt_rpc_call_fail_code(j->call, j->err_code, j->err_msg);
        j->replied = true;
        BT_LOG_REQ(INFO, j->id, "prefill failed: %s (%s)", j->err_msg,
                   bt_rpc_code_name(j->err_code));
    }
}

static void bt_pjob_fence_cb(void *arg, bt_status_t status)
{
    bt_pjob_t *j = arg;

    if (j->node->no_fence) {
        return;   /* the process is going away; so is the pool */
    }
    if (status != BT_OK) {
        /* the endpoint failed: nothing of this job can land any more */
        BT_LOG_REQ(DEBUG, j->id, "fence of lease %llu: %s",
                   (unsigned long long)j->lease_id, bt_status_str(status));
    }
    bt_pjob_reply_err(j);
    bt_pjob_to(j, BT_PJOB_FREED);
}

/* Tells the decode node that this job writes its lease no more: the
 * stream is aborted, then a write of no data flushes the endpoint (every
 * put or data message posted before it has landed) and carries a
 * kv-complete with BT_NODE_FENCE_FIRST. The job ends in the callback. */
static bt_status_t bt_pjob_fence(bt_pjob_t *j)
{
    uint8_t payload[BT_NODE_DONE_PAYLOAD];
    bt_xfer_params_t xp;
    bt_xfer_op_t *op;

    bt_pjob_to(j, BT_PJOB_FENCING);
    bt_xfer_stream_destroy(j->stream);
    j->stream = NULL;
    bt_node_done_put(payload, BT_NODE_FENCE_FIRST, 0, BT_ERR_CANCELLED);
    memset(&xp, 0, sizeof(xp));
    xp.remote = j->rem->remote;
    xp.timeout_ms = BT_PJOB_FENCE_MS;
    xp.notify = true;
    xp.lease_id = j->lease_id;
    xp.layer = UINT32_MAX;
    xp.user = payload;
    xp.user_len = sizeof(payload);
    xp.cb = bt_pjob_fence_cb;
    xp.arg = j;
    if (bt_xfer_write(j->node->xfer, &xp, &op) != BT_IN_PROGRESS) {
        bt_pjob_to(j, BT_PJOB_ENDING);   /* refused: the endpoint is dead */
        return BT_ERR_PEER_DIED;
    }
    return BT_OK;
}

void bt_pjob_end(bt_pjob_t *j, bt_rpc_code_t code, const char *msg)
{
    bt_node_t *node = j->node;

    j->cancelled = true;
    if (j->err_code == BT_RPC_OK && !j->replied && code != BT_RPC_OK) {
        j->err_code = code;
        snprintf(j->err_msg, sizeof(j->err_msg), "%s", msg);
    }
    if (j->state == BT_PJOB_FENCING || j->state == BT_PJOB_FREED) {
        return;
    }
    bt_pjob_to(j, BT_PJOB_ENDING);
    if (j->in_step) {
        return;
    }
    if (!j->kv_ok && !node->no_fence) {
        if (j->local) {
            uint8_t payload[BT_NODE_DONE_PAYLOAD];

            /* copies stop with the lease (bt_pjob_post): none is late */
            bt_node_done_put(payload, BT_NODE_FENCE_FIRST, 0,
                             BT_ERR_CANCELLED);
            bt_node_local_kv_complete(node, j->lease_id, BT_OK, payload,
                                      sizeof(payload));
        } else if (j->stream != NULL && bt_pjob_fence(j) == BT_OK) {
            return;
        }
    }
    bt_pjob_reply_err(j);
    bt_pjob_to(j, BT_PJOB_FREED);
}

void bt_pjob_end_ev(evutil_socket_t fd, short what, void *arg)
{
    bt_pjob_t *j = arg;

    (void)fd;
    (void)what;
    bt_pjob_end(j, BT_RPC_UNAVAILABLE, "kv transfer to the decode node failed");
}

