/* The receiving side: data active messages land in the named region at
 * the named offset (rendezvous straight into place, eager by one copy),
 * batch messages scatter their slices into one region (all checked
 * first, then one copy each), and completion messages reach the
 * registered handler once every byte of their transfer is in, with a
 * failure status when some of its data was refused or lost. */
#include "xfer_int.h"

#include "base/log.h"

#include <stdlib.h>
#include <string.h>

/* A sender's transfer whose rendezvous receives are still in flight; a
 * completion message that overtakes them waits here. */
typedef struct {
    bt_list_t          link;
    bt_xfer_ctx_t          *ctx;
    uint64_t                sender_id;
    uint64_t                op_id;
    unsigned                pending;
    bool                    failed;
    bt_status_t             fail_status;
    bool                    has_notify;
    bt_xfer_am_notify_hdr_t nhdr;
    uint8_t                *user;
} rx_op_t;

static bt_xfer_region_t *region_find(bt_xfer_ctx_t *ctx, uint32_t id)
{
    for (bt_list_t *l = ctx->regions.next; l != &ctx->regions;
         l = l->next) {
        bt_xfer_region_t *r = BT_CONTAINER_OF(l, bt_xfer_region_t, link);

        if (r->id == id) {
            return r;
        }
    }
    return NULL;
}

static rx_op_t *rx_op_find(bt_xfer_ctx_t *ctx, uint64_t sender, uint64_t op)
{
    for (bt_list_t *l = ctx->rx_ops.next; l != &ctx->rx_ops;
         l = l->next) {
        rx_op_t *r = BT_CONTAINER_OF(l, rx_op_t, link);

        if (r->sender_id == sender && r->op_id == op) {
            return r;
        }
    }
    return NULL;
}

static void rx_op_free(rx_op_t *r)
{
    r->ctx->n_rx_ops--;
    bt_list_del(&r->link);
    free(r->user);
    free(r);
}

/* The entry of a sender's transfer, new if need be (NULL: no memory).
 * The list is bounded: past BT_XFER_RX_OPS_MAX the oldest entry with no
 * receive in flight (a failure whose completion message never came)
 * goes. */
static rx_op_t *rx_op_get(bt_xfer_ctx_t *ctx, uint64_t sender, uint64_t op)
{
    rx_op_t *rx = rx_op_find(ctx, sender, op);

    if (rx != NULL) {
        return rx;
    }
    if (ctx->n_rx_ops >= BT_XFER_RX_OPS_MAX) {
        for (bt_list_t *l = ctx->rx_ops.next; l != &ctx->rx_ops;
             l = l->next) {
            rx_op_t *old = BT_CONTAINER_OF(l, rx_op_t, link);

            if (old->pending == 0) {
                rx_op_free(old);
                break;
            }
        }
    }
    rx = calloc(1, sizeof(*rx));
    if (rx == NULL) {
        return NULL;
    }
    rx->ctx = ctx;
    rx->sender_id = sender;
    rx->op_id = op;
    bt_list_add_tail(&ctx->rx_ops, &rx->link);
    ctx->n_rx_ops++;
    return rx;
}

/* Some data of the sender's transfer will not land: its completion
 * message is delivered with `st` instead of OK. */
static void rx_op_fail(bt_xfer_ctx_t *ctx, uint64_t sender, uint64_t op,
                       bt_status_t st)
{
    rx_op_t *rx = rx_op_get(ctx, sender, op);

    if (rx != NULL && !rx->failed) {
        rx->failed = true;
        rx->fail_status = st;
    }
}

/* The admit check (xfer.h): true when the slice may be written. A
 * refusal fails the transfer's completion message; the first refusal
 * of a transfer says so in the log, its later slices only count. */
static bool admitted(bt_xfer_ctx_t *ctx, uint32_t region_id,
                     uint64_t sender, uint64_t op, uint64_t lease_id,
                     uint64_t offset, uint64_t len)
{
    rx_op_t *rx;

    if (ctx->admit_cb == NULL ||
        ctx->admit_cb(ctx->admit_arg, region_id, lease_id, offset, len)) {
        return true;
    }
    ctx->rx.rx_refused++;
    rx = rx_op_find(ctx, sender, op);
    if (rx == NULL || !rx->failed) {
        bt_warn("xfer data for lease %llu refused (region %u off %llu len "
                "%llu): the lease no longer takes writes",
                (unsigned long long)lease_id, region_id,
                (unsigned long long)offset, (unsigned long long)len);
    }
    rx_op_fail(ctx, sender, op, BT_ERR_PEER_REJECTED);
    return false;
}

static void deliver(bt_xfer_ctx_t *ctx, const bt_xfer_am_notify_hdr_t *h,
                    const void *user, bt_status_t fail)
{
    bt_xfer_notify_t n;

    ctx->rx.notifies++;
    if (ctx->notify_cb == NULL) {
        return;
    }
    memset(&n, 0, sizeof(n));
    n.sender_id = h->sender_id;
    n.op_id = h->op_id;
    n.lease_id = h->lease_id;
    n.region_id = h->region_id;
    n.layer = h->layer;
    n.status = fail != BT_OK ? fail : h->status;
    n.bytes = h->bytes;
    n.user = user;
    n.user_len = h->user_len;
    ctx->notify_cb(ctx->notify_arg, &n);
}

