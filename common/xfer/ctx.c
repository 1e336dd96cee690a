/* The UCP context and worker, and their progress from the libevent loop
 * (ucp_worker_get_efd + ucp_worker_arm: never a busy loop when idle). */
#include "xfer_int.h"

#include "base/array.h"
#include "base/clock.h"
#include "base/log.h"

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

bt_status_t bt_xfer_status_from_ucs(ucs_status_t st)
{
    switch (st) {
    case UCS_OK:
        return BT_OK;
    case UCS_ERR_CANCELED:
        return BT_ERR_CANCELLED;
    case UCS_ERR_TIMED_OUT:
        return BT_ERR_TIMED_OUT;
    case UCS_ERR_NO_MEMORY:
        return BT_ERR_NO_MEMORY;
    case UCS_ERR_INVALID_PARAM:
        return BT_ERR_INVALID_ARG;
    case UCS_ERR_UNREACHABLE:
    case UCS_ERR_UNSUPPORTED:
    case UCS_ERR_INVALID_ADDR:
        return BT_ERR_PEER_UNREACHABLE;
    case UCS_ERR_ENDPOINT_TIMEOUT:
    case UCS_ERR_CONNECTION_RESET:
    case UCS_ERR_IO_ERROR:
    case UCS_ERR_REJECTED:
    case UCS_ERR_NOT_CONNECTED:
    default:
        return BT_ERR_PEER_DIED;
    }
}

bool bt_xfer_tls_may_use(const char *const *names)
{
    const char *t = getenv("UCX_TLS");

    if (t == NULL || *t == '\0' || strstr(t, "all") != NULL) {
        return true;
    }
    if (t[0] == '^') {
        return strstr(t, names[0]) == NULL;
    }
    for (; *names != NULL; names++) {
        if (strstr(t, *names) != NULL) {
            return true;
        }
    }
    return false;
}

const char *const bt_xfer_shm_names[] = {"shm", "posix", "sysv", "sm", NULL};
static const char *const tcp_names[] = {"tcp", NULL};

/* Defaults, each for a reason measured here; a value the user set wins.
 *
 * POSIX/SYSV_ERROR_HANDLING=y: peer error handling then keeps shared
 * memory (TOOLCHAIN: without them UCX silently falls back to tcp, 50x
 * slower); KEEPALIVE_INTERVAL=1s detects a dead shm peer within ~1 s.
 *
 * ADAPTIVE_PROGRESS=n: in UCX 1.13 a failed endpoint "unprogresses" its
 * interfaces (ucp_worker_iface_unprogress_ep), and after a shm peer died
 * the posix interface that the live peers' endpoints still use stopped
 * being progressed: their flushes never completed (seen in the
 * receiver-killed test; docs/internals/xfer.md). Progressing every
 * interface costs a poll of each shm FIFO.
 *
 * TCP_RX_SEG_SIZE=512K: with peer error handling UCX 1.13 gives tcp no
 * RMA lane (it lacks the error-handling flags wireup asks of one), so a
 * rendezvous moves as active-message fragments of the receive segment
 * size: at the default 64K that is ~19 sends and receives per MiB and
 * 0.75-0.8 of ucx_perftest's ucp_am_bw; 256K-512K measured best (1.2-1.5x
 * at 1-64 MiB), 4M worse again. Costs one such buffer per receiving
 * connection.
 *
 * TCP_PUT_ENABLE=n: UCX 1.13's tcp put-zcopy (used inside a rendezvous)
 * asserted in tcp_ep.c (UCT_TCP_EP_FLAG_PUT_TX_WAITING_ACK) and aborted
 * the sender when its receiver was killed mid-transfer (xfer/tcp
 * test_receiver_killed, 1 run in 3; xfer/tcp passed 7 of 8 since);
 * without it the rendezvous moves as active-message fragments, the path
 * the figures in xfer.md measure. The same assert is still reachable
 * from a dead endpoint's failure handling (xfer.md, Known UCX 1.13
 * issues).
 *
 * TCP_CONN_NB=y: by default UCX 1.13 connects a tcp endpoint with a
 * blocking connect(), so ucp_ep_create to a peer behind a partition held
 * the loop for the kernel's SYN retries (134 s seen: the node missed its
 * heartbeats and the router dropped it; fault_matrix net-partition). A
 * non-blocking connect reports the unreachable peer as an endpoint
 * error instead.
 *
 * TCP_SYN_CNT=3: a connect started during a partition otherwise retries
 * its SYN for the kernel's ~127 s, with gaps that double up to 64 s, so a
 * link that healed meanwhile stayed unusable for up to two minutes (every
 * transfer queued on that endpoint stalled; fault_matrix net-partition,
 * 100 s partitions). With 3 the connect gives up after 15-20 s (19 s
 * measured), under the 30 s kv stall bound: UCX fails the endpoint through its own error path (no
 * forced close of a connecting endpoint, which crashed UCX 1.13) and the
 * next transfer connects anew.
 *
 * TCP_TX_MAX_BUFS=-1 (its default) with it: UCX 1.13 parses SYN_CNT as an
 * unsigned long into an unsigned field, and the upper half lands on the
 * next field, the send pool's TX_MAX_BUFS: 0 there, and every worker
 * failed to start ("Invalid memory pool parameter(s)"). Variables set in
 * the environment are applied in table order, so naming TX_MAX_BUFS puts
 * its value back after SYN_CNT's spill. */
