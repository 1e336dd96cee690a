/* The option checks every daemon runs before its log starts (level, TLS)
 * and the plaintext warning after it. */
#include "daemon.h"

#include "registrar/resolve.h"
#include "rpc/addr.h"

#include <stdio.h>

static bt_status_t bt_daemon_router_plain_ok(const char *one, void *arg,
                                             char *err, size_t err_size)
{
    return bt_rpc_tls_cfg_plain_check(arg, one, "router", err, err_size);
}

static bt_status_t bt_daemon_router_loopback(const char *one, void *arg,
                                             char *err, size_t err_size)
{
    (void)arg;
    (void)err;
    (void)err_size;
    return bt_rpc_addr_is_loopback(one) ? BT_OK : BT_ERR_INVALID_ARG;
}

bool bt_daemon_level_parse(const char *prog, const char *s,
                           bt_log_level_t *level_p)
{
    if (!bt_log_level_parse(s, level_p)) {
        fprintf(stderr, "%s: invalid value '%s' for --log-level\n", prog, s);
        return false;
    }
    return true;
}

bool bt_daemon_tls_check(const char *prog, bt_rpc_tls_cfg_t *tls,
                         const char *listen, const char *router)
{
    char err[512];

    if (router != NULL && router[0] != '\0' &&
        bt_router_list_check(router, err, sizeof(err)) != BT_OK) {
        fprintf(stderr, "%s: --router: %s\n", prog, err);
        return false;
    }
    if (bt_rpc_tls_cfg_check(tls, true, err, sizeof(err)) != BT_OK ||
        bt_rpc_tls_cfg_plain_check(tls, listen, "listen", err,
                                   sizeof(err)) != BT_OK ||
        (router != NULL && router[0] != '\0' &&
         bt_router_list_each(router, bt_daemon_router_plain_ok, tls, err,
                             sizeof(err)) != BT_OK)) {
        fprintf(stderr, "%s: %s\n", prog, err);
        return false;
    }
    tls->auth = NULL;
    if (tls->cluster_token_file != NULL &&
        bt_rpc_auth_load(tls->cluster_token_file, &tls->auth, err,
                         sizeof(err)) != BT_OK) {
        fprintf(stderr, "%s: %s\n", prog, err);
        return false;
    }
    return true;
}

void bt_daemon_warn_plaintext(const bt_rpc_tls_cfg_t *tls, const char *listen,
                              const char *router)
{
    bool has_router = router != NULL && router[0] != '\0';
    char err[256];

    if (!tls->enabled &&
        (!bt_rpc_addr_is_loopback(listen) ||
         (has_router &&
          bt_router_list_each(router, bt_daemon_router_loopback, NULL, err,
                              sizeof(err)) != BT_OK))) {
        bt_warn("insecure: grpc on %s and to the router %s is plaintext "
                "(--insecure): use --tls-*", listen,
                router != NULL ? router : "(none)");
    }
    if (tls->auth == NULL && !(tls->enabled && tls->ca_file != NULL)) {
        bt_warn("control plane unauthenticated: no --cluster-token-file and "
                "no mtls, so whoever reaches the grpc port may register nodes "
                "and call node services (docs/security.md)");
    }
}

const char *bt_daemon_tls_mode(const bt_rpc_tls_cfg_t *tls)
{
    return !tls->enabled ? "plaintext" : tls->ca_file != NULL ? "mtls" : "tls";
}
