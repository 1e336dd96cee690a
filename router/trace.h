/* Request tracing: per request, a bounded list of timed events (admitted,
 * queued, pair chosen with its scores, reservation, prefill, first token,
 * failovers, lease renewals, end), kept while the request lives and for
 * the last `keep` finished ones; beside the events, the prefill nodes'
 * chunks and layer transfers (spans, from PrefillResult). baton.v1.Admin/
 * GetTrace reads it (admin.c); `batonctl trace` prints it. Memory is
 * bounded: at most BT_TRACE_MAX_EVENTS events and BT_TRACE_MAX_SPANS spans
 * per request (later ones are counted, the end is always kept) and `keep`
 * finished requests. */
#ifndef BT_ROUTER_TRACE_H
#define BT_ROUTER_TRACE_H

#include "base/list.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BT_TRACE_MAX_EVENTS 64
#define BT_TRACE_KIND_MAX   23
#define BT_TRACE_DETAIL_MAX 167
#define BT_TRACE_KEEP       1024   /* finished requests kept by default */
#define BT_TRACE_MAX_SPANS  256    /* chunks + layer transfers per request */

typedef struct {
    uint64_t offset_us;                        /* from admission */
    char     kind[BT_TRACE_KIND_MAX + 1];      /* "admitted", "queued", ... */
    char     detail[BT_TRACE_DETAIL_MAX + 1];
} bt_trace_event_t;

/* A prefill chunk or a layer's KV transfer, on the request's timeline. */
typedef enum { BT_TRACE_SPAN_CHUNK = 0, BT_TRACE_SPAN_LAYER } bt_trace_span_kind_t;

typedef struct {
    uint8_t  kind;                             /* bt_trace_span_kind_t */
    uint8_t  attempt;                          /* the request's prefill, from 1 */
    uint32_t index;                            /* chunk: first token; layer: number */
    uint32_t tokens;                           /* chunk */
    uint64_t bytes;                            /* layer */
    uint64_t start_us, end_us;                 /* from admission; layer: post,
                                                * complete (0: not seen) */
} bt_trace_span_t;

typedef struct bt_trace {
    bt_list_t         link;                    /* the live list */
    char              id[65];
    uint64_t          t0_ns;
    uint64_t          admitted_unix_ms;
    bool              live;                    /* on the live list */
    bool              ended;                   /* its "end" event came */
    uint32_t          dropped;                 /* events past the bound */
    uint32_t          n_events;
    bt_trace_event_t  events[BT_TRACE_MAX_EVENTS];
    bt_trace_span_t  *spans;                   /* owned, NULL until the first */
    size_t            n_spans, cap_spans;
} bt_trace_t;

typedef struct bt_traces bt_traces_t;

/* keep: finished requests to keep (0: BT_TRACE_KEEP). NULL: no memory. */
bt_traces_t *bt_traces_create(size_t keep);
void bt_traces_destroy(bt_traces_t *ts);
/* A live trace for request `id`, its clock starting now; NULL without
 * memory (tracing is best effort: every call below takes NULL). */
bt_trace_t *bt_trace_begin(bt_traces_t *ts, const char *id);
void bt_trace_add(bt_trace_t *t, const char *kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Microseconds since admission, for spans; 0 for NULL. */
uint64_t bt_trace_offset_us(const bt_trace_t *t);
/* Appends a span (past BT_TRACE_MAX_SPANS or without memory: counted in
 * `dropped`). */
void bt_trace_span(bt_trace_t *t, const bt_trace_span_t *span);
/* The request ended: its trace joins the finished ones (the oldest
 * finished one makes room). */
void bt_trace_finish(bt_traces_t *ts, bt_trace_t *t);
/* The live trace of `id`, else the newest finished one; NULL: none. */
const bt_trace_t *bt_traces_find(const bt_traces_t *ts, const char *id);

#endif
