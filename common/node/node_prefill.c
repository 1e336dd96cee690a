/* The prefill half: Prefill (validate the reservation, reuse this pool's
 * cached prefix, compute the rest in block-aligned chunks, post each
 * layer's slices to the decode node as soon as the layer is done, sample
 * the first token, send kv-complete, reply). With --role both and the
 * reservation on this node, the slices are copied inside the pool and the
 * decode side is told directly: no UCX hop. */
#include "node.h"
#include "node_lp.h"

#include "base/clock.h"
#include "base/log.h"
#include "kvspec/kv_proto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BT_PJOB_MAX_TOKENS (1u << 20)
/* How long a fence may wait for the endpoint's flush; past it the
 * endpoint is failed and nothing more of ours lands. */
#define BT_PJOB_FENCE_MS 10000

/* An imported decode pool, kept per decode node while its descriptor is
 * unchanged. */
typedef struct bt_node_remote {
    struct bt_node_remote *next;
    char                   node_id[128];
    void                  *desc;
    size_t                 desc_len;
    bt_xfer_remote_t      *remote;
    uint32_t               n_blocks;   /* of the remote pool */
} bt_node_remote_t;

struct bt_pjob {
    bt_pjob_t          *next;
    bt_node_t          *node;
    bt_rpc_call_t      *call;
    char                id[128];
    int32_t            *tokens;
    uint32_t            n;
    uint32_t            n_gen;        /* generated_count */
    bt_sample_params_t  sp;
    bt_kvseq_t         *seq;
    uint32_t           *dst;          /* reservation's block ids */
    uint32_t            n_dst;
    uint64_t            lease_id;
    bool                local;        /* the reservation is in this pool */
    bt_node_remote_t   *rem;
    bt_xfer_stream_t   *stream;
    uint32_t            next_tok;     /* first token of the next chunk */
    uint32_t            chunk_a, chunk_b;
    uint32_t            cached;       /* tokens reused: own pool + kvstore */
    uint32_t            store_cached; /* of those, read from the kvstore */
    uint32_t           *u32;          /* the token ids as the pool takes them */
    bool                in_step, cancelled, replied, freeing;
    bool                kv_ok;        /* kv-complete went out and landed */
    bool                fencing;      /* the fence is in flight (ends the job) */
    bt_rpc_code_t       err_code;     /* the error to answer, once ended */
    char                err_msg[96];
    struct event       *end_ev;       /* ends the job outside a callback */
    uint32_t            first;
    bt_sample_result_t  first_lp;     /* when sp.logprobs >= 0 */
    bt_finish_t         finish;
    uint64_t            t_start_us, queue_us, compute_us, xfer_start_us, bytes;
    uint64_t            t_post_us, t_complete_us; /* first post, completion sent */
};

static bt_node_remote_t *bt_node_remote_get(bt_node_t *node, const char *id,
                                            const void *desc, size_t len)
{
    const bt_kv_geom_t *g = bt_kvpool_geom(node->pool);
    bt_node_remote_t *rm;

    for (rm = node->remotes; rm != NULL; rm = rm->next) {
        if (strcmp(rm->node_id, id) == 0) {
            if (rm->desc_len == len && memcmp(rm->desc, desc, len) == 0) {
                return rm;
            }
            /* the node restarted: import again */
            bt_xfer_remote_destroy(rm->remote);
            free(rm->desc);
            rm->remote = NULL;
            rm->desc = NULL;
            break;
        }
    }
    if (rm == NULL) {
        rm = calloc(1, sizeof(*rm));
        if (rm == NULL) {
            return NULL;
        }
        snprintf(rm->node_id, sizeof(rm->node_id), "%s", id);
        rm->next = node->remotes;
        node->remotes = rm;
    }
    rm->desc = malloc(len);
    if (rm->desc == NULL ||
        bt_xfer_remote_import(node->xfer, desc, len, &rm->remote) != BT_OK) {
        free(rm->desc);
        rm->desc = NULL;
        rm->remote = NULL;
        return NULL;
    }
    memcpy(rm->desc, desc, len);
    rm->desc_len = len;
    /* the decode pool fills its region (node_main.c) */
    rm->n_blocks = (uint32_t)(bt_xfer_remote_length(rm->remote) /
                              ((size_t)g->n_layers * bt_kv_slice_bytes(g)));
    return rm;
}

