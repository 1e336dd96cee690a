/* The kvstore's planner thread: re-plans of the plan book run one at a
 * time on a thread of their own, so a DeepSeek-sized plan (tenths of a
 * second) never holds the loop that serves blocks. Requests wait in a
 * FIFO on the loop thread; the one running was begun (history snapshot)
 * when it left the FIFO, and is finished (version, plans file) back on
 * the loop thread. One at a time also means at most one re-plan per
 * (model, role) in flight, and a Rebalance queued behind an automatic
 * re-plan plans from the plan that one published. */
#include "plan_lane.h"

#include "base/clock.h"
#include "base/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct bt_kvsd_lane_item {
    struct bt_kvsd_lane_item *next;
    bt_pbook_job_kind_t       kind;
    char                      model[BT_PBOOK_MODEL_MAX + 1];
    int                       role;
    bt_kvsd_lane_done_cb      cb;
    void                     *arg;
} bt_kvsd_lane_item_t;

struct bt_kvsd_lane {
    bt_pbook_t          *book;
    bt_tpool_t          *pool;     /* one thread */
    bt_kvsd_lane_item_t *head, *tail;
    bt_kvsd_lane_item_t *running;
    bt_pbook_job_t      *job;
    uint64_t             delay_ms; /* test knob: a longer re-plan */
    bool                 stopping;
};

static void bt_kvsd_lane_kick(bt_kvsd_lane_t *ln);

static void bt_kvsd_lane_work(void *ctx)
{
    bt_kvsd_lane_t *ln = ctx;

    bt_pbook_job_run(ln->job);
    if (ln->delay_ms > 0) {
        struct timespec ts = { (time_t)(ln->delay_ms / 1000),
                               (long)(ln->delay_ms % 1000) * 1000000L };

        nanosleep(&ts, NULL);
    }
}

/* Finishes the running item's job (ran: its work ran) and tells its
 * requester. */
static void bt_kvsd_lane_finish(bt_kvsd_lane_t *ln, bool ran)
{
    bt_kvsd_lane_item_t *it = ln->running;
    bt_pbook_view_t v;
    char err[256] = "";
    bt_status_t st;

    memset(&v, 0, sizeof(v));
    st = bt_pbook_job_finish(ln->book, ln->job, ran, bt_wall_ms(), &v, err,
                             sizeof(err));
    ln->job = NULL;
    ln->running = NULL;
    if (it->kind == BT_PBOOK_JOB_AUTO && st != BT_OK) {
        bt_warn("placement: re-plan of model %s role %d failed: %s",
                it->model, it->role, err);
    }
    if (it->cb != NULL) {
        it->cb(it->arg, st, &v, err);
    }
    bt_pbook_view_release(&v);
    free(it);
}

static void bt_kvsd_lane_done(void *ctx, bt_status_t status)
{
    bt_kvsd_lane_t *ln = ctx;

    bt_kvsd_lane_finish(ln, status == BT_OK);
    bt_kvsd_lane_kick(ln);
}

/* Starts the next request when none runs; a request that cannot begin or
 * be submitted is answered at once. */
static void bt_kvsd_lane_kick(bt_kvsd_lane_t *ln)
{
    while (ln->running == NULL && ln->head != NULL) {
        bt_kvsd_lane_item_t *it = ln->head;
        char err[256] = "";
        bt_status_t st;

        ln->head = it->next;
        if (ln->head == NULL) {
            ln->tail = NULL;
        }
        st = ln->stopping ? BT_ERR_SHUTDOWN :
             bt_pbook_job_begin(ln->book, it->model, it->role, it->kind,
                                bt_now_ms(), &ln->job, err, sizeof(err));
        if (st == BT_OK) {
            ln->running = it;
            if (bt_tpool_submit(ln->pool, bt_kvsd_lane_work, bt_kvsd_lane_done,
                                ln) == BT_OK) {
                return;
            }
            bt_kvsd_lane_finish(ln, false);
            continue;
        }
        if (st == BT_ERR_SHUTDOWN) {
            snprintf(err, sizeof(err), "the kvstore is stopping");
        }
        if (it->cb != NULL) {
            it->cb(it->arg, st, NULL, err);
        }
        free(it);
    }
}

bt_kvsd_lane_t *bt_kvsd_lane_create(struct event_base *base, bt_pbook_t *book,
                                    uint64_t delay_ms)
{
    bt_kvsd_lane_t *ln = calloc(1, sizeof(*ln));

    if (ln == NULL) {
        return NULL;
    }
    ln->book = book;
    ln->delay_ms = delay_ms;
    /* the FIFO bounds the work: the pool holds at most the running job */
    ln->pool = bt_tpool_create(base, 1, 4);
    if (ln->pool == NULL) {
        free(ln);
        return NULL;
    }
    return ln;
}

bt_status_t bt_kvsd_lane_push(bt_kvsd_lane_t *ln, bt_pbook_job_kind_t kind,
                              const char *model, int role,
                              bt_kvsd_lane_done_cb cb, void *arg)
{
    bt_kvsd_lane_item_t *it;

    if (ln->stopping) {
        return BT_ERR_SHUTDOWN;
    }
    it = calloc(1, sizeof(*it));
    if (it == NULL) {
        return BT_ERR_NO_MEMORY;
    }
    it->kind = kind;
    snprintf(it->model, sizeof(it->model), "%s", model);
    it->role = role;
    it->cb = cb;
    it->arg = arg;
    if (ln->tail != NULL) {
        ln->tail->next = it;
    } else {
        ln->head = it;
    }
    ln->tail = it;
    bt_kvsd_lane_kick(ln);
    return BT_OK;
}

bool bt_kvsd_lane_idle(const bt_kvsd_lane_t *ln)
{
    return ln->running == NULL && ln->head == NULL;
}

void bt_kvsd_lane_destroy(bt_kvsd_lane_t *ln)
{
    if (ln == NULL) {
        return;
    }
    /* the running job ends (its plan published: it is computed); the
     * queued ones are answered SHUTDOWN without planning */
    ln->stopping = true;
    bt_tpool_destroy(ln->pool);
    ln->pool = NULL;
    bt_kvsd_lane_kick(ln);
    free(ln);
}
