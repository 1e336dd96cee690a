#include "metrics.h"

#include "base/log.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum {
    BT_METRIC_COUNTER,
    BT_METRIC_GAUGE,
    BT_METRIC_HISTOGRAM,
} bt_metric_type_t;

/* A double stored as its bits, updated with compare-and-swap. */
typedef _Atomic uint64_t bt_atomic_double_t;

struct bt_metric_series {
    struct bt_metric_series *next;      /* in its family, creation order */
    char                    *labels;    /* rendered, "" for none */
    bt_atomic_double_t       value;     /* counter / gauge; histogram sum */
    size_t                   n_bounds;
    double                  *bounds;
    _Atomic uint64_t        *buckets;   /* n_bounds + 1 (last is +Inf) */
    _Atomic uint64_t         count;
};

typedef struct bt_metric_family {
    struct bt_metric_family *next;
    char                    *name;
    char                    *help;
    bt_metric_type_t         type;
    struct bt_metric_series *series;
    struct bt_metric_series *last;
} bt_metric_family_t;

struct bt_metrics {
    pthread_mutex_t       lock;      /* guards the lists, not the values */
    bt_metric_family_t   *families;
    bt_metric_family_t   *last;
    void                (*collect)(void *arg);   /* before each render */
    void                (*collect_free)(void *arg);
    void                 *collect_arg;
};

const double bt_metrics_latency_bounds[] = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
};
const size_t bt_metrics_latency_n_bounds =
    sizeof(bt_metrics_latency_bounds) / sizeof(bt_metrics_latency_bounds[0]);

static double bt_bits_to_double(uint64_t bits)
{
    double d;

    memcpy(&d, &bits, sizeof(d));
    return d;
}

static uint64_t bt_double_to_bits(double d)
{
    uint64_t bits;

    memcpy(&bits, &d, sizeof(bits));
    return bits;
}

static void bt_atomic_double_add(bt_atomic_double_t *a, double v)
{
    uint64_t old = atomic_load_explicit(a, memory_order_relaxed);

    while (!atomic_compare_exchange_weak_explicit(
               a, &old, bt_double_to_bits(bt_bits_to_double(old) + v),
               memory_order_relaxed, memory_order_relaxed)) {
    }
}

bt_metrics_t *bt_metrics_create_bare(void)
{
    bt_metrics_t *reg = calloc(1, sizeof(*reg));

    if (reg != NULL) {
        pthread_mutex_init(&reg->lock, NULL);
    }
    return reg;
}

void bt_metrics_on_render(bt_metrics_t *reg, void (*collect)(void *arg),
                          void (*collect_free)(void *arg), void *arg)
{
    reg->collect = collect;
    reg->collect_free = collect_free;
    reg->collect_arg = arg;
}

static void bt_metric_series_free(struct bt_metric_series *s)
{
    free(s->labels);
    free(s->bounds);
    free((void *)s->buckets);
    free(s);
}

void bt_metrics_destroy(bt_metrics_t *reg)
{
    bt_metric_family_t *f, *fnext;
    struct bt_metric_series *s, *snext;

    if (reg == NULL) {
        return;
    }
    for (f = reg->families; f != NULL; f = fnext) {
        fnext = f->next;
        for (s = f->series; s != NULL; s = snext) {
            snext = s->next;
            bt_metric_series_free(s);
        }
        free(f->name);
        free(f->help);
        free(f);
    }
    if (reg->collect_free != NULL) {
        reg->collect_free(reg->collect_arg);
    }
    pthread_mutex_destroy(&reg->lock);
    free(reg);
}

const char *bt_metrics_labels(char *out, size_t size, ...)
{
    va_list ap;
    size_t o = 0;
    const char *key;
    bool first = true;

    va_start(ap, size);
    while ((key = va_arg(ap, const char *)) != NULL) {
        const char *val = va_arg(ap, const char *);
        const char *p;
        int n;

        n = snprintf(out + o, size - o, "%s%s=\"", first ? "" : ",", key);
        if (n < 0 || (size_t)n >= size - o) {
            goto overflow;
        }
        o += (size_t)n;
        for (p = val; *p != '\0'; p++) {
            const char *esc = *p == '\\' ? "\\\\" : *p == '"' ? "\\\"" :
                              *p == '\n' ? "\\n" : NULL;
            size_t len = esc ? 2 : 1;

            if (o + len + 2 > size) {
                goto overflow;
            }
            if (esc) {
                memcpy(out + o, esc, 2);
            } else {
                out[o] = *p;
            }
            o += len;
        }
        out[o++] = '"';
        out[o] = '\0';
        first = false;
    }
    va_end(ap);
    if (first && size > 0) {
        out[0] = '\0';
    }
    return out;

overflow:
    va_end(ap);
    if (size > 0) {
        out[0] = '\0';
    }
    return out;
}