static void bt_pjob_free(bt_pjob_t *j)
{
    bt_node_t *node = j->node;

    if (j->freeing) {
        return;
    }
    j->freeing = true;
    if (j->end_ev != NULL) {
        event_free(j->end_ev);
    }
    bt_xfer_stream_destroy(j->stream);
    /* full blocks stay cached here (KV events announce them) */
    bt_kvseq_destroy(j->seq);
    free(j->tokens);
    free(j->u32);
    free(j->dst);
    free(j);
    bt_node_inflight_done(node);
    bt_node_metrics_update(node);
}

/* The blocks this prefill computed go to the kvstore, off the critical
 * path (after the reply). */
static void bt_pjob_publish(bt_pjob_t *j)
{
    const uint32_t bs = bt_kvpool_geom(j->node->pool)->block_size;
    uint32_t from = j->cached / bs, to = j->n / bs;

    if (bt_node_kvs_on(j->node) && j->seq != NULL && to > from) {
        bt_node_kvs_publish(j->node, j->seq, j->u32 + (size_t)from * bs,
                            from, to);
    }
}

static void bt_pjob_unqueue(bt_node_t *node, bt_pjob_t *j)
{
    bt_pjob_t **pp = &node->pq_head;

    node->pq_tail = NULL;
    while (*pp != NULL) {
        if (*pp == j) {
            *pp = j->next;
            if (node->queued_prefill_tokens >= j->n - j->next_tok) {
                node->queued_prefill_tokens -= j->n - j->next_tok;
            }
            continue;
        }
        node->pq_tail = *pp;
        pp = &(*pp)->next;
    }
    j->next = NULL;
}

static void bt_pjob_end(bt_pjob_t *j, bt_rpc_code_t code, const char *msg);

static void bt_pjob_fail(bt_pjob_t *j, bt_rpc_code_t code, const char *msg)
{
    bt_pjob_end(j, code, msg);
}

static void bt_pjob_cancel_cb(bt_rpc_call_t *call, void *arg)
{
    (void)call;
    bt_pjob_end(arg, BT_RPC_CANCELLED, "cancelled");
}

static void bt_pjob_reply(bt_pjob_t *j)
{
    Baton__V1__PrefillResult res = BATON__V1__PREFILL_RESULT__INIT;
    Baton__V1__PrefillStats st = BATON__V1__PREFILL_STATS__INIT;
    Baton__V1__TokenLogprobs lp;
    Baton__V1__TopLogprob tops[BT_SAMPLE_MAX_LOGPROBS];
    Baton__V1__TopLogprob *top_ptrs[BT_SAMPLE_MAX_LOGPROBS];

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
    res.stats = &st;
    res.cached_tokens = j->cached;
    res.finish_reason = j->finish == BT_FINISH_STOP
                        ? BATON__V1__FINISH_REASON__FINISH_REASON_STOP
                        : j->finish == BT_FINISH_LENGTH
                        ? BATON__V1__FINISH_REASON__FINISH_REASON_LENGTH
                        : BATON__V1__FINISH_REASON__FINISH_REASON_UNSPECIFIED;
    bt_rpc_call_reply(j->call, &res.base);
    j->replied = true;
    bt_counter_inc(j->node->c_prefills);
}

static void bt_pjob_reply_err(bt_pjob_t *j)
{
    if (!j->replied && j->err_code != BT_RPC_OK) {
        bt_rpc_call_fail_code(j->call, j->err_code, j->err_msg);
        j->replied = true;
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
        bt_debug("request %s: fence of lease %llu: %s", j->id,
                 (unsigned long long)j->lease_id, bt_status_str(status));
    }
    bt_pjob_reply_err(j);
    bt_pjob_free(j);
}

