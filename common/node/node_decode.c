/* The decode half: DecodeStream (reserve, lease, admit on kv-complete,
 * continuous batching, token streaming, final), as in docs/architecture.md
 * "The request protocol between router and nodes". */
#include "node.h"
#include "node_lp.h"

#include "base/clock.h"
#include "base/log.h"
#include "kvspec/kv_proto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define BT_DREQ_MAX_TOKENS (1u << 20)
/* The longest lease a request or a renewal may ask (--lease-default's
 * maximum too). */
#define BT_DREQ_LEASE_MAX_MS 3600000u

typedef enum {
    BT_DREQ_RESERVED = 0,  /* waiting for kv-complete */
    BT_DREQ_RUNNING,       /* in the continuous batch */
    BT_DREQ_FINISHING,     /* final queued or waiting to be queued */
    BT_DREQ_DONE,          /* call ended */
} bt_dreq_state_t;

struct bt_dreq {
    bt_dreq_t         *next, *prev;
    bt_node_t         *node;
    bt_rpc_call_t     *call;
    char               id[128];
    bt_dreq_state_t    state;
    int32_t           *prompt;     /* [n_prompt] */
    uint32_t           n_prompt;
    int32_t           *out;        /* generated_ids ++ new, [max_out] */
    uint32_t           n_out;
    uint32_t           n_given;    /* len(generated_ids) */
    uint32_t           max_out;
    bt_sample_params_t sp;
    uint8_t            root[BT_KV_HASH_LEN];
    uint32_t          *resv;       /* reserved ids not yet in the sequence */
    uint32_t           n_resv;
    uint32_t           resv_next;  /* first id of resv still held */
    uint64_t           lease_id;
    uint64_t           expiry_ms;  /* wall time the lease ends (reserved) */
    bool               leased;     /* the reservation went out: a prefill
                                    * node may write into its blocks */
    struct event      *lease_ev;
    bt_kvseq_t        *seq;
    bool               in_step;
    bool               gone;       /* cancelled or failed: free after step */
    bool               held;       /* lease ended while reserved: the blocks
                                    * wait for the writer's end-of-writes
                                    * message or --lease-fence-timeout */
    bool               released;   /* blocks given back */
    uint32_t           sends_out;  /* sent callbacks still to come */
    uint32_t          *pending;    /* tokens not yet sent */
    uint32_t           n_pending;
    bt_sample_result_t *pending_lp; /* their logprobs (sp.logprobs >= 0) */
    uint32_t           cap_lp;
    bool               send_wait;  /* a send answered EXHAUSTED */
    Baton__V1__FinishReason finish;
    uint32_t           cached;
};

/* node->dreqs is in arrival order, oldest first: the batch is built from
 * the head, so with more sequences running than --max-batch the oldest
 * ones step and the newer wait, in order (none starves). */
static void bt_dreq_unlink(bt_node_t *node, bt_dreq_t *r)
{
    if (r->prev != NULL) {
        r->prev->next = r->next;
    } else if (node->dreqs == r) {
        node->dreqs = r->next;
    }
    if (r->next != NULL) {
        r->next->prev = r->prev;
    } else if (node->dreqs_tail == r) {
        node->dreqs_tail = r->prev;
    }
    r->next = r->prev = NULL;
}

static void bt_dreq_append(bt_node_t *node, bt_dreq_t *r)
{
    r->next = NULL;
    r->prev = node->dreqs_tail;
    if (node->dreqs_tail != NULL) {
        node->dreqs_tail->next = r;
    } else {
        node->dreqs = r;
    }
    node->dreqs_tail = r;
}

