/* The kvstore client: one state machine per operation, each step an RPC
 * or a UCX transfer under what is left of the operation's deadline. */
#include "kvc.h"

#include "base/clock.h"
#include "base/log.h"
#include "base/sha256.h"
#include "base/tpool.h"
#include "kvspec/kv_proto.h"
#include "kvstore.pb-c.h"

#include <stdlib.h>
#include <string.h>

/* A store slab seen from here, keyed by its descriptor: a restarted store
 * exports a new one. */
typedef struct bt_kvc_remote {
    void                 *desc;
    size_t                len;
    bt_xfer_remote_t     *remote;
    uint32_t              users;
    bool                  dead;     /* a transfer to it failed its peer */
    struct bt_kvc_remote *next;
} bt_kvc_remote_t;

/* Checksums of puts and gets are computed here, off the loop thread that
 * decodes: a put of 100 blocks of 256 KiB is some 25 MiB of SHA-256. */
#define BT_KVC_HASH_THREADS 1
#define BT_KVC_HASH_QUEUE 4096

struct bt_kvc {
    bt_rpc_client_t  *rpc;
    bt_tpool_t       *hash_pool;   /* NULL: hashed on the loop */
    bool              closing;
    bt_xfer_ctx_t    *xfer;
    bt_rpc_channel_t *ch;
    char             *model;
    char             *node_id;
    uint64_t          timeout_ms;
    bt_kvc_remote_t  *remotes;
    size_t            inflight;
};

typedef struct {
    bt_kvc_t        *kvc;
    bt_deadline_t    deadline;
    uint64_t         t0_ms;        /* start, and when each put step ended: */
    uint64_t         t_resv_ms, t_write_ms;   /* why a deadline passed */
    size_t           n;
    uint8_t         *hashes;       /* n * 32, copied */
    uint32_t        *tokens;       /* n * block_size, copied (may be NULL) */
    uint32_t         block_size;
    uint64_t         block_bytes;
    void           **mem;          /* put: sources; get: destinations */
    uint8_t         *sums;         /* n * 32 checksums */
    bt_kvc_remote_t *rm;
    bt_xfer_op_t    *xop;          /* the transfer in flight */
    /* put */
    bt_kv_geom_t     geom;
    uint8_t          parent[BT_KV_HASH_LEN];
    uint64_t         resv_id;
    bool            *write;        /* block i goes to the store */
    void           (*reserved_cb)(void *arg);
    void           (*pinned_cb)(void *arg);
    bt_kvc_put_result_t res;
    bool             retried;      /* started over once (bt_kvc_put_retry) */
    /* the checksums are computed while the transfer runs */
    bool             hashing;      /* a hash task holds the op */
    bool             written;      /* the transfer ended (write_st) */
    bt_status_t      write_st;
    /* get */
    uint64_t         pin_id;
    size_t           n_pinned;
    size_t           n_good;       /* pinned blocks whose checksum held */
    union {
        bt_kvc_lookup_cb lookup;
        bt_kvc_put_cb    put;
        bt_kvc_get_cb    get;
    } cb;
    void            *arg;
} bt_kvc_op_t;

/* ---- kvc ---- */

bt_status_t bt_kvc_create(struct event_base *base, bt_rpc_client_t *rpc,
                          bt_xfer_ctx_t *xfer, const bt_kvc_opts_t *opts,
                          bt_kvc_t **kvc_p)
{
    bt_kvc_t *kvc;

    if (rpc == NULL || xfer == NULL || opts == NULL || opts->target == NULL) {
        return BT_ERR_INVALID_ARG;
    }
    kvc = calloc(1, sizeof(*kvc));
    if (kvc == NULL) {
        return BT_ERR_NO_MEMORY;
    }
    kvc->rpc = rpc;
    kvc->xfer = xfer;
    kvc->timeout_ms = opts->timeout_ms > 0 ? opts->timeout_ms : 5000;
    kvc->model = strdup(opts->model != NULL ? opts->model : "");
    kvc->node_id = strdup(opts->node_id != NULL ? opts->node_id : "");
    kvc->ch = bt_rpc_channel_create(rpc, opts->target, opts->tls);
    if (base != NULL) {
        kvc->hash_pool = bt_tpool_create(base, BT_KVC_HASH_THREADS,
                                         BT_KVC_HASH_QUEUE);
        if (kvc->hash_pool == NULL) {
            bt_warn("kvstore client: no checksum thread; checksums are "
                    "computed on the loop");
        }
    }
    if (kvc->model == NULL || kvc->node_id == NULL || kvc->ch == NULL) {
        bt_kvc_destroy(kvc);
        return BT_ERR_NO_MEMORY;
    }
    *kvc_p = kvc;
    return BT_OK;
}

