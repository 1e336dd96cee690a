/* Batched writes (docs/internals/xfer.md "Batches"), two UCX workers in
 * one process: KV-shaped slice lists land byte for byte with one
 * completion message, as batch messages in AM mode (asserted by the
 * receiver's message count) and as direct copies in PUT mode over shm;
 * the plain path of one message per slice still works; batch messages a
 * peer forges (a slice out of bounds, a table that lies, a rendezvous)
 * change no byte and fail the transfer's completion message; a receiver
 * gone mid-batch fails the write once, within its deadline. White box:
 * the forged messages are sent on the sender's own endpoint. */
#include "xfer/xfer_int.h"

#include "base/loop.h"
#include "xfer_test_util.h"

#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#define BLK        16384u

/* The sender's context with or without batching (plain_slices). */
static xt_fx_t *fx_new(bool split, bool plain)
{
    bt_xfer_ctx_params_t cp = {.plain_slices = plain};

    return xt_fx_new(split, &cp);
}

/* L layers x 16 blocks of 16 KiB, the sender's blocks every other one
 * (nothing coalesces), the receiver's at the block index the layer's
 * lease gave, plus one long slice: what the prefill node posts. */
enum { L = 8, B = 16, N_KV = L * B };

static size_t kv_slices(xt_fx_t *fx, bt_xfer_slice_t *s)
{
    uint8_t *src = bt_xfer_region_base(fx->src);
    size_t n = 0;

    for (size_t l = 0; l < L; l++) {
        for (size_t b = 0; b < B; b++) {
            size_t i = l * B + b;

            s[n++] = (bt_xfer_slice_t){src + 2 * i * BLK,
                                       (l * 2 * B + (B - 1 - b) * 2) * BLK,
                                       BLK};
        }
    }
    s[n++] = (bt_xfer_slice_t){src + (6u << 20), 7u << 20, 300000};
    return n;
}

/* Writes the KV slices and checks every byte and the completion
 * message; returns the data messages the receiver counted. */
static uint64_t check_kv(xt_fx_t *fx, bt_xfer_mode_t mode)
{
    bt_xfer_slice_t s[N_KV + 1];
    size_t n = kv_slices(fx, s);
    uint8_t *dst = bt_xfer_region_base(fx->dst);
    bt_xfer_rx_stats_t rx;
    bt_xfer_op_t *op;

    bt_xfer_remote_set_mode(fx->remote, mode);
    xt_fill(bt_xfer_region_base(fx->src), XT_REGION_LEN, 3);
    memset(dst, 0, XT_REGION_LEN);
    assert_int_equal(xt_write(fx, s, n, 10000, NULL, &op), BT_IN_PROGRESS);
    assert_true(xt_run_until(fx->sbase, &fx->notified, 10000));
    assert_true(xt_run_until(fx->sbase, &fx->done, 10000));
    assert_int_equal(fx->status, BT_OK);
    assert_int_equal(fx->n_notify, 1);
    assert_int_equal(fx->last.status, BT_OK);
    assert_int_equal(fx->last.lease_id, XT_LEASE_ID);
    assert_int_equal(fx->last.bytes, (uint64_t)N_KV * BLK + 300000);
    for (size_t i = 0; i < n; i++) {
        assert_memory_equal(dst + s[i].remote_off, s[i].local, s[i].len);
    }
    /* the gaps between the slices stay untouched */
    assert_int_equal(dst[BLK], 0);
    assert_int_equal(dst[(2 * B - 1) * BLK], 0);
    bt_xfer_ctx_rx_stats(fx->rctx, &rx);
    assert_int_equal(rx.rx_rejected, 0);
    assert_int_equal(bt_xfer_ctx_outstanding(fx->sctx), 0);
    return rx.rx_msgs;
}

/* AM mode: 16 slices of 16 KiB fill a batch's 256 KiB, so 128 slices go
 * as 8 batch messages, the long slice as one rendezvous. */