/* Tells the decode node that this job writes its lease no more: the
 * stream is aborted, then a write of no data flushes the endpoint (every
 * put or data message posted before it has landed) and carries a
 * kv-complete with BT_NODE_FENCE_FIRST. The job ends in the callback. */
static bt_status_t bt_pjob_fence(bt_pjob_t *j)
{
    uint8_t payload[BT_NODE_DONE_PAYLOAD];
    const uint32_t first = BT_NODE_FENCE_FIRST, written = 0;
    const int32_t st = BT_ERR_CANCELLED;
    bt_xfer_params_t xp;
    bt_xfer_op_t *op;

    j->fencing = true;
    bt_xfer_stream_destroy(j->stream);
    j->stream = NULL;
    memcpy(payload, &first, 4);
    memcpy(payload + 4, &written, 4);
    memcpy(payload + 8, &st, 4);
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
        j->fencing = false;   /* refused: the endpoint is dead */
        return BT_ERR_PEER_DIED;
    }
    return BT_OK;
}

/* The one way a job ends: answer its error unless it replied, fence the
 * lease unless its kv-complete landed, then free. Waits for a step that
 * holds the job (bt_node_prefill_after calls it again). */
static void bt_pjob_end(bt_pjob_t *j, bt_rpc_code_t code, const char *msg)
{
    bt_node_t *node = j->node;

    j->cancelled = true;
    bt_pjob_unqueue(node, j);
    if (j->err_code == BT_RPC_OK && !j->replied && code != BT_RPC_OK) {
        j->err_code = code;
        snprintf(j->err_msg, sizeof(j->err_msg), "%s", msg);
    }
    if (j->in_step || j->fencing || j->freeing) {
        return;
    }
    if (!j->kv_ok && !node->no_fence) {
        if (j->local) {
            uint8_t payload[BT_NODE_DONE_PAYLOAD];
            const uint32_t first = BT_NODE_FENCE_FIRST, written = 0;
            const int32_t st = BT_ERR_CANCELLED;

            /* copies stop with the lease (bt_pjob_post): none is late */
            memcpy(payload, &first, 4);
            memcpy(payload + 4, &written, 4);
            memcpy(payload + 8, &st, 4);
            bt_node_decode_kv_complete(node, j->lease_id, BT_OK, payload,
                                       sizeof(payload));
        } else if (j->stream != NULL && bt_pjob_fence(j) == BT_OK) {
            return;
        }
    }
    bt_pjob_reply_err(j);
    bt_pjob_free(j);
}

static void bt_pjob_end_ev(evutil_socket_t fd, short what, void *arg)
{
    bt_pjob_t *j = arg;

    (void)fd;
    (void)what;
    bt_pjob_end(j, BT_RPC_UNAVAILABLE, "kv transfer to the decode node failed");
}

/* The stream is destroyed outside its own callback. */
static void bt_pjob_stream_done(void *arg, bt_status_t status)
{
    bt_pjob_t *j = arg;
    static const struct timeval now = { 0, 0 };

    if (j->freeing || j->fencing) {
        return;
    }
    if (j->rem != NULL) {
        uint64_t t = bt_now_us();

        bt_xstats_record(j->node->xstats, j->rem->node_id, j->bytes,
                         j->t_post_us > 0 ? t - j->t_post_us : 0,
                         j->t_complete_us > 0 ? t - j->t_complete_us : 0,
                         status, bt_wall_ms());
    }
    if (status == BT_OK) {
        j->kv_ok = true;
        if (!j->replied) {
            bt_pjob_reply(j);
            bt_pjob_publish(j);
        }
    } else if (!j->replied) {
        bt_warn("request %s: kv transfer failed: %s", j->id,
                bt_status_str(status));
        if (j->err_code == BT_RPC_OK) {
            j->err_code = BT_RPC_UNAVAILABLE;
            snprintf(j->err_msg, sizeof(j->err_msg),
                     "kv transfer to the decode node failed");
        }
    }
    j->cancelled = true;
    bt_pjob_unqueue(j->node, j);
    if (!j->in_step) {
        evtimer_add(j->end_ev, &now);
    }
}

