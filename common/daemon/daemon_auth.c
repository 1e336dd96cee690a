/* The control plane's credentials on a daemon's gRPC server and client
 * (rpc/auth.h) and the counter of the calls they refused. */
#include "daemon_int.h"

/* The metrics registry outlives the gRPC server (bt_daemon_cleanup). */
static void bt_daemon_refusal_cb(void *arg, bt_rpc_code_t code)
{
    bt_daemon_t *d = arg;

    bt_counter_inc(code == BT_RPC_UNAUTHENTICATED ? d->m_refused_unauth
                                                  : d->m_refused_perm);
}

void bt_daemon_auth_apply(bt_daemon_t *d)
{
    static const char help[] = "control-plane grpc calls refused for "
                               "their credential, by reason";
    const bt_rpc_tls_cfg_t *tls = d->cfg.tls;
    bt_rpc_auth_t *auth = tls != NULL ? tls->auth : NULL;
    bool mtls = tls != NULL && tls->enabled && tls->ca_file != NULL;

    bt_rpc_server_set_auth(d->grpc, auth, mtls);
    if (d->client != NULL) {
        bt_rpc_client_set_token(d->client, bt_rpc_auth_token(auth));
    }
    d->m_refused_unauth = bt_metrics_counter(d->metrics,
        "baton_rpc_auth_refused_total", help, "reason=\"unauthenticated\"");
    d->m_refused_perm = bt_metrics_counter(d->metrics,
        "baton_rpc_auth_refused_total", help, "reason=\"permission_denied\"");
    if (d->m_refused_unauth != NULL && d->m_refused_perm != NULL) {
        bt_rpc_server_on_refusal(d->grpc, bt_daemon_refusal_cb, d);
    }
}
