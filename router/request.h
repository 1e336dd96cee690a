/* One client request inside the router (DESIGN §2):
 *
 *   admit ─▶ select (P, D) ─▶ DecodeStream on D ─▶ reservation
 *         ─▶ Prefill on P with it ─▶ first token ─▶ D streams the rest
 *
 * The front end (gRPC or HTTP) gives a tokenized request and a sink; the
 * request calls the sink with text deltas and exactly once with the end.
 * Failures: P fails → cancel D's stream, place again with a new
 * reservation and another P (never the same blocks: D may compute from
 * them already); D fails → reserve on another D and re-prefill prompt + generated tokens
 * (the text continues exactly: sampling is keyed by position).
 *
 * Room: selection counts the decode blocks reserved since a node's last
 * report (select.h). A request no decode node has room for now waits in a
 * FIFO queue (--max-queue requests, --queue-timeout in all); so does one
 * whose reservation the node refused (RESOURCE_EXHAUSTED) while it has
 * given the client nothing: that spends no failover attempt. A full queue
 * or a wait past the timeout ends it with BT_ERR_EXHAUSTED (429); no node
 * serving the model at all, with BT_ERR_PEER_UNREACHABLE (503). These are
 * counted in baton_router_rejected_total.
 *
 * Lease: the decode node frees a reservation whose KV has not come when
 * its lease (--lease) ends; while the request waits for its prefill the
 * router renews it every lease/3 (Decode/RenewLease). NOT_FOUND (the
 * lease is gone) counts as that decode node failing, unless the first
 * token or the stream's end comes before the next tick (D may have
 * admitted the sequence just then); UNIMPLEMENTED (an older node) stops
 * the renewals. */
#ifndef BT_ROUTER_REQUEST_H
#define BT_ROUTER_REQUEST_H

#include "router.h"

#include "generate.pb-c.h"
#include "node.pb-c.h"

#include <stdbool.h>
#include <stdint.h>

#define BT_RREQ_ID_MAX 64

typedef struct {
    /* Text and token ids generated since the last call, in order. `lps`:
     * NULL, or (when the request asked for logprobs) one TokenLogprobs per
     * id, checked against it (borrowed for the call; TopLogprob.text is
     * not filled). Each token, and so its logprobs, comes exactly once,
     * also across a failover; its text may come in a later call (held
     * back by the detokenizer or the stop-string matcher). */
    void (*on_delta)(bt_rreq_t *req, void *arg, const uint32_t *ids, size_t n,
                     const Baton__V1__TokenLogprobs *const *lps,
                     const char *text, size_t text_len);
    /* Exactly once. `status` BT_OK with a finish reason, or an error with
     * a message (the request produced no more output). */
    void (*on_end)(bt_rreq_t *req, void *arg, bt_status_t status,
                   const char *message, Baton__V1__FinishReason finish,
                   const Baton__V1__Usage *usage);
    /* With params.prompt_logprobs (may be NULL otherwise): once, before an
     * on_end with BT_OK, the logprobs of prompt tokens 1..n-1 (n - 1
     * entries, checked; borrowed for the call). on_delta calls may come
     * before it (the decode node can be faster than the prefill's
     * answer): a front that must put the prompt first holds them. */
    void (*on_prompt)(bt_rreq_t *req, void *arg,
                      const Baton__V1__TokenLogprobs *const *lps, size_t n);
} bt_rreq_sink_t;

typedef struct {
    const char              *request_id;   /* NULL or "": one is made */
    const char              *tenant;       /* for logs and the hash salt */
    const uint8_t           *salt;
    size_t                   salt_len;
    const uint32_t          *prompt;       /* copied */
    size_t                   n_prompt;
    const Baton__V1__SamplingParams *sampling;  /* copied */
    bool                     prompt_logprobs;  /* echo with logprobs: the
                                                  sink's on_prompt */
    /* A choice of n > 1 that shares the prompt's KV of `fork_from` (whose
     * reserved_cb ran and which has not ended): it runs on that request's
     * decode node under its parameters, prompt and tenant, with
     * sampling->seed its own, and no prefill. When the node cannot fork
     * (that request's KV never came, or went) it is placed and
     * prefilled alone, as any request; its decode failovers are its own.
     * NULL: a request of its own. */
    const bt_rreq_t         *fork_from;
} bt_rreq_params_t;