/* Layer `layer` of blocks [b0, b1) of the sequence into the reservation. */
static void bt_pjob_post(bt_pjob_t *j, uint32_t layer, uint32_t b0,
                         uint32_t b1)
{
    bt_node_t *node = j->node;
    const uint32_t *src = bt_kvseq_blocks(j->seq);
    const size_t sb = bt_kvpool_slice_bytes(node->pool);
    bt_xfer_slice_t sl[64];
    size_t n = 0;

    if (j->cancelled || b1 <= b0) {
        return;
    }
    if (j->local) {
        if (!bt_node_decode_lease_live(node, j->lease_id)) {
            /* the decode side gave the blocks up: write nothing */
            j->cancelled = true;
            return;
        }
        for (uint32_t b = b0; b < b1; b++) {
            if (src[b] != j->dst[b]) {
                memcpy(bt_kvpool_block_ptr(node->pool, layer, j->dst[b]),
                       bt_kvpool_block_ptr(node->pool, layer, src[b]), sb);
            }
            j->bytes += sb;
        }
        return;
    }
    if (j->t_post_us == 0) {
        j->t_post_us = bt_now_us();
    }
    for (uint32_t b = b0; b < b1; b++) {
        sl[n].local = bt_kvpool_block_ptr(node->pool, layer, src[b]);
        sl[n].remote_off = ((uint64_t)layer * j->rem->n_blocks + j->dst[b]) * sb;
        sl[n].len = sb;
        n++;
        j->bytes += sb;
        if (n == 64 || b + 1 == b1) {
            n = bt_xfer_slices_coalesce(sl, n);
            if (bt_xfer_stream_post(j->stream, layer, sl, n) != BT_OK) {
                j->cancelled = true;  /* the stream callback reports it */
                return;
            }
            n = 0;
        }
    }
}

void bt_node_prefill_layer(bt_node_t *node, bt_pjob_t *j, int layer)
{
    const uint32_t bs = (uint32_t)node->cfg.block_size;

    (void)node;
    bt_pjob_post(j, (uint32_t)layer, j->chunk_a / bs,
                 (j->chunk_b + bs - 1) / bs);
}

void bt_node_prefill_job_fail(bt_node_t *node, bt_pjob_t *j)
{
    (void)node;
    bt_pjob_end(j, BT_RPC_INTERNAL, "a layer of the kv cache was lost");
}

bool bt_node_prefill_chunk(bt_node_t *node, bt_step_seq_t *seq,
                           bt_pjob_t **job_p)
{
    bt_pjob_t *j = node->pq_head;
    uint32_t len;

    if (j == NULL) {
        return false;
    }
    len = j->n - j->next_tok;
    if (len > (uint32_t)node->cfg.max_prefill_tokens) {
        len = (uint32_t)node->cfg.max_prefill_tokens;
    }
    if (j->next_tok == j->cached) {
        j->queue_us = bt_now_us() - j->t_start_us;   /* first chunk */
    }
    j->chunk_a = j->next_tok;
    j->chunk_b = j->next_tok + len;
    seq->tokens = j->tokens + j->chunk_a;
    seq->n_tokens = (int)len;
    seq->pos = (int)j->chunk_a;
    seq->block_table = bt_kvseq_blocks(j->seq);
    seq->n_blocks = (int)bt_kvseq_n_blocks(j->seq);
    seq->n_logits = j->chunk_b == j->n ? 1 : 0;
    j->in_step = true;
    j->compute_us -= bt_now_us();
    *job_p = j;
    return true;
}

