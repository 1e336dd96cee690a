#include "tpool.h"

#include "log.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

typedef struct bt_tpool_task {
    struct bt_tpool_task *next;
    bt_tpool_work_cb      work;
    bt_tpool_done_cb      done;
    void                 *ctx;
} bt_tpool_task_t;

typedef struct {
    bt_tpool_task_t *head;
    bt_tpool_task_t *tail;
} bt_tpool_list_t;

struct bt_tpool {
    pthread_mutex_t  lock;
    pthread_cond_t   cond;
    bt_tpool_list_t  todo;        /* waiting for a worker */
    bt_tpool_list_t  finished;    /* waiting for the loop */
    size_t           n_todo;
    size_t           n_pending;   /* submitted and not yet delivered */
    size_t           max_queued;
    bool             stopping;
    int              n_threads;
    pthread_t       *threads;
    int              efd;
    struct event    *ev;
};

static void bt_tpool_list_push(bt_tpool_list_t *list, bt_tpool_task_t *task)
{
    task->next = NULL;
    if (list->tail != NULL) {
        list->tail->next = task;
    } else {
        list->head = task;
    }
    list->tail = task;
}

static bt_tpool_task_t *bt_tpool_list_pop(bt_tpool_list_t *list)
{
    bt_tpool_task_t *task = list->head;

    if (task != NULL) {
        list->head = task->next;
        if (list->head == NULL) {
            list->tail = NULL;
        }
    }
    return task;
}

static void *bt_tpool_worker(void *arg)
{
    bt_tpool_t *pool = arg;
    const uint64_t one = 1;

    pthread_setname_np(pthread_self(), "bt-pool"); /* top -H, perf, /proc */
    for (;;) {
        bt_tpool_task_t *task;
        ssize_t n;

        pthread_mutex_lock(&pool->lock);
        while (pool->todo.head == NULL && !pool->stopping) {
            pthread_cond_wait(&pool->cond, &pool->lock);
        }
        task = bt_tpool_list_pop(&pool->todo);
        if (task == NULL) { /* stopping and nothing left */
            pthread_mutex_unlock(&pool->lock);
            return NULL;
        }
        pool->n_todo--;
        pthread_mutex_unlock(&pool->lock);

        if (task->work != NULL) {
            task->work(task->ctx);
        }

        pthread_mutex_lock(&pool->lock);
        bt_tpool_list_push(&pool->finished, task);
        pthread_mutex_unlock(&pool->lock);
        do {
            n = write(pool->efd, &one, sizeof(one));
        } while (n < 0 && errno == EINTR);
    }
}

/* Runs every finished task's `done` on the calling (loop) thread. */
static void bt_tpool_deliver(bt_tpool_t *pool)
{
    bt_tpool_list_t batch;
    bt_tpool_task_t *task;
    size_t count = 0;

    pthread_mutex_lock(&pool->lock);
    batch = pool->finished;
    pool->finished.head = pool->finished.tail = NULL;
    pthread_mutex_unlock(&pool->lock);

    while ((task = bt_tpool_list_pop(&batch)) != NULL) {
        if (task->done != NULL) {
            task->done(task->ctx, BT_OK);
        }
        free(task);
        count++;
    }
    pthread_mutex_lock(&pool->lock);
    pool->n_pending -= count;
    pthread_mutex_unlock(&pool->lock);
}

static void bt_tpool_efd_cb(evutil_socket_t fd, short what, void *arg)
{
    uint64_t value;
    ssize_t n;

    (void)what;
    n = read(fd, &value, sizeof(value)); /* resets the counter */
    (void)n;
    bt_tpool_deliver(arg);
}