static void test_kv_am_batches(void **state)
{
    xt_fx_t *fx = fx_new(false, false);

    (void)state;
    assert_int_equal(check_kv(fx, BT_XFER_MODE_AM),
                     N_KV * BLK / BT_XFER_AM_BATCH_BYTES_MAX + 1);
    xt_fx_free(fx);
}

/* The A/B switch: one message per slice, the same bytes. */
static void test_kv_am_plain(void **state)
{
    xt_fx_t *fx = fx_new(false, true);

    (void)state;
    assert_int_equal(check_kv(fx, BT_XFER_MODE_AM), N_KV + 1);
    xt_fx_free(fx);
}

/* PUT mode over shm: the region is mapped into the sender and the write
 * is a copy per slice, no UCX message but the completion. */
static void test_kv_put_direct(void **state)
{
    xt_fx_t *fx = fx_new(false, false);

    (void)state;
    bt_xfer_remote_set_mode(fx->remote, BT_XFER_MODE_PUT);
    assert_true(bt_xfer_remote_direct(fx->remote));
    assert_int_equal(check_kv(fx, BT_XFER_MODE_PUT), 0);
    xt_fx_free(fx);

    fx = fx_new(false, true);
    bt_xfer_remote_set_mode(fx->remote, BT_XFER_MODE_PUT);
    assert_false(bt_xfer_remote_direct(fx->remote));
    assert_int_equal(check_kv(fx, BT_XFER_MODE_PUT), 0);
    xt_fx_free(fx);
}

/* Sends a forged batch message on the sender's endpoint: header `hdr` of
 * `hlen` bytes, `len` bytes of payload from `data`. */
static void forge(xt_fx_t *fx, const void *hdr, size_t hlen, const void *data,
                  size_t len, uint32_t flags)
{
    ucp_request_param_t p;
    ucs_status_ptr_t sp;
    bool never = false;

    assert_int_equal(bt_xfer_peer_connect(fx->remote->peer), BT_OK);
    memset(&p, 0, sizeof(p));
    p.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
    p.flags = flags;
    sp = ucp_am_send_nbx(fx->remote->peer->ep, BT_XFER_AM_BATCH, hdr, hlen,
                         data, len, &p);
    assert_false(UCS_PTR_IS_ERR(sp));
    /* a refused rendezvous may never complete: bounded */
    for (int i = 0; i < 500 && sp != NULL &&
                    ucp_request_check_status(sp) == UCS_INPROGRESS; i++) {
        xt_run_until(fx->sbase, &never, 2);
    }
    if (sp != NULL) {
        ucp_request_free(sp);   /* completes or is released later */
    }
    xt_run_until(fx->sbase, &never, 20);
}

/* The completion message of forged transfer `op_id`, as a sender would
 * send it after its data. */
static void forge_notify(xt_fx_t *fx, uint64_t op_id)
{
    bt_xfer_am_notify_hdr_t h;
    ucp_request_param_t p;
    ucs_status_ptr_t sp;

    memset(&h, 0, sizeof(h));
    h.magic = BT_XFER_AM_MAGIC;
    h.region_id = bt_xfer_region_id(fx->dst);
    h.sender_id = bt_xfer_ctx_id(fx->sctx);
    h.op_id = op_id;
    h.lease_id = 5;
    memset(&p, 0, sizeof(p));
    p.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
    p.flags = UCP_AM_SEND_FLAG_EAGER;
    fx->notified = false;
    sp = ucp_am_send_nbx(fx->remote->peer->ep, BT_XFER_AM_NOTIFY, &h,
                         sizeof(h), NULL, 0, &p);
    assert_false(UCS_PTR_IS_ERR(sp));
    assert_true(xt_run_until(fx->sbase, &fx->notified, 5000));
    if (sp != NULL) {
        ucp_request_free(sp);
    }
}

typedef struct {
    bt_xfer_am_batch_hdr_t h;
    bt_xfer_am_batch_ent_t e[2];
} forged_t;

