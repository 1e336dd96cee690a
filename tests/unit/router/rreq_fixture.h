/* A router for the request machinery's tests (router/request*.c): a real
 * event loop, registry and model (baton-mkmodel's tiny one), two prefill
 * and two decode nodes, a sink that records what the client would see,
 * and fake nodes behind router/node_ops.h: each call the router makes is
 * kept (fx_call_t) and the test answers it as the node would. A cancelled
 * call gets its CANCELLED end from fx_pump, as gRPC would from the loop. */
#ifndef BT_TEST_RREQ_FIXTURE_H
#define BT_TEST_RREQ_FIXTURE_H

#include "node_ops.h"
#include "request.h"
#include "router.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FX_MAX_CALLS 128
#define FX_MAX_IDS   512
#define FX_MAX_TEXT  8192

typedef enum { FX_DECODE, FX_PREFILL, FX_RENEW } fx_kind_t;

typedef struct {
    fx_kind_t             kind;
    char                  node[BT_NODE_ID_MAX + 1];
    char                  request_id[BT_RREQ_ID_MAX + 1];
    bt_rpc_msg_cb         on_msg;
    bt_rpc_done_cb        stream_done;
    bt_rpc_unary_done_cb  unary_done;
    void                 *arg;
    bool                  ended;           /* its done ran */
    bool                  cancelled;       /* the router cancelled it */
    /* what the router asked */
    size_t                n_tokens;        /* prompt (+ generated, prefill) */
    size_t                n_generated;     /* decode: generated_ids; prefill:
                                            * generated_count */
    uint64_t              lease_id;        /* prefill: its reservation's;
                                            * renew: the one renewed */
    bool                  prompt_logprobs; /* prefill: asked for them */
    uint32_t              fork_count;      /* decode: choices to fork it */
    uint64_t              fork_lease;      /* decode: the lease it forks */
    uint64_t              seed;            /* decode: its sampling seed */
} fx_call_t;

/* What the client saw of one request. */
typedef struct fx_rec {
    uint32_t    ids[FX_MAX_IDS];
    size_t      n_ids;
    int         deltas;
    char        text[FX_MAX_TEXT];   /* every delta's text, joined */
    size_t      text_len;
    size_t      delta_ends[FX_MAX_IDS]; /* delta i's text ends there */
    bool        text_after_end;     /* a delta came after on_end */
    uint32_t    completion_tokens;  /* on_end's usage */
    int         ends;
    bt_status_t status;
    Baton__V1__FinishReason finish;
    char        msg[256];
    bt_rreq_t  *req;
    size_t      n_prompt_lps;      /* on_prompt: entries (echo) */
    int         prompts;           /* on_prompt calls */
    int         ends_at_prompt;    /* ends seen when on_prompt ran */
    /* runs inside on_end, after the record */
    void      (*on_end_hook)(struct fx_rec *rec);
    void       *hook_arg;
} fx_rec_t;

typedef struct {
    bt_router_t r;
    char        dir[64];
    bt_node_t  *p[2];
    bt_node_t  *d[2];
    fx_call_t   calls[FX_MAX_CALLS];
    size_t      n_calls;
} fixture_t;

/* cmocka set-up and tear-down. fx_setup: fake nodes; fx_setup_grpc: the
 * real node ops with no channels (every call finds its node gone). */
int fx_setup(void **state);
int fx_setup_grpc(void **state);
int fx_teardown(void **state);

/* Starts a request of the 7-token prompt with max_tokens; rec records. */
bt_status_t fx_start(fixture_t *f, fx_rec_t *rec, int max_tokens,
                     char *err, size_t err_size);
/* The same with prompt logprobs (echo): the sink's on_prompt records. */
bt_status_t fx_start_echo(fixture_t *f, fx_rec_t *rec, int max_tokens,
                          char *err, size_t err_size);
/* The same with these sampling parameters (max_tokens, stop, logprobs). */
bt_status_t fx_start_sp(fixture_t *f, fx_rec_t *rec,
                        const Baton__V1__SamplingParams *sp, char *err,
                        size_t err_size);
/* A choice forking `from`'s prompt (params.fork_from) with that seed. */
bt_status_t fx_start_fork(fixture_t *f, fx_rec_t *rec, const bt_rreq_t *from,
                          uint64_t seed, char *err, size_t err_size);
/* The decode node's report: free blocks (clears refusals). */
void fx_set_free(fixture_t *f, bt_node_t *d, uint32_t free_blocks);
/* Runs the loop without waiting, and ends cancelled calls, till quiet. */
void fx_pump(fixture_t *f);
/* Runs the loop (timers too) until cond(arg) or ms milliseconds. */
bool fx_wait(fixture_t *f, bool (*cond)(fixture_t *f, void *arg), void *arg,
             int ms);

/* The last call of that kind still open, or NULL. */
fx_call_t *fx_open(fixture_t *f, fx_kind_t kind);
size_t fx_count(fixture_t *f, fx_kind_t kind);

/* Answers, as the node would. */
void fx_reserve(fx_call_t *c, uint64_t lease_id);
void fx_tokens(fx_call_t *c, const uint32_t *ids, size_t n);
/* ... with logprobs: token i's logprob is -(i + 1) / 8, one top entry. */
void fx_tokens_lp(fx_call_t *c, const uint32_t *ids, size_t n);
void fx_final(fx_call_t *c, Baton__V1__FinishReason finish);
void fx_prefill_ok(fx_call_t *c, uint32_t first_token);
/* ... with prompt logprobs for fx_start's prompt (one per token after the
 * first); `wrong`: the second entry names another token. */
void fx_prefill_ok_plp(fx_call_t *c, uint32_t first_token, bool wrong);
void fx_renew_ok(fx_call_t *c);
/* Ends the call with that gRPC code. */
void fx_fail(fx_call_t *c, bt_rpc_code_t code, const char *message);

/* The state ListRequests shows for the request with that id ("" when it
 * is not listed). */
const char *fx_state(fixture_t *f, const char *id);

#endif
