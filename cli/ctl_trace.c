/* batonctl trace REQUEST_ID: a request's timed events from the router
 * (baton.v1.Admin/GetTrace) as a waterfall: each event's offset from the
 * request's admission, the time to the next event, a bar on the request's
 * timeline, and what happened; then the prefill nodes' chunks and each
 * layer's KV transfer on the same timeline. -o json|yaml prints the
 * response. */
#include "ctl.h"

#include "admin.pb-c.h"

#include <stdio.h>
#include <string.h>

#define CTL_TRACE_BAR 24   /* characters of the timeline bar */

static void ctl_trace_bar(char *bar, double from, double to, double total)
{
    int a = total > 0 ? (int)(from / total * CTL_TRACE_BAR) : 0;
    int b = total > 0 ? (int)(to / total * CTL_TRACE_BAR) : 0;
    int i;

    if (a >= CTL_TRACE_BAR) {
        a = CTL_TRACE_BAR - 1;
    }
    if (b <= a) {
        b = a + 1;
    }
    for (i = 0; i < CTL_TRACE_BAR; i++) {
        bar[i] = i < a ? ' ' : i < b ? '#' : ' ';
    }
    bar[CTL_TRACE_BAR] = '\0';
}

static double ctl_ms(const json_t *o, const char *key)
{
    return (double)ctl_int(o, key) / 1000.0;
}

/* The latest time a span of `arr` ends (`key`), or `total`. */
static double ctl_trace_last(const json_t *arr, const char *key, double total)
{
    const json_t *x;
    size_t i;

    json_array_foreach(arr, i, x) {
        if (ctl_ms(x, key) > total) {
            total = ctl_ms(x, key);
        }
    }
    return total;
}

/* A span's end ("-" when the node did not see it) and bar. */
static void ctl_trace_span(char *bar, char *end, size_t end_size, double from,
                           double to, double total)
{
    if (to > 0) {
        snprintf(end, end_size, "%.3f", to);
    } else {
        snprintf(end, end_size, "-");
        to = from;
    }
    ctl_trace_bar(bar, from, to, total);
}

static void ctl_print_spans(const json_t *resp, double total)
{
    const json_t *chunks = json_object_get(resp, "chunks");
    const json_t *layers = json_object_get(resp, "layers");
    const json_t *x;
    char bar[CTL_TRACE_BAR + 1], end[32];
    size_t i;

    if (json_array_size(chunks) > 0) {
        printf("\nprefill chunks\n%12s %12s  %-*s  %7s  %s\n", "START_MS", "END_MS",
               CTL_TRACE_BAR, "TIMELINE", "PREFILL", "TOKENS");
    }
    json_array_foreach(chunks, i, x) {
        long long a = ctl_int(x, "start_token"), n = ctl_int(x, "tokens");

        ctl_trace_span(bar, end, sizeof(end), ctl_ms(x, "start_us"),
                       ctl_ms(x, "end_us"), total);
        printf("%12.3f %12s  %s  %7lld  %lld..%lld (%lld)\n", ctl_ms(x, "start_us"), end,
               bar, ctl_int(x, "attempt"), a, a + n - 1, n);
    }
    if (json_array_size(layers) > 0) {
        printf("\nlayer transfers\n%12s %12s  %-*s  %7s  %5s %12s\n", "POST_MS",
               "COMPLETE_MS", CTL_TRACE_BAR, "TIMELINE", "PREFILL", "LAYER", "BYTES");
    }
    json_array_foreach(layers, i, x) {
        ctl_trace_span(bar, end, sizeof(end), ctl_ms(x, "post_us"),
                       ctl_ms(x, "complete_us"), total);
        printf("%12.3f %12s  %s  %7lld  %5lld %12lld\n", ctl_ms(x, "post_us"), end, bar,
               ctl_int(x, "attempt"), ctl_int(x, "layer"), ctl_int(x, "bytes"));
    }
}

static void ctl_print_trace(const ctl_t *ctl, const json_t *resp)
{
    const json_t *events = json_object_get(resp, "events");
    size_t i, n = json_array_size(events);
    double total = 0;
    char when[64], bar[CTL_TRACE_BAR + 1];

    (void)ctl;
    if (n > 0) {
        total = (double)ctl_int(json_array_get(events, n - 1), "offset_us") / 1000.0;
    }
    /* a live request's spans may end after its last event */
    total = ctl_trace_last(json_object_get(resp, "chunks"), "end_us", total);
    total = ctl_trace_last(json_object_get(resp, "layers"), "complete_us", total);
    printf("request %s (%s), admitted %s, %.3f ms %s\n",
           ctl_str(resp, "request_id"),
           json_is_true(json_object_get(resp, "live")) ? "live" : "finished",
           ctl_time((uint64_t)ctl_int(resp, "admitted_unix_ms"), when, sizeof(when)),
           total, json_is_true(json_object_get(resp, "live")) ? "so far" : "in all");
    printf("%12s %12s  %-*s  %-14s %s\n", "OFFSET_MS", "DURATION_MS",
           CTL_TRACE_BAR, "TIMELINE", "EVENT", "DETAIL");
    for (i = 0; i < n; i++) {
        const json_t *e = json_array_get(events, i);
        double at = (double)ctl_int(e, "offset_us") / 1000.0;
        double next = i + 1 < n
            ? (double)ctl_int(json_array_get(events, i + 1), "offset_us") / 1000.0 : at;
        char dur[32];

        if (i + 1 < n) {
            snprintf(dur, sizeof(dur), "%.3f", next - at);
        } else {
            snprintf(dur, sizeof(dur), "-");
        }
        ctl_trace_bar(bar, at, next, total);
        printf("%12.3f %12s  %s  %-14s %s\n", at, dur, bar, ctl_str(e, "kind"),
               ctl_str(e, "detail"));
    }
    ctl_print_spans(resp, total);
    if (ctl_int(resp, "dropped_events") > 0) {
        printf("(%lld events past the router's bound were not kept)\n",
               ctl_int(resp, "dropped_events"));
    }
}

int ctl_cmd_trace(ctl_t *ctl, int n_args, char **args)
{
    Baton__V1__GetTraceRequest req = BATON__V1__GET_TRACE_REQUEST__INIT;
    json_t *resp;
    bt_rpc_code_t code;

    (void)n_args;
    req.request_id = args[0];
    if ((code = ctl_call(ctl, "/baton.v1.Admin/GetTrace", &req.base,
                         &baton__v1__get_trace_response__descriptor,
                         &resp)) != BT_RPC_OK) {
        return ctl_exit_for(code);
    }
    return ctl_finish(ctl, resp, ctl_print_trace);
}
