/* get nodes|requests|leases [NAME] and the old `nodes` / `requests`
 * spellings: list, print as -o asks, again every --interval with -w. */
#include "ctl.h"

#include "admin.pb-c.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ADMIN "/baton.v1.Admin/"

/* Keeps only `name` in resp[list] (get nodes NAME); false when absent. */
static bool ctl_keep_only(json_t *resp, const char *list, const char *id_key,
                          const char *name)
{
    json_t *one = ctl_find_in(resp, list, id_key, name);
    json_t *arr = json_array();

    if (one == NULL || arr == NULL || json_array_append(arr, one) != 0) {
        json_decref(arr);
        return false;
    }
    return json_object_set_new(resp, list, arr) == 0;
}

static int ctl_not_found(const ctl_t *ctl, const char *kind, const char *name)
{
    fprintf(stderr, "batonctl: %s: NOT_FOUND: no %s '%s'\n", ctl->cmd, kind, name);
    return CTL_EXIT_FAIL;
}

/* ---- nodes ---- */

/* How many requests in flight name `id` as their prefill or decode node. */
static long ctl_node_requests(const json_t *reqs, const char *id)
{
    const json_t *q;
    size_t i;
    long n = 0;

    json_array_foreach(json_object_get(reqs, "requests"), i, q) {
        n += strcmp(ctl_str(q, "prefill_node"), id) == 0 ||
             strcmp(ctl_str(q, "decode_node"), id) == 0;
    }
    return n;
}

static void ctl_print_nodes(const ctl_t *ctl, const json_t *resp, const json_t *reqs)
{
    const json_t *nodes = json_object_get(resp, "nodes");
    const json_t *n;
    uint64_t now = ctl_now_ms(resp);
    bool wide = ctl->out == CTL_OUT_WIDE;
    size_t i;
    int w = 16;

    /* the id column fits the longest id (pod names run long) */
    json_array_foreach(nodes, i, n) {
        size_t len = strlen(ctl_str(n, "node_id"));

        if (len > (size_t)w) {
            w = len > 64 ? 64 : (int)len;
        }
    }
    printf("%-*s %-8s %-9s %15s %8s %14s", w, "ID", "ROLE", "STATE", "FREE/TOTAL",
           "RUNNING", "QUEUED_TOKENS");
    if (wide) {
        printf(" %8s", "REQUESTS");
    }
    printf(" %8s %9s", "AGE", "HEARTBEAT");
    if (wide) {
        printf(" %-10s %-16s %-18s", "VERSION", "MODEL", "NUMERICS");
    }
    if (wide) {
        printf("  %-26s %s\n", "ADDRESS", "HTTP");   /* HTTP: where /metrics is */
    } else {
        printf("  %s\n", "ADDRESS");
    }
    json_array_foreach(nodes, i, n) {
        char role[16], state[16], blocks[32], age[24], hb[24];
        const char *version = ctl_str(n, "version");

        snprintf(blocks, sizeof(blocks), "%lld/%lld", ctl_int(n, "free_blocks"),
                 ctl_int(n, "total_blocks"));
        printf("%-*s %-8s %-9s %15s %8lld %14lld", w, ctl_str(n, "node_id"),
               ctl_enum(n, "role", "NODE_ROLE_", role, sizeof(role)),
               ctl_enum(n, "state", "NODE_STATE_", state, sizeof(state)), blocks,
               ctl_int(n, "running_sequences"), ctl_int(n, "queued_prefill_tokens"));
        if (wide) {
            printf(" %8ld", ctl_node_requests(reqs, ctl_str(n, "node_id")));
        }
        printf(" %8s %9s",
               ctl_age(now, (uint64_t)ctl_int(n, "registered_unix_ms"), age, sizeof(age)),
               ctl_age(now, (uint64_t)ctl_int(n, "last_heartbeat_unix_ms"), hb,
                       sizeof(hb)));
        if (wide) {
            const char *num = ctl_str(n, "numerics");

            printf(" %-10s %-16s %-18s", version[0] ? version : "-",
                   ctl_str(n, "model"), num[0] ? num : "-");
        }
        if (wide) {
            const char *http = ctl_str(n, "http_address");

            printf("  %-26s %s\n", ctl_str(n, "grpc_address"), http[0] ? http : "-");
        } else {
            printf("  %s\n", ctl_str(n, "grpc_address"));
        }
    }
}

