/* baton-sim's command line: the options every command shares and the
 * commands (main.c run, plan.c plan, fit_run.c fit). */
#ifndef BT_SIM_CLI_H
#define BT_SIM_CLI_H

#include "base/opts.h"
#include "cost.h"
#include "report.h"
#include "sim.h"
#include "workload.h"

typedef struct {
    bt_wl_cfg_t   wl;
    const char   *cost_path;
    int64_t       prefill, decode, colocated;
    const char   *transport;
    uint64_t      kvstore_bytes;
    bool          prefix_cache;
    int64_t       heartbeat_ms;
    int64_t       nodes_per_router;
    bool          one_host;
    int64_t       noise_draws;
    double        slo_ttft_ms, slo_tpot_ms;
    bool          json;
    const char   *out;
    const char   *title;
    bool          progress;
    /* plan */
    const char   *workload;
    int64_t       nodes;
    int64_t       max_splits;
    /* fit */
    const char   *url_colocated, *url_disagg, *model, *bench, *ctl, *grpc;
    int64_t       total_blocks, block_size, max_batch, max_prefill_tokens;
    double        kv_bytes_per_token;
    int64_t       fit_repeats;
    /* set by main */
    bt_sim_cost_t cost;
    bool          show_progress;
    uint64_t      t0_ns;
} sim_cli_t;

