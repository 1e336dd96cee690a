/* A prefill node's KV transfer statistics per decode peer, reported to
 * the router in NodeStatus.transfers (registry.proto TransferPeer) and
 * from there by Admin.TransferHealth, per (prefill, decode) pair.
 *
 * Counts are cumulative; latency percentiles (of the tail) and bandwidth
 * (bytes over active time) cover the last BT_XSTATS_WINDOW transfers to
 * the peer, exactly (a ring of samples).
 * At most BT_XSTATS_MAX_PEERS peers: the one idle longest makes room.
 * Loop thread only. */
#ifndef BT_NODE_XSTATS_H
#define BT_NODE_XSTATS_H

#include "base/status.h"
#include "metrics/metrics.h"
#include "registry.pb-c.h"

#include <stddef.h>
#include <stdint.h>

#define BT_XSTATS_WINDOW    256
#define BT_XSTATS_MAX_PEERS 64

typedef struct bt_xstats bt_xstats_t;

/* With `metrics` (may be NULL), each peer also gets Prometheus series
 * labelled decode="<id>": baton_node_kv_transfer_bytes_total,
 * baton_node_kv_transfers_total, baton_node_kv_transfer_errors_total and
 * the histogram baton_node_kv_transfer_tail_seconds; the peer that makes
 * room for a newer one takes its series out of the registry. */
bt_xstats_t *bt_xstats_create(bt_metrics_t *metrics);
void bt_xstats_destroy(bt_xstats_t *xs); /* NULL-safe */

#define BT_XSTATS_PEER_MAX  64   /* bytes of a decode node id */

/* One transfer to decode node `peer` (its node id; longer ids are cut)
 * ended with `status` (BT_OK or why it failed): `bytes` written over
 * `active_us` (first post to the end; layers stream while later ones
 * compute) of which `tail_us` came after the last layer was computed (the
 * completion message sent → its end: what the transfer adds to the time
 * to first token). */
void bt_xstats_record(bt_xstats_t *xs, const char *peer, uint64_t bytes,
                      uint64_t active_us, uint64_t tail_us,
                      bt_status_t status, uint64_t now_unix_ms);

/* Fills out[0..] (at most `max`) with one TransferPeer per peer, the
 * messages and their strings borrowed from `xs` until the next call.
 * Returns how many. */
size_t bt_xstats_snapshot(bt_xstats_t *xs, Baton__V1__TransferPeer **out,
                          size_t max);

#endif
