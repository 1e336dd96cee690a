/* KV transfer over UCX (DESIGN §4): one UCP context and worker per process,
 * progressed from the process's libevent loop; registered regions with a
 * descriptor shipped over gRPC; an endpoint cache with peer error handling;
 * one-sided puts where the lane is truly one-sided (shared memory, RDMA)
 * and rendezvous active messages where UCX only emulates puts (tcp);
 * a completion message after the data; deadlines and aborts.
 *
 * Threading: every function here runs on the loop thread that owns the
 * event_base given to bt_xfer_ctx_create() (the worker is created
 * UCS_THREAD_MODE_SINGLE). Compute threads hand work to the loop through
 * bt_tpool_t `done` callbacks and post from there (docs/internals/xfer.md).
 *
 * Lifetimes: a region outlives every transfer that uses it; a remote
 * outlives the transfers aimed at it; the context outlives everything.
 * Callbacks fire on the loop thread, never from inside the call that
 * started the operation. */
#ifndef BT_XFER_H
#define BT_XFER_H

#include "base/status.h"

#include <event2/event.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct bt_xfer_ctx    bt_xfer_ctx_t;
typedef struct bt_xfer_region bt_xfer_region_t;
typedef struct bt_xfer_remote bt_xfer_remote_t;
typedef struct bt_xfer_op     bt_xfer_op_t;
typedef struct bt_xfer_stream bt_xfer_stream_t;

/* How bulk data moves to a peer. AUTO picks PUT when the endpoint has a
 * one-sided RMA lane (posix, sysv, cma, rc, dc...) and AM when UCX would
 * emulate puts (tcp). */
typedef enum {
    BT_XFER_MODE_AUTO = 0,
    BT_XFER_MODE_PUT,
    BT_XFER_MODE_AM,
} bt_xfer_mode_t;

/* Bytes of user data a completion message may carry. */
#define BT_XFER_USER_MAX 1024u

/* What the receiver's handler gets once every slice of a transfer landed
 * (or, with status < 0, when the sender's data could not all arrive).
 * Pointers are valid only during the callback. */
typedef struct {
    uint64_t    sender_id;   /* the sending context's random id */
    uint64_t    op_id;       /* unique per sender */
    uint64_t    lease_id;    /* caller's, e.g. the KV lease */
    uint32_t    region_id;   /* receiver-local region the data went to */
    uint32_t    layer;       /* caller's; UINT32_MAX for "whole request" */
    int32_t     status;      /* bt_status_t the sender reported */
    uint64_t    bytes;       /* payload bytes of the transfer */
    const void *user;        /* user bytes, up to BT_XFER_USER_MAX */
    size_t      user_len;
} bt_xfer_notify_t;

typedef void (*bt_xfer_notify_cb)(void *arg, const bt_xfer_notify_t *n);

/* Whether the receiver takes `len` bytes at `offset` of its region
 * `region_id`, written for `lease_id` (the writer's
 * bt_xfer_params_t.lease_id): called on the loop thread before a byte of
 * a data or batch message is copied (messages only: puts and direct
 * copies land without the receiver's knowledge). A refused slice is not
 * written, its transfer's completion message arrives with
 * BT_ERR_PEER_REJECTED, and rx_refused counts it. A decode node refuses
 * bytes for a lease that no longer waits for them, so a writer that was
 * cut off for longer than the lease's fence cannot land stale bytes in
 * blocks handed to another request (docs/internals/node.md "Lease
 * fence"). */
typedef bool (*bt_xfer_admit_cb)(void *arg, uint32_t region_id,
                                 uint64_t lease_id, uint64_t offset,
                                 uint64_t len);

/* Called once per transfer, on the loop thread: BT_OK, BT_ERR_TIMED_OUT,
 * BT_ERR_CANCELLED, BT_ERR_PEER_DIED, BT_ERR_PEER_UNREACHABLE... The op
 * handle is invalid after the callback returns. */
typedef void (*bt_xfer_done_cb)(void *arg, bt_status_t status);

/* Default poll window of the progress driver, in microseconds (chosen
 * by measurement, docs/internals/xfer.md "Figures"), and the spin_us
 * value that turns polling off. */
#define BT_XFER_SPIN_DEFAULT_US 50u
#define BT_XFER_SPIN_NONE       UINT32_MAX

