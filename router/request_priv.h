/* What the request machinery's files share (request.h is the API), lowest
 * first; each file calls only the ones above it:
 *
 *   request_state.c   the request object's state machine (the diagram),
 *                     the lists and counters it keeps, freeing
 *   request_output.c  output shaping: tokens to text, stop strings, logprobs
 *   request_queue.c   placement and the wait queue (admission, the kick)
 *   request_end.c     outcomes: end, reject, re-placement, cancel, admin views
 *   request_detok.c   tokens to text on the worker pool, in jobs per loop
 *                     pass; the text back to the client in order
 *   request_calls.c   node calls: DecodeStream, Prefill, prefill retry,
 *                     decode failover
 *   request_lease.c   lease renewal while the prefill waits
 *   request_start.c   bt_rreq_start
 *   node_ops.c        the calls on nodes over gRPC (node_ops.h) */
#ifndef BT_ROUTER_REQUEST_PRIV_H
#define BT_ROUTER_REQUEST_PRIV_H

#include "base/list.h"
#include "model.h"
#include "node_ops.h"
#include "request.h"

#include <stdbool.h>
#include <stdint.h>

typedef enum {
    BT_RREQ_NEW,         /* made, not admitted yet */
    BT_RREQ_QUEUED,      /* waiting for a node with room */
    BT_RREQ_RESERVING,   /* DecodeStream open, waiting for the reservation */
    BT_RREQ_PREFILLING,  /* Prefill in flight */
    BT_RREQ_DECODING,    /* the decode node generates */
    BT_RREQ_DONE,        /* the sink's on_end ran (or it was never admitted) */
} bt_rreq_state_t;

/* A request's tokens on their way to text on the worker pool
 * (request_detok.c). The loop fills `ids` and moves the request's
 * detokenizer and stop-string matcher in; a worker writes the outputs;
 * the loop reads them and moves the two back once the pool handed the
 * job back. At most one job per request is out. */
typedef struct bt_rreq_job bt_rreq_job_t;
struct bt_rreq_job {
    bt_rreq_job_t   *next;        /* r->detok_ready, then the pass's batch */
    bt_rreq_t       *req;         /* loop thread; NULL once the request was
                                   * freed: the job frees itself and what it
                                   * holds when it comes back */
    bt_tok_stream_t *detok;       /* the request's, while out */
    bt_stopstr_t    *stops;
    uint32_t        *ids;         /* in: the tokens, in order */
    size_t           n_ids;
    size_t           cap_ids;
    size_t           cap_ends;
    bt_buf_t         piece;       /* worker: one token's text */
    bt_buf_t         text;        /* out: the tokens' texts one after another */
    size_t          *ends;        /* out: token i's text ends at ends[i] */
    size_t           n_done;      /* out: tokens done (a stop's included) */
    bool             stopped;     /* out: token n_done - 1 matched a stop */
    bool             no_memory;   /* out */
};

struct bt_rreq {
    bt_list_t                  link;             /* r->requests */
    bt_list_t                  qlink;            /* r->queue, oldest first */
    bt_router_t               *r;
    char                       id[BT_RREQ_ID_MAX + 1];
    bt_rreq_state_t            state;            /* bt_rreq_set_state only */
    uint64_t                   created_ns;
    uint64_t                   sent_ns;          /* first sent to nodes (metrics) */
    uint64_t                   first_token_ns;
    uint64_t                   last_token_ns;
    uint64_t                   deadline_ms;       /* monotonic */

    uint32_t                  *prompt;
    size_t                     n_prompt;
    uint32_t                  *gen;               /* tokens given to the client */
    size_t                     n_gen;
    size_t                     cap_gen;
    Baton__V1__SamplingParams *sampling;          /* owned (unpacked copy) */
    char                       tenant[65];
    uint8_t                    salt[64];
    size_t                     salt_len;
    /* bound at the first placement (request_queue.c): the numerics id of
     * its pair and the root of its KV; every later pair has that id */
    uint8_t                    root[BT_BLOCK_HASH_LEN];
    char                       numerics[BT_KV_NUMERICS_MAX + 1];
    bool                       root_known;

    /* the current pair; a node is identified by slot + generation */
    unsigned                   p_slot, d_slot;
    uint64_t                   p_gen, d_gen;
    char                       p_id[BT_NODE_ID_MAX + 1];
    char                       d_id[BT_NODE_ID_MAX + 1];
    uint32_t                   p_assigned_tokens;
    bool                       assigned;
    bt_node_set_t              exclude_p, exclude_d;
    /* the router's prefix index at placement: the prompt's full blocks the
     * prefill node's own cache and the kvstore replicas hold together
     * (PrefillRequest.reusable_blocks); known only for a first prefill
     * with a kvstore registered */
    uint32_t                   reuse_blocks;
    bool                       reuse_known;
    int                        prefill_attempts;
    int                        decode_attempts;
    bt_node_call_t            *d_call;
    bt_node_call_t            *p_call;
    uint64_t                   d_call_seq;        /* tells stale callbacks apart */
    uint64_t                   p_call_seq;
    Baton__V1__Reservation    *resv;              /* owned (unpacked copy) */
    size_t                     d_base;            /* first index this D generates */
    size_t                     d_next;            /* next index expected from D */
    bool                       d_final;
    Baton__V1__FinishReason    d_finish;
    uint32_t                   cached_tokens;