static forged_t forged(xt_fx_t *fx, uint64_t op_id, uint64_t off2)
{
    forged_t f;

    memset(&f, 0, sizeof(f));
    f.h.magic = BT_XFER_AM_MAGIC;
    f.h.region_id = bt_xfer_region_id(fx->dst);
    f.h.sender_id = bt_xfer_ctx_id(fx->sctx);
    f.h.op_id = op_id;
    f.h.n_slices = 2;
    f.e[0] = (bt_xfer_am_batch_ent_t){0, 64};
    f.e[1] = (bt_xfer_am_batch_ent_t){off2, 64};
    return f;
}

/* A peer's batch with one slice past the region: neither slice lands,
 * the message counts as rejected, and the transfer's completion message
 * reaches the handler failed, not OK. The same for a table that does
 * not match the payload and for a batch sent rendezvous. A good forged
 * batch lands, and its completion is OK (the test can fail). */
static void test_forged_batches(void **state)
{
    xt_fx_t *fx = fx_new(false, false);
    uint8_t payload[128], *dst = bt_xfer_region_base(fx->dst);
    bt_xfer_rx_stats_t rx;
    forged_t f;

    (void)state;
    memset(payload, 0xab, sizeof(payload));
    memset(dst, 0, XT_REGION_LEN);

    f = forged(fx, 1000, XT_REGION_LEN - 63);
    forge(fx, &f, sizeof(f), payload, 128, UCP_AM_SEND_FLAG_EAGER);
    forge_notify(fx, 1000);
    assert_int_equal(fx->last.status, BT_ERR_PEER_PROTOCOL);
    assert_int_equal(dst[0], 0);
    assert_int_equal(dst[XT_REGION_LEN - 1], 0);

    f = forged(fx, 1001, 4096);
    forge(fx, &f, sizeof(f), payload, 127, UCP_AM_SEND_FLAG_EAGER);
    forge_notify(fx, 1001);
    assert_int_equal(fx->last.status, BT_ERR_PEER_PROTOCOL);
    assert_int_equal(dst[0], 0);

    f = forged(fx, 1002, 4096);
    forge(fx, &f, sizeof(f), payload, 128, UCP_AM_SEND_FLAG_RNDV);
    forge_notify(fx, 1002);
    assert_int_equal(fx->last.status, BT_ERR_PEER_PROTOCOL);
    assert_int_equal(dst[4096], 0);

    bt_xfer_ctx_rx_stats(fx->rctx, &rx);
    assert_int_equal(rx.rx_rejected, 3);

    f = forged(fx, 1003, 4096);
    forge(fx, &f, sizeof(f), payload, 128, UCP_AM_SEND_FLAG_EAGER);
    forge_notify(fx, 1003);
    assert_int_equal(fx->last.status, BT_OK);
    assert_int_equal(dst[0], 0xab);
    assert_int_equal(dst[4096 + 63], 0xab);
    assert_int_equal(dst[4096 + 64], 0);
    bt_xfer_ctx_rx_stats(fx->rctx, &rx);
    assert_int_equal(rx.rx_rejected, 3);
    xt_fx_free(fx);
}

/* The receiver stops progressing with batches in flight, then goes away
 * altogether: the write fails exactly once, within its deadline, and
 * the sender's context stays usable for its other peers. */
static void test_receiver_gone_mid_batch(void **state)
{
    xt_fx_t *fx = fx_new(true, false);
    bt_xfer_slice_t s[N_KV + 1];
    size_t n = kv_slices(fx, s);
    bt_xfer_op_t *op;
    bool never = false;
    uint64_t t0;

    (void)state;
    bt_xfer_remote_set_mode(fx->remote, BT_XFER_MODE_AM);
    t0 = bt_now_ms();
    assert_int_equal(xt_write(fx, s, n, 1500, NULL, &op), BT_IN_PROGRESS);
    xt_run_until(fx->sbase, &never, 5);
    bt_xfer_ctx_destroy(fx->rctx);
    fx->rctx = NULL;
    assert_true(xt_run_until(fx->sbase, &fx->done, 5000));
    assert_int_not_equal(fx->status, BT_OK);
    assert_true(bt_now_ms() - t0 < 4000);
    xt_run_until(fx->sbase, &never, 50);
    assert_int_equal(fx->n_done, 1);
    assert_int_equal(bt_xfer_ctx_outstanding(fx->sctx), 0);
    xt_fx_free(fx);
}

