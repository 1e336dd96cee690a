/* TLS flags of a process: the same option names, checks and policy in
 * every binary (docs/internals/rpc.md, "TLS flags").
 *
 * A binary embeds one bt_rpc_tls_cfg_t in its option struct and puts
 * BT_RPC_TLS_OPTS_DAEMON(offset) (router, nodes: they serve and call) or
 * BT_RPC_TLS_OPTS_CLIENT(offset) (batonctl: it only calls) in its bt_opt_t
 * table. After bt_opts_parse, bt_rpc_tls_cfg_check() validates the
 * combination and the files and fills `server` and `client`;
 * bt_rpc_tls_cfg_plain_check() applies the "plaintext only when asked"
 * rule to each address the process listens on or calls.
 *
 * Policy: TLS is on as soon as one --tls-* option is given, for the
 * listener and every outgoing channel of the process. Without TLS,
 * plaintext gRPC is allowed on loopback and unix addresses (today's
 * default, `make up`); any other address needs --insecure. --insecure
 * with a --tls-* option is a contradiction and refused. */
#ifndef BT_RPC_TLS_CFG_H
#define BT_RPC_TLS_CFG_H

#include "base/opts.h"
#include "base/status.h"
#include "auth.h"
#include "rpc.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct {
    /* from the options (borrowed from argv / environ) */
    const char  *cert_file;         /* --tls-cert: own certificate chain */
    const char  *key_file;          /* --tls-key: its private key */
    const char  *ca_file;           /* --tls-ca: CA that peers chain to */
    const char  *client_cert_file;  /* --tls-client-cert (daemons) */
    const char  *client_key_file;   /* --tls-client-key (daemons) */
    const char  *server_name;       /* --tls-server-name */
    bool         insecure;          /* --insecure */
    const char  *cluster_token_file; /* --cluster-token-file (daemons) */
    /* filled by bt_rpc_tls_cfg_check */
    bool         enabled;
    bt_rpc_tls_t server;            /* for bt_rpc_server_listen */
    bt_rpc_tls_t client;            /* for bt_rpc_channel_create */
    /* loaded by bt_daemon_tls_check from cluster_token_file (auth.h);
     * bt_daemon_cleanup frees it */
    bt_rpc_auth_t *auth;
} bt_rpc_tls_cfg_t;

#define BT_RPC_TLS_OFF_(_off, _f) ((_off) + offsetof(bt_rpc_tls_cfg_t, _f))

/* Options of a daemon that serves gRPC and calls other daemons. */
#define BT_RPC_TLS_OPTS_DAEMON(_off)                                          \
    { "tls-cert", 0, NULL, NULL, "PEM certificate chain of this daemon: turns "\
      "on TLS for its gRPC listener and its outgoing calls", BT_OPT_STRING,    \
      0, 0, NULL, BT_RPC_TLS_OFF_(_off, cert_file) },                          \
    { "tls-key", 0, NULL, NULL, "PEM private key of --tls-cert",               \
      BT_OPT_STRING, 0, 0, NULL, BT_RPC_TLS_OFF_(_off, key_file) },            \
    { "tls-ca", 0, NULL, NULL, "PEM CA bundle peers must chain to: the "       \
      "listener then requires client certificates (mTLS) and outgoing calls "  \
      "verify servers with it (unset: no client certificates, system roots)",  \
      BT_OPT_STRING, 0, 0, NULL, BT_RPC_TLS_OFF_(_off, ca_file) },             \
    { "tls-client-cert", 0, NULL, NULL, "certificate presented on outgoing "   \
      "calls (unset: --tls-cert)", BT_OPT_STRING, 0, 0, NULL,                  \
      BT_RPC_TLS_OFF_(_off, client_cert_file) },                               \
    { "tls-client-key", 0, NULL, NULL, "private key of --tls-client-cert "     \
      "(unset: --tls-key)", BT_OPT_STRING, 0, 0, NULL,                         \
      BT_RPC_TLS_OFF_(_off, client_key_file) },                                \
    { "tls-server-name", 0, NULL, NULL, "name checked against the servers' "   \
      "certificates instead of the host of their address", BT_OPT_STRING, 0,   \
      0, NULL, BT_RPC_TLS_OFF_(_off, server_name) },                           \
    { "insecure", 0, NULL, "false", "allow plaintext gRPC on addresses that "  \
      "are not loopback (without it they need the --tls-* options)",           \
      BT_OPT_BOOL, 0, 0, NULL, BT_RPC_TLS_OFF_(_off, insecure) },             \
    { "cluster-token-file", 0, NULL, NULL, "file of cluster tokens: the one "  \
      "this daemon sends on its calls to other daemons and those it admits "   \
      "(docs/security.md); with mTLS, certificate roles count too",           \
      BT_OPT_STRING, 0, 0, NULL, BT_RPC_TLS_OFF_(_off, cluster_token_file) }

