/* describe node NAME / describe request ID: everything the router knows
 * about one object, for a person (or, with -o json|yaml, one object that
 * gathers the answers); and `version`. */
#include "ctl.h"

#include "admin.pb-c.h"
#include "bt_config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ADMIN "/baton.v1.Admin/"

/* "2026-12-06T08:40:00Z (5m3s ago)", or "-" when unknown. */
static const char *ctl_when(uint64_t now, uint64_t unix_ms, char *out, size_t size)
{
    char t[32], age[24];

    if (unix_ms == 0) {
        snprintf(out, size, "-");
    } else {
        snprintf(out, size, "%s (%s ago)", ctl_time(unix_ms, t, sizeof(t)),
                 ctl_age(now, unix_ms, age, sizeof(age)));
    }
    return out;
}

/* ---- describe node ---- */

static void ctl_describe_node_text(const ctl_t *ctl, const json_t *all)
{
    const json_t *n = json_object_get(all, "node");
    const json_t *reqs = json_object_get(all, "requests");
    const json_t *pairs = json_object_get(all, "transfers");
    const json_t *e;
    uint64_t now = ctl_now_ms(all);
    char role[16], state[16], when[64];
    long long total = ctl_int(n, "total_blocks"), free_b = ctl_int(n, "free_blocks");
    const char *version = ctl_str(n, "version");
    size_t i;

    printf("Name:              %s\n", ctl_str(n, "node_id"));
    printf("Role:              %s\n", ctl_enum(n, "role", "NODE_ROLE_", role, sizeof(role)));
    if (json_is_true(json_object_get(n, "flexible"))) {
        char to[16];

        ctl_enum(n, "target_role", "NODE_ROLE_", to, sizeof(to));
        printf("Flexible:          yes, %s since %s\n", role,
               ctl_when(now, (uint64_t)ctl_int(n, "role_since_unix_ms"), when,
                        sizeof(when)));
        if (to[0] != '\0' && strcmp(to, "unspecified") != 0) {
            printf("Moving to:         %s (finishing its %s work)\n", to, role);
        }
    }
    printf("State:             %s\n",
           ctl_enum(n, "state", "NODE_STATE_", state, sizeof(state)));
    printf("Model:             %s\n", ctl_str(n, "model"));
    printf("Address:           %s\n", ctl_str(n, "grpc_address"));
    printf("HTTP (metrics):    %s\n",
           ctl_str(n, "http_address")[0] ? ctl_str(n, "http_address") : "-");
    printf("Version:           %s\n", version[0] ? version : "-");
    printf("Numerics:          %s\n",   /* KV is shared within one id only */
           ctl_str(n, "numerics")[0] ? ctl_str(n, "numerics") : "-");
    printf("Registered:        %s\n",
           ctl_when(now, (uint64_t)ctl_int(n, "registered_unix_ms"), when, sizeof(when)));
    printf("Last heartbeat:    %s\n",
           ctl_when(now, (uint64_t)ctl_int(n, "last_heartbeat_unix_ms"), when,
                    sizeof(when)));
    printf("KV blocks:         %lld free of %lld (%.0f%% used)\n", free_b, total,
           total > 0 ? 100.0 * (double)(total - free_b) / (double)total : 0.0);
    printf("Running sequences: %lld\n", ctl_int(n, "running_sequences"));
    printf("Queued prefill:    %lld tokens\n", ctl_int(n, "queued_prefill_tokens"));
    /* measured on the node; the router's local-or-remote rule prices with them */
    if (ctl_real(n, "prefill_tokens_per_ms") > 0) {
        printf("Prefill speed:     %.2f tokens/ms\n", ctl_real(n, "prefill_tokens_per_ms"));
    } else {
        printf("Prefill speed:     - (no prefill yet)\n");
    }
    if (ctl_real(n, "decode_step_ms") > 0) {
        printf("Decode step:       %.2f ms\n", ctl_real(n, "decode_step_ms"));
    } else {
        printf("Decode step:       - (no decode yet)\n");
    }
    printf("Requests:          %zu in flight\n", json_array_size(reqs));
    if (json_array_size(reqs) > 0) {
        printf("  %-36s %-10s %-8s %10s %8s\n", "ID", "PHASE", "AS", "GENERATED", "AGE");
        json_array_foreach(reqs, i, e) {
            char age[24];
            bool as_decode = strcmp(ctl_str(e, "decode_node"), ctl_str(n, "node_id")) == 0;

            printf("  %-36s %-10s %-8s %10lld %8s\n", ctl_str(e, "request_id"),
                   ctl_str(e, "phase"), as_decode ? "decode" : "prefill",
                   ctl_int(e, "completion_tokens"),
                   ctl_age(now, (uint64_t)ctl_int(e, "started_unix_ms"), age,
                           sizeof(age)));
        }
    }
    if (strcmp(role, "decode") == 0 || strcmp(role, "both") == 0) {
        const json_t *leases = json_object_get(all, "leases");

        printf("Leases:            %zu\n",
               json_array_size(json_object_get(leases, "leases")));
        if (json_array_size(json_object_get(leases, "leases")) > 0) {
            ctl_print_leases(ctl, leases);
        }
    }
    printf("KV transfers:      %zu pair(s)\n", json_array_size(pairs));
    json_array_foreach(pairs, i, e) {
        printf("  %s -> %s: %lld transfer(s), %lld byte(s), %lld error(s), "
               "p50 %.3f ms, p99 %.3f ms%s%s\n", ctl_str(e, "prefill_node"),
               ctl_str(e, "decode_node"), ctl_int(e, "ops"), ctl_int(e, "bytes"),
               ctl_int(e, "errors"), ctl_real(e, "latency_p50_ms"),
               ctl_real(e, "latency_p99_ms"), ctl_str(e, "last_error")[0] ? ", last error: " : "",
               ctl_str(e, "last_error"));
    }
}