void bt_kvc_destroy(bt_kvc_t *kvc)
{
    if (kvc == NULL) {
        return;
    }
    /* a checksum task still queued ends its operation with
     * BT_ERR_SHUTDOWN while the channel can still abort its reservation */
    kvc->closing = true;
    bt_tpool_destroy(kvc->hash_pool);
    kvc->hash_pool = NULL;
    if (kvc->inflight > 0) {
        bt_error("kvstore client destroyed with %zu operations in flight",
                 kvc->inflight);
    }
    while (kvc->remotes != NULL) {
        bt_kvc_remote_t *rm = kvc->remotes;

        kvc->remotes = rm->next;
        bt_xfer_remote_destroy(rm->remote);
        free(rm->desc);
        free(rm);
    }
    bt_rpc_channel_destroy(kvc->ch);
    free(kvc->model);
    free(kvc->node_id);
    free(kvc);
}

size_t bt_kvc_inflight(const bt_kvc_t *kvc)
{
    return kvc->inflight;
}

/* ---- remotes ---- */

static void bt_kvc_remotes_gc(bt_kvc_t *kvc)
{
    bt_kvc_remote_t **pp = &kvc->remotes;

    while (*pp != NULL) {
        bt_kvc_remote_t *rm = *pp;

        /* keep the newest; drop dead or superseded ones nobody uses */
        if (rm->users == 0 && (rm->dead || rm != kvc->remotes)) {
            *pp = rm->next;
            bt_xfer_remote_destroy(rm->remote);
            free(rm->desc);
            free(rm);
            continue;
        }
        pp = &rm->next;
    }
}

static bt_status_t bt_kvc_remote_get(bt_kvc_t *kvc, const ProtobufCBinaryData *d,
                                     bt_kvc_remote_t **rm_p)
{
    bt_kvc_remote_t *rm;
    bt_status_t st;

    if (d->len == 0) {
        bt_error("the kvstore sent no region descriptor");
        return BT_ERR_PEER_PROTOCOL;
    }
    for (rm = kvc->remotes; rm != NULL; rm = rm->next) {
        if (!rm->dead && rm->len == d->len && memcmp(rm->desc, d->data, d->len) == 0) {
            rm->users++;
            *rm_p = rm;
            return BT_OK;
        }
    }
    rm = calloc(1, sizeof(*rm));
    if (rm == NULL || (rm->desc = malloc(d->len)) == NULL) {
        free(rm);
        return BT_ERR_NO_MEMORY;
    }
    st = bt_xfer_remote_import(kvc->xfer, d->data, d->len, &rm->remote);
    if (st != BT_OK) {
        free(rm->desc);
        free(rm);
        return st;
    }
    memcpy(rm->desc, d->data, d->len);
    rm->len = d->len;
    rm->users = 1;
    rm->next = kvc->remotes;
    kvc->remotes = rm;
    bt_kvc_remotes_gc(kvc);
    *rm_p = rm;
    return BT_OK;
}

/* ---- operations ---- */

static bt_kvc_op_t *bt_kvc_op_new(bt_kvc_t *kvc, size_t n, uint64_t timeout_ms)
{
    bt_kvc_op_t *op = calloc(1, sizeof(*op));

    if (op == NULL) {
        return NULL;
    }
    op->kvc = kvc;
    op->n = n;
    op->t0_ms = bt_now_ms();
    op->deadline = bt_deadline_in_ms(timeout_ms > 0 ? timeout_ms : kvc->timeout_ms);
    op->hashes = malloc(n * BT_KV_HASH_LEN + 1);
    op->sums = calloc(n + 1, BT_KV_HASH_LEN);
    op->mem = calloc(n + 1, sizeof(*op->mem));
    op->write = calloc(n + 1, sizeof(*op->write));
    if (op->hashes == NULL || op->sums == NULL || op->mem == NULL ||
        op->write == NULL) {
        free(op->hashes);
        free(op->sums);
        free(op->mem);
        free(op->write);
        free(op);
        return NULL;
    }
    return op;
}

static void bt_kvc_op_free(bt_kvc_op_t *op)
{
    bt_kvc_t *kvc = op->kvc;

    if (op->rm != NULL) {
        op->rm->users--;
        bt_kvc_remotes_gc(kvc);
    }
    kvc->inflight--;
    free(op->hashes);
    free(op->tokens);
    free(op->sums);
    free(op->mem);
    free(op->write);
    free(op);
}