static bool bt_metric_name_valid(const char *name)
{
    const char *p;

    if (name == NULL || name[0] == '\0' || (name[0] >= '0' && name[0] <= '9')) {
        return false;
    }
    for (p = name; *p != '\0'; p++) {
        char c = *p;

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '_' || c == ':')) {
            return false;
        }
    }
    return true;
}

static struct bt_metric_series *
bt_metrics_get(bt_metrics_t *reg, const char *name, const char *help,
               const char *labels, bt_metric_type_t type,
               const double *bounds, size_t n_bounds)
{
    bt_metric_family_t *f;
    struct bt_metric_series *s = NULL;

    if (!bt_metric_name_valid(name)) {
        bt_error("metrics: invalid name '%s'", name ? name : "(null)");
        return NULL;
    }
    if (labels == NULL) {
        labels = "";
    }
    pthread_mutex_lock(&reg->lock);
    for (f = reg->families; f != NULL; f = f->next) {
        if (strcmp(f->name, name) == 0) {
            break;
        }
    }
    if (f != NULL && f->type != type) {
        bt_error("metrics: %s registered twice with different types", name);
        goto out;
    }
    if (f == NULL) {
        f = calloc(1, sizeof(*f));
        if (f == NULL) {
            goto out;
        }
        f->name = strdup(name);
        f->help = strdup(help ? help : "");
        f->type = type;
        if (f->name == NULL || f->help == NULL) {
            free(f->name);
            free(f->help);
            free(f);
            goto out;
        }
        if (reg->last) {
            reg->last->next = f;
        } else {
            reg->families = f;
        }
        reg->last = f;
    }
    for (s = f->series; s != NULL; s = s->next) {
        if (strcmp(s->labels, labels) == 0) {
            goto out;
        }
    }
    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        goto out;
    }
    s->labels = strdup(labels);
    if (type == BT_METRIC_HISTOGRAM) {
        s->n_bounds = n_bounds;
        s->bounds = malloc((n_bounds ? n_bounds : 1) * sizeof(double));
        s->buckets = calloc(n_bounds + 1, sizeof(*s->buckets));
        if (s->bounds != NULL) {
            memcpy(s->bounds, bounds, n_bounds * sizeof(double));
        }
    }
    if (s->labels == NULL ||
        (type == BT_METRIC_HISTOGRAM && (s->bounds == NULL || s->buckets == NULL))) {
        bt_metric_series_free(s);
        s = NULL;
        goto out;
    }
    if (f->last) {
        f->last->next = s;
    } else {
        f->series = s;
    }
    f->last = s;
out:
    pthread_mutex_unlock(&reg->lock);
    return s;
}

bt_counter_t *bt_metrics_counter(bt_metrics_t *reg, const char *name,
                                 const char *help, const char *labels)
{
    return bt_metrics_get(reg, name, help, labels, BT_METRIC_COUNTER, NULL, 0);
}

bt_gauge_t *bt_metrics_gauge(bt_metrics_t *reg, const char *name,
                             const char *help, const char *labels)
{
    return bt_metrics_get(reg, name, help, labels, BT_METRIC_GAUGE, NULL, 0);
}

bt_histogram_t *bt_metrics_histogram(bt_metrics_t *reg, const char *name,
                                     const char *help, const char *labels,
                                     const double *bounds, size_t n_bounds)
{
    size_t i;

    for (i = 1; i < n_bounds; i++) {
        if (!(bounds[i] > bounds[i - 1])) {
            bt_error("metrics: histogram %s bounds are not ascending", name);
            return NULL;
        }
    }
    return bt_metrics_get(reg, name, help, labels, BT_METRIC_HISTOGRAM,
                          bounds, n_bounds);
}

void bt_metrics_remove(bt_metrics_t *reg, struct bt_metric_series *series)
{
    bt_metric_family_t *f;
    struct bt_metric_series **pp, *prev;

    if (series == NULL) {
        return;
    }
    pthread_mutex_lock(&reg->lock);
    for (f = reg->families; f != NULL; f = f->next) {
        prev = NULL;
        for (pp = &f->series; *pp != NULL; prev = *pp, pp = &(*pp)->next) {
            if (*pp != series) {
                continue;
            }
            *pp = series->next;
            if (f->last == series) {
                f->last = prev;
            }
            pthread_mutex_unlock(&reg->lock);
            bt_metric_series_free(series);
            return;
        }
    }
    pthread_mutex_unlock(&reg->lock);
}

void bt_counter_add(bt_counter_t *c, double v)
{
    if (v > 0) {
        bt_atomic_double_add(&c->value, v);
    }
}

void bt_counter_inc(bt_counter_t *c)
{
    bt_atomic_double_add(&c->value, 1.0);
}

void bt_gauge_set(bt_gauge_t *g, double v)
{
    atomic_store_explicit(&g->value, bt_double_to_bits(v), memory_order_relaxed);
}

void bt_gauge_add(bt_gauge_t *g, double v)
{
    bt_atomic_double_add(&g->value, v);
}

