/* baton-router internals: the daemon's state shared by its files.
 *
 *   main.c         options, start-up, drain and shutdown
 *   readiness.c    /readyz and baton.v1.Generate's gRPC health: capacity
 *   reg_service.c  baton.v1.Registry/Register: nodes join, report, leave
 *   router_metrics.c  the metrics' definitions and the node gauges
 *   model.c        the served model: tokenizer, chat template, context, hashing
 *   request_*.c    one request's life: pick (P, D), DecodeStream, Prefill,
 *                  relay, retries and failover (DESIGN §2; request_priv.h)
 *   node_ops.c     the calls on nodes, over gRPC
 *   front_grpc.c   baton.v1.Generate (Generate, Tokenize, ListModels)
 *   front_http.c   the OpenAI-compatible HTTP API
 *   admin.c        baton.v1.Admin
 *   admin_store.c  its placement and cache methods, with the kvstore
 *   roles.c        flexible nodes moving between roles, and the events log
 */
#ifndef BT_ROUTER_ROUTER_H
#define BT_ROUTER_ROUTER_H

#include "base/list.h"
#include "base/status.h"
#include "http/http.h"
#include "metrics/metrics.h"
#include "registry.h"
#include "rpc/client.h"
#include "rpc/server.h"
#include "rpc/tls_cfg.h"
#include "select.h"
#include "trace.h"

#include <event2/event.h>

typedef struct bt_rreq bt_rreq_t;
typedef struct bt_router_model bt_router_model_t;
typedef struct bt_front_keys bt_front_keys_t;      /* auth.c */
typedef struct bt_router_admin bt_router_admin_t;  /* admin.c */
typedef struct bt_router_events bt_router_events_t; /* roles.c */
typedef struct bt_rebalancer bt_rebalancer_t;       /* rebalance_tick.c */

typedef struct {
    const char *listen;              /* host for both servers */
    int64_t     grpc_port;
    int64_t     http_port;
    const char *model_dir;
    const char *model_name;          /* NULL: the folder's base name */
    int64_t     heartbeat_ms;
    int64_t     heartbeat_timeout_ms;
    double      w_hit;
    double      w_store_hit;
    double      w_load;
    double      w_free;
    double      w_batch;
    int         disagg;              /* bt_disagg_mode_t (--disagg) */
    int64_t     disagg_min_tokens;
    double      disagg_prefill_rate; /* prefill tokens per ms */
    double      disagg_transfer_ms;  /* when a pair has none measured */
    bool        rebalance_roles;     /* the role controller (rebalance_tick.c) */
    double      slo_ttft_ms, slo_tpot_ms;
    int64_t     rebalance_interval_ms;
    int64_t     rebalance_dwell_ms;
    double      rebalance_headroom;
    int64_t     max_inflight;        /* requests in progress */
    int64_t     max_queue;           /* requests waiting for a node with room */
    int64_t     queue_timeout_ms;
    int64_t     prefill_retries;
    int64_t     decode_failovers;
    int64_t     request_timeout_ms;
    int64_t     default_max_tokens;
    int64_t     max_choices;         /* n and best_of of one request */
    int64_t     lease_ms;
    uint64_t    max_body;
    int64_t     prefix_index_entries;
    int64_t     drain_timeout_ms;
    int64_t     threads;             /* tokenizer workers; 0: the loop */
    int64_t     detok_inline;        /* a loop pass's tokens up to this many
                                      * are detokenized on the loop */
    const char *log_level;
    int         log_format;
    bool        access_log;          /* a log line per HTTP request */
    bt_rpc_tls_cfg_t tls;            /* gRPC listener and channels to nodes */
} bt_router_cfg_t;

/* The router's metrics (router_metrics.c). Those with a vLLM equivalent
 * carry `model_name` and vLLM's meaning and unit (docs/operations.md). */