typedef struct {
    /* How long, in microseconds after the last transfer event (a post, a
     * completion, a received message), the loop keeps polling the worker
     * instead of arming its event fd: the wake-up through the fd costs
     * ~100 us on shm, a poll ~1 us. The polling goes through the loop (a
     * zero timer per pass), so other events are served meanwhile; an idle
     * process sleeps. 0 = BT_XFER_SPIN_DEFAULT_US; BT_XFER_SPIN_NONE =
     * arm at once. */
    unsigned       spin_us;
    bt_xfer_mode_t mode;          /* default for new peers */
    /* Log the lanes chosen for each new endpoint at info (always logged
     * at debug), and warn when a same-host peer got no shm lane. */
    bool           log_lanes;
    /* One UCX operation per (coalesced) slice, as before batching: no
     * direct copies into a mapped shm region, no batch messages. For
     * A/B benchmarks (baton-xferbench --plain). */
    bool           plain_slices;
} bt_xfer_ctx_params_t;

/* Sets in this process's environment, unless the user did, the UCX
 * defaults the library runs with: UCX_POSIX_ERROR_HANDLING=y and
 * UCX_SYSV_ERROR_HANDLING=y (else peer error handling silently drops
 * shared memory for tcp), UCX_KEEPALIVE_INTERVAL=1s,
 * UCX_ADAPTIVE_PROGRESS=n (else a dead shm peer stalls the live ones) and
 * UCX_TCP_RX_SEG_SIZE=512K (tcp rendezvous fragments; 64K costs ~1/3 of
 * the bandwidth). Why each: docs/internals/xfer.md. bt_xfer_ctx_create()
 * calls it; baton-xferbench runs ucx_perftest under the same settings
 * too. */
void bt_xfer_env_defaults(void);

/* Creates the UCP context (RMA + AM + WAKEUP) and worker and hooks the
 * worker's event fd into `base`, after bt_xfer_env_defaults(). `params`
 * may be NULL. */
bt_status_t bt_xfer_ctx_create(struct event_base *base,
                               const bt_xfer_ctx_params_t *params,
                               bt_xfer_ctx_t **ctx_p);
/* Fails every outstanding transfer with BT_ERR_SHUTDOWN (callbacks run
 * inside this call), force-closes endpoints and frees the worker and
 * context. Regions and remotes still alive are destroyed too; their
 * pointers become invalid. NULL-safe. */
void bt_xfer_ctx_destroy(bt_xfer_ctx_t *ctx);

/* The handler for completion messages arriving at this process. */
void bt_xfer_ctx_set_notify_cb(bt_xfer_ctx_t *ctx, bt_xfer_notify_cb cb,
                               void *arg);
/* The admission check of data messages; NULL (the default) takes every
 * slice that fits its region. */
void bt_xfer_ctx_set_admit_cb(bt_xfer_ctx_t *ctx, bt_xfer_admit_cb cb,
                              void *arg);
uint64_t bt_xfer_ctx_id(const bt_xfer_ctx_t *ctx);
/* Polls the worker once without waiting (tests, spin loops). */
unsigned bt_xfer_ctx_progress(bt_xfer_ctx_t *ctx);
/* Transfers started and not yet reported (callback pending). */
size_t bt_xfer_ctx_outstanding(const bt_xfer_ctx_t *ctx);

/* --- regions ------------------------------------------------------- */

/* Allocates `length` bytes with UCX (ucp_mem_map + ALLOCATE), so shm puts
 * into it are truly one-sided; the KV pool then lives at
 * bt_xfer_region_base(). */
bt_status_t bt_xfer_region_alloc(bt_xfer_ctx_t *ctx, size_t length,
                                 bt_xfer_region_t **region_p);
/* The same, `data_len` bytes, with a write guard after them for writers
 * that copy straight into the mapped region (shm): each unit (offset o
 * is unit (o / unit_bytes) % n_units) takes direct copies only for the
 * lease set on it, and a lease's units are safe to reuse only once
 * bt_xfer_region_guard_busy says no live writer is inside a copy for it
 * (guard.h has the handshake; a writer stopped mid-copy finishes that
 * copy when it resumes). bt_xfer_region_length is `data_len`. */
