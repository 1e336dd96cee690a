/* Options, engine hosting and the life of a node process: load the model,
 * put the KV pool in a UCX region, start the roles --role asks for (the
 * ops tables the binary passes), and its hooks on the daemon skeleton
 * (daemon/daemon.h: servers, SIGTERM drain, teardown in order). */
#include "node.h"
#include "node_experts.h"
#include "node_grammar.h"
#include "node_kvs.h"

#include "base/clock.h"
#include "base/log.h"
#include "base/opts.h"
#include "bt_config.h"
#include "daemon/daemon.h"
#include "engine/tokenizer/tokenizer.h"
#include "rpc/addr.h"

#include <assert.h>
#include <libgen.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define O(_f) offsetof(bt_node_cfg_t, _f)
static const bt_opt_t bt_node_table[] = {
    { "role", 0, NULL, NULL, "prefill, decode, both (prefill and decode in "
      "one process) or flexible (both in one process, serving as the router "
      "or an operator moves it: batonctl role)", BT_OPT_ENUM, 0, 0,
      "prefill|decode|both|flexible", O(role) },
    { "start-role", 0, NULL, "both", "--role flexible: the role it serves "
      "until moved", BT_OPT_ENUM, 0, 0, "prefill|decode|both", O(start_role) },
    { "router", 0, NULL, NULL, "gRPC target of the router "
      "(ipv4:127.0.0.1:50051); none: serve unregistered", BT_OPT_STRING, 0, 0,
      NULL, O(router) },
    { "listen", 0, NULL, "127.0.0.1", "address the gRPC and HTTP servers "
      "listen on (and the router reaches)", BT_OPT_STRING, 0, 0, NULL,
      O(listen) },
    { "grpc-port", 0, NULL, "0", "gRPC port (Prefill, Decode); 0 picks one",
      BT_OPT_INT, 0, 65535, NULL, O(grpc_port) },
    { "http-port", 0, NULL, "0", "HTTP port (healthz, readyz, metrics); 0 "
      "picks one", BT_OPT_INT, 0, 65535, NULL, O(http_port) },
    { "model", 'm', NULL, NULL, "model folder (config.json, *.safetensors)",
      BT_OPT_STRING, 0, 0, NULL, O(model) },
    { "served-model-name", 0, NULL, NULL, "model name (default: the folder's "
      "base name; must match the router's)", BT_OPT_STRING, 0, 0, NULL,
      O(served_model_name) },
    { "node-id", 0, NULL, NULL, "unique node id (default: role-port-pid)",
      BT_OPT_STRING, 0, 0, NULL, O(node_id) },
    { "kv-blocks", 0, NULL, "0", "kv pool size in blocks (0: use --kv-pool)",
      BT_OPT_INT, 0, 1 << 30, NULL, O(kv_blocks) },
    { "kv-pool", 0, NULL, "256M", "kv pool size in bytes when --kv-blocks "
      "is 0", BT_OPT_SIZE, 1 << 16, 1e15, NULL, O(kv_pool) },
    { "kv-dtype", 0, NULL, "f32", "kv cache dtype: f32 (exact, the default), "
      "f16 or bf16; every node of a cluster must use the same",
      BT_OPT_STRING, 0, 0, NULL, O(kv_dtype) },
    { "kv-prefault", 0, NULL, "true", "fault the kv pool's pages in at "
      "start, in the background at low priority (the first access to each "
      "page otherwise stalls the step that makes it: a prefill writing a "
      "fresh block, a decode step reading blocks a prefill node wrote); the "
      "whole pool is then committed memory. false: pages come as they are "
      "used", BT_OPT_BOOL, 0, 0, NULL, O(kv_prefault) },
    { "block-size", 0, NULL, "16", "tokens per kv block", BT_OPT_INT, 1,
      BT_KV_MAX_BLOCK_TOKENS, NULL, O(block_size) },
    { "prefix-cache", 0, NULL, "true", "reuse the prefix blocks this node's "
      "pool has cached (false: compute every prompt in full, a baseline for "
      "benchmarks)", BT_OPT_BOOL, 0, 0, NULL, O(prefix_cache) },
    { "kvstore", 0, NULL, "", "gRPC targets of the kvstore replicas, comma-"
      "separated, the same list on every node (empty: no kvstore tier)",
      BT_OPT_STRING, 0, 0, NULL, O(kvstore) },
    { "kvstore-timeout", 0, NULL, "2s", "deadline of a kvstore read on the "
      "request path (then the node computes instead)", BT_OPT_DURATION, 10,
      60000, NULL, O(kvstore_timeout_ms) },
    { "threads", 'j', NULL, "0", "compute threads (0: all cores)", BT_OPT_INT,
      0, 1024, NULL, O(threads) },
    { "backend", 0, NULL, "cpu", "compute backend: cpu, or cuda (a GPU; "
      "refused at start, exit 2, where none is usable)", BT_OPT_ENUM, 0, 0,
      BT_BACKEND_CHOICES, O(backend) },
    { "numerics", 0, NULL, "exact", "exact (the CPU engine's bits on every "
      "backend) or fast (cuda: tensor cores, batch-invariant, within a "
      "tolerance of exact); KV is shared only between nodes of one numerics "
      "id", BT_OPT_ENUM, 0, 0, BT_NUMERICS_CHOICES, O(numerics) },
    { "expert-devices", 0, NULL, "1", "MoE models: expert devices the "
      "experts are spread over, each a share of --threads with its own copy "
      "of its experts, placed by the kvstore's plan (1: every expert on the "
      "one device)", BT_OPT_INT, 1, BT_EP_MAX_DEVICES, NULL,
      O(expert_devices) },
    { "expert-window", 0, NULL, "10s", "MoE models: window of the expert "
      "statistics reported to the kvstore, and how often a newer placement "
      "plan is asked for", BT_OPT_DURATION, 50, 3600000, NULL,
      O(expert_window_ms) },
    { "max-batch", 0, NULL, "64", "sequences in one decode step", BT_OPT_INT,
      1, 4096, NULL, O(max_batch) },
    { "max-prefill-tokens", 0, NULL, "512", "tokens in one prefill chunk "
      "(rounded down to a multiple of --block-size)", BT_OPT_INT, 1, 1 << 20,
      NULL, O(max_prefill_tokens) },
    { "lease-default", 0, NULL, "30s", "kv lease when the router asks none",
      BT_OPT_DURATION, 10, 3600000, NULL, O(lease_default_ms) },
    { "lease-fence-timeout", 0, NULL, "10s", "how long the blocks of a lease "
      "that ended before its kv cache arrived wait for the prefill node's "
      "fence (its last write landed) before they are reused anyway (never "
      "while a prefill process on this host is stopped inside a copy into "
      "them)", BT_OPT_DURATION, 100, 600000, NULL, O(lease_fence_ms) },
    { "kv-stall-timeout", 0, NULL, "30s", "prefill: how long one layer's kv "
      "transfer to the decode node may take before the prefill fails "
      "UNAVAILABLE and the router places the request again (a partitioned "
      "network stalls a transfer without failing it)",
      BT_OPT_DURATION, 100, 3600000, NULL, O(kv_stall_ms) },
    { "heartbeat", 0, NULL, "1s", "status interval until the router sets one",
      BT_OPT_DURATION, 10, 60000, NULL, O(heartbeat_ms) },
    { "drain-timeout", 0, NULL, "30s", "on SIGTERM, how long requests in "
      "flight may finish", BT_OPT_DURATION, 0, 3600000, NULL,
      O(drain_timeout_ms) },
    { "log-level", 0, NULL, "info", "trace, debug, info, warn or error",
      BT_OPT_STRING, 0, 0, NULL, O(log_level) },
    { "log-format", 0, NULL, "text", "log lines as text or JSON",
      BT_OPT_ENUM, 0, 0, "text|json", O(log_format) },
    { "access-log", 0, NULL, "on", "a log line per HTTP request (method, path, status, bytes, duration)",
      BT_OPT_BOOL, 0, 0, NULL, O(access_log) },
    BT_RPC_TLS_OPTS_DAEMON(O(tls)),
};
#undef O

