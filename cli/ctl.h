/* batonctl: the operator's CLI over the router's baton.v1.Admin service
 * (DESIGN §1, §8). One command table (batonctl.c) of {name, args, doc,
 * handler}; each handler builds a request, makes unary calls through
 * ctl_call() and prints the answer as a table (-o table|wide) or as the
 * response object itself (-o json|yaml; ctl_json.c turns any protobuf-c
 * message into jansson, ctl_yaml.c writes that tree as YAML). */
#ifndef BT_CTL_H
#define BT_CTL_H

#include "rpc/client.h"
#include "rpc/tls_cfg.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* Exit statuses (documented in --help and docs/operations.md). */
enum {
    CTL_EXIT_OK          = 0,  /* done */
    CTL_EXIT_FAIL        = 1,  /* the cluster said no (an error, NOT_FOUND, not SERVING) */
    CTL_EXIT_USAGE       = 2,  /* bad command line */
    CTL_EXIT_UNREACHABLE = 3,  /* no answer: UNAVAILABLE or the deadline passed */
    CTL_EXIT_TIMEOUT     = 4,  /* drain --wait: the node still held requests when
                                * --timeout passed or the wait was interrupted */
};

/* -o: how answers print. */
typedef enum { CTL_OUT_TABLE, CTL_OUT_WIDE, CTL_OUT_JSON, CTL_OUT_YAML } ctl_out_t;
#define CTL_OUT_CHOICES "table|wide|json|yaml"

/* Every option, global and per command, lands here (one bt_opts parse). */
typedef struct {
    const char *router;      /* gRPC target of the router */
    int64_t     timeout_ms;  /* -1: not given (5 s per call, drain --wait unbounded) */
    int         output;      /* ctl_out_t */
    bool        json;        /* --json: the same as -o json (kept for scripts) */
    bool        watch;       /* -w: list again every --interval */
    int64_t     interval_ms; /* --watch and drain --wait polling */
    bool        wait;        /* drain --wait */
    const char *node;        /* requests / cache-stats / leases --node */
    const char *role;        /* nodes / placement / rebalance --role */
    const char *model;       /* placement / rebalance --model */
    bool        dry_run;     /* rebalance --dry-run */
    bool        kvstore;     /* flush-cache --kvstore */
    int64_t     limit;       /* requests --limit */
    bt_rpc_tls_cfg_t tls;    /* --tls-ca, --tls-cert, ..., --insecure */
    const char *api_key;     /* sent as "authorization: Bearer KEY" */
} ctl_cfg_t;

typedef struct ctl ctl_t;

struct ctl {
    ctl_cfg_t   cfg;
    ctl_out_t   out;         /* cfg.output, or json with --json */
    int64_t     call_ms;     /* deadline of one call */
    const char *cmd;         /* the command's name, for messages */
    const char *what;        /* "cache statistics": for UNIMPLEMENTED */
};

#define CTL_CALL_MS_DEFAULT 5000

/* Makes one unary call to the router and waits for it (deadline
 * ctl->call_ms). On BT_RPC_OK *resp_p is the response as a new JSON object
 * (json_decref it); on any other code the error line is already printed
 * and *resp_p is untouched. Returns the gRPC code (or BT_RPC_INTERNAL when
 * the call could not be started). */
bt_rpc_code_t ctl_call(ctl_t *ctl, const char *method,
                       const ProtobufCMessage *req,
                       const ProtobufCMessageDescriptor *resp_desc,
                       json_t **resp_p);

/* The exit status for a failed call's code (1 or 3). */
int ctl_exit_for(bt_rpc_code_t code);

/* Any protobuf-c message as a JSON object: every field present (proto3
 * defaults included), field names as in the .proto, enums by name, 64-bit
 * integers as numbers, bytes as hex. NULL on out of memory. */
json_t *ctl_json_from_msg(const ProtobufCMessage *msg);

/* Prints `obj` compactly on stdout with a newline. */
int ctl_json_print(const json_t *obj);

/* Writes `v` as a YAML block document (no "---"): mappings and sequences
 * in block style, every string double-quoted with JSON's escapes (valid
 * YAML), numbers, booleans and null plain. Returns 0, or -1 when writing
 * failed. */
int ctl_yaml_write(FILE *out, const json_t *v);

/* ---- ctl_out.c: reading the JSON answers and printing them ---- */

const char *ctl_str(const json_t *obj, const char *key);
long long ctl_int(const json_t *obj, const char *key);
double ctl_real(const json_t *obj, const char *key);
/* The entry of array resp[list] whose `key` is `name` (borrowed from
 * resp), or NULL. */
json_t *ctl_find_in(const json_t *resp, const char *list, const char *key,
                    const char *name);
/* "NODE_STATE_DRAINING" -> "draining" (enum names without their prefix). */
const char *ctl_enum(const json_t *obj, const char *key, const char *prefix,
                     char *out, size_t size);
/* now - then as kubectl writes ages ("45s", "3m12s", "5h3m", "2d4h");
 * "-" when `then` is 0 (unknown). */