void bt_xfer_env_defaults(void)
{
    static const struct {
        const char        *name;
        const char        *value;
        const char *const *needs;   /* transports it concerns */
    } defaults[] = {
        {"UCX_POSIX_ERROR_HANDLING", "y", bt_xfer_shm_names},
        {"UCX_SYSV_ERROR_HANDLING", "y", bt_xfer_shm_names},
        {"UCX_KEEPALIVE_INTERVAL", "1s", NULL},
        {"UCX_ADAPTIVE_PROGRESS", "n", NULL},
        {"UCX_TCP_RX_SEG_SIZE", "512K", tcp_names},
        {"UCX_TCP_PUT_ENABLE", "n", tcp_names},
        {"UCX_TCP_CONN_NB", "y", tcp_names},
        {"UCX_TCP_SYN_CNT", "3", tcp_names},
        {"UCX_TCP_TX_MAX_BUFS", "-1", tcp_names},
    };

    for (size_t i = 0; i < sizeof(defaults) / sizeof(defaults[0]); i++) {
        /* Naming a transport's variables when UCX_TLS leaves it out only
         * makes UCX warn about unused variables. */
        if (defaults[i].needs != NULL && !bt_xfer_tls_may_use(defaults[i].needs)) {
            continue;
        }
        if (getenv(defaults[i].name) == NULL) {
            setenv(defaults[i].name, defaults[i].value, 0);
        }
    }
}

static void closing_reap(bt_xfer_ctx_t *ctx)
{
    size_t j = 0;

    for (size_t i = 0; i < ctx->n_closing; i++) {
        if (ucp_request_check_status(ctx->closing[i]) != UCS_INPROGRESS) {
            ucp_request_free(ctx->closing[i]);
        } else {
            ctx->closing[j++] = ctx->closing[i];
        }
    }
    ctx->n_closing = j;
}

void bt_xfer_ctx_closing_add(bt_xfer_ctx_t *ctx, void *req)
{
    if (BT_ARRAY_RESERVE(ctx->closing, ctx->cap_closing, ctx->n_closing + 1, 8)
        != BT_OK) {
        /* Lose track rather than crash: UCX frees it with the worker. */
        bt_warn("xfer cannot track an endpoint close request");
        return;
    }
    ctx->closing[ctx->n_closing++] = req;
}

static unsigned progress_all(bt_xfer_ctx_t *ctx)
{
    unsigned n = 0, k;

    /* Bounded: a worker can report progress on every call (keepalive),
     * and the loop's other events must get their turn; arm answers BUSY
     * and the loop comes back. */
    for (int i = 0; i < 64; i++) {
        k = ucp_worker_progress(ctx->worker);
        if (k == 0) {
            break;
        }
        n += k;
    }
    if (ctx->peer_failed) {
        bt_xfer_peers_cleanup_failed(ctx);
    }
    if (ctx->n_closing > 0) {
        closing_reap(ctx);
    }
    return n;
}

bool bt_xfer_ctx_has_cuda(const bt_xfer_ctx_t *ctx)
{
    return (ctx->mem_types & UCS_BIT(UCS_MEMORY_TYPE_CUDA)) != 0;
}

unsigned bt_xfer_ctx_progress(bt_xfer_ctx_t *ctx)
{
    return progress_all(ctx);
}

/* Polls until a transfer event or `until_ns`: a short stretch inside the
 * callback saves most of the loop's epoll_wait calls while polling. */
