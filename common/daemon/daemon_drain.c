/* SIGTERM/SIGINT: STOPPING=1, health NOT_SERVING, the daemon's drain hook,
 * then a 100 ms poll of its work in flight until none is left or
 * --drain-timeout passes, and the loop ends. Work that is done may still
 * have its answer in gRPC's hands (a decode request's last tokens and
 * status): the loop ends only once those are sent too, since the server's
 * destroy would cancel them. */
#include "daemon_int.h"

#include "base/clock.h"
#include "base/sdnotify.h"

#include <event2/event.h>

#define BT_DAEMON_DRAIN_POLL_US   100000
#define BT_DAEMON_ANSWER_POLL_US  5000

static size_t bt_daemon_inflight(const bt_daemon_t *d)
{
    return d->ops->inflight != NULL ? d->ops->inflight(d->arg) : 0;
}

static void bt_daemon_drain_check(evutil_socket_t fd, short what, void *arg)
{
    bt_daemon_t *d = arg;
    size_t n = bt_daemon_inflight(d);
    uint32_t answers = n == 0 ? bt_rpc_server_answers_pending(d->grpc) : 0;
    struct timeval tv = { 0, BT_DAEMON_DRAIN_POLL_US };
    bool timed_out = bt_now_ms() - d->drain_started_ms >=
                     (uint64_t)d->cfg.drain_timeout_ms;

    (void)fd;
    (void)what;
    if ((n == 0 && answers == 0) || timed_out) {
        if (n > 0) {
            bt_warn("drain timeout: %zu %s still in flight", n, d->cfg.work);
        } else if (answers > 0) {
            bt_warn("drain timeout: %u answers not yet sent", answers);
        }
        event_base_loopexit(d->base, NULL);
        return;
    }
    if (n == 0) {
        tv.tv_usec = BT_DAEMON_ANSWER_POLL_US;   /* they leave in ms */
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