/* The receiver's admit check for test_admit: slices of lease XT_LEASE_ID that
 * miss [refuse_lo, refuse_hi). */
static uint64_t refuse_lo, refuse_hi;

static bool admit_cb(void *arg, uint32_t region_id, uint64_t lease_id,
                     uint64_t off, uint64_t len)
{
    (void)arg;
    (void)region_id;
    return lease_id == XT_LEASE_ID && (off + len <= refuse_lo || off >= refuse_hi);
}

/* Writes the KV slices with the admit check refusing [lo, hi): nothing
 * lands there, everything else does, and the completion message says the
 * transfer was refused. Returns the refused count. */
static uint64_t check_refused(xt_fx_t *fx, uint64_t lo, uint64_t hi)
{
    bt_xfer_slice_t s[N_KV + 1];
    size_t n = kv_slices(fx, s);
    uint8_t *dst = bt_xfer_region_base(fx->dst);
    bool never = false;
    bt_xfer_rx_stats_t rx;
    bt_xfer_op_t *op;

    refuse_lo = lo;
    refuse_hi = hi;
    bt_xfer_ctx_set_admit_cb(fx->rctx, admit_cb, NULL);
    bt_xfer_remote_set_mode(fx->remote, BT_XFER_MODE_AM);
    xt_fill(bt_xfer_region_base(fx->src), XT_REGION_LEN, 5);
    memset(dst, 0, XT_REGION_LEN);
    assert_int_equal(xt_write(fx, s, n, 10000, NULL, &op), BT_IN_PROGRESS);
    assert_true(xt_run_until(fx->sbase, &fx->done, 10000));
    xt_run_until(fx->sbase, &never, 50);
    if (fx->status == BT_OK) {   /* eager refusals: the sender cannot tell */
        assert_int_equal(fx->n_notify, 1);
        assert_int_equal(fx->last.status, BT_ERR_PEER_REJECTED);
    }
    for (size_t i = 0; i < n; i++) {
        bool refused = s[i].remote_off < hi && s[i].remote_off + s[i].len > lo;
        uint8_t *d = dst + s[i].remote_off;

        if (refused) {
            for (size_t k = 0; k < s[i].len; k += 997) {
                assert_int_equal(d[k], 0);
            }
            assert_int_equal(d[s[i].len - 1], 0);
        } else {
            assert_memory_equal(d, s[i].local, s[i].len);
        }
    }
    bt_xfer_ctx_rx_stats(fx->rctx, &rx);
    assert_int_equal(rx.rx_rejected, 0);
    return rx.rx_refused;
}

/* The admit check (a decode node refusing bytes for a lease it fenced):
 * layer 0's slices are refused, as one batch message or one message
 * each, and not a byte of them lands while the other layers do; the
 * same for the rendezvous slice. */
static void test_admit(void **state)
{
    const uint64_t layer0 = 2 * B * BLK;
    xt_fx_t *fx = fx_new(false, false);

    (void)state;
    assert_int_equal(check_refused(fx, 0, layer0), 1);
    assert_int_equal(fx->status, BT_OK);
    xt_fx_free(fx);

    fx = fx_new(false, true);
    assert_int_equal(check_refused(fx, 0, layer0), B);
    xt_fx_free(fx);

    fx = fx_new(false, false);
    assert_int_equal(check_refused(fx, 7u << 20, (7u << 20) + 1), 1);
    assert_int_not_equal(fx->status, BT_OK);
    xt_fx_free(fx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kv_am_batches),
        cmocka_unit_test(test_kv_am_plain),
        cmocka_unit_test(test_kv_put_direct),
        cmocka_unit_test(test_forged_batches),
        cmocka_unit_test(test_receiver_gone_mid_batch),
        cmocka_unit_test(test_admit),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
