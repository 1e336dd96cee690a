/* The daemon skeleton the router, the nodes and the kvstore share: the
 * event loop and metrics registry, the gRPC server (and client), the
 * standard HTTP endpoints, the SIGTERM/SIGINT drain with its timeout, the
 * "grpc_port=P http_port=Q" line launchers read, sd_notify READY/STOPPING
 * and teardown in order. What differs per daemon comes in through
 * bt_daemon_ops_t hooks.
 *
 * It is a module of its own (common/daemon/), not part of base/: it sits
 * on rpc/, http/ and metrics/, and base/ is below all of them.
 *
 *   bt_daemon_level_parse / bt_daemon_tls_check   (exit 2 on false)
 *   bt_log_init(...)
 *   bt_daemon_init(&d, &cfg, &ops, arg)          loop, metrics
 *   ... the daemon's own state, on d.base / d.metrics ...
 *   bt_daemon_serve(&d)    gRPC (hooks grpc_register, grpc_started), HTTP
 *                          (standard endpoints, hook started), signals
 *   bt_info(its startup line)
 *   rc = bt_daemon_run(&d)                        port line, READY, loop
 *   bt_daemon_cleanup(&d)  hooks stop, release, free between the closes
 */
#ifndef BT_DAEMON_DAEMON_H
#define BT_DAEMON_DAEMON_H

#include "base/log.h"
#include "base/loop.h"
#include "base/status.h"
#include "http/http.h"
#include "metrics/metrics.h"
#include "rpc/client.h"
#include "rpc/server.h"
#include "rpc/tls_cfg.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct bt_daemon bt_daemon_t;

/* What the daemon's options say about the shared part. */
typedef struct {
    const char *listen;                /* both servers' address */
    int64_t     grpc_port;             /* 0 picks one */
    int64_t     http_port;             /* 0 picks one */
    const bt_rpc_tls_cfg_t *tls;       /* checked (bt_daemon_tls_check) */
    uint32_t    max_message;           /* gRPC messages, both ways */
    uint32_t    send_queue_max;        /* gRPC server's per-call queue */
    bool        client;                /* a gRPC client too (d->client) */
    size_t      max_body;              /* HTTP request bodies */
    const bt_http_limits_t *http_limits; /* NULL: http.h's defaults */
    bool        access_log;            /* --access-log */
    const char *http_tls_cert;         /* HTTPS when set (with the key) */
    const char *http_tls_key;
    int64_t     drain_timeout_ms;      /* --drain-timeout */
    const char *work;                  /* what is in flight, for the drain
                                          lines: "requests", "calls" */
} bt_daemon_cfg_t;

/* The hooks; every one may be NULL. `arg` is bt_daemon_init's. */
typedef struct {
    /* gRPC services, on d->grpc before it starts */
    bt_status_t (*grpc_register)(void *arg, bt_daemon_t *d);
    /* after the gRPC server started (health status, readiness) */
    bt_status_t (*grpc_started)(void *arg, bt_daemon_t *d);
    /* after the standard HTTP endpoints: the daemon's own routes,
     * registration, timers; the last step before the signals */
    bt_status_t (*started)(void *arg, bt_daemon_t *d);
    /* /readyz (NULL: always ready) */
    bt_http_ready_cb ready;
    /* SIGTERM/SIGINT, after STOPPING=1 and the health status went
     * NOT_SERVING: stop taking work */
    void (*drain)(void *arg);
    /* work in flight: the loop ends when it is 0 or the drain times out */
    size_t (*inflight)(void *arg);
    /* teardown: before the servers close, after them (before the
     * client), after the client (before the metrics and the loop) */
    void (*stop)(void *arg);
    void (*release)(void *arg);
    void (*free)(void *arg);
} bt_daemon_ops_t;

struct bt_daemon {
    bt_daemon_cfg_t        cfg;
    const bt_daemon_ops_t *ops;
    void                  *arg;
    struct event_base     *base;
    bt_metrics_t          *metrics;
    bt_rpc_client_t       *client;      /* NULL unless cfg.client */
    bt_rpc_server_t       *grpc;
    bt_http_server_t      *http;
    int                    grpc_port;   /* bound */
    int                    http_port;   /* bound */
    bt_loop_signals_t     *signals;
    struct event          *drain_ev;    /* polls `inflight` while draining */
    uint64_t               drain_started_ms;
    bt_counter_t          *m_refused_unauth;  /* baton_rpc_auth_refused_total */
    bt_counter_t          *m_refused_perm;
};

/* --log-level: false after "<prog>: invalid value '<s>' for --log-level"
 * on stderr (the caller exits 2). */
bool bt_daemon_level_parse(const char *prog, const char *s,
                           bt_log_level_t *level_p);
/* TLS options: bad combinations, unreadable files and plaintext off
 * loopback without --insecure for `listen` and `router` (NULL or "": none)
 * give false after "<prog>: <why>" on stderr (the caller exits 2). */
bool bt_daemon_tls_check(const char *prog, bt_rpc_tls_cfg_t *tls,
                         const char *listen, const char *router);
/* The warning of a daemon that listens and calls a router in plaintext
 * off loopback (after bt_log_init). */
void bt_daemon_warn_plaintext(const bt_rpc_tls_cfg_t *tls, const char *listen,
                              const char *router);
/* "plaintext", "tls" or "mtls", for startup lines. */
const char *bt_daemon_tls_mode(const bt_rpc_tls_cfg_t *tls);

/* The loop and the metrics registry. `cfg` is copied (its strings and
 * pointers must outlive d). On failure d is still safe to clean up. */
bt_status_t bt_daemon_init(bt_daemon_t *d, const bt_daemon_cfg_t *cfg,
                           const bt_daemon_ops_t *ops, void *arg);
/* The gRPC client and server, the HTTP server, the signals. */
bt_status_t bt_daemon_serve(bt_daemon_t *d);
/* Prints the port line, READY=1, runs the loop until the drain ends;
 * logs "stopped" and returns 0 (the exit code). */
int bt_daemon_run(bt_daemon_t *d);
/* Closes everything in order, calling the teardown hooks; d may be
 * partly set up (or zeroed). */
void bt_daemon_cleanup(bt_daemon_t *d);

#endif
