/* The core of a serving node of Baton (DESIGN §2; docs/internals/node.md):
 * options, engine hosting, registration, the scheduler loop, drain and
 * teardown. The roles (prefill_node/, decode_node/) plug in through the
 * ops table of node_role.h; one process runs prefill, decode or both. The
 * loop thread owns RPC, UCX, the KV pool and every request; one worker
 * thread (base/tpool) runs the forward steps the scheduler hands it. */
#ifndef BT_NODE_H
#define BT_NODE_H

#include "base/endian.h"
#include "base/status.h"
#include "base/tpool.h"
#include "engine/kv/kv_pool.h"
#include "engine/model/backend.h"
#include "engine/model/backend_select.h"
#include "engine/model/forward.h"
#include "engine/model/model.h"
#include "engine/model/model_config.h"
#include "engine/sample/sample.h"
#include "http/http.h"
#include "metrics/metrics.h"
#include "node.pb-c.h"
#include "node_role.h"
#include "node_xstats.h"
#include "registrar/registrar.h"
#include "rpc/client.h"
#include "rpc/server.h"
#include "rpc/tls_cfg.h"
#include "xfer/xfer.h"

#include <event2/event.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

typedef enum {
    BT_NODE_PREFILL = 0,
    BT_NODE_DECODE = 1,
    BT_NODE_BOTH = 2,
    BT_NODE_FLEXIBLE = 3,   /* both roles' machinery; the router picks which serve */
} bt_node_role_t;

/* The roles a node serves, as bits (= baton.v1.NodeRole: 3 is both). */
#define BT_NODE_SERVES_PREFILL 1u
#define BT_NODE_SERVES_DECODE  2u

typedef struct {
    int         role;              /* BT_OPT_ENUM: prefill|decode|both|flexible */
    int         start_role;        /* --role flexible: prefill|decode|both at start */
    const char *router;
    const char *listen;
    int64_t     grpc_port;
    int64_t     http_port;
    const char *model;
    const char *served_model_name;
    const char *node_id;
    int64_t     kv_blocks;
    uint64_t    kv_pool;
    const char *kv_dtype;
    int64_t     block_size;
    int64_t     threads;
    int         backend;           /* BT_OPT_ENUM: BT_BACKEND_CHOICES */
    int         numerics;          /* BT_OPT_ENUM: BT_NUMERICS_CHOICES */
    int64_t     expert_devices;    /* MoE: expert devices (node_experts.h) */
    int64_t     expert_window_ms;  /* statistics window, plan poll */
    int64_t     max_batch;
    int64_t     max_prefill_tokens;
    bool        prefix_cache;      /* reuse cached prefix blocks (prefill) */
    bool        kv_prefault;       /* fault the pool in at start */
    const char *kvstore;           /* kvstore replicas, comma-separated */
    int64_t     kvstore_timeout_ms;
    int64_t     lease_default_ms;
    int64_t     lease_fence_ms;    /* hold of a dead lease's blocks, at most */
    int64_t     kv_stall_ms;       /* prefill: most one layer's send may take */
    int64_t     heartbeat_ms;
    int64_t     drain_timeout_ms;
    const char *log_level;
    int         log_format;
    bool        access_log;
    bt_rpc_tls_cfg_t tls;          /* gRPC listener and the router channel */
} bt_node_cfg_t;

typedef struct bt_node bt_node_t;
typedef struct bt_node_kvs bt_node_kvs_t;   /* node_kvs.h */
typedef struct bt_node_experts bt_node_experts_t; /* node_experts.h */

/* Roles a process runs at most (prefill, decode). */
#define BT_NODE_MAX_ROLES 2

/* Entries of the layer queue: every layer of one step. */
#define BT_NODE_LAYER_Q BT_MODEL_MAX_LAYERS

/* Payload of the kv-complete message, little-endian: first token, tokens
 * written, status (u32, u32, i32). */
#define BT_NODE_DONE_PAYLOAD 12
/* A fence is a kv-complete whose first token is this and whose status is
 * an error: a prefill that stopped writing the lease (its endpoint flushed
 * first), so the decode node may reuse a dead lease's blocks. */
#define BT_NODE_FENCE_FIRST UINT32_MAX

/* Writes / reads the BT_NODE_DONE_PAYLOAD bytes of a kv-complete. */
static inline void bt_node_done_put(uint8_t *p, uint32_t first,
                                    uint32_t written, int32_t status)
{
    bt_put_le32(p, first);
    bt_put_le32(p + 4, written);
    bt_put_le32(p + 8, (uint32_t)status);
}