/* Milliseconds left for the next step; 0 when the deadline passed. */
static uint64_t bt_kvc_left(const bt_kvc_op_t *op)
{
    uint64_t left = bt_deadline_left_ms(op->deadline);

    return left == UINT64_MAX ? 0 : left;
}

static void bt_kvc_ignore_done(void *arg, const bt_rpc_result_t *r,
                               const ProtobufCMessage *resp)
{
    (void)arg;
    (void)resp;
    if (r->code != BT_RPC_OK) {
        bt_debug("kvstore cleanup call failed: %s", r->message);
    }
}

/* Best effort: free the store's side of a failed operation. */
static void bt_kvc_abort_reservation(bt_kvc_op_t *op)
{
    Baton__V1__CommitRequest req = BATON__V1__COMMIT_REQUEST__INIT;

    if (op->resv_id == 0) {
        return;
    }
    req.reservation_id = op->resv_id;
    req.abort = true;
    bt_rpc_client_unary(op->kvc->ch, "/baton.v1.KvStore/Commit", &req.base,
                        &baton__v1__commit_response__descriptor,
                        &(bt_rpc_call_opts_t){ .timeout_ms = 1000 },
                        bt_kvc_ignore_done, NULL, NULL);
}

static void bt_kvc_unpin(bt_kvc_op_t *op)
{
    Baton__V1__UnpinRequest req = BATON__V1__UNPIN_REQUEST__INIT;

    if (op->pin_id == 0) {
        return;
    }
    req.pin_id = op->pin_id;
    bt_rpc_client_unary(op->kvc->ch, "/baton.v1.KvStore/Unpin", &req.base,
                        &baton__v1__unpin_response__descriptor,
                        &(bt_rpc_call_opts_t){ .timeout_ms = 1000 },
                        bt_kvc_ignore_done, NULL, NULL);
}

static void bt_kvc_xfer_failed(bt_kvc_op_t *op, bt_status_t st)
{
    if (bt_status_is_peer_err(st) && op->rm != NULL) {
        op->rm->dead = true;   /* the next operation imports afresh */
    }
}

/* ---- lookup ---- */

static void bt_kvc_lookup_done(void *arg, const bt_rpc_result_t *r,
                               const ProtobufCMessage *msg)
{
    bt_kvc_op_t *op = arg;
    const Baton__V1__LookupResponse *resp = (const void *)msg;
    size_t m = 0;

    if (r->code != BT_RPC_OK) {
        bt_debug("kvstore lookup failed: %s", r->message);
        op->cb.lookup(op->arg, r->status, 0);
        bt_kvc_op_free(op);
        return;
    }
    /* the store's answer is checked, not trusted */
    while (m < resp->matched_blocks && m < op->n && m < resp->n_locations) {
        const Baton__V1__BlockLocation *l = resp->locations[m];

        if (l->block_hash.len != BT_KV_HASH_LEN ||
            memcmp(l->block_hash.data, op->hashes + m * BT_KV_HASH_LEN,
                   BT_KV_HASH_LEN) != 0 ||
            (op->tokens != NULL &&
             !bt_kv_tokens_match(l->token_ids, (uint32_t)l->n_token_ids,
                                 op->tokens + m * op->block_size,
                                  op->block_size))) {
            break;
        }
        m++;
    }
    op->cb.lookup(op->arg, BT_OK, m);
    bt_kvc_op_free(op);
}