bt_status_t bt_xfer_region_alloc_guarded(bt_xfer_ctx_t *ctx, size_t data_len,
                                         uint64_t unit_bytes, uint32_t n_units,
                                         bt_xfer_region_t **region_p);
/* Unit `unit` takes writes for `lease` (0: for none). No-op unguarded. */
void bt_xfer_region_guard_set(bt_xfer_region_t *r, uint64_t unit,
                              uint64_t lease);
/* The lease unit `unit` takes writes for (0: none; always 0 unguarded). */
uint64_t bt_xfer_region_guard_owner(const bt_xfer_region_t *r,
                                    uint64_t unit);
/* Whether [off, off + len) lies in the data and every unit of it takes
 * writes for `lease`; always true for a region without a guard. */
bool bt_xfer_region_guard_admits(const bt_xfer_region_t *r, uint64_t off,
                                 uint64_t len, uint64_t lease);
/* True while a live process is inside a direct copy for `lease` (its pid
 * in *pid_p): the lease's units must not be reused yet. */
bool bt_xfer_region_guard_busy(bt_xfer_region_t *r, uint64_t lease,
                               uint64_t *pid_p);
/* Registers caller memory (it must outlive the region). Works everywhere,
 * but shm puts into it are slower and stall when the owner is not
 * progressing (TOOLCHAIN.md); prefer bt_xfer_region_alloc. */
bt_status_t bt_xfer_region_register(bt_xfer_ctx_t *ctx, void *base,
                                    size_t length,
                                    bt_xfer_region_t **region_p);

/* Where a region's memory lives. */
typedef enum {
    BT_XFER_MEM_HOST,
    BT_XFER_MEM_CUDA,   /* device memory (cudaMalloc) */
} bt_xfer_mem_t;

/* Whether this process's UCX handles CUDA device memory (a UCX built
 * with cuda_copy/cuda_ipc; Debian's 1.13 is not: stage GPU KV through a
 * pinned host region, docs/internals/xfer.md "GPU memory"). */
bool bt_xfer_ctx_has_cuda(const bt_xfer_ctx_t *ctx);
/* bt_xfer_region_register for memory of type `mem`: a CUDA region is
 * mapped as UCS_MEMORY_TYPE_CUDA, so UCX moves it with its CUDA
 * transports; BT_ERR_UNSUPPORTED (one log line) where UCX has none. */
bt_status_t bt_xfer_region_register_mem(bt_xfer_ctx_t *ctx, void *base,
                                        size_t length, bt_xfer_mem_t mem,
                                        bt_xfer_region_t **region_p);
void bt_xfer_region_destroy(bt_xfer_region_t *region);

void *bt_xfer_region_base(const bt_xfer_region_t *region);
size_t bt_xfer_region_length(const bt_xfer_region_t *region);
uint32_t bt_xfer_region_id(const bt_xfer_region_t *region);
/* Faults the region's pages into this process in the background (the
 * context's prefault thread, at low priority; the bytes are unchanged),
 * so that the first write or read of each page does not stall whoever
 * makes it: a KV pool's compute threads, or its first read of blocks a
 * peer wrote. The pages are then committed: the whole region counts
 * against the host's memory. Logs when done. */
void bt_xfer_region_prefault(bt_xfer_region_t *region);
/* Bytes of the region, from its start, faulted in so far. */
uint64_t bt_xfer_region_prefaulted(const bt_xfer_region_t *region);

/* The descriptor to ship to peers: magic, version, base, length, region
 * id, this worker's address, the packed rkey, the host name and a
 * checksum. Caller frees *blob_p with free(). */
bt_status_t bt_xfer_region_export(const bt_xfer_region_t *region,
                                  void **blob_p, size_t *len_p);

/* --- remotes (a peer's region) -------------------------------------- */

/* Validates a peer's descriptor (length of every field, magic, version,
 * checksum: a corrupt, truncated or foreign blob gives BT_ERR_CORRUPT,
 * BT_ERR_TRUNCATED or BT_ERR_UNSUPPORTED with a log line, never a crash),
 * finds or creates the endpoint to the peer's worker and unpacks the
 * rkey. The blob is copied. */
bt_status_t bt_xfer_remote_import(bt_xfer_ctx_t *ctx, const void *blob,
                                  size_t len, bt_xfer_remote_t **remote_p);