const char *ctl_age(uint64_t now_ms, uint64_t then_ms, char *out, size_t size);
/* A Unix time in ms as "2026-12-06T08:40:00Z" (UTC); "-" when 0. */
const char *ctl_time(uint64_t unix_ms, char *out, size_t size);
/* The router's clock from a list answer's now_unix_ms, else this host's. */
uint64_t ctl_now_ms(const json_t *resp);
/* -o json / yaml: prints `obj`. Returns an exit status. */
int ctl_emit(const ctl_t *ctl, const json_t *obj);
/* True when stdout is gone (EPIPE): the reader stopped; exit quietly. */
bool ctl_stdout_gone(void);

/* Ends a one-shot command: json/yaml print the response, table and wide
 * call `print`; frees `resp`. */
int ctl_finish(ctl_t *ctl, json_t *resp,
               void (*print)(const ctl_t *ctl, const json_t *resp));

/* ---- ctl_list.c ---- */

/* --role: prefill, decode (and kvstore where `kvstore_ok`); else a usage
 * line and CTL_EXIT_USAGE. */
int ctl_role_parse(ctl_t *ctl, bool kvstore_ok, int *role_p);
/* ListNodes (role 0: all) / ListRequests (node NULL: all): an exit status;
 * on CTL_EXIT_OK *resp_p is the answer (json_decref it). */
int ctl_list_nodes(ctl_t *ctl, int role, json_t **resp_p);
int ctl_list_requests(ctl_t *ctl, const char *node, json_t **resp_p);
/* ListNodes (all roles), then node `id` in it: an exit status; on
 * CTL_EXIT_OK *nodes_p is the answer (json_decref it) and *node_p its
 * entry, borrowed from *nodes_p, or NULL when the router has no `id`. */
int ctl_find_node(ctl_t *ctl, const char *id, json_t **nodes_p, json_t **node_p);

/* ---- ctl_get.c ---- */

/* {"leases": [...], "now_unix_ms"} from a ListRequests answer: one entry
 * per request holding blocks on a decode node (`node`, or any), by node. */
json_t *ctl_leases_from(const json_t *reqs, const char *node);
void ctl_print_leases(const ctl_t *ctl, const json_t *leases);

/* ---- ctl_watch.c ---- */

/* Set by SIGINT / SIGTERM while --watch or drain --wait runs. */
bool ctl_interrupted(void);
/* Installs the handlers (and ignores SIGPIPE: EPIPE is seen on write). */
void ctl_signals_install(void);
/* Sleeps up to `ms`, in steps, returning early (false) on an interrupt. */
bool ctl_sleep(int64_t ms);
/* Runs `list` once, or with --watch every --interval until interrupted
 * or stdout goes away; table output is headed by the time of each round. */
int ctl_watch(ctl_t *ctl, int (*list)(ctl_t *ctl, int n_args, char **args),
              int n_args, char **args);
/* drain --wait: polls until `node` holds no request (or has left), the
 * --timeout passes (CTL_EXIT_TIMEOUT) or the wait is interrupted. */
int ctl_drain_wait(ctl_t *ctl, const char *node);

/* Command handlers: `args` are the positional arguments (counts already
 * checked against the table). Return an exit status. */
typedef int (*ctl_cmd_cb)(ctl_t *ctl, int n_args, char **args);

int ctl_cmd_get(ctl_t *ctl, int n_args, char **args);
int ctl_cmd_describe(ctl_t *ctl, int n_args, char **args);
int ctl_cmd_nodes(ctl_t *ctl, int n_args, char **args);
int ctl_cmd_requests(ctl_t *ctl, int n_args, char **args);
int ctl_cmd_leases(ctl_t *ctl, int n_args, char **args);
int ctl_cmd_version(ctl_t *ctl, int n_args, char **args);
int ctl_cmd_drain(ctl_t *ctl, int n_args, char **args);
int ctl_cmd_undrain(ctl_t *ctl, int n_args, char **args);
int ctl_cmd_forget(ctl_t *ctl, int n_args, char **args);
int ctl_cmd_flush_cache(ctl_t *ctl, int n_args, char **args);
int ctl_cmd_cancel(ctl_t *ctl, int n_args, char **args);
int ctl_cmd_trace(ctl_t *ctl, int n_args, char **args);   /* ctl_trace.c */
int ctl_cmd_cache_stats(ctl_t *ctl, int n_args, char **args);
int ctl_cmd_placement(ctl_t *ctl, int n_args, char **args);
int ctl_cmd_rebalance(ctl_t *ctl, int n_args, char **args);
int ctl_cmd_transfer_health(ctl_t *ctl, int n_args, char **args);
int ctl_cmd_health(ctl_t *ctl, int n_args, char **args);
int ctl_cmd_role(ctl_t *ctl, int n_args, char **args);     /* ctl_roles.c */
int ctl_cmd_events(ctl_t *ctl, int n_args, char **args);   /* ctl_roles.c */

/* `batonctl completion bash`: the script is generated from the command
 * and option tables (batonctl.c) so it cannot drift from them. */
typedef struct {
    const char *const *cmds;     /* NULL-terminated */
    const char *const *opts;     /* "--router", ...; NULL-terminated */
    const char *const *value_opts; /* those that take a separate value */
} ctl_words_t;
int ctl_completion_bash(FILE *out, const ctl_words_t *words);

#endif
