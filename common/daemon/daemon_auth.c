/* The control plane's credentials on a daemon's gRPC server and client
 * (rpc/auth.h) and the counter of the calls they refused. */
#include "daemon_int.h"

#include <stdlib.h>

typedef struct {
    bt_daemon_t  *d;
    bt_counter_t *unauthenticated;
    bt_counter_t *permission;
    uint64_t      seen_unauthenticated;
    uint64_t      seen_permission;
} bt_daemon_refusals_t;

/* Counters move by what the server counted since the last render. */
static void bt_daemon_refusals_collect(void *arg)
{
    bt_daemon_refusals_t *r = arg;
    bt_rpc_server_stats_t st;

    if (r->d->grpc == NULL) {
        return;
    }
    bt_rpc_server_get_stats(r->d->grpc, &st);
    bt_counter_add(r->unauthenticated,
                   (double)(st.refused_unauthenticated - r->seen_unauthenticated));
    bt_counter_add(r->permission,
                   (double)(st.refused_permission - r->seen_permission));
    r->seen_unauthenticated = st.refused_unauthenticated;
    r->seen_permission = st.refused_permission;
}

void bt_daemon_auth_apply(bt_daemon_t *d)
{
    static const char help[] = "control-plane grpc calls refused before "
                               "their handler, by reason";
    const bt_rpc_tls_cfg_t *tls = d->cfg.tls;
    bt_rpc_auth_t *auth = tls != NULL ? tls->auth : NULL;
    bool mtls = tls != NULL && tls->enabled && tls->ca_file != NULL;
    bt_daemon_refusals_t *r;

    bt_rpc_server_set_auth(d->grpc, auth, mtls);
    if (d->client != NULL) {
        bt_rpc_client_set_token(d->client, bt_rpc_auth_token(auth));
    }
    r = calloc(1, sizeof(*r));
    if (r == NULL) {
        return;   /* the counter is missing; admission is unaffected */
    }
    r->d = d;
    r->unauthenticated = bt_metrics_counter(d->metrics,
        "baton_rpc_auth_refused_total", help, "reason=\"unauthenticated\"");
    r->permission = bt_metrics_counter(d->metrics,
        "baton_rpc_auth_refused_total", help, "reason=\"permission_denied\"");
    if (r->unauthenticated == NULL || r->permission == NULL) {
        free(r);
        return;
    }
    bt_metrics_on_render(d->metrics, bt_daemon_refusals_collect, free, r);
}
