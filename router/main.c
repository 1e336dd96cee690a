/* baton-router: the front door of a Baton cluster (DESIGN §1, §2). */
#include "front.h"
#include "model.h"
#include "request.h"
#include "router.h"

#include "base/log.h"
#include "base/opts.h"
#include "base/tpool.h"
#include "bt_config.h"
#include "daemon/daemon.h"
#include "rpc/addr.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    bt_router_cfg_t c;
    const char     *api_keys;
    const char     *http_tls_cert;
    const char     *http_tls_key;
    const char     *chat_template;
    bt_http_limits_t http;
} bt_router_opts_t;

#define O(_f) offsetof(bt_router_opts_t, _f)
static const bt_opt_t bt_router_table[] = {
    { "listen", 0, NULL, "127.0.0.1", "address both servers listen on",
      BT_OPT_STRING, 0, 0, NULL, O(c.listen) },
    { "grpc-port", 0, NULL, "50051", "port of the gRPC API (Generate, Registry, Admin); 0 picks one",
      BT_OPT_INT, 0, 65535, NULL, O(c.grpc_port) },
    { "http-port", 0, NULL, "8000", "port of the OpenAI-compatible HTTP API; 0 picks one",
      BT_OPT_INT, 0, 65535, NULL, O(c.http_port) },
    { "model", 'm', NULL, NULL, "model folder (tokenizer.json, config.json) the cluster serves",
      BT_OPT_STRING, 0, 0, NULL, O(c.model_dir) },
    { "served-model-name", 0, NULL, NULL, "model name clients use (default: the folder's name)",
      BT_OPT_STRING, 0, 0, NULL, O(c.model_name) },
    { "chat-template", 0, NULL, NULL, "chat template family: llama2, llama3, mistral, chatml (default: detect)",
      BT_OPT_STRING, 0, 0, NULL, O(chat_template) },
    { "heartbeat", 0, NULL, "500ms", "interval at which nodes report their load",
      BT_OPT_DURATION, 10, 60000, NULL, O(c.heartbeat_ms) },
    { "heartbeat-timeout", 0, NULL, "3s", "a node silent this long leaves the pool",
      BT_OPT_DURATION, 50, 600000, NULL, O(c.heartbeat_timeout_ms) },
    { "w-hit", 0, NULL, "1.0", "score per prompt token already cached on a prefill node",
      BT_OPT_DOUBLE, 0, 1e6, NULL, O(c.w_hit) },
    { "w-store-hit", 0, NULL, "0.9", "score per prompt token a kvstore replica holds "
      "beyond a prefill node's own cache (fetched, not computed)",
      BT_OPT_DOUBLE, 0, 1e6, NULL, O(c.w_store_hit) },
    { "w-load", 0, NULL, "1.0", "score penalty per prompt token queued on a prefill node",
      BT_OPT_DOUBLE, 0, 1e6, NULL, O(c.w_load) },
    { "w-free", 0, NULL, "1.0", "score per free KV block on a decode node",
      BT_OPT_DOUBLE, 0, 1e6, NULL, O(c.w_free) },
    { "w-batch", 0, NULL, "8.0", "score penalty per running sequence on a decode node",
      BT_OPT_DOUBLE, 0, 1e6, NULL, O(c.w_batch) },
    { "disagg", 0, NULL, "auto", "prefill on another node and move the KV "
      "(always), on the decode node itself (never), or per request by "
      "prompt, cache, queues and transfer cost (auto)",
      BT_OPT_ENUM, 0, 0, "auto|always|never", O(c.disagg) },
    { "disagg-min-tokens", 0, NULL, "256", "auto: a prompt the decode node "
      "would compute fewer tokens of than this prefills there",
      BT_OPT_INT, 0, 1 << 30, NULL, O(c.disagg_min_tokens) },
    { "disagg-prefill-rate", 0, NULL, "10", "auto: prefill tokens per ms, "
      "to weigh a KV transfer's time against prompt tokens",
      BT_OPT_DOUBLE, 0, 1e9, NULL, O(c.disagg_prefill_rate) },
    { "disagg-transfer-ms", 0, NULL, "2", "auto: a (prefill, decode) pair's "
      "transfer tail until the prefill node has measured one",
      BT_OPT_DOUBLE, 0, 1e6, NULL, O(c.disagg_transfer_ms) },
    { "rebalance-roles", 0, NULL, "off", "the role controller: move --role "
      "flexible nodes toward the side (prefill or decode) that misses its SLO",
      BT_OPT_BOOL, 0, 0, NULL, O(c.rebalance_roles) },
    { "slo-ttft-ms", 0, NULL, "1000", "the TTFT target: the controller's for "
      "the interval's mean time to first token and the prefill queue's wait; "
      "--disagg auto's guard protects no request whose first token misses it",
      BT_OPT_DOUBLE, 1, 1e7, NULL, O(c.slo_ttft_ms) },
    { "slo-tpot-ms", 0, NULL, "100", "the TPOT target: the controller's "
      "for the interval's mean time between tokens; --disagg auto: no prefill "
      "on a node that would stall its sequences past what this leaves them "
      "over their max_tokens", BT_OPT_DOUBLE, 0.01, 1e7, NULL,
      O(c.slo_tpot_ms) },
    { "rebalance-interval", 0, NULL, "10s", "how often the controller looks, "
      "and at most one move per interval", BT_OPT_DURATION, 100, 3600000,
      NULL, O(c.rebalance_interval_ms) },
    { "rebalance-dwell", 0, NULL, "60s", "a node keeps a role at least this "
      "long before the controller moves it again", BT_OPT_DURATION, 0,
      86400000, NULL, O(c.rebalance_dwell_ms) },
    { "rebalance-headroom", 0, NULL, "0.8", "the side that gives up a node "
      "must be under this fraction of its SLO", BT_OPT_DOUBLE, 0.01, 1, NULL,
      O(c.rebalance_headroom) },
    { "max-inflight", 0, NULL, "1024", "requests in progress at once; more get 429",
      BT_OPT_INT, 1, 1000000, NULL, O(c.max_inflight) },
    { "max-queue", 0, NULL, "256", "requests waiting (oldest first) for a decode node with room; a full queue answers 429",
      BT_OPT_INT, 0, 1000000, NULL, O(c.max_queue) },
    { "queue-timeout", 0, NULL, "10s", "longest wait in the queue, in all, before 429 (503 with no node serving the model)",
      BT_OPT_DURATION, 1, 3600000, NULL, O(c.queue_timeout_ms) },
    { "prefill-retries", 0, NULL, "2", "other prefill nodes tried when one fails",
      BT_OPT_INT, 0, 16, NULL, O(c.prefill_retries) },
    { "decode-failovers", 0, NULL, "2", "other decode nodes tried when one dies mid-stream",
      BT_OPT_INT, 0, 16, NULL, O(c.decode_failovers) },
    { "request-timeout", 0, NULL, "10m", "deadline of a whole request",
      BT_OPT_DURATION, 100, 86400000, NULL, O(c.request_timeout_ms) },
    { "default-max-tokens", 0, NULL, "256", "max_tokens when a request sets none",
      BT_OPT_INT, 1, 1 << 20, NULL, O(c.default_max_tokens) },
    { "max-choices", 0, NULL, "16", "largest n and best_of of one OpenAI request (400 above)",
      BT_OPT_INT, 1, 128, NULL, O(c.max_choices) },
    { "lease", 0, NULL, "30s", "KV reservation lease asked of decode nodes; renewed every third of it while a request waits for its prefill",
      BT_OPT_DURATION, 100, 3600000, NULL, O(c.lease_ms) },
    { "max-body", 0, NULL, "8M", "largest HTTP request body",
      BT_OPT_SIZE, 1024, 1073741824.0, NULL, O(c.max_body) },
    { "http-header-timeout", 0, NULL, "10s", "an HTTP request's head (and each pause "
      "in its body) must arrive within this, else 408 and close; 0 = none",
      BT_OPT_DURATION, 0, 3600000, NULL, O(http.header_timeout_ms) },
    { "http-idle-timeout", 0, NULL, "60s", "an idle keep-alive HTTP connection, or a "
      "reply its client stops reading, is closed after this; 0 = none",
      BT_OPT_DURATION, 0, 86400000, NULL, O(http.idle_timeout_ms) },
    { "http-max-connections", 0, NULL, "1024", "open HTTP connections at most; more "
      "get 503 with Retry-After and are closed; 0 = no cap",
      BT_OPT_INT, 0, 1000000, NULL, O(http.max_connections) },
    { "prefix-index-entries", 0, NULL, "1000000", "block hashes the router tracks for prefix-aware routing",
      BT_OPT_INT, 16, 100000000, NULL, O(c.prefix_index_entries) },
    { "threads", 'j', NULL, "2", "worker threads that tokenize prompts, render "
      "chat templates and detokenize generated tokens; 0: the event loop's thread "
      "does it",
      BT_OPT_INT, 0, 64, NULL, O(c.threads) },
    { "detok-inline", 0, NULL, "16", "a loop pass's generated tokens up to this many are "
      "detokenized on the event loop's thread, more on the worker threads (--threads) "
      "in one job (bench/detok: a job costs the loop about as much as 16 tokens)",
      BT_OPT_INT, 0, 1000000, NULL, O(c.detok_inline) },
    { "drain-timeout", 0, NULL, "30s", "on SIGTERM, how long requests in flight may finish",
      BT_OPT_DURATION, 0, 3600000, NULL, O(c.drain_timeout_ms) },
    { "api-keys", 0, NULL, NULL, "JSON file of API keys and their tenants (auth off without it)",
      BT_OPT_STRING, 0, 0, NULL, O(api_keys) },
    { "log-level", 0, NULL, "info", "trace, debug, info, warn or error",
      BT_OPT_STRING, 0, 0, NULL, O(c.log_level) },
    { "access-log", 0, NULL, "on", "a log line per HTTP request (method, path, status, bytes, duration, request id)",
      BT_OPT_BOOL, 0, 0, NULL, O(c.access_log) },
    { "log-format", 0, NULL, "text", "log lines as text or JSON",
      BT_OPT_ENUM, 0, 0, "text|json", O(c.log_format) },
    BT_RPC_TLS_OPTS_DAEMON(O(c.tls)),
    { "http-tls-cert", 0, NULL, NULL, "PEM certificate chain: the HTTP API "
      "(OpenAI, probes, /metrics) serves HTTPS only; plain HTTP there gets a "
      "400", BT_OPT_STRING, 0, 0, NULL, O(http_tls_cert) },
    { "http-tls-key", 0, NULL, NULL, "PEM private key of --http-tls-cert",
      BT_OPT_STRING, 0, 0, NULL, O(http_tls_key) },
};
#undef O

