/* baton-sim's model of a Baton cluster (docs/internals/sim.md).
 *
 * Discrete events on simulated time: arrivals (the workload's, the same
 * baton-bench sends), the router placing each request with its real code
 * (router/registry.c, select.c, prefix_index.c: bt_select_pair on a
 * registry that the simulated nodes feed with load reports every
 * heartbeat and KV events as their caches change), its wait queue, and
 * each node's one worker running a step at a time (node_sched.c): a
 * prefill chunk of the FIFO's head job or the decode batch, alternating
 * when a colocated node has both, timed by the cost functions (cost.h).
 * A prefill's KV streams to its decode node while it computes; the
 * kvstore is the real block store (sim_kvs.h). A router holds at most
 * BT_ROUTER_MAX_NODES nodes: larger clusters are split over several
 * routers (shards), requests spread over them in turn. */
#ifndef BT_SIM_SIM_H
#define BT_SIM_SIM_H

#include "cost.h"
#include "report.h"
#include "select.h"
#include "workload.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    const bt_sim_cost_t *cost;
    uint32_t    n_prefill;       /* prefill-only nodes */
    uint32_t    n_decode;        /* decode-only nodes */
    uint32_t    n_colocated;     /* role both */
    const char *transport;       /* a transfer cost's name; NULL: the first */
    uint64_t    kvstore_bytes;   /* 0: no kvstore */
    bool        prefix_cache;    /* the nodes' own prefix caches */
    double      heartbeat_s;     /* load reports (the router's --heartbeat) */
    uint32_t    max_queue;       /* the router's --max-queue */
    double      queue_timeout_s; /* the router's --queue-timeout */
    uint32_t    nodes_per_router;/* shard size, <= BT_ROUTER_MAX_NODES - 1 */
    /* every node on one host, each using all its cores (baton-local's
     * nodes, --threads 0): while k nodes compute at once, each runs at
     * 1/k of the speed its cost functions give (processor sharing) */
    bool        one_host;
    uint64_t    noise_draw;      /* which draw of the cost's noise (0, 1, ...) */
    bt_select_weights_t weights;
    /* progress: called about once a second of real time; may be NULL */
    void      (*progress)(void *arg, size_t done, size_t total);
    void       *progress_arg;
} bt_sim_cfg_t;

/* The router's defaults (router/main.c) and one shard per 255 nodes. */
void bt_sim_cfg_default(bt_sim_cfg_t *cfg);

typedef struct {
    double   sim_s;              /* simulated time to the last completion */
    uint64_t events;
    uint64_t cached_tokens;      /* own cache + kvstore */
    uint64_t store_tokens;       /* of those, fetched from the kvstore */
    uint64_t queued;             /* requests that waited in a queue */
    uint64_t rejected;           /* queue full or timed out */
    uint64_t kvstore_evictions;
    uint32_t routers;
} bt_sim_stats_t;

/* Runs the workload through the cluster; recs gets one record per request
 * (the report's input), *st the totals. Returns 0, or -1 with a message. */
int bt_sim_run(const bt_sim_cfg_t *cfg, const bt_wl_t *wl, bt_rep_rec_t *recs,
               bt_sim_stats_t *st, char *err, size_t err_size);

/* How many draws of the cost's noise a run of `want` draws makes: want
 * with noise in the cost file, else 1 (without noise every draw is the
 * same). */
size_t bt_sim_draws(const bt_sim_cost_t *c, size_t want);
/* bt_sim_run once per draw (cfg->noise_draw 0, 1, ...; the cfg's own is
 * not used), draws = bt_sim_draws(cfg->cost, want): recs get wl->n
 * records per draw, *st the first draw's totals, *sim_s_p the draws'
 * simulated time summed (the report's time over all the records).
 * Returns 0, or -1 with a message. */
int bt_sim_run_draws(const bt_sim_cfg_t *cfg, size_t want, const bt_wl_t *wl,
                     bt_rep_rec_t *recs, bt_sim_stats_t *st, double *sim_s_p,
                     char *err, size_t err_size);

#endif
