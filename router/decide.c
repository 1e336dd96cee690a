/* The disaggregate-or-not rule of decide.h. */
#include "decide.h"

double bt_decide_rate(const bt_disagg_cfg_t *cfg, double measured)
{
    return measured > 0 ? measured : cfg->prefill_rate;
}

double bt_decide_seq_budget(const bt_disagg_cfg_t *cfg, uint64_t max_tokens,
                            uint64_t generated, double ttft_ms,
                            double decoding_ms, double step_ms)
{
    double b;

    if (max_tokens <= 1 || generated >= max_tokens ||
        (cfg->slo_ttft_ms > 0 && ttft_ms > cfg->slo_ttft_ms)) {
        return 0.0;
    }
    b = cfg->slo_tpot_ms * (double)(max_tokens - 1) - decoding_ms -
        step_ms * (double)(max_tokens - generated);
    return b > 0 ? b : 0.0;
}

bool bt_decide_stalls(const bt_disagg_cfg_t *cfg, uint64_t tokens, double rate,
                      double budget_ms)
{
    rate = bt_decide_rate(cfg, rate);
    return cfg->slo_tpot_ms > 0 && rate > 0 && (double)tokens / rate > budget_ms;
}

bt_decide_out_t bt_decide(const bt_disagg_cfg_t *cfg, const bt_decide_in_t *in)
{
    const uint64_t work_d = in->queued_d + in->uncached_d;
    const uint64_t work_p = in->queued_p + in->uncached_p;
    bt_decide_out_t o;

    o.xfer_ms = in->xfer_ms >= 0 ? in->xfer_ms : cfg->default_xfer_ms;
    o.rate_d = bt_decide_rate(cfg, in->rate_d);
    o.rate_p = bt_decide_rate(cfg, in->rate_p);
    o.stall_d_ms = o.rate_d > 0 ? (double)work_d / o.rate_d : 0.0;
    o.stall_p_ms = o.rate_p > 0 ? (double)work_p / o.rate_p : 0.0;
    o.cost_local = (double)(work_d + in->uncached_d);
    o.cost_disagg = (double)(work_p + (in->p_decodes ? in->uncached_p : 0)) +
                    o.xfer_ms * cfg->prefill_rate;
    if (cfg->mode != BT_DISAGG_AUTO) {
        o.decision = cfg->mode == BT_DISAGG_ALWAYS ? BT_DECIDE_DISAGG
                                                   : BT_DECIDE_LOCAL;
        o.reason = BT_DECIDE_FORCED;
    } else if (bt_decide_stalls(cfg, work_d, in->rate_d, in->budget_d_ms) &&
               !(in->p_decodes &&
                 bt_decide_stalls(cfg, work_p, in->rate_p, in->budget_p_ms))) {
        /* D's sequences would miss their TPOT; P's would not (it decodes
         * nothing, or has room): the costs do not see that */
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