static void recv_done_cb(void *request, ucs_status_t status, size_t length,
                         void *user_data)
{
    rx_op_t *r = user_data;
    bt_xfer_ctx_t *ctx = r->ctx;

    ucp_request_free(request);
    bt_xfer_ctx_event(ctx);
    ctx->rx_pending--;
    if (status != UCS_OK) {
        if (!r->failed) {
            r->fail_status = BT_ERR_PEER_DIED;
        }
        r->failed = true;
        ctx->rx.rx_rejected++;
    } else {
        ctx->rx.rx_bytes += length;
    }
    if (--r->pending > 0) {
        return;
    }
    if (r->has_notify) {
        deliver(ctx, &r->nhdr, r->user, r->failed ? r->fail_status : BT_OK);
    } else if (r->failed) {
        return;   /* keep the failure for its completion message */
    }
    rx_op_free(r);
}

static ucs_status_t am_data_cb(void *arg, const void *header,
                               size_t header_length, void *data,
                               size_t length, const ucp_am_recv_param_t *param)
{
    bt_xfer_ctx_t *ctx = arg;
    bool rndv = (param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV) != 0;
    bt_xfer_am_data_hdr_t h;
    bt_xfer_region_t *r;

    ctx->rx.rx_msgs++;
    bt_xfer_ctx_event(ctx);
    if (header_length != sizeof(h)) {
        bt_warn("xfer data message with a %zu-byte header dropped",
                header_length);
        goto reject;
    }
    r = NULL;
    if (bt_xfer_am_data_hdr_read(header, header_length, length, &h)) {
        r = region_find(ctx, h.region_id);
    }
    if (r == NULL || !bt_xfer_am_data_fits(&h, r->length)) {
        bt_warn("xfer data message rejected region %u off %llu len %llu "
                "(payload %zu)", h.region_id, (unsigned long long)h.offset,
                (unsigned long long)h.len, length);
        if (h.magic == BT_XFER_AM_MAGIC) {
            rx_op_fail(ctx, h.sender_id, h.op_id, BT_ERR_PEER_PROTOCOL);
        }
        goto reject;
    }
    if (!admitted(ctx, h.region_id, h.sender_id, h.op_id, h.lease_id,
                  h.offset, h.len)) {
        /* a rendezvous sender learns of it through its request */
        return rndv ? UCS_ERR_INVALID_PARAM : UCS_OK;
    }
    if (!rndv) {
        memcpy((char *)r->base + h.offset, data, length);
        ctx->rx.rx_bytes += length;
        return UCS_OK;
    }
    rx_op_t *rx = rx_op_get(ctx, h.sender_id, h.op_id);
    if (rx == NULL) {
        goto reject;
    }
    ucp_request_param_t p;
    memset(&p, 0, sizeof(p));
    p.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
    p.cb.recv_am = recv_done_cb;
    p.user_data = rx;
    ucs_status_ptr_t sp = ucp_am_recv_data_nbx(ctx->worker, data,
                                               (char *)r->base + h.offset,
                                               length, &p);
    if (UCS_PTR_IS_ERR(sp)) {
        bt_warn("xfer rendezvous receive failed: %s",
                ucs_status_string(UCS_PTR_STATUS(sp)));
        if (!rx->failed) {
            rx->fail_status = BT_ERR_PEER_DIED;
        }
        rx->failed = true;
        ctx->rx.rx_rejected++;
    } else if (sp == NULL) {
        ctx->rx.rx_bytes += length;
    } else {
        rx->pending++;
        ctx->rx_pending++;
    }
    if (rx->pending == 0 && !rx->failed) {
        rx_op_free(rx);
    }
    return UCS_INPROGRESS;

reject:
    ctx->rx.rx_rejected++;
    /* A rendezvous sender learns of the refusal through its request. */
    return rndv ? UCS_ERR_INVALID_PARAM : UCS_OK;
}

/* A batch message (eager by construction): every slice is checked
 * against the region before the first byte is copied, so a bad one
 * leaves the region as it was and fails the transfer's completion. */