typedef struct {
    bt_counter_t   *requests_ok;
    bt_counter_t   *requests_failed;
    bt_counter_t   *requests_rejected;  /* 4xx / 429 before any work */
    bt_counter_t   *prefill_retries;
    /* per [bt_decide_t][bt_decide_reason_t]; NULL for a pair that
     * cannot happen */
    bt_counter_t   *disagg_decisions[2][BT_DECIDE_N_REASONS];
    bt_counter_t   *decode_failovers;
    bt_counter_t   *tokens_out;
    bt_counter_t   *prompt_tokens;
    bt_counter_t   *cached_tokens;
    bt_counter_t   *prefix_queries;     /* prompt tokens looked up */
    bt_counter_t   *prefix_hits;        /* of those, found in a cache */
    bt_counter_t   *success_stop;       /* finished_reason="stop" */
    bt_counter_t   *success_length;     /* finished_reason="length" */
    bt_counter_t   *success_abort;      /* finished_reason="abort" */
    bt_counter_t   *node_expiries;      /* nodes dropped for missed heartbeats */
    bt_counter_t   *leases_lost;        /* a decode lease gone before the prefill */
    bt_counter_t   *hits_node;          /* prefix hits from the prefill node's pool */
    bt_counter_t   *hits_kvstore;       /* prefix hits read from the kvstore */
    bt_gauge_t     *inflight;
    bt_gauge_t     *queued;
    bt_gauge_t     *running;            /* admitted and not queued */
    bt_gauge_t     *waiting;            /* = queued, with model_name */
    bt_gauge_t     *nodes_prefill;
    bt_gauge_t     *nodes_decode;
    bt_gauge_t     *node_state[2][3];   /* [prefill, decode][ready, draining, drained] */
    bt_gauge_t     *kv_usage[2];        /* [prefill, decode]: used / total blocks */
    bt_histogram_t *ttft;
    bt_histogram_t *e2e;
    bt_histogram_t *itl;
    bt_histogram_t *queue_time;         /* admitted → first sent to nodes */
    bt_histogram_t *prefill_time;       /* first sent to nodes → first token */
    /* Register streams' messages from nodes by kind (hello, status,
     * kv_events, other) and their protobuf bytes */
    bt_counter_t   *node_msgs[4];
    bt_counter_t   *node_msg_bytes[4];
    bt_gauge_t     *tokenizing;         /* prompts on the encode pool */
    bt_counter_t   *detok_jobs;         /* request_detok.c: jobs on the pool */
    bt_counter_t   *detok_pool_tokens;  /* ... and their tokens */
    bt_histogram_t *decode_time;        /* first token → last token */
    bt_counter_t   *role_moves[3];      /* moves done, to prefill, decode, both */
    bt_gauge_t     *nodes_moving;       /* flexible nodes between two roles */
} bt_router_metrics_t;

typedef struct bt_router {
    bt_router_cfg_t      cfg;
    struct event_base   *base;
    bt_rpc_server_t     *grpc;
    bt_rpc_client_t     *client;
    bt_http_server_t    *http;
    bt_metrics_t        *metrics;
    bt_router_metrics_t  m;
    bt_registry_t       *registry;
    bt_select_weights_t  weights;
    bt_router_model_t   *model;
    /* per registry slot: a channel to the node and its generation */
    bt_rpc_channel_t    *node_ch[BT_ROUTER_MAX_NODES];
    uint64_t             node_gen[BT_ROUTER_MAX_NODES];
    uint64_t             next_gen;
    /* how requests call nodes (node_ops.h; NULL: gRPC) and the table's
     * own state (a test's fake nodes) */
    const struct bt_node_ops *node_ops;
    void                *node_ops_ctx;
    /* the request state machine keeps these (request_state.c) */
    bt_list_t            requests;     /* every admitted live request */
    size_t               n_inflight;
    /* requests waiting for a node with room, oldest first */
    bt_list_t            queue;
    size_t               n_queued;
    uint64_t             queue_epoch;  /* bumped whenever one leaves the queue */
    bool                 kicking;      /* bt_router_queue_kick is running */
    bool                 kick_again;   /* ... and was asked to run again */
    uint64_t             next_command_id;
    struct event        *expire_ev;
    bt_front_keys_t     *front_keys;   /* the API keys; NULL: auth is off */
    bt_router_admin_t   *admin;        /* baton.v1.Admin's handlers */
    uint64_t             http_started_s; /* the `created` of /v1/models */
    bool                 draining;
    /* front_start.c: prompts tokenized off the loop (NULL: on it) and
     * the starts waiting there */
    struct bt_tpool     *encode_pool;
    size_t               n_encoding;
    /* request_detok.c: requests whose tokens wait to go to the pool in
     * this loop pass's job, the event that sends them, and the requests
     * whose end waits for their text (drain counts them) */
    struct bt_rreq_job  *detok_ready;
    struct event        *detok_ev;
    size_t               n_end_held;
    int                  grpc_bound_port;
    int                  http_bound_port;
    bt_traces_t         *traces;       /* request traces (trace.h); NULL: off */
    /* readiness.c: the last answer, kept in the gRPC health */
    struct event        *ready_ev;
    bool                 ready;
    char                 ready_why[256];
    bt_router_events_t  *events;       /* roles.c: the moves, for batonctl */
    bt_rebalancer_t     *rebalancer;   /* the role controller; NULL: off */
} bt_router_t;

