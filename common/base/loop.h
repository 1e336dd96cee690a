/* The process's libevent loop and its shutdown signals.
 *
 * bt_loop_create() calls evthread_use_pthreads() once before the first
 * event base (STYLE: Threads). bt_loop_signals_install() turns the first
 * SIGTERM or SIGINT into a call of `drain_cb` on the loop thread: the
 * daemon stops admitting work, finishes what it has, then calls
 * event_base_loopexit() and exits 0. A second signal exits at once with
 * status 1 (an operator who presses Ctrl-C twice means it). */
#ifndef BT_LOOP_H
#define BT_LOOP_H

#include "status.h"

#include <event2/event.h>

typedef void (*bt_loop_drain_cb)(void *arg, int signo);

typedef struct bt_loop_signals bt_loop_signals_t;

struct event_base *bt_loop_create(void);

/* `drain_cb` NULL means "exit the loop at once". SIGPIPE is ignored. */
bt_loop_signals_t *bt_loop_signals_install(struct event_base *base,
                                           bt_loop_drain_cb drain_cb,
                                           void *arg);
void bt_loop_signals_remove(bt_loop_signals_t *signals);

/* True once a drain was requested. */
int bt_loop_signals_received(const bt_loop_signals_t *signals);

#endif
