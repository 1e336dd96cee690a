/* Compute and transfer of the prefill role: the job at the head of the
 * FIFO computes one block-aligned chunk per step; after each layer that
 * layer's slices of the chunk's blocks go out on the job's xfer stream
 * (or, --role both, are copied inside the pool while the lease is live);
 * after the last chunk the first token is sampled and the kv-complete
 * sent, and the stream's completion answers the call
 * (docs/internals/node.md "Prefill: transfer overlap"). */
#include "prefill_int.h"
#include "node_lp.h"

#include "base/clock.h"
#include "base/log.h"

#include <stdio.h>
#include <string.h>

/* The stream is destroyed outside its own callback. */
void bt_pjob_stream_done(void *arg, bt_status_t status)
{
    bt_pjob_t *j = arg;
    static const struct timeval now = { 0, 0 };

    if (j->state == BT_PJOB_FENCING || j->state == BT_PJOB_FREED) {
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
        BT_LOG_REQ(WARN, j->id, "kv transfer failed: %s",
                   bt_status_str(status));
        if (j->err_code == BT_RPC_OK) {
            j->err_code = BT_RPC_UNAVAILABLE;
            snprintf(j->err_msg, sizeof(j->err_msg),
                     status == BT_ERR_TIMED_OUT
                     ? "kv transfer to the decode node stalled past "
                       "--kv-stall-timeout or the deadline"
                     : "kv transfer to the decode node failed");
        }
    }
    j->cancelled = true;
    bt_pjob_to(j, BT_PJOB_ENDING);
    if (!j->in_step) {
        evtimer_add(j->end_ev, &now);
    }
}

void bt_pjob_landed(void *arg, uint32_t layer)
{
    bt_pjob_t *j = arg;

    bt_ptl_landed(&j->tl, layer);
}

