/* batonctl: the operator's CLI (DESIGN §1). One table of commands
 * {name, args, doc, handler} (Redis style) and one option table; the
 * command may come anywhere among the options:
 *
 *   batonctl [-r TARGET] [-t 5s] [-o table|wide|json|yaml] [--tls-ca FILE
 *            [--tls-cert FILE --tls-key FILE]] COMMAND [ARGS]
 */
#include "ctl.h"

#include "base/opts.h"
#include "bt_config.h"

#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Which per-command options a command takes (bits of ctl_cmd_t.opts, in
 * the order of ctl_cmd_opts). */
enum {
    CO_NODE = 1, CO_ROLE = 2, CO_DRY_RUN = 4, CO_KVSTORE = 8, CO_LIMIT = 16,
    CO_WATCH = 32, CO_INTERVAL = 64, CO_WAIT = 128, CO_MODEL = 256,
};
#define CO_LIST (CO_WATCH | CO_INTERVAL)

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

static int ctl_cmd_completion(ctl_t *ctl, int n_args, char **args);

static const ctl_cmd_t ctl_cmds[] = {
    { "get", "nodes|requests|leases [NAME] [--role R] [--node NODE] [-w]", 1, 2,
      CO_NODE | CO_ROLE | CO_LIMIT | CO_LIST, "listing nodes and requests",
      "list nodes (id, role, state, KV blocks, load, age, heartbeat age), requests "
      "in flight, or the leases on decode nodes; NAME: only that one",
      ctl_cmd_get },
    { "describe", "node NAME | request ID", 2, 2, 0, "describing nodes and requests",
      "everything the router knows about one node (its requests, leases, KV "
      "transfers) or one request", ctl_cmd_describe },
    { "nodes", "[--role prefill|decode|kvstore] [-w]", 0, 0, CO_ROLE | CO_LIST,
      "listing nodes", "the same as `get nodes`", ctl_cmd_nodes },
    { "requests", "[--node NODE] [--limit N] [-w]", 0, 0, CO_NODE | CO_LIMIT | CO_LIST,
      "listing requests", "the same as `get requests`", ctl_cmd_requests },
    { "leases", "[DECODE_NODE] [-w]", 0, 1, CO_LIMIT | CO_LIST, "listing leases",
      "the same as `get leases`: requests holding KV blocks on a decode node",
      ctl_cmd_leases },
    { "version", "", 0, 0, 0, "reporting its version",
      "the versions of batonctl, the router and every node", ctl_cmd_version },
    { "drain", "NODE [--wait [--timeout DURATION]]", 1, 1, CO_WAIT | CO_INTERVAL,
      "draining nodes",
      "stop routing new requests to NODE; what it runs finishes. --wait: return "
      "once it holds no request (exit 4 when --timeout passes first)",
      ctl_cmd_drain },
    { "undrain", "NODE", 1, 1, 0, "undraining nodes",
      "route requests to NODE again", ctl_cmd_undrain },
    { "forget", "NODE", 1, 1, 0, "forgetting lost nodes",
      "remove a LOST node (one that stopped heartbeating) from the table",
      ctl_cmd_forget },
    { "role", "NODE prefill|decode|both [--wait [--timeout DURATION]]", 2, 2,
      CO_WAIT | CO_INTERVAL, "moving node roles",
      "move a node started with --role flexible to another role: it takes no "
      "new work of the role it leaves and finishes what it holds first. "
      "--wait: return once it serves the new role (exit 4 when --timeout "
      "passes first)", ctl_cmd_role },
    { "events", "[--limit N]", 0, 0, CO_LIMIT, "listing events",
      "the router's recent role moves (started, done, refused) with who asked "
      "and why: an operator, or the controller's figures", ctl_cmd_events },
    { "flush-cache", "[NODE] [--kvstore]", 0, 1, CO_KVSTORE, "flushing caches",
      "drop the prefix cache of NODE (default: every node)", ctl_cmd_flush_cache },
    { "cancel", "REQUEST_ID", 1, 1, 0, "cancelling requests",
      "cancel a request in flight", ctl_cmd_cancel },
    { "trace", "REQUEST_ID", 1, 1, 0, "tracing requests",
      "a request's waterfall: its timed events from admission (queued, pair "
      "chosen with the scores, reservation, prefill, first token, failovers, "
      "end), live or among the router's last 1024 finished",
      ctl_cmd_trace },
    { "cache-stats", "[--node NODE]", 0, 0, CO_NODE, "cache statistics",
      "prefix cache occupancy and hit rate per node and kvstore tier",
      ctl_cmd_cache_stats },
    { "placement", "[--model M] [--role prefill|decode]", 0, 1,
      CO_ROLE | CO_MODEL, "MoE expert placement",
      "the MoE expert placement plan in force per (model, role): version, "
      "devices, balancedness measured on the nodes and planned, experts moved",
      ctl_cmd_placement },
    { "rebalance", "[--model M] [--role prefill|decode] [--dry-run]", 0, 1,
      CO_ROLE | CO_DRY_RUN | CO_MODEL, "MoE rebalancing",
      "re-plan MoE expert placement now from the kvstore's expert statistics "
      "(every model and role unless named)", ctl_cmd_rebalance },
    { "transfer-health", "", 0, 0, 0, "KV transfer health",
      "KV transfer counters and latency per prefill -> decode pair",
      ctl_cmd_transfer_health },
    { "health", "", 0, 0, 0, "grpc.health.v1",
      "the router's gRPC health status (exit 0 only when SERVING)", ctl_cmd_health },
    { "completion", "bash", 1, 1, 0, "shell completion",
      "print a bash completion script: source <(batonctl completion bash)",
      ctl_cmd_completion },
};
#define CTL_N_CMDS (sizeof(ctl_cmds) / sizeof(ctl_cmds[0]))