bt_status_t bt_kvc_lookup(bt_kvc_t *kvc, const uint8_t *hashes, size_t n,
                          const uint32_t *tokens, size_t n_tokens,
                          uint64_t timeout_ms, bt_kvc_lookup_cb cb, void *arg)
{
    Baton__V1__LookupRequest req = BATON__V1__LOOKUP_REQUEST__INIT;
    ProtobufCBinaryData *hb;
    bt_kvc_op_t *op;
    bt_status_t st;

    if (n > BT_KV_MAX_HASHES || (tokens != NULL && (n == 0 || n_tokens % n != 0))) {
        return BT_ERR_INVALID_ARG;
    }
    op = bt_kvc_op_new(kvc, n, timeout_ms);
    hb = calloc(n + 1, sizeof(*hb));
    if (op == NULL || hb == NULL ||
        (tokens != NULL && (op->tokens = malloc(4 * n_tokens)) == NULL)) {
        free(hb);
        if (op != NULL) {
            kvc->inflight++;
            bt_kvc_op_free(op);
        }
        return BT_ERR_NO_MEMORY;
    }
    memcpy(op->hashes, hashes, n * BT_KV_HASH_LEN);
    if (tokens != NULL) {
        memcpy(op->tokens, tokens, 4 * n_tokens);
        op->block_size = (uint32_t)(n_tokens / n);
    }
    for (size_t i = 0; i < n; i++) {
        hb[i].data = op->hashes + i * BT_KV_HASH_LEN;
        hb[i].len = BT_KV_HASH_LEN;
    }
    req.model = kvc->model;
    req.n_block_hashes = n;
    req.block_hashes = hb;
    req.n_token_ids = tokens != NULL ? n_tokens : 0;
    req.token_ids = op->tokens;
    op->cb.lookup = cb;
    op->arg = arg;
    kvc->inflight++;
    st = bt_rpc_client_unary(kvc->ch, "/baton.v1.KvStore/Lookup", &req.base,
                             &baton__v1__lookup_response__descriptor,
                             &(bt_rpc_call_opts_t){ .timeout_ms = bt_kvc_left(op) },
                             bt_kvc_lookup_done, op, NULL);
    free(hb);
    if (st != BT_OK) {
        bt_kvc_op_free(op);
    }
    return st;
}

/* ---- put ---- */

static bool bt_kvc_put_retry(bt_kvc_op_t *op, bt_status_t st);

static void bt_kvc_put_finish(bt_kvc_op_t *op, bt_status_t st)
{
    if (st != BT_OK) {
        bt_kvc_abort_reservation(op);
    }
    op->cb.put(op->arg, st, st == BT_OK ? &op->res : NULL);
    bt_kvc_op_free(op);
}

static void bt_kvc_commit_done(void *arg, const bt_rpc_result_t *r,
                               const ProtobufCMessage *msg)
{
    bt_kvc_op_t *op = arg;
    const Baton__V1__CommitResponse *resp = (const void *)msg;

    if (r->code != BT_RPC_OK) {
        /* the steps' times say where the deadline went: a commit waits
         * for the store's io threads (checksums, block files, fsync) */
        bt_warn("kvstore commit of reservation %llu failed after %llu ms "
                "(reserve %llu ms, write %llu ms, commit %llu ms): %s",
                (unsigned long long)op->resv_id,
                (unsigned long long)(bt_now_ms() - op->t0_ms),
                (unsigned long long)(op->t_resv_ms - op->t0_ms),
                (unsigned long long)(op->t_write_ms - op->t_resv_ms),
                (unsigned long long)(bt_now_ms() - op->t_write_ms),
                r->message);
        op->resv_id = 0;   /* the store drops it by itself */
        bt_kvc_put_finish(op, r->status);
        return;
    }
    op->res.committed = resp->committed;
    op->res.rejected = resp->rejected;
    op->res.durable = resp->durable;
    op->resv_id = 0;
    bt_kvc_put_finish(op, BT_OK);
}

static void bt_kvc_commit_send(bt_kvc_op_t *op)
{
    Baton__V1__CommitRequest req = BATON__V1__COMMIT_REQUEST__INIT;
    Baton__V1__CommittedBlock *blocks = calloc(op->n + 1, sizeof(*blocks));
    Baton__V1__CommittedBlock **ptrs = calloc(op->n + 1, sizeof(*ptrs));
    uint64_t left = bt_kvc_left(op);
    bt_status_t st;
    size_t k = 0;

    if (blocks == NULL || ptrs == NULL || left == 0) {
        free(blocks);
        free(ptrs);
        bt_kvc_put_finish(op, left == 0 ? BT_ERR_TIMED_OUT : BT_ERR_NO_MEMORY);
        return;
    }
    for (size_t i = 0; i < op->n; i++) {
        if (!op->write[i]) {
            continue;
        }
        baton__v1__committed_block__init(&blocks[k]);
        blocks[k].block_hash.data = op->hashes + i * BT_KV_HASH_LEN;
        blocks[k].block_hash.len = BT_KV_HASH_LEN;
        blocks[k].n_token_ids = op->block_size;
        blocks[k].token_ids = op->tokens + i * op->block_size;
        blocks[k].checksum.data = op->sums + i * BT_KV_HASH_LEN;
        blocks[k].checksum.len = BT_KV_HASH_LEN;
        ptrs[k] = &blocks[k];
        k++;
    }
    req.reservation_id = op->resv_id;
    req.n_blocks = k;
    req.blocks = ptrs;
    st = bt_rpc_client_unary(op->kvc->ch, "/baton.v1.KvStore/Commit", &req.base,
                             &baton__v1__commit_response__descriptor,
                             &(bt_rpc_call_opts_t){ .timeout_ms = left },
                             bt_kvc_commit_done, op, NULL);
    free(blocks);
    free(ptrs);
    if (st != BT_OK) {
        bt_kvc_put_finish(op, st);
    }
}