void bt_node_sampling_from_proto(const bt_node_t *node,
                                 const Baton__V1__SamplingParams *p,
                                 bt_sample_params_t *sp)
{
    bt_sample_params_default(sp);
    sp->temperature = p->temperature;
    sp->top_k = p->top_k;
    sp->top_p = p->top_p > 0 ? p->top_p : 1.0f;
    sp->min_p = p->min_p;
    sp->repetition_penalty = p->repetition_penalty > 0 ? p->repetition_penalty
                                                       : 1.0f;
    sp->presence_penalty = p->presence_penalty;
    sp->frequency_penalty = p->frequency_penalty;
    sp->seed = p->seed_opt_case == BATON__V1__SAMPLING_PARAMS__SEED_OPT_SEED
               ? p->seed : 0;
    sp->max_tokens = p->max_tokens > 0 ? p->max_tokens : 256;
    sp->logprobs = -1;
    sp->n_stop_ids = 0;
    if (!p->ignore_eos && node->eos_id >= 0) {
        sp->stop_ids[sp->n_stop_ids++] = node->eos_id;
    }
    for (size_t i = 0; i < p->n_stop_token_ids &&
                       sp->n_stop_ids < BT_SAMPLE_MAX_STOP_IDS; i++) {
        sp->stop_ids[sp->n_stop_ids++] = (int32_t)p->stop_token_ids[i];
    }
}

