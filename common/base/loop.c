#include "loop.h"

#include "log.h"

#include <event2/thread.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

struct bt_loop_signals {
    struct event_base *base;
    struct event      *ev_term;
    struct event      *ev_int;
    bt_loop_drain_cb   drain_cb;
    void              *arg;
    int                received;
};

static pthread_once_t bt_loop_threads_once = PTHREAD_ONCE_INIT;

static void bt_loop_threads_init(void)
{
    evthread_use_pthreads();
}

struct event_base *bt_loop_create(void)
{
    struct event_base *base;

    pthread_once(&bt_loop_threads_once, bt_loop_threads_init);
    base = event_base_new();
    if (base == NULL) {
        bt_error("cannot create the event loop");
    }
    return base;
}

static void bt_loop_signal_cb(evutil_socket_t signo, short what, void *arg)
{
    bt_loop_signals_t *s = arg;

    (void)what;
    s->received++;
    if (s->received > 1) {
        bt_warn("second signal %d: exiting now", (int)signo);
        _exit(1);
    }
    bt_info("signal %d: draining", (int)signo);
    if (s->drain_cb != NULL) {
        s->drain_cb(s->arg, (int)signo);
    } else {
        event_base_loopexit(s->base, NULL);
    }
}

bt_loop_signals_t *bt_loop_signals_install(struct event_base *base,
                                           bt_loop_drain_cb drain_cb,
                                           void *arg)
{
    bt_loop_signals_t *s = calloc(1, sizeof(*s));

    if (s == NULL) {
        return NULL;
    }
    signal(SIGPIPE, SIG_IGN);
    s->base = base;
    s->drain_cb = drain_cb;
    s->arg = arg;
    s->ev_term = evsignal_new(base, SIGTERM, bt_loop_signal_cb, s);
    s->ev_int = evsignal_new(base, SIGINT, bt_loop_signal_cb, s);
    if (s->ev_term == NULL || s->ev_int == NULL ||
        evsignal_add(s->ev_term, NULL) != 0 ||
        evsignal_add(s->ev_int, NULL) != 0) {
        bt_error("cannot install signal handlers");
        bt_loop_signals_remove(s);
        return NULL;
    }
    return s;
}

void bt_loop_signals_remove(bt_loop_signals_t *s)
{
    if (s == NULL) {
        return;
    }
    if (s->ev_term != NULL) {
        event_free(s->ev_term);
    }
    if (s->ev_int != NULL) {
        event_free(s->ev_int);
    }
    free(s);
}

int bt_loop_signals_received(const bt_loop_signals_t *s)
{
    return s->received;
}