static const bt_opts_spec_t bt_router_spec = {
    "baton-router", "[OPTIONS]",
    "The front door of a Baton cluster: OpenAI-compatible HTTP and gRPC APIs,\n"
    "the node registry, and (prefill, decode) pair selection.",
    bt_router_table, BT_OPTS_COUNT(bt_router_table),
};

/* The skeleton's hooks (daemon/daemon.h). */
static bt_status_t bt_router_grpc_register(void *arg, bt_daemon_t *d)
{
    bt_router_t *r = arg;
    bt_status_t s;

    r->client = d->client;
    r->grpc = d->grpc;
    r->grpc_bound_port = d->grpc_port;
    s = bt_router_registry_register(r);
    if (s == BT_OK) {
        s = bt_front_grpc_register(r);
    }
    if (s == BT_OK) {
        s = bt_router_admin_register(r);
    }
    return s;
}

/* Kubernetes gRPC probes and load balancers name the service: SERVING
 * while nodes give the model capacity */
static bt_status_t bt_router_grpc_started(void *arg, bt_daemon_t *d)
{
    bt_status_t s;

    (void)d;
    s = bt_router_readiness_start(arg);
    return s == BT_OK ? bt_router_rebalance_start(arg) : s;
}

static bt_status_t bt_router_started(void *arg, bt_daemon_t *d)
{
    bt_router_t *r = arg;

    r->http = d->http;
    r->http_bound_port = d->http_port;
    return bt_front_http_register(r);
}