void bt_histogram_observe(bt_histogram_t *h, double v)
{
    size_t i = 0;

    while (i < h->n_bounds && v > h->bounds[i]) {
        i++;
    }
    atomic_fetch_add_explicit(&h->buckets[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
    bt_atomic_double_add(&h->value, v);
}

double bt_metric_value(const bt_counter_t *series)
{
    return bt_bits_to_double(atomic_load_explicit(
        (bt_atomic_double_t *)&series->value, memory_order_relaxed));
}

uint64_t bt_histogram_count(const bt_histogram_t *h)
{
    return atomic_load_explicit((_Atomic uint64_t *)&h->count,
                                memory_order_relaxed);
}

static const char *bt_metric_type_name(bt_metric_type_t t)
{
    return t == BT_METRIC_COUNTER ? "counter" :
           t == BT_METRIC_GAUGE ? "gauge" : "histogram";
}

/* Prometheus number formatting: +Inf, -Inf, NaN, else the shortest %g
 * form that reads back as the same double, so a bucket bound of 0.025
 * prints "0.025" (what dashboards write in le="..."), never
 * "0.025000000000000001". */
static void bt_metric_fmt(char *out, size_t size, double v)
{
    if (isnan(v)) {
        snprintf(out, size, "NaN");
    } else if (isinf(v)) {
        snprintf(out, size, v > 0 ? "+Inf" : "-Inf");
    } else {
        for (int digits = 15; digits <= 17; digits++) {
            snprintf(out, size, "%.*g", digits, v);
            if (strtod(out, NULL) == v) {
                break;
            }
        }
    }
}

/* HELP text escapes backslash and newline. */
static bt_status_t bt_metric_help(bt_buf_t *out, const char *help)
{
    bt_status_t status = BT_OK;
    const char *p;

    for (p = help; *p != '\0' && status == BT_OK; p++) {
        if (*p == '\\') {
            status = bt_buf_append_str(out, "\\\\");
        } else if (*p == '\n') {
            status = bt_buf_append_str(out, "\\n");
        } else {
            status = bt_buf_append_byte(out, *p);
        }
    }
    return status;
}

static bt_status_t bt_metric_render_histogram(bt_buf_t *out, const char *name,
                                              struct bt_metric_series *s)
{
    const char *sep = s->labels[0] ? "," : "";
    uint64_t cumulative = 0;
    bt_status_t status = BT_OK;
    char num[64];
    size_t i;

    for (i = 0; i <= s->n_bounds && status == BT_OK; i++) {
        cumulative += atomic_load_explicit(&s->buckets[i], memory_order_relaxed);
        bt_metric_fmt(num, sizeof(num),
                      i < s->n_bounds ? s->bounds[i] : INFINITY);
        status = bt_buf_printf(out, "%s_bucket{%s%sle=\"%s\"} %llu\n", name,
                               s->labels, sep, num,
                               (unsigned long long)cumulative);
    }
    bt_metric_fmt(num, sizeof(num), bt_metric_value(s));
    if (status == BT_OK) {
        status = bt_buf_printf(out, "%s_sum%s%s%s %s\n", name,
                               s->labels[0] ? "{" : "", s->labels,
                               s->labels[0] ? "}" : "", num);
    }
    if (status == BT_OK) {
        status = bt_buf_printf(out, "%s_count%s%s%s %llu\n", name,
                               s->labels[0] ? "{" : "", s->labels,
                               s->labels[0] ? "}" : "",
                               (unsigned long long)cumulative);
    }
    return status;
}

bt_status_t bt_metrics_render(bt_metrics_t *reg, bt_buf_t *out)
{
    bt_metric_family_t *f;
    struct bt_metric_series *s;
    bt_status_t status = BT_OK;
    char num[64];

    if (reg->collect != NULL) {
        reg->collect(reg->collect_arg);
    }
    pthread_mutex_lock(&reg->lock);
    for (f = reg->families; f != NULL && status == BT_OK; f = f->next) {
        status = bt_buf_printf(out, "# HELP %s ", f->name);
        if (status == BT_OK) {
            status = bt_metric_help(out, f->help);
        }
        if (status == BT_OK) {
            status = bt_buf_printf(out, "\n# TYPE %s %s\n", f->name,
                                   bt_metric_type_name(f->type));
        }
        for (s = f->series; s != NULL && status == BT_OK; s = s->next) {
            if (f->type == BT_METRIC_HISTOGRAM) {
                status = bt_metric_render_histogram(out, f->name, s);
                continue;
            }
            bt_metric_fmt(num, sizeof(num), bt_metric_value(s));
            status = bt_buf_printf(out, "%s%s%s%s %s\n", f->name,
                                   s->labels[0] ? "{" : "", s->labels,
                                   s->labels[0] ? "}" : "", num);
        }
    }
    pthread_mutex_unlock(&reg->lock);
    return status;
}
