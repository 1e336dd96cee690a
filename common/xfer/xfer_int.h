/* What only common/xfer/ sees: the objects behind xfer.h and the wire
 * headers of its active messages. */
#ifndef BT_XFER_INT_H
#define BT_XFER_INT_H

#include "xfer.h"
#include "am_hdr.h"
#include "desc.h"
#include "guard.h"

#include "base/list.h"

#include <pthread.h>
#include <ucp/api/ucp.h>

/* Poll window while a transfer or a rendezvous receive is in flight
 * (ctx.c progress_cb): over tcp a sleep on the worker's fd between the
 * completions of large transfers cost 5-15 % of bandwidth (Figures). */
#define BT_XFER_BUSY_NS (20ull * 1000 * 1000)

/* Upper bound of the poll window that follows the pace of arriving
 * events (twice the last gap between two, ctx.c progress_cb): a receiver
 * of back-to-back shm writes 80 us apart otherwise slept after the 50 us
 * window, and each completion message then cost the sender a wake-up
 * (a unix-socket signal and a cross-CPU wake) worth ~15 % of its
 * bandwidth at 4 MiB. */
#define BT_XFER_PACE_MAX_NS (1000ull * 1000)

/* Active message ids. */
enum {
    BT_XFER_AM_DATA   = 0x6270,
    BT_XFER_AM_NOTIFY = 0x6271,
    BT_XFER_AM_BATCH  = 0x6272,
};

/* Slices at least this long go rendezvous, so the receiver lands them in
 * place with ucp_am_recv_data_nbx (no copy); shorter ones go eager. */
#define BT_XFER_AM_RNDV_MIN (16u * 1024u)

/* To a receiver that takes batch messages, slices shorter than this go
 * packed into eager batch messages (one per up to
 * BT_XFER_AM_BATCH_SLICES_MAX slices / BT_XFER_AM_BATCH_BYTES_MAX bytes)
 * instead of one rendezvous each: over tcp a rendezvous moves through
 * receive segments anyway (no zero copy), and its RTS/RTR round trip per
 * 16 KiB slice held the KV pattern to ~0.35 of one large message.
 * Longer slices still go rendezvous, in place. */
#define BT_XFER_AM_BATCH_SLICE_MIN_RNDV (64u * 1024u)

/* Receiver: at most this many transfers tracked at once (rendezvous in
 * flight, or a failure kept for its completion message); past it the
 * oldest idle one is dropped, so a peer's stray messages cannot grow
 * the list without bound. */
#define BT_XFER_RX_OPS_MAX 4096u

typedef struct bt_xfer_peer bt_xfer_peer_t;

struct bt_xfer_ctx {
    struct event_base   *base;
    ucp_context_h        ucp;
    ucp_worker_h         worker;
    ucp_address_t       *addr;
    size_t               addr_len;
    struct event        *progress_ev;
    struct event        *again_ev;    /* zero timer after arm said BUSY */
    bt_xfer_ctx_params_t params;
    uint64_t             id;
    uint64_t             mem_types;    /* UCX's, bits of ucs_memory_type_t */
    uint64_t             next_op_id;
    uint32_t             next_region_id;
    char                 host[64];
    bt_list_t       peers;
    bt_list_t       regions;
    bt_list_t       remotes;
    bt_list_t       zombies;    /* reported ops still holding reqs */
    bt_list_t       rx_ops;     /* receiver: ops with data in flight */
    size_t               n_rx_ops;
    size_t               n_active;
    size_t               n_zombie_reqs;
    void               **closing;    /* ep close requests in flight */
    size_t               n_closing, cap_closing;
    uint64_t             spin_ns;      /* poll window, 0 = arm at once */
    uint64_t             events;       /* transfer events, for the window */
    uint64_t             events_seen;
    uint64_t             last_event_ns;
    uint64_t             last_gap_ns;  /* between the last two events */
    size_t               rx_pending;   /* rendezvous receives in flight */
    bool                 peer_failed;  /* some peer needs its cleanup */
    bool                 in_api;       /* inside bt_xfer_write/read */
    bt_xfer_notify_cb    notify_cb;
    void                *notify_arg;
    bt_xfer_admit_cb     admit_cb;
    void                *admit_arg;
    bt_xfer_rx_stats_t   rx;
    /* prefault.c: the mappings (remotes', own regions') that wait to be
     * faulted in, and the thread that does it; pf_mu guards the list and
     * every bt_xfer_pf_t. */
    bt_list_t            prefault;
    pthread_mutex_t      pf_mu;
    pthread_cond_t       pf_cv;
    pthread_t            pf_thread;
    bool                 pf_thread_on;
    bool                 pf_quit;
    bool                 pf_no_advice;   /* kernel < 5.14: the thread's */
    unsigned             pf_stopping;    /* stops waiting for the thread */
};