static int ctl_get_nodes(ctl_t *ctl, int n_args, char **args)
{
    json_t *resp, *reqs = NULL;
    int role = 0;
    int rc = ctl_role_parse(ctl, true, &role);

    if (rc != CTL_EXIT_OK) {
        return rc;
    }
    if ((rc = ctl_list_nodes(ctl, role, &resp)) != CTL_EXIT_OK) {
        return rc;
    }
    if (n_args > 0 && !ctl_keep_only(resp, "nodes", "node_id", args[0])) {
        json_decref(resp);
        return ctl_not_found(ctl, "node", args[0]);
    }
    if (ctl->out == CTL_OUT_JSON || ctl->out == CTL_OUT_YAML) {
        rc = ctl_emit(ctl, resp);
    } else {
        /* wide counts each node's requests: one more call */
        if (ctl->out == CTL_OUT_WIDE &&
            (rc = ctl_list_requests(ctl, NULL, &reqs)) != CTL_EXIT_OK) {
            json_decref(resp);
            return rc;
        }
        ctl_print_nodes(ctl, resp, reqs);
        ctl_stdout_gone();
    }
    json_decref(reqs);
    json_decref(resp);
    return rc;
}

/* ---- requests ---- */

static void ctl_print_requests(const ctl_t *ctl, const json_t *resp)
{
    const json_t *reqs = json_object_get(resp, "requests");
    const json_t *q;
    uint64_t now = ctl_now_ms(resp);
    bool wide = ctl->out == CTL_OUT_WIDE;
    size_t i;

    printf("%-36s %-10s %-20s %-20s %-20s %7s %10s %8s", "ID", "PHASE", "MODEL",
           "PREFILL", "DECODE", "PROMPT", "GENERATED", "AGE");
    if (wide) {
        printf(" %-16s %-20s %12s %8s", "TENANT", "STARTED", "LEASE_BLOCKS",
               "EXPIRES");
    }
    printf("\n");
    json_array_foreach(reqs, i, q) {
        char age[24], started[32], exp[24];
        uint64_t expiry = (uint64_t)ctl_int(q, "lease_expiry_unix_ms");
        const char *tenant = ctl_str(q, "tenant");

        printf("%-36s %-10s %-20s %-20s %-20s %7lld %10lld %8s",
               ctl_str(q, "request_id"), ctl_str(q, "phase"), ctl_str(q, "model"),
               ctl_str(q, "prefill_node"), ctl_str(q, "decode_node"),
               ctl_int(q, "prompt_tokens"), ctl_int(q, "completion_tokens"),
               ctl_age(now, (uint64_t)ctl_int(q, "started_unix_ms"), age, sizeof(age)));
        if (wide) {
            /* the lease's time left reads as an age from its end */
            printf(" %-16s %-20s %12lld %8s", tenant[0] ? tenant : "-",
                   ctl_time((uint64_t)ctl_int(q, "started_unix_ms"), started,
                            sizeof(started)),
                   ctl_int(q, "lease_blocks"),
                   expiry == 0 ? "-" : expiry <= now ? "expired"
                   : ctl_age(expiry, now, exp, sizeof(exp)));
        }
        printf("\n");
    }
}

static int ctl_get_requests(ctl_t *ctl, int n_args, char **args)
{
    json_t *resp;
    int rc = ctl_list_requests(ctl, ctl->cfg.node, &resp);

    if (rc != CTL_EXIT_OK) {
        return rc;
    }
    if (n_args > 0 && !ctl_keep_only(resp, "requests", "request_id", args[0])) {
        json_decref(resp);
        return ctl_not_found(ctl, "request", args[0]);
    }
    return ctl_finish(ctl, resp, ctl_print_requests);
}

/* ---- leases: the requests holding KV blocks on a decode node ---- */

/* {"leases": [...], "now_unix_ms": N} from a ListRequests answer: one
 * entry per request with a decode node, ordered by node. */
json_t *ctl_leases_from(const json_t *reqs, const char *node)
{
    json_t *out = json_object(), *list = json_array();
    const json_t *q;
    size_t i, k;

    if (out == NULL || list == NULL ||
        json_object_set_new(out, "leases", list) != 0) {
        json_decref(out);
        return NULL;
    }
    json_array_foreach(json_object_get(reqs, "requests"), i, q) {
        const char *d = ctl_str(q, "decode_node");
        json_t *l;

        if (d[0] == '\0' || (node != NULL && node[0] && strcmp(node, d) != 0)) {
            continue;
        }
        l = json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:I}", "decode_node", d,
                      "request_id", ctl_str(q, "request_id"), "phase",
                      ctl_str(q, "phase"), "lease_id",
                      (json_int_t)ctl_int(q, "lease_id"), "lease_blocks",
                      (json_int_t)ctl_int(q, "lease_blocks"), "lease_expiry_unix_ms",
                      (json_int_t)ctl_int(q, "lease_expiry_unix_ms"),
                      "started_unix_ms", (json_int_t)ctl_int(q, "started_unix_ms"));
        /* insertion sort by decode node: lists are short */
        for (k = json_array_size(list); k > 0; k--) {
            if (strcmp(ctl_str(json_array_get(list, k - 1), "decode_node"), d) <= 0) {
                break;
            }
        }
        if (l == NULL || json_array_insert_new(list, k, l) != 0) {
            json_decref(out);
            return NULL;
        }
    }
    json_object_set_new(out, "now_unix_ms", json_integer((json_int_t)ctl_now_ms(reqs)));
    return out;
}

