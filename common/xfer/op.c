/* Transfers: slices copied straight into a mapped shm region, put
 * (other one-sided lanes), or sent as active messages (tcp: short slices
 * packed into batch messages, long ones rendezvous), a flush, then the
 * completion message; gets; deadlines and aborts. */
#include "xfer_int.h"

#include "base/clock.h"
#include "base/log.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

size_t bt_xfer_slices_coalesce(bt_xfer_slice_t *s, size_t n)
{
    size_t out = 0;

    for (size_t i = 0; i < n; i++) {
        if (s[i].len == 0) {
            continue;
        }
        if (out > 0) {
            bt_xfer_slice_t *p = &s[out - 1];

            if ((char *)p->local + p->len == (char *)s[i].local &&
                p->remote_off + p->len == s[i].remote_off) {
                p->len += s[i].len;
                continue;
            }
        }
        s[out++] = s[i];
    }
    return out;
}

void bt_xfer_op_free(bt_xfer_op_t *op)
{
    if (op->ev != NULL) {
        event_free(op->ev);
    }
    free(op->slices);
    free(op->hdrs);
    free(op->bhdrs);
    free(op->iov);
    free(op->reqs);
    free(op->user);
    free(op);
}

/* A reported op whose requests all came back goes away. */
static void zombie_check(bt_xfer_op_t *op)
{
    if (op->reported && !op->cancelling && op->n_live == 0) {
        bt_list_del(&op->link);
        bt_xfer_op_free(op);
    }
}

/* Calls the callback once, cancels what is still in flight; the op lives
 * on (a zombie) until UCX hands back every request. */
void bt_xfer_op_finish(bt_xfer_op_t *op, bt_status_t status)
{
    bt_xfer_ctx_t *ctx = op->ctx;
    bt_xfer_peer_t *peer = op->peer;

    if (op->reported) {
        return;
    }
    op->reported = true;
    op->phase = BT_XFER_PHASE_DONE;
    ctx->n_active--;
    evtimer_del(op->ev);
    bt_list_del(&op->link);
    bt_list_add_tail(&ctx->zombies, &op->link);
    ctx->n_zombie_reqs += op->n_live;
    if (status == BT_OK) {
        peer->n_ok++;
        peer->ep_ok = true;
        peer->last_lat_us = (bt_now_ns() - op->t0_ns) / 1000;
        if (op->is_read) {
            peer->rx_bytes += op->bytes;
        } else {
            peer->tx_bytes += op->bytes;
        }
    } else {
        peer->n_err++;
        peer->last_error = status;
    }
    op->peer = NULL;
    op->remote = NULL;
    bt_xfer_peer_unref(peer);
    /* UCX 1.13 cancels receives only: ucp_request_cancel on an in-flight
     * rendezvous send left the endpoint unable to be destroyed (assertion
     * proto_reqs empty). So what is in flight is left to finish, or to
     * fail with the peer, or to be completed by the forced close of the
     * endpoint; the op stays a zombie until then. */
    (void)ctx;
    if (op->cb != NULL) {
        op->cb(op->arg, status);
    }
    zombie_check(op);
}

static void op_step(bt_xfer_op_t *op);
static void op_ev_cb(evutil_socket_t fd, short what, void *arg);

/* Report now when called from the worker's progress, through the op's
 * event when inside the API call that started it (a callback never runs
 * inside bt_xfer_write). A zero timer, not event_active: a callback that
 * posts the next transfer, which again completes inside the call (shm),
 * would otherwise chain within one libevent pass forever, starving timers
 * and every other event of the loop. */
static void report_soon(bt_xfer_op_t *op)
{
    static const struct timeval now = {0, 0};

    if (op->ctx->in_api) {
        evtimer_add(op->ev, &now);
    } else {
        op_ev_cb(-1, 0, op);
    }
}

