/* One client request inside the router (DESIGN §2):
 *
 *   admit ─▶ select (P, D) ─▶ DecodeStream on D ─▶ reservation
 *         ─▶ Prefill on P with it ─▶ first token ─▶ D streams the rest
 *
 * The front end (gRPC or HTTP) gives a tokenized request and a sink; the
 * request calls the sink with text deltas and exactly once with the end.
 * Failures: P fails → retry on another P with the same reservation; D
 * fails → reserve on another D and re-prefill prompt + generated tokens
 * (the text continues exactly: sampling is keyed by position); no node
 * has room → wait in a bounded queue, then 429. */
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
} bt_rreq_sink_t;

typedef struct {
    const char              *request_id;   /* NULL or "": one is made */
    const char              *tenant;       /* for logs and the hash salt */
    const uint8_t           *salt;
    size_t                   salt_len;
    const uint32_t          *prompt;       /* copied */
    size_t                   n_prompt;
    const Baton__V1__SamplingParams *sampling;  /* copied */
} bt_rreq_params_t;

/* Starts the request. On failure nothing was started, the sink is never
 * called, and `err` says why (BT_ERR_INVALID_ARG, BT_ERR_EXHAUSTED when
 * the router is full, BT_ERR_SHUTDOWN while draining). */
bt_status_t bt_rreq_start(bt_router_t *r, const bt_rreq_params_t *p,
                          const bt_rreq_sink_t *sink, void *sink_arg,
                          bt_rreq_t **req_p, char *err, size_t err_size);

/* The client went away: stop everything; the sink's on_end still runs
 * (with BT_ERR_CANCELLED). */
void bt_rreq_cancel(bt_rreq_t *req, const char *why);

const char *bt_rreq_id(const bt_rreq_t *req);

/* The request's sampling parameters ask for logprobs (logprobs > 0 or
 * logprobs_chosen). */
bool bt_sampling_wants_logprobs(const Baton__V1__SamplingParams *sp);

/* Called by the registry when a node leaves: its requests fail over. */
void bt_router_requests_node_gone(bt_router_t *r, bt_node_t *node);
/* A node reported free room, or a request ended: retry queued ones. */
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
} bt_rreq_info_t;
void bt_router_requests_foreach(bt_router_t *r,
                                void (*cb)(void *arg, const bt_rreq_info_t *info),
                                void *arg);

#endif
