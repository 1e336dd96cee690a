/* baton-kvstore: the daemon around kvstore/store (DESIGN §5): options, the
 * DRAM slab inside a UCX region, the gRPC service baton.v1.KvStore, HTTP
 * health and metrics, SIGTERM drain. Everything runs on the loop thread;
 * file I/O and checksums run on the store's io pool, placement re-plans
 * on the planner thread (plan_lane.c). */
#ifndef BT_KVSD_H
#define BT_KVSD_H

#include "plan_book.h"
#include "plan_lane.h"
#include "store/store.h"

#include "base/tpool.h"
#include "http/http.h"
#include "metrics/metrics.h"
#include "rpc/server.h"
#include "rpc/tls_cfg.h"
#include "xfer/xfer.h"

#include <event2/event.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct {
    const char *listen;
    int64_t     grpc_port;
    int64_t     http_port;
    uint64_t    dram_bytes;
    const char *disk_dir;
    uint64_t    disk_bytes;
    int64_t     reserve_ms;
    int64_t     pin_ms;
    int64_t     land_wait_ms;
    int64_t     threads;
    uint64_t    max_message;
    int64_t     drain_timeout_ms;
    const char *log_level;
    int         log_format;
    bool        access_log;    /* a log line per HTTP request */
    const char *router;        /* gRPC target of the router; NULL: none */
    const char *advertise;     /* the target nodes use for this store */
    const char *node_id;       /* registry id; NULL: the advertised target */
    bt_rpc_tls_cfg_t tls;
    /* MoE placement plans (expert_service.c, plans/) */
    const char *placement_dir;     /* NULL: <disk_dir>/.placement, or none */
    double      placement_threshold;
    int64_t     placement_half_life_ms;
    int64_t     placement_interval_ms;
    double      placement_min_gain;
    double      placement_min_tokens;
    double      placement_move_price;
    double      placement_epsilon;
} bt_kvsd_cfg_t;

typedef struct bt_kvsd_commit bt_kvsd_commit_t;
typedef struct bt_kvsd_reg bt_kvsd_reg_t;

typedef struct {
    bt_kvsd_cfg_t      cfg;
    struct event_base *base;
    bt_tpool_t        *io;
    bt_kvs_t          *store;
    bt_xfer_ctx_t     *xfer;
    bt_xfer_region_t  *region;        /* the DRAM slab */
    void              *desc;          /* its exported descriptor */
    size_t             desc_len;
    bt_rpc_server_t   *grpc;
    bt_http_server_t  *http;
    bt_metrics_t      *metrics;
    struct event      *tick_ev;
    int                grpc_port;
    int                http_port;
    bool               draining;
    uint32_t           inflight;      /* calls answered from a callback */
    bt_kvsd_commit_t  *waiting;       /* commits waiting for their data */
    bt_kvsd_reg_t     *reg;           /* registration (--router), or NULL */
    bt_pbook_t        *plans;         /* MoE placement plans */
    bt_kvsd_lane_t    *lane;          /* their re-plans, off the loop */
    char               advertise[320];
    char               http_addr[320];  /* "HOST:PORT", told the router */
    char               node_id[65];

    struct {
        bt_gauge_t   *dram_used, *dram_blocks, *disk_used, *disk_blocks;
        bt_gauge_t   *pins, *reservations;
        bt_counter_t *lookups, *hit_blocks, *miss_blocks, *puts, *gets;
        bt_counter_t *rejected, *corrupt, *evict_dram, *evict_disk;
        bt_counter_t *pin_calls, *tier_hit_dram, *tier_hit_disk;
        bt_counter_t *expert_reports;
        bt_kvs_stats_t last;
    } m;
} bt_kvsd_t;

/* service.c */
bt_status_t bt_kvsd_service_register(bt_kvsd_t *d);
/* The completion message of a put: the writer's bytes landed. */
void bt_kvsd_landed(void *arg, const bt_xfer_notify_t *n);
/* Called every tick: commits that waited long enough for their data. */
void bt_kvsd_service_tick(bt_kvsd_t *d);
void bt_kvsd_service_cleanup(bt_kvsd_t *d);

/* expert_service.c: ReportExpertStats, GetPlacement, ListPlacements,
 * Rebalance on d->plans. */
bt_status_t bt_kvsd_expert_register(bt_kvsd_t *d);

/* reg.c: the Register stream to the router (nothing without --router). */
bt_status_t bt_kvsd_reg_start(bt_kvsd_t *d);
/* The store's bt_kvs_event_cb (arg = the daemon). */
void bt_kvsd_reg_event(void *arg, const bt_kvs_event_t *ev);
void bt_kvsd_reg_send_status(bt_kvsd_t *d);
/* Ends the stream and frees; safe without a registration. */
void bt_kvsd_reg_stop(bt_kvsd_t *d);

#endif
