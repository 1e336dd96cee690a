/* Client of baton-kvstore for serving nodes (DESIGN §5): lookups, puts
 * (Reserve -> UCX write of the blocks into the store's slab -> Commit with
 * sha256 checksums) and gets (Pin -> UCX read -> checksum and token ids
 * verified -> Unpin). Asynchronous on the process's libevent loop, like
 * common/rpc and common/xfer: every call returns at once and its callback
 * runs later on the loop thread, exactly once (never inside the call).
 *
 * Every operation has a deadline (`timeout_ms`); each step (RPC, transfer)
 * gets what is left of it, so a dead or stopped store fails the operation
 * with an error within the deadline, never a hang. A block is used only
 * after its bytes match the checksum the store recorded at commit and its
 * token ids match the request's (docs/kv-spec.md). Checksums are computed
 * on the loop thread (sha256, ~1.5 GB/s here).
 *
 * Lifetimes: the rpc client and xfer context outlive the kvc; the memory
 * of a put's blocks and a get's destinations stays valid until the
 * callback (after a failed transfer, until bt_xfer_ctx_outstanding_reqs()
 * is 0 — xfer.h). Destroy the kvc only when bt_kvc_inflight() is 0. */
#ifndef BT_KVC_H
#define BT_KVC_H

#include "kvspec/kv_hash.h"
#include "kvspec/kv_spec.h"
#include "rpc/client.h"
#include "xfer/xfer.h"

#include <event2/event.h>
#include <stddef.h>
#include <stdint.h>

typedef struct bt_kvc bt_kvc_t;

typedef struct {
    const char *target;      /* "ipv4:127.0.0.1:50061" (copied) */
    const char *model;       /* sent with requests (copied; may be NULL) */
    const char *node_id;     /* idem */
    uint64_t    timeout_ms;  /* default deadline per operation; 0 = 5000 */
    /* Credentials of the channel to the store (bt_rpc_tls_cfg_client);
     * NULL = plaintext. Used by bt_kvc_create only. */
    const bt_rpc_tls_t *tls;
} bt_kvc_opts_t;

bt_status_t bt_kvc_create(struct event_base *base, bt_rpc_client_t *rpc,
                          bt_xfer_ctx_t *xfer, const bt_kvc_opts_t *opts,
                          bt_kvc_t **kvc_p);
void bt_kvc_destroy(bt_kvc_t *kvc);
/* Operations whose callback has not run yet. */
size_t bt_kvc_inflight(const bt_kvc_t *kvc);

/* Hashes are n * 32 bytes in chain order; tokens n * block_size ids. */

typedef void (*bt_kvc_lookup_cb)(void *arg, bt_status_t status,
                                 size_t n_matched);
/* Longest stored prefix. With `tokens`, the store and then this client
 * check each hit's stored ids against them. */
bt_status_t bt_kvc_lookup(bt_kvc_t *kvc, const uint8_t *hashes, size_t n,
                          const uint32_t *tokens, size_t n_tokens,
                          uint64_t timeout_ms, bt_kvc_lookup_cb cb, void *arg);

typedef struct {
    bt_kv_geom_t     geom;
    uint64_t         block_bytes;
    const uint8_t   *parent;      /* 32 bytes: the hash before hashes[0] */
    const uint8_t   *hashes;      /* n * 32 */
    const uint32_t  *tokens;      /* n * geom.block_size */
    void *const     *data;        /* n pointers to block_bytes each */
    size_t           n;
    uint64_t         timeout_ms;  /* 0 = the kvc's default */
    /* Optional: called once the reservation is in, before the writes
     * start (progress reporting; tests kill the store here). */
    void           (*reserved_cb)(void *arg);
} bt_kvc_put_t;

typedef struct {
    uint32_t stored;     /* already in the store: not written */
    uint32_t written;    /* sent to the store */
    uint32_t committed;  /* of those, published */
    uint32_t rejected;   /* of those, refused (checksum, hash chain) */
    uint32_t durable;    /* of the committed, on the store's disk */
    uint32_t retried;    /* 1: the first transfer met a dead endpoint (a
                          * restarted store) and the put started over */
} bt_kvc_put_result_t;

/* `r` is NULL unless status is BT_OK. */
typedef void (*bt_kvc_put_cb)(void *arg, bt_status_t status,
                              const bt_kvc_put_result_t *r);
/* `p` and its arrays are copied except `data` (see above). On a failure
 * after the reservation, the reservation is aborted (best effort). A
 * transfer that finds the store's endpoint dead (a restarted store met
 * through the old connection) starts the put over once, from Reserve,
 * under the same deadline (`retried`). */
bt_status_t bt_kvc_put(bt_kvc_t *kvc, const bt_kvc_put_t *p,
                       bt_kvc_put_cb cb, void *arg);

typedef struct {
    const uint8_t   *hashes;      /* n * 32 */
    const uint32_t  *tokens;      /* n * block_size: every hit is checked */
    uint32_t         block_size;
    uint64_t         block_bytes;
    void *const     *dst;         /* n pointers to block_bytes each */
    size_t           n;
    uint64_t         timeout_ms;
    /* Optional: called once the pin is in, before the read starts. */
    void           (*pinned_cb)(void *arg);
} bt_kvc_get_t;

/* `n_got`: blocks 0 .. n_got-1 of `dst` hold verified bytes. */
typedef void (*bt_kvc_get_cb)(void *arg, bt_status_t status, size_t n_got);
bt_status_t bt_kvc_get(bt_kvc_t *kvc, const bt_kvc_get_t *g,
                       bt_kvc_get_cb cb, void *arg);

#endif
