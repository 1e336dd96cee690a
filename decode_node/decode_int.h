/* What the files of the decode role share: the decode request (bt_dreq)
 * and its lifecycle (decode_req.c), the role's state, and the calls
 * between leases (decode_lease.c), the batch (decode_batch.c) and the
 * token stream (decode_stream.c). */
#ifndef BT_DECODE_INT_H
#define BT_DECODE_INT_H

#include "decode.h"
#include "node.h"
#include "node_grammar.h"

#include "base/list.h"

#include <stdbool.h>
#include <stdint.h>

#define BT_DREQ_MAX_TOKENS (1u << 20)
/* The most choices that may fork one request's prompt. */
#define BT_DREQ_MAX_FORKS 1024u
/* The longest lease a request or a renewal may ask (--lease-default's
 * maximum too). */
#define BT_DREQ_LEASE_MAX_MS 3600000u
/* How often a hold waiting for a writer inside a copy looks again. */
#define BT_DREQ_GUARD_POLL_MS 20u

/* The decode role of one node. */
typedef struct bt_decode {
    bt_node_t *node;
    bt_list_t  reqs;    /* every bt_dreq_t, in arrival order, oldest first */
    bt_list_t  stems;   /* bt_dstem_t: prompts kept for forked choices */
    uint64_t   step_start_us;   /* of the step in flight */
} bt_decode_t;

/* A request's lifecycle (the diagram is in decode_req.c). The order
 * matters: up to FINISHING the call is open. */
typedef enum {
    BT_DREQ_NEW = 0,    /* blocks reserved, the Reservation not sent yet */
    BT_DREQ_LEASED,     /* the Reservation went out: waiting for the KV */
    BT_DREQ_RUNNING,    /* admitted: in the continuous batch */
    BT_DREQ_FINISHING,  /* a token ended it: the final is still to send */
    BT_DREQ_HELD,       /* the call ended before the KV arrived: the blocks
                         * wait for the writer's end-of-writes message or
                         * --lease-fence-timeout */
    BT_DREQ_ENDED,      /* the call ended: the blocks go back once no step
                         * holds the sequence */
    BT_DREQ_RELEASED,   /* the blocks went back: the memory waits for the
                         * sent callbacks still due */
    BT_DREQ_N_STATES
} bt_dreq_state_t;

typedef struct bt_dstem bt_dstem_t;

typedef struct bt_dreq {
    bt_list_t          link;       /* in bt_decode_t.reqs */
    bt_decode_t       *dec;
    bt_node_t         *node;
    bt_rpc_call_t     *call;
    char               id[128];
    bt_dreq_state_t    state;      /* changed by bt_dreq_to only */
    int32_t           *prompt;     /* [n_prompt] */
    uint32_t           n_prompt;
    int32_t           *out;        /* generated_ids ++ new, [max_out] */
    uint32_t           n_out;
    uint32_t           n_given;    /* len(generated_ids) */
    uint32_t           max_out;
    bt_sample_params_t sp;
    bt_node_gram_t    *gram;       /* response_format, NULL: free text */
    uint8_t            root[BT_KV_HASH_LEN];
    uint32_t          *resv;       /* reserved ids not yet in the sequence */
    uint32_t           n_resv;
    uint32_t           n_fill;     /* resv[0, n_fill): what the prefill
                                    * writes */
    uint32_t           resv_next;  /* first id of resv still held */
    uint64_t           lease_id;
    uint64_t           expiry_ms;  /* wall time the lease ends (LEASED) */
    struct event      *lease_ev;   /* lease timer, then the fence timer */
    bool               guard_wait; /* HELD past the fence for a writer
                                    * inside a copy (bt_dreq_hold_try_end) */
    bt_kvseq_t        *seq;
    bool               in_step;    /* the batch's: in the step on the
                                    * worker (RUNNING, or ENDED by then),
                                    * or a block it filled waits for its
                                    * publish after the step's tokens */
    uint32_t           sends_out;  /* sent callbacks still to come */
    uint32_t          *pending;    /* tokens not yet sent */
    uint32_t           n_pending;
    bt_sample_result_t *pending_lp; /* their logprobs (sp.logprobs >= 0) */
    size_t             cap_lp;
    bool               send_wait;  /* the stream's: a send answered
                                    * EXHAUSTED, the next sent callback
                                    * sends again */
    Baton__V1__FinishReason finish;
    uint32_t           cached;
    bt_dstem_t        *stem;       /* choices fork this one's prompt: its
                                    * stem while the KV is on the way */
    uint64_t           fork_of;    /* a forked choice: the lease it forks */
} bt_dreq_t;

