/* batonctl: the operator's CLI over the router's baton.v1.Admin service
 * (DESIGN §1, §8). One command table (batonctl.c) of {name, args, doc,
 * handler}; each handler builds a request, makes one unary call through
 * ctl_call() and prints the answer as a table or, with --json, as one
 * JSON object (ctl_json.c turns any protobuf-c message into jansson). */
#ifndef BT_CTL_H
#define BT_CTL_H

#include "rpc/client.h"
#include "rpc/tls_cfg.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

/* Exit statuses: 0 success, 1 the call failed (or the answer says "no"),
 * 2 bad usage. */
enum { CTL_EXIT_OK = 0, CTL_EXIT_FAIL = 1, CTL_EXIT_USAGE = 2 };

/* Every option, global and per command, lands here (one bt_opts parse). */
typedef struct {
    const char *router;      /* gRPC target of the router */
    int64_t     timeout_ms;  /* deadline of the call */
    bool        json;        /* print the response as one JSON object */
    const char *node;        /* requests / cache-stats --node */
    const char *role;        /* placement / rebalance --role */
    bool        dry_run;     /* rebalance --dry-run */
    bool        kvstore;     /* flush-cache --kvstore */
    int64_t     limit;       /* requests --limit */
    bt_rpc_tls_cfg_t tls;    /* --tls-ca, --tls-cert, ..., --insecure */
    const char *api_key;     /* sent as "authorization: Bearer KEY" */
} ctl_cfg_t;

typedef struct ctl ctl_t;

struct ctl {
    ctl_cfg_t   cfg;
    const char *cmd;         /* the command's name, for messages */
    const char *what;        /* "cache statistics": for UNIMPLEMENTED */
};

/* Makes one unary call to the router and waits for it. On BT_RPC_OK
 * *resp_p is the response as a new JSON object (json_decref it); on any
 * other code the error line is already printed and *resp_p is untouched.
 * Returns the gRPC code (or BT_RPC_INTERNAL when the call could not be
 * started). */
bt_rpc_code_t ctl_call(ctl_t *ctl, const char *method,
                       const ProtobufCMessage *req,
                       const ProtobufCMessageDescriptor *resp_desc,
                       json_t **resp_p);

/* Any protobuf-c message as a JSON object: every field present (proto3
 * defaults included), field names as in the .proto, enums by name, 64-bit
 * integers as numbers, bytes as hex. NULL on out of memory. */
json_t *ctl_json_from_msg(const ProtobufCMessage *msg);

/* Prints `obj` compactly on stdout with a newline. */
int ctl_json_print(const json_t *obj);

/* Command handlers: `args` are the positional arguments (counts already
 * checked against the table). Return an exit status. */
typedef int (*ctl_cmd_cb)(ctl_t *ctl, int n_args, char **args);

int ctl_cmd_nodes(ctl_t *ctl, int n_args, char **args);
int ctl_cmd_drain(ctl_t *ctl, int n_args, char **args);
int ctl_cmd_undrain(ctl_t *ctl, int n_args, char **args);
int ctl_cmd_flush_cache(ctl_t *ctl, int n_args, char **args);
int ctl_cmd_requests(ctl_t *ctl, int n_args, char **args);
int ctl_cmd_cancel(ctl_t *ctl, int n_args, char **args);
int ctl_cmd_cache_stats(ctl_t *ctl, int n_args, char **args);
int ctl_cmd_placement(ctl_t *ctl, int n_args, char **args);
int ctl_cmd_rebalance(ctl_t *ctl, int n_args, char **args);
int ctl_cmd_transfer_health(ctl_t *ctl, int n_args, char **args);
int ctl_cmd_health(ctl_t *ctl, int n_args, char **args);

#endif
