/* Cluster credentials of the control plane (docs/security.md): which
 * daemon may call which internal method, proven by a cluster token sent as
 * call metadata or by a role in the peer's mTLS certificate.
 *
 * Roles: router, prefill, decode, kvstore. A token file (--cluster-token-
 * file, BATON_CLUSTER_TOKEN_FILE) holds, one entry a line ('#' comments):
 *
 *   self   ROLE[,ROLE...]  TOKEN          the token this daemon sends
 *   accept ROLE[,ROLE...]  sha256:HEX     a token it admits, by its hash,
 *                                         and the roles that token grants
 *   accept ROLE[,ROLE...]  TOKEN          the same, the token in clear
 *
 * or a single bare TOKEN: one shared token that every daemon sends and
 * that grants every role. The `self` token is admitted too, with its
 * roles. A token is 16 to 256 printable ASCII bytes without spaces. Only
 * SHA-256 digests are kept for comparison (constant time, every entry
 * compared); the clear token is kept for sending only and never logged.
 *
 * Certificates: a peer certificate carries roles as URI SANs
 * "baton://role/ROLE" (checked when the listener requires client
 * certificates). A call's granted roles are the union of both. */
#ifndef BT_RPC_AUTH_H
#define BT_RPC_AUTH_H

#include "base/status.h"

#include <stdbool.h>
#include <stddef.h>

typedef enum {
    BT_RPC_ROLE_ROUTER  = 1u << 0,
    BT_RPC_ROLE_PREFILL = 1u << 1,
    BT_RPC_ROLE_DECODE  = 1u << 2,
    BT_RPC_ROLE_KVSTORE = 1u << 3,
} bt_rpc_role_t;

#define BT_RPC_ROLES_ALL 0xfu

/* The metadata key the token travels in. */
#define BT_RPC_AUTH_MD_KEY "x-baton-cluster-token"

/* The URI SAN prefix of a role in a certificate. */
#define BT_RPC_AUTH_ROLE_URI "baton://role/"

typedef struct bt_rpc_auth bt_rpc_auth_t;

/* Loads a token file. Errors name the file and the line, never a token:
 * BT_ERR_INVALID_ARG with one line in `err`. The file must not be
 * readable by others than its owner's group (mode & 007 == 0). */
bt_status_t bt_rpc_auth_load(const char *path, bt_rpc_auth_t **auth_p,
                             char *err, size_t err_size);
/* The file BATON_CLUSTER_TOKEN_FILE names (tools and test clients that
 * call nodes): *auth_p NULL and BT_OK when it is unset. */
bt_status_t bt_rpc_auth_load_env(bt_rpc_auth_t **auth_p, char *err,
                                 size_t err_size);
/* Wipes the tokens and frees. NULL-safe. */
void bt_rpc_auth_destroy(bt_rpc_auth_t *auth);

/* The token this daemon sends (borrowed), NULL when it has none. */
const char *bt_rpc_auth_token(const bt_rpc_auth_t *auth);
/* The roles of its own token. */
unsigned bt_rpc_auth_self_roles(const bt_rpc_auth_t *auth);
/* The roles a presented token grants: 0 when it matches no entry. Takes
 * the same time whichever entry matches. */
unsigned bt_rpc_auth_token_roles(const bt_rpc_auth_t *auth, const char *token);

/* "router", "prefill", ...: the set as a comma list in `out` ("none"). */
const char *bt_rpc_roles_str(unsigned roles, char *out, size_t size);
/* Parses one role name; 0 when unknown. */
unsigned bt_rpc_role_parse(const char *name, size_t len);

/* The roles that may call `path` ("/baton.v1.Decode/DecodeStream"): 0
 * for methods outside the control plane (health, Generate, Admin: they
 * have their own authentication or none). */
unsigned bt_rpc_auth_method_roles(const char *path);

#endif
