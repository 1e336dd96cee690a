/* baton-kvstore: options, the slab in a UCX region, metrics, and its
 * hooks on the daemon skeleton (daemon/daemon.h: servers, drain). */
#include "kvstore.h"

#include "base/log.h"
#include "base/opts.h"
#include "bt_config.h"
#include "daemon/daemon.h"
#include "rpc/addr.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define O(_f) offsetof(bt_kvsd_cfg_t, _f)
static const bt_opt_t bt_kvsd_table[] = {
    { "listen", 0, NULL, "127.0.0.1", "address the gRPC and HTTP servers "
      "listen on", BT_OPT_STRING, 0, 0, NULL, O(listen) },
    { "grpc-port", 0, NULL, "50071", "gRPC port (baton.v1.KvStore, health); "
      "0 picks one", BT_OPT_INT, 0, 65535, NULL, O(grpc_port) },
    { "http-port", 0, NULL, "8082", "HTTP port (healthz, readyz, metrics); 0 "
      "picks one", BT_OPT_INT, 0, 65535, NULL, O(http_port) },
    { "dram-bytes", 0, NULL, "1G", "DRAM tier: size of the slab (a UCX "
      "region) holding blocks", BT_OPT_SIZE, 65536, 1e15, NULL,
      O(dram_bytes) },
    { "disk-dir", 0, NULL, NULL, "disk tier folder (blocks are written "
      "through on commit); none: DRAM only, nothing survives a restart",
      BT_OPT_STRING, 0, 0, NULL, O(disk_dir) },
    { "disk-bytes", 0, NULL, "16G", "disk tier limit (LRU files deleted "
      "beyond it)", BT_OPT_SIZE, 65536, 1e18, NULL, O(disk_bytes) },
    { "reserve-ms", 0, NULL, "10s", "lifetime of a put's reservation "
      "(uncommitted slots are freed after it)", BT_OPT_DURATION, 10, 3600000,
      NULL, O(reserve_ms) },
    { "pin-ms", 0, NULL, "30s", "default lifetime of a get's pin",
      BT_OPT_DURATION, 10, 600000, NULL, O(pin_ms) },
    { "land-wait-ms", 0, NULL, "2s", "longest a commit waits for the "
      "writer's completion message before checking the slots anyway",
      BT_OPT_DURATION, 0, 60000, NULL, O(land_wait_ms) },
    { "threads", 'j', NULL, "2", "io threads (disk reads, writes, checksums); "
      "0: one per core (at most 64), as for the nodes", BT_OPT_INT, 0, 1024, NULL,
      O(threads) },
    { "max-message", 0, NULL, "64M", "largest gRPC message either way",
      BT_OPT_SIZE, 65536, 1073741824.0, NULL, O(max_message) },
    { "drain-timeout", 0, NULL, "30s", "on SIGTERM, how long calls in flight "
      "may finish", BT_OPT_DURATION, 0, 3600000, NULL, O(drain_timeout_ms) },
    { "log-level", 0, NULL, "info", "trace, debug, info, warn or error",
      BT_OPT_STRING, 0, 0, NULL, O(log_level) },
    { "log-format", 0, NULL, "text", "log lines as text or JSON",
      BT_OPT_ENUM, 0, 0, "text|json", O(log_format) },
    { "access-log", 0, NULL, "on", "a log line per HTTP request (method, path, status, bytes, duration)",
      BT_OPT_BOOL, 0, 0, NULL, O(access_log) },
    { "router", 0, NULL, NULL, "gRPC target of the router to register with "
      "(its blocks then count for every prefill node in pair selection); "
      "unset: no registration", BT_OPT_STRING, 0, 0, NULL, O(router) },
    { "advertise", 0, NULL, NULL, "gRPC target the nodes use for this store, "
      "as in their --kvstore (unset: ipv4:<listen>:<grpc-port>)",
      BT_OPT_STRING, 0, 0, NULL, O(advertise) },
    { "node-id", 0, NULL, NULL, "id in the router's registry, at most 64 "
      "bytes (unset: the --advertise target)", BT_OPT_STRING, 0, 0, NULL,
      O(node_id) },
    { "placement-dir", 0, NULL, NULL, "folder of the MoE placement plans "
      "file (plans.json, rewritten atomically); unset: <disk-dir>/.placement, "
      "or memory only without --disk-dir", BT_OPT_STRING, 0, 0, NULL,
      O(placement_dir) },
    { "placement-threshold", 0, NULL, "0.9", "re-plan a (model, role) when "
      "the balancedness its nodes measure (mean/max device load) falls under "
      "this; 0: only on Rebalance", BT_OPT_DOUBLE, 0, 1, NULL,
      O(placement_threshold) },
    { "placement-half-life", 0, NULL, "5m", "the expert statistics history "
      "halves every this long", BT_OPT_DURATION, 1000, 86400000, NULL,
      O(placement_half_life_ms) },
    { "placement-interval", 0, NULL, "1m", "least time between two automatic "
      "re-plans of one (model, role)", BT_OPT_DURATION, 0, 86400000, NULL,
      O(placement_interval_ms) },
    { "placement-min-gain", 0, NULL, "0.02", "an automatic plan is published "
      "only when its balancedness beats the measured one by this",
      BT_OPT_DOUBLE, 0, 1, NULL, O(placement_min_gain) },
    { "placement-min-tokens", 0, NULL, "1000", "tokens per layer the history "
      "needs before an automatic re-plan", BT_OPT_DOUBLE, 0, 1e15, NULL,
      O(placement_min_tokens) },
    { "placement-move-price", 0, NULL, "0", "the planner's move cost: the "
      "share of a layer's transition mass that keeping its copies is worth "
      "(0: the planner's default, 0.1)", BT_OPT_DOUBLE, 0, 100, NULL,
      O(placement_move_price) },
    { "placement-epsilon", 0, NULL, "0.005", "max-load slack the planner "
      "grants co-locating consecutive layers' experts and keeping copies in "
      "place (balancedness gives up at most about this); 0: the planner's "
      "default, 0.001", BT_OPT_DOUBLE, 0, 0.1, NULL, O(placement_epsilon) },
    BT_RPC_TLS_OPTS_DAEMON(O(tls)),
};
#undef O

