/* The disaggregate-or-not rule of decide.h. */
#include "decide.h"

bool bt_decide_stalls(const bt_disagg_cfg_t *cfg, uint64_t uncached,
                      uint32_t chunk, uint32_t running)
{
    uint64_t step = chunk > 0 && chunk < uncached ? chunk : uncached;

    return cfg->slo_tpot_ms > 0 && cfg->prefill_rate > 0 && running > 0 &&
           (double)step / cfg->prefill_rate > cfg->slo_tpot_ms;
}

bt_decide_out_t bt_decide(const bt_disagg_cfg_t *cfg, const bt_decide_in_t *in)
{
    bt_decide_out_t o;

    o.xfer_ms = in->xfer_ms >= 0 ? in->xfer_ms : cfg->default_xfer_ms;
    o.cost_local = (double)in->queued_d + 2.0 * (double)in->uncached_d;
    o.cost_disagg = (double)in->queued_p + (double)in->uncached_p +
                    (in->p_decodes ? (double)in->uncached_p : 0.0) +
                    o.xfer_ms * cfg->prefill_rate;
    if (cfg->mode != BT_DISAGG_AUTO) {
        o.decision = cfg->mode == BT_DISAGG_ALWAYS ? BT_DECIDE_DISAGG
                                                   : BT_DECIDE_LOCAL;
        o.reason = BT_DECIDE_FORCED;
    } else if (bt_decide_stalls(cfg, in->uncached_d, in->chunk_d, in->running_d) &&
               !(in->p_decodes && in->running_p > 0)) {
        /* D's batch would miss TPOT; P's would not (it only prefills or
         * decodes nothing): the cost rule's tokens do not see that */
        o.decision = BT_DECIDE_DISAGG;
        o.reason = BT_DECIDE_TPOT;
    } else if (in->uncached_d < cfg->min_tokens) {
        o.decision = BT_DECIDE_LOCAL;
        o.reason = in->prompt_tokens >= cfg->min_tokens ? BT_DECIDE_CACHED
                                                        : BT_DECIDE_SHORT;
    } else if (o.cost_disagg < o.cost_local) {
        o.decision = BT_DECIDE_DISAGG;
        o.reason = BT_DECIDE_OFFLOAD;
    } else {
        o.decision = BT_DECIDE_LOCAL;
        o.reason = BT_DECIDE_BUSY;
    }
    return o;
}

const char *bt_decide_str(bt_decide_t d)
{
    return d == BT_DECIDE_LOCAL ? "local" : "disagg";
}

const char *bt_decide_reason_str(bt_decide_reason_t r)
{
    static const char *const names[BT_DECIDE_N_REASONS] = {
        "forced", "short", "cached", "offload", "busy", "no_local",
        "no_remote", "colocated", "tpot",
    };

    return (unsigned)r < BT_DECIDE_N_REASONS ? names[r] : "unknown";
}

const char *bt_disagg_mode_str(bt_disagg_mode_t m)
{
    return m == BT_DISAGG_ALWAYS ? "always" : m == BT_DISAGG_NEVER ? "never" : "auto";
}
