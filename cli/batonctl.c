/* batonctl: the operator's CLI (DESIGN §1). One table of commands
 * {name, args, doc, handler} (Redis style) and one option table; the
 * command may come anywhere among the options:
 *
 *   batonctl [--router TARGET] [--timeout 5s] [--json] [--tls-ca FILE
 *            [--tls-cert FILE --tls-key FILE]] COMMAND [ARGS]
 */
#include "ctl.h"

#include "base/opts.h"
#include "bt_config.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Which per-command options a command takes (bits of ctl_cmd_t.opts). */
enum { CO_NODE = 1, CO_ROLE = 2, CO_DRY_RUN = 4, CO_KVSTORE = 8, CO_LIMIT = 16 };

typedef struct {
    const char *name;
    const char *args;      /* usage of the positionals */
    int         min_args;
    int         max_args;
    unsigned    opts;      /* CO_* */
    const char *what;      /* for "the router does not support X yet" */
    const char *doc;
    ctl_cmd_cb  run;
} ctl_cmd_t;

static const ctl_cmd_t ctl_cmds[] = {
    { "nodes", "[--role prefill|decode|kvstore]", 0, 0, CO_ROLE, "listing nodes",
      "list registered nodes and kvstore replicas: id, role, state, free/total KV blocks, running sequences, queued prefill tokens, address",
      ctl_cmd_nodes },
    { "drain", "NODE", 1, 1, 0, "draining nodes",
      "stop routing new requests to NODE; what it runs finishes", ctl_cmd_drain },
    { "undrain", "NODE", 1, 1, 0, "undraining nodes",
      "route requests to NODE again", ctl_cmd_undrain },
    { "flush-cache", "[NODE] [--kvstore]", 0, 1, CO_KVSTORE, "flushing caches",
      "drop the prefix cache of NODE (default: every node)", ctl_cmd_flush_cache },
    { "requests", "[--node NODE] [--limit N]", 0, 0, CO_NODE | CO_LIMIT,
      "listing requests", "list requests in flight", ctl_cmd_requests },
    { "cancel", "REQUEST_ID", 1, 1, 0, "cancelling requests",
      "cancel a request in flight", ctl_cmd_cancel },
    { "cache-stats", "[--node NODE]", 0, 0, CO_NODE, "cache statistics",
      "prefix cache occupancy and hit rate per node and kvstore tier",
      ctl_cmd_cache_stats },
    { "placement", "MODEL [--role prefill|decode]", 1, 1, CO_ROLE,
      "MoE expert placement", "show the MoE expert placement plan of MODEL",
      ctl_cmd_placement },
    { "rebalance", "MODEL [--role prefill|decode] [--dry-run]", 1, 1,
      CO_ROLE | CO_DRY_RUN, "MoE rebalancing",
      "re-plan MoE expert placement from recent expert load", ctl_cmd_rebalance },
    { "transfer-health", "", 0, 0, 0, "KV transfer health",
      "KV transfer counters and latency per prefill -> decode pair",
      ctl_cmd_transfer_health },
    { "health", "", 0, 0, 0, "grpc.health.v1",
      "the router's gRPC health status (exit 0 only when SERVING)", ctl_cmd_health },
};
#define CTL_N_CMDS (sizeof(ctl_cmds) / sizeof(ctl_cmds[0]))