static const bt_opts_spec_t bt_kvsd_spec = {
    "baton-kvstore", "[OPTIONS]",
    "The Baton kvstore: KV blocks keyed by chained block hash, in a DRAM\n"
    "slab registered with UCX and on disk, shared by every node.",
    bt_kvsd_table, BT_OPTS_COUNT(bt_kvsd_table),
};

static bool bt_kvsd_ready(void *arg, const char **why_p)
{
    bt_kvsd_t *d = arg;

    if (d->draining) {
        *why_p = "draining";
        return false;
    }
    return true;
}

static void bt_kvsd_metrics_init(bt_kvsd_t *d)
{
    bt_metrics_t *m = d->metrics;

    d->m.dram_used = bt_metrics_gauge(m, "baton_kvstore_used_bytes",
                                      "bytes held per tier", "tier=\"dram\"");
    d->m.disk_used = bt_metrics_gauge(m, "baton_kvstore_used_bytes",
                                      "bytes held per tier", "tier=\"disk\"");
    d->m.dram_blocks = bt_metrics_gauge(m, "baton_kvstore_blocks",
                                        "blocks held per tier", "tier=\"dram\"");
    d->m.disk_blocks = bt_metrics_gauge(m, "baton_kvstore_blocks",
                                        "blocks held per tier", "tier=\"disk\"");
    d->m.evict_dram = bt_metrics_counter(m, "baton_kvstore_evictions_total",
                                         "blocks evicted per tier", "tier=\"dram\"");
    d->m.evict_disk = bt_metrics_counter(m, "baton_kvstore_evictions_total",
                                         "blocks evicted per tier", "tier=\"disk\"");
    d->m.pins = bt_metrics_gauge(m, "baton_kvstore_active_pins", "pins held", NULL);
    d->m.reservations = bt_metrics_gauge(m, "baton_kvstore_active_reservations",
                                         "reservations open", NULL);
    d->m.lookups = bt_metrics_counter(m, "baton_kvstore_lookups_total",
                                      "lookups answered", NULL);
    d->m.hit_blocks = bt_metrics_counter(m, "baton_kvstore_lookup_blocks_total",
                                         "blocks asked by Lookup and Pin calls",
                                         "result=\"hit\"");
    d->m.miss_blocks = bt_metrics_counter(m, "baton_kvstore_lookup_blocks_total",
                                          "blocks asked by Lookup and Pin calls",
                                          "result=\"miss\"");
    d->m.pin_calls = bt_metrics_counter(m, "baton_kvstore_pins_total",
                                        "Pin calls answered", NULL);
    d->m.tier_hit_dram = bt_metrics_counter(m, "baton_kvstore_tier_hit_blocks_total",
                                            "blocks pinned, per tier they were found in",
                                            "tier=\"dram\"");
    d->m.tier_hit_disk = bt_metrics_counter(m, "baton_kvstore_tier_hit_blocks_total",
                                            "blocks pinned, per tier they were found in",
                                            "tier=\"disk\"");
    d->m.expert_reports = bt_metrics_counter(m, "baton_kvstore_expert_reports_total",
                                             "expert statistics reports accepted",
                                             NULL);
    d->m.puts = bt_metrics_counter(m, "baton_kvstore_put_blocks_total",
                                   "blocks committed", NULL);
    d->m.gets = bt_metrics_counter(m, "baton_kvstore_get_blocks_total",
                                   "blocks pinned for reading", NULL);
    d->m.rejected = bt_metrics_counter(m, "baton_kvstore_rejected_blocks_total",
                                       "blocks refused at commit (checksum, hash chain)",
                                       NULL);
    d->m.corrupt = bt_metrics_counter(m, "baton_kvstore_corrupt_files_total",
                                      "block files found corrupt and deleted", NULL);
}

