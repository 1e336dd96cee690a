/* Per-peer KV transfer statistics of a prefill node (node_xstats.h). */
#include "node_xstats.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char     peer[BT_XSTATS_PEER_MAX + 1];
    uint64_t bytes, ops, errors;
    char     last_error[64];
    uint64_t last_error_ms;
    uint64_t last_used;              /* clock of the last record */
    uint32_t lat_us[BT_XSTATS_WINDOW];     /* tails */
    uint64_t act_us[BT_XSTATS_WINDOW];
    uint64_t win_bytes[BT_XSTATS_WINDOW];
    uint32_t n_win, next;            /* samples held, next slot */
    Baton__V1__TransferPeer msg;     /* the snapshot's copy */
    bt_counter_t   *m_bytes, *m_ops, *m_errors;  /* NULL without metrics */
    bt_histogram_t *m_tail;
} bt_xpeer_t;

struct bt_xstats {
    bt_xpeer_t   *peers[BT_XSTATS_MAX_PEERS];
    size_t        n;
    uint64_t      clock;
    bt_metrics_t *metrics;
};

bt_xstats_t *bt_xstats_create(bt_metrics_t *metrics)
{
    bt_xstats_t *xs = calloc(1, sizeof(bt_xstats_t));

    if (xs != NULL) {
        xs->metrics = metrics;
    }
    return xs;
}

/* A peer's series live while it is held: the peer dropped for a newer
 * one (bt_xstats_peer) takes its series out of /metrics, so the
 * exposition does not grow with every decode node ever seen; one seen
 * again starts its counters from 0 (a counter reset to Prometheus). */
static void bt_xstats_series(bt_xstats_t *xs, bt_xpeer_t *p)
{
    static const double tail_bounds[] = { 1e-4, 3e-4, 1e-3, 3e-3, 0.01,
                                          0.03, 0.1, 0.3, 1, 3 };
    char lab[160];

    if (xs->metrics == NULL) {
        return;
    }
    bt_metrics_labels(lab, sizeof(lab), "decode", p->peer, NULL);
    p->m_bytes = bt_metrics_counter(xs->metrics,
        "baton_node_kv_transfer_bytes_total",
        "kv bytes written to a decode node", lab);
    p->m_ops = bt_metrics_counter(xs->metrics, "baton_node_kv_transfers_total",
        "kv transfers (one per prefill) completed to a decode node", lab);
    p->m_errors = bt_metrics_counter(xs->metrics,
        "baton_node_kv_transfer_errors_total",
        "kv transfers to a decode node that failed", lab);
    p->m_tail = bt_metrics_histogram(xs->metrics,
        "baton_node_kv_transfer_tail_seconds",
        "last layer computed to the transfer complete", lab, tail_bounds,
        sizeof(tail_bounds) / sizeof(tail_bounds[0]));
}

static void bt_xstats_series_drop(bt_xstats_t *xs, bt_xpeer_t *p)
{
    if (xs->metrics == NULL) {
        return;
    }
    bt_metrics_remove(xs->metrics, p->m_bytes);
    bt_metrics_remove(xs->metrics, p->m_ops);
    bt_metrics_remove(xs->metrics, p->m_errors);
    bt_metrics_remove(xs->metrics, p->m_tail);
    p->m_bytes = p->m_ops = p->m_errors = NULL;
    p->m_tail = NULL;
}

void bt_xstats_destroy(bt_xstats_t *xs)
{
    if (xs == NULL) {
        return;
    }
    for (size_t i = 0; i < xs->n; i++) {
        free(xs->peers[i]);
    }
    free(xs);
}