static void req_done(bt_xfer_op_t *op, void *request, ucs_status_t status)
{
    bt_xfer_req_t *r = request;

    op->reqs[r->slot] = NULL;
    op->n_live--;
    bt_xfer_ctx_event(op->ctx);
    ucp_request_free(request);
    if (op->reported) {
        op->ctx->n_zombie_reqs--;
        zombie_check(op);
        return;
    }
    if (status != UCS_OK && op->err == BT_OK) {
        op->err = bt_xfer_status_from_ucs(status);
        if (op->err == BT_ERR_CANCELLED) {
            op->err = BT_ERR_PEER_DIED;   /* only we cancel, after report */
        }
    }
    op_step(op);
}

static void send_cb(void *request, ucs_status_t status, void *user_data)
{
    req_done(user_data, request, status);
}

/* Records a request UCX returned: NULL = done at once, error, or pending. */
static bt_status_t track(bt_xfer_op_t *op, ucs_status_ptr_t sp,
                         const char *what)
{
    if (sp == NULL) {
        return BT_OK;
    }
    if (UCS_PTR_IS_ERR(sp)) {
        bt_error("xfer op %llu %s to %s failed: %s",
                 (unsigned long long)op->id, what, op->peer->host,
                 ucs_status_string(UCS_PTR_STATUS(sp)));
        return bt_xfer_status_from_ucs(UCS_PTR_STATUS(sp));
    }
    bt_xfer_req_t *r = sp;
    r->op = op;
    r->slot = op->n_reqs;
    op->reqs[op->n_reqs++] = sp;
    op->n_live++;
    return BT_OK;
}

static void req_param(bt_xfer_op_t *op, ucp_request_param_t *p)
{
    memset(p, 0, sizeof(*p));
    p->op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
    p->cb.send = send_cb;
    p->user_data = op;
}

/* Shm: the slices are copied into the peer's region, mapped here, with
 * no UCX operation per slice (one flush follows, post_data); the
 * completion message goes through the same shared memory, after a
 * release fence, so the receiver that reads it sees every byte. Into a
 * guarded region (guard.h) only while the lease still owns each slice's
 * blocks: a writer whose lease ended is refused here, as the receiver
 * refuses its data messages on other lanes. */
static bt_status_t copy_direct(bt_xfer_op_t *op)
{
    bt_xfer_remote_t *rm = op->remote;
    bt_xfer_guard_t *g = rm->guard;
    bt_status_t st = BT_OK;

    if (g != NULL) {
        rm->guard_slot = bt_xfer_guard_claim(g, rm->guard_slot);
        if (rm->guard_slot < 0) {
            bt_error("xfer region %u of %s: all %u writer slots are held by "
                     "live processes; write refused", rm->desc.region_id,
                     rm->peer->host, BT_XFER_GUARD_SLOTS);
            return BT_ERR_EXHAUSTED;
        }
        bt_xfer_guard_enter(g, rm->guard_slot, op->lease_id);
    }
    for (size_t i = 0; i < op->n_slices; i++) {
        const bt_xfer_slice_t *s = &op->slices[i];

        if (g != NULL &&
            !bt_xfer_guard_admits_as(g, &rm->guard_geo, s->remote_off, s->len,
                                     op->lease_id)) {
            bt_debug("xfer write for lease %llu refused by region %u of %s: "
                     "the lease no longer owns its blocks",
                     (unsigned long long)op->lease_id, rm->desc.region_id,
                     rm->peer->host);
            st = BT_ERR_PEER_REJECTED;
            break;
        }
        memcpy(op->direct + s->remote_off, s->local, s->len);
    }
    atomic_thread_fence(memory_order_release);
    if (g != NULL) {
        bt_xfer_guard_leave(g, rm->guard_slot);
    }
    return st;
}

/* Slices [i, j) as one eager batch message: a header naming where each
 * lands, their bytes gathered from the local pointers by UCX (iov). */