#define SPIN_SLICE_NS 10000ull

static void progress_cb(evutil_socket_t fd, short what, void *arg)
{
    bt_xfer_ctx_t *ctx = arg;
    ucs_status_t st;

    progress_all(ctx);
    if (ctx->spin_ns > 0) {
        uint64_t now = bt_now_ns();
        bool fresh = ctx->events != ctx->events_seen;
        uint64_t window = ctx->spin_ns;

        if (fresh) {
            ctx->events_seen = ctx->events;
            ctx->last_gap_ns = now - ctx->last_event_ns;
            ctx->last_event_ns = now;
        }
        /* Events coming at a steady pace: stay awake for the next one
         * (twice the last gap, bounded) rather than make its sender pay
         * for waking us. */
        if (ctx->last_gap_ns < BT_XFER_PACE_MAX_NS / 2 &&
            2 * ctx->last_gap_ns > window) {
            window = 2 * ctx->last_gap_ns;
        }
        /* While a transfer of ours or a rendezvous receive into our
         * regions is in flight, UCX moves its bytes (tcp) only when
         * progressed: keep polling rather than sleep on the fd between
         * its completions, up to BT_XFER_BUSY_NS after the last event
         * (a stalled peer then costs no more CPU than that). */
        if ((ctx->n_active > 0 || ctx->rx_pending > 0) &&
            BT_XFER_BUSY_NS > window) {
            window = BT_XFER_BUSY_NS;
        }
        if (now - ctx->last_event_ns < window) {
            uint64_t end = ctx->last_event_ns + window;

            if (end > now + SPIN_SLICE_NS) {
                end = now + SPIN_SLICE_NS;
            }
            /* After an event, straight back to the loop: deferred reports
             * and the user's other events run there. Quiet passes poll a
             * stretch here, until the first event. */
            while (!fresh && ctx->events == ctx->events_seen &&
                   bt_now_ns() < end) {
                progress_all(ctx);
            }
            bt_xfer_ctx_kick(ctx);
            return;
        }
    }
    st = ucp_worker_arm(ctx->worker);
    if (st == UCS_ERR_BUSY) {
        /* More events came in: run again after the loop's other events
         * (a zero timer, not event_active: libevent would run a callback
         * that re-activates itself within the same pass, forever). */
        bt_xfer_ctx_kick(ctx);
    } else if (st != UCS_OK) {
        bt_error("xfer worker arm failed: %s", ucs_status_string(st));
    }
}

static void again_cb(evutil_socket_t fd, short what, void *arg)
{
    progress_cb(fd, what, arg);
}

/* Progress soon, on the next loop pass (a zero timer: kicks also come
 * from callbacks inside progress_cb, where event_active would keep
 * libevent in one pass forever). */
void bt_xfer_ctx_kick(bt_xfer_ctx_t *ctx)
{
    static const struct timeval now = {0, 0};

    evtimer_add(ctx->again_ev, &now);
}