void bt_pjob_post(bt_pjob_t *j, uint32_t layer, uint32_t b0,
                         uint32_t b1)
{
    bt_node_t *node = j->node;
    const uint32_t *src = bt_kvseq_blocks(j->seq);
    const size_t sb = bt_kvpool_slice_bytes(node->pool);
    size_t n = 0;

    if (j->cancelled || b1 <= b0) {
        return;
    }
    if (j->local) {
        if (!bt_node_local_lease_live(node, j->lease_id)) {
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
        bt_ptl_post(&j->tl, layer, (uint64_t)(b1 - b0) * sb);
        bt_ptl_landed(&j->tl, layer);   /* copied in place: landed */
        return;
    }
    if (j->t_post_us == 0) {
        j->t_post_us = bt_now_us();
    }
    bt_ptl_post(&j->tl, layer, (uint64_t)(b1 - b0) * sb);
    /* The layer's slices of the chunk as one batch: one operation, one
     * flush (docs/internals/xfer.md "Batches"). j->sl holds n_dst. */
    for (uint32_t b = b0; b < b1 && b < j->n_dst; b++) {
        j->sl[n].local = bt_kvpool_block_ptr(node->pool, layer, src[b]);
        j->sl[n].remote_off =
            ((uint64_t)layer * j->rem->n_blocks + j->dst[b]) * sb;
        j->sl[n].len = sb;
        n++;
        j->bytes += sb;
    }
    n = bt_xfer_slices_coalesce(j->sl, n);
    if (bt_xfer_stream_post(j->stream, layer, j->sl, n) != BT_OK) {
        j->cancelled = true;  /* the stream callback reports it */
    }
}

/* After each layer of a chunk, that layer's slices of the blocks the
 * chunk touched. */
void bt_prefill_layer_done(void *self, bt_node_step_t *step, int layer)
{
    bt_prefill_t *pf = self;
    bt_pjob_t *j = step->who[0];
    const uint32_t bs = (uint32_t)pf->node->cfg.block_size;

    bt_pjob_post(j, (uint32_t)layer, j->chunk_a / bs,
                 (j->chunk_b + bs - 1) / bs);
}

void bt_prefill_layer_lost(void *self, bt_node_step_t *step)
{
    bt_pjob_t *j = step->who[0];

    (void)self;
    BT_LOG_REQ(ERROR, j->id, "the layer queue overflowed: a layer of the "
               "chunk at token %u was not sent", j->chunk_a);
    bt_pjob_end(j, BT_RPC_INTERNAL,
                "a layer of the kv cache was lost");
}

/* The next chunk of the job at the head of the FIFO. */
int bt_prefill_next_step(void *self, bt_node_step_t *step, int max)
{
    bt_prefill_t *pf = self;
    bt_node_t *node = pf->node;
    bt_step_seq_t *seq = &step->seqs[0];
    bt_pjob_t *j;
    uint32_t len;

    if (bt_list_empty(&pf->queue) || max < 1) {
        return 0;
    }
    j = BT_CONTAINER_OF(pf->queue.next, bt_pjob_t, link);
    len = j->n - j->next_tok;
    if (len > (uint32_t)node->cfg.max_prefill_tokens) {
        len = (uint32_t)node->cfg.max_prefill_tokens;
    }
    if (j->next_tok == j->cached) {
        j->queue_us = bt_now_us() - j->t_start_us;   /* first chunk */
    }
    if (j->prompt_lp) {
        len = bt_plp_chunk(j, seq, len);
    }
    j->chunk_a = j->next_tok;
    j->chunk_b = j->next_tok + len;
    seq->tokens = j->tokens + j->chunk_a;
    seq->n_tokens = (int)len;
    seq->pos = (int)j->chunk_a;
    seq->block_table = bt_kvseq_blocks(j->seq);
    seq->n_blocks = (int)bt_kvseq_n_blocks(j->seq);
    if (!j->prompt_lp) {
        seq->n_logits = j->chunk_b == j->n ? 1 : 0;
    }
    j->in_step = true;
    bt_ptl_chunk_begin(&j->tl, j->chunk_a, len);
    j->compute_us -= bt_now_us();
    step->who[0] = j;
    return 1;
}

void bt_prefill_step_done(void *self, bt_node_step_t *step, bt_status_t st)
{
    bt_prefill_t *pf = self;
    bt_node_t *node = pf->node;
    bt_pjob_t *j = step->who[0];
    const float *logits = step->logits;
    uint8_t payload[BT_NODE_DONE_PAYLOAD + BT_NODE_LP_MAX_BYTES];
    size_t payload_len = BT_NODE_DONE_PAYLOAD;
    bt_sample_seq_t ss;
    bt_sample_result_t res;

    j->in_step = false;
    j->compute_us += bt_now_us();
    bt_ptl_chunk_end(&j->tl);
    if (j->cancelled) {
        bt_pjob_end(j, j->local ? BT_RPC_ABORTED : BT_RPC_UNAVAILABLE,
                    j->local ? "the reservation was released"
                             : "kv transfer to the decode node failed");
        return;
    }
    if (st != BT_OK) {
        bt_pjob_end(j, BT_RPC_INTERNAL, "forward step failed");
        return;
    }
    if (j->prompt_lp && (logits = bt_plp_chunk_done(j)) == NULL) {
        bt_pjob_end(j, BT_RPC_INTERNAL, "prompt logprobs failed");
        return;
    }
    bt_pjob_advance(j);
    bt_kvseq_set_computed(j->seq, j->next_tok);
    if (j->next_tok < j->n) {
        return;   /* stays at the head of the queue */
    }
    bt_pjob_to(j, BT_PJOB_SENT);
    ss.prompt = j->tokens;
    ss.n_prompt = j->n - j->n_gen;
    ss.generated = j->tokens + ss.n_prompt;
    ss.n_generated = j->n_gen;
    ss.position = j->n;
    if (j->gram != NULL &&
        bt_node_gram_mask(j->gram, step->logits, node->vocab) != BT_OK) {
        bt_pjob_end(j, BT_RPC_INTERNAL, "no token fits the response_format");
        return;
    }
    if (bt_sampler_sample(node->sampler, &j->sp, logits, &ss, &res) != BT_OK) {
        bt_pjob_end(j, BT_RPC_INTERNAL, "sampling failed");
        return;
    }
    j->first = (uint32_t)res.token;
    j->finish = res.finish;
    bt_node_done_put(payload, j->first, j->n, BT_OK);
    /* the decode node streams the first token too, with the same logprobs */
    if (j->sp.logprobs >= 0) {
        j->first_lp = res;
        payload_len += bt_node_lp_pack(&res, payload + BT_NODE_DONE_PAYLOAD);
    }
    if (j->local) {
        bt_node_local_kv_complete(node, j->lease_id, BT_OK, payload,
                                  payload_len);
        j->kv_ok = true;
        bt_pjob_reply(j);
        bt_pjob_publish(j);
        bt_pjob_to(j, BT_PJOB_FREED);
        return;
    }
    j->t_complete_us = bt_now_us();
    if (bt_xfer_stream_complete(j->stream, payload, payload_len) != BT_OK) {
        bt_pjob_end(j, BT_RPC_UNAVAILABLE,
                    "kv transfer to the decode node failed");
    }
    /* the stream's callback replies */
}