void bt_node_timer_arm(struct event *ev, uint64_t ms)
{
    struct timeval tv = { (time_t)(ms / 1000),
                          (suseconds_t)((ms % 1000) * 1000) };

    event_del(ev);
    evtimer_add(ev, &tv);
}

bool bt_node_tokens_in_vocab(const bt_node_t *node, const uint32_t *ids,
                             size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (ids[i] >= node->vocab) {
            return false;
        }
    }
    return true;
}

static bool bt_node_ready(void *arg, const char **why_p)
{
    bt_node_t *node = arg;

    if (node->draining) {
        *why_p = "draining";
        return false;
    }
    if (node->reg != NULL && !bt_registrar_is_registered(node->reg)) {
        *why_p = "not registered with the router";
        return false;
    }
    return true;
}

void bt_node_inflight_begin(bt_node_t *node, unsigned role)
{
    node->inflight++;
    node->held[role == BT_NODE_SERVES_DECODE]++;
}

void bt_node_inflight_done(bt_node_t *node, unsigned role)
{
    assert(node->inflight > 0 && node->held[role == BT_NODE_SERVES_DECODE] > 0);
    node->inflight--;
    node->held[role == BT_NODE_SERVES_DECODE]--;
    if (node->draining && node->inflight == 0 && node->reg != NULL) {
        bt_registrar_send_status(node->reg);
    }
    bt_node_flex_check(node);
}

/* 100 ms: metrics. */
static void bt_node_tick(evutil_socket_t fd, short what, void *arg)
{
    bt_node_t *node = arg;

    (void)fd;
    (void)what;
    bt_node_metrics_update(node);
}