static bt_xpeer_t *bt_xstats_peer(bt_xstats_t *xs, const char *peer)
{
    size_t oldest = 0;
    bt_xpeer_t *p;

    for (size_t i = 0; i < xs->n; i++) {
        if (strncmp(xs->peers[i]->peer, peer, BT_XSTATS_PEER_MAX) == 0) {
            return xs->peers[i];
        }
        if (xs->peers[i]->last_used < xs->peers[oldest]->last_used) {
            oldest = i;
        }
    }
    if (xs->n == BT_XSTATS_MAX_PEERS) {
        p = xs->peers[oldest];
        bt_xstats_series_drop(xs, p);
        memset(p, 0, sizeof(*p));
    } else if ((p = calloc(1, sizeof(*p))) != NULL) {
        xs->peers[xs->n++] = p;
    } else {
        return NULL;
    }
    snprintf(p->peer, sizeof(p->peer), "%s", peer);
    bt_xstats_series(xs, p);
    return p;
}

void bt_xstats_record(bt_xstats_t *xs, const char *peer, uint64_t bytes,
                      uint64_t active_us, uint64_t tail_us,
                      bt_status_t status, uint64_t now_unix_ms)
{
    bt_xpeer_t *p;

    if (status == BT_ERR_CANCELLED) {
        return; /* the request went away: not the transfer's doing */
    }
    p = bt_xstats_peer(xs, peer != NULL ? peer : "");
    if (p == NULL) {
        return; /* out of memory: statistics only */
    }
    p->last_used = ++xs->clock;
    if (status != BT_OK) {
        p->errors++;
        snprintf(p->last_error, sizeof(p->last_error), "%s",
                 bt_status_str(status));
        p->last_error_ms = now_unix_ms;
        if (p->m_errors != NULL) {
            bt_counter_inc(p->m_errors);
        }
        return;
    }
    p->ops++;
    p->bytes += bytes;
    if (p->m_ops != NULL) {
        bt_counter_inc(p->m_ops);
        bt_counter_add(p->m_bytes, (double)bytes);
    }
    if (p->m_tail != NULL) {
        bt_histogram_observe(p->m_tail, (double)tail_us / 1e6);
    }
    p->lat_us[p->next] = tail_us > UINT32_MAX ? UINT32_MAX : (uint32_t)tail_us;
    p->act_us[p->next] = active_us;
    p->win_bytes[p->next] = bytes;
    p->next = (p->next + 1) % BT_XSTATS_WINDOW;
    if (p->n_win < BT_XSTATS_WINDOW) {
        p->n_win++;
    }
}

static int bt_xstats_cmp(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

    return x < y ? -1 : x > y;
}

size_t bt_xstats_snapshot(bt_xstats_t *xs, Baton__V1__TransferPeer **out,
                          size_t max)
{
    size_t n = 0;

    for (size_t i = 0; i < xs->n && n < max; i++) {
        bt_xpeer_t *p = xs->peers[i];
        Baton__V1__TransferPeer *m = &p->msg;
        uint32_t sorted[BT_XSTATS_WINDOW];
        uint64_t busy_us = 0, win_bytes = 0;

        baton__v1__transfer_peer__init(m);
        m->decode_node = p->peer;
        m->bytes = p->bytes;
        m->ops = p->ops;
        m->errors = p->errors;
        m->last_error = p->last_error;
        m->last_error_unix_ms = p->last_error_ms;
        if (p->n_win > 0) {
            for (uint32_t k = 0; k < p->n_win; k++) {
                sorted[k] = p->lat_us[k];
                busy_us += p->act_us[k];
                win_bytes += p->win_bytes[k];
            }
            qsort(sorted, p->n_win, sizeof(sorted[0]), bt_xstats_cmp);
            /* nearest rank */
            m->latency_p50_ms = sorted[(p->n_win * 50 + 99) / 100 - 1] / 1e3;
            m->latency_p99_ms = sorted[(p->n_win * 99 + 99) / 100 - 1] / 1e3;
            m->bandwidth_gbps = busy_us > 0 ? (double)win_bytes / busy_us / 1e3
                                            : 0;
        }
        out[n++] = m;
    }
    return n;
}
