/* What only common/daemon/ uses: the signal half of the skeleton. */
#ifndef BT_DAEMON_DAEMON_INT_H
#define BT_DAEMON_DAEMON_INT_H

#include "daemon.h"

/* SIGTERM/SIGINT start the drain (daemon_drain.c). */
void bt_daemon_signals_install(bt_daemon_t *d);
/* Removes them and the drain's timer. */
void bt_daemon_signals_remove(bt_daemon_t *d);

/* The cluster credentials of cfg.tls on d->grpc and d->client, and the
 * baton_rpc_auth_refused_total counter (daemon_auth.c). */
void bt_daemon_auth_apply(bt_daemon_t *d);

#endif