static bt_status_t bt_node_engine_init(bt_node_t *node)
{
    bt_node_cfg_t *c = &node->cfg;
    bt_kvpool_config_t pc;
    size_t per_block, bytes;
    uint32_t n_blocks;

    if (bt_model_load(c->model, &node->model) != BT_OK) {
        bt_error("cannot load model %s", c->model);
        return BT_ERR_INVALID_ARG;
    }
    node->vocab = (uint32_t)node->model->cfg.vocab;
    /* EOS as baton-run picks it: the tokenizer's end token (<|eot_id|> for
     * chat models), else config.json's eos_token_id */
    node->eos_id = node->model->cfg.eos_id;
    {
        char err[BT_TOK_ERR_SIZE];
        bt_tok_t *tok = NULL;

        if (bt_tok_load_dir(c->model, &tok, err, sizeof(err)) == BT_OK) {
            if (bt_tok_eos_id(tok) >= 0) {
                node->eos_id = bt_tok_eos_id(tok);
            }
        }
        /* the tokens' bytes, for structured output (logged and refused
         * per request when this fails) */
        (void)bt_node_grammar_init(node, tok);
        bt_tok_destroy(tok);
    }
    {
        char err[256];

        if (bt_backend_fwd_create(&node->backend, node->model, (int)c->threads,
                                  &node->fwd, err, sizeof(err)) != BT_OK) {
            bt_error("%s", err);
            return BT_ERR_NO_MEMORY;
        }
    }
    if (bt_sampler_create(node->vocab, &node->sampler) != BT_OK) {
        return BT_ERR_NO_MEMORY;
    }
    memset(&pc, 0, sizeof(pc));
    pc.geom.n_layers = (uint32_t)node->model->cfg.n_layers;
    pc.geom.n_kv_heads = (uint32_t)node->model->cfg.n_kv_heads;
    pc.geom.head_dim = (uint32_t)node->model->cfg.head_dim;
    pc.geom.block_size = (uint32_t)c->block_size;
    if (!bt_kv_dtype_parse(c->kv_dtype, &pc.geom.dtype) ||
        bt_kv_geom_check(&pc.geom) != BT_OK) {
        bt_error("--kv-dtype must be f32, f16 or bf16");
        return BT_ERR_INVALID_ARG;
    }
    per_block = bt_kv_region_bytes(&pc.geom, 1);
    n_blocks = c->kv_blocks > 0 ? (uint32_t)c->kv_blocks
                                : (uint32_t)(c->kv_pool / per_block);
    if (n_blocks < 2 || n_blocks > BT_KV_MAX_BLOCKS) {
        bt_error("kv pool of %u blocks: raise --kv-pool or --kv-blocks",
                 n_blocks);
        return BT_ERR_INVALID_ARG;
    }
    bytes = bt_kv_region_bytes(&pc.geom, n_blocks);
    /* The lanes UCX picks per peer are logged: it silently falls back to
     * tcp where shared memory lacks error handling (TOOLCHAIN.md). */
    bt_xfer_ctx_params_t xp = {.log_lanes = true};

    /* guarded: a writer on this host copies into a block only while its
     * lease owns it (docs/internals/node.md "Lease fence") */
    if (bt_xfer_ctx_create(node->base, &xp, &node->xfer) != BT_OK ||
        bt_xfer_region_alloc_guarded(node->xfer, bytes,
                                     bt_kv_slice_bytes(&pc.geom), n_blocks,
                                     &node->region) != BT_OK ||
        (node->xstats = bt_xstats_create(node->metrics)) == NULL) {
        bt_error("cannot set up ucx for the kv pool");
        return BT_ERR_PEER_UNREACHABLE;
    }
    /* the pool fills the whole region, so a prefill node derives the
     * block count (and slice offsets) from the exported length */
    n_blocks = (uint32_t)(bt_xfer_region_length(node->region) /
                          ((size_t)pc.geom.n_layers *
                           bt_kv_slice_bytes(&pc.geom)));
    pc.n_blocks = n_blocks;
    if (c->kv_prefault) {
        bt_xfer_region_prefault(node->region);
    }
    pc.base = bt_xfer_region_base(node->region);
    pc.base_len = bt_xfer_region_length(node->region);
    pc.event_cb = bt_node_kv_event;
    pc.event_ctx = node;
    if (bt_kvpool_create(&pc, &node->pool) != BT_OK ||
        bt_kv_view_from_pool(node->pool, &node->kv) != BT_OK) {
        return BT_ERR_NO_MEMORY;
    }
    return BT_OK;
}