static inline void bt_node_done_get(const uint8_t *p, uint32_t *first_p,
                                    uint32_t *written_p, int32_t *status_p)
{
    *first_p = bt_get_le32(p);
    *written_p = bt_get_le32(p + 4);
    *status_p = (int32_t)bt_get_le32(p + 8);
}

struct bt_node {
    bt_node_cfg_t       cfg;
    bt_node_role_t      role;
    char                model_name[256];
    char                node_id[128];
    char                grpc_addr[320];
    char                http_addr[320];  /* "HOST:PORT", told the router */
    struct event_base  *base;
    bt_model_t         *model;
    bt_backend_choice_t backend;        /* --backend, --numerics: its ops and id */
    bt_fwd_t           *fwd;
    bt_xfer_ctx_t      *xfer;
    bt_xstats_t        *xstats;         /* prefill: transfers per decode peer */
    bt_node_kvs_t      *kvs;            /* --kvstore clients, NULL: none */
    bt_node_experts_t  *experts;        /* MoE placement, NULL: dense */
    Baton__V1__TransferPeer *xstats_out[BT_XSTATS_MAX_PEERS];
    bt_xfer_region_t   *region;
    bt_kvpool_t        *pool;
    bt_kv_view_t        kv;
    bt_sampler_t       *sampler;
    bt_tpool_t         *worker;
    bt_rpc_server_t    *grpc;
    bt_rpc_client_t    *client;
    bt_registrar_t     *reg;
    bt_http_server_t   *http;
    bt_metrics_t       *metrics;
    int                 grpc_port;
    int                 http_port;
    uint32_t            vocab;
    int32_t             eos_id;         /* -1: none */
    /* structured output (node_grammar.h) */
    struct bt_gvocab   *gvocab;         /* NULL: no tokenizer */
    struct bt_node_gcache *gcache;

    /* roles, in the order the scheduler takes turns (prefill first) */
    const bt_node_role_ops_t *roles[BT_NODE_MAX_ROLES];
    void               *role_self[BT_NODE_MAX_ROLES];
    int                 n_roles;
    bt_node_local_t     local;          /* --role both: the decode role's */
    /* the roles it serves (BT_NODE_SERVES_*); --role flexible moves them
     * (node_flex.c): while `moving_to` is set it finishes the work of the
     * roles it leaves, counted per role in `held` */
    unsigned            serving;
    unsigned            moving_to;      /* 0: not moving */
    uint64_t            move_started_ms;
    uint32_t            held[2];        /* [0] prefill calls, [1] decode streams */

    /* scheduler (node_sched.c) */
    bool                busy;           /* a step is on the worker */
    int                 last_role;      /* role of the last step */
    int                 step_role;      /* role of the step in flight */
    bool                step_layers;    /* it has the layer hook */
    bt_node_step_t      step;           /* the one step's buffers */
    bt_status_t         step_st;        /* the forward pass's status */
    uint64_t            step_t0_ns;     /* when the step in flight went out */
    uint64_t            step_tokens;    /* its tokens, all sequences */
    /* the speeds NodeStatus reports (bt_node_step_speed): prefill tokens
     * and ms, both decayed per prefill step, and the decayed mean decode
     * step; zero until measured */
    double              pf_tokens, pf_ms, decode_step_ms;
    /* owned by the roles' transition functions, reported by the core */
    uint64_t            queued_prefill_tokens;  /* prefill jobs queued */
    uint32_t            running;        /* decode sequences admitted */
    /* layer hand-off from the worker: one step's layers at most */
    pthread_mutex_t     layer_mu;
    int                 layer_q[BT_NODE_LAYER_Q];
    int                 layer_n;
    bool                layer_lost;      /* the queue was full (a bug) */
    long                test_layer_delay_ms; /* BATON_TEST_LAYER_DELAY_MS */
    bool                test_layers_at_end;  /* BATON_TEST_LAYERS_AT_STEP_END */
    struct event       *layer_ev;

    /* kv events waiting to go out */
    Baton__V1__KvEvent **ev_q;
    size_t              ev_n, ev_cap;
    struct event       *ev_flush;

    bool                draining;
    bool                stopping;        /* SIGTERM: exit once drained */
    bool                no_fence;        /* tearing down: end jobs at once */
    uint32_t            inflight;        /* prefill calls + decode streams
                                          * (bt_node_inflight_begin/end) */
    struct event       *tick_ev;
    uint64_t            drain_started_ms;

