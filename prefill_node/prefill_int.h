/* What the files of the prefill role share: the prefill job (bt_pjob) and
 * its lifecycle (prefill_job.c), the role's state, and the calls between
 * the Prefill call (prefill_rpc.c) and the compute and transfer
 * (prefill_step.c). */
#ifndef BT_PREFILL_INT_H
#define BT_PREFILL_INT_H

#include "node.h"
#include "node_grammar.h"
#include "prefill.h"
#include "prefill_timeline.h"

#include "base/list.h"

#include <stdbool.h>
#include <stdint.h>

#define BT_PJOB_MAX_TOKENS (1u << 20)
/* How long a fence may wait for the endpoint's flush; past it the
 * endpoint is failed and nothing more of ours lands. */
#define BT_PJOB_FENCE_MS 10000

/* The prefill role of one node. */
typedef struct bt_prefill {
    bt_node_t *node;
    bt_list_t  queue;     /* QUEUED jobs, FIFO: the head computes */
    bt_list_t  remotes;   /* bt_prefill_remote_t, per decode node */
} bt_prefill_t;

/* An imported decode pool, kept per decode node while its descriptor is
 * unchanged. */
typedef struct {
    bt_list_t              link;       /* in bt_prefill_t.remotes */
    char                   node_id[128];
    void                  *desc;
    size_t                 desc_len;
    bt_xfer_remote_t      *remote;
    uint32_t               n_blocks;   /* of the remote pool */
} bt_prefill_remote_t;

/* A job's lifecycle (the diagram is in prefill_job.c). */
typedef enum {
    BT_PJOB_NEW = 0,    /* validated; its prefix is being found */
    BT_PJOB_QUEUED,     /* in the FIFO: chunks left to compute */
    BT_PJOB_SENT,       /* computed: kv-complete handed to the stream (or
                         * the decode role) */
    BT_PJOB_ENDING,     /* ends once no step holds it */
    BT_PJOB_FENCING,    /* the fence is in flight */
    BT_PJOB_FREED,      /* being freed (callbacks of the teardown return) */
    BT_PJOB_N_STATES
} bt_pjob_state_t;

typedef struct bt_pjob {
    bt_list_t           link;         /* in bt_prefill_t.queue (QUEUED) */
    bt_prefill_t       *pf;
    bt_node_t          *node;
    bt_rpc_call_t      *call;
    char                id[128];
    bt_pjob_state_t     state;        /* changed by bt_pjob_to only */
    int32_t            *tokens;
    uint32_t            n;
    uint32_t            n_gen;        /* generated_count */
    bt_sample_params_t  sp;
    bt_node_gram_t     *gram;      /* response_format, NULL: free text */
    bt_kvseq_t         *seq;
    uint32_t           *dst;          /* reservation's block ids */
    uint32_t            n_dst;
    uint64_t            lease_id;
    bool                local;        /* the reservation is in this pool */
    bt_prefill_remote_t *rem;
    bt_xfer_stream_t   *stream;
    bt_xfer_slice_t    *sl;           /* [n_dst]: a layer's slices, posted
                                       * as one batch (remote jobs) */
    uint32_t            next_tok;     /* first token of the next chunk */
    uint32_t            chunk_a, chunk_b;
    uint32_t            cached;       /* tokens reused: own pool + kvstore */
    uint32_t            store_cached; /* of those, read from the kvstore */
    uint32_t           *u32;          /* the token ids as the pool takes them */
    bool                in_step;      /* the scheduler's: a chunk computes */
    bool                cancelled;    /* posts nothing more: ending, or the
                                       * stream or the local lease is gone */
    bool                replied;      /* the call is answered */
    bool                kv_ok;        /* kv-complete went out and landed */
    bt_rpc_code_t       err_code;     /* the error to answer, once ended */
    char                err_msg[96];
    struct event       *end_ev;       /* ends the job outside a callback */
    uint32_t            first;
    bt_sample_result_t  first_lp;     /* when sp.logprobs >= 0 */
    bt_finish_t         finish;
    uint64_t            t_start_us, queue_us, compute_us, xfer_start_us, bytes;
    uint64_t            t_post_us, t_complete_us; /* first post, completion sent */
    bool                prompt_lp;    /* PrefillRequest.prompt_logprobs */
    uint32_t            plp_rows;     /* tokens per chunk with prompt_lp */
    float              *plogits;      /* [plp_rows][vocab] */
    bt_sample_result_t *plp;          /* [n - 1]: token i + 1's logprobs */
    bt_ptl_t            tl;           /* chunk and layer times (the trace) */
} bt_pjob_t;