/* The roles this process runs, in the order the scheduler takes turns. */
static void bt_node_roles_pick(bt_node_t *node, const bt_node_roles_t *roles)
{
    if (node->role != BT_NODE_DECODE) {
        node->roles[node->n_roles++] = roles->prefill;
    }
    if (node->role != BT_NODE_PREFILL) {
        node->roles[node->n_roles++] = roles->decode;
    }
    /* enum order prefill|decode|both: its index + 1 is the mask */
    node->serving = node->role == BT_NODE_FLEXIBLE
                    ? (unsigned)node->cfg.start_role + 1
                    : (unsigned)node->role + 1;
}

static bt_status_t bt_node_roles_create(bt_node_t *node)
{
    for (int r = 0; r < node->n_roles; r++) {
        if (node->roles[r]->create(node, &node->role_self[r]) != BT_OK) {
            bt_error("cannot start the %s role", node->roles[r]->name);
            return BT_ERR_NO_MEMORY;
        }
    }
    return BT_OK;
}

/* The skeleton's hooks (daemon/daemon.h). */
static bt_status_t bt_node_grpc_register(void *arg, bt_daemon_t *d)
{
    bt_node_t *node = arg;

    node->client = d->client;
    node->grpc = d->grpc;
    node->grpc_port = d->grpc_port;
    return bt_node_roles_create(node);
}

/* The address the router reaches and the node id. */
static bt_status_t bt_node_grpc_started(void *arg, bt_daemon_t *d)
{
    bt_node_t *node = arg;

    (void)d;
    bt_rpc_target(node->grpc_addr, sizeof(node->grpc_addr), node->cfg.listen,
                  node->grpc_port);
    if (node->cfg.node_id != NULL) {
        snprintf(node->node_id, sizeof(node->node_id), "%s", node->cfg.node_id);
    } else {
        snprintf(node->node_id, sizeof(node->node_id), "%s-%d-%d",
                 node->role == BT_NODE_PREFILL ? "prefill"
                 : node->role == BT_NODE_DECODE ? "decode"
                 : node->role == BT_NODE_FLEXIBLE ? "flexible" : "both",
                 node->grpc_port, (int)getpid());
    }
    return BT_OK;
}

static bt_status_t bt_node_started(void *arg, bt_daemon_t *d)
{
    bt_node_t *node = arg;
    struct timeval tick = { 0, 100000 };

    node->http = d->http;
    node->http_port = d->http_port;
    bt_rpc_hostport(node->http_addr, sizeof(node->http_addr), node->cfg.listen,
                    node->http_port);
    if (bt_node_kvs_init(node) != BT_OK ||
        bt_node_experts_init(node) != BT_OK ||
        bt_node_reg_start(node) != BT_OK) {
        return BT_ERR_INVALID_ARG;
    }
    node->tick_ev = event_new(node->base, -1, EV_PERSIST, bt_node_tick, node);
    if (node->tick_ev == NULL || event_add(node->tick_ev, &tick) != 0) {
        return BT_ERR_NO_MEMORY;
    }
    return BT_OK;
}

static void bt_node_drain(void *arg)
{
    bt_node_t *node = arg;

    node->draining = true;
    node->stopping = true;
    node->drain_started_ms = bt_now_ms();
    if (node->reg != NULL) {
        bt_registrar_send_status(node->reg);
    }
}

static size_t bt_node_inflight(void *arg)
{
    return ((bt_node_t *)arg)->inflight;
}

