/* The continuous batch of the decode role: every RUNNING request steps
 * one token at a time, at most --max-batch per step, built from the
 * oldest (the role's list is in arrival order), so with more sequences
 * admitted than --max-batch the oldest step and the newer wait, in order:
 * none starves. After the step each gets its token sampled on the loop
 * thread and sent, and then each block that filled goes to the kvstore:
 * the copy and the put's start never delay a token. */
#include "decode_int.h"
#include "node_kvs.h"

#include "base/clock.h"

int bt_decode_next_step(void *self, bt_node_step_t *step, int max)
{
    bt_decode_t *dec = self;
    bt_node_t *node = dec->node;
    bt_step_seq_t *seqs = step->seqs;
    int32_t *toks = step->toks;
    bt_list_t *it, *next;
    int n = 0;

    bt_list_foreach_safe(it, next, &dec->reqs) {
        bt_dreq_t *r = BT_CONTAINER_OF(it, bt_dreq_t, link);
        uint32_t pos, t;

        if (n >= max) {
            break;
        }
        if (r->state != BT_DREQ_RUNNING) {
            continue;
        }
        pos = bt_kvseq_n_tokens(r->seq);
        /* a forked choice's first step computes the prompt's last token */
        t = r->n_out > 0 ? (uint32_t)r->out[r->n_out - 1]
                         : (uint32_t)r->prompt[r->n_prompt - 1];
        /* the sequence grows into blocks reserved for it at the start */
        if (bt_kvseq_blocks_needed(r->seq, 1) > 0 && r->resv_next < r->n_resv) {
            bt_kvpool_reserve_abort(node->pool, &r->resv[r->resv_next], 1);
            r->resv_next++;
        }
        if (bt_kvseq_append(r->seq, &t, 1) != BT_OK) {
            bt_dreq_fail(r, BT_RPC_RESOURCE_EXHAUSTED, "kv pool full");
            continue;
        }
        toks[n] = (int32_t)t;
        seqs[n].tokens = &toks[n];
        seqs[n].n_tokens = 1;
        seqs[n].pos = (int)pos;
        seqs[n].block_table = bt_kvseq_blocks(r->seq);
        seqs[n].n_blocks = (int)bt_kvseq_n_blocks(r->seq);
        seqs[n].n_logits = 1;
        r->in_step = true;
        step->who[n++] = r;
    }
    dec->step_start_us = bt_now_us();
    return n;
}

/* Whether the step just filled the sequence's last block. */
static bool bt_dreq_filled(const bt_node_t *node, const bt_dreq_t *r)
{
    const uint32_t bs = (uint32_t)node->cfg.block_size;
    const uint32_t n_tok = bt_kvseq_n_tokens(r->seq);

    return bt_node_kvs_on(node) && n_tok > 0 && n_tok % bs == 0;
}

/* A block that just filled goes to the kvstore, so that a failover's
 * re-prefill of prompt ++ generated finds nearly all of it there. */
static void bt_dreq_publish_filled(bt_node_t *node, bt_dreq_t *r)
{
    const uint32_t bs = (uint32_t)node->cfg.block_size;
    const uint32_t n_tok = bt_kvseq_n_tokens(r->seq);
    uint32_t ids[BT_KV_MAX_BLOCK_TOKENS], b;

    b = n_tok / bs - 1;
    for (uint32_t t = 0; t < bs; t++) {
        uint32_t pos = b * bs + t;

        ids[t] = pos < r->n_prompt ? (uint32_t)r->prompt[pos]
                                   : (uint32_t)r->out[pos - r->n_prompt];
    }
    bt_node_kvs_publish(node, r->seq, ids, b, b + 1);
}

void bt_decode_step_done(void *self, bt_node_step_t *step, bt_status_t st)
{
    bt_decode_t *dec = self;
    bt_node_t *node = dec->node;
    const float *logits = step->logits;

    for (int i = 0; i < step->n; i++) {
        bt_dreq_t *r = step->who[i];
        bt_sample_seq_t ss;
        bt_sample_result_t res;

        /* the publish pass below sees only the requests kept for it: the
         * others may be freed by then */
        step->who[i] = NULL;
        r->in_step = false;
        if (r->state != BT_DREQ_RUNNING) {
            bt_dreq_put(r);   /* ended while in the step */
            continue;
        }
        if (st != BT_OK) {
            bt_dreq_fail(r, BT_RPC_INTERNAL, "forward step failed");
            continue;
        }
        bt_kvseq_set_computed(r->seq, bt_kvseq_n_tokens(r->seq));
        /* its blocks stay (in_step) until the publish below, whatever
         * its token ends */
        if (bt_dreq_filled(node, r)) {
            r->in_step = true;
            step->who[i] = r;
        }
        ss.prompt = r->prompt;
        ss.n_prompt = r->n_prompt;
        ss.generated = r->out;
        ss.n_generated = r->n_out;
        ss.position = (uint64_t)r->n_prompt + r->n_out;
        if (r->gram != NULL &&
            bt_node_gram_mask(r->gram, step->logits + (size_t)i * node->vocab,
                              node->vocab) != BT_OK) {
            bt_dreq_fail(r, BT_RPC_INTERNAL, "no token fits the response_format");
            continue;
        }
        if (bt_sampler_sample(node->sampler, &r->sp,
                              logits + (size_t)i * node->vocab, &ss,
                              &res) != BT_OK) {
            bt_dreq_fail(r, BT_RPC_INTERNAL, "sampling failed");
            continue;
        }
        bt_counter_inc(node->c_tokens);
        if (bt_dreq_token(r, res.token, &res) != BT_OK) {
            bt_dreq_fail(r, BT_RPC_INTERNAL, "out of memory");
            continue;
        }
        bt_dreq_flush(r);
    }
    for (int i = 0; i < step->n; i++) {
        bt_dreq_t *r = step->who[i];

        if (r == NULL) {
            continue;
        }
        bt_dreq_publish_filled(node, r);
        r->in_step = false;
        if (!bt_dreq_open(r)) {
            bt_dreq_put(r);   /* ended by its token or a failure above */
        }
    }
    bt_histogram_observe(node->h_decode_step,
                         (double)(bt_now_us() - dec->step_start_us) / 1e6);
    bt_node_metrics_update(node);
}