/* Short flags mean one thing across Baton's programs: -m model and
 * -j threads in the daemons; here -r router, -o output (as kubectl),
 * -w watch, -t timeout. No -j (it was --json), no -n. */
#define O(_f) offsetof(ctl_cfg_t, _f)
static const bt_opt_t ctl_global_opts[] = {
    { "router", 'r', "BATON_ROUTER", "ipv4:127.0.0.1:50051",
      "gRPC target of the router: ipv4:HOST:PORT, dns:HOST:PORT, HOST:PORT, unix:PATH",
      BT_OPT_STRING, 0, 0, NULL, O(router) },
    /* no default in the table: unset means 5 s per call, and no limit on
     * drain --wait */
    { "timeout", 't', "BATON_CTL_TIMEOUT", NULL, "deadline of each call (unset: 5s); "
      "with drain --wait, of the whole wait (unset: none)",
      BT_OPT_DURATION, 1, 86400000, NULL, O(timeout_ms) },
    { "output", 'o', "BATON_CTL_OUTPUT", "table", "output format: table, wide "
      "(more columns), json (the answer, one line) or yaml",
      BT_OPT_ENUM, 0, 0, CTL_OUT_CHOICES, O(output) },
    { "json", 0, "BATON_CTL_JSON", "false", "the same as -o json",
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
    { "node", 0, "BATON_CTL_NODE", NULL, "only this node", BT_OPT_STRING, 0, 0,
      NULL, O(node) },
    { "role", 0, "BATON_CTL_ROLE", NULL, "prefill or decode (or kvstore for nodes)",
      BT_OPT_STRING, 0, 0, NULL, O(role) },
    { "dry-run", 0, "BATON_CTL_DRY_RUN", "false",
      "compute and print the plan without publishing it", BT_OPT_BOOL, 0, 0, NULL,
      O(dry_run) },
    { "kvstore", 0, "BATON_CTL_KVSTORE", "false", "flush the kvstore too",
      BT_OPT_BOOL, 0, 0, NULL, O(kvstore) },
    { "limit", 0, "BATON_CTL_LIMIT", "0", "at most this many requests (0: the "
      "router's default)", BT_OPT_INT, 0, 1000000, NULL, O(limit) },
    { "watch", 'w', "BATON_CTL_WATCH", "false", "list again every --interval until "
      "interrupted (Ctrl-C)", BT_OPT_BOOL, 0, 0, NULL, O(watch) },
    { "interval", 0, "BATON_CTL_INTERVAL", "2s", "how often --watch lists and "
      "drain --wait looks", BT_OPT_DURATION, 200, 3600000, NULL, O(interval_ms) },
    { "wait", 0, "BATON_CTL_WAIT", "false", "return once the node holds no request",
      BT_OPT_BOOL, 0, 0, NULL, O(wait) },
    { "model", 0, "BATON_CTL_MODEL", NULL, "only this model", BT_OPT_STRING, 0, 0,
      NULL, O(model) },
};
#undef O

static const char ctl_exit_doc[] =
    "Exit status: 0 success; 1 the cluster answered with an error or a no "
    "(NOT_FOUND, PERMISSION_DENIED, health not SERVING, ...); 2 bad usage; "
    "3 the router is not reachable (UNAVAILABLE, or no answer before the "
    "deadline); 4 drain --wait: the node still held requests when --timeout "
    "passed or the wait was interrupted.";

#define CTL_MAX_OPTS 32

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
    fprintf(out, "\n`batonctl COMMAND --help` describes a command.\n%s\n", ctl_exit_doc);
}

