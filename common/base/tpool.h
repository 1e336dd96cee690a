/* Worker threads whose completions return to a libevent loop (nginx thread
 * pool, Redis bio.c). A task is {work, done, ctx}: `work` runs on a worker
 * thread, then `done` runs on the loop thread (the one that owns sockets,
 * RPC state and the UCX worker). Completions travel through a locked queue
 * and wake the loop through an eventfd. */
#ifndef BT_TPOOL_H
#define BT_TPOOL_H

#include "status.h"

#include <event2/event.h>

typedef struct bt_tpool bt_tpool_t;

typedef void (*bt_tpool_work_cb)(void *ctx);              /* worker thread */
typedef void (*bt_tpool_done_cb)(void *ctx, bt_status_t status); /* loop thread */

/* `max_queued` bounds the tasks waiting for a worker (0 = unbounded is not
 * allowed: pass a real limit). NULL on failure (logged). */
bt_tpool_t *bt_tpool_create(struct event_base *base, int n_threads,
                            size_t max_queued);

/* Lets the workers finish every queued task, joins them, then runs the
 * `done` callbacks not yet delivered, on the calling thread (the loop
 * thread), so nothing submitted is lost. NULL-safe. */
void bt_tpool_destroy(bt_tpool_t *pool);

/* BT_ERR_EXHAUSTED when the queue is full, BT_ERR_SHUTDOWN after destroy
 * has begun. On success `done` is called exactly once, later, on the loop
 * thread (never from inside this call). `work` may be NULL (only done). */
bt_status_t bt_tpool_submit(bt_tpool_t *pool, bt_tpool_work_cb work,
                            bt_tpool_done_cb done, void *ctx);

int bt_tpool_threads(const bt_tpool_t *pool);
size_t bt_tpool_pending(bt_tpool_t *pool); /* queued + running + undelivered */

#endif