static ucs_status_t am_batch_cb(void *arg, const void *header,
                                size_t header_length, void *data,
                                size_t length,
                                const ucp_am_recv_param_t *param)
{
    bt_xfer_ctx_t *ctx = arg;
    bool rndv = (param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV) != 0;
    bt_xfer_am_batch_hdr_t h;
    bt_xfer_region_t *r = NULL;
    const uint8_t *src = data;

    ctx->rx.rx_msgs++;
    bt_xfer_ctx_event(ctx);
    memset(&h, 0, sizeof(h));
    if (bt_xfer_am_batch_hdr_read(header, header_length, length, &h) &&
        !rndv) {
        r = region_find(ctx, h.region_id);
    }
    if (r == NULL || !bt_xfer_am_batch_fits(header, &h, r->length)) {
        bt_warn("xfer batch message rejected region %u slices %u header %zu "
                "payload %zu%s", h.region_id, h.n_slices, header_length,
                length, rndv ? " (rendezvous)" : "");
        /* the fixed part names the transfer to fail, when it is ours */
        if (h.magic == BT_XFER_AM_MAGIC) {
            rx_op_fail(ctx, h.sender_id, h.op_id, BT_ERR_PEER_PROTOCOL);
        }
        ctx->rx.rx_rejected++;
        return rndv ? UCS_ERR_INVALID_PARAM : UCS_OK;
    }
    for (uint32_t i = 0; i < h.n_slices; i++) {   /* all or nothing */
        bt_xfer_am_batch_ent_t e = bt_xfer_am_batch_ent(header, i);

        if (!admitted(ctx, h.region_id, h.sender_id, h.op_id, h.lease_id,
                      e.offset, e.len)) {
            return UCS_OK;
        }
    }
    for (uint32_t i = 0; i < h.n_slices; i++) {
        bt_xfer_am_batch_ent_t e = bt_xfer_am_batch_ent(header, i);

        if (e.len > 0) {   /* a forged empty batch may have no data */
            memcpy((char *)r->base + e.offset, src, e.len);
            src += e.len;
        }
    }
    ctx->rx.rx_bytes += length;
    return UCS_OK;
}

static ucs_status_t am_notify_cb(void *arg, const void *header,
                                 size_t header_length, void *data,
                                 size_t length,
                                 const ucp_am_recv_param_t *param)
{
    bt_xfer_ctx_t *ctx = arg;
    bt_xfer_am_notify_hdr_t h;
    rx_op_t *rx;

    bt_xfer_ctx_event(ctx);
    if (header_length != sizeof(h) ||
        (param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV)) {
        bt_warn("xfer completion message malformed (header %zu)",
                header_length);
        ctx->rx.rx_rejected++;
        return (param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV)
                   ? UCS_ERR_INVALID_PARAM : UCS_OK;
    }
    if (!bt_xfer_am_notify_hdr_read(header, header_length, length, &h)) {
        bt_warn("xfer completion message rejected user %u payload %zu",
                h.user_len, length);
        ctx->rx.rx_rejected++;
        return UCS_OK;
    }
    rx = rx_op_find(ctx, h.sender_id, h.op_id);
    if (rx == NULL || rx->pending == 0) {
        bt_status_t fail = rx != NULL && rx->failed ? rx->fail_status : BT_OK;

        if (rx != NULL) {
            rx_op_free(rx);
        }
        deliver(ctx, &h, data, fail);
        return UCS_OK;
    }
    /* Data still landing: hold the message until the last byte is in. */
    rx->nhdr = h;
    if (length > 0) {
        rx->user = malloc(length);
        if (rx->user == NULL) {
            if (!rx->failed) {
                rx->fail_status = BT_ERR_NO_MEMORY;
            }
            rx->failed = true;
            rx->nhdr.user_len = 0;
        } else {
            memcpy(rx->user, data, length);
        }
    }
    rx->has_notify = true;
    return UCS_OK;
}

static bt_status_t set_handler(bt_xfer_ctx_t *ctx, unsigned id,
                               ucp_am_recv_callback_t cb)
{
    ucp_am_handler_param_t hp;
    ucs_status_t st;

    memset(&hp, 0, sizeof(hp));
    hp.field_mask = UCP_AM_HANDLER_PARAM_FIELD_ID |
                    UCP_AM_HANDLER_PARAM_FIELD_FLAGS |
                    UCP_AM_HANDLER_PARAM_FIELD_CB |
                    UCP_AM_HANDLER_PARAM_FIELD_ARG;
    hp.id = id;
    hp.flags = UCP_AM_FLAG_WHOLE_MSG;
    hp.cb = cb;
    hp.arg = ctx;
    st = ucp_worker_set_am_recv_handler(ctx->worker, &hp);
    if (st != UCS_OK) {
        bt_error("xfer cannot set active message handler %u: %s", id,
                 ucs_status_string(st));
        return BT_ERR_INTERNAL;
    }
    return BT_OK;
}

bt_status_t bt_xfer_recv_register(bt_xfer_ctx_t *ctx)
{
    bt_status_t st = set_handler(ctx, BT_XFER_AM_DATA, am_data_cb);

    if (st == BT_OK) {
        st = set_handler(ctx, BT_XFER_AM_BATCH, am_batch_cb);
    }
    return st == BT_OK ? set_handler(ctx, BT_XFER_AM_NOTIFY, am_notify_cb)
                       : st;
}

void bt_xfer_recv_cleanup(bt_xfer_ctx_t *ctx)
{
    while (!bt_list_empty(&ctx->rx_ops)) {
        rx_op_free(BT_CONTAINER_OF(ctx->rx_ops.next, rx_op_t, link));
    }
}