static void bt_kvsd_metrics_update(bt_kvsd_t *d)
{
    bt_kvs_stats_t s, *l = &d->m.last;

    bt_kvs_stats(d->store, &s);
    bt_gauge_set(d->m.dram_used, (double)s.dram.used_bytes);
    bt_gauge_set(d->m.disk_used, (double)s.disk.used_bytes);
    bt_gauge_set(d->m.dram_blocks, (double)s.dram.blocks);
    bt_gauge_set(d->m.disk_blocks, (double)s.disk.blocks);
    bt_gauge_set(d->m.pins, (double)s.active_pins);
    bt_gauge_set(d->m.reservations, (double)s.active_reservations);
    bt_counter_add(d->m.evict_dram, (double)(s.dram.evictions - l->dram.evictions));
    bt_counter_add(d->m.evict_disk, (double)(s.disk.evictions - l->disk.evictions));
    bt_counter_add(d->m.lookups, (double)(s.lookups - l->lookups));
    /* nodes read the store with Pin: its hits count as Lookup's do */
    bt_counter_add(d->m.hit_blocks,
                   (double)(s.lookup_hit_blocks - l->lookup_hit_blocks +
                            s.pin_hit_dram_blocks - l->pin_hit_dram_blocks +
                            s.pin_hit_disk_blocks - l->pin_hit_disk_blocks));
    bt_counter_add(d->m.miss_blocks,
                   (double)(s.lookup_miss_blocks - l->lookup_miss_blocks +
                            s.pin_miss_blocks - l->pin_miss_blocks));
    bt_counter_add(d->m.pin_calls, (double)(s.pins - l->pins));
    bt_counter_add(d->m.tier_hit_dram,
                   (double)(s.pin_hit_dram_blocks - l->pin_hit_dram_blocks));
    bt_counter_add(d->m.tier_hit_disk,
                   (double)(s.pin_hit_disk_blocks - l->pin_hit_disk_blocks));
    bt_counter_add(d->m.puts, (double)(s.puts - l->puts));
    bt_counter_add(d->m.gets, (double)(s.gets - l->gets));
    bt_counter_add(d->m.rejected, (double)(s.commit_rejected - l->commit_rejected));
    bt_counter_add(d->m.corrupt, (double)(s.corrupt_files - l->corrupt_files));
    *l = s;
}

