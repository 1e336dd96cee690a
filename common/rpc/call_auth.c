/* Admission of a server call by the cluster credentials (auth.h): the
 * token in the call's metadata and the roles in the peer certificate
 * against the method's roles, before the handler runs. */
#include "server_int.h"

#include "auth.h"
#include "base/clock.h"
#include "base/log.h"

#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <openssl/crypto.h>

#include <stdio.h>
#include <string.h>

void bt_rpc_server_set_auth(bt_rpc_server_t *srv, const bt_rpc_auth_t *auth,
                            bool cert_roles)
{
    srv->auth = auth;
    srv->cert_roles = cert_roles;
}

void bt_rpc_server_on_refusal(bt_rpc_server_t *srv, bt_rpc_refusal_cb cb,
                              void *arg)
{
    srv->refusal_cb = cb;
    srv->refusal_arg = arg;
}

bool bt_rpc_server_auth_on(const bt_rpc_server_t *srv)
{
    return srv->auth != NULL || srv->cert_roles;
}

/* Roles named by "baton://role/ROLE" values of property `name`. */
static unsigned bt_rpc_call_prop_roles(const grpc_auth_context *ctx,
                                       const char *name)
{
    const size_t plen = strlen(BT_RPC_AUTH_ROLE_URI);
    grpc_auth_property_iterator it =
        grpc_auth_context_find_properties_by_name(ctx, name);
    const grpc_auth_property *p;
    unsigned roles = 0;

    while ((p = grpc_auth_property_iterator_next(&it)) != NULL) {
        if (p->value_length > plen &&
            memcmp(p->value, BT_RPC_AUTH_ROLE_URI, plen) == 0) {
            roles |= bt_rpc_role_parse(p->value + plen, p->value_length - plen);
        }
    }
    return roles;
}

/* The roles the verified peer certificate grants (0: none or no mTLS). */
static unsigned bt_rpc_call_cert_roles(bt_rpc_call_t *call)
{
    grpc_auth_context *ctx = grpc_call_auth_context(call->call);
    unsigned roles = 0;

    if (ctx == NULL) {
        return 0;
    }
    if (grpc_auth_context_peer_is_authenticated(ctx)) {
        roles = bt_rpc_call_prop_roles(ctx, GRPC_PEER_URI_PROPERTY_NAME) |
                bt_rpc_call_prop_roles(ctx, GRPC_X509_SAN_PROPERTY_NAME);
    }
    grpc_auth_context_release(ctx);
    return roles;
}

/* The roles the token in the metadata grants; `present_p`: a token was
 * sent at all. The value is copied to the stack only, then wiped. */
static unsigned bt_rpc_call_token_roles(bt_rpc_call_t *call, bool *present_p)
{
    char token[260];
    unsigned roles = 0;

    *present_p = false;
    for (size_t i = 0; i < call->md.count; i++) {
        const grpc_metadata *m = &call->md.metadata[i];
        size_t len = GRPC_SLICE_LENGTH(m->value);

        if (grpc_slice_str_cmp(m->key, BT_RPC_AUTH_MD_KEY) != 0) {
            continue;
        }
        *present_p = true;
        if (len >= sizeof(token)) {
            break;   /* no token is this long: unknown */
        }
        memcpy(token, GRPC_SLICE_START_PTR(m->value), len);
        token[len] = '\0';
        roles = bt_rpc_auth_token_roles(call->srv->auth, token);
        OPENSSL_cleanse(token, len);
        break;
    }
    return roles;
}

/* Refusals are logged at most once a second (a flood must not flood the
 * log); the counters count every one. Never the token. */
static void bt_rpc_call_refuse(bt_rpc_call_t *call, bt_rpc_code_t code,
                               const char *text)
{
    static uint64_t last_ms;
    uint64_t now = bt_now_ms();
    char *peer = grpc_call_get_peer(call->call);

    if (code == BT_RPC_UNAUTHENTICATED) {
        call->srv->stats.refused_unauthenticated++;
    } else {
        call->srv->stats.refused_permission++;
    }
    if (call->srv->refusal_cb != NULL) {
        call->srv->refusal_cb(call->srv->refusal_arg, code);
    }
    if (last_ms == 0 || now - last_ms >= 1000) {
        last_ms = now;
        bt_warn("rpc call refused: peer %s: %s", peer != NULL ? peer : "?",
                text);
    }
    gpr_free(peer);
    bt_rpc_call_fail_code(call, code, text);
}

bool bt_rpc_call_admit(bt_rpc_call_t *call)
{
    bt_rpc_server_t *srv = call->srv;
    const char *path = call->method->path;
    unsigned need, granted;
    bool sent = false;
    char text[400], want[64], have[64];

    if (!bt_rpc_server_auth_on(srv)) {
        call->roles = BT_RPC_ROLES_ALL;   /* open control plane */
        return true;
    }
    granted = (srv->auth != NULL ? bt_rpc_call_token_roles(call, &sent) : 0) |
              (srv->cert_roles ? bt_rpc_call_cert_roles(call) : 0);
    call->roles = granted;
    need = bt_rpc_auth_method_roles(path);
    if (need == 0 || (granted & need) != 0) {
        return true;
    }
    if (granted == 0) {
        snprintf(text, sizeof(text), "%s needs a cluster credential: %s", path,
                 sent ? "the " BT_RPC_AUTH_MD_KEY " token is not one this "
                        "server accepts"
                      : "no " BT_RPC_AUTH_MD_KEY " metadata and no client "
                        "certificate with a " BT_RPC_AUTH_ROLE_URI " URI");
        bt_rpc_call_refuse(call, BT_RPC_UNAUTHENTICATED, text);
        return false;
    }
    snprintf(text, sizeof(text), "%s is for role %s; the credential grants "
             "%s", path, bt_rpc_roles_str(need, want, sizeof(want)),
             bt_rpc_roles_str(granted, have, sizeof(have)));
    bt_rpc_call_refuse(call, BT_RPC_PERMISSION_DENIED, text);
    return false;
}

bt_status_t bt_rpc_call_deny(bt_rpc_call_t *call, const char *text)
{
    if (call->srv == NULL) {
        return bt_rpc_call_fail_code(call, BT_RPC_PERMISSION_DENIED, text);
    }
    bt_rpc_call_refuse(call, BT_RPC_PERMISSION_DENIED, text);
    return BT_OK;
}

unsigned bt_rpc_call_roles(const bt_rpc_call_t *call)
{
    return call->roles;
}