/* Options of a client only (batonctl). */
#define BT_RPC_TLS_OPTS_CLIENT(_off)                                          \
    { "tls-ca", 0, NULL, NULL, "PEM CA bundle the server must chain to: "      \
      "turns on TLS (unset with --tls-cert: the system roots)", BT_OPT_STRING, \
      0, 0, NULL, BT_RPC_TLS_OFF_(_off, ca_file) },                            \
    { "tls-cert", 0, NULL, NULL, "PEM client certificate to present (mTLS)",   \
      BT_OPT_STRING, 0, 0, NULL, BT_RPC_TLS_OFF_(_off, cert_file) },           \
    { "tls-key", 0, NULL, NULL, "PEM private key of --tls-cert",               \
      BT_OPT_STRING, 0, 0, NULL, BT_RPC_TLS_OFF_(_off, key_file) },            \
    { "tls-server-name", 0, NULL, NULL, "name checked against the server's "   \
      "certificate instead of the host of the target", BT_OPT_STRING, 0, 0,    \
      NULL, BT_RPC_TLS_OFF_(_off, server_name) },                              \
    { "insecure", 0, NULL, "false", "allow plaintext gRPC to a target that is "\
      "not loopback", BT_OPT_BOOL, 0, 0, NULL, BT_RPC_TLS_OFF_(_off, insecure) }

#define BT_RPC_TLS_N_OPTS_DAEMON 8
#define BT_RPC_TLS_N_OPTS_CLIENT 5

/* Validates what the options say and fills enabled / server / client.
 * `serves`: the process has a gRPC listener (it then needs --tls-cert and
 * --tls-key once TLS is on). Every file named must be a readable PEM file
 * of the right kind (certificate, private key). On error returns
 * BT_ERR_INVALID_ARG with one line naming the option in `err` (file names
 * only, never contents); `cfg` is then left with enabled false. */
bt_status_t bt_rpc_tls_cfg_check(bt_rpc_tls_cfg_t *cfg, bool serves,
                                 char *err, size_t err_size);

/* The credentials to pass to bt_rpc_server_listen / bt_rpc_channel_create:
 * NULL (plaintext) when TLS is off. */
const bt_rpc_tls_t *bt_rpc_tls_cfg_server(const bt_rpc_tls_cfg_t *cfg);
const bt_rpc_tls_t *bt_rpc_tls_cfg_client(const bt_rpc_tls_cfg_t *cfg);

/* "Plaintext only when asked" for one address (`flag` names the option it
 * came from, for the message): BT_OK when TLS is on, the address is
 * loopback or unix, or --insecure was given; else BT_ERR_PERMISSION with
 * one line in `err`. Callers log the warning for the --insecure case. */
bt_status_t bt_rpc_tls_cfg_plain_check(const bt_rpc_tls_cfg_t *cfg,
                                       const char *addr, const char *flag,
                                       char *err, size_t err_size);

/* True for addresses only this machine can reach: unix sockets,
 * 127.0.0.0/8, ::1, "localhost". Takes a bare host ("127.0.0.1", "::1"),
 * host:port, [v6]:port, or a gRPC target (ipv4:, ipv6:, dns:[//auth/],
 * unix:, unix-abstract:). "0.0.0.0" and "::" are not loopback. */
bool bt_rpc_addr_is_loopback(const char *addr);

#endif
