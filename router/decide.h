/* Per request: disaggregated prefill (P prefills, the KV moves to D) or
 * local prefill (D prefills itself, no transfer). Pure: select.c gathers
 * the inputs from the registry and the router. The rule, in prefill
 * tokens of work:
 *
 *   cost_local  = Q_D + U_D + U_D                (D decodes)
 *   cost_disagg = Q_P + U_P + (P decodes ? U_P : 0) + X_ms * cfg rate
 *
 * U_n is the prompt node n must compute (its own pool and the kvstore
 * hold the rest), Q_n the prefill tokens queued or assigned on it, X_ms
 * the transfer tail measured for the pair (or the default when none is),
 * the configured rate the prefill tokens per ms that turn it into tokens.
 * A prefill on a node that decodes holds up its decode batch for as long
 * again, hence the second U term. In auto mode, first the TPOT guard: the
 * prefills D would run before this one is done, (Q_D + U_D) / rate_D ms
 * at D's measured prefill rate (the configured one until D reports one),
 * stall every sequence D decodes (or will: placed there, its prefill
 * elsewhere); when that is more than D's stall budget (the least any of
 * them can absorb and keep its TPOT SLO, select.h) → disagg ("tpot";
 * unless P would stall a batch of its own past its budget too). Then
 * U_D < min_tokens → local ("short", or "cached" when D's cached prefix
 * brought it there); else disagg when cost_disagg < cost_local
 * ("offload"), local otherwise ("busy"). */
#ifndef BT_ROUTER_DECIDE_H
#define BT_ROUTER_DECIDE_H

#include <stdbool.h>
#include <stdint.h>

typedef enum {
    BT_DISAGG_AUTO = 0,
    BT_DISAGG_ALWAYS,
    BT_DISAGG_NEVER,
} bt_disagg_mode_t;

typedef struct {
    bt_disagg_mode_t mode;
    uint64_t min_tokens;       /* uncached prompt below this stays local */
    double   prefill_rate;     /* prefill tokens per ms: a transfer's ms in tokens,
                                * and a node's speed until it measured its own */
    double   default_xfer_ms;  /* transfer tail when the pair has none measured */
    double   slo_tpot_ms;      /* the TPOT SLO the guard keeps; 0: no guard */
    double   slo_ttft_ms;      /* a request whose first token came later (or
                                * is later already) is not protected; 0: all are */
} bt_disagg_cfg_t;

typedef enum {
    BT_DECIDE_DISAGG = 0,
    BT_DECIDE_LOCAL,
} bt_decide_t;

typedef enum {
    BT_DECIDE_FORCED = 0,   /* --disagg always|never */
    BT_DECIDE_SHORT,        /* the uncached prompt is short */
    BT_DECIDE_CACHED,       /* long prompt, but D holds enough of it */
    BT_DECIDE_OFFLOAD,      /* P does it for less */
    BT_DECIDE_BUSY,         /* P's queue and the transfer cost more */
    BT_DECIDE_NO_LOCAL,     /* no node both prefills and decodes it */
    BT_DECIDE_NO_REMOTE,    /* no other node prefills it */
    BT_DECIDE_COLOCATED,    /* the chosen prefill node decodes too */
    BT_DECIDE_TPOT,         /* a local prefill would stall D's sequences past their TPOT SLO */
    BT_DECIDE_N_REASONS
} bt_decide_reason_t;

typedef struct {
    uint64_t prompt_tokens;
    uint64_t uncached_d, uncached_p;  /* U_D, U_P */
    uint64_t queued_d, queued_p;      /* Q_D, Q_P */
    bool     p_decodes;               /* P is a `--role both` node */
    double   xfer_ms;                 /* measured for (P, D); < 0: none */
    double   rate_d, rate_p;          /* measured prefill tokens per ms (the
                                       * guard's stall times); 0: none */
    double   budget_d_ms, budget_p_ms; /* stall budgets (select.h); INFINITY:
                                       * the node decodes nothing */
} bt_decide_in_t;

typedef struct {
    bt_decide_t        decision;
    bt_decide_reason_t reason;
    double             cost_local, cost_disagg;   /* in tokens */
    double             xfer_ms;                   /* the one used */
    double             rate_d, rate_p;            /* the ones used (bt_decide_rate) */
    double             stall_d_ms, stall_p_ms;    /* (Q + U) / rate of each side */
} bt_decide_out_t;

/* Both choices exist (D can prefill, another node P can too). */
bt_decide_out_t bt_decide(const bt_disagg_cfg_t *cfg, const bt_decide_in_t *in);

/* The TPOT guard: do prefills of `tokens` at `rate` tokens per ms (0:
 * cfg->prefill_rate) take longer than `budget_ms`? Never without an SLO. */
bool bt_decide_stalls(const bt_disagg_cfg_t *cfg, uint64_t tokens, double rate,
                      double budget_ms);

/* The rate the rule uses: the measured one, else cfg->prefill_rate. */
double bt_decide_rate(const bt_disagg_cfg_t *cfg, double measured);

/* One request's part of a node's stall budget (select.h): what it can
 * still absorb, slo_tpot x (max_tokens - 1) less the ms since its first
 * token (decoding_ms) and one decode step (step_ms) per token left; 0 when
 * there is nothing of it to protect: one token, none left, nothing left
 * over, or its first token (ttft_ms: when it came, or the soonest it can)
 * past slo_ttft (when set). */
double bt_decide_seq_budget(const bt_disagg_cfg_t *cfg, uint64_t max_tokens,
                            uint64_t generated, double ttft_ms,
                            double decoding_ms, double step_ms);

/* "disagg", "local" */
const char *bt_decide_str(bt_decide_t d);
/* "forced", "short", "cached", "offload", "busy", "no_local",
 * "no_remote", "colocated", "tpot" */
const char *bt_decide_reason_str(bt_decide_reason_t r);
/* "auto", "always", "never" (the order of --disagg's words) */
const char *bt_disagg_mode_str(bt_disagg_mode_t m);

#endif
