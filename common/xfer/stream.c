/* Layer-wise streaming for the prefill node: one transfer per posted
 * layer, all in flight together while compute goes on; a final
 * completion message once every layer landed. A layer that stalls past
 * stall_ms closes its tcp endpoint (op.c); the stream then posts what
 * was in flight once more, over a new connection, before it gives up:
 * a healed partition leaves the old connection in retransmission
 * backoff, and a fresh one carries the bytes at once. */
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
    bool              stall_bound;  /* its timeout is the stall bound */
    bt_xfer_slice_t  *slices;       /* a copy, for the retry (stall_ms) */
    size_t            n;
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
    /* the retry after a stall: once per stream */
    bool                    retried;
    bool                    retrying;   /* the failed slots wait in redo */
    stream_slot_t         **redo;
    size_t                  n_redo, cap_redo;
    struct event           *retry_ev;
};

static void slot_free(stream_slot_t *sl)
{
    free(sl->slices);
    free(sl);
}

static void redo_drop(bt_xfer_stream_t *s)
{
    for (size_t i = 0; i < s->n_redo; i++) {
        slot_free(s->redo[i]);
    }
    s->n_redo = 0;
    s->retrying = false;
}

static void stream_free(bt_xfer_stream_t *s)
{
    redo_drop(s);
    if (s->retry_ev != NULL) {
        event_free(s->retry_ev);
    }
    free(s->redo);
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

static void slot_unlink(bt_xfer_stream_t *s, stream_slot_t *sl)
{
    for (size_t i = 0; i < s->n_slots; i++) {
        if (s->slots[i] == sl) {
            s->slots[i] = s->slots[--s->n_slots];
            break;
        }
    }
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

static void retry_cb(evutil_socket_t fd, short what, void *arg);

/* The slot waits for the retry; false: no memory for it. */
static bool redo_push(bt_xfer_stream_t *s, stream_slot_t *sl)
{
    if (BT_ARRAY_RESERVE(s->redo, s->cap_redo, s->n_redo + 1, 8) != BT_OK) {
        return false;
    }
    s->redo[s->n_redo++] = sl;
    return true;
}

/* Layer order; the final message (layer UINT32_MAX) last. */
static int slot_layer_cmp(const void *a, const void *b)
{
    uint32_t la = (*(stream_slot_t *const *)a)->layer;
    uint32_t lb = (*(stream_slot_t *const *)b)->layer;

    return (la > lb) - (la < lb);
}

static void fail(bt_xfer_stream_t *s, bt_status_t st)
{
    s->err = st;
    redo_drop(s);
    abort_all(s);
    report(s, st);
}

/* The slot's transfer failed: true when it waits for the retry instead
 * (the first stall of the stream, or a transfer the same reset failed). */
static bool retry_later(bt_xfer_stream_t *s, stream_slot_t *sl,
                        bt_status_t st)
{
    static const struct timeval now = {0, 0};

    if (s->retrying ? !bt_status_is_peer_err(st) && st != BT_ERR_TIMED_OUT
                    : s->retried || !sl->stall_bound ||
                      st != BT_ERR_TIMED_OUT || !s->p.remote->peer->failed) {
        return false;   /* no reset (a shm peer): the same path stalls */
    }
    if (s->retry_ev == NULL) {
        s->retry_ev = evtimer_new(s->ctx->base, retry_cb, s);
        if (s->retry_ev == NULL) {
            return false;
        }
    }
    sl->op = NULL;
    if (!redo_push(s, sl)) {
        return false;
    }
    if (!s->retrying) {
        bt_warn("xfer stream lease %llu: layer %u stalled past %llu ms: "
                "posting what was in flight again over a new connection",
                (unsigned long long)s->p.lease_id, sl->layer,
                (unsigned long long)s->p.stall_ms);
        s->retried = true;
        s->retrying = true;
    }
    evtimer_add(s->retry_ev, &now);
    return true;
}

static void op_cb(void *arg, bt_status_t st)
{
    stream_slot_t *sl = arg;
    bt_xfer_stream_t *s = sl->stream;
    bool is_final = sl->is_final;
    uint32_t layer = sl->layer;

    slot_unlink(s, sl);
    if (s->err == BT_OK && st != BT_OK && retry_later(s, sl, st)) {
        return;
    }
    slot_free(sl);
    if (s->err != BT_OK) {
        return;                       /* already failed and reported */
    }
    if (st != BT_OK) {
        fail(s, st);
    } else if (is_final) {
        report(s, BT_OK);
    } else {
        if (s->p.landed_cb != NULL) {
            s->p.landed_cb(s->p.arg, layer);
        }
        if (s->completing && !s->final_sent && s->n_slots == 0 &&
            !s->retrying) {
            bt_status_t lst = launch(s, UINT32_MAX, NULL, 0, true);

            if (lst != BT_OK) {
                fail(s, lst);
            }
        }
    }
    if (s->destroy_pending && !s->in_cb && s->n_slots == 0) {
        stream_free(s);
    }
}

/* The retry: the stalled peer's endpoint is closed first (its other
 * transfers fail into redo too), then every waiting slot goes again in
 * layer order; the final message follows once they landed, as before. */
static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
    bt_xfer_stream_t *s = arg;
    stream_slot_t **redo;
    size_t n;
    bt_status_t st = BT_OK;

    (void)fd;
    (void)what;
    if (s->ctx->peer_failed) {
        bt_xfer_peers_cleanup_failed(s->ctx);
    }
    if (!s->retrying || s->err != BT_OK) {
        return;
    }
    redo = s->redo;
    n = s->n_redo;
    s->redo = NULL;
    s->n_redo = s->cap_redo = 0;
    s->retrying = false;
    if (n > 1) {
        qsort(redo, n, sizeof(*redo), slot_layer_cmp);
    }
    for (size_t i = 0; i < n && st == BT_OK; i++) {
        if (redo[i]->is_final) {
            s->final_sent = false;
            if (s->n_slots > 0) {
                continue;   /* op_cb sends it once the layers landed */
            }
        }
        st = launch(s, redo[i]->layer, redo[i]->slices, redo[i]->n,
                    redo[i]->is_final);
    }
    for (size_t i = 0; i < n; i++) {
        slot_free(redo[i]);
    }
    free(redo);
    if (st != BT_OK) {
        fail(s, st);
    }
    if (s->destroy_pending && !s->in_cb && s->n_slots == 0) {
        stream_free(s);
    }
}

/* A slot for layer's slices (copied when the stream has a stall bound,
 * for the retry); NULL: no memory. */
static stream_slot_t *slot_new(bt_xfer_stream_t *s, uint32_t layer,
                               const bt_xfer_slice_t *slices, size_t n,
                               bool is_final)
{
    stream_slot_t *sl = calloc(1, sizeof(*sl));

    if (sl == NULL) {
        return NULL;
    }
    sl->stream = s;
    sl->layer = layer;
    sl->is_final = is_final;
    if (s->p.stall_ms > 0 && n > 0) {
        sl->slices = malloc(n * sizeof(*slices));
        if (sl->slices == NULL) {
            free(sl);
            return NULL;
        }
        memcpy(sl->slices, slices, n * sizeof(*slices));
        sl->n = n;
    }
    return sl;
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
    sl = slot_new(s, layer, slices, n, is_final);
    if (sl == NULL) {
        return BT_ERR_NO_MEMORY;
    }
    memset(&xp, 0, sizeof(xp));
    xp.remote = s->p.remote;
    xp.slices = slices;
    xp.n_slices = n;
    xp.timeout_ms = timeout_left(s);
    if (s->p.stall_ms > 0 &&
        (xp.timeout_ms == 0 || s->p.stall_ms < xp.timeout_ms)) {
        xp.timeout_ms = s->p.stall_ms;
        xp.reset_on_timeout = true;
        sl->stall_bound = true;
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
        slot_free(sl);
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
    if (s->retrying) {
        /* the endpoint is being renewed: the layer goes with the retry */
        stream_slot_t *sl = slot_new(s, layer, slices, n, false);

        if (sl == NULL || !redo_push(s, sl)) {
            if (sl != NULL) {
                slot_free(sl);
            }
            return BT_ERR_NO_MEMORY;
        }
        return BT_OK;
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
    if (s->n_slots == 0 && !s->retrying) {
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
        redo_drop(s);
        abort_all(s);
        report(s, BT_ERR_CANCELLED);
    }
    if (s->retry_ev != NULL) {
        event_del(s->retry_ev);
    }
    if (s->in_cb || s->n_slots > 0) {
        s->destroy_pending = true;   /* freed when the callback returns */
        return;
    }
    stream_free(s);
}