/* Gives every block back: the sequence's and what is still reserved. */
static void bt_dreq_release(bt_dreq_t *r)
{
    bt_node_t *node = r->node;

    if (r->state == BT_DREQ_RUNNING && node->running > 0) {
        node->running--;
    }
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

/* Gives the blocks back as soon as no step and no hold needs them; frees
 * the request once no sent callback can still name it. */
static void bt_dreq_put(bt_dreq_t *r)
{
    bt_node_t *node = r->node;

    if (r->in_step || r->held) {
        return;
    }
    if (!r->released) {
        r->released = true;
        bt_dreq_release(r);
        bt_node_inflight_done(node);
        bt_node_metrics_update(node);
    }
    if (r->sends_out > 0) {
        return;
    }
    bt_dreq_unlink(node, r);
    free(r->prompt);
    free(r->out);
    free(r->resv);
    free(r->pending);
    free(r->pending_lp);
    free(r);
}

/* A lease that ends before its KV arrived (cancelled, expired, failed)
 * keeps its blocks until no prefill node can still write into them: until
 * a writer's end-of-writes message for the lease arrives (kv-complete or
 * the fence of an aborted prefill; both go out after a flush of the
 * writer's endpoint, so every byte it posted has landed), or at most
 * --lease-fence-timeout for a lease whose writer never got it or died.
 * docs/internals/node.md "Lease fence" says what this guarantees. */
static void bt_dreq_lease_cb(evutil_socket_t fd, short what, void *arg);

/* Ends the call with an error (once) and frees when no step holds it. */
static void bt_dreq_fail(bt_dreq_t *r, bt_rpc_code_t code, const char *msg)
{
    if (r->state == BT_DREQ_RESERVED && r->leased && r->lease_ev != NULL &&
        !r->held) {
        const int64_t ms = r->node->cfg.lease_fence_ms;
        struct timeval tv = { (time_t)(ms / 1000),
                              (suseconds_t)((ms % 1000) * 1000) };

        bt_rpc_call_fail_code(r->call, code, msg);
        r->state = BT_DREQ_DONE;
        r->held = true;
        r->gone = true;
        event_del(r->lease_ev);
        evtimer_add(r->lease_ev, &tv);
        bt_debug("request %s: lease %llu ended before its kv cache; its %u "
                 "blocks wait for the writer's fence", r->id,
                 (unsigned long long)r->lease_id, r->n_resv - r->resv_next);
        return;
    }
    if (r->state != BT_DREQ_DONE) {
        bt_rpc_call_fail_code(r->call, code, msg);
        if (r->state == BT_DREQ_RUNNING && r->node->running > 0) {
            r->node->running--;
        }
        r->state = BT_DREQ_DONE;
    }
    r->gone = true;
    if (!r->in_step) {
        bt_dreq_put(r);
    }
}

static void bt_dreq_flush(bt_dreq_t *r);

static void bt_dreq_sent(bt_rpc_call_t *call, bool ok, void *arg)
{
    bt_dreq_t *r = arg;

    (void)call;
    r->sends_out--;
    if (r->gone) {
        bt_dreq_put(r);
        return;
    }
    if (r->send_wait && ok && r->state != BT_DREQ_DONE) {
        r->send_wait = false;
        bt_dreq_flush(r);
    }
}

/* TokenLogprobs messages over the pending tokens' logprobs. */
typedef struct {
    Baton__V1__TokenLogprobs  *msgs;
    Baton__V1__TokenLogprobs **ptrs;
    Baton__V1__TopLogprob     *tops;
    Baton__V1__TopLogprob    **top_ptrs;
} bt_dreq_lp_msgs_t;

static void bt_dreq_lp_msgs_free(bt_dreq_lp_msgs_t *lm)
{
    free(lm->msgs);
    free(lm->ptrs);
    free(lm->tops);
    free(lm->top_ptrs);
}

static bt_status_t bt_dreq_lp_msgs(const bt_dreq_t *r, bt_dreq_lp_msgs_t *lm)
{
    const size_t n = r->n_pending;
    const size_t per = (size_t)r->sp.logprobs;
    size_t k = 0;

    lm->msgs = malloc(n * sizeof(*lm->msgs));
    lm->ptrs = malloc(n * sizeof(*lm->ptrs));
    lm->tops = malloc((n * per > 0 ? n * per : 1) * sizeof(*lm->tops));
    lm->top_ptrs = malloc((n * per > 0 ? n * per : 1) * sizeof(*lm->top_ptrs));
    if (lm->msgs == NULL || lm->ptrs == NULL || lm->tops == NULL ||
        lm->top_ptrs == NULL) {
        bt_dreq_lp_msgs_free(lm);
        return BT_ERR_NO_MEMORY;
    }
    for (size_t i = 0; i < n; i++) {
        /* n_top <= sp.logprobs: the sampler's and the checked payload's */
        bt_node_lp_to_proto(&r->pending_lp[i], &lm->msgs[i], lm->tops + k,
                            lm->top_ptrs + k);
        lm->ptrs[i] = &lm->msgs[i];
        k += r->pending_lp[i].n_top;
    }
    return BT_OK;
}

/* Sends pending tokens (one message for all of them), then the final when
 * the request finished. A full send queue keeps them for the next try. */
static void bt_dreq_flush(bt_dreq_t *r)
{
    Baton__V1__DecodeResponse m = BATON__V1__DECODE_RESPONSE__INIT;
    bt_status_t s;

    if (r->state == BT_DREQ_DONE || r->send_wait) {
        return;
    }
    if (r->n_pending > 0) {
        Baton__V1__DecodeTokens t = BATON__V1__DECODE_TOKENS__INIT;
        bt_dreq_lp_msgs_t lm = { NULL, NULL, NULL, NULL };

        t.token_ids = r->pending;
        t.n_token_ids = r->n_pending;
        if (r->sp.logprobs >= 0) {
            if (bt_dreq_lp_msgs(r, &lm) != BT_OK) {
                bt_dreq_fail(r, BT_RPC_INTERNAL, "out of memory");
                return;
            }
            t.logprobs = lm.ptrs;
            t.n_logprobs = r->n_pending;
        }
        m.kind_case = BATON__V1__DECODE_RESPONSE__KIND_TOKENS;
        m.tokens = &t;
        s = bt_rpc_call_send(r->call, &m.base, bt_dreq_sent, r);
        if (r->sp.logprobs >= 0) {
            bt_dreq_lp_msgs_free(&lm);
        }
        if (s == BT_ERR_EXHAUSTED) {
            r->send_wait = true;
            return;
        }
        if (s == BT_OK) {
            r->sends_out++;
        }
        if (s != BT_OK) {
            bt_dreq_fail(r, BT_RPC_CANCELLED, "stream gone");
            return;
        }
        r->n_pending = 0;
    }
    if (r->state == BT_DREQ_FINISHING) {
        Baton__V1__DecodeFinal f = BATON__V1__DECODE_FINAL__INIT;
        Baton__V1__Usage u = BATON__V1__USAGE__INIT;

        u.prompt_tokens = r->n_prompt;
        u.completion_tokens = r->n_out;
        u.cached_tokens = r->cached;
        f.finish_reason = r->finish;
        f.usage = &u;
        m.kind_case = BATON__V1__DECODE_RESPONSE__KIND_FINAL;
        m.final = &f;
        s = bt_rpc_call_send(r->call, &m.base, bt_dreq_sent, r);
        if (s == BT_ERR_EXHAUSTED) {
            r->send_wait = true;
            return;
        }
        if (s == BT_OK) {
            r->sends_out++;
            bt_rpc_call_finish(r->call);
        } else {
            bt_rpc_call_fail_code(r->call, BT_RPC_CANCELLED, "stream gone");
        }
        r->state = BT_DREQ_DONE;
        r->gone = true;
        /* blocks go back now; the call itself is done */
        if (!r->in_step) {
            bt_dreq_put(r);
        }
    }
}

/* A new output token at index n_out: record, queue (with its logprobs
 * when the request wants them), check the end. */
static bt_status_t bt_dreq_token(bt_dreq_t *r, int32_t tok,
                                 const bt_sample_result_t *lp)
{
    bt_finish_t f;

    if (r->sp.logprobs >= 0) {
        if (r->n_pending == r->cap_lp) {
            /* pending empties on every send: this grows only while the
             * call's send queue is full, at most to max_out */
            uint32_t cap = r->cap_lp ? r->cap_lp * 2 : 16;
            bt_sample_result_t *p;

            if (cap > r->max_out) {
                cap = r->max_out;
            }
            if (cap <= r->n_pending) {
                return BT_ERR_INTERNAL;   /* more tokens than max_out */
            }
            p = realloc(r->pending_lp, cap * sizeof(*p));
            if (p == NULL) {
                return BT_ERR_NO_MEMORY;
            }
            r->pending_lp = p;
            r->cap_lp = cap;
        }
        r->pending_lp[r->n_pending] = *lp;
    }
    r->out[r->n_out++] = tok;
    r->pending[r->n_pending++] = (uint32_t)tok;
    f = bt_sample_finish(&r->sp, tok, r->n_out);
    if (f == BT_FINISH_NONE && r->n_out >= r->max_out) {
        f = BT_FINISH_LENGTH;
    }
    if (f != BT_FINISH_NONE) {
        if (r->state == BT_DREQ_RUNNING && r->node->running > 0) {
            r->node->running--;
        }
        r->state = BT_DREQ_FINISHING;
        r->finish = f == BT_FINISH_STOP
                    ? BATON__V1__FINISH_REASON__FINISH_REASON_STOP
                    : BATON__V1__FINISH_REASON__FINISH_REASON_LENGTH;
    }
    return BT_OK;
}

static void bt_dreq_cancel_cb(bt_rpc_call_t *call, void *arg)
{
    bt_dreq_t *r = arg;

    (void)call;
    bt_dreq_fail(r, BT_RPC_CANCELLED, "cancelled");
}

static void bt_dreq_lease_cb(evutil_socket_t fd, short what, void *arg)
{
    bt_dreq_t *r = arg;

    (void)fd;
    (void)what;
    if (r->held) {
        bt_warn("request %s: no fence for lease %llu within %lld ms: its "
                "blocks go back", r->id, (unsigned long long)r->lease_id,
                (long long)r->node->cfg.lease_fence_ms);
        bt_counter_inc(r->node->c_fence_timeouts);
        r->held = false;
        bt_dreq_put(r);
        return;
    }
    if (r->state == BT_DREQ_RESERVED) {
        bt_warn("request %s: lease %llu expired before kv-complete", r->id,
                (unsigned long long)r->lease_id);
        bt_dreq_fail(r, BT_RPC_DEADLINE_EXCEEDED,
                     "lease expired before the kv cache arrived");
    }
}

/* (Re)starts the lease timer: `ask_ms` from now (0: --lease-default),
 * at most BT_DREQ_LEASE_MAX_MS. Returns the lease's length. */
static uint64_t bt_dreq_lease_arm(bt_dreq_t *r, uint64_t ask_ms)
{
    uint64_t ms = ask_ms > 0 ? ask_ms : (uint64_t)r->node->cfg.lease_default_ms;
    struct timeval tv;

    if (ms > BT_DREQ_LEASE_MAX_MS) {
        ms = BT_DREQ_LEASE_MAX_MS;
    }
    tv.tv_sec = (time_t)(ms / 1000);
    tv.tv_usec = (suseconds_t)((ms % 1000) * 1000);
    event_del(r->lease_ev);
    evtimer_add(r->lease_ev, &tv);
    r->expiry_ms = bt_wall_ms() + ms;
    return ms;
}

static bt_dreq_t *bt_dreq_find_lease(bt_node_t *node, uint64_t lease)
{
    for (bt_dreq_t *r = node->dreqs; r != NULL; r = r->next) {
        if (r->lease_id == lease && (!r->gone || r->held)) {
            return r;
        }
    }
    return NULL;
}

bool bt_node_decode_lease_live(bt_node_t *node, uint64_t lease_id)
{
    bt_dreq_t *r = bt_dreq_find_lease(node, lease_id);

    return r != NULL && r->state == BT_DREQ_RESERVED;
}

bool bt_node_decode_cancel_id(bt_node_t *node, const char *request_id)
{
    for (bt_dreq_t *r = node->dreqs; r != NULL; r = r->next) {
        if (!r->gone && strcmp(r->id, request_id) == 0) {
            bt_dreq_fail(r, BT_RPC_CANCELLED, "cancelled by the router");
            return true;
        }
    }
    return false;
}

void bt_node_decode_kv_complete(bt_node_t *node, uint64_t lease_id,
                                int32_t status, const void *user,
                                size_t user_len)
{
    bt_dreq_t *r = bt_dreq_find_lease(node, lease_id);
    const uint8_t *u = user;
    uint32_t first, written, n_fill, n_kv;
    int32_t pst;
    bt_sample_result_t lp;
    uint32_t *ids32;
    bt_status_t s;

    if (r != NULL && r->held) {
        bt_debug("request %s: the writer of lease %llu is done: its blocks "
                 "go back", r->id, (unsigned long long)lease_id);
        r->held = false;
        bt_dreq_put(r);   /* the writer is done: the blocks can go */
        return;
    }
    if (r != NULL && r->state == BT_DREQ_RESERVED && status == BT_OK &&
        user_len == BT_NODE_DONE_PAYLOAD) {
        memcpy(&first, u, 4);
        memcpy(&pst, u + 8, 4);
        if (first == BT_NODE_FENCE_FIRST && pst != BT_OK) {
            /* a prefill attempt gave up; the router may retry another
             * with the same lease, which stays */
            bt_debug("request %s: a writer of lease %llu stopped", r->id,
                     (unsigned long long)lease_id);
            return;
        }
    }
    if (r == NULL || r->state != BT_DREQ_RESERVED) {
        bt_debug("kv-complete for unknown lease %llu",
                 (unsigned long long)lease_id);
        return;
    }
    if (status != BT_OK || user_len < BT_NODE_DONE_PAYLOAD) {
        bt_dreq_fail(r, BT_RPC_ABORTED, "the kv transfer failed");
        return;
    }
    memcpy(&first, u, 4);
    memcpy(&written, u + 4, 4);
    memcpy(&pst, u + 8, 4);
    n_kv = r->n_prompt + r->n_given;
    if (pst != BT_OK || written != n_kv || first >= node->vocab) {
        bt_dreq_fail(r, BT_RPC_ABORTED, "the prefill node reported a failure");
        return;
    }
    /* the first token's logprobs follow when the request asked for them */
    if (r->sp.logprobs >= 0
        ? bt_node_lp_unpack(u + BT_NODE_DONE_PAYLOAD,
                            user_len - BT_NODE_DONE_PAYLOAD, (int32_t)first,
                            r->sp.logprobs, node->vocab, &lp) != BT_OK
        : user_len != BT_NODE_DONE_PAYLOAD) {
        bt_warn("request %s: kv-complete of %zu bytes does not match the "
                "request's logprobs", r->id, user_len);
        bt_dreq_fail(r, BT_RPC_ABORTED, "the prefill node sent a malformed "
                     "kv-complete");
        return;
    }
    n_fill = (n_kv + (uint32_t)node->cfg.block_size - 1) /
             (uint32_t)node->cfg.block_size;
    ids32 = malloc(n_kv * sizeof(*ids32));
    if (ids32 == NULL) {
        bt_dreq_fail(r, BT_RPC_INTERNAL, "out of memory");
        return;
    }
    for (uint32_t i = 0; i < r->n_prompt; i++) {
        ids32[i] = (uint32_t)r->prompt[i];
    }
    for (uint32_t i = 0; i < r->n_given; i++) {
        ids32[r->n_prompt + i] = (uint32_t)r->out[i];
    }
    s = bt_kvseq_create(node->pool, r->root, &r->seq);
    if (s == BT_OK) {
        s = bt_kvseq_commit_reserved(r->seq, r->resv, n_fill, ids32, n_kv);
    }
    free(ids32);
    if (s != BT_OK) {
        bt_dreq_fail(r, BT_RPC_INTERNAL, "cannot take the reserved blocks");
        return;
    }
    r->resv_next = n_fill;
    event_del(r->lease_ev);
    r->state = BT_DREQ_RUNNING;
    node->running++;
    if (bt_dreq_token(r, (int32_t)first, &lp) != BT_OK) {
        bt_dreq_fail(r, BT_RPC_INTERNAL, "out of memory");
        return;
    }
    bt_dreq_flush(r);
    bt_node_metrics_update(node);
    bt_node_sched_kick(node);
}

int bt_node_decode_batch(bt_node_t *node, bt_step_seq_t *seqs, int max,
                         int32_t *toks, bt_dreq_t **who)
{
    int n = 0;

    for (bt_dreq_t *r = node->dreqs; r != NULL && n < max; r = r->next) {
        uint32_t pos, t;

        if (r->state != BT_DREQ_RUNNING || r->gone) {
            continue;
        }
        pos = bt_kvseq_n_tokens(r->seq);
        t = (uint32_t)r->out[r->n_out - 1];
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
        who[n++] = r;
    }
    return n;
}

/* A block that just filled goes to the kvstore, so that a failover's
 * re-prefill of prompt ++ generated finds nearly all of it there. */
static void bt_dreq_publish_filled(bt_node_t *node, bt_dreq_t *r)
{
    const uint32_t bs = (uint32_t)node->cfg.block_size;
    const uint32_t n_tok = bt_kvseq_n_tokens(r->seq);
    uint32_t ids[BT_KV_MAX_BLOCK_TOKENS], b;

    if (!bt_node_kvs_on(node) || n_tok == 0 || n_tok % bs != 0) {
        return;
    }
    b = n_tok / bs - 1;
    for (uint32_t t = 0; t < bs; t++) {
        uint32_t pos = b * bs + t;

        ids[t] = pos < r->n_prompt ? (uint32_t)r->prompt[pos]
                                   : (uint32_t)r->out[pos - r->n_prompt];
    }
    bt_node_kvs_publish(node, r->seq, ids, b, b + 1);
}

void bt_node_decode_after(bt_node_t *node, bt_dreq_t **who, int n,
                          const float *logits, bt_status_t st)
{
    for (int i = 0; i < n; i++) {
        bt_dreq_t *r = who[i];
        bt_sample_seq_t ss;
        bt_sample_result_t res;

        r->in_step = false;
        if (r->gone) {
            if (r->state == BT_DREQ_DONE) {
                bt_dreq_put(r);
            }
            continue;
        }
        if (st != BT_OK) {
            bt_dreq_fail(r, BT_RPC_INTERNAL, "forward step failed");
            continue;
        }
        bt_kvseq_set_computed(r->seq, bt_kvseq_n_tokens(r->seq));
        bt_dreq_publish_filled(node, r);
        ss.prompt = r->prompt;
        ss.n_prompt = r->n_prompt;
        ss.generated = r->out;
        ss.n_generated = r->n_out;
        ss.position = (uint64_t)r->n_prompt + r->n_out;
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
    bt_node_metrics_update(node);
}

static void bt_decode_stream(bt_rpc_call_t *call, const ProtobufCMessage *msg,
                             void *arg)
{
    bt_node_t *node = arg;
    const Baton__V1__DecodeRequest *q = (const Baton__V1__DecodeRequest *)msg;
    Baton__V1__DecodeResponse m = BATON__V1__DECODE_RESPONSE__INIT;
    Baton__V1__Reservation rv = BATON__V1__RESERVATION__INIT;
    Baton__V1__KvGeometry g = BATON__V1__KV_GEOMETRY__INIT;
    const bt_kv_geom_t *geom = bt_kvpool_geom(node->pool);
    const uint32_t bs = geom->block_size;
    bt_dreq_t *r;
    uint32_t max_out, n_total, n_blocks, n_fill;
    void *desc = NULL;
    size_t desc_len = 0;
    uint64_t lease_ms;
    char why[256];

    if (node->draining) {
        bt_rpc_call_fail_code(call, BT_RPC_UNAVAILABLE, "the node is draining");
        return;
    }
    if (q->n_token_ids == 0 || q->n_token_ids > BT_DREQ_MAX_TOKENS ||
        q->n_generated_ids > BT_DREQ_MAX_TOKENS || q->sampling == NULL ||
        q->tenant == NULL || q->tenant->root_hash.len != BT_KV_HASH_LEN) {
        bt_rpc_call_fail_code(call, BT_RPC_INVALID_ARGUMENT,
                              "token_ids, sampling and a 32-byte "
                              "tenant.root_hash are required");
        return;
    }
    if (q->model != NULL && q->model[0] != '\0' &&
        strcmp(q->model, node->model_name) != 0) {
        snprintf(why, sizeof(why), "model %.100s is not served here (%.100s)",
                 q->model, node->model_name);
        bt_rpc_call_fail_code(call, BT_RPC_INVALID_ARGUMENT, why);
        return;
    }
    for (size_t i = 0; i < q->n_token_ids; i++) {
        if (q->token_ids[i] >= node->vocab) {
            bt_rpc_call_fail_code(call, BT_RPC_INVALID_ARGUMENT,
                                  "token id outside the vocabulary");
            return;
        }
    }
    r = calloc(1, sizeof(*r));
    if (r == NULL) {
        bt_rpc_call_fail_code(call, BT_RPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    r->node = node;
    r->call = call;
    snprintf(r->id, sizeof(r->id), "%s", q->request_id ? q->request_id : "");
    bt_node_sampling_from_proto(node, q->sampling, &r->sp);
    if (bt_node_lp_param(q->sampling, &r->sp.logprobs) != BT_OK ||
        bt_sample_params_check(&r->sp) != BT_OK) {
        free(r);
        bt_rpc_call_fail_code(call, BT_RPC_INVALID_ARGUMENT,
                              "sampling parameters out of range");
        return;
    }
    max_out = (uint32_t)r->sp.max_tokens;
    if (q->n_generated_ids >= max_out) {
        free(r);
        bt_rpc_call_fail_code(call, BT_RPC_INVALID_ARGUMENT,
                              "generated_ids already reach max_tokens");
        return;
    }
    r->n_prompt = (uint32_t)q->n_token_ids;
    r->n_given = (uint32_t)q->n_generated_ids;
    r->max_out = max_out;
    memcpy(r->root, q->tenant->root_hash.data, BT_KV_HASH_LEN);
    n_total = r->n_prompt + max_out;
    n_blocks = (n_total + bs - 1) / bs;
    n_fill = (r->n_prompt + r->n_given + bs - 1) / bs;
    r->prompt = malloc(r->n_prompt * sizeof(int32_t));
    r->out = malloc(max_out * sizeof(int32_t));
    r->pending = malloc(max_out * sizeof(uint32_t));
    r->resv = malloc(n_blocks * sizeof(uint32_t));
    r->lease_ev = evtimer_new(node->base, bt_dreq_lease_cb, r);
    if (r->prompt == NULL || r->out == NULL || r->pending == NULL ||
        r->resv == NULL || r->lease_ev == NULL) {
        goto err_nomem;
    }
    for (uint32_t i = 0; i < r->n_prompt; i++) {
        r->prompt[i] = (int32_t)q->token_ids[i];
    }
    for (uint32_t i = 0; i < r->n_given; i++) {
        r->out[i] = (int32_t)q->generated_ids[i];
    }
    r->n_out = r->n_given;
    if (bt_kvpool_reserve(node->pool, n_blocks, r->resv) != BT_OK) {
        snprintf(why, sizeof(why), "cannot reserve %u kv blocks (%u available "
                 "of %u)", n_blocks, bt_kvpool_available(node->pool),
                 bt_kvpool_n_blocks(node->pool));
        free(r->prompt);
        free(r->out);
        free(r->pending);
        free(r->resv);
        event_free(r->lease_ev);
        free(r);
        bt_rpc_call_fail_code(call, BT_RPC_RESOURCE_EXHAUSTED, why);
        return;
    }
    r->n_resv = n_blocks;
    if (getrandom(&r->lease_id, sizeof(r->lease_id), 0) !=
        (ssize_t)sizeof(r->lease_id) || r->lease_id == 0) {
        r->lease_id = bt_now_ns() | 1;
    }
    bt_dreq_append(node, r);
    node->inflight++;
    bt_rpc_call_set_cancel_cb(call, bt_dreq_cancel_cb, r);
    lease_ms = bt_dreq_lease_arm(r, q->lease_ms);

    if (node->region != NULL &&
        bt_xfer_region_export(node->region, &desc, &desc_len) != BT_OK) {
        bt_dreq_fail(r, BT_RPC_INTERNAL, "cannot export the kv region");
        return;
    }
    g.n_layers = geom->n_layers;
    g.n_kv_heads = geom->n_kv_heads;
    g.head_dim = geom->head_dim;
    g.block_size = bs;
    g.dtype = bt_kv_dtype_to_proto(geom->dtype);
    rv.pool_descriptor.data = desc;
    rv.pool_descriptor.len = desc_len;
    rv.block_ids = r->resv;
    rv.n_block_ids = n_fill;
    rv.block_size = bs;
    rv.geometry = &g;
    rv.lease_id = r->lease_id;
    rv.expiry_unix_ms = r->expiry_ms;
    rv.decode_node_id = node->node_id;
    rv.pool_base = node->region != NULL
                   ? (uint64_t)(uintptr_t)bt_xfer_region_base(node->region) : 0;
    m.kind_case = BATON__V1__DECODE_RESPONSE__KIND_RESERVATION;
    m.reservation = &rv;
    if (bt_rpc_call_send(call, &m.base, NULL, NULL) != BT_OK) {
        free(desc);
        bt_dreq_fail(r, BT_RPC_INTERNAL, "cannot send the reservation");
        return;
    }
    free(desc);
    r->leased = true;
    bt_debug("request %s: reserved %u blocks (lease %llu, %llu ms)", r->id,
             n_blocks, (unsigned long long)r->lease_id,
             (unsigned long long)lease_ms);
    bt_node_metrics_update(node);
    return;

err_nomem:
    free(r->prompt);
    free(r->out);
    free(r->pending);
    free(r->resv);
    if (r->lease_ev != NULL) {
        event_free(r->lease_ev);
    }
    free(r);
    bt_rpc_call_fail_code(call, BT_RPC_RESOURCE_EXHAUSTED, "out of memory");
}

/* RenewLease: a lease still waiting for its KV gets lease_ms more from
 * now. Only the request that holds the lease may renew it, and every
 * other case answers NOT_FOUND alike, so lease ids cannot be probed. */
static void bt_renew_lease(bt_rpc_call_t *call, const ProtobufCMessage *msg,
                           void *arg)
{
    bt_node_t *node = arg;
    const Baton__V1__RenewLeaseRequest *q =
        (const Baton__V1__RenewLeaseRequest *)msg;
    Baton__V1__RenewLeaseResponse res = BATON__V1__RENEW_LEASE_RESPONSE__INIT;
    const char *rid = q->request_id != NULL ? q->request_id : "";
    bt_dreq_t *r = NULL;

    for (bt_dreq_t *x = node->dreqs; x != NULL; x = x->next) {
        if (x->lease_id == q->lease_id && q->lease_id != 0 && !x->gone &&
            x->leased && strcmp(x->id, rid) == 0) {
            r = x;
            break;
        }
    }
    if (r == NULL) {
        bt_rpc_call_fail_code(call, BT_RPC_NOT_FOUND, "no live lease with "
                              "that id for that request");
        return;
    }
    if (r->state == BT_DREQ_RESERVED) {
        uint64_t ms = bt_dreq_lease_arm(r, q->lease_ms);

        bt_debug("request %s: lease %llu renewed for %llu ms", r->id,
                 (unsigned long long)r->lease_id, (unsigned long long)ms);
        res.expiry_unix_ms = r->expiry_ms;
    }
    /* admitted: the KV is here and the lease no longer expires (0) */
    bt_rpc_call_reply(call, &res.base);
}

static void bt_decode_notify(void *arg, const bt_xfer_notify_t *n)
{
    if (n->layer != UINT32_MAX) {
        return;
    }
    bt_node_decode_kv_complete(arg, n->lease_id, n->status, n->user,
                               n->user_len);
}

bt_status_t bt_node_decode_register(bt_node_t *node)
{
    if (node->xfer != NULL) {
        bt_xfer_ctx_set_notify_cb(node->xfer, bt_decode_notify, node);
    }
    if (bt_rpc_server_add_unary(node->grpc, "/baton.v1.Decode/RenewLease",
                                &baton__v1__renew_lease_request__descriptor,
                                bt_renew_lease, node) != BT_OK) {
        return BT_ERR_NO_MEMORY;
    }
    return bt_rpc_server_add_stream(node->grpc, "/baton.v1.Decode/DecodeStream",
                                    &baton__v1__decode_request__descriptor,
                                    bt_decode_stream, node);
}

void bt_node_decode_destroy_all(bt_node_t *node)
{
    bt_dreq_t *next;

    for (bt_dreq_t *r = node->dreqs; r != NULL; r = next) {
        next = r->next;
        r->in_step = false;
        r->held = false;
        if (r->state != BT_DREQ_DONE) {
            bt_rpc_call_fail_code(r->call, BT_RPC_UNAVAILABLE, "shutting down");
            r->state = BT_DREQ_DONE;
        }
        r->gone = true;
        bt_dreq_put(r);
    }
}

void bt_node_decode_free_all(bt_node_t *node)
{
    while (node->dreqs != NULL) {
        node->dreqs->sends_out = 0;
        bt_dreq_put(node->dreqs);
    }
}