/* Both halves of a put's middle step are done: the transfer and the
 * checksums. */
static void bt_kvc_put_written(bt_kvc_op_t *op)
{
    bt_status_t st = op->kvc->closing ? BT_ERR_SHUTDOWN : op->write_st;

    if (st != BT_OK) {
        bt_kvc_xfer_failed(op, st);
        if (bt_kvc_put_retry(op, st)) {
            return;
        }
        bt_warn("kvstore put: transfer of reservation %llu failed: %s",
                (unsigned long long)op->resv_id, bt_status_str(st));
        bt_kvc_put_finish(op, st);
        return;
    }
    bt_kvc_commit_send(op);
}

static void bt_kvc_write_done(void *arg, bt_status_t st)
{
    bt_kvc_op_t *op = arg;

    op->t_write_ms = bt_now_ms();
    op->written = true;
    op->write_st = st;
    if (!op->hashing) {
        bt_kvc_put_written(op);
    }
}

/* Worker thread: the blocks' sources are not written while a put holds
 * them, and nothing else touches op->sums. */
static void bt_kvc_put_hash_work(void *arg)
{
    bt_kvc_op_t *op = arg;

    for (size_t i = 0; i < op->n; i++) {
        if (op->write[i]) {
            bt_sha256(op->mem[i], op->block_bytes,
                      op->sums + i * BT_KV_HASH_LEN);
        }
    }
}

static void bt_kvc_put_hash_done(void *arg, bt_status_t st)
{
    bt_kvc_op_t *op = arg;

    (void)st;
    op->hashing = false;
    if (op->written) {
        bt_kvc_put_written(op);
    }
}

static void bt_kvc_reserve_done(void *arg, const bt_rpc_result_t *r,
                                const ProtobufCMessage *msg)
{
    bt_kvc_op_t *op = arg;
    const Baton__V1__ReserveResponse *resp = (const void *)msg;
    bt_xfer_slice_t *slices;
    bt_xfer_params_t xp;
    size_t k = 0;
    bt_status_t st;

    op->t_resv_ms = op->t_write_ms = bt_now_ms();
    if (r->code != BT_RPC_OK) {
        bt_debug("kvstore reserve failed: %s", r->message);
        bt_kvc_put_finish(op, r->status);
        return;
    }
    op->resv_id = resp->reservation_id;
    if (resp->n_slots != op->n) {
        bt_error("kvstore answered %zu slots for %zu blocks", resp->n_slots, op->n);
        bt_kvc_put_finish(op, BT_ERR_PEER_PROTOCOL);
        return;
    }
    slices = calloc(op->n + 1, sizeof(*slices));
    if (slices == NULL) {
        bt_kvc_put_finish(op, BT_ERR_NO_MEMORY);
        return;
    }
    for (size_t i = 0; i < op->n; i++) {
        const Baton__V1__BlockLocation *l = resp->slots[i];

        if (l->tier == BATON__V1__KV_TIER__KV_TIER_UNSPECIFIED) {
            op->res.stored++;
            continue;
        }
        if (l->length != op->block_bytes) {
            bt_error("kvstore slot %zu is %u bytes, a block is %llu", i,
                     l->length, (unsigned long long)op->block_bytes);
            free(slices);
            bt_kvc_put_finish(op, BT_ERR_PEER_PROTOCOL);
            return;
        }
        op->write[i] = true;
        slices[k].local = op->mem[i];
        slices[k].remote_off = l->offset;
        slices[k].len = op->block_bytes;
        k++;
    }
    op->res.written = (uint32_t)k;
    if (k == 0) {
        free(slices);
        bt_kvc_commit_send(op);   /* frees the reservation at once */
        return;
    }
    st = bt_kvc_remote_get(op->kvc, &resp->region_descriptor, &op->rm);
    if (st != BT_OK) {
        free(slices);
        bt_kvc_put_finish(op, st);
        return;
    }
    if (op->reserved_cb != NULL) {
        op->reserved_cb(op->arg);
    }
    memset(&xp, 0, sizeof(xp));
    xp.remote = op->rm->remote;
    xp.slices = slices;
    xp.n_slices = k;
    xp.timeout_ms = bt_kvc_left(op);
    /* the completion message tells the store the bytes landed */
    xp.notify = true;
    xp.lease_id = op->resv_id;
    xp.cb = bt_kvc_write_done;
    xp.arg = op;
    if (xp.timeout_ms == 0) {
        st = BT_ERR_TIMED_OUT;
    } else {
        st = bt_xfer_write(op->kvc->xfer, &xp, &op->xop);
    }
    free(slices);
    if (st != BT_IN_PROGRESS && st != BT_OK) {
        bt_kvc_xfer_failed(op, st);
        if (!bt_kvc_put_retry(op, st)) {
            bt_kvc_put_finish(op, st);
        }
        return;
    }
    /* the checksums while the bytes travel (the transfer's callback is
     * never called from inside bt_xfer_write) */
    op->hashing = true;
    if (op->kvc->hash_pool == NULL ||
        bt_tpool_submit(op->kvc->hash_pool, bt_kvc_put_hash_work,
                        bt_kvc_put_hash_done, op) != BT_OK) {
        bt_kvc_put_hash_work(op);
        op->hashing = false;
    }
}