static void bt_router_drain(void *arg)
{
    bt_router_t *r = arg;

    r->draining = true;
    bt_router_readiness_sync(r); /* baton.v1.Generate: NOT_SERVING */
}

static size_t bt_router_inflight(void *arg)
{
    bt_router_t *r = arg;

    return r->n_inflight + r->n_encoding + r->n_end_held;
}

static void bt_router_stop(void *arg)
{
    bt_router_t *r = arg;

    bt_router_readiness_stop(r);
    bt_router_rebalance_stop(r);
    /* prompts still on the pool come back refused (the servers are still
     * there to answer them) */
    r->draining = true;
    bt_tpool_destroy(r->encode_pool);
    r->encode_pool = NULL;
}

static void bt_router_release(void *arg)
{
    bt_router_t *r = arg;

    r->http = NULL;
    r->grpc = NULL;
    bt_router_admin_free(r);
    bt_router_requests_cleanup(r);
}

static void bt_router_free(void *arg)
{
    bt_router_t *r = arg;

    r->client = NULL;
    if (r->expire_ev != NULL) {
        event_free(r->expire_ev);
    }
    bt_registry_destroy(r->registry);
    bt_router_events_free(r);
    bt_traces_destroy(r->traces);
    if (r->model != NULL) {
        bt_router_model_free(r);
    }
    bt_front_auth_free(r);
    r->metrics = NULL;
    r->base = NULL;
}

static const bt_daemon_ops_t bt_router_daemon_ops = {
    .grpc_register = bt_router_grpc_register,
    .grpc_started = bt_router_grpc_started,
    .started = bt_router_started,
    .ready = bt_router_ready,
    .drain = bt_router_drain,
    .inflight = bt_router_inflight,
    .stop = bt_router_stop,
    .release = bt_router_release,
    .free = bt_router_free,
};

