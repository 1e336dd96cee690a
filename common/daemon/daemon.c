/* The life of a daemon: loop and metrics, the gRPC and HTTP servers, the
 * port line and READY=1, the loop, teardown in order. */
#include "daemon_int.h"

#include "base/sdnotify.h"
#include "rpc/addr.h"

#include <stdio.h>
#include <string.h>

bt_status_t bt_daemon_init(bt_daemon_t *d, const bt_daemon_cfg_t *cfg,
                           const bt_daemon_ops_t *ops, void *arg)
{
    static const bt_daemon_ops_t no_ops;

    memset(d, 0, sizeof(*d));
    d->cfg = *cfg;
    d->ops = ops != NULL ? ops : &no_ops;
    d->arg = arg;
    d->base = bt_loop_create();
    d->metrics = bt_metrics_create();
    return d->base != NULL && d->metrics != NULL ? BT_OK : BT_ERR_NO_MEMORY;
}

static bt_status_t bt_daemon_grpc_start(bt_daemon_t *d)
{
    const bt_daemon_ops_t *ops = d->ops;
    char addr[320];
    bt_status_t s;

    if (d->cfg.client) {
        d->client = bt_rpc_client_create(d->base, &(bt_rpc_client_opts_t){
                                             d->cfg.max_message, 0 });
    }
    d->grpc = bt_rpc_server_create(d->base, &(bt_rpc_server_opts_t){
                                       d->cfg.max_message,
                                       d->cfg.send_queue_max, 16 });
    if ((d->cfg.client && d->client == NULL) || d->grpc == NULL) {
        return BT_ERR_NO_MEMORY; /* logged by rpc/ */
    }
    bt_daemon_auth_apply(d);
    bt_rpc_hostport(addr, sizeof(addr), d->cfg.listen, (int)d->cfg.grpc_port);
    s = bt_rpc_server_listen(d->grpc, addr, bt_rpc_tls_cfg_server(d->cfg.tls),
                             &d->grpc_port);
    if (s == BT_OK && ops->grpc_register != NULL) {
        s = ops->grpc_register(d->arg, d);
    }
    if (s == BT_OK) {
        s = bt_rpc_server_start(d->grpc);
    }
    if (s == BT_OK && ops->grpc_started != NULL) {
        s = ops->grpc_started(d->arg, d);
    }
    if (s != BT_OK) {
        bt_error("cannot start the grpc server on %s: %s", addr,
                 bt_status_str(s));
    }
    return s;
}

static bt_status_t bt_daemon_http_start(bt_daemon_t *d)
{
    char addr[320];

    d->http = bt_http_server_create(d->base, d->cfg.listen,
                                    (int)d->cfg.http_port, d->cfg.max_body,
                                    &d->http_port);
    if (d->http == NULL) {
        return BT_ERR_IO;
    }
    /* the bound port: /metrics is there (port 0 picked one) */
    bt_rpc_hostport(addr, sizeof(addr), d->cfg.listen, d->http_port);
    bt_info("http listening on %s", addr);
    if (d->cfg.http_limits != NULL) {
        bt_http_server_set_limits(d->http, d->cfg.http_limits);
    }
    bt_http_server_set_access_log(d->http, d->cfg.access_log);
    if (d->cfg.http_tls_cert != NULL) {
        char err[512];

        if (bt_http_server_set_tls(d->http, d->cfg.http_tls_cert,
                                   d->cfg.http_tls_key, err,
                                   sizeof(err)) != BT_OK) {
            bt_error("https: %s", err);
            return BT_ERR_INVALID_ARG;
        }
    }
    return bt_http_add_standard(d->http, d->ops->ready, d->arg, d->metrics);
}

bt_status_t bt_daemon_serve(bt_daemon_t *d)
{
    bt_status_t s = bt_daemon_grpc_start(d);

    if (s == BT_OK) {
        s = bt_daemon_http_start(d);
    }
    if (s == BT_OK && d->ops->started != NULL) {
        s = d->ops->started(d->arg, d);
    }
    if (s == BT_OK) {
        bt_daemon_signals_install(d);
    }
    return s;
}

int bt_daemon_run(bt_daemon_t *d)
{
    /* a line for launchers and tests that pick port 0 */
    printf("grpc_port=%d http_port=%d\n", d->grpc_port, d->http_port);
    fflush(stdout);
    bt_sdnotify("READY=1");
    event_base_dispatch(d->base);
    bt_info("stopped");
    return 0;
}

void bt_daemon_cleanup(bt_daemon_t *d)
{
    const bt_daemon_ops_t *ops = d->ops;

    bt_daemon_signals_remove(d);
    if (ops != NULL && ops->stop != NULL) {
        ops->stop(d->arg);
    }
    bt_http_server_destroy(d->http);
    d->http = NULL;
    bt_rpc_server_destroy(d->grpc);
    d->grpc = NULL;
    if (ops != NULL && ops->release != NULL) {
        ops->release(d->arg);
    }
    bt_rpc_client_destroy(d->client);
    d->client = NULL;
    if (ops != NULL && ops->free != NULL) {
        ops->free(d->arg);
    }
    bt_metrics_destroy(d->metrics);
    d->metrics = NULL;
    if (d->cfg.tls != NULL) {
        /* the daemon's from bt_daemon_tls_check on; the servers are gone */
        bt_rpc_auth_destroy(d->cfg.tls->auth);
    }
    if (d->base != NULL) {
        event_base_free(d->base);
        d->base = NULL;
    }
}