/* Reserve: the first step of a put, and of its one retry. */
static bt_status_t bt_kvc_reserve_send(bt_kvc_op_t *op)
{
    bt_kvc_t *kvc = op->kvc;
    Baton__V1__ReserveRequest req = BATON__V1__RESERVE_REQUEST__INIT;
    Baton__V1__KvGeometry geom = BATON__V1__KV_GEOMETRY__INIT;
    ProtobufCBinaryData *hb = calloc(op->n, sizeof(*hb));
    bt_status_t st;

    if (hb == NULL) {
        return BT_ERR_NO_MEMORY;
    }
    for (size_t i = 0; i < op->n; i++) {
        hb[i].data = op->hashes + i * BT_KV_HASH_LEN;
        hb[i].len = BT_KV_HASH_LEN;
    }
    bt_kv_geom_to_proto(&op->geom, &geom);
    req.model = kvc->model;
    req.node_id = kvc->node_id;
    req.n_block_hashes = op->n;
    req.block_hashes = hb;
    req.geometry = &geom;
    req.block_bytes = (uint32_t)op->block_bytes;
    req.parent_hash.data = op->parent;
    req.parent_hash.len = BT_KV_HASH_LEN;
    st = bt_rpc_client_unary(kvc->ch, "/baton.v1.KvStore/Reserve", &req.base,
                             &baton__v1__reserve_response__descriptor,
                             &(bt_rpc_call_opts_t){ .timeout_ms = bt_kvc_left(op) },
                             bt_kvc_reserve_done, op, NULL);
    free(hb);
    return st;
}

/* A put whose transfer found the store's endpoint dead, the first time:
 * a restarted store answers Reserve with a new slab, but the first write
 * to it can still meet the connection to the old process. The slab is
 * imported afresh and the put starts over once, under its deadline. */
static bool bt_kvc_put_retry(bt_kvc_op_t *op, bt_status_t st)
{
    if (op->retried || !bt_status_is_peer_err(st) || op->kvc->closing ||
        bt_kvc_left(op) == 0) {
        return false;
    }
    bt_info("kvstore put: transfer of reservation %llu failed (%s); "
            "retrying once on a fresh endpoint",
            (unsigned long long)op->resv_id, bt_status_str(st));
    op->retried = true;
    bt_kvc_abort_reservation(op);
    op->resv_id = 0;
    if (op->rm != NULL) {
        op->rm->users--;
        op->rm = NULL;
        bt_kvc_remotes_gc(op->kvc);
    }
    op->xop = NULL;
    op->written = false;
    op->write_st = BT_OK;
    memset(op->write, 0, op->n * sizeof(*op->write));
    memset(&op->res, 0, sizeof(op->res));
    if (bt_kvc_reserve_send(op) != BT_OK) {
        return false;
    }
    op->res.retried = 1;
    return true;
}

