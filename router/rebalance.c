/* The role controller's rule of rebalance.h. */
#include "rebalance.h"

#include <stdio.h>

#define RB_PREFILL 1u
#define RB_DECODE  2u
#define RB_BOTH    3u

/* Nodes other than `skip` that serve `role` and may keep taking it. */
static size_t bt_rebalance_others(const bt_rebalance_in_t *in, size_t skip,
                                  unsigned role)
{
    size_t n = 0;

    for (size_t i = 0; i < in->n_nodes; i++) {
        const bt_rebalance_node_t *nd = &in->nodes[i];

        n += i != skip && !nd->draining && (nd->serving & role) &&
             (nd->moving_to == 0 || (nd->moving_to & role));
    }
    return n;
}

/* The flexible node longest in role `from` that may move to `to`. */
static int bt_rebalance_pick(const bt_rebalance_cfg_t *cfg,
                             const bt_rebalance_in_t *in, unsigned from,
                             unsigned to)
{
    int best = -1;

    for (size_t i = 0; i < in->n_nodes; i++) {
        const bt_rebalance_node_t *nd = &in->nodes[i];
        unsigned leaving = from & ~to;

        if (!nd->flexible || nd->draining || nd->serving != from ||
            in->now_ms < nd->role_since_ms + cfg->dwell_ms) {
            continue;
        }
        if ((leaving & RB_PREFILL) && bt_rebalance_others(in, i, RB_PREFILL) == 0) {
            continue;
        }
        if ((leaving & RB_DECODE) && bt_rebalance_others(in, i, RB_DECODE) == 0) {
            continue;
        }
        if (best < 0 || nd->role_since_ms < in->nodes[best].role_since_ms) {
            best = (int)i;
        }
    }
    return best;
}

bt_rebalance_out_t bt_rebalance_decide(const bt_rebalance_cfg_t *cfg,
                                       const bt_rebalance_in_t *in)
{
    bt_rebalance_out_t o = { .node = -1 };
    size_t n_prefill = bt_rebalance_others(in, (size_t)-1, RB_PREFILL);
    double rate = cfg->prefill_rate * (double)(n_prefill > 0 ? n_prefill : 1);
    double wait_ms = rate > 0 ? (double)in->queued_prefill_tokens / rate : 0;
    double p = in->ttft_ms >= 0 ? in->ttft_ms / cfg->slo_ttft_ms : 0;
    double d = in->tpot_ms >= 0 ? in->tpot_ms / cfg->slo_tpot_ms : 0;
    bool more_prefill;
    unsigned steps[2][2];

    if (wait_ms / cfg->slo_ttft_ms > p) {
        p = wait_ms / cfg->slo_ttft_ms;
    }
    if (in->decode_waiting > 0 && d < 1.0 + (double)in->decode_waiting) {
        d = 1.0 + (double)in->decode_waiting;
    }
    o.prefill_pressure = p;
    o.decode_pressure = d;
    for (size_t i = 0; i < in->n_nodes; i++) {
        if (in->nodes[i].moving_to != 0) {
            snprintf(o.why, sizeof(o.why), "a move is under way");
            return o;
        }
    }
    if (in->last_move_ms != 0 && in->now_ms < in->last_move_ms + cfg->interval_ms) {
        snprintf(o.why, sizeof(o.why), "one move per interval");
        return o;
    }
    if (p > 1.0 && d <= cfg->headroom) {
        more_prefill = true;
    } else if (d > 1.0 && p <= cfg->headroom) {
        more_prefill = false;
    } else {
        snprintf(o.why, sizeof(o.why), "%s (prefill %.2f, decode %.2f of SLO)",
                 p <= 1.0 && d <= 1.0 ? "both meet their SLO"
                 : p > 1.0 && d > 1.0 ? "both miss their SLO"
                 : "the other side has no headroom", p, d);
        return o;
    }
    /* one step at a time, the role kept first: decode -> both -> prefill */
    steps[0][0] = more_prefill ? RB_DECODE : RB_PREFILL;
    steps[0][1] = RB_BOTH;
    steps[1][0] = RB_BOTH;
    steps[1][1] = more_prefill ? RB_PREFILL : RB_DECODE;
    for (int s = 0; s < 2 && o.node < 0; s++) {
        o.node = bt_rebalance_pick(cfg, in, steps[s][0], steps[s][1]);
        o.to = steps[s][1];
    }
    if (o.node < 0) {
        o.to = 0;
        snprintf(o.why, sizeof(o.why), "%s misses its SLO but no flexible node "
                 "may move (dwell, or the last of a role)",
                 more_prefill ? "prefill" : "decode");
        return o;
    }
    snprintf(o.why, sizeof(o.why), "%s: ttft %.0f ms of slo %.0f, prefill queue "
             "%llu tokens (~%.0f ms), tpot %.1f ms of slo %.0f, %llu waiting "
             "for decode (prefill %.2f, decode %.2f of SLO)",
             more_prefill ? "more prefill" : "more decode", in->ttft_ms,
             cfg->slo_ttft_ms, (unsigned long long)in->queued_prefill_tokens,
             wait_ms, in->tpot_ms, cfg->slo_tpot_ms,
             (unsigned long long)in->decode_waiting, p, d);
    return o;
}