static bt_status_t post_batch(bt_xfer_op_t *op, size_t i, size_t j,
                              uint8_t *hbuf)
{
    bt_xfer_am_batch_hdr_t h;
    ucp_request_param_t p;
    size_t hlen = sizeof(h) + (j - i) * sizeof(bt_xfer_am_batch_ent_t);

    memset(&h, 0, sizeof(h));
    h.magic = BT_XFER_AM_MAGIC;
    h.region_id = op->remote->desc.region_id;
    h.sender_id = op->ctx->id;
    h.op_id = op->id;
    h.lease_id = op->lease_id;
    h.n_slices = (uint32_t)(j - i);
    memcpy(hbuf, &h, sizeof(h));
    for (size_t k = i; k < j; k++) {
        bt_xfer_am_batch_ent_t e = {op->slices[k].remote_off,
                                    op->slices[k].len};

        memcpy(hbuf + sizeof(h) + (k - i) * sizeof(e), &e, sizeof(e));
        op->iov[k].buffer = op->slices[k].local;
        op->iov[k].length = op->slices[k].len;
    }
    req_param(op, &p);
    p.op_attr_mask |= UCP_OP_ATTR_FIELD_FLAGS | UCP_OP_ATTR_FIELD_DATATYPE;
    p.flags = UCP_AM_SEND_FLAG_EAGER;
    p.datatype = ucp_dt_make_iov();
    return track(op, ucp_am_send_nbx(op->peer->ep, BT_XFER_AM_BATCH, hbuf,
                                     hlen, &op->iov[i], j - i, &p),
                 "batch send");
}

/* How many slices from `i` go in one batch message (0: slice i goes
 * alone, by rendezvous). */
static size_t batch_len(const bt_xfer_op_t *op, size_t i)
{
    uint64_t bytes = 0;
    size_t k = i;

    while (k < op->n_slices && k - i < BT_XFER_AM_BATCH_SLICES_MAX &&
           op->slices[k].len < BT_XFER_AM_BATCH_SLICE_MIN_RNDV &&
           bytes + op->slices[k].len <= BT_XFER_AM_BATCH_BYTES_MAX) {
        bytes += op->slices[k].len;
        k++;
    }
    return k - i;
}

static bt_status_t post_am(bt_xfer_op_t *op, size_t i)
{
    const bt_xfer_slice_t *s = &op->slices[i];
    bt_xfer_am_data_hdr_t *h = &op->hdrs[i];
    ucp_request_param_t p;

    h->magic = BT_XFER_AM_MAGIC;
    h->region_id = op->remote->desc.region_id;
    h->sender_id = op->ctx->id;
    h->op_id = op->id;
    h->lease_id = op->lease_id;
    h->offset = s->remote_off;
    h->len = s->len;
    req_param(op, &p);
    p.op_attr_mask |= UCP_OP_ATTR_FIELD_FLAGS;
    p.flags = s->len >= BT_XFER_AM_RNDV_MIN ? UCP_AM_SEND_FLAG_RNDV : 0;
    return track(op, ucp_am_send_nbx(op->peer->ep, BT_XFER_AM_DATA, h,
                                     sizeof(*h), s->local, s->len, &p),
                 "am send");
}

