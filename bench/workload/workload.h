/* The requests a benchmark run sends, shared by baton-bench (which sends
 * them to a real cluster) and baton-sim (which replays them through the
 * simulator), so that both see the same arrivals, lengths and prompts.
 *
 * A workload is either synthetic or a Mooncake trace (trace.h):
 *   - synthetic: --requests N, prompt and output lengths drawn from a
 *     distribution ("128", "uniform:64:512", "exp:256:2048" = exponential
 *     of mean 256 capped at 2048), prompts of random ids; arrivals closed
 *     loop (--concurrency C) or Poisson (--rate R per second);
 *   - trace: its requests, at its timestamps divided by --trace-speed, or
 *     closed loop when the speed is 0.
 * Everything comes from --seed through independent generators (arrivals,
 * lengths, each request's ids), so a request's prompt does not depend on
 * the order the requests are sent in. Prompts are made on demand
 * (bt_wl_prompt): a million requests take no prompt memory. */
#ifndef BT_BENCH_WORKLOAD_H
#define BT_BENCH_WORKLOAD_H

#include "base/opts.h"
#include "trace.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BT_WL_MAX_REQUESTS 10000000
#define BT_WL_TOKEN_LO     100
#define BT_WL_TOKEN_HI     4000
#define BT_WL_KEY_LEN      32    /* a block key: the prefix index's hash */

/* The options of a workload, as both programs take them (BT_WL_OPTS). */
typedef struct {
    int64_t     requests;
    int64_t     concurrency;
    double      rate;
    const char *prompt_tokens;   /* a length distribution */
    const char *output_tokens;
    int64_t     seed;
    const char *trace;           /* Mooncake jsonl, NULL: synthetic */
    int64_t     trace_requests;
    int64_t     block_tokens;
    double      trace_speed;
    int64_t     max_output;
    int64_t     kv_block;
} bt_wl_cfg_t;

#define BT_WL_OPT_(name, sn, env, def, help, type, lo, hi, T, M, F)         \
    {name, sn, env, def, help, type, lo, hi, NULL,                          \
     offsetof(T, M) + offsetof(bt_wl_cfg_t, F)}

/* The option table entries of a workload stored in member M of type T. */
#define BT_WL_OPTS(T, M)                                                     \
    BT_WL_OPT_("requests", 0, "BATON_BENCH_REQUESTS", "16", "number of requests", \
               BT_OPT_INT, 1, BT_WL_MAX_REQUESTS, T, M, requests),           \
    BT_WL_OPT_("concurrency", 'c', "BATON_BENCH_CONCURRENCY", "1",                \
               "streams in flight (closed loop)", BT_OPT_INT, 1, 100000, T, M, \
               concurrency),                                                 \
    BT_WL_OPT_("rate", 0, "BATON_BENCH_RATE", "0",                              \
               "poisson arrivals per second (0: closed loop)",               \
               BT_OPT_DOUBLE, 0, 1e7, T, M, rate),                           \
    BT_WL_OPT_("prompt-tokens", 0, "BATON_BENCH_PROMPT_TOKENS", "128",          \
               "prompt length: N, uniform:LO:HI or exp:MEAN[:CAP]",          \
               BT_OPT_STRING, 0, 0, T, M, prompt_tokens),                    \
    BT_WL_OPT_("output-tokens", 0, "BATON_BENCH_OUTPUT_TOKENS", "16",           \
               "max_tokens (ignore_eos): N, uniform:LO:HI or exp:MEAN[:CAP]", \
               BT_OPT_STRING, 0, 0, T, M, output_tokens),                    \
    BT_WL_OPT_("seed", 0, "BATON_BENCH_SEED", "1", "seed of prompts, lengths "  \
               "and arrivals", BT_OPT_INT, 0, INT64_MAX, T, M, seed),        \
    BT_WL_OPT_("trace", 0, "BATON_BENCH_TRACE", NULL,                           \
               "replay this Mooncake-format trace (jsonl) instead",          \
               BT_OPT_STRING, 0, 0, T, M, trace),                            \
    BT_WL_OPT_("trace-requests", 0, "BATON_BENCH_TRACE_REQUESTS", "0",          \
               "replay only the first N trace requests (0: all)", BT_OPT_INT, \
               0, BT_WL_MAX_REQUESTS, T, M, trace_requests),                 \
    BT_WL_OPT_("block-tokens", 0, "BATON_BENCH_BLOCK_TOKENS", "32",             \
               "tokens per 512-token trace block (lengths scale by this / 512)", \
               BT_OPT_INT, 1, 512, T, M, block_tokens),                      \
    BT_WL_OPT_("trace-speed", 0, "BATON_BENCH_TRACE_SPEED", "0",                \
               "replay at the trace's timestamps this many times faster "    \
               "(0: closed loop at --concurrency, in trace order)",          \
               BT_OPT_DOUBLE, 0, 1e6, T, M, trace_speed),                    \
    BT_WL_OPT_("max-output", 0, "BATON_BENCH_MAX_OUTPUT", "64",                 \
               "cap on a trace request's scaled output length", BT_OPT_INT,  \
               1, 1 << 20, T, M, max_output),                                \
    BT_WL_OPT_("kv-block", 0, "BATON_BENCH_KV_BLOCK", "16",                     \
               "the cluster's kv block size (prefix reuse granularity)",     \
               BT_OPT_INT, 1, 4096, T, M, kv_block)

