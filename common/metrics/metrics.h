/* Prometheus metrics: a registry of counters, gauges and histograms,
 * updated lock-free from any thread and rendered in the text exposition
 * format (version 0.0.4) for `/metrics`.
 *
 * A series is a (family name, label set) pair. Labels are given already
 * rendered as `key="value",key2="value2"` through bt_metrics_labels(), so
 * the hot path never formats strings. Series are created once (under a
 * lock) and live as long as the registry or until bt_metrics_remove; the
 * returned pointers are stable and updates are atomic.
 */
#ifndef BT_METRICS_H
#define BT_METRICS_H

#include "base/buf.h"
#include "base/status.h"

#include <stddef.h>
#include <stdint.h>

typedef struct bt_metrics bt_metrics_t;
typedef struct bt_metric_series bt_counter_t;
typedef struct bt_metric_series bt_gauge_t;
typedef struct bt_metric_series bt_histogram_t;

/* A daemon's registry (process_metrics.c): it already holds
 * `baton_build_info{version}` and the process_* series (resident memory,
 * open fds, CPU seconds, start time), refreshed from /proc at each render. */
bt_metrics_t *bt_metrics_create(void);
/* An empty registry (tests that compare whole expositions). */
bt_metrics_t *bt_metrics_create_bare(void);
/* `collect(arg)` runs at the start of each render (to refresh gauges read
 * from elsewhere); `collect_free(arg)` when the registry is destroyed. */
void bt_metrics_on_render(bt_metrics_t *reg, void (*collect)(void *arg),
                          void (*collect_free)(void *arg), void *arg);
void bt_metrics_destroy(bt_metrics_t *reg);

/* Renders `k1="v1",k2="v2"` from NULL-terminated key/value pairs with
 * values escaped (backslash, quote, newline). Returns `out` (empty string
 * when the pairs do not fit in `size`). */
const char *bt_metrics_labels(char *out, size_t size, ...);

/* Get or create a series. Names must match [a-zA-Z_:][a-zA-Z0-9_:]* and a
 * name keeps the type and help of its first registration; NULL on a bad
 * name, a type clash, or out of memory (logged). `labels` may be NULL. */
bt_counter_t *bt_metrics_counter(bt_metrics_t *reg, const char *name,
                                 const char *help, const char *labels);
bt_gauge_t *bt_metrics_gauge(bt_metrics_t *reg, const char *name,
                             const char *help, const char *labels);
/* `bounds`: n ascending upper bounds (copied); +Inf is implicit. */
bt_histogram_t *bt_metrics_histogram(bt_metrics_t *reg, const char *name,
                                     const char *help, const char *labels,
                                     const double *bounds, size_t n_bounds);

/* Removes a series from its family and frees it (a family left with no
 * series still renders its HELP and TYPE). The caller makes sure nothing
 * updates it any more; `series` is gone after this. NULL is ignored. */
void bt_metrics_remove(bt_metrics_t *reg, struct bt_metric_series *series);

void bt_counter_add(bt_counter_t *c, double v);   /* v >= 0 */
void bt_counter_inc(bt_counter_t *c);
void bt_gauge_set(bt_gauge_t *g, double v);
void bt_gauge_add(bt_gauge_t *g, double v);
void bt_histogram_observe(bt_histogram_t *h, double v);
double bt_metric_value(const bt_counter_t *series); /* counter or gauge;
                                                     * a histogram's sum */
uint64_t bt_histogram_count(const bt_histogram_t *h); /* observations */

/* Appends the whole exposition to `out`. */
bt_status_t bt_metrics_render(bt_metrics_t *reg, bt_buf_t *out);

/* Latency buckets in seconds, 100 µs .. 60 s, for request timings. */
extern const double bt_metrics_latency_bounds[];
extern const size_t bt_metrics_latency_n_bounds;

#endif