static bt_status_t post_data(bt_xfer_op_t *op)
{
    bt_xfer_remote_t *rm = op->remote;
    ucp_ep_h ep = op->peer->ep;
    uint8_t *hbuf = op->bhdrs;
    ucp_request_param_t p;
    bt_status_t st = BT_OK;
    size_t i = 0;

    if (op->direct != NULL) {
        st = copy_direct(op);
        i = op->n_slices;
    }
    while (i < op->n_slices && st == BT_OK) {
        const bt_xfer_slice_t *s = &op->slices[i];
        uint64_t raddr = rm->desc.base + s->remote_off;
        size_t k = op->batch ? batch_len(op, i) : 0;

        if (k > 0) {
            st = post_batch(op, i, i + k, hbuf);
            hbuf += sizeof(bt_xfer_am_batch_hdr_t) +
                    k * sizeof(bt_xfer_am_batch_ent_t);
            i += k;
            continue;
        }
        req_param(op, &p);
        if (op->is_read) {
            st = track(op, ucp_get_nbx(ep, s->local, s->len, raddr, rm->rkey,
                                       &p), "get");
        } else if (op->mode == BT_XFER_MODE_PUT) {
            st = track(op, ucp_put_nbx(ep, s->local, s->len, raddr, rm->rkey,
                                       &p), "put");
        } else {
            st = post_am(op, i);
        }
        i++;
    }
    if (st == BT_OK && !op->is_read) {
        /* Remote completion of everything above before the notify. After
         * direct copies there is nothing to wait for, but the flush is
         * where UCX finds a dead shm peer: without it a killed
         * receiver's writes timed out instead of failing PEER_DIED, and
         * a write with no completion message "succeeded". */
        req_param(op, &p);
        st = track(op, ucp_ep_flush_nbx(ep, &p), "flush");
    }
    return st;
}

static bt_status_t post_notify(bt_xfer_op_t *op)
{
    ucp_request_param_t p;

    req_param(op, &p);
    p.op_attr_mask |= UCP_OP_ATTR_FIELD_FLAGS;
    p.flags = UCP_AM_SEND_FLAG_EAGER;
    return track(op, ucp_am_send_nbx(op->peer->ep, BT_XFER_AM_NOTIFY,
                                     &op->nhdr, sizeof(op->nhdr), op->user,
                                     op->nhdr.user_len, &p), "notify");
}

/* Moves the op forward as far as it can go without waiting. The callback
 * is always deferred to the op's event, so it never runs inside the call
 * that started the transfer. */
static void op_step(bt_xfer_op_t *op)
{
    if (op->reported) {
        return;
    }
    if (op->err != BT_OK) {
        report_soon(op);
        return;
    }
    while (op->n_live == 0 && op->phase != BT_XFER_PHASE_DONE) {
        if (op->phase == BT_XFER_PHASE_DATA && op->notify) {
            op->phase = BT_XFER_PHASE_NOTIFY;
            op->err = post_notify(op);
            if (op->err != BT_OK) {
                report_soon(op);
                return;
            }
        } else {
            op->phase = BT_XFER_PHASE_DONE;
            report_soon(op);   /* may free op */
            return;
        }
    }
}

static void op_ev_cb(evutil_socket_t fd, short what, void *arg)
{
    bt_xfer_op_t *op = arg;

    if (op->reported) {
        return;
    }
    /* A deferred report also arrives as a (zero) timeout: the op's state
     * says which it is. */
    if (op->err != BT_OK) {
        bt_xfer_op_finish(op, op->err);
    } else if (op->phase == BT_XFER_PHASE_DONE) {
        bt_xfer_op_finish(op, BT_OK);
    } else if (what & EV_TIMEOUT) {
        bt_warn("xfer op %llu to %s timed out after %llu ms with %zu requests "
                "in flight (%s)", (unsigned long long)op->id, op->peer->host,
                (unsigned long long)((bt_now_ns() - op->t0_ns) / 1000000),
                op->n_live,
                op->phase == BT_XFER_PHASE_DATA ? "data" : "completion message");
        /* Only where there is a connection to renew: a shm peer that
         * stalls is a stopped process, and a forced close there left the
         * receiver failing at its exit (xfer/shm test_deadline). And
         * only an endpoint that carried a transfer: one whose
         * (non-blocking) connect may still be in progress is left to
         * connect or fail by itself; UCX 1.13 crashed in its tcp
         * progress after such a one was closed during a partition. */
        if (op->reset_on_timeout && op->n_live > 0 && !op->peer->has_rma &&
            op->peer->ep_ok) {
            bt_xfer_peer_t *peer = op->peer;

            /* failed first, so that the callback sees the reset */
            bt_warn("xfer peer %s/%016llx stalled: its endpoint is set "
                    "aside, the next transfer connects anew", peer->host,
                    (unsigned long long)peer->owner_id);
            bt_xfer_peer_reset(peer);
        }
        bt_xfer_op_finish(op, BT_ERR_TIMED_OUT);
    }
}