/* 100 ms: expiry, metrics, waiting commits. */
static void bt_kvsd_tick(evutil_socket_t fd, short what, void *arg)
{
    bt_kvsd_t *d = arg;

    (void)fd;
    (void)what;
    bt_kvs_expire(d->store);
    bt_kvsd_service_tick(d);
    bt_kvsd_metrics_update(d);
}

/* --threads 0 (BATON_THREADS=0) means "all cores", as it does for the
 * nodes, so one environment can serve both; io threads past 64 only wait
 * on the same disk, hence the cap. */
static int bt_kvsd_io_threads(int64_t threads)
{
    long n;

    if (threads > 0) {
        return (int)threads;
    }
    n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 64 ? 64 : (int)n;
}

static bt_status_t bt_kvsd_store_init(bt_kvsd_t *d)
{
    bt_kvs_config_t kc;
    /* The lanes UCX picks per client are logged: it silently falls back
     * to tcp where shared memory lacks error handling (TOOLCHAIN.md). */
    bt_xfer_ctx_params_t xp = {.log_lanes = true};

    if (bt_xfer_ctx_create(d->base, &xp, &d->xfer) != BT_OK ||
        bt_xfer_region_alloc(d->xfer, (size_t)d->cfg.dram_bytes,
                             &d->region) != BT_OK ||
        bt_xfer_region_export(d->region, &d->desc, &d->desc_len) != BT_OK) {
        bt_error("cannot set up ucx for a %llu-byte slab",
                 (unsigned long long)d->cfg.dram_bytes);
        return BT_ERR_PEER_UNREACHABLE;
    }
    bt_xfer_ctx_set_notify_cb(d->xfer, bt_kvsd_landed, d);
    d->io = bt_tpool_create(d->base, bt_kvsd_io_threads(d->cfg.threads), 65536);
    if (d->io == NULL) {
        return BT_ERR_NO_MEMORY;
    }
    memset(&kc, 0, sizeof(kc));
    kc.slab = bt_xfer_region_base(d->region);
    kc.slab_len = bt_xfer_region_length(d->region);
    kc.disk_dir = d->cfg.disk_dir;
    kc.disk_bytes = d->cfg.disk_bytes;
    kc.reserve_ms = (uint64_t)d->cfg.reserve_ms;
    kc.pin_ms = (uint64_t)d->cfg.pin_ms;
    kc.io = d->io;
    kc.event_cb = bt_kvsd_reg_event;
    kc.event_arg = d;
    return bt_kvs_create(&kc, &d->store);
}

/* The skeleton's hooks (daemon/daemon.h). */
static bt_status_t bt_kvsd_grpc_register(void *arg, bt_daemon_t *dm)
{
    bt_kvsd_t *d = arg;

    d->grpc = dm->grpc;
    d->grpc_port = dm->grpc_port;
    return bt_kvsd_service_register(d);
}

static bt_status_t bt_kvsd_grpc_started(void *arg, bt_daemon_t *dm)
{
    bt_rpc_server_set_serving(dm->grpc, "baton.v1.KvStore", true);
    (void)arg;
    return BT_OK;
}