/* True when `arg` is an option (of any table) whose value is the next
 * word: every type but a bool, written without "=". */
static bool ctl_opt_takes_value(const bt_opt_t *t, size_t n, const char *arg)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (t[i].type == BT_OPT_BOOL) {
            continue;
        }
        if ((arg[0] == '-' && arg[1] == '-' && strcmp(arg + 2, t[i].name) == 0) ||
            (t[i].short_name != 0 && arg[0] == '-' && arg[1] == t[i].short_name &&
             arg[2] == '\0')) {
            return true;
        }
    }
    return false;
}

static bool ctl_takes_value(const char *arg)
{
    return ctl_opt_takes_value(ctl_global_opts, BT_OPTS_COUNT(ctl_global_opts), arg) ||
           ctl_opt_takes_value(ctl_cmd_opts, BT_OPTS_COUNT(ctl_cmd_opts), arg);
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

/* The words of the completion script, from the tables above. */
static int ctl_cmd_completion(ctl_t *ctl, int n_args, char **args)
{
    const char *cmds[CTL_N_CMDS + 1];
    const char *opts[64], *vals[64];
    char names[64][40];
    size_t i, n_o = 0, n_v = 0, k;

    if (strcmp(args[0], "bash") != 0) {
        return ctl_bad_usage("batonctl completion", "only bash is supported");
    }
    for (i = 0; i < CTL_N_CMDS; i++) {
        cmds[i] = ctl_cmds[i].name;
    }
    cmds[CTL_N_CMDS] = NULL;
    for (k = 0; k < 2; k++) {
        const bt_opt_t *t = k == 0 ? ctl_global_opts : ctl_cmd_opts;
        size_t n = k == 0 ? BT_OPTS_COUNT(ctl_global_opts) : BT_OPTS_COUNT(ctl_cmd_opts);

        for (i = 0; i < n && n_o < 62; i++) {
            snprintf(names[n_o], sizeof(names[n_o]), "--%s", t[i].name);
            opts[n_o] = names[n_o];
            if (t[i].type != BT_OPT_BOOL) {
                vals[n_v++] = names[n_o];
            }
            n_o++;
        }
    }
    opts[n_o++] = "--help";
    opts[n_o] = NULL;
    vals[n_v] = NULL;
    return ctl_completion_bash(stdout, &(ctl_words_t){ cmds, opts, vals }) == 0
               ? CTL_EXIT_OK : CTL_EXIT_FAIL;
}

int main(int argc, char **argv)
{
    bt_opt_t table[CTL_MAX_OPTS];
    char *args[64];
    char prog[64], usage[160], err[512];
    bt_opts_spec_t spec;
    const ctl_cmd_t *cmd = NULL;
    ctl_t ctl;
    int ci, n = 0, first, n_pos, i;
    size_t k, n_opts = 0;
    bt_status_t s;

    if (argc > (int)(sizeof(args) / sizeof(args[0])) - 1) {
        return ctl_bad_usage("batonctl", "too many arguments");
    }
    /* a reader that goes away (| head) shows as EPIPE on write */
    signal(SIGPIPE, SIG_IGN);
    memset(&ctl, 0, sizeof(ctl));
    ctl.cfg.timeout_ms = -1;
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
            printf("\n%s\n", ctl_exit_doc);
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
    if (strcmp(cmd->name, "completion") != 0 &&
        (bt_rpc_tls_cfg_check(&ctl.cfg.tls, false, err, sizeof(err)) != BT_OK ||
         bt_rpc_tls_cfg_plain_check(&ctl.cfg.tls, ctl.cfg.router, "router", err,
                                    sizeof(err)) != BT_OK)) {
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
    ctl.out = ctl.cfg.json ? CTL_OUT_JSON : (ctl_out_t)ctl.cfg.output;
    ctl.call_ms = ctl.cfg.timeout_ms > 0 ? ctl.cfg.timeout_ms : CTL_CALL_MS_DEFAULT;
    if (ctl.cfg.wait && ctl.call_ms > CTL_CALL_MS_DEFAULT) {
        /* --timeout bounds the whole wait; each call keeps a short deadline */
        ctl.call_ms = CTL_CALL_MS_DEFAULT;
    }
    ctl.cmd = cmd->name;
    ctl.what = cmd->what;
    return cmd->run(&ctl, n_pos, args + first);
}