bt_status_t bt_kvc_put(bt_kvc_t *kvc, const bt_kvc_put_t *p,
                       bt_kvc_put_cb cb, void *arg)
{
    bt_kvc_op_t *op;
    bt_status_t st;
    char err[256];

    if (p->n == 0 || p->n > BT_KV_MAX_HASHES || p->parent == NULL ||
        p->tokens == NULL || p->data == NULL ||
        bt_kv_geom_check_block(&p->geom, p->block_bytes, err, sizeof(err)) != BT_OK) {
        return BT_ERR_INVALID_ARG;
    }
    op = bt_kvc_op_new(kvc, p->n, p->timeout_ms);
    if (op == NULL ||
        (op->tokens = malloc(4ull * p->n * p->geom.block_size)) == NULL) {
        if (op != NULL) {
            kvc->inflight++;
            bt_kvc_op_free(op);
        }
        return BT_ERR_NO_MEMORY;
    }
    op->geom = p->geom;
    op->block_size = p->geom.block_size;
    op->block_bytes = p->block_bytes;
    op->reserved_cb = p->reserved_cb;
    memcpy(op->parent, p->parent, BT_KV_HASH_LEN);
    memcpy(op->hashes, p->hashes, p->n * BT_KV_HASH_LEN);
    memcpy(op->tokens, p->tokens, 4ull * p->n * p->geom.block_size);
    memcpy(op->mem, p->data, p->n * sizeof(*op->mem));
    op->cb.put = cb;
    op->arg = arg;
    kvc->inflight++;
    st = bt_kvc_reserve_send(op);
    if (st != BT_OK) {
        bt_kvc_op_free(op);
    }
    return st;
}

/* ---- get ---- */

static void bt_kvc_get_finish(bt_kvc_op_t *op, bt_status_t st, size_t n_got)
{
    bt_kvc_unpin(op);
    op->cb.get(op->arg, st, n_got);
    bt_kvc_op_free(op);
}

/* Worker thread: a block is used only if its bytes are the ones
 * committed; the prefix ends at the first that is not. */
static void bt_kvc_get_verify_work(void *arg)
{
    bt_kvc_op_t *op = arg;

    op->n_good = 0;
    for (size_t k = 0; k < op->n_pinned; k++) {
        uint8_t sum[BT_KV_HASH_LEN];

        bt_sha256(op->mem[k], op->block_bytes, sum);
        if (memcmp(sum, op->sums + k * BT_KV_HASH_LEN, BT_KV_HASH_LEN) != 0) {
            break;
        }
        op->n_good++;
    }
}

static void bt_kvc_get_verify_done(void *arg, bt_status_t st)
{
    bt_kvc_op_t *op = arg;

    (void)st;
    if (op->kvc->closing) {
        bt_kvc_get_finish(op, BT_ERR_SHUTDOWN, 0);
        return;
    }
    if (op->n_good < op->n_pinned) {
        bt_warn("kvstore get: block %zu does not match its checksum; the "
                "prefix ends there", op->n_good);
    }
    bt_kvc_get_finish(op, BT_OK, op->n_good);
}

static void bt_kvc_read_done(void *arg, bt_status_t st)
{
    bt_kvc_op_t *op = arg;

    if (st != BT_OK) {
        bt_warn("kvstore get: transfer failed: %s", bt_status_str(st));
        bt_kvc_xfer_failed(op, st);
        bt_kvc_get_finish(op, st, 0);
        return;
    }
    if (op->kvc->hash_pool == NULL ||
        bt_tpool_submit(op->kvc->hash_pool, bt_kvc_get_verify_work,
                        bt_kvc_get_verify_done, op) != BT_OK) {
        bt_kvc_get_verify_work(op);
        bt_kvc_get_verify_done(op, BT_OK);
    }
}