void bt_node_prefill_after(bt_node_t *node, bt_pjob_t *j, const float *logits,
                           bt_status_t st)
{
    uint8_t payload[BT_NODE_DONE_PAYLOAD + BT_NODE_LP_MAX_BYTES];
    size_t payload_len = BT_NODE_DONE_PAYLOAD;
    bt_sample_seq_t ss;
    bt_sample_result_t res;
    uint32_t written;
    int32_t ok = BT_OK;

    j->in_step = false;
    j->compute_us += bt_now_us();
    if (j->cancelled) {
        bt_pjob_end(j, j->local ? BT_RPC_ABORTED : BT_RPC_UNAVAILABLE,
                    j->local ? "the reservation was released"
                             : "kv transfer to the decode node failed");
        return;
    }
    if (st != BT_OK) {
        bt_pjob_fail(j, BT_RPC_INTERNAL, "forward step failed");
        return;
    }
    node->queued_prefill_tokens -= j->chunk_b - j->chunk_a;
    j->next_tok = j->chunk_b;
    bt_kvseq_set_computed(j->seq, j->next_tok);
    if (j->next_tok < j->n) {
        return;   /* stays at the head of the queue */
    }
    bt_pjob_unqueue(node, j);
    ss.prompt = j->tokens;
    ss.n_prompt = j->n - j->n_gen;
    ss.generated = j->tokens + ss.n_prompt;
    ss.n_generated = j->n_gen;
    ss.position = j->n;
    if (bt_sampler_sample(node->sampler, &j->sp, logits, &ss, &res) != BT_OK) {
        bt_pjob_fail(j, BT_RPC_INTERNAL, "sampling failed");
        return;
    }
    j->first = (uint32_t)res.token;
    j->finish = res.finish;
    written = j->n;
    memcpy(payload, &j->first, 4);
    memcpy(payload + 4, &written, 4);
    memcpy(payload + 8, &ok, 4);
    /* the decode node streams the first token too, with the same logprobs */
    if (j->sp.logprobs >= 0) {
        j->first_lp = res;
        payload_len += bt_node_lp_pack(&res, payload + BT_NODE_DONE_PAYLOAD);
    }
    if (j->local) {
        bt_node_decode_kv_complete(node, j->lease_id, BT_OK, payload,
                                   payload_len);
        j->kv_ok = true;
        bt_pjob_reply(j);
        bt_pjob_publish(j);
        bt_pjob_free(j);
        return;
    }
    j->t_complete_us = bt_now_us();
    if (bt_xfer_stream_complete(j->stream, payload, payload_len) != BT_OK) {
        bt_pjob_fail(j, BT_RPC_UNAVAILABLE, "kv transfer to the decode node failed");
    }
    /* the stream's callback replies */
}

/* The prefix is in place (own pool, then kvstore): the rest of the prompt
 * joins the sequence and the job queues for compute. */
static void bt_pjob_start(bt_pjob_t *j, uint32_t matched, uint32_t from_store)
{
    bt_node_t *node = j->node;
    const bt_kv_geom_t *g = bt_kvpool_geom(node->pool);
    const uint32_t bs = g->block_size;

    if (bt_kvseq_append(j->seq, j->u32 + matched * bs,
                        j->n - matched * bs) != BT_OK) {
        bt_pjob_fail(j, BT_RPC_RESOURCE_EXHAUSTED,
                     "the prefill node's kv pool is full");
        return;
    }
    j->cached = matched * bs;
    j->store_cached = from_store * bs;
    j->next_tok = j->cached;
    j->xfer_start_us = bt_now_us();
    bt_rpc_call_set_cancel_cb(j->call, bt_pjob_cancel_cb, j);
    /* the cached prefix goes out at once, every layer */
    for (uint32_t l = 0; l < g->n_layers && matched > 0; l++) {
        bt_pjob_post(j, l, 0, matched);
    }
    node->queued_prefill_tokens += j->n - j->next_tok;
    if (node->pq_tail != NULL) {
        node->pq_tail->next = j;
    } else {
        node->pq_head = j;
    }
    node->pq_tail = j;
    bt_node_metrics_update(node);
    bt_node_sched_kick(node);
}

static void bt_pjob_fetched(void *arg, uint32_t got)
{
    bt_pjob_t *j = arg;
    const uint32_t bs = bt_kvpool_geom(j->node->pool)->block_size;
    uint32_t own = j->cached / bs;

    bt_pjob_start(j, own + got, got);
}