void bt_xfer_remote_destroy(bt_xfer_remote_t *remote);
size_t bt_xfer_remote_length(const bt_xfer_remote_t *remote);
/* The owner's context id: what its completion messages carry as
 * sender_id, so a receiver can answer the right peer. */
uint64_t bt_xfer_remote_owner_id(const bt_xfer_remote_t *remote);
/* Bytes of the region, from its start, faulted into this process's
 * mapping for direct copies so far (the context's prefault thread does it
 * once the region is mapped; 0 while it is not). */
uint64_t bt_xfer_remote_prefaulted(const bt_xfer_remote_t *remote);
/* The mode transfers to this remote use (AUTO resolved). */
bt_xfer_mode_t bt_xfer_remote_mode(const bt_xfer_remote_t *remote);
/* Whether writes to this remote are copied straight into its region,
 * mapped into this process (shm: ucp_rkey_ptr), with no UCX operation
 * per slice. Connects the peer if needed; false where it cannot. */
bool bt_xfer_remote_direct(bt_xfer_remote_t *remote);
/* Overrides the context default for this remote's peer. */
void bt_xfer_remote_set_mode(bt_xfer_remote_t *remote, bt_xfer_mode_t mode);

/* --- transfers ------------------------------------------------------ */

/* One piece: `len` bytes between `local` and the remote region at
 * `remote_off`. Local memory should lie in a region of this context for
 * speed (UCX registers other memory on the fly). */
typedef struct {
    void    *local;
    uint64_t remote_off;
    uint64_t len;
} bt_xfer_slice_t;

typedef struct {
    bt_xfer_remote_t      *remote;
    const bt_xfer_slice_t *slices;     /* copied; may be freed on return */
    size_t                 n_slices;   /* 0 allowed: notify only */
    uint64_t               timeout_ms; /* 0 = no deadline */
    /* A timeout with data still in flight means the endpoint is stuck,
     * not slow: set it aside (the peer's other transfers fail with
     * BT_ERR_PEER_UNREACHABLE) so that the next transfer connects anew;
     * the old one is closed once UCX reports it failed, never while data
     * may wait in it (UCX 1.13 crashed at healing after such a close).
     * A healed partition leaves a tcp connection in retransmission
     * backoff for up to two minutes; a new one sends at once. For stall
     * bounds (bt_xfer_stream_params_t.stall_ms), not request deadlines;
     * only on peers without a one-sided lane (tcp). */
    bool                   reset_on_timeout;
    /* Completion message (writes only). */
    bool                   notify;
    uint64_t               lease_id;
    uint32_t               layer;
    const void            *user;       /* copied, <= BT_XFER_USER_MAX */
    size_t                 user_len;
    bt_xfer_done_cb        cb;
    void                  *arg;
} bt_xfer_params_t;

/* Writes the slices (adjacent ones coalesced) as one operation, then
 * sends the completion message when `notify`: a batch of slices costs
 * one completion, not one per slice. How the slices move depends on the
 * lane (docs/internals/xfer.md "Batches"): copied straight into the
 * mapped region (shm), packed into eager batch messages of up to 64
 * slices / 256 KiB (tcp, short slices), one rendezvous message each
 * (tcp, long slices), or one put each then a flush (other RMA lanes).
 * Every slice is checked against the remote region before anything
 * moves, and again by the receiver where it sees them (messages). BT_IN_PROGRESS and *op_p on success
 * (`cb` follows once); an error status and no callback when the request
 * is refused (bad slice bounds, dead peer, too much user data). Local
 * memory must stay valid until the callback, and after an abort until
 * bt_xfer_ctx_outstanding_reqs() drops to 0 (UCX may still read it). */
bt_status_t bt_xfer_write(bt_xfer_ctx_t *ctx, const bt_xfer_params_t *p,
                          bt_xfer_op_t **op_p);
/* Reads the slices from the remote region with ucp_get_nbx (a kvstore
 * slab into the local pool); `notify` is ignored. Over tcp UCX emulates
 * gets with messages the remote worker must progress. */
bt_status_t bt_xfer_read(bt_xfer_ctx_t *ctx, const bt_xfer_params_t *p,
                         bt_xfer_op_t **op_p);
/* Cancels the transfer's outstanding UCX requests and calls its callback
 * with BT_ERR_CANCELLED now. The remote bytes it covered are undefined;
 * both regions stay usable. */
