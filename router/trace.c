/* Request traces (trace.h): live ones on a list, finished ones in a ring
 * of `keep` that drops the oldest. */
#include "trace.h"

#include "base/array.h"
#include "base/clock.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct bt_traces {
    bt_list_t    live;          /* bt_trace_t.link, newest first */
    bt_trace_t **done;          /* ring of `keep` */
    size_t       keep;
    size_t       next;          /* the ring slot written next */
};

static void bt_trace_free(bt_trace_t *t)
{
    if (t != NULL) {
        free(t->spans);
        free(t);
    }
}

bt_traces_t *bt_traces_create(size_t keep)
{
    bt_traces_t *ts = calloc(1, sizeof(*ts));

    if (ts == NULL) {
        return NULL;
    }
    bt_list_init(&ts->live);
    ts->keep = keep > 0 ? keep : BT_TRACE_KEEP;
    ts->done = calloc(ts->keep, sizeof(*ts->done));
    if (ts->done == NULL) {
        free(ts);
        return NULL;
    }
    return ts;
}

void bt_traces_destroy(bt_traces_t *ts)
{
    bt_list_t *it, *next;
    size_t i;

    if (ts == NULL) {
        return;
    }
    bt_list_foreach_safe(it, next, &ts->live) {
        bt_trace_free(BT_CONTAINER_OF(it, bt_trace_t, link));
    }
    for (i = 0; i < ts->keep; i++) {
        bt_trace_free(ts->done[i]);
    }
    free(ts->done);
    free(ts);
}

bt_trace_t *bt_trace_begin(bt_traces_t *ts, const char *id)
{
    bt_trace_t *t;

    if (ts == NULL || (t = calloc(1, sizeof(*t))) == NULL) {
        return NULL;
    }
    snprintf(t->id, sizeof(t->id), "%s", id);
    t->t0_ns = bt_now_ns();
    t->admitted_unix_ms = bt_wall_ms();
    t->live = true;
    bt_list_add_head(&ts->live, &t->link);
    return t;
}

void bt_trace_add(bt_trace_t *t, const char *kind, const char *fmt, ...)
{
    bt_trace_event_t *e;
    bool end = strcmp(kind, "end") == 0;
    va_list ap;

    if (t == NULL) {
        return;
    }
    end = end && !t->ended;   /* a second end is an ordinary event */
    /* the last slot is the end's */
    if (t->n_events >= BT_TRACE_MAX_EVENTS ||
        (!end && t->n_events >= BT_TRACE_MAX_EVENTS - 1)) {
        t->dropped++;
        return;
    }
    t->ended |= end;
    e = &t->events[t->n_events++];
    e->offset_us = (bt_now_ns() - t->t0_ns) / 1000;
    snprintf(e->kind, sizeof(e->kind), "%s", kind);
    va_start(ap, fmt);
    vsnprintf(e->detail, sizeof(e->detail), fmt, ap);
    va_end(ap);
}

uint64_t bt_trace_offset_us(const bt_trace_t *t)
{
    return t != NULL ? (bt_now_ns() - t->t0_ns) / 1000 : 0;
}

void bt_trace_span(bt_trace_t *t, const bt_trace_span_t *span)
{
    if (t == NULL) {
        return;
    }
    if (t->n_spans >= BT_TRACE_MAX_SPANS ||
        BT_ARRAY_RESERVE(t->spans, t->cap_spans, t->n_spans + 1, 16) != BT_OK) {
        t->dropped++;
        return;
    }
    t->spans[t->n_spans++] = *span;
}

void bt_trace_finish(bt_traces_t *ts, bt_trace_t *t)
{
    if (ts == NULL || t == NULL || !t->live) {
        return;
    }
    bt_list_del(&t->link);
    t->live = false;
    bt_trace_free(ts->done[ts->next]);
    ts->done[ts->next] = t;
    ts->next = (ts->next + 1) % ts->keep;
}

const bt_trace_t *bt_traces_find(const bt_traces_t *ts, const char *id)
{
    const bt_list_t *it;
    const bt_trace_t *t;
    size_t i;

    if (ts == NULL || id == NULL) {
        return NULL;
    }
    for (it = ts->live.next; it != &ts->live; it = it->next) {
        t = BT_CONTAINER_OF(it, bt_trace_t, link);
        if (strcmp(t->id, id) == 0) {
            return t;
        }
    }
    /* newest first: a client may reuse its ids */
    for (i = 1; i <= ts->keep; i++) {
        t = ts->done[(ts->next + ts->keep - i) % ts->keep];
        if (t != NULL && strcmp(t->id, id) == 0) {
            return t;
        }
    }
    return NULL;
}