static void bt_prefill(bt_rpc_call_t *call, const ProtobufCMessage *msg,
                       void *arg)
{
    bt_node_t *node = arg;
    const Baton__V1__PrefillRequest *q = (const Baton__V1__PrefillRequest *)msg;
    const Baton__V1__Reservation *rv = q->reservation;
    const bt_kv_geom_t *g = bt_kvpool_geom(node->pool);
    const uint32_t bs = g->block_size;
    uint32_t need, matched = 0, full;
    uint32_t *u32 = NULL;
    bt_pjob_t *j;
    char why[256];

    if (node->draining) {
        bt_rpc_call_fail_code(call, BT_RPC_UNAVAILABLE, "the node is draining");
        return;
    }
    if (q->n_token_ids == 0 || q->n_token_ids > BT_PJOB_MAX_TOKENS ||
        q->generated_count > q->n_token_ids || q->sampling == NULL ||
        rv == NULL || rv->geometry == NULL || q->tenant == NULL ||
        q->tenant->root_hash.len != BT_KV_HASH_LEN) {
        bt_rpc_call_fail_code(call, BT_RPC_INVALID_ARGUMENT,
                              "token_ids, sampling, reservation and a 32-byte "
                              "tenant.root_hash are required");
        return;
    }
    need = ((uint32_t)q->n_token_ids + bs - 1) / bs;
    if (rv->block_size != bs || rv->geometry->block_size != bs ||
        rv->geometry->n_layers != g->n_layers ||
        rv->geometry->n_kv_heads != g->n_kv_heads ||
        rv->geometry->head_dim != g->head_dim ||
        bt_kv_dtype_from_proto(rv->geometry->dtype) != g->dtype ||
        rv->n_block_ids < need) {
        snprintf(why, sizeof(why), "reservation does not fit: %zu blocks for "
                 "%zu tokens, or another kv geometry", rv->n_block_ids,
                 q->n_token_ids);
        bt_rpc_call_fail_code(call, BT_RPC_FAILED_PRECONDITION, why);
        return;
    }
    for (size_t i = 0; i < q->n_token_ids; i++) {
        if (q->token_ids[i] >= node->vocab) {
            bt_rpc_call_fail_code(call, BT_RPC_INVALID_ARGUMENT,
                                  "token id outside the vocabulary");
            return;
        }
    }
    j = calloc(1, sizeof(*j));
    if (j == NULL) {
        bt_rpc_call_fail_code(call, BT_RPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    j->node = node;
    j->call = call;
    j->t_start_us = bt_now_us();
    j->end_ev = evtimer_new(node->base, bt_pjob_end_ev, j);
    if (j->end_ev == NULL) {
        free(j);
        bt_rpc_call_fail_code(call, BT_RPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    snprintf(j->id, sizeof(j->id), "%s", q->request_id ? q->request_id : "");
    j->n = (uint32_t)q->n_token_ids;
    j->n_gen = q->generated_count;
    j->lease_id = rv->lease_id;
    bt_node_sampling_from_proto(node, q->sampling, &j->sp);
    if (bt_node_lp_param(q->sampling, &j->sp.logprobs) != BT_OK) {
        event_free(j->end_ev);
        free(j);
        bt_rpc_call_fail_code(call, BT_RPC_INVALID_ARGUMENT,
                              "sampling.logprobs must be in [0, 20]");
        return;
    }
    j->tokens = malloc(j->n * sizeof(int32_t));
    j->dst = malloc(need * sizeof(uint32_t));
    u32 = malloc(j->n * sizeof(uint32_t));
    if (j->tokens == NULL || j->dst == NULL || u32 == NULL) {
        goto err_nomem;
    }
    for (uint32_t i = 0; i < j->n; i++) {
        j->tokens[i] = (int32_t)q->token_ids[i];
        u32[i] = q->token_ids[i];
    }
    memcpy(j->dst, rv->block_ids, need * sizeof(uint32_t));
    j->n_dst = need;
    node->inflight++;
    if (node->role == BT_NODE_BOTH && rv->decode_node_id != NULL &&
        strcmp(rv->decode_node_id, node->node_id) == 0) {
        j->local = true;
    } else {
        bt_xfer_stream_params_t sp;

        j->rem = node->xfer == NULL ? NULL
                 : bt_node_remote_get(node, rv->decode_node_id ?
                                      rv->decode_node_id : "",
                                      rv->pool_descriptor.data,
                                      rv->pool_descriptor.len);
        if (j->rem == NULL) {
            free(u32);
            bt_pjob_fail(j, BT_RPC_UNAVAILABLE,
                         "cannot reach the decode node's kv pool");
            return;
        }
        for (uint32_t i = 0; i < need; i++) {
            if (j->dst[i] >= j->rem->n_blocks) {
                free(u32);
                bt_pjob_fail(j, BT_RPC_INVALID_ARGUMENT,
                             "reserved block id outside the decode pool");
                return;
            }
        }
        memset(&sp, 0, sizeof(sp));
        sp.remote = j->rem->remote;
        sp.lease_id = j->lease_id;
        sp.timeout_ms = q->deadline_unix_ms > bt_wall_ms()
                        ? q->deadline_unix_ms - bt_wall_ms() : 0;
        sp.cb = bt_pjob_stream_done;
        sp.arg = j;
        if (bt_xfer_stream_create(node->xfer, &sp, &j->stream) != BT_OK) {
            free(u32);
            bt_pjob_fail(j, BT_RPC_UNAVAILABLE, "cannot open the kv stream");
            return;
        }
    }
    j->u32 = u32;
    if (bt_kvseq_create(node->pool, q->tenant->root_hash.data, &j->seq) != BT_OK ||
        (node->cfg.prefix_cache &&
         bt_kvseq_match_prefix(j->seq, u32, j->n - 1, NULL, &matched) != BT_OK)) {
        bt_pjob_fail(j, BT_RPC_RESOURCE_EXHAUSTED,
                     "the prefill node's kv pool is full");
        return;
    }
    /* full blocks the own pool lacks, up to the last prompt token (always
     * computed): ask the kvstore first, then compute what it lacks */
    full = (j->n - 1) / bs;
    if (bt_node_kvs_on(node) && node->cfg.prefix_cache && full > matched) {
        uint64_t left = q->deadline_unix_ms > bt_wall_ms()
                        ? q->deadline_unix_ms - bt_wall_ms() : 0;
        uint64_t t = (uint64_t)node->cfg.kvstore_timeout_ms;

        j->cached = matched * bs;
        if (bt_node_kvs_fetch(node, j->seq, u32, matched, full,
                              left > 0 && left < t ? left : t,
                              bt_pjob_fetched, j) == BT_OK) {
            return; /* bt_pjob_fetched goes on */
        }
    }
    bt_pjob_start(j, matched, 0);
    return;

err_nomem:
    free(u32);
    free(j->tokens);
    free(j->dst);
    event_free(j->end_ev);
    free(j);
    bt_rpc_call_fail_code(call, BT_RPC_RESOURCE_EXHAUSTED, "out of memory");
}

bt_status_t bt_node_prefill_register(bt_node_t *node)
{
    return bt_rpc_server_add_unary(node->grpc, "/baton.v1.Prefill/Prefill",
                                   &baton__v1__prefill_request__descriptor,
                                   bt_prefill, node);
}

void bt_node_prefill_destroy_all(bt_node_t *node)
{
    node->no_fence = true;
    while (node->pq_head != NULL) {
        bt_pjob_t *j = node->pq_head;

        j->in_step = false;
        bt_pjob_fail(j, BT_RPC_UNAVAILABLE, "shutting down");
    }
    while (node->remotes != NULL) {
        bt_node_remote_t *rm = node->remotes;

        node->remotes = rm->next;
        bt_xfer_remote_destroy(rm->remote);
        free(rm->desc);
        free(rm);
    }
}