    bt_tok_stream_t           *detok;
    bt_stopstr_t              *stops;
    bt_buf_t                   text;
    const bt_rreq_sink_t      *sink;
    void                      *sink_arg;
    bool                       stopped;          /* a stop string matched */
    /* tokens to text on the pool (request_detok.c): gen[n_given..n_gen)
     * arrived and wait for their text (with their logprobs' copies in
     * lpq, when asked for); job_ready: in r->detok_ready; job_out: on
     * the pool, holding detok and stops */
    size_t                     n_given;
    Baton__V1__TokenLogprobs **lpq;
    size_t                     cap_lpq;
    bt_rreq_job_t             *job;
    bool                       job_ready, job_out;
    bool                       delivering;       /* the sink is being given text */
    /* the request ended while text was still to come: the sink's on_end
     * waits for it (n_end_held counts these) */
    bool                       end_held;
    bool                       told_end;         /* the sink's on_end ran */
    bt_status_t                held_status;
    Baton__V1__FinishReason    held_finish;
    char                       held_msg[640];
    int                        pending_cbs;      /* node callbacks still to come */
    struct event              *queue_ev;         /* the queue timeout */
    uint64_t                   queue_deadline_ms; /* 0 until first queued */
    struct event              *go_ev;            /* opens the placed pair from the loop */

    /* the reservation asked of the decode node, counted there by select.c
     * until it comes back (d_pending) */
    uint32_t                   d_blocks;
    bool                       d_pending;
    /* lease renewal while the prefill waits (request.h) */
    struct event              *renew_ev;
    bt_node_call_t            *renew_call;
    uint64_t                   renew_seq;
    bool                       renew_off;        /* the node has no RenewLease */
    bool                       lease_gone;       /* a renewal got NOT_FOUND */
    /* why the router cancelled the current prefill / decode call (its
     * node left) */
    char                       p_gone_why[160];
    char                       d_gone_why[160];
    bt_trace_t                *trace;            /* r->traces' (trace.h) */
    /* prompt logprobs (echo): asked of the prefill until one answers with
     * them; the decode node's end waits for them */
    bool                       plp_want, plp_done, plp_end_held;
    /* the decode node ended before the prefill node answered (max_tokens
     * 1): the end waits for that answer, which carries the usage's cached
     * tokens, at most BT_RREQ_USAGE_WAIT_MS (usage_ev) */
    bool                       usage_end_held;
    struct event              *usage_ev;
    uint64_t                   p_sent_us;        /* the Prefill call sent, on the trace */
    uint8_t                    n_prefills;       /* Prefill calls sent (retries, failovers) */
    /* n > 1 choices sharing the prompt's KV (request_fork.c) */
    uint32_t                   fork_count;       /* choices to fork this one's
                                                  * prompt; 0 once told */
    uint64_t                   fork_lease;       /* a forked choice: the lease it
                                                  * forks on d_slot; 0: alone */
    bt_rreq_reserved_cb        fork_cb;          /* bt_rreq_fork_plan's */
    void                      *fork_arg;
};

/* A timed event on the request's trace (trace.h); best effort. */
/* the longest a request that the decode node ended waits for its prefill
 * node's answer (usage_end_held): that answer normally trails by
 * milliseconds */
#define BT_RREQ_USAGE_WAIT_MS 2000

#define BT_RREQ_TRACE(_req, _kind, ...) \
    bt_trace_add((_req)->trace, (_kind), __VA_ARGS__)

/* A call's done callback gets one of these: the request may have moved
 * on to another call of the same kind since (a retry). */
typedef struct {
    bt_rreq_t *req;
    uint64_t   seq;
} bt_rreq_cb_t;

/* The files, lowest first: each calls only those above it in this list.
 *
 * request_state.c: the state machine and what the request holds */
/* The one place a request changes state: keeps r->n_inflight, r->n_queued,
 * their gauges, r->requests and r->queue; aborts on a transition the
 * diagram does not have. */
void bt_rreq_set_state(bt_rreq_t *req, bt_rreq_state_t to);
const char *bt_rreq_state_name(bt_rreq_state_t state);
static inline bool bt_rreq_ended(const bt_rreq_t *req)
{
    return req->state == BT_RREQ_DONE;
}
bt_node_t *bt_rreq_node(bt_rreq_t *req, unsigned slot, uint64_t gen);
void bt_rreq_release_nodes(bt_rreq_t *req);
/* Cancels a node call through r's node ops. */
void bt_rreq_call_cancel(bt_rreq_t *req, bt_node_call_t *call);
/* Renews every lease/3 from now on while the request stays PREFILLING;
 * stop: no more renewals, the one in flight cancelled. */
void bt_rreq_renew_arm(bt_rreq_t *req);
void bt_rreq_renew_stop(bt_rreq_t *req);
/* Frees an ended request once no node callback is still to come, its
 * end told and no text being given; a job of it still out or queued is
 * let go (freed when it comes back). */