#define SIM_O(f) offsetof(sim_cli_t, f)
#define BT_SIM_CLUSTER_OPTS                                                   \
    {"cost", 0, "BATON_SIM_COST", NULL, "the node cost file (json)",          \
     BT_OPT_STRING, 0, 0, NULL, SIM_O(cost_path)},                            \
    {"prefill", 0, "BATON_SIM_PREFILL", "0", "prefill-only nodes", BT_OPT_INT, \
     0, 1000000, NULL, SIM_O(prefill)},                                       \
    {"decode", 0, "BATON_SIM_DECODE", "0", "decode-only nodes", BT_OPT_INT,   \
     0, 1000000, NULL, SIM_O(decode)},                                        \
    {"colocated", 0, "BATON_SIM_COLOCATED", "0",                              \
     "nodes that prefill and decode (--role both)", BT_OPT_INT, 0, 1000000,   \
     NULL, SIM_O(colocated)},                                                 \
    {"transport", 0, "BATON_SIM_TRANSPORT", NULL,                             \
     "the cost file's transfer to use (default: its first)", BT_OPT_STRING,   \
     0, 0, NULL, SIM_O(transport)},                                           \
    {"kvstore-size", 0, "BATON_SIM_KVSTORE_SIZE", "0",                        \
     "kvstore capacity in bytes, K/M/G/T (0: no kvstore)", BT_OPT_SIZE, 0,    \
     0, NULL, SIM_O(kvstore_bytes)},                                          \
    {"prefix-cache", 0, "BATON_SIM_PREFIX_CACHE", "true",                     \
     "the prefill nodes' own prefix caches", BT_OPT_BOOL, 0, 0, NULL,         \
     SIM_O(prefix_cache)},                                                    \
    {"heartbeat", 0, "BATON_SIM_HEARTBEAT", "500ms",                          \
     "load report interval (the router's --heartbeat)", BT_OPT_DURATION, 10,  \
     60000, NULL, SIM_O(heartbeat_ms)},                                       \
    {"nodes-per-router", 0, "BATON_SIM_NODES_PER_ROUTER", "255",              \
     "larger clusters are split over routers of this many nodes",             \
     BT_OPT_INT, 1, 255, NULL, SIM_O(nodes_per_router)},                      \
    {"one-host", 0, "BATON_SIM_ONE_HOST", "false",                            \
     "every node on one host using all its cores (a local cluster): k nodes " \
     "computing at once each run k times slower", BT_OPT_BOOL, 0, 0, NULL,    \
     SIM_O(one_host)},                                                        \
    {"noise-draws", 0, "BATON_SIM_NOISE_DRAWS", "16",                         \
     "with a cost file's noise: simulate the workload this many times, each " \
     "request slowed by another draw, and report over all of them",          \
     BT_OPT_INT, 1, 1000, NULL, SIM_O(noise_draws)},                          \
    {"slo-ttft", 0, "BATON_SIM_SLO_TTFT", "0",                                \
     "time-to-first-token objective in ms (0: none)", BT_OPT_DOUBLE, 0, 1e9,  \
     NULL, SIM_O(slo_ttft_ms)},                                               \
    {"slo-tpot", 0, "BATON_SIM_SLO_TPOT", "0",                                \
     "time-per-output-token objective in ms (0: none)", BT_OPT_DOUBLE, 0,     \
     1e9, NULL, SIM_O(slo_tpot_ms)},                                          \
    {"json", 0, "BATON_SIM_JSON", "false", "print one json object",           \
     BT_OPT_BOOL, 0, 0, NULL, SIM_O(json)},                                   \
    {"out", 0, "BATON_SIM_OUT", NULL, "write the report files (and plan's "   \
     "plot) here", BT_OPT_STRING, 0, 0, NULL, SIM_O(out)},                    \
    {"title", 0, "BATON_SIM_TITLE", "baton-sim", "the Markdown report's title", \
     BT_OPT_STRING, 0, 0, NULL, SIM_O(title)},                                \
    {"progress", 0, "BATON_SIM_PROGRESS", "false",                            \
     "show progress on stderr even when it is not a terminal", BT_OPT_BOOL,   \
     0, 0, NULL, SIM_O(progress)},                                            \
    {"url-colocated", 0, "BATON_SIM_URL_COLOCATED", NULL,                     \
     "fit: http url of a colocated local cluster", BT_OPT_STRING, 0, 0, NULL, \
     SIM_O(url_colocated)},                                                   \
    {"url-disagg", 0, "BATON_SIM_URL_DISAGG", NULL,                           \
     "fit: http url of a 1 prefill + 1 decode local cluster", BT_OPT_STRING,  \
     0, 0, NULL, SIM_O(url_disagg)},                                          \
    {"model", 0, "BATON_SIM_MODEL", "builtin", "fit: the served model name",  \
     BT_OPT_STRING, 0, 0, NULL, SIM_O(model)},                                \
    {"bench", 0, "BATON_SIM_BENCH", NULL, "fit: the baton-bench program",     \
     BT_OPT_STRING, 0, 0, NULL, SIM_O(bench)},                                \
    {"ctl", 0, "BATON_SIM_CTL", NULL, "fit: the batonctl program (kvstore "   \
     "fetch calibration; unset: skipped)", BT_OPT_STRING, 0, 0, NULL,         \
     SIM_O(ctl)},                                                             \
    {"grpc", 0, "BATON_SIM_GRPC", NULL, "fit: the colocated router's grpc "   \
     "target (for batonctl)", BT_OPT_STRING, 0, 0, NULL, SIM_O(grpc)},        \
    {"total-blocks", 0, "BATON_SIM_TOTAL_BLOCKS", "0",                        \
     "fit: the nodes' KV pool in blocks", BT_OPT_INT, 0, 1 << 30, NULL,       \
     SIM_O(total_blocks)},                                                    \
    {"block-size", 0, "BATON_SIM_BLOCK_SIZE", "16", "fit: tokens per block",  \
     BT_OPT_INT, 1, 4096, NULL, SIM_O(block_size)},                           \
    {"max-batch", 0, "BATON_SIM_MAX_BATCH", "64", "fit: the nodes' --max-batch", \
     BT_OPT_INT, 1, 4096, NULL, SIM_O(max_batch)},                            \
    {"max-prefill-tokens", 0, "BATON_SIM_MAX_PREFILL_TOKENS", "512",          \
     "fit: the nodes' --max-prefill-tokens", BT_OPT_INT, 1, 1 << 20, NULL,    \
     SIM_O(max_prefill_tokens)},                                              \
    {"kv-bytes-per-token", 0, "BATON_SIM_KV_BYTES_PER_TOKEN", "0",            \
     "fit: KV bytes of one token (all layers, K and V)", BT_OPT_DOUBLE, 0,    \
     1e9, NULL, SIM_O(kv_bytes_per_token)},                                   \
    {"fit-repeats", 0, "BATON_SIM_FIT_REPEATS", "3",                          \
     "fit: measurements per calibration point (the median is fitted)",        \
     BT_OPT_INT, 1, 100, NULL, SIM_O(fit_repeats)}

/* How many times a run simulates the workload: --noise-draws with a cost
 * file's noise, else 1. recs hold wl->n records per draw. */
size_t sim_cli_draws(const sim_cli_t *cli);
/* Simulates wl on n_prefill/n_decode/n_colocated nodes, sim_cli_draws
 * times (recs: every draw's records; rep: over all of them, throughput
 * over the draws' simulated time; st: the first draw's); 0 or -1 (said). */
int sim_cli_simulate(sim_cli_t *cli, const bt_wl_t *wl, uint32_t n_prefill,
                     uint32_t n_decode, uint32_t n_colocated,
                     uint64_t kvstore_bytes, bt_rep_rec_t *recs, bt_rep_t *rep,
                     bt_sim_stats_t *st);
/* Prints the run's report (text or --json) and writes --out's files. */
int sim_cli_report(const sim_cli_t *cli, const bt_wl_t *wl,
                   const bt_rep_rec_t *recs, const bt_rep_t *rep,
                   const bt_sim_stats_t *st, double run_s);
int sim_cmd_plan(sim_cli_t *cli, const bt_wl_t *wl);
int sim_cmd_fit(sim_cli_t *cli);

#endif