/* The pairs of a TransferHealth answer that involve `id` (a new array). */
static json_t *ctl_pairs_of(const json_t *th, const char *id)
{
    json_t *out = json_array(), *e;
    size_t i;

    json_array_foreach(json_object_get(th, "pairs"), i, e) {
        if (out != NULL && (strcmp(ctl_str(e, "prefill_node"), id) == 0 ||
                            strcmp(ctl_str(e, "decode_node"), id) == 0)) {
            json_array_append(out, e);
        }
    }
    return out;
}

static int ctl_describe_node(ctl_t *ctl, const char *name)
{
    Baton__V1__TransferHealthRequest treq = BATON__V1__TRANSFER_HEALTH_REQUEST__INIT;
    json_t *nodes = NULL, *reqs = NULL, *th = NULL, *all = NULL, *n;
    int rc;

    if ((rc = ctl_find_node(ctl, name, &nodes, &n)) != CTL_EXIT_OK) {
        return rc;
    }
    if (n == NULL) {
        fprintf(stderr, "batonctl: describe: NOT_FOUND: no node '%s'\n", name);
        json_decref(nodes);
        return CTL_EXIT_FAIL;
    }
    if ((rc = ctl_list_requests(ctl, name, &reqs)) != CTL_EXIT_OK) {
        goto out;
    }
    /* transfers are extra: a router without them still describes the node */
    if (ctl_call(ctl, ADMIN "TransferHealth", &treq.base,
                 &baton__v1__transfer_health_response__descriptor, &th) != BT_RPC_OK) {
        th = NULL;
    }
    all = json_pack("{s:O, s:O, s:o, s:o, s:I}", "node", n, "requests",
                    json_object_get(reqs, "requests"), "leases",
                    ctl_leases_from(reqs, name), "transfers", ctl_pairs_of(th, name),
                    "now_unix_ms", (json_int_t)ctl_now_ms(nodes));
    if (all == NULL) {
        fprintf(stderr, "batonctl: out of memory\n");
        rc = CTL_EXIT_FAIL;
        goto out;
    }
    rc = ctl_finish(ctl, all, ctl_describe_node_text);
out:
    json_decref(th);
    json_decref(reqs);
    json_decref(nodes);
    return rc;
}

/* ---- describe request ---- */

static void ctl_describe_request_text(const ctl_t *ctl, const json_t *all)
{
    const json_t *q = json_object_get(all, "request");
    uint64_t now = ctl_now_ms(all);
    uint64_t expiry = (uint64_t)ctl_int(q, "lease_expiry_unix_ms");
    const char *tenant = ctl_str(q, "tenant");
    char when[64], t[32];

    printf("ID:                %s\n", ctl_str(q, "request_id"));
    printf("Phase:             %s\n", ctl_str(q, "phase"));
    printf("Model:             %s\n", ctl_str(q, "model"));
    printf("Tenant:            %s\n", tenant[0] ? tenant : "-");
    printf("Started:           %s\n",
           ctl_when(now, (uint64_t)ctl_int(q, "started_unix_ms"), when, sizeof(when)));
    printf("Prefill node:      %s\n", ctl_str(q, "prefill_node")[0] ? ctl_str(q, "prefill_node") : "-");
    printf("Decode node:       %s\n", ctl_str(q, "decode_node")[0] ? ctl_str(q, "decode_node") : "-");
    printf("Prompt tokens:     %lld\n", ctl_int(q, "prompt_tokens"));
    printf("Generated tokens:  %lld\n", ctl_int(q, "completion_tokens"));
    if (ctl_int(q, "lease_id") != 0 || expiry != 0) {
        printf("Lease:             %lld, %lld block(s), ends %s\n", ctl_int(q, "lease_id"),
               ctl_int(q, "lease_blocks"), ctl_time(expiry, t, sizeof(t)));
    } else {
        printf("Lease:             -\n");
    }
}