/* decode_req.c: the lifecycle */
/* A new request (NEW) joins the role: counted in flight. */
void bt_dreq_enter(bt_decode_t *dec, bt_dreq_t *r);
/* The one place the state changes: asserts the transition is one of the
 * diagram's, keeps node->running, and gives the blocks back on entering
 * RELEASED. */
void bt_dreq_to(bt_dreq_t *r, bt_dreq_state_t to);
/* True while the call is open (NEW to FINISHING). */
bool bt_dreq_open(const bt_dreq_t *r);
/* Ends the call with an error (once); a leased request holds its blocks
 * for the fence, others give them back when no step holds them. */
void bt_dreq_fail(bt_dreq_t *r, bt_rpc_code_t code, const char *msg);
/* Gives the blocks back as soon as no step and no hold needs them; frees
 * the request once no sent callback can still name it. */
void bt_dreq_put(bt_dreq_t *r);
/* A HELD request's writer is done (or timed out): the blocks go back. */
void bt_dreq_hold_end(bt_dreq_t *r);
/* The same unless a live writer is inside a direct copy for the lease
 * (the pool's guard): then the blocks wait, polled every
 * BT_DREQ_GUARD_POLL_MS, until it leaves the copy or dies. */
void bt_dreq_hold_try_end(bt_dreq_t *r);
/* Frees a request that never joined (bt_dreq_enter). */
void bt_dreq_free(bt_dreq_t *r);

/* decode_stream.c: the token stream */
/* A new output token at index n_out (and its logprobs when asked for):
 * recorded, queued, and the end checked (RUNNING -> FINISHING). */
bt_status_t bt_dreq_token(bt_dreq_t *r, int32_t tok,
                          const bt_sample_result_t *lp);
/* Sends the pending tokens in one message, then the final once the
 * request finished; a full send queue keeps them for the next try. */
void bt_dreq_flush(bt_dreq_t *r);

/* decode_lease.c: reservations and leases */
bt_status_t bt_decode_lease_register(bt_decode_t *dec);
void bt_decode_kv_complete(void *self, uint64_t lease_id, int32_t status,
                           const void *user, size_t user_len);
bool bt_decode_lease_live(void *self, uint64_t lease_id);
/* The blocks r's prefill fills take writes for r's lease (open), or no
 * longer do: opened just before the Reservation is sent, closed by
 * bt_dreq_to when the request leaves NEW or LEASED for anything but
 * LEASED. */
void bt_decode_writer_set(bt_dreq_t *r, bool open);
bool bt_decode_cancel(void *self, const char *request_id);

/* decode_fork.c: forked choices (n > 1) */
/* The request r will be forked by fork_count choices: its stem, waiting
 * for the KV (r->stem). */
bt_status_t bt_dstem_open(bt_dreq_t *r, uint32_t fork_count);
/* r's KV arrived (r->seq holds the prompt): the stem keeps it, and the
 * choices waiting for it start. */
void bt_dstem_ready(bt_dreq_t *r);
/* r left LEASED without its KV: its stem ends, and the choices waiting
 * for it fail (FAILED_PRECONDITION: the router prefills them alone). */
void bt_dstem_owner_lost(bt_dreq_t *r);
/* A forked choice names the lease it forks: OK (r->fork_of set), or
 * FAILED_PRECONDITION with why when no stem of that lease has the same
 * tenant and prompt and room for one more choice. */
bt_rpc_code_t bt_dstem_join(bt_dreq_t *r, uint64_t lease_id, char *why,
                            size_t why_size);
/* A leased forked choice starts now if its stem's KV is here. */
void bt_dstem_try_attach(bt_dreq_t *r);
/* Shutdown: every stem's blocks go back. */
void bt_dstem_free_all(bt_decode_t *dec);

/* decode_batch.c: the continuous batch */
int bt_decode_next_step(void *self, bt_node_step_t *step, int max);
void bt_decode_step_done(void *self, bt_node_step_t *step, bt_status_t st);

#endif