/* The advertised target and the registry id, then registration. */
static bt_status_t bt_kvsd_started(void *arg, bt_daemon_t *dm)
{
    bt_kvsd_t *d = arg;
    struct timeval tick = { 0, 100000 };
    bool has_router = d->cfg.router != NULL && d->cfg.router[0] != '\0';
    const char *id;
    size_t len;

    d->http = dm->http;
    d->http_port = dm->http_port;
    bt_rpc_hostport(d->http_addr, sizeof(d->http_addr), d->cfg.listen,
                    d->http_port);
    d->tick_ev = event_new(d->base, -1, EV_PERSIST, bt_kvsd_tick, d);
    if (d->tick_ev == NULL || event_add(d->tick_ev, &tick) != 0) {
        return BT_ERR_NO_MEMORY;
    }
    /* counters from the start (files dropped by the rebuild) are on
     * /metrics from the first scrape, not only after the first tick */
    bt_kvsd_metrics_update(d);
    if (d->cfg.advertise != NULL && d->cfg.advertise[0] != '\0') {
        snprintf(d->advertise, sizeof(d->advertise), "%s", d->cfg.advertise);
    } else {
        bt_rpc_target(d->advertise, sizeof(d->advertise), d->cfg.listen,
                      d->grpc_port);
    }
    id = d->cfg.node_id != NULL ? d->cfg.node_id : d->advertise;
    len = strlen(id);
    if (has_router && len >= sizeof(d->node_id)) {
        bt_error("the advertised target %s is longer than a registry id "
                 "(64 bytes): set --node-id", d->advertise);
        return BT_ERR_INVALID_ARG;
    }
    len = len < sizeof(d->node_id) ? len : sizeof(d->node_id) - 1;
    memcpy(d->node_id, id, len);
    d->node_id[len] = '\0';
    return bt_kvsd_reg_start(d);
}

static void bt_kvsd_drain(void *arg)
{
    bt_kvsd_t *d = arg;

    d->draining = true;
    bt_kvsd_reg_send_status(d);
}

static size_t bt_kvsd_inflight(void *arg)
{
    return ((bt_kvsd_t *)arg)->inflight;
}

static void bt_kvsd_stop(void *arg)
{
    bt_kvsd_t *d = arg;

    /* the running re-plan is published; queued Rebalance calls answered */
    bt_kvsd_lane_destroy(d->lane);
    d->lane = NULL;
    /* the pool's last `done` callbacks still answer calls and use the store */
    bt_tpool_destroy(d->io);
    bt_kvsd_reg_stop(d);
    bt_kvsd_service_cleanup(d);
    if (d->xfer != NULL) {
        bt_xfer_ctx_set_notify_cb(d->xfer, NULL, NULL);
    }
    bt_kvs_destroy(d->store);
    bt_pbook_destroy(d->plans);
    d->plans = NULL;
    d->http = NULL;
    d->grpc = NULL;
}

static void bt_kvsd_free(void *arg)
{
    bt_kvsd_t *d = arg;

    if (d->tick_ev != NULL) {
        event_free(d->tick_ev);
    }
    free(d->desc);
    bt_xfer_region_destroy(d->region);
    bt_xfer_ctx_destroy(d->xfer);
    d->metrics = NULL;
    d->base = NULL;
}

/* The plan book, with the plans file read back. */
static bt_status_t bt_kvsd_plans_init(bt_kvsd_t *d)
{
    char dir[4096], err[512];
    const char *delay;
    bt_pbook_cfg_t pc = {
        .half_life_ms = (double)d->cfg.placement_half_life_ms,
        .threshold = d->cfg.placement_threshold,
        .min_interval_ms = (uint64_t)d->cfg.placement_interval_ms,
        .min_gain = d->cfg.placement_min_gain,
        .min_tokens = d->cfg.placement_min_tokens,
        .move_price = d->cfg.placement_move_price,
        .epsilon = d->cfg.placement_epsilon,
    };
    bt_status_t st;

    if (d->cfg.placement_dir != NULL && d->cfg.placement_dir[0] != '\0') {
        pc.dir = d->cfg.placement_dir;
    } else if (d->cfg.disk_dir != NULL) {
        /* a dot folder: the disk tier's rebuild skips it */
        snprintf(dir, sizeof(dir), "%s/.placement", d->cfg.disk_dir);
        pc.dir = dir;
    } else {
        bt_warn("placement plans live in memory only (no --disk-dir nor "
                "--placement-dir): a restart forgets them");
    }
    st = bt_pbook_create(&pc, &d->plans, err, sizeof(err));
    if (st != BT_OK) {
        bt_error("cannot read the placement plans back: %s", err);
        return st;
    }
    /* tests: a re-plan as long as a large model's, to see the loop serve */
    delay = getenv("BATON_TEST_PLAN_DELAY_MS");
    d->lane = bt_kvsd_lane_create(d->base, d->plans,
                                  delay != NULL ? strtoull(delay, NULL, 10) : 0);
    return d->lane != NULL ? BT_OK : BT_ERR_NO_MEMORY;
}