/* reg_service.c */
bt_status_t bt_router_registry_register(bt_router_t *r);
/* Sends a command to a node over its Register stream. */
bt_status_t bt_router_node_command(bt_router_t *r, bt_node_t *node, int kind,
                                   const char *request_id);
bt_rpc_channel_t *bt_router_node_channel(bt_router_t *r, const bt_node_t *node);
/* Sends SET_ROLE(role) to a flexible node; *id_p gets the command's id. */
bt_status_t bt_router_node_set_role(bt_router_t *r, bt_node_t *node,
                                    bt_node_role_t role, uint64_t *id_p);

/* roles.c: moving a flexible node (docs/internals/router.md "Roles that
 * move"). Starts moving `n` to `to` (PREFILL, DECODE or BOTH) for `why`
 * ("operator", the controller's reasons): BT_OK, the move started (or
 * nothing to do: n serves `to`); else *code_p and err say why not. */
bt_status_t bt_router_role_move(bt_router_t *r, bt_node_t *n, unsigned to,
                                const char *why, bt_rpc_code_t *code_p,
                                char *err, size_t err_size);
/* A flexible node's status: the role it serves and the one it moves to. */
void bt_router_role_report(bt_router_t *r, bt_node_t *n, unsigned serving,
                           unsigned moving_to);
/* The node's Ack of command `id` (the SET_ROLE it answers, or another). */
void bt_router_role_ack(bt_router_t *r, bt_node_t *n, uint64_t id, bool ok,
                        const char *error);
/* The events kept (the last BT_ROUTER_EVENTS_MAX), oldest first. */
#define BT_ROUTER_EVENTS_MAX 256
typedef struct {
    uint64_t unix_ms;
    char     node_id[BT_NODE_ID_MAX + 1];
    char     kind[16];              /* move-started, move-done, move-refused */
    unsigned from, to;              /* NodeRole values */
    char     reason[256];
} bt_router_event_t;
void bt_router_event_add(bt_router_t *r, const char *node_id, const char *kind,
                         unsigned from, unsigned to, const char *reason);
/* The i-th kept event (0 = oldest), NULL past the last. */
const bt_router_event_t *bt_router_event_get(const bt_router_t *r, size_t i);
void bt_router_events_free(bt_router_t *r);
/* rebalance_tick.c: the role controller's timer (--rebalance-roles on). */
bt_status_t bt_router_rebalance_start(bt_router_t *r);
void bt_router_rebalance_stop(bt_router_t *r);
/* "prefill", "decode", "both" (a NodeRole); "none" for 0. */
const char *bt_router_role_word(unsigned role);

/* readiness.c: ready means "send me work": the router does not drain and
 * a live, undrained prefill-capable and decode-capable node serve the
 * model. bt_router_ready is /readyz's callback (arg: the router; *why_p
 * the reason when not ready). bt_router_readiness_sync sets the gRPC
 * health of baton.v1.Generate to match (a timer calls it too). */
bool bt_router_ready(void *arg, const char **why_p);
void bt_router_readiness_sync(bt_router_t *r);
bt_status_t bt_router_readiness_start(bt_router_t *r);
void bt_router_readiness_stop(bt_router_t *r);

/* admin.c */
bt_status_t bt_router_admin_register(bt_router_t *r);
/* admin_store.c: the Admin methods that need the kvstore (GetPlacement,
 * Rebalance, CacheStats); ends with a NULL path. */
typedef struct {
    const char                       *path;
    const ProtobufCMessageDescriptor *desc;
    bt_rpc_handler_cb                 cb;
} bt_router_admin_method_t;
extern const bt_router_admin_method_t bt_router_admin_store_methods[];
/* admin_roles.c: SetRole and ListEvents; ends with a NULL path. */
extern const bt_router_admin_method_t bt_router_admin_role_methods[];
/* After the gRPC server is gone. NULL-safe. */
void bt_router_admin_free(bt_router_t *r);

/* request_*.c: see request.h */

/* router_metrics.c: creates r->m in r->metrics (the model is loaded:
 * its name is the `model_name` label); the node gauges follow the registry. */
void bt_router_metrics_init(bt_router_t *r);
void bt_router_metrics_nodes(bt_router_t *r);

#endif