typedef enum { BT_WL_FIXED, BT_WL_UNIFORM, BT_WL_EXP } bt_wl_dist_kind_t;

typedef struct {
    bt_wl_dist_kind_t kind;
    uint32_t          a, b;   /* fixed a; uniform [a, b]; exp mean a, cap b */
} bt_wl_dist_t;

/* "N", "uniform:LO:HI", "exp:MEAN[:CAP]" (cap default 8 x mean); all >= 1.
 * Returns 0, or -1 with a message. */
int bt_wl_dist_parse(const char *s, bt_wl_dist_t *d, char *err,
                     size_t err_size);
uint32_t bt_wl_dist_draw(const bt_wl_dist_t *d, uint64_t *rng);

typedef struct {
    double   t_s;           /* arrival (open loop), seconds from the start */
    uint32_t n_prompt;
    uint32_t max_tokens;
    uint32_t ideal_cached;  /* trace: what an unbounded cache would hold */
} bt_wl_req_t;

typedef struct {
    bt_wl_req_t *reqs;
    size_t       n;
    bool         open;         /* arrivals at t_s; else closed loop */
    size_t       concurrency;  /* closed loop */
    uint64_t     seed;
    uint32_t     kv_block;
    bool         has_trace;
    bt_trace_t   trace;        /* has_trace: prompts from the trace */
} bt_wl_t;

/* Builds the workload of `cfg`. Returns 0, or -1 with a message. */
int bt_wl_build(const bt_wl_cfg_t *cfg, bt_wl_t *wl, char *err,
                size_t err_size);
void bt_wl_free(bt_wl_t *wl);

/* Request i's prompt: reqs[i].n_prompt ids into out. */
void bt_wl_prompt(const bt_wl_t *wl, size_t i, int32_t *out);

/* Keys of the full kv blocks of `ids` (n ids, blocks of kv_block): key j
 * depends on every id up to the end of block j, so two prompts share key j
 * exactly when they share that prefix, as with kv-spec's block hashes.
 * Writes min(n / kv_block, max) keys of BT_WL_KEY_LEN bytes; returns how
 * many. */
size_t bt_wl_block_keys(const int32_t *ids, size_t n, uint32_t kv_block,
                        uint8_t *out, size_t max);

/* splitmix64 (the generator of every draw here). */
uint64_t bt_wl_rng_next(uint64_t *s);
double bt_wl_rng_unit(uint64_t *s);   /* (0, 1] */

#endif
