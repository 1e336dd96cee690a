/* The completion-queue thread and its hand-off to the libevent loop
 * (STYLE: Threads). The thread only blocks in grpc_completion_queue_next()
 * and pushes (tag, ok); the loop runs every tag callback, so all
 * grpc_call_start_batch() calls stay on the loop thread. */
#include "rpc_int.h"

#include "base/array.h"
#include "base/clock.h"
#include "base/log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

static void bt_rpc_bridge_wake(bt_rpc_bridge_t *br)
{
    const uint64_t one = 1;
    ssize_t n;

    do {
        n = write(br->efd, &one, sizeof(one));
    } while (n < 0 && errno == EINTR);
}

/* Appends under the lock; false only when out of memory (the event is then
 * delivered by spinning: losing a tag would leak its call). */
static bool bt_rpc_bridge_push(bt_rpc_bridge_t *br, bt_rpc_event_t ev,
                               bool *was_empty_p)
{
    if (BT_ARRAY_RESERVE(br->items, br->cap_items, br->n_items + 1, 64) != BT_OK) {
        return false;
    }
    *was_empty_p = br->n_items == 0;
    br->items[br->n_items++] = ev;
    return true;
}

static void *bt_rpc_bridge_thread(void *arg)
{
    bt_rpc_bridge_t *br = arg;

    for (;;) {
        grpc_event gev = grpc_completion_queue_next(
            br->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        bt_rpc_event_t ev;
        bool was_empty = false;

        if (gev.type == GRPC_QUEUE_SHUTDOWN) {
            pthread_mutex_lock(&br->lock);
            br->cq_done = true;
            pthread_cond_broadcast(&br->cond);
            pthread_mutex_unlock(&br->lock);
            return NULL;
        }
        if (gev.type != GRPC_OP_COMPLETE) {
            continue;
        }
        ev.tag = gev.tag;
        ev.ok = gev.success != 0;
        pthread_mutex_lock(&br->lock);
        while (!bt_rpc_bridge_push(br, ev, &was_empty)) {
            pthread_mutex_unlock(&br->lock);
            bt_sleep_ms(1);
            pthread_mutex_lock(&br->lock);
        }
        pthread_cond_broadcast(&br->cond);
        pthread_mutex_unlock(&br->lock);
        if (was_empty) {
            bt_rpc_bridge_wake(br);
        }
    }
}

/* Takes every queued event and runs its tag; returns the count. */
static size_t bt_rpc_bridge_dispatch(bt_rpc_bridge_t *br)
{
    bt_rpc_event_t local[64];
    size_t total = 0;

    for (;;) {
        size_t n;

        pthread_mutex_lock(&br->lock);
        n = br->n_items < 64 ? br->n_items : 64;
        if (n == 0) {
            pthread_mutex_unlock(&br->lock);
            return total;
        }
        memcpy(local, br->items, n * sizeof(local[0]));
        memmove(br->items, br->items + n,
                (br->n_items - n) * sizeof(br->items[0]));
        br->n_items -= n;
        pthread_mutex_unlock(&br->lock);
        for (size_t i = 0; i < n; i++) {
            local[i].tag->cb(local[i].tag, local[i].ok);
        }
        total += n;
    }
}

static void bt_rpc_bridge_on_efd(evutil_socket_t fd, short what, void *arg)
{
    bt_rpc_bridge_t *br = arg;
    uint64_t count;

    /* Read first: a push after the read writes the eventfd again. */
    while (read(fd, &count, sizeof(count)) < 0 && errno == EINTR) {
    }
    bt_rpc_bridge_dispatch(br);
}

bt_status_t bt_rpc_bridge_init(bt_rpc_bridge_t *br, struct event_base *base)
{
    memset(br, 0, sizeof(*br));
    br->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (br->efd < 0) {
        bt_error("rpc eventfd: %s", bt_strerror(errno));
        return BT_ERR_IO;
    }
    pthread_mutex_init(&br->lock, NULL);
    pthread_cond_init(&br->cond, NULL);
    br->ev = event_new(base, br->efd, EV_READ | EV_PERSIST,
                       bt_rpc_bridge_on_efd, br);
    if (br->ev == NULL || event_add(br->ev, NULL) != 0) {
        bt_error("rpc bridge: cannot add eventfd to the loop");
        goto err_ev;
    }
    br->cq = grpc_completion_queue_create_for_next(NULL);
    if (br->cq == NULL) {
        bt_error("rpc bridge: cannot create completion queue");
        goto err_ev;
    }
    if (pthread_create(&br->thread, NULL, bt_rpc_bridge_thread, br) != 0) {
        bt_error("rpc bridge: cannot start the completion queue thread");
        goto err_cq;
    }
    br->thread_started = true;
    return BT_OK;

err_cq:
    grpc_completion_queue_shutdown(br->cq);
    grpc_completion_queue_destroy(br->cq);
    br->cq = NULL;
err_ev:
    if (br->ev != NULL) {
        event_free(br->ev);
        br->ev = NULL;
    }
    pthread_cond_destroy(&br->cond);
    pthread_mutex_destroy(&br->lock);
    close(br->efd);
    br->efd = -1;
    return BT_ERR_INTERNAL;
}

size_t bt_rpc_bridge_run(bt_rpc_bridge_t *br, uint64_t wait_ms)
{
    struct timespec until;

    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += (time_t)(wait_ms / 1000);
    until.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&br->lock);
    while (br->n_items == 0 && !br->cq_done) {
        if (pthread_cond_timedwait(&br->cond, &br->lock, &until) != 0) {
            break;
        }
    }
    pthread_mutex_unlock(&br->lock);
    return bt_rpc_bridge_dispatch(br);
}

void bt_rpc_bridge_cleanup(bt_rpc_bridge_t *br)
{
    if (br->cq == NULL) {
        return;
    }
    grpc_completion_queue_shutdown(br->cq);
    if (br->thread_started) {
        pthread_join(br->thread, NULL);
    }
    bt_rpc_bridge_dispatch(br);
    grpc_completion_queue_destroy(br->cq);
    br->cq = NULL;
    event_free(br->ev);
    br->ev = NULL;
    close(br->efd);
    br->efd = -1;
    free(br->items);
    br->items = NULL;
    pthread_cond_destroy(&br->cond);
    pthread_mutex_destroy(&br->lock);
}