/* Starts the request.
 *
 * On failure nothing was started, the sink is never called, *req_p is
 * untouched, and `err` says why: BT_ERR_INVALID_ARG (also a request more
 * than any decode node can hold), BT_ERR_EXHAUSTED when the router is at
 * --max-inflight or no decode node has room and the queue is full,
 * BT_ERR_PEER_UNREACHABLE when no node serves the model, BT_ERR_SHUTDOWN
 * while draining, BT_ERR_NO_MEMORY.
 *
 * On BT_OK, *req_p is the request and stays valid until the sink's on_end
 * returns; on_end is never called before bt_rreq_start returns (all work
 * runs from the event loop), so the caller may finish its own set-up
 * after the call. A request refused later (queue timeout) gets on_end
 * before any on_delta. */
bt_status_t bt_rreq_start(bt_router_t *r, const bt_rreq_params_t *p,
                          const bt_rreq_sink_t *sink, void *sink_arg,
                          bt_rreq_t **req_p, char *err, size_t err_size);

/* Right after bt_rreq_start: n choices will fork this request's prompt
 * (n > 1 and best_of); its first reservation asks the decode node to keep
 * the prompt's KV for them, and `reserved_cb` (once, from inside the
 * request's own callback: it may start requests and cancel this one)
 * says that they may start now (bt_rreq_params_t.fork_from). */
typedef void (*bt_rreq_reserved_cb)(bt_rreq_t *req, void *arg);
void bt_rreq_fork_plan(bt_rreq_t *req, uint32_t n, bt_rreq_reserved_cb cb,
                       void *arg);

/* The client went away: stop everything; the sink's on_end runs inside
 * this call (with BT_ERR_CANCELLED) unless it ran already, and the
 * request must not be used after it. */
void bt_rreq_cancel(bt_rreq_t *req, const char *why);

const char *bt_rreq_id(const bt_rreq_t *req);
/* The prompt's token ids (*n_p of them; valid while req is). */
const uint32_t *bt_rreq_prompt(const bt_rreq_t *req, size_t *n_p);

/* The request's sampling parameters ask for logprobs (logprobs > 0 or
 * logprobs_chosen). */
bool bt_sampling_wants_logprobs(const Baton__V1__SamplingParams *sp);

/* Sets up r's request lists, r->node_ops to the gRPC table and the
 * weights' TPOT stall budget to the router's requests', each unless set
 * already (tests give fake nodes). Before any other call here. */
void bt_router_requests_init(bt_router_t *r);
/* Frees what the requests' text on the worker pool keeps in r
 * (request_detok.c); after the pool and the requests are gone. */
void bt_router_requests_cleanup(bt_router_t *r);

/* Called by the registry when a node leaves: its requests fail over (or
 * end with a message that starts "<role> node <id> <why>", e.g. why =
 * "stopped answering heartbeats"). */
void bt_router_requests_node_gone(bt_router_t *r, bt_node_t *node,
                                  const char *why);
/* A node reported free room, or a request ended: place queued requests,
 * oldest first, while the oldest fits. Safe from any callback, also
 * re-entered. */
void bt_router_queue_kick(bt_router_t *r);
/* Cancels the request with that id (admin); BT_ERR_NOT_FOUND. */
bt_status_t bt_router_request_cancel_by_id(bt_router_t *r, const char *id);

/* For admin ListRequests. */
typedef struct {
    const char *id;
    const char *state;
    const char *prefill_node;
    const char *decode_node;
    uint32_t    prompt_tokens;
    uint32_t    generated_tokens;
    uint64_t    age_ms;
    const char *tenant;
    uint64_t    lease_id;              /* 0: no lease held now */
    uint32_t    lease_blocks;
    uint64_t    lease_expiry_unix_ms;
} bt_rreq_info_t;
void bt_router_requests_foreach(bt_router_t *r,
                                void (*cb)(void *arg, const bt_rreq_info_t *info),
                                void *arg);

#endif
