/* Helpers shared by the xfer unit tests: run a loop until a flag is set,
 * bounded in time, waking every few ms so no wait can hang; and the
 * loopback fixture, two UCX workers in one process (it asserts with
 * cmocka, which this header includes with what cmocka needs first). */
#ifndef XFER_TEST_UTIL_H
#define XFER_TEST_UTIL_H

#include "base/clock.h"
#include "base/loop.h"
#include "xfer/xfer.h"

#include <event2/event.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

static void xt_tick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

/* Runs `base` until *flag is true or `ms` passed; returns *flag. */
static inline bool xt_run_until(struct event_base *base, const bool *flag,
                                uint64_t ms)
{
    struct timeval tv = {0, 5000};
    struct event *tick = event_new(base, -1, EV_PERSIST, xt_tick_cb, NULL);
    bt_deadline_t end = bt_deadline_in_ms(ms);

    event_add(tick, &tv);
    while (!*flag && !bt_deadline_passed(end)) {
        event_base_loop(base, EVLOOP_ONCE);
    }
    event_free(tick);
    return *flag;
}

/* The loopback fixture: a sender and a receiver context, each with an
 * 8 MiB region, the receiver's imported by the sender. Callbacks count
 * what they hear so tests can assert "exactly once". */
#define XT_REGION_LEN (8u << 20)
#define XT_LEASE_ID   42
#define XT_LAYER      3

typedef struct {
    struct event_base *sbase, *rbase;   /* sender's and receiver's loops */
    bt_xfer_ctx_t     *sctx, *rctx;     /* rctx: NULL once a test destroyed it */
    bt_xfer_region_t  *src, *dst;
    bt_xfer_remote_t  *remote;          /* dst, seen from the sender */
    bool               done, notified;
    int                n_done, n_notify;
    bt_status_t        status;          /* the last write's */
    bt_xfer_notify_t   last;            /* the last completion message */
    char               user[64];        /* its user bytes, NUL-terminated */
} xt_fx_t;

static inline void xt_done_cb(void *arg, bt_status_t st)
{
    xt_fx_t *fx = arg;

    fx->n_done++;
    fx->status = st;
    fx->done = true;
}

static inline void xt_notify_cb(void *arg, const bt_xfer_notify_t *n)
{
    xt_fx_t *fx = arg;

    fx->n_notify++;
    fx->last = *n;
    memset(fx->user, 0, sizeof(fx->user));
    if (n->user_len < sizeof(fx->user)) {
        memcpy(fx->user, n->user, n->user_len);
    }
    fx->notified = true;
}

/* `split`: the receiver gets its own loop that the test runs only when it
 * wants the receiver to progress. `sender` configures the sender's
 * context (NULL: defaults). Free with xt_fx_free. */
static inline xt_fx_t *xt_fx_new(bool split, const bt_xfer_ctx_params_t *sender)
{
    xt_fx_t *fx = calloc(1, sizeof(*fx));
    void *blob;
    size_t len;

    assert_non_null(fx);
    fx->sbase = bt_loop_create();
    fx->rbase = split ? bt_loop_create() : fx->sbase;
    assert_int_equal(bt_xfer_ctx_create(fx->sbase, sender, &fx->sctx), BT_OK);
    assert_int_equal(bt_xfer_ctx_create(fx->rbase, NULL, &fx->rctx), BT_OK);
    bt_xfer_ctx_set_notify_cb(fx->rctx, xt_notify_cb, fx);
    assert_int_equal(bt_xfer_region_alloc(fx->sctx, XT_REGION_LEN, &fx->src),
                     BT_OK);
    assert_int_equal(bt_xfer_region_alloc(fx->rctx, XT_REGION_LEN, &fx->dst),
                     BT_OK);
    assert_int_equal(bt_xfer_region_export(fx->dst, &blob, &len), BT_OK);
    assert_int_equal(bt_xfer_remote_import(fx->sctx, blob, len, &fx->remote),
                     BT_OK);
    free(blob);
    return fx;
}

static inline void xt_fx_free(xt_fx_t *fx)
{
    bt_xfer_remote_destroy(fx->remote);
    bt_xfer_ctx_destroy(fx->sctx);
    if (fx->rctx != NULL) {
        bt_xfer_ctx_destroy(fx->rctx);
    }
    if (fx->rbase != fx->sbase) {
        event_base_free(fx->rbase);
    }
    event_base_free(fx->sbase);
    free(fx);
}

/* A pattern that differs between the 16 KiB blocks a test moves, so a
 * block landing in the wrong place shows. */
static inline void xt_fill(void *p, size_t n, unsigned seed)
{
    uint8_t *b = p;

    for (size_t i = 0; i < n; i++) {
        b[i] = (uint8_t)(i * 131u + seed * 7u + (i >> 13));
    }
}

/* Writes `s` to the receiver with a completion message (lease XT_LEASE_ID,
 * layer XT_LAYER, `user` or none); clears done and notified first. */
static inline bt_status_t xt_write(xt_fx_t *fx, const bt_xfer_slice_t *s, size_t n,
                                   uint64_t timeout_ms, const char *user,
                                   bt_xfer_op_t **op_p)
{
    bt_xfer_params_t p;

    memset(&p, 0, sizeof(p));
    p.remote = fx->remote;
    p.slices = s;
    p.n_slices = n;
    p.timeout_ms = timeout_ms;
    p.notify = true;
    p.lease_id = XT_LEASE_ID;
    p.layer = XT_LAYER;
    p.user = user;
    p.user_len = user ? strlen(user) : 0;
    p.cb = xt_done_cb;
    p.arg = fx;
    fx->done = fx->notified = false;
    return bt_xfer_write(fx->sctx, &p, op_p);
}

#endif
