/* The role controller's rule (docs/internals/router.md "The role
 * controller"): from the last interval's mean TTFT and TPOT against their
 * SLOs and the queues on either side, which flexible node to move where,
 * if any. Pure: rebalance_tick.c gathers the inputs and carries out the
 * move. In short:
 *
 *   P = max(TTFT / slo_ttft, prefill queue wait / slo_ttft)
 *       (the queue's wait: queued tokens / (rate x prefill nodes))
 *   D = TPOT / slo_tpot, at least 1 + W when W requests wait for decode room
 *
 *   a move under way, or the last move less than an interval ago -> none
 *   P > 1 and D <= headroom  -> more prefill: decode -> both, else both -> prefill
 *   D > 1 and P <= headroom  -> more decode:  prefill -> both, else both -> decode
 *   otherwise (both meet, both miss, no headroom) -> none
 *
 * A node moves only after `dwell_ms` in its role, never leaves a role with
 * no other node serving it, and the one longest in its role goes first. */
#ifndef BT_ROUTER_REBALANCE_H
#define BT_ROUTER_REBALANCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    double   slo_ttft_ms, slo_tpot_ms;
    double   headroom;        /* the side giving a node must be under this x SLO */
    double   prefill_rate;    /* prefill tokens per ms (the queue's wait) */
    uint64_t dwell_ms;        /* a node keeps a role at least this long */
    uint64_t interval_ms;     /* at most one move per interval */
} bt_rebalance_cfg_t;

typedef struct {
    unsigned serving;         /* NodeRole: 1 prefill, 2 decode, 3 both */
    unsigned moving_to;       /* 0: not moving */
    bool     flexible;
    bool     draining;
    uint64_t role_since_ms;
} bt_rebalance_node_t;

typedef struct {
    double   ttft_ms, tpot_ms;     /* the interval's means; < 0: no sample */
    uint64_t queued_prefill_tokens; /* on the nodes serving prefill */
    uint64_t decode_waiting;        /* requests waiting for decode room */
    const bt_rebalance_node_t *nodes;
    size_t   n_nodes;
    uint64_t now_ms, last_move_ms;  /* last_move_ms 0: none yet */
} bt_rebalance_in_t;

typedef struct {
    int      node;            /* index in nodes; -1: no move */
    unsigned to;              /* NodeRole */
    double   prefill_pressure, decode_pressure;   /* P and D above */
    char     why[256];        /* the figures, for the log and the event */
} bt_rebalance_out_t;

bt_rebalance_out_t bt_rebalance_decide(const bt_rebalance_cfg_t *cfg,
                                       const bt_rebalance_in_t *in);

#endif