void bt_rreq_maybe_free(bt_rreq_t *req);
void bt_rreq_job_free(bt_rreq_job_t *job);
/* Frees the kept logprobs of the waiting tokens from gen[from] on. */
void bt_rreq_drop_waiting(bt_rreq_t *req, size_t from);
/* A node call's done callback starts here: `cb` (freed) was for the call
 * of sequence `seq` kept in *call. True: act on the result; false: the
 * request ended or moved on to another call (and may be freed now). */
bool bt_rreq_call_done(bt_rreq_cb_t *cb, uint64_t seq, bt_node_call_t **call);

/* request_output.c */
/* Gives `token` (the next output index) to the client; `lp` its logprobs
 * from the node (NULL when none came). BT_OK (req->stopped set when a
 * stop string matched: the request is to end with STOP), or an error
 * with *why: the request is to end with it. With a worker pool the
 * token's text waits (gen[n_given..n_gen), the caller queues it with
 * bt_rreq_detok_queue) unless it can be given now. */
bt_status_t bt_rreq_emit_token(bt_rreq_t *req, uint32_t token,
                               const Baton__V1__TokenLogprobs *lp,
                               const char **why);
/* Flushes what the detokenizer and the stop-string matcher hold. */
void bt_rreq_flush(bt_rreq_t *req);
/* Token `i` of the job's text. */
void bt_rreq_job_piece(const bt_rreq_job_t *job, size_t i, const char **text,
                       size_t *len);
/* Gives the client the next token waiting for its text (gen[n_given]),
 * its text `text`; the sink may cancel the request inside. */
void bt_rreq_give_text(bt_rreq_t *req, const char *text, size_t len);
/* The prefill's prompt logprobs (pr) to the sink; false when they are
 * missing or wrong: the request ended. */
bool bt_rreq_prompt_lp(bt_rreq_t *req, const Baton__V1__PrefillResult *pr);

/* request_queue.c: placement and the queue (never ends a request) */
bt_status_t bt_rreq_place(bt_rreq_t *req, char *err, size_t err_size);
bt_status_t bt_rreq_place_status(bt_status_t s);
/* select.h's stall_budget_ms for the router's requests (arg: the router) */
double bt_rreq_stall_budget(void *arg, const bt_node_t *node);
bt_status_t bt_rreq_enqueue(bt_rreq_t *req, char *err, size_t err_size);
bt_status_t bt_rreq_admit(bt_rreq_t *req, char *err, size_t err_size);

/* request_end.c: outcomes */
void bt_rreq_end(bt_rreq_t *req, bt_status_t status, const char *msg,
                 Baton__V1__FinishReason finish);
void bt_rreq_reject(bt_rreq_t *req, bt_status_t s, const char *msg);
void bt_rreq_queue_timeout_cb(evutil_socket_t fd, short what, void *arg);
void bt_rreq_dispatch(bt_rreq_t *req, const char *why);
void bt_rreq_requeue(bt_rreq_t *req, const char *why);
/* The text the end waited for has gone to the client: its on_end now. */
void bt_rreq_end_release(bt_rreq_t *req);

/* request_detok.c: tokens to text on the pool */
/* After bt_rreq_emit_token: tokens that wait for their text
 * (gen[n_given..n_gen)) go in this loop pass's job. */
void bt_rreq_detok_queue(bt_rreq_t *req);

/* request_calls.c: node calls */
void bt_rreq_go_cb(evutil_socket_t fd, short what, void *arg);
void bt_rreq_usage_wait_cb(evutil_socket_t fd, short what, void *arg);
void bt_rreq_open_decode(bt_rreq_t *req);
void bt_rreq_failover(bt_rreq_t *req, const char *why);

/* request_trace.c: a prefill node's chunks and layer transfers (its
 * PrefillResult) onto the request's trace */
void bt_rreq_trace_prefill(bt_rreq_t *req, const Baton__V1__PrefillResult *pr);

/* request_fork.c: forked choices */
/* The fields of the DecodeRequest about forks (fork_count, fork_lease_id). */
void bt_rreq_fork_fill(bt_rreq_t *req, Baton__V1__DecodeRequest *dr);
/* The reservation came: true when the request is a forked choice (it
 * decodes now, with no prefill); tells the sink when forks may start. */
bool bt_rreq_fork_reserved(bt_rreq_t *req);
/* A forked choice's decode call failed with `code`: true when it was
 * dealt with (the choice now goes alone, prefilled on its own). */
bool bt_rreq_fork_failed(bt_rreq_t *req, bt_rpc_code_t code, const char *why);
/* bt_rreq_start of a forked choice: onto its leader's decode node. */
bt_status_t bt_rreq_fork_admit(bt_rreq_t *req, const bt_rreq_t *from,
                               char *err, size_t err_size);

/* request_lease.c */
void bt_rreq_renew_cb(evutil_socket_t fd, short what, void *arg);

/* request_start.c: bt_rreq_start (request.h) */

#endif