void ctl_print_leases(const ctl_t *ctl, const json_t *leases)
{
    const json_t *l;
    uint64_t now = ctl_now_ms(leases);
    bool wide = ctl->out == CTL_OUT_WIDE;
    size_t i;

    printf("%-20s %-36s %-10s %8s %8s %8s", "DECODE", "REQUEST", "PHASE", "BLOCKS",
           "EXPIRES", "AGE");
    if (wide) {
        printf(" %20s", "LEASE_ID");
    }
    printf("\n");
    json_array_foreach(json_object_get(leases, "leases"), i, l) {
        char blocks[24], exp[24], age[24];
        uint64_t expiry = (uint64_t)ctl_int(l, "lease_expiry_unix_ms");

        /* 0 blocks: the router does not report reservations (yet) */
        snprintf(blocks, sizeof(blocks), "%lld", ctl_int(l, "lease_blocks"));
        printf("%-20s %-36s %-10s %8s %8s %8s", ctl_str(l, "decode_node"),
               ctl_str(l, "request_id"), ctl_str(l, "phase"),
               ctl_int(l, "lease_blocks") > 0 ? blocks : "-",
               expiry == 0 ? "-" : expiry <= now ? "expired"
               : ctl_age(expiry, now, exp, sizeof(exp)),
               ctl_age(now, (uint64_t)ctl_int(l, "started_unix_ms"), age, sizeof(age)));
        if (wide) {
            printf(" %20lld", ctl_int(l, "lease_id"));
        }
        printf("\n");
    }
}

static int ctl_get_leases(ctl_t *ctl, int n_args, char **args)
{
    json_t *resp, *leases;
    int rc = ctl_list_requests(ctl, n_args > 0 ? args[0] : ctl->cfg.node, &resp);

    if (rc != CTL_EXIT_OK) {
        return rc;
    }
    leases = ctl_leases_from(resp, n_args > 0 ? args[0] : ctl->cfg.node);
    json_decref(resp);
    if (leases == NULL) {
        fprintf(stderr, "batonctl: out of memory\n");
        return CTL_EXIT_FAIL;
    }
    return ctl_finish(ctl, leases, ctl_print_leases);
}

/* ---- the commands ---- */

typedef struct {
    const char *names[4];    /* what `get` accepts: plural, singular, short */
    int (*list)(ctl_t *ctl, int n_args, char **args);
} ctl_kind_t;

static const ctl_kind_t ctl_kinds[] = {
    { { "nodes", "node", "no", NULL }, ctl_get_nodes },
    { { "requests", "request", "req", NULL }, ctl_get_requests },
    { { "leases", "lease", NULL, NULL }, ctl_get_leases },
};

int ctl_cmd_get(ctl_t *ctl, int n_args, char **args)
{
    size_t k, j;

    for (k = 0; k < sizeof(ctl_kinds) / sizeof(ctl_kinds[0]); k++) {
        for (j = 0; ctl_kinds[k].names[j] != NULL; j++) {
            if (strcmp(args[0], ctl_kinds[k].names[j]) == 0) {
                return ctl_watch(ctl, ctl_kinds[k].list, n_args - 1, args + 1);
            }
        }
    }
    fprintf(stderr, "batonctl get: unknown kind '%s': nodes, requests or leases\n",
            args[0]);
    return CTL_EXIT_USAGE;
}

int ctl_cmd_nodes(ctl_t *ctl, int n_args, char **args)
{
    return ctl_watch(ctl, ctl_get_nodes, n_args, args);
}

int ctl_cmd_requests(ctl_t *ctl, int n_args, char **args)
{
    return ctl_watch(ctl, ctl_get_requests, n_args, args);
}

int ctl_cmd_leases(ctl_t *ctl, int n_args, char **args)
{
    return ctl_watch(ctl, ctl_get_leases, n_args, args);
}