bt_tpool_t *bt_tpool_create(struct event_base *base, int n_threads,
                            size_t max_queued)
{
    bt_tpool_t *pool;
    int i;

    if (n_threads < 1 || max_queued == 0) {
        bt_error("tpool: invalid threads %d max_queued %zu", n_threads,
                 max_queued);
        return NULL;
    }
    pool = calloc(1, sizeof(*pool));
    if (pool == NULL) {
        return NULL;
    }
    pool->max_queued = max_queued;
    pool->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (pool->efd < 0) {
        bt_error("tpool: eventfd failed: %s", bt_strerror(errno));
        goto err_free;
    }
    pool->ev = event_new(base, pool->efd, EV_READ | EV_PERSIST,
                         bt_tpool_efd_cb, pool);
    if (pool->ev == NULL || event_add(pool->ev, NULL) != 0) {
        bt_error("tpool: cannot add the eventfd to the loop");
        goto err_close;
    }
    pthread_mutex_init(&pool->lock, NULL);
    pthread_cond_init(&pool->cond, NULL);
    pool->threads = calloc((size_t)n_threads, sizeof(pthread_t));
    if (pool->threads == NULL) {
        goto err_sync;
    }
    for (i = 0; i < n_threads; i++) {
        int rc = pthread_create(&pool->threads[i], NULL, bt_tpool_worker, pool);

        if (rc != 0) {
            bt_error("tpool: pthread_create failed: %s", bt_strerror(rc));
            pthread_mutex_lock(&pool->lock);
            pool->stopping = true;
            pthread_cond_broadcast(&pool->cond);
            pthread_mutex_unlock(&pool->lock);
            while (--i >= 0) {
                pthread_join(pool->threads[i], NULL);
            }
            free(pool->threads);
            goto err_sync;
        }
        pool->n_threads++;
    }
    return pool;

err_sync:
    pthread_cond_destroy(&pool->cond);
    pthread_mutex_destroy(&pool->lock);
err_close:
    if (pool->ev != NULL) {
        event_free(pool->ev);
    }
    close(pool->efd);
err_free:
    free(pool);
    return NULL;
}

void bt_tpool_destroy(bt_tpool_t *pool)
{
    int i;

    if (pool == NULL) {
        return;
    }
    pthread_mutex_lock(&pool->lock);
    pool->stopping = true;
    pthread_cond_broadcast(&pool->cond);
    pthread_mutex_unlock(&pool->lock);
    for (i = 0; i < pool->n_threads; i++) {
        pthread_join(pool->threads[i], NULL);
    }
    bt_tpool_deliver(pool);
    event_free(pool->ev);
    close(pool->efd);
    pthread_cond_destroy(&pool->cond);
    pthread_mutex_destroy(&pool->lock);
    free(pool->threads);
    free(pool);
}

bt_status_t bt_tpool_submit(bt_tpool_t *pool, bt_tpool_work_cb work,
                            bt_tpool_done_cb done, void *ctx)
{
    bt_tpool_task_t *task;

    task = malloc(sizeof(*task));
    if (task == NULL) {
        return BT_ERR_NO_MEMORY;
    }
    task->work = work;
    task->done = done;
    task->ctx = ctx;

    pthread_mutex_lock(&pool->lock);
    if (pool->stopping) {
        pthread_mutex_unlock(&pool->lock);
        free(task);
        return BT_ERR_SHUTDOWN;
    }
    if (pool->n_todo >= pool->max_queued) {
        pthread_mutex_unlock(&pool->lock);
        free(task);
        return BT_ERR_EXHAUSTED;
    }
    bt_tpool_list_push(&pool->todo, task);
    pool->n_todo++;
    pool->n_pending++;
    pthread_cond_signal(&pool->cond);
    pthread_mutex_unlock(&pool->lock);
    return BT_OK;
}

int bt_tpool_threads(const bt_tpool_t *pool)
{
    return pool->n_threads;
}

size_t bt_tpool_pending(bt_tpool_t *pool)
{
    size_t n;

    pthread_mutex_lock(&pool->lock);
    n = pool->n_pending;
    pthread_mutex_unlock(&pool->lock);
    return n;
}
