/* SIGTERM/SIGINT: STOPPING=1, health NOT_SERVING, the daemon's drain hook,
 * then a 100 ms poll of its work in flight until none is left or
 * --drain-timeout passes, and the loop ends. */
#include "daemon_int.h"

#include "base/clock.h"
#include "base/sdnotify.h"

#include <event2/event.h>

#define BT_DAEMON_DRAIN_POLL_US 100000

static size_t bt_daemon_inflight(const bt_daemon_t *d)
{
    return d->ops->inflight != NULL ? d->ops->inflight(d->arg) : 0;
}

static void bt_daemon_drain_check(evutil_socket_t fd, short what, void *arg)
{
    bt_daemon_t *d = arg;
    size_t n = bt_daemon_inflight(d);
    struct timeval tv = { 0, BT_DAEMON_DRAIN_POLL_US };

    (void)fd;
    (void)what;
    if (n == 0 || bt_now_ms() - d->drain_started_ms >=
                  (uint64_t)d->cfg.drain_timeout_ms) {
        if (n > 0) {
            bt_warn("drain timeout: %zu %s still in flight", n, d->cfg.work);
        }
        event_base_loopexit(d->base, NULL);
        return;
    }
    evtimer_add(d->drain_ev, &tv);
}

static void bt_daemon_drain(void *arg, int signo)
{
    bt_daemon_t *d = arg;
    struct timeval now = { 0, 0 };

    (void)signo;
    bt_sdnotify("STOPPING=1");
    if (d->drain_ev != NULL) {
        return; /* the loop_signals module calls once; be safe anyway */
    }
    d->drain_started_ms = bt_now_ms();
    bt_rpc_server_set_serving(d->grpc, "", false);
    if (d->ops->drain != NULL) {
        d->ops->drain(d->arg);
    }
    bt_info("draining: %zu %s in flight", bt_daemon_inflight(d), d->cfg.work);
    d->drain_ev = evtimer_new(d->base, bt_daemon_drain_check, d);
    if (d->drain_ev == NULL) {
        event_base_loopexit(d->base, NULL);
        return;
    }
    evtimer_add(d->drain_ev, &now);
}

void bt_daemon_signals_install(bt_daemon_t *d)
{
    d->signals = bt_loop_signals_install(d->base, bt_daemon_drain, d);
}

void bt_daemon_signals_remove(bt_daemon_t *d)
{
    bt_loop_signals_remove(d->signals);
    d->signals = NULL;
    if (d->drain_ev != NULL) {
        event_free(d->drain_ev);
        d->drain_ev = NULL;
    }
}
