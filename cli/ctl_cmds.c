/* The handlers of batonctl's commands: build the request, call, print. */
#include "ctl.h"

#include "admin.pb-c.h"
#include "grpc/health/v1/health.pb-c.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define ADMIN "/baton.v1.Admin/"

/* ---- drain / undrain ---- */

static const char *ctl_node_arg;

static void ctl_print_state(const ctl_t *ctl, const json_t *resp)
{
    char state[16];

    printf("%s: %s\n", ctl_node_arg,
           ctl_enum(resp, "state", "NODE_STATE_", state, sizeof(state)));
}

int ctl_cmd_drain(ctl_t *ctl, int n_args, char **args)
{
    Baton__V1__DrainRequest req = BATON__V1__DRAIN_REQUEST__INIT;
    json_t *resp;
    bt_rpc_code_t code;
    int rc;

    (void)n_args;
    req.node_id = args[0];
    ctl_node_arg = args[0];
    if ((code = ctl_call(ctl, ADMIN "Drain", &req.base,
                 &baton__v1__drain_response__descriptor, &resp)) != BT_RPC_OK) {
        return ctl_exit_for(code);
    }
    rc = ctl_finish(ctl, resp, ctl_print_state);
    return rc == CTL_EXIT_OK && ctl->cfg.wait ? ctl_drain_wait(ctl, args[0]) : rc;
}

int ctl_cmd_undrain(ctl_t *ctl, int n_args, char **args)
{
    Baton__V1__UndrainRequest req = BATON__V1__UNDRAIN_REQUEST__INIT;
    json_t *resp;
    bt_rpc_code_t code;

    (void)n_args;
    req.node_id = args[0];
    ctl_node_arg = args[0];
    if ((code = ctl_call(ctl, ADMIN "Undrain", &req.base,
                 &baton__v1__undrain_response__descriptor, &resp)) != BT_RPC_OK) {
        return ctl_exit_for(code);
    }
    return ctl_finish(ctl, resp, ctl_print_state);
}

int ctl_cmd_forget(ctl_t *ctl, int n_args, char **args)
{
    Baton__V1__ForgetRequest req = BATON__V1__FORGET_REQUEST__INIT;
    json_t *resp;
    bt_rpc_code_t code;

    req.node_id = args[0];
    if ((code = ctl_call(ctl, ADMIN "Forget", &req.base,
                 &baton__v1__forget_response__descriptor, &resp)) != BT_RPC_OK) {
        return ctl_exit_for(code);
    }
    if (ctl->out == CTL_OUT_JSON || ctl->out == CTL_OUT_YAML) {
        ctl_emit(ctl, resp);
    } else {
        printf("%s: forgotten\n", args[0]);
    }
    json_decref(resp);
    return CTL_EXIT_OK;
}

/* ---- flush-cache ---- */

static void ctl_print_flush(const ctl_t *ctl, const json_t *resp)
{
    printf("flushed the prefix cache of %lld node(s)",
           ctl_int(resp, "nodes_flushed"));
    if (ctl_int(resp, "kvstores_flushed") > 0) {
        printf(" and %lld kvstore(s)", ctl_int(resp, "kvstores_flushed"));
    }
    printf("\n");
}

int ctl_cmd_flush_cache(ctl_t *ctl, int n_args, char **args)
{
    Baton__V1__FlushCacheRequest req = BATON__V1__FLUSH_CACHE_REQUEST__INIT;
    json_t *resp;
    bt_rpc_code_t code;

    req.node_id = n_args > 0 ? args[0] : (char *)"";
    req.include_kvstore = ctl->cfg.kvstore;
    if ((code = ctl_call(ctl, ADMIN "FlushCache", &req.base,
                 &baton__v1__flush_cache_response__descriptor, &resp)) != BT_RPC_OK) {
        return ctl_exit_for(code);
    }
    return ctl_finish(ctl, resp, ctl_print_flush);
}

/* ---- cancel ---- */

int ctl_cmd_cancel(ctl_t *ctl, int n_args, char **args)
{
    Baton__V1__CancelRequestRequest req = BATON__V1__CANCEL_REQUEST_REQUEST__INIT;
    json_t *resp;
    bt_rpc_code_t code;
    bool found;

    (void)n_args;
    req.request_id = args[0];
    if ((code = ctl_call(ctl, ADMIN "CancelRequest", &req.base,
                 &baton__v1__cancel_request_response__descriptor, &resp)) != BT_RPC_OK) {
        return ctl_exit_for(code);
    }
    found = json_is_true(json_object_get(resp, "found"));
    if (ctl->out == CTL_OUT_JSON || ctl->out == CTL_OUT_YAML) {
        ctl_emit(ctl, resp);
    } else if (found) {
        printf("cancelled %s\n", args[0]);
    } else {
        fprintf(stderr, "batonctl: cancel: NOT_FOUND: no request '%s' in flight\n",
                args[0]);
    }
    json_decref(resp);
    return found ? CTL_EXIT_OK : CTL_EXIT_FAIL;
}