static const bt_daemon_ops_t bt_kvsd_daemon_ops = {
    .grpc_register = bt_kvsd_grpc_register,
    .grpc_started = bt_kvsd_grpc_started,
    .started = bt_kvsd_started,
    .ready = bt_kvsd_ready,
    .drain = bt_kvsd_drain,
    .inflight = bt_kvsd_inflight,
    .stop = bt_kvsd_stop,
    .free = bt_kvsd_free,
};

int main(int argc, char **argv)
{
    bt_kvsd_t *d = calloc(1, sizeof(*d));
    bt_daemon_t dm;
    bt_log_level_t level;
    bool has_router;
    int rc = 1;

    if (d == NULL) {
        return 1;
    }
    bt_opts_parse_or_exit(&bt_kvsd_spec, &d->cfg, argc, argv);
    has_router = d->cfg.router != NULL && d->cfg.router[0] != '\0';
    if (!bt_daemon_level_parse("baton-kvstore", d->cfg.log_level, &level) ||
        !bt_daemon_tls_check("baton-kvstore", &d->cfg.tls, d->cfg.listen,
                             d->cfg.router)) {
        free(d);
        return 2;
    }
    if (d->cfg.node_id != NULL &&
        (d->cfg.node_id[0] == '\0' || strlen(d->cfg.node_id) > 64)) {
        fprintf(stderr, "baton-kvstore: --node-id must be 1 to 64 bytes\n");
        free(d);
        return 2;
    }
    bt_log_init("kvstore", level, (bt_log_format_t)d->cfg.log_format);
    bt_daemon_warn_plaintext(&d->cfg.tls, d->cfg.listen, d->cfg.router);
    if (bt_daemon_init(&dm, &(bt_daemon_cfg_t){
                           .listen = d->cfg.listen,
                           .grpc_port = d->cfg.grpc_port,
                           .http_port = d->cfg.http_port, .tls = &d->cfg.tls,
                           .max_message = (uint32_t)d->cfg.max_message,
                           .send_queue_max = 64, .max_body = 1 << 16,
                           .access_log = d->cfg.access_log,
                           .drain_timeout_ms = d->cfg.drain_timeout_ms,
                           .work = "calls" },
                       &bt_kvsd_daemon_ops, d) != BT_OK) {
        goto out;
    }
    d->base = dm.base;
    d->metrics = dm.metrics;
    if (bt_kvsd_store_init(d) != BT_OK) {
        goto out;
    }
    bt_kvsd_metrics_init(d);
    if (bt_kvsd_plans_init(d) != BT_OK) {
        goto out;
    }
    if (bt_daemon_serve(&dm) != BT_OK) {
        goto out;
    }
    bt_info("baton-kvstore %s: grpc %s:%d (%s) http %s:%d dram %llu bytes "
            "disk %s (%llu bytes), %d io threads, advertised as %s, router %s",
            BT_VERSION,
            d->cfg.listen, d->grpc_port, bt_daemon_tls_mode(&d->cfg.tls),
            d->cfg.listen, d->http_port, (unsigned long long)d->cfg.dram_bytes,
            d->cfg.disk_dir != NULL ? d->cfg.disk_dir : "none",
            (unsigned long long)d->cfg.disk_bytes,
            bt_kvsd_io_threads(d->cfg.threads), d->advertise, has_router ? d->cfg.router : "none");
    rc = bt_daemon_run(&dm);
out:
    bt_daemon_cleanup(&dm);
    free(d);
    return rc;
}