static void bt_node_stop(void *arg)
{
    bt_node_t *node = arg;

    bt_tpool_destroy(node->worker);
    bt_node_experts_destroy(node);
    /* the process is going away, and the pool with it: no fences */
    node->no_fence = true;
    for (int r = node->n_roles - 1; r >= 0; r--) {
        if (node->role_self[r] != NULL) {
            node->roles[r]->end_all(node->role_self[r]);
        }
    }
    bt_registrar_destroy(node->reg);
    node->http = NULL;
    node->grpc = NULL;
}

static void bt_node_release(void *arg)
{
    bt_node_t *node = arg;

    for (int r = node->n_roles - 1; r >= 0; r--) {
        if (node->role_self[r] != NULL) {
            node->roles[r]->destroy(node->role_self[r]);
        }
    }
    bt_node_kvs_destroy(node);
}

static void bt_node_free(void *arg)
{
    bt_node_t *node = arg;

    node->client = NULL;
    if (node->ev_flush != NULL) {
        event_free(node->ev_flush);
    }
    for (size_t i = 0; i < node->ev_n; i++) {
        free(node->ev_q[i]);
    }
    free(node->ev_q);
    if (node->layer_ev != NULL) {
        event_free(node->layer_ev);
    }
    if (node->tick_ev != NULL) {
        event_free(node->tick_ev);
    }
    bt_kvpool_destroy(node->pool);
    bt_xfer_region_destroy(node->region);
    bt_xfer_ctx_destroy(node->xfer);
    bt_xstats_destroy(node->xstats);
    bt_sampler_destroy(node->sampler);
    bt_node_grammar_cleanup(node);
    bt_fwd_destroy(node->fwd);
    bt_model_destroy(node->model);
    node->metrics = NULL;
    node->base = NULL;
}

static const bt_daemon_ops_t bt_node_daemon_ops = {
    .grpc_register = bt_node_grpc_register,
    .grpc_started = bt_node_grpc_started,
    .started = bt_node_started,
    .ready = bt_node_ready,
    .drain = bt_node_drain,
    .inflight = bt_node_inflight,
    .stop = bt_node_stop,
    .release = bt_node_release,
    .free = bt_node_free,
};