void bt_xfer_op_abort(bt_xfer_op_t *op)
{
    if (op != NULL && !op->reported) {
        bt_xfer_op_finish(op, BT_ERR_CANCELLED);
    }
}

static bt_status_t check_slices(const bt_xfer_params_t *p, uint64_t *bytes_p)
{
    uint64_t rlen = p->remote->desc.length, total = 0;

    for (size_t i = 0; i < p->n_slices; i++) {
        const bt_xfer_slice_t *s = &p->slices[i];

        if (s->len > rlen || s->remote_off > rlen - s->len ||
            (s->local == NULL && s->len > 0)) {
            bt_error("xfer slice %zu out of range off %llu len %llu region %llu",
                     i, (unsigned long long)s->remote_off,
                     (unsigned long long)s->len, (unsigned long long)rlen);
            return BT_ERR_INVALID_ARG;
        }
        total += s->len;
    }
    *bytes_p = total;
    return BT_OK;
}

static bt_status_t rkey_ready(bt_xfer_remote_t *rm)
{
    ucs_status_t st;

    if (rm->rkey != NULL && rm->rkey_gen == rm->peer->gen) {
        return BT_OK;
    }
    /* the prefault thread out of the mapping before it goes */
    bt_xfer_prefault_stop(rm->ctx, &rm->pf);
    if (rm->guard != NULL) {
        /* while the old rkey still maps it; the new mapping claims again */
        bt_xfer_guard_release(rm->guard, rm->guard_slot);
        rm->guard_slot = -1;
    }
    if (rm->rkey != NULL) {
        ucp_rkey_destroy(rm->rkey);
        rm->rkey = NULL;
    }
    rm->map = NULL;
    rm->map_tried = false;
    rm->guard = NULL;
    st = ucp_ep_rkey_unpack(rm->peer->ep, rm->desc.rkey, &rm->rkey);
    if (st != UCS_OK) {
        bt_error("xfer rkey from %s rejected: %s", rm->peer->host,
                 ucs_status_string(st));
        rm->rkey = NULL;
        return BT_ERR_PEER_PROTOCOL;
    }
    rm->rkey_gen = rm->peer->gen;
    return BT_OK;
}

/* The bytes [off, off + len) of the remote region mapped here as one
 * piece, or NULL. */
static uint8_t *map_range(bt_xfer_remote_t *rm, uint64_t off, uint64_t len)
{
    void *lo, *hi;

    if (len == 0 || off + len < off ||
        ucp_rkey_ptr(rm->rkey, rm->desc.base + off, &lo) != UCS_OK ||
        ucp_rkey_ptr(rm->rkey, rm->desc.base + off + len - 1, &hi) != UCS_OK ||
        (uint8_t *)hi - (uint8_t *)lo != (ptrdiff_t)(len - 1)) {
        return NULL;
    }
    return lo;
}

/* The guard a region announces (desc flag), mapped with it, checked
 * before use; NULL when there is none or it is not valid (guard_bad). */