static int ctl_describe_request(ctl_t *ctl, const char *id)
{
    json_t *reqs, *q, *all;
    int rc;

    if ((rc = ctl_list_requests(ctl, NULL, &reqs)) != CTL_EXIT_OK) {
        return rc;
    }
    q = ctl_find_in(reqs, "requests", "request_id", id);
    if (q == NULL) {
        fprintf(stderr, "batonctl: describe: NOT_FOUND: no request '%s' in flight\n", id);
        json_decref(reqs);
        return CTL_EXIT_FAIL;
    }
    all = json_pack("{s:O, s:I}", "request", q, "now_unix_ms",
                    (json_int_t)ctl_now_ms(reqs));
    json_decref(reqs);
    if (all == NULL) {
        fprintf(stderr, "batonctl: out of memory\n");
        return CTL_EXIT_FAIL;
    }
    return ctl_finish(ctl, all, ctl_describe_request_text);
}

int ctl_cmd_describe(ctl_t *ctl, int n_args, char **args)
{
    if (strcmp(args[0], "node") == 0 || strcmp(args[0], "nodes") == 0 ||
        strcmp(args[0], "no") == 0) {
        return ctl_describe_node(ctl, args[1]);
    }
    if (strcmp(args[0], "request") == 0 || strcmp(args[0], "requests") == 0 ||
        strcmp(args[0], "req") == 0) {
        return ctl_describe_request(ctl, args[1]);
    }
    fprintf(stderr, "batonctl describe: unknown kind '%s': node or request\n", args[0]);
    return CTL_EXIT_USAGE;
}

/* ---- version ---- */

static void ctl_version_text(const ctl_t *ctl, const json_t *all)
{
    const json_t *router = json_object_get(all, "router");
    const json_t *nodes = json_object_get(all, "nodes");
    const json_t *n;
    uint64_t now = ctl_now_ms(router);
    char when[64];
    size_t i;

    printf("Client version:    %s\n", ctl_str(all, "client_version"));
    if (json_is_object(router)) {
        printf("Router version:    %s (model %s, up since %s)\n", ctl_str(router, "version"),
               ctl_str(router, "model"),
               ctl_when(now, (uint64_t)ctl_int(router, "started_unix_ms"), when,
                        sizeof(when)));
    } else {
        printf("Router version:    unknown (the router has no Admin.GetVersion)\n");
    }
    json_array_foreach(nodes, i, n) {
        const char *v = ctl_str(n, "version");

        printf("%-18s %s %s\n", i == 0 ? "Node versions:" : "", v[0] ? v : "unknown",
               ctl_str(n, "node_id"));
    }
}

int ctl_cmd_version(ctl_t *ctl, int n_args, char **args)
{
    Baton__V1__GetVersionRequest req = BATON__V1__GET_VERSION_REQUEST__INIT;
    json_t *router = NULL, *nodes = NULL, *list, *n, *all;
    bt_rpc_code_t code;
    size_t i;
    int rc;

    code = ctl_call(ctl, ADMIN "GetVersion", &req.base,
                    &baton__v1__get_version_response__descriptor, &router);
    /* an older router answers UNIMPLEMENTED: its nodes' versions still tell */
    if (code != BT_RPC_OK && code != BT_RPC_UNIMPLEMENTED) {
        printf("Client version:    %s\n", BT_VERSION);
        return ctl_exit_for(code);
    }
    if ((rc = ctl_list_nodes(ctl, 0, &nodes)) != CTL_EXIT_OK) {
        json_decref(router);
        return rc;
    }
    list = json_array();
    json_array_foreach(json_object_get(nodes, "nodes"), i, n) {
        json_array_append_new(list, json_pack("{s:s, s:s, s:s}", "node_id",
                                               ctl_str(n, "node_id"), "role",
                                               ctl_str(n, "role"), "version",
                                               ctl_str(n, "version")));
    }
    json_decref(nodes);
    all = json_pack("{s:s, s:o, s:o}", "client_version", BT_VERSION, "router",
                    router != NULL ? router : json_null(), "nodes", list);
    if (all == NULL) {
        fprintf(stderr, "batonctl: out of memory\n");
        return CTL_EXIT_FAIL;
    }
    return ctl_finish(ctl, all, ctl_version_text);
}