/* An endpoint a stall reset set aside: left open (closing one with data
 * queued behind a partition crashed UCX 1.13 when the link healed) until
 * UCX reports it failed; each holds a reference on its peer, the
 * argument of its error callback. */
typedef struct {
    ucp_ep_h ep;
    bool     failed;
} bt_xfer_stale_ep_t;

struct bt_xfer_peer {
    bt_list_t  link;        /* ctx->peers */
    bt_xfer_ctx_t  *ctx;
    uint8_t        *addr;
    size_t          addr_len;
    ucp_ep_h        ep;          /* NULL after failure until reconnect */
    unsigned        gen;         /* bumped per endpoint, for rkeys */
    bool            failed;      /* error callback seen, cleanup due */
    bool            ep_ok;       /* a transfer completed on this endpoint:
                                  * it connected (a stall may reset it) */
    bool            abandon;     /* the failure is a stall reset: set the
                                  * endpoint aside instead of closing it */
    bt_xfer_stale_ep_t *stale;   /* endpoints set aside by stall resets */
    size_t          n_stale, cap_stale;
    uint64_t        n_resets;    /* endpoints closed because they stalled */
    bt_status_t     fail_status;
    bool            same_host;
    bool            has_rma;     /* a one-sided rma_bw lane */
    bt_xfer_mode_t  mode_cfg;    /* what was asked (AUTO...) */
    int             refs;        /* remotes + active ops */
    bt_list_t  ops;         /* active ops */
    char            host[64];
    uint64_t        owner_id;
    char            lanes[96];
    uint64_t        tx_bytes, rx_bytes, n_ok, n_err, last_lat_us;
    bt_status_t     last_error;
};

/* One mapping the prefault thread faults in (prefault.c), under the
 * context's pf_mu: bytes from base done, the link in ctx->prefault while
 * some are left, and whether the thread is touching it now. */
typedef struct {
    bt_list_t  link;
    uint8_t   *base;
    uint64_t   length;
    uint64_t   done;
    uint64_t   t0_ns;       /* when it was started */
    uint32_t   region_id;   /* own regions: logged when done */
    bool       own;
    bool       on;
    bool       busy;
} bt_xfer_pf_t;

struct bt_xfer_region {
    bt_list_t  link;
    bt_xfer_ctx_t  *ctx;
    ucp_mem_h       memh;
    void           *base;
    size_t          length;
    uint32_t        id;
    bool            ucx_alloc;
    /* Direct writers' lease guard after the data (guard.h), or NULL;
     * `length` counts the data only, which is what slices may touch. */
    bt_xfer_guard_t *guard;
    void           *rkey_buf;
    size_t          rkey_len;
    bt_xfer_pf_t    pf;          /* bt_xfer_region_prefault */
};

struct bt_xfer_remote {
    bt_list_t  link;
    bt_xfer_ctx_t  *ctx;
    bt_xfer_peer_t *peer;
    uint8_t        *blob;
    bt_xfer_desc_t  desc;        /* points into blob */
    ucp_rkey_h      rkey;
    unsigned        rkey_gen;
    /* The region mapped into this process (ucp_rkey_ptr: shm), for
     * direct copies; valid while rkey is, i.e. for rkey_gen. */
    uint8_t        *map;
    bool            map_tried;
    /* The region's guard as mapped here (direct copies check it), this
     * process's slot in it (-1: none yet), and a guard announced but
     * not valid: writes are refused then. */
    bt_xfer_guard_t *guard;
    bt_xfer_guard_geom_t guard_geo;   /* its shape, as validated */
    int              guard_slot;
    bool             guard_bad;
    bt_xfer_pf_t     pf;          /* faulting the mapping in (prefault.c) */
};

/* Private part of every UCX request we submit (context request_size). */
typedef struct {
    bt_xfer_op_t *op;
    size_t        slot;
} bt_xfer_req_t;

typedef enum {
    BT_XFER_PHASE_DATA = 0,   /* slices (+ flush) in flight */
    BT_XFER_PHASE_NOTIFY,     /* completion message in flight */
    BT_XFER_PHASE_DONE,
} bt_xfer_phase_t;