/* ---- cache-stats ---- */

static void ctl_print_cache(const ctl_t *ctl, const json_t *resp)
{
    const json_t *caches = json_object_get(resp, "caches");
    const json_t *c;
    size_t i;

    printf("%-24s %-7s %10s %10s %12s %12s %10s\n", "NODE", "TIER", "BLOCKS",
           "CAPACITY", "HIT_TOKENS", "LOOKUP_TOK", "EVICTIONS");
    json_array_foreach(caches, i, c) {
        char tier[16];
        const char *id = ctl_str(c, "node_id");

        printf("%-24s %-7s %10lld %10lld %12lld %12lld %10lld\n",
               id[0] ? id : "(kvstore)", ctl_enum(c, "tier", "KV_TIER_", tier, sizeof(tier)),
               ctl_int(c, "blocks"), ctl_int(c, "capacity_blocks"),
               ctl_int(c, "hit_tokens"), ctl_int(c, "lookup_tokens"),
               ctl_int(c, "evictions"));
    }
    printf("hit rate: %.1f%%\n", 100.0 * ctl_real(resp, "hit_rate"));
}

int ctl_cmd_cache_stats(ctl_t *ctl, int n_args, char **args)
{
    Baton__V1__CacheStatsRequest req = BATON__V1__CACHE_STATS_REQUEST__INIT;
    json_t *resp;
    bt_rpc_code_t code;

    (void)n_args;
    (void)args;
    req.node_id = ctl->cfg.node != NULL ? (char *)ctl->cfg.node : (char *)"";
    if ((code = ctl_call(ctl, ADMIN "CacheStats", &req.base,
                 &baton__v1__cache_stats_response__descriptor, &resp)) != BT_RPC_OK) {
        return ctl_exit_for(code);
    }
    return ctl_finish(ctl, resp, ctl_print_cache);
}

/* ---- transfer-health ---- */

static void ctl_print_transfer(const ctl_t *ctl, const json_t *resp)
{
    const json_t *pairs = json_object_get(resp, "pairs");
    const json_t *p;
    size_t i;

    printf("%-20s %-20s %14s %10s %8s %9s %9s %8s  %s\n", "PREFILL", "DECODE",
           "BYTES", "OPS", "ERRORS", "P50_MS", "P99_MS", "GBPS", "LAST_ERROR");
    json_array_foreach(pairs, i, p) {
        printf("%-20s %-20s %14lld %10lld %8lld %9.3f %9.3f %8.2f  %s\n",
               ctl_str(p, "prefill_node"), ctl_str(p, "decode_node"),
               ctl_int(p, "bytes"), ctl_int(p, "ops"), ctl_int(p, "errors"),
               ctl_real(p, "latency_p50_ms"), ctl_real(p, "latency_p99_ms"),
               ctl_real(p, "bandwidth_gbps"), ctl_str(p, "last_error"));
    }
}

int ctl_cmd_transfer_health(ctl_t *ctl, int n_args, char **args)
{
    Baton__V1__TransferHealthRequest req = BATON__V1__TRANSFER_HEALTH_REQUEST__INIT;
    json_t *resp;
    bt_rpc_code_t code;

    (void)n_args;
    (void)args;
    if ((code = ctl_call(ctl, ADMIN "TransferHealth", &req.base,
                 &baton__v1__transfer_health_response__descriptor,
                 &resp)) != BT_RPC_OK) {
        return ctl_exit_for(code);
    }
    return ctl_finish(ctl, resp, ctl_print_transfer);
}

/* ---- health ---- */

int ctl_cmd_health(ctl_t *ctl, int n_args, char **args)
{
    Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    json_t *resp;
    bt_rpc_code_t code;
    const char *status;
    int rc;

    (void)n_args;
    (void)args;
    req.service = (char *)"";
    if ((code = ctl_call(ctl, "/grpc.health.v1.Health/Check", &req.base,
                 &grpc__health__v1__health_check_response__descriptor,
                 &resp)) != BT_RPC_OK) {
        return ctl_exit_for(code);
    }
    status = ctl_str(resp, "status");
    rc = strcmp(status, "SERVING") == 0 ? CTL_EXIT_OK : CTL_EXIT_FAIL;
    if (ctl->out == CTL_OUT_JSON || ctl->out == CTL_OUT_YAML) {
        ctl_emit(ctl, resp);
    } else {
        printf("%s\n", status);
    }
    json_decref(resp);
    return rc;
}