int main(int argc, char **argv)
{
    bt_router_opts_t o;
    bt_router_t *r;
    bt_daemon_t d;
    bt_log_level_t level;
    char err[512];
    bt_status_t s;
    int rc = 1;

    memset(&o, 0, sizeof(o));
    memset(&d, 0, sizeof(d));
    bt_opts_parse_only_or_exit(&bt_router_spec, &o, argc, argv);
    if (!bt_daemon_level_parse("baton-router", o.c.log_level, &level)) {
        return 2;
    }
    if (o.c.model_dir == NULL) {
        fprintf(stderr, "baton-router: --model is required (a model folder)\n");
        return 2;
    }
    if (!bt_daemon_tls_check("baton-router", &o.c.tls, o.c.listen, NULL)) {
        return 2;
    }
    if ((o.http_tls_cert != NULL) != (o.http_tls_key != NULL)) {
        fprintf(stderr, "baton-router: --http-tls-cert and --http-tls-key go "
                "together\n");
        return 2;
    }
    if (o.http_tls_cert != NULL &&
        bt_http_tls_check(o.http_tls_cert, o.http_tls_key, err,
                          sizeof(err)) != BT_OK) {
        fprintf(stderr, "baton-router: --http-tls-cert: %s\n", err);
        return 2;
    }
    /* after the checks above, which exit with 2 and must leave nothing
     * allocated (LeakSanitizer: make asan's tls/cluster) */
    r = calloc(1, sizeof(*r));
    if (r == NULL) {
        fprintf(stderr, "baton-router: out of memory\n");
        return 1;
    }
    bt_log_init("router", level, (bt_log_format_t)o.c.log_format);
    if (!o.c.tls.enabled && !bt_rpc_addr_is_loopback(o.c.listen)) {
        bt_warn("insecure: grpc on %s is plaintext (--insecure): anyone on the "
                "network can call Generate, Register and Admin; use --tls-*",
                o.c.listen);
    }
    r->cfg = o.c;
    r->weights = (bt_select_weights_t){
        o.c.w_hit, o.c.w_load, o.c.w_free, o.c.w_batch, o.c.w_store_hit,
        { (bt_disagg_mode_t)o.c.disagg, (uint64_t)o.c.disagg_min_tokens,
          o.c.disagg_prefill_rate, o.c.disagg_transfer_ms, o.c.slo_tpot_ms,
          o.c.slo_ttft_ms },
        NULL, NULL };   /* the stall budget: bt_router_requests_init */
    bt_router_requests_init(r);

    s = bt_daemon_init(&d, &(bt_daemon_cfg_t){
                           .listen = o.c.listen, .grpc_port = o.c.grpc_port,
                           .http_port = o.c.http_port, .tls = &r->cfg.tls,
                           .max_message = 64u << 20, .send_queue_max = 1024,
                           .client = true, .max_body = o.c.max_body,
                           .http_limits = &o.http,
                           .access_log = o.c.access_log,
                           .http_tls_cert = o.http_tls_cert,
                           .http_tls_key = o.http_tls_key,
                           .drain_timeout_ms = o.c.drain_timeout_ms,
                           .work = "requests" },
                       &bt_router_daemon_ops, r);
    r->base = d.base;
    r->metrics = d.metrics;
    r->traces = bt_traces_create(BT_TRACE_KEEP);
    r->registry = bt_registry_create((size_t)o.c.prefix_index_entries,
                                     (uint64_t)o.c.heartbeat_timeout_ms);
    if (s != BT_OK || r->registry == NULL || r->traces == NULL) {
        goto out;
    }
    if (o.c.threads > 0) {
        /* one waiting prompt per request the router may hold */
        r->encode_pool = bt_tpool_create(r->base, (int)o.c.threads,
                                         (size_t)o.c.max_inflight);
        if (r->encode_pool == NULL) {
            goto out;
        }
    }
    s = bt_router_model_load(r, o.c.model_dir, o.c.model_name, o.chat_template,
                             err, sizeof(err));
    if (s == BT_OK) {
        bt_router_metrics_init(r);
        s = bt_front_auth_load(r, o.api_keys, err, sizeof(err));
    }
    if (s != BT_OK) {
        bt_error("%s", err);
        goto out;
    }
    if (bt_daemon_serve(&d) != BT_OK) {
        goto out;
    }
    bt_info("baton-router %s: grpc %s:%d (%s) http %s:%d (%s) model %s",
            BT_VERSION, o.c.listen, d.grpc_port, bt_daemon_tls_mode(&r->cfg.tls),
            o.c.listen, d.http_port, o.http_tls_cert != NULL ? "https" : "plain",
            bt_router_model_name(r));
    rc = bt_daemon_run(&d);

out:
    bt_daemon_cleanup(&d);
    free(r);
    return rc;
}