static void map_guard(bt_xfer_remote_t *rm)
{
    uint64_t off = bt_xfer_guard_offset(rm->desc.length);
    bt_xfer_guard_t *g;

    if (!(rm->desc.flags & BT_XFER_DESC_F_GUARD)) {
        return;
    }
    g = (bt_xfer_guard_t *)map_range(rm, 0, off + sizeof(*g));
    if (g != NULL) {
        /* the shape read once (the memory is the peer's), and the whole
         * table mapped with the header */
        bt_xfer_guard_geom_t geo;

        g = (bt_xfer_guard_t *)((uint8_t *)g + off);
        if (!bt_xfer_guard_geom_read(g, rm->desc.length, &geo) ||
            map_range(rm, 0, bt_xfer_guard_region_len(
                                 rm->desc.length, (uint32_t)geo.n_units)) ==
                NULL) {
            g = NULL;
        } else {
            rm->guard_geo = geo;
        }
    }
    rm->guard = g;
    rm->guard_bad = g == NULL;
    if (g == NULL) {
        bt_error("xfer region %u of %s announces a write guard that is not "
                 "valid: writes to it are refused", rm->desc.region_id,
                 rm->peer->host);
    }
}

uint8_t *bt_xfer_remote_map(bt_xfer_remote_t *rm)
{
    if (rm->map_tried) {
        return rm->map;
    }
    rm->map_tried = true;
    /* one mapping covers the whole region, or no direct copies */
    rm->map = rm->desc.length == 0 ? NULL
                                   : map_range(rm, 0, rm->desc.length);
    if (rm->map != NULL) {
        map_guard(rm);
        bt_xfer_prefault_start(rm->ctx, &rm->pf, rm->map, rm->desc.length);
        bt_debug("xfer region %u of %s mapped for direct copies%s",
                 rm->desc.region_id, rm->peer->host,
                 rm->guard != NULL ? ", guarded" : "");
    }
    return rm->map;
}

bool bt_xfer_remote_direct(bt_xfer_remote_t *rm)
{
    return bt_xfer_peer_mode(rm->peer) == BT_XFER_MODE_PUT &&
           !rm->ctx->params.plain_slices &&
           bt_xfer_peer_connect(rm->peer) == BT_OK && rkey_ready(rm) == BT_OK &&
           bt_xfer_remote_map(rm) != NULL;
}