bt_status_t bt_xfer_ctx_create(struct event_base *base,
                               const bt_xfer_ctx_params_t *params,
                               bt_xfer_ctx_t **ctx_p)
{
    bt_xfer_ctx_t *ctx;
    ucp_config_t *config;
    ucp_params_t up;
    ucp_worker_params_t wp;
    ucp_context_attr_t ua;
    ucs_status_t st;
    bt_status_t bst = BT_ERR_INTERNAL;
    int efd;

    ctx = calloc(1, sizeof(*ctx));
    if (ctx == NULL) {
        return BT_ERR_NO_MEMORY;
    }
    ctx->base = base;
    if (params != NULL) {
        ctx->params = *params;
    }
    if (ctx->params.spin_us == 0) {
        ctx->params.spin_us = BT_XFER_SPIN_DEFAULT_US;
    }
    ctx->spin_ns = ctx->params.spin_us == BT_XFER_SPIN_NONE
                       ? 0 : (uint64_t)ctx->params.spin_us * 1000;
    bt_list_init(&ctx->peers);
    bt_list_init(&ctx->regions);
    bt_list_init(&ctx->remotes);
    bt_list_init(&ctx->zombies);
    bt_list_init(&ctx->rx_ops);
    bt_xfer_prefault_init(ctx);
    if (getrandom(&ctx->id, sizeof(ctx->id), 0) != sizeof(ctx->id)) {
        ctx->id = bt_now_ns() ^ ((uint64_t)getpid() << 32);
    }
    ctx->next_op_id = 1;
    ctx->next_region_id = 1;
    if (gethostname(ctx->host, sizeof(ctx->host) - 1) != 0) {
        strcpy(ctx->host, "unknown");
    }

    bt_xfer_env_defaults();
    st = ucp_config_read(NULL, NULL, &config);
    if (st != UCS_OK) {
        bt_error("xfer ucx config read failed: %s", ucs_status_string(st));
        goto err_free;
    }
    memset(&up, 0, sizeof(up));
    up.field_mask = UCP_PARAM_FIELD_FEATURES | UCP_PARAM_FIELD_REQUEST_SIZE |
                    UCP_PARAM_FIELD_MT_WORKERS_SHARED;
    up.features = UCP_FEATURE_RMA | UCP_FEATURE_AM | UCP_FEATURE_WAKEUP;
    up.request_size = sizeof(bt_xfer_req_t);
    up.mt_workers_shared = 0;
    st = ucp_init(&up, config, &ctx->ucp);
    ucp_config_release(config);
    if (st != UCS_OK) {
        bt_error("xfer ucp init failed: %s", ucs_status_string(st));
        goto err_free;
    }
    memset(&ua, 0, sizeof(ua));
    ua.field_mask = UCP_ATTR_FIELD_MEMORY_TYPES;
    if (ucp_context_query(ctx->ucp, &ua) == UCS_OK) {
        ctx->mem_types = ua.memory_types;
    } else {
        ctx->mem_types = UCS_BIT(UCS_MEMORY_TYPE_HOST);
    }
    if (ctx->params.log_lanes) {
        bt_info("xfer UCX memory: host%s", bt_xfer_ctx_has_cuda(ctx)
                    ? ", cuda" : " only (GPU data is staged through host)");
    }
    memset(&wp, 0, sizeof(wp));
    wp.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
    wp.thread_mode = UCS_THREAD_MODE_SINGLE;
    st = ucp_worker_create(ctx->ucp, &wp, &ctx->worker);
    if (st != UCS_OK) {
        bt_error("xfer worker create failed: %s", ucs_status_string(st));
        goto err_ucp;
    }
    st = ucp_worker_get_address(ctx->worker, &ctx->addr, &ctx->addr_len);
    if (st != UCS_OK) {
        bt_error("xfer worker address failed: %s", ucs_status_string(st));
        goto err_worker;
    }
    st = ucp_worker_get_efd(ctx->worker, &efd);
    if (st != UCS_OK) {
        bt_error("xfer worker event fd failed: %s", ucs_status_string(st));
        goto err_addr;
    }
    ctx->progress_ev = event_new(base, efd, EV_READ | EV_PERSIST,
                                 progress_cb, ctx);
    if (ctx->progress_ev == NULL || event_add(ctx->progress_ev, NULL) != 0) {
        bt_error("xfer cannot watch the worker event fd");
        bst = BT_ERR_NO_MEMORY;
        goto err_ev;
    }
    ctx->again_ev = evtimer_new(base, again_cb, ctx);
    if (ctx->again_ev == NULL) {
        bst = BT_ERR_NO_MEMORY;
        goto err_ev;
    }
    bst = bt_xfer_recv_register(ctx);
    if (bst != BT_OK) {
        goto err_ev;
    }
    /* The first pass arms the worker. */
    bt_xfer_ctx_kick(ctx);
    bt_debug("xfer context id %016llx host %s worker address %zu bytes",
             (unsigned long long)ctx->id, ctx->host, ctx->addr_len);
    *ctx_p = ctx;
    return BT_OK;

err_ev:
    if (ctx->again_ev != NULL) {
        event_free(ctx->again_ev);
    }
    if (ctx->progress_ev != NULL) {
        event_free(ctx->progress_ev);
    }
err_addr:
    ucp_worker_release_address(ctx->worker, ctx->addr);
err_worker:
    ucp_worker_destroy(ctx->worker);
err_ucp:
    ucp_cleanup(ctx->ucp);
err_free:
    free(ctx);
    return bst;
}