int bt_node_main(int argc, char **argv, bt_node_role_t default_role,
                 const char *prog, const bt_node_roles_t *roles)
{
    static const char *const role_names[] = { "prefill", "decode", "both",
                                              "flexible" };
    bt_opt_t table[BT_OPTS_COUNT(bt_node_table)];
    const bt_opts_spec_t spec = {
        prog, "--model DIR --router TARGET [OPTIONS]",
        "A Baton serving node: prefill, decode, or both (--role). It loads\n"
        "the model, keeps its KV cache in a UCX region, serves Prefill and\n"
        "Decode over gRPC and registers with the router.",
        table, BT_OPTS_COUNT(bt_node_table),
    };
    bt_node_t *node = calloc(1, sizeof(*node));
    bt_daemon_t d;
    bt_log_level_t level;
    char dir[4096];
    int rc = 1;

    if (node == NULL) {
        return 1;
    }
    /* --role defaults to the binary's own (shown by --help) */
    memcpy(table, bt_node_table, sizeof(table));
    table[0].defval = role_names[default_role];
    bt_opts_parse_only_or_exit(&spec, &node->cfg, argc, argv);
    node->role = (bt_node_role_t)node->cfg.role;
    bt_node_roles_pick(node, roles);
    if (!bt_daemon_level_parse(prog, node->cfg.log_level, &level)) {
        free(node);
        return 2;
    }
    if (node->cfg.model == NULL) {
        fprintf(stderr, "%s: --model is required (a model folder)\n", prog);
        free(node);
        return 2;
    }
    if (!bt_daemon_tls_check(prog, &node->cfg.tls, node->cfg.listen,
                             node->cfg.router)) {
        free(node);
        return 2;
    }
    {
        char err[256];

        if (bt_backend_choose((bt_backend_kind_t)node->cfg.backend,
                              (bt_numerics_mode_t)node->cfg.numerics, 1,
                              &node->backend, err, sizeof(err)) != BT_OK) {
            fprintf(stderr, "%s: %s\n", prog, err);
            free(node);
            return 2;
        }
        if (node->backend.device != NULL && node->cfg.expert_devices > 1) {
            fprintf(stderr, "%s: --expert-devices runs on the CPU backend "
                    "only (with --backend cuda, 1)\n", prog);
            free(node);
            return 2;
        }
        /* test hook: another kernel revision, as in a rolling upgrade that
         * changes a kernel's bits (tests/integration/numerics_cluster.py) */
        if (bt_node_test_env_ms("BATON_TEST_KERNEL_REV") > 0) {
            (void)bt_kv_numerics_format(
                node->backend.id, sizeof(node->backend.id),
                bt_backend_name(node->backend.kind),
                bt_numerics_name(node->backend.mode), (uint32_t)node->backend.tp,
                (uint32_t)bt_node_test_env_ms("BATON_TEST_KERNEL_REV"));
        }
    }
    bt_log_init(node->role == BT_NODE_PREFILL ? "prefill"
                : node->role == BT_NODE_DECODE ? "decode" : "node",
                level, (bt_log_format_t)node->cfg.log_format);
    bt_daemon_warn_plaintext(&node->cfg.tls, node->cfg.listen, node->cfg.router);
    /* chunks start on block boundaries, so no block is written by two
     * chunks (the first one's posted slices stay final) */
    if (node->cfg.max_prefill_tokens >= node->cfg.block_size) {
        node->cfg.max_prefill_tokens -= node->cfg.max_prefill_tokens %
                                        node->cfg.block_size;
    } else {
        node->cfg.max_prefill_tokens = node->cfg.block_size;
    }
    snprintf(dir, sizeof(dir), "%s", node->cfg.model);
    while (strlen(dir) > 1 && dir[strlen(dir) - 1] == '/') {
        dir[strlen(dir) - 1] = '\0';
    }
    snprintf(node->model_name, sizeof(node->model_name), "%s",
             node->cfg.served_model_name != NULL
             ? node->cfg.served_model_name : basename(dir));
    if (bt_daemon_init(&d, &(bt_daemon_cfg_t){
                           .listen = node->cfg.listen,
                           .grpc_port = node->cfg.grpc_port,
                           .http_port = node->cfg.http_port,
                           .tls = &node->cfg.tls, .max_message = 64u << 20,
                           .send_queue_max = 64, .client = true,
                           .max_body = 1 << 16,
                           .access_log = node->cfg.access_log,
                           .drain_timeout_ms = node->cfg.drain_timeout_ms,
                           .work = "requests" },
                       &bt_node_daemon_ops, node) != BT_OK) {
        goto out;
    }
    node->base = d.base;
    node->metrics = d.metrics;
    if (bt_node_engine_init(node) != BT_OK ||
        bt_node_sched_init(node) != BT_OK ||
        bt_daemon_serve(&d) != BT_OK) {
        goto out;
    }
    bt_info("%s %s: node %s model %s grpc %s (%s) http %s:%d, %u kv blocks of "
            "%lld tokens (%s), numerics %s, cpu kernels %s", prog, BT_VERSION,
            node->node_id, node->model_name, node->grpc_addr,
            bt_daemon_tls_mode(&node->cfg.tls), node->cfg.listen,
            node->http_port, bt_kvpool_n_blocks(node->pool),
            (long long)node->cfg.block_size, node->cfg.kv_dtype,
            node->backend.id, bt_cpu_kernels_name(bt_cpu_kernels()));
    rc = bt_daemon_run(&d);
out:
    bt_daemon_cleanup(&d);
    pthread_mutex_destroy(&node->layer_mu);
    bt_node_sched_cleanup(node);
    free(node);
    return rc;
}