static void bt_kvc_pin_done(void *arg, const bt_rpc_result_t *r,
                            const ProtobufCMessage *msg)
{
    bt_kvc_op_t *op = arg;
    const Baton__V1__PinResponse *resp = (const void *)msg;
    bt_xfer_slice_t *slices;
    bt_xfer_params_t xp;
    size_t k = 0;
    bt_status_t st;

    if (r->code != BT_RPC_OK) {
        bt_debug("kvstore pin failed: %s", r->message);
        bt_kvc_get_finish(op, r->status, 0);
        return;
    }
    op->pin_id = resp->pin_id;
    /* the store's answer is checked, not trusted: hash, token ids, size */
    while (k < resp->pinned_blocks && k < op->n && k < resp->n_locations) {
        const Baton__V1__BlockLocation *l = resp->locations[k];

        if (l->tier != BATON__V1__KV_TIER__KV_TIER_DRAM ||
            l->block_hash.len != BT_KV_HASH_LEN ||
            memcmp(l->block_hash.data, op->hashes + k * BT_KV_HASH_LEN,
                   BT_KV_HASH_LEN) != 0 ||
            !bt_kv_tokens_match(l->token_ids, (uint32_t)l->n_token_ids,
                                op->tokens + k * op->block_size,
                                 op->block_size) ||
            l->length != op->block_bytes || l->checksum.len != BT_KV_HASH_LEN) {
            break;
        }
        memcpy(op->sums + k * BT_KV_HASH_LEN, l->checksum.data, BT_KV_HASH_LEN);
        k++;
    }
    op->n_pinned = k;
    if (k == 0) {
        bt_kvc_get_finish(op, BT_OK, 0);
        return;
    }
    st = bt_kvc_remote_get(op->kvc, &resp->region_descriptor, &op->rm);
    slices = calloc(k, sizeof(*slices));
    if (st != BT_OK || slices == NULL) {
        free(slices);
        bt_kvc_get_finish(op, st != BT_OK ? st : BT_ERR_NO_MEMORY, 0);
        return;
    }
    if (op->pinned_cb != NULL) {
        op->pinned_cb(op->arg);
    }
    for (size_t i = 0; i < k; i++) {
        slices[i].local = op->mem[i];
        slices[i].remote_off = resp->locations[i]->offset;
        slices[i].len = op->block_bytes;
    }
    memset(&xp, 0, sizeof(xp));
    xp.remote = op->rm->remote;
    xp.slices = slices;
    xp.n_slices = k;
    xp.timeout_ms = bt_kvc_left(op);
    xp.cb = bt_kvc_read_done;
    xp.arg = op;
    st = xp.timeout_ms == 0 ? BT_ERR_TIMED_OUT
                            : bt_xfer_read(op->kvc->xfer, &xp, &op->xop);
    free(slices);
    if (st != BT_IN_PROGRESS && st != BT_OK) {
        bt_kvc_xfer_failed(op, st);
        bt_kvc_get_finish(op, st, 0);
    }
}

bt_status_t bt_kvc_get(bt_kvc_t *kvc, const bt_kvc_get_t *g,
                       bt_kvc_get_cb cb, void *arg)
{
    Baton__V1__PinRequest req = BATON__V1__PIN_REQUEST__INIT;
    ProtobufCBinaryData *hb;
    bt_kvc_op_t *op;
    bt_status_t st;

    if (g->n == 0 || g->n > BT_KV_MAX_HASHES || g->tokens == NULL ||
        g->dst == NULL || g->block_size == 0 ||
        g->block_size > BT_KV_MAX_BLOCK_TOKENS || g->block_bytes == 0 ||
        g->block_bytes > BT_KV_MAX_BLOCK_BYTES) {
        return BT_ERR_INVALID_ARG;
    }
    op = bt_kvc_op_new(kvc, g->n, g->timeout_ms);
    hb = calloc(g->n, sizeof(*hb));
    if (op == NULL || hb == NULL ||
        (op->tokens = malloc(4ull * g->n * g->block_size)) == NULL) {
        free(hb);
        if (op != NULL) {
            kvc->inflight++;
            bt_kvc_op_free(op);
        }
        return BT_ERR_NO_MEMORY;
    }
    op->block_size = g->block_size;
    op->block_bytes = g->block_bytes;
    op->pinned_cb = g->pinned_cb;
    memcpy(op->hashes, g->hashes, g->n * BT_KV_HASH_LEN);
    memcpy(op->tokens, g->tokens, 4ull * g->n * g->block_size);
    memcpy(op->mem, g->dst, g->n * sizeof(*op->mem));
    for (size_t i = 0; i < g->n; i++) {
        hb[i].data = op->hashes + i * BT_KV_HASH_LEN;
        hb[i].len = BT_KV_HASH_LEN;
    }
    req.model = kvc->model;
    req.node_id = kvc->node_id;
    req.n_block_hashes = g->n;
    req.block_hashes = hb;
    req.n_token_ids = g->n * g->block_size;
    req.token_ids = op->tokens;
    /* the pin outlives the read by a margin; Unpin ends it sooner */
    req.pin_ms = (uint32_t)(bt_kvc_left(op) + 1000);
    op->cb.get = cb;
    op->arg = arg;
    kvc->inflight++;
    st = bt_rpc_client_unary(kvc->ch, "/baton.v1.KvStore/Pin", &req.base,
                             &baton__v1__pin_response__descriptor,
                             &(bt_rpc_call_opts_t){ .timeout_ms = bt_kvc_left(op) },
                             bt_kvc_pin_done, op, NULL);
    free(hb);
    if (st != BT_OK) {
        bt_kvc_op_free(op);
    }
    return st;
}