void bt_xfer_ctx_destroy(bt_xfer_ctx_t *ctx)
{
    bt_list_t *l;

    if (ctx == NULL) {
        return;
    }
    /* Report every active transfer, then drop endpoints: that completes
     * the requests the reported ones still hold. */
    for (l = ctx->peers.next; l != &ctx->peers; l = l->next) {
        bt_xfer_peer_t *peer = BT_CONTAINER_OF(l, bt_xfer_peer_t, link);

        while (!bt_list_empty(&peer->ops)) {
            bt_xfer_op_t *op = BT_CONTAINER_OF(peer->ops.next,
                                                 bt_xfer_op_t, link);
            bt_xfer_op_finish(op, BT_ERR_SHUTDOWN);
        }
    }
    while (!bt_list_empty(&ctx->remotes)) {
        bt_xfer_remote_destroy(BT_CONTAINER_OF(ctx->remotes.next,
                                                 bt_xfer_remote_t, link));
    }
    while (!bt_list_empty(&ctx->peers)) {
        bt_xfer_peer_destroy(BT_CONTAINER_OF(ctx->peers.next,
                                               bt_xfer_peer_t, link));
    }
    /* Bounded wait for closes and cancelled requests to come back. */
    uint64_t end = bt_now_ns() + 2000000000ull;
    while ((ctx->n_closing > 0 || !bt_list_empty(&ctx->zombies)) &&
           bt_now_ns() < end) {
        progress_all(ctx);
    }
    while (!bt_list_empty(&ctx->zombies)) {
        bt_xfer_op_t *op = BT_CONTAINER_OF(ctx->zombies.next, bt_xfer_op_t,
                                             link);
        bt_warn("xfer op %llu still holds %zu requests at shutdown",
                (unsigned long long)op->id, op->n_live);
        bt_list_del(&op->link);
        bt_xfer_op_free(op);
    }
    for (size_t i = 0; i < ctx->n_closing; i++) {
        ucp_request_free(ctx->closing[i]);
    }
    free(ctx->closing);
    bt_xfer_recv_cleanup(ctx);
    while (!bt_list_empty(&ctx->regions)) {
        bt_xfer_region_destroy(BT_CONTAINER_OF(ctx->regions.next,
                                                 bt_xfer_region_t, link));
    }
    bt_xfer_prefault_fini(ctx);
    event_free(ctx->again_ev);
    event_free(ctx->progress_ev);
    ucp_worker_release_address(ctx->worker, ctx->addr);
    ucp_worker_destroy(ctx->worker);
    ucp_cleanup(ctx->ucp);
    free(ctx);
}

void bt_xfer_ctx_set_notify_cb(bt_xfer_ctx_t *ctx, bt_xfer_notify_cb cb,
                               void *arg)
{
    ctx->notify_cb = cb;
    ctx->notify_arg = arg;
}

void bt_xfer_ctx_set_admit_cb(bt_xfer_ctx_t *ctx, bt_xfer_admit_cb cb,
                              void *arg)
{
    ctx->admit_cb = cb;
    ctx->admit_arg = arg;
}

uint64_t bt_xfer_ctx_id(const bt_xfer_ctx_t *ctx)
{
    return ctx->id;
}

size_t bt_xfer_ctx_outstanding(const bt_xfer_ctx_t *ctx)
{
    return ctx->n_active;
}

size_t bt_xfer_ctx_outstanding_reqs(const bt_xfer_ctx_t *ctx)
{
    return ctx->n_zombie_reqs;
}

void bt_xfer_ctx_rx_stats(const bt_xfer_ctx_t *ctx, bt_xfer_rx_stats_t *s_p)
{
    *s_p = ctx->rx;
}

void bt_xfer_ctx_peers_foreach(bt_xfer_ctx_t *ctx, bt_xfer_peer_stats_cb cb,
                               void *arg)
{
    for (bt_list_t *l = ctx->peers.next; l != &ctx->peers;) {
        bt_xfer_peer_t *p = BT_CONTAINER_OF(l, bt_xfer_peer_t, link);
        bt_xfer_peer_stats_t s;

        l = l->next;
        memset(&s, 0, sizeof(s));
        snprintf(s.name, sizeof(s.name), "%.40s/%016llx", p->host,
                 (unsigned long long)p->owner_id);
        s.tx_bytes = p->tx_bytes;
        s.rx_bytes = p->rx_bytes;
        s.ops = p->n_ok;
        s.errors = p->n_err;
        s.last_error = p->last_error;
        s.last_latency_us = p->last_lat_us;
        s.alive = p->ep != NULL && !p->failed;
        s.resets = p->n_resets;
        s.stale_endpoints = p->n_stale;
        s.mode = bt_xfer_peer_mode(p);
        snprintf(s.lanes, sizeof(s.lanes), "%s", p->lanes);
        cb(arg, &s);
    }
}
