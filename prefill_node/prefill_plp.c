/* Prompt logprobs (echo with logprobs): a job that asks for them computes
 * its whole prompt with logits for every token, in chunks small enough
 * for their logits, and keeps for each prompt token after the first its
 * logprobs given the tokens before it (bt_sample_token_logprobs, the
 * log-softmax of the raw logits). They go out in PrefillResult. */
#include "prefill_int.h"
#include "node_lp.h"

#include <stdlib.h>

/* Bytes of logits a chunk may hold: bounds the chunk at large vocabularies
 * (64 MiB = 128 tokens at 128k), never below one block. */
#define BT_PLP_LOGIT_BYTES (64u << 20)

bt_status_t bt_plp_init(bt_pjob_t *j)
{
    const uint32_t bs = bt_kvpool_geom(j->node->pool)->block_size;
    size_t rows = BT_PLP_LOGIT_BYTES / ((size_t)j->node->vocab * sizeof(float));

    rows = rows / bs * bs;
    if (rows < bs) {
        rows = bs;
    }
    j->plp_rows = (uint32_t)rows;
    j->plogits = malloc(rows * j->node->vocab * sizeof(float));
    j->plp = calloc(j->n > 1 ? j->n - 1 : 1, sizeof(*j->plp));
    return j->plogits != NULL && j->plp != NULL ? BT_OK : BT_ERR_NO_MEMORY;
}

void bt_plp_free(bt_pjob_t *j)
{
    free(j->plogits);
    free(j->plp);
}

uint32_t bt_plp_chunk(bt_pjob_t *j, bt_step_seq_t *seq, uint32_t len)
{
    if (len > j->plp_rows) {
        len = j->plp_rows;
    }
    seq->n_logits = (int)len;
    seq->logits = j->plogits;
    return len;
}

const float *bt_plp_chunk_done(bt_pjob_t *j)
{
    const uint32_t V = j->node->vocab;
    const uint32_t len = j->chunk_b - j->chunk_a;
    const int32_t n_top = j->sp.logprobs > 0 ? j->sp.logprobs : 0;

    for (uint32_t t = 0; t < len; t++) {
        uint32_t pos = j->chunk_a + t;

        if (pos + 1 < j->n &&
            bt_sample_token_logprobs(j->plogits + (size_t)t * V, V,
                                     j->tokens[pos + 1], n_top,
                                     &j->plp[pos]) != BT_OK) {
            return NULL;
        }
    }
    return j->plogits + (size_t)(len - 1) * V;
}

bt_status_t bt_plp_to_proto(const bt_pjob_t *j,
                            Baton__V1__PrefillResult *res, void **mem_p)
{
    const size_t n = j->n - 1;
    const size_t n_top = j->sp.logprobs > 0 ? (size_t)j->sp.logprobs : 0;
    Baton__V1__TokenLogprobs *msgs, **ptrs;
    Baton__V1__TopLogprob *tops, **top_ptrs;
    char *mem;

    mem = malloc(n * (sizeof(*msgs) + sizeof(*ptrs) +
                      n_top * (sizeof(*tops) + sizeof(*top_ptrs))) + 1);
    if (mem == NULL) {
        return BT_ERR_NO_MEMORY;
    }
    msgs = (Baton__V1__TokenLogprobs *)mem;
    tops = (Baton__V1__TopLogprob *)(msgs + n);
    ptrs = (Baton__V1__TokenLogprobs **)(tops + n * n_top);
    top_ptrs = (Baton__V1__TopLogprob **)(ptrs + n);
    for (size_t i = 0; i < n; i++) {
        bt_node_lp_to_proto(&j->plp[i], &msgs[i], tops + i * n_top,
                            top_ptrs + i * n_top);
        ptrs[i] = &msgs[i];
    }
    res->n_prompt_logprobs = n;
    res->prompt_logprobs = n > 0 ? ptrs : NULL;
    *mem_p = mem;
    return BT_OK;
}
