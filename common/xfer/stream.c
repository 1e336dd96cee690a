/* Layer-wise streaming for the prefill node: one transfer per posted
 * layer, all in flight together while compute goes on; a final
 * completion message once every layer landed. */
#include "xfer_int.h"

#include "base/array.h"
#include "base/clock.h"
#include "base/log.h"

#include <stdlib.h>
#include <string.h>

typedef struct stream_slot {
    bt_xfer_stream_t *stream;
    bt_xfer_op_t     *op;
    uint32_t          layer;
    bool              is_final;
} stream_slot_t;

struct bt_xfer_stream {
    bt_xfer_ctx_t          *ctx;
    bt_xfer_stream_params_t p;
    bt_deadline_t           deadline;
    stream_slot_t         **slots;   /* in flight */
    size_t                  n_slots, cap_slots;
    bool                    completing;
    bool                    final_sent;
    bool                    reported;
    bool                    in_cb;
    bool                    destroy_pending;
    bt_status_t             err;
    uint8_t                *user;
    size_t                  user_len;
};

static void stream_free(bt_xfer_stream_t *s)
{
    free(s->slots);
    free(s->user);
    free(s);
}

static void report(bt_xfer_stream_t *s, bt_status_t st)
{
    if (s->reported) {
        return;
    }
    s->reported = true;
    if (s->p.cb != NULL) {
        s->in_cb = true;
        s->p.cb(s->p.arg, st);
        s->in_cb = false;
    }
}

static void slot_remove(bt_xfer_stream_t *s, stream_slot_t *sl)
{
    for (size_t i = 0; i < s->n_slots; i++) {
        if (s->slots[i] == sl) {
            s->slots[i] = s->slots[--s->n_slots];
            break;
        }
    }
    free(sl);
}

static void abort_all(bt_xfer_stream_t *s)
{
    /* Each abort calls op_cb, which removes its slot. */
    while (s->n_slots > 0) {
        bt_xfer_op_abort(s->slots[s->n_slots - 1]->op);
    }
}

static uint64_t timeout_left(bt_xfer_stream_t *s)
{
    uint64_t left;

    if (s->deadline == BT_DEADLINE_NONE) {
        return 0;
    }
    left = bt_deadline_left_ms(s->deadline);
    return left == 0 ? 1 : left;   /* passed: a 1 ms timer reports it */
}

static bt_status_t launch(bt_xfer_stream_t *s, uint32_t layer,
                          const bt_xfer_slice_t *slices, size_t n,
                          bool is_final);

static void op_cb(void *arg, bt_status_t st)
{
    stream_slot_t *sl = arg;
    bt_xfer_stream_t *s = sl->stream;
    bool is_final = sl->is_final;
    uint32_t layer = sl->layer;

    slot_remove(s, sl);
    if (s->err != BT_OK) {
        return;                       /* already failed and reported */
    }
    if (st != BT_OK) {
        s->err = st;
        abort_all(s);
        report(s, st);
    } else if (is_final) {
        report(s, BT_OK);
    } else {
        if (s->p.landed_cb != NULL) {
            s->p.landed_cb(s->p.arg, layer);
        }
        if (s->completing && !s->final_sent && s->n_slots == 0) {
            bt_status_t lst = launch(s, UINT32_MAX, NULL, 0, true);

            if (lst != BT_OK) {
                s->err = lst;
                report(s, lst);
            }
        }
    }
    if (s->destroy_pending && !s->in_cb && s->n_slots == 0) {
        stream_free(s);
    }
}

static bt_status_t launch(bt_xfer_stream_t *s, uint32_t layer,
                          const bt_xfer_slice_t *slices, size_t n,
                          bool is_final)
{
    stream_slot_t *sl;
    bt_xfer_params_t xp;
    bt_status_t st;

    if (BT_ARRAY_RESERVE(s->slots, s->cap_slots, s->n_slots + 1, 16) != BT_OK) {
        return BT_ERR_NO_MEMORY;
    }
    sl = calloc(1, sizeof(*sl));
    if (sl == NULL) {
        return BT_ERR_NO_MEMORY;
    }
    sl->stream = s;
    sl->layer = layer;
    sl->is_final = is_final;
    memset(&xp, 0, sizeof(xp));
    xp.remote = s->p.remote;
    xp.slices = slices;
    xp.n_slices = n;
    xp.timeout_ms = timeout_left(s);
    if (s->p.stall_ms > 0 &&
        (xp.timeout_ms == 0 || s->p.stall_ms < xp.timeout_ms)) {
        xp.timeout_ms = s->p.stall_ms;
        xp.reset_on_timeout = true;
    }
    xp.notify = is_final;
    xp.lease_id = s->p.lease_id;
    xp.layer = layer;
    xp.user = is_final ? s->user : NULL;
    xp.user_len = is_final ? s->user_len : 0;
    xp.cb = op_cb;
    xp.arg = sl;
    st = bt_xfer_write(s->ctx, &xp, &sl->op);
    if (st != BT_IN_PROGRESS) {
        free(sl);
        return st;
    }
    if (is_final) {
        s->final_sent = true;
    }
    s->slots[s->n_slots++] = sl;
    return BT_OK;
}

bt_status_t bt_xfer_stream_create(bt_xfer_ctx_t *ctx,
                                  const bt_xfer_stream_params_t *p,
                                  bt_xfer_stream_t **stream_p)
{
    bt_xfer_stream_t *s;

    if (p->remote == NULL) {
        return BT_ERR_INVALID_ARG;
    }
    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return BT_ERR_NO_MEMORY;
    }
    s->ctx = ctx;
    s->p = *p;
    s->deadline = p->timeout_ms ? bt_deadline_in_ms(p->timeout_ms)
                                : BT_DEADLINE_NONE;
    *stream_p = s;
    return BT_OK;
}

bt_status_t bt_xfer_stream_post(bt_xfer_stream_t *s, uint32_t layer,
                                const bt_xfer_slice_t *slices, size_t n)
{
    if (s->err != BT_OK) {
        return s->err;
    }
    if (s->completing) {
        bt_error("xfer stream lease %llu: layer %u posted after complete",
                 (unsigned long long)s->p.lease_id, layer);
        return BT_ERR_INVALID_ARG;
    }
    return launch(s, layer, slices, n, false);
}

bt_status_t bt_xfer_stream_complete(bt_xfer_stream_t *s, const void *user,
                                    size_t user_len)
{
    if (s->err != BT_OK) {
        return s->err;
    }
    if (s->completing || user_len > BT_XFER_USER_MAX ||
        (user_len > 0 && user == NULL)) {
        return BT_ERR_INVALID_ARG;
    }
    if (user_len > 0) {
        s->user = malloc(user_len);
        if (s->user == NULL) {
            return BT_ERR_NO_MEMORY;
        }
        memcpy(s->user, user, user_len);
        s->user_len = user_len;
    }
    s->completing = true;
    if (s->n_slots == 0) {
        return launch(s, UINT32_MAX, NULL, 0, true);
    }
    return BT_OK;
}

void bt_xfer_stream_destroy(bt_xfer_stream_t *s)
{
    if (s == NULL) {
        return;
    }
    if (!s->reported) {
        if (s->err == BT_OK) {
            s->err = BT_ERR_CANCELLED;
        }
        abort_all(s);
        report(s, BT_ERR_CANCELLED);
    }
    if (s->in_cb || s->n_slots > 0) {
        s->destroy_pending = true;   /* freed when the callback returns */
        return;
    }
    stream_free(s);
}