#define O(_f) offsetof(ctl_cfg_t, _f)
static const bt_opt_t ctl_global_opts[] = {
    { "router", 'r', "BATON_ROUTER", "ipv4:127.0.0.1:50051",
      "gRPC target of the router: ipv4:HOST:PORT, dns:HOST:PORT, HOST:PORT, unix:PATH",
      BT_OPT_STRING, 0, 0, NULL, O(router) },
    { "timeout", 't', "BATON_CTL_TIMEOUT", "5s", "deadline of the call",
      BT_OPT_DURATION, 1, 3600000, NULL, O(timeout_ms) },
    { "json", 'j', "BATON_CTL_JSON", "false", "print the response as one JSON object",
      BT_OPT_BOOL, 0, 0, NULL, O(json) },
    { "api-key", 0, "BATON_API_KEY", NULL, "an API key marked \"admin\" when the "
      "router has --api-keys (sent as a bearer token; never printed)",
      BT_OPT_STRING, 0, 0, NULL, O(api_key) },
    /* BATON_TLS_*: the same variables as the daemons', so batonctl run in
     * the router's environment uses the router's certificate */
    BT_RPC_TLS_OPTS_CLIENT(O(tls)),
};

/* Per-command options, in CO_* bit order. */
static const bt_opt_t ctl_cmd_opts[] = {
    { "node", 'n', "BATON_CTL_NODE", NULL, "only this node", BT_OPT_STRING, 0, 0,
      NULL, O(node) },
    { "role", 0, "BATON_CTL_ROLE", NULL, "prefill or decode", BT_OPT_STRING, 0, 0,
      NULL, O(role) },
    { "dry-run", 0, "BATON_CTL_DRY_RUN", "false",
      "compute and print the plan without publishing it", BT_OPT_BOOL, 0, 0, NULL,
      O(dry_run) },
    { "kvstore", 0, "BATON_CTL_KVSTORE", "false", "flush the kvstore too",
      BT_OPT_BOOL, 0, 0, NULL, O(kvstore) },
    { "limit", 0, "BATON_CTL_LIMIT", "0", "at most this many (0: the router's default)",
      BT_OPT_INT, 0, 1000000, NULL, O(limit) },
};
#undef O

#define CTL_MAX_OPTS 16

static void ctl_usage(FILE *out)
{
    bt_opts_spec_t spec = { "batonctl", "[OPTIONS] COMMAND [ARGS]",
                            "The operator's CLI for a Baton cluster: talks to the "
                            "router's baton.v1.Admin gRPC service.",
                            ctl_global_opts, BT_OPTS_COUNT(ctl_global_opts) };
    size_t i;

    bt_opts_print_help(&spec, out);
    fprintf(out, "\nCommands:\n");
    for (i = 0; i < CTL_N_CMDS; i++) {
        fprintf(out, "  %-16s %s\n", ctl_cmds[i].name, ctl_cmds[i].doc);
    }
    fprintf(out, "\n`batonctl COMMAND --help` describes a command. Exit status: "
                 "0 success, 1 the call failed, 2 bad usage.\n");
}

/* True when argv[i] is a global option whose value is the next word. */
static bool ctl_takes_value(const char *arg)
{
    return strcmp(arg, "--router") == 0 || strcmp(arg, "-r") == 0 ||
           strcmp(arg, "--timeout") == 0 || strcmp(arg, "-t") == 0 ||
           strcmp(arg, "--node") == 0 || strcmp(arg, "-n") == 0 ||
           strcmp(arg, "--role") == 0 || strcmp(arg, "--limit") == 0 ||
           strcmp(arg, "--tls-ca") == 0 || strcmp(arg, "--tls-cert") == 0 ||
           strcmp(arg, "--tls-key") == 0 || strcmp(arg, "--tls-server-name") == 0 ||
           strcmp(arg, "--api-key") == 0;
}

/* Index of the command word, or 0 when there is none. */
static int ctl_find_cmd(int argc, char **argv)
{
    int i;

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) {
            return i + 1 < argc ? i + 1 : 0;
        }
        if (argv[i][0] != '-' || argv[i][1] == '\0') {
            return i;
        }
        if (ctl_takes_value(argv[i])) {
            i++;
        }
    }
    return 0;
}

static int ctl_bad_usage(const char *where, const char *why)
{
    fprintf(stderr, "%s: %s\n", where, why);
    return CTL_EXIT_USAGE;
}