static bt_status_t op_start(bt_xfer_ctx_t *ctx, const bt_xfer_params_t *p,
                            bool is_read, bt_xfer_op_t **op_p)
{
    bt_xfer_remote_t *rm = p->remote;
    bt_xfer_op_t *op;
    uint64_t bytes;
    bt_status_t st;

    if (rm == NULL || (p->n_slices > 0 && p->slices == NULL) ||
        p->user_len > BT_XFER_USER_MAX || (p->user_len && p->user == NULL)) {
        bt_error("xfer %s: bad arguments (user bytes %zu, max %u)",
                 is_read ? "read" : "write", p->user_len, BT_XFER_USER_MAX);
        return BT_ERR_INVALID_ARG;
    }
    st = check_slices(p, &bytes);
    if (st != BT_OK) {
        return st;
    }
    st = bt_xfer_peer_connect(rm->peer);
    if (st != BT_OK) {
        return st;
    }
    op = calloc(1, sizeof(*op));
    if (op == NULL) {
        return BT_ERR_NO_MEMORY;
    }
    op->ctx = ctx;
    op->is_read = is_read;
    op->id = ctx->next_op_id++;
    op->t0_ns = bt_now_ns();
    op->bytes = bytes;
    op->cb = p->cb;
    op->arg = p->arg;
    op->notify = p->notify && !is_read;
    op->lease_id = p->lease_id;
    op->reset_on_timeout = p->reset_on_timeout;
    op->mode = is_read ? BT_XFER_MODE_PUT : bt_xfer_peer_mode(rm->peer);
    bt_list_init(&op->link);
    op->ev = evtimer_new(ctx->base, op_ev_cb, op);
    if (op->ev == NULL) {
        goto err_nomem;
    }
    if (p->n_slices > 0) {
        op->slices = malloc(p->n_slices * sizeof(*op->slices));
        if (op->slices == NULL) {
            goto err_nomem;
        }
        memcpy(op->slices, p->slices, p->n_slices * sizeof(*op->slices));
        op->n_slices = bt_xfer_slices_coalesce(op->slices, p->n_slices);
    }
    op->batch = op->mode == BT_XFER_MODE_AM && !is_read &&
                !ctx->params.plain_slices &&
                (rm->desc.flags & BT_XFER_DESC_F_AM_BATCH) != 0;
    if (op->mode == BT_XFER_MODE_AM && op->n_slices > 0) {
        op->hdrs = calloc(op->n_slices, sizeof(*op->hdrs));
        if (op->hdrs == NULL) {
            goto err_nomem;
        }
    }
    if (op->batch && op->n_slices > 0) {
        op->bhdrs = malloc(op->n_slices * (sizeof(bt_xfer_am_batch_hdr_t) +
                                           sizeof(bt_xfer_am_batch_ent_t)));
        op->iov = calloc(op->n_slices, sizeof(*op->iov));
        if (op->bhdrs == NULL || op->iov == NULL) {
            goto err_nomem;
        }
    }
    op->reqs = calloc(op->n_slices + 2, sizeof(*op->reqs));
    if (op->reqs == NULL) {
        goto err_nomem;
    }
    if (op->notify) {
        op->nhdr.magic = BT_XFER_AM_MAGIC;
        op->nhdr.region_id = rm->desc.region_id;
        op->nhdr.sender_id = ctx->id;
        op->nhdr.op_id = op->id;
        op->nhdr.lease_id = p->lease_id;
        op->nhdr.bytes = bytes;
        op->nhdr.layer = p->layer;
        op->nhdr.status = BT_OK;
        op->nhdr.user_len = (uint32_t)p->user_len;
        if (p->user_len > 0) {
            op->user = malloc(p->user_len);
            if (op->user == NULL) {
                goto err_nomem;
            }
            memcpy(op->user, p->user, p->user_len);
        }
    }
    if (op->mode == BT_XFER_MODE_PUT && op->n_slices > 0) {
        st = rkey_ready(rm);
        if (st != BT_OK) {
            bt_xfer_op_free(op);
            return st;
        }
        if (!is_read && !ctx->params.plain_slices) {
            op->direct = bt_xfer_remote_map(rm);
        }
        if (!is_read && rm->guard_bad) {
            bt_xfer_op_free(op);
            return BT_ERR_PEER_PROTOCOL;
        }
    }
    op->peer = rm->peer;
    op->remote = rm;
    rm->peer->refs++;
    bt_list_add_tail(&rm->peer->ops, &op->link);
    ctx->n_active++;
    if (p->timeout_ms > 0) {
        struct timeval tv = {
            .tv_sec = (time_t)(p->timeout_ms / 1000),
            .tv_usec = (suseconds_t)((p->timeout_ms % 1000) * 1000),
        };
        /* Inside a long callback libevent's cached time is stale, and the
         * deadline would be cut short by that much. */
        event_base_update_cache_time(ctx->base);
        evtimer_add(op->ev, &tv);
    }
    /* From here on failures are reported through the callback. */
    bt_xfer_ctx_event(ctx);
    ctx->in_api = true;
    op->err = post_data(op);
    op_step(op);
    ctx->in_api = false;
    if (op->n_live > 0 || ctx->spin_ns > 0) {
        bt_xfer_ctx_kick(ctx);   /* requests to progress, or poll */
    }
    *op_p = op;
    return BT_IN_PROGRESS;

err_nomem:
    bt_xfer_op_free(op);
    return BT_ERR_NO_MEMORY;
}

bt_status_t bt_xfer_write(bt_xfer_ctx_t *ctx, const bt_xfer_params_t *p,
                          bt_xfer_op_t **op_p)
{
    return op_start(ctx, p, false, op_p);
}

bt_status_t bt_xfer_read(bt_xfer_ctx_t *ctx, const bt_xfer_params_t *p,
                         bt_xfer_op_t **op_p)
{
    return op_start(ctx, p, true, op_p);
}