/* prefill_plp.c: prompt logprobs (echo). init allocates the job's logits
 * rows and results (BT_ERR_NO_MEMORY); free is NULL-safe; chunk bounds a
 * chunk's length and points its logits at the job's rows; chunk_done
 * keeps the chunk's prompt logprobs and returns the last row (the first
 * token's logits), NULL on a bad logit row; to_proto fills
 * res->prompt_logprobs from one allocation (*mem_p, the caller frees). */
bt_status_t bt_plp_init(bt_pjob_t *j);
void bt_plp_free(bt_pjob_t *j);
uint32_t bt_plp_chunk(bt_pjob_t *j, bt_step_seq_t *seq, uint32_t len);
const float *bt_plp_chunk_done(bt_pjob_t *j);
bt_status_t bt_plp_to_proto(const bt_pjob_t *j, Baton__V1__PrefillResult *res,
                            void **mem_p);

/* prefill_job.c: the lifecycle */
/* A new job (NEW) joins the role: counted in flight. */
void bt_pjob_enter(bt_prefill_t *pf, bt_pjob_t *j);
/* The one place the state changes: asserts the transition is one of the
 * diagram's, keeps the queue and node->queued_prefill_tokens, and frees
 * the job on entering FREED (j is gone after that). */
void bt_pjob_to(bt_pjob_t *j, bt_pjob_state_t to);
/* The chunk in the step is done: its tokens leave the queued count. */
void bt_pjob_advance(bt_pjob_t *j);
/* The one way a job ends: answer its error unless it replied, fence the
 * lease unless its kv-complete landed, then free. Waits for a step that
 * holds the job (step_done calls it again). */
void bt_pjob_end(bt_pjob_t *j, bt_rpc_code_t code, const char *msg);
/* end_ev's callback: ends the job outside the stream's callback. */
void bt_pjob_end_ev(evutil_socket_t fd, short what, void *arg);
/* Answers PrefillResult. */
void bt_pjob_reply(bt_pjob_t *j);
/* The blocks this prefill computed go to the kvstore (after the reply). */
void bt_pjob_publish(bt_pjob_t *j);

/* prefill_step.c: compute and transfer */
/* Layer `layer` of blocks [b0, b1) of the sequence into the reservation. */
void bt_pjob_post(bt_pjob_t *j, uint32_t layer, uint32_t b0, uint32_t b1);
/* The xfer stream's completion (every post and kv-complete landed, or
 * not). */
void bt_pjob_stream_done(void *arg, bt_status_t status);
/* A post of layer `layer` landed (the timeline). */
void bt_pjob_landed(void *arg, uint32_t layer);
int bt_prefill_next_step(void *self, bt_node_step_t *step, int max);
void bt_prefill_layer_done(void *self, bt_node_step_t *step, int layer);
void bt_prefill_layer_lost(void *self, bt_node_step_t *step);
void bt_prefill_step_done(void *self, bt_node_step_t *step, bt_status_t st);

/* prefill_rpc.c: the Prefill call */
bt_status_t bt_prefill_rpc_register(bt_prefill_t *pf);
void bt_prefill_remotes_destroy(bt_prefill_t *pf);

#endif