void bt_xfer_op_abort(bt_xfer_op_t *op);

/* UCX requests still held by finished-but-aborted transfers. */
size_t bt_xfer_ctx_outstanding_reqs(const bt_xfer_ctx_t *ctx);

/* Merges neighbours where both the local and the remote ranges continue
 * each other; order is kept. Returns the new count (in place). */
size_t bt_xfer_slices_coalesce(bt_xfer_slice_t *slices, size_t n);

/* --- layer-wise streaming (prefill -> decode) ------------------------ */

typedef struct {
    bt_xfer_remote_t *remote;
    uint64_t          timeout_ms;  /* whole stream; 0 = none */
    /* most time one posted layer (or the final message) may take before
     * the stream fails BT_ERR_TIMED_OUT; 0 = only timeout_ms. A peer cut
     * off by the network stalls a transfer without failing it (tcp goes
     * on retransmitting for many minutes). A stall also resets the
     * endpoint (bt_xfer_params_t.reset_on_timeout). */
    uint64_t          stall_ms;
    uint64_t          lease_id;
    bt_xfer_done_cb   cb;          /* once: after the final message, or on
                                    * the first failure */
    void             *arg;
    /* NULL, or each post that landed (its layer), before the final
     * message; for timelines: must not post, complete or destroy */
    void            (*landed_cb)(void *arg, uint32_t layer);
} bt_xfer_stream_params_t;

bt_status_t bt_xfer_stream_create(bt_xfer_ctx_t *ctx,
                                  const bt_xfer_stream_params_t *p,
                                  bt_xfer_stream_t **stream_p);
/* Starts layer `layer`'s slices now (call as soon as the layer of the
 * chunk is computed; transfers overlap the next layer's compute).
 * BT_OK, or the stream's error once it failed. */
bt_status_t bt_xfer_stream_post(bt_xfer_stream_t *stream, uint32_t layer,
                                const bt_xfer_slice_t *slices, size_t n);
/* After the last layer: once every posted layer landed, sends the final
 * completion message (layer UINT32_MAX) with `user` bytes (e.g. the first
 * token), then calls the stream's callback. */
bt_status_t bt_xfer_stream_complete(bt_xfer_stream_t *stream,
                                    const void *user, size_t user_len);
/* Aborts what is in flight (callback with BT_ERR_CANCELLED if not yet
 * called) and frees the stream. NULL-safe. Call after the callback too. */
void bt_xfer_stream_destroy(bt_xfer_stream_t *stream);

/* --- counters ------------------------------------------------------- */

typedef struct {
    char        name[64];        /* peer host and id, for display */
    uint64_t    tx_bytes;
    uint64_t    rx_bytes;        /* gets from this peer */
    uint64_t    ops;             /* transfers completed OK */
    uint64_t    errors;          /* transfers failed */
    int32_t     last_error;      /* bt_status_t of the last failure, 0 */
    uint64_t    last_latency_us; /* of the last successful transfer */
    bool        alive;           /* endpoint usable */
    uint64_t    resets;          /* endpoints set aside because they
                                  * stalled (bt_xfer_params_t.reset_on_timeout) */
    uint64_t    stale_endpoints; /* of those, not failed yet: still open */
    bt_xfer_mode_t mode;
    char        lanes[96];       /* e.g. "posix sysv cma" or "tcp" */
} bt_xfer_peer_stats_t;

/* Calls `cb` for each known peer (a snapshot per call). */
typedef void (*bt_xfer_peer_stats_cb)(void *arg,
                                      const bt_xfer_peer_stats_t *s);
void bt_xfer_ctx_peers_foreach(bt_xfer_ctx_t *ctx, bt_xfer_peer_stats_cb cb,
                               void *arg);

/* Received side, all peers together. */
typedef struct {
    uint64_t rx_bytes;
    uint64_t rx_msgs;
    uint64_t rx_rejected;        /* malformed or out-of-bounds messages */
    uint64_t rx_refused;         /* slices the admit check refused */
    uint64_t notifies;
} bt_xfer_rx_stats_t;
void bt_xfer_ctx_rx_stats(const bt_xfer_ctx_t *ctx, bt_xfer_rx_stats_t *s_p);

#endif
