/* baton-router: the front door of a Baton cluster (DESIGN §1, §2). */
#include "front.h"
#include "model.h"
#include "request.h"
#include "router.h"

#include "base/log.h"
#include "base/loop.h"
#include "base/opts.h"
#include "base/sdnotify.h"
#include "bt_config.h"
#include "rpc/addr.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    bt_router_cfg_t c;
    const char     *api_keys;
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
};
#undef O

static const bt_opts_spec_t bt_router_spec = {
    "baton-router", "[OPTIONS]",
    "The front door of a Baton cluster: OpenAI-compatible HTTP and gRPC APIs,\n"
    "the node registry, and (prefill, decode) pair selection.",
    bt_router_table, BT_OPTS_COUNT(bt_router_table),
};

static void bt_router_drain_check(evutil_socket_t fd, short what, void *arg)
{
    bt_router_t *r = arg;

    (void)fd;
    (void)what;
    r->drain_waited_ms += 100;
    if (r->n_inflight == 0 ||
        (int64_t)r->drain_waited_ms >= r->cfg.drain_timeout_ms) {
        if (r->n_inflight > 0) {
            bt_warn("drain timeout: %zu requests still in flight", r->n_inflight);
        }
        event_base_loopexit(r->base, NULL);
        return;
    }
    {
        struct timeval tv = { 0, 100000 };

        evtimer_add(r->drain_ev, &tv);
    }
}

static void bt_router_drain(void *arg, int signo)
{
    bt_router_t *r = arg;
    struct timeval tv = { 0, 0 };

    bt_sdnotify("STOPPING=1");
    (void)signo;
    r->draining = true;
    bt_rpc_server_set_serving(r->grpc, "", false);
    bt_router_readiness_sync(r); /* baton.v1.Generate: NOT_SERVING */
    bt_info("draining: %zu requests in flight", r->n_inflight);
    r->drain_ev = evtimer_new(r->base, bt_router_drain_check, r);
    evtimer_add(r->drain_ev, &tv);
}

int main(int argc, char **argv)
{
    bt_router_opts_t o;
    bt_router_t *r = calloc(1, sizeof(*r));
    bt_loop_signals_t *sig = NULL;
    bt_log_level_t level;
    char addr[320], err[512];
    bt_status_t s;
    int rc = 1;

    memset(&o, 0, sizeof(o));
    bt_opts_parse_only_or_exit(&bt_router_spec, &o, argc, argv);
    if (!bt_log_level_parse(o.c.log_level, &level)) {
        fprintf(stderr, "baton-router: invalid value '%s' for --log-level\n",
                o.c.log_level);
        return 2;
    }
    if (o.c.model_dir == NULL) {
        fprintf(stderr, "baton-router: --model is required (a model folder)\n");
        return 2;
    }
    /* TLS: bad combinations and unreadable files end here (exit 2) */
    if (bt_rpc_tls_cfg_check(&o.c.tls, true, err, sizeof(err)) != BT_OK ||
        bt_rpc_tls_cfg_plain_check(&o.c.tls, o.c.listen, "listen", err,
                                   sizeof(err)) != BT_OK) {
        fprintf(stderr, "baton-router: %s\n", err);
        return 2;
    }
    bt_log_init("router", level, (bt_log_format_t)o.c.log_format);
    if (!o.c.tls.enabled && !bt_rpc_addr_is_loopback(o.c.listen)) {
        bt_warn("insecure: grpc on %s is plaintext (--insecure): anyone on the "
                "network can call Generate, Register and Admin; use --tls-*",
                o.c.listen);
    }
    r->cfg = o.c;
    r->weights = (bt_select_weights_t){ o.c.w_hit, o.c.w_load, o.c.w_free,
                                        o.c.w_batch, o.c.w_store_hit };
    bt_router_requests_init(r);

    r->base = bt_loop_create();
    r->metrics = bt_metrics_create();
    r->traces = bt_traces_create(BT_TRACE_KEEP);
    r->registry = bt_registry_create((size_t)o.c.prefix_index_entries,
                                     (uint64_t)o.c.heartbeat_timeout_ms);
    if (r->base == NULL || r->metrics == NULL || r->registry == NULL ||
        r->traces == NULL) {
        goto out;
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

    r->client = bt_rpc_client_create(r->base, &(bt_rpc_client_opts_t){ 64u << 20, 0 });
    r->grpc = bt_rpc_server_create(r->base, &(bt_rpc_server_opts_t){ 64u << 20, 1024, 16 });
    if (r->client == NULL || r->grpc == NULL) {
        goto out;
    }
    bt_rpc_hostport(addr, sizeof(addr), o.c.listen, (int)o.c.grpc_port);
    s = bt_rpc_server_listen(r->grpc, addr, bt_rpc_tls_cfg_server(&r->cfg.tls),
                             &r->grpc_bound_port);
    if (s == BT_OK) {
        s = bt_router_registry_register(r);
    }
    if (s == BT_OK) {
        s = bt_front_grpc_register(r);
    }
    if (s == BT_OK) {
        s = bt_router_admin_register(r);
    }
    if (s == BT_OK) {
        s = bt_rpc_server_start(r->grpc);
    }
    if (s == BT_OK) {
        /* Kubernetes gRPC probes and load balancers name the service:
         * SERVING while nodes give the model capacity */
        s = bt_router_readiness_start(r);
    }
    if (s != BT_OK) {
        bt_error("cannot start the grpc server on %s: %s", addr, bt_status_str(s));
        goto out;
    }
    r->http = bt_http_server_create(r->base, o.c.listen, (int)o.c.http_port,
                                    o.c.max_body, &r->http_bound_port);
    if (r->http != NULL) {
        bt_http_server_set_limits(r->http, &o.http);
        bt_http_server_set_access_log(r->http, o.c.access_log);
    }
    if (r->http == NULL ||
        bt_http_add_standard(r->http, bt_router_ready, r, r->metrics) != BT_OK ||
        bt_front_http_register(r) != BT_OK) {
        goto out;
    }
    sig = bt_loop_signals_install(r->base, bt_router_drain, r);
    bt_info("baton-router %s: grpc %s:%d (%s) http %s:%d model %s", BT_VERSION,
            o.c.listen, r->grpc_bound_port,
            !r->cfg.tls.enabled ? "plaintext"
            : r->cfg.tls.ca_file != NULL ? "mtls" : "tls",
            o.c.listen, r->http_bound_port, bt_router_model_name(r));
    /* a line for launchers and tests that pick port 0 */
    printf("grpc_port=%d http_port=%d\n", r->grpc_bound_port, r->http_bound_port);
    fflush(stdout);
    bt_sdnotify("READY=1");

    event_base_dispatch(r->base);
    rc = 0;
    bt_info("stopped");

out:
    bt_loop_signals_remove(sig);
    bt_router_readiness_stop(r);
    if (r->drain_ev != NULL) {
        event_free(r->drain_ev);
    }
    bt_http_server_destroy(r->http);
    bt_rpc_server_destroy(r->grpc);
    bt_router_admin_free(r);
    bt_rpc_client_destroy(r->client);
    if (r->expire_ev != NULL) {
        event_free(r->expire_ev);
    }
    bt_registry_destroy(r->registry);
    bt_traces_destroy(r->traces);
    if (r->model != NULL) {
        bt_router_model_free(r);
    }
    bt_front_auth_free(r);
    bt_metrics_destroy(r->metrics);
    if (r->base != NULL) {
        event_base_free(r->base);
    }
    free(r);
    return rc;
}