int main(int argc, char **argv)
{
    bt_opt_t table[CTL_MAX_OPTS];
    char *args[64];
    char prog[64], usage[128], err[512];
    bt_opts_spec_t spec;
    const ctl_cmd_t *cmd = NULL;
    ctl_t ctl;
    int ci, n = 0, first, n_pos, i;
    size_t k, n_opts = 0;
    bt_status_t s;

    if (argc > (int)(sizeof(args) / sizeof(args[0]))) {
        return ctl_bad_usage("batonctl", "too many arguments");
    }
    memset(&ctl, 0, sizeof(ctl));
    ci = ctl_find_cmd(argc, argv);
    if (ci > 0) {
        for (k = 0; k < CTL_N_CMDS; k++) {
            if (strcmp(argv[ci], ctl_cmds[k].name) == 0) {
                cmd = &ctl_cmds[k];
            }
        }
        if (cmd == NULL && strcmp(argv[ci], "help") == 0) {
            ctl_usage(stdout);
            return CTL_EXIT_OK;
        }
        if (cmd == NULL) {
            snprintf(err, sizeof(err), "unknown command '%s' (see --help)", argv[ci]);
            return ctl_bad_usage("batonctl", err);
        }
    }

    /* one table: the global options, then the command's own */
    for (k = 0; k < BT_OPTS_COUNT(ctl_global_opts); k++) {
        table[n_opts++] = ctl_global_opts[k];
    }
    for (k = 0; cmd != NULL && k < BT_OPTS_COUNT(ctl_cmd_opts); k++) {
        if (cmd->opts & (1u << k)) {
            table[n_opts++] = ctl_cmd_opts[k];
        }
    }
    /* the command word leaves argv; what remains is parsed once */
    for (i = 0; i < argc; i++) {
        if (i != ci || ci == 0) {
            args[n++] = argv[i];
        }
    }
    args[n] = NULL;
    snprintf(prog, sizeof(prog), "batonctl%s%s", cmd ? " " : "", cmd ? cmd->name : "");
    snprintf(usage, sizeof(usage), "[OPTIONS] %s", cmd ? cmd->args : "COMMAND [ARGS]");
    spec = (bt_opts_spec_t){ prog, usage, cmd ? cmd->doc : "", table, n_opts };
    s = bt_opts_parse(&spec, &ctl.cfg, n, args, &first, err, sizeof(err));
    if (s == BT_ERR_CANCELLED && first == -1) {
        if (cmd != NULL) {
            bt_opts_print_help(&spec, stdout);
        } else {
            ctl_usage(stdout);
        }
        return CTL_EXIT_OK;
    }
    if (s == BT_ERR_CANCELLED && first == -2) {
        printf("batonctl %s\n", BT_VERSION);
        return CTL_EXIT_OK;
    }
    if (s != BT_OK) {
        return ctl_bad_usage(prog, err);
    }
    if (cmd == NULL) {
        return ctl_bad_usage("batonctl", "missing command (see --help)");
    }
    if (bt_rpc_tls_cfg_check(&ctl.cfg.tls, false, err, sizeof(err)) != BT_OK ||
        bt_rpc_tls_cfg_plain_check(&ctl.cfg.tls, ctl.cfg.router, "router", err,
                                   sizeof(err)) != BT_OK) {
        return ctl_bad_usage(prog, err);
    }
    n_pos = n - first;
    if (n_pos < cmd->min_args || n_pos > cmd->max_args) {
        snprintf(err, sizeof(err), "wrong number of arguments; usage: %s %s",
                 prog, cmd->args);
        return ctl_bad_usage(prog, err);
    }
    for (i = first; i < n; i++) {
        if (args[i][0] == '\0') {
            return ctl_bad_usage(prog, "empty argument");
        }
    }
    ctl.cmd = cmd->name;
    ctl.what = cmd->what;
    return cmd->run(&ctl, n_pos, args + first);
}