    bt_gauge_t         *g_free, *g_used, *g_running, *g_reserved, *g_queued;
    bt_counter_t       *c_prefills, *c_tokens;
    bt_counter_t       *c_fence_timeouts;   /* dead leases freed unfenced */
    bt_counter_t       *c_kv_refused;       /* stale kv slices refused */
    bt_counter_t       *c_guard_waits;      /* holds kept for a copy in flight */
    /* with model_name (docs/operations.md, Metrics) */
    bt_gauge_t         *g_waiting;          /* kept by the roles' transitions */
    bt_gauge_t         *g_kv_usage;
    bt_gauge_t         *g_pf_rate, *g_dec_step;  /* the speeds NodeStatus reports */
    bt_gauge_t         *g_prefaulted;   /* share of the pool faulted in */
    bt_counter_t       *c_prefix_queries, *c_prefix_hits;
    bt_histogram_t     *h_prefill, *h_decode_step;
    bt_counter_t       *c_leases_expired;
    bt_counter_t       *c_role_moves;       /* flexible: moves finished */
    bt_counter_t       *c_role_late;        /* calls of a role no longer served */
};

/* node_sched.c */
void bt_node_sched_kick(bt_node_t *node);
void bt_node_layers_drain(bt_node_t *node);
bt_status_t bt_node_sched_init(bt_node_t *node);
/* Test hooks (node_testhook.c): the milliseconds environment variable
 * `env` names (0 when unset), a sleep of that long, and both at once for
 * one thread's callers (*ms_p starts at -1 and caches the value). */
long bt_node_test_env_ms(const char *env);
void bt_node_test_sleep_ms(long ms);
void bt_node_test_pause(const char *env, long *ms_p);
void bt_node_sched_cleanup(bt_node_t *node);

/* node_local.c: --role both, prefill to decode inside one process */
void bt_node_local_set(bt_node_t *node, const bt_node_local_t *local);
/* True when a reservation of `decode_node_id` is this process's own
 * decode role (--role both). */
bool bt_node_local_is(const bt_node_t *node, const char *decode_node_id);
bool bt_node_local_lease_live(bt_node_t *node, uint64_t lease_id);
void bt_node_local_kv_complete(bt_node_t *node, uint64_t lease_id,
                               int32_t status, const void *user,
                               size_t user_len);

/* node_call.c: answers `code`/`msg` to a call refused before it became a
 * request, with an info line "WHAT refused" naming `req_id` (may be NULL
 * or empty). */
void bt_node_call_refuse(bt_rpc_call_t *call, const char *what,
                         const char *req_id, bt_rpc_code_t code,
                         const char *msg);

/* node_reg.c */
bt_status_t bt_node_reg_start(bt_node_t *node);
void bt_node_kv_event(const bt_kv_event_t *event, void *ctx);
void bt_node_metrics_update(bt_node_t *node);

/* node_main.c */
void bt_node_sampling_from_proto(const bt_node_t *node,
                                 const Baton__V1__SamplingParams *p,
                                 bt_sample_params_t *sp_p);
/* (Re)starts the one-shot timer `ev` to fire `ms` from now: the leases'
 * and the fence holds' clock. */
void bt_node_timer_arm(struct event *ev, uint64_t ms);
/* True when every id is inside the model's vocabulary. */
bool bt_node_tokens_in_vocab(const bt_node_t *node, const uint32_t *ids,
                             size_t n);
/* A prefill call (BT_NODE_SERVES_PREFILL) or decode stream
 * (BT_NODE_SERVES_DECODE) starts / ends: drain and role moves wait for
 * them. */
void bt_node_inflight_begin(bt_node_t *node, unsigned role);
void bt_node_inflight_done(bt_node_t *node, unsigned role);

/* node_flex.c: --role flexible. Starts a move to `to` (a BT_NODE_SERVES_*
 * mask); BT_OK at once when nothing of the roles it leaves is held (then
 * it serves as `to` already). Errors fill `err`. */
bt_status_t bt_node_flex_move(bt_node_t *node, unsigned to, char *err,
                              size_t err_size);
/* Ends the move once the roles it leaves hold nothing (after each
 * inflight_done). */
void bt_node_flex_check(bt_node_t *node);
/* A call of `role` arrives: counted when the node no longer serves it (a
 * call placed before a move ended; it is served all the same). */
void bt_node_flex_call(bt_node_t *node, unsigned role);
/* "prefill", "decode", "both" (a BT_NODE_SERVES_* mask) */
const char *bt_node_serves_str(unsigned serves);
int bt_node_main(int argc, char **argv, bt_node_role_t default_role,
                 const char *prog, const bt_node_roles_t *roles);

#endif