struct bt_xfer_op {
    bt_list_t    link;      /* peer->ops, then ctx->zombies */
    bt_xfer_ctx_t    *ctx;
    bt_xfer_peer_t   *peer;      /* NULL once reported */
    bt_xfer_remote_t *remote;    /* NULL once reported */
    uint64_t          id;
    bool              is_read;
    bt_xfer_mode_t    mode;
    bt_xfer_phase_t   phase;
    bool              reported;  /* callback called */
    bool              cancelling;
    bt_status_t       err;
    bt_xfer_slice_t  *slices;    /* coalesced copy */
    size_t            n_slices;
    bt_xfer_am_data_hdr_t *hdrs; /* AM mode: one per slice */
    uint8_t          *direct;    /* PUT mode: remote region mapped here */
    bool              batch;     /* AM mode: short slices in batches */
    uint8_t          *bhdrs;     /* batch headers and tables, packed */
    ucp_dt_iov_t     *iov;       /* batch payloads, one entry per slice */
    void            **reqs;      /* live UCX requests by slot */
    size_t            n_reqs, n_live;
    bool              notify;
    uint64_t          lease_id;  /* the caller's, in every data header */
    bool              reset_on_timeout;
    bt_xfer_am_notify_hdr_t nhdr;
    uint8_t          *user;
    struct event     *ev;        /* deadline timer and deferred report */
    uint64_t          t0_ns;
    uint64_t          bytes;
    bt_xfer_done_cb   cb;
    void             *arg;
};

/* ctx.c */
void bt_xfer_ctx_kick(bt_xfer_ctx_t *ctx);
/* Something happened (post, completion, receive): keeps the loop polling
 * for the spin window. */
static inline void bt_xfer_ctx_event(bt_xfer_ctx_t *ctx)
{
    ctx->events++;
}
void bt_xfer_ctx_closing_add(bt_xfer_ctx_t *ctx, void *req);
bt_status_t bt_xfer_status_from_ucs(ucs_status_t st);

/* Whether UCX_TLS may pick a transport of the family `names` (its alias
 * first, e.g. "shm", then its members; NULL-terminated): unset, empty or
 * "all" may pick anything, a "^" list anything but an excluded alias. */
bool bt_xfer_tls_may_use(const char *const *names);
extern const char *const bt_xfer_shm_names[];

/* peer.c */
bt_status_t bt_xfer_peer_get(bt_xfer_ctx_t *ctx, const bt_xfer_desc_t *d,
                             bt_xfer_peer_t **peer_p);
bt_status_t bt_xfer_peer_connect(bt_xfer_peer_t *peer);
void bt_xfer_peer_unref(bt_xfer_peer_t *peer);
void bt_xfer_peer_fail(bt_xfer_peer_t *peer, bt_status_t status);
/* A stall: fails the peer's transfers like bt_xfer_peer_fail, and the
 * next transfer connects anew, but the endpoint is set aside, not closed. */
void bt_xfer_peer_reset(bt_xfer_peer_t *peer);
void bt_xfer_peers_cleanup_failed(bt_xfer_ctx_t *ctx);
void bt_xfer_peer_destroy(bt_xfer_peer_t *peer);
bt_xfer_mode_t bt_xfer_peer_mode(const bt_xfer_peer_t *peer);

/* op.c */
/* The remote region mapped into this process for direct copies, or NULL
 * where the lane cannot (not shm, memory not UCX-allocated). The
 * remote's rkey must be unpacked. */
uint8_t *bt_xfer_remote_map(bt_xfer_remote_t *rm);
void bt_xfer_op_finish(bt_xfer_op_t *op, bt_status_t status);
void bt_xfer_op_free(bt_xfer_op_t *op);

/* prefault.c: a mapping (a remote's, or an own region) is faulted in by
 * the context's prefault thread, BT_XFER_PREFAULT_STEP bytes at a time
 * (under 2 ms on a VM with shadow page tables, far less on bare metal:
 * what stop may wait). Stop before the mapping goes; init and fini with
 * the context. */
#define BT_XFER_PREFAULT_STEP (1u << 20)
void bt_xfer_prefault_init(bt_xfer_ctx_t *ctx);
void bt_xfer_prefault_fini(bt_xfer_ctx_t *ctx);
void bt_xfer_prefault_start(bt_xfer_ctx_t *ctx, bt_xfer_pf_t *pf, void *base,
                            uint64_t length);
void bt_xfer_prefault_stop(bt_xfer_ctx_t *ctx, bt_xfer_pf_t *pf);
uint64_t bt_xfer_prefault_done(bt_xfer_ctx_t *ctx, const bt_xfer_pf_t *pf);

/* recv.c */
bt_status_t bt_xfer_recv_register(bt_xfer_ctx_t *ctx);
void bt_xfer_recv_cleanup(bt_xfer_ctx_t *ctx);

#endif
