/* The receiver's checks of active message headers (xfer/am_hdr.h): what a
 * peer sends is taken only with the right size and magic, a payload that
 * matches, and a data slice inside its region even where offset + len
 * would wrap; a batch only with a table that fills its header, lengths
 * that add up to the payload without wrapping, and every slice inside
 * the region. */
#include "xfer/am_hdr.h"
#include "xfer/xfer.h"

#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

static bt_xfer_am_data_hdr_t data_hdr(uint64_t offset, uint64_t len)
{
    bt_xfer_am_data_hdr_t h;

    memset(&h, 0, sizeof(h));
    h.magic = BT_XFER_AM_MAGIC;
    h.region_id = 1;
    h.offset = offset;
    h.len = len;
    return h;
}

static void test_data(void **state)
{
    bt_xfer_am_data_hdr_t h = data_hdr(64, 32), out;

    (void)state;
    assert_true(bt_xfer_am_data_hdr_read(&h, sizeof(h), 32, &out));
    assert_true(bt_xfer_am_data_fits(&out, 96));
    assert_false(bt_xfer_am_data_fits(&out, 95));
    /* the payload must be what the header says */
    assert_false(bt_xfer_am_data_hdr_read(&h, sizeof(h), 31, &out));
    assert_false(bt_xfer_am_data_hdr_read(&h, sizeof(h) - 1, 32, &out));
    h.magic ^= 1;
    assert_false(bt_xfer_am_data_hdr_read(&h, sizeof(h), 32, &out));
    /* offset + len wraps: still outside */
    h = data_hdr(UINT64_MAX - 7, 16);
    assert_false(bt_xfer_am_data_fits(&h, 4096));
    h = data_hdr(0, UINT64_MAX);
    assert_false(bt_xfer_am_data_fits(&h, 4096));
}

static void test_notify(void **state)
{
    bt_xfer_am_notify_hdr_t h, out;

    (void)state;
    memset(&h, 0, sizeof(h));
    h.magic = BT_XFER_AM_MAGIC;
    h.user_len = 12;
    assert_true(bt_xfer_am_notify_hdr_read(&h, sizeof(h), 12, &out));
    assert_int_equal(out.user_len, 12);
    assert_false(bt_xfer_am_notify_hdr_read(&h, sizeof(h), 13, &out));
    assert_false(bt_xfer_am_notify_hdr_read(&h, sizeof(h) + 1, 12, &out));
    h.user_len = BT_XFER_USER_MAX + 1;
    assert_false(bt_xfer_am_notify_hdr_read(&h, sizeof(h), BT_XFER_USER_MAX + 1, &out));
    h.user_len = 0;
    h.magic = 0;
    assert_false(bt_xfer_am_notify_hdr_read(&h, sizeof(h), 0, &out));
}

/* A batch header with `n` slices from `ents` in `buf` (unaligned on
 * purpose: the table is read where UCX leaves it); returns its length. */
static size_t batch_hdr(uint8_t *buf, const bt_xfer_am_batch_ent_t *ents,
                        uint32_t n)
{
    bt_xfer_am_batch_hdr_t h;

    memset(&h, 0, sizeof(h));
    h.magic = BT_XFER_AM_MAGIC;
    h.region_id = 1;
    h.sender_id = 7;
    h.op_id = 9;
    h.n_slices = n;
    memcpy(buf, &h, sizeof(h));
    memcpy(buf + sizeof(h), ents, n * sizeof(*ents));
    return sizeof(h) + n * sizeof(*ents);
}

static void test_batch(void **state)
{
    static uint8_t mem[8 + sizeof(bt_xfer_am_batch_hdr_t) +
                       (BT_XFER_AM_BATCH_SLICES_MAX + 1) *
                           sizeof(bt_xfer_am_batch_ent_t)];
    uint8_t *buf = mem + 3;
    bt_xfer_am_batch_ent_t e[BT_XFER_AM_BATCH_SLICES_MAX + 1] = {
        {4096, 100}, {0, 16384}, {65536, 1},
    };
    bt_xfer_am_batch_hdr_t out;
    size_t len = batch_hdr(buf, e, 3);

    (void)state;
    assert_true(bt_xfer_am_batch_hdr_read(buf, len, 16485, &out));
    assert_int_equal(out.n_slices, 3);
    assert_int_equal(out.op_id, 9);
    assert_int_equal(bt_xfer_am_batch_ent(buf, 2).offset, 65536);
    assert_true(bt_xfer_am_batch_fits(buf, &out, 65537));
    /* one slice past the end refuses the whole batch */
    assert_false(bt_xfer_am_batch_fits(buf, &out, 65536));
    /* payload other than the sum, table cut or longer than n says */
    assert_false(bt_xfer_am_batch_hdr_read(buf, len, 16484, &out));
    assert_false(bt_xfer_am_batch_hdr_read(buf, len, 16486, &out));
    assert_false(bt_xfer_am_batch_hdr_read(buf, len - 1, 16485, &out));
    assert_false(bt_xfer_am_batch_hdr_read(buf, len + 16, 16485, &out));
    assert_false(bt_xfer_am_batch_hdr_read(buf, 4, 0, &out));
    /* no slices, too many slices, too many bytes */
    len = batch_hdr(buf, e, 0);
    assert_false(bt_xfer_am_batch_hdr_read(buf, len, 0, &out));
    for (uint32_t i = 0; i <= BT_XFER_AM_BATCH_SLICES_MAX; i++) {
        e[i] = (bt_xfer_am_batch_ent_t){(uint64_t)i * 64, 64};
    }
    len = batch_hdr(buf, e, BT_XFER_AM_BATCH_SLICES_MAX);
    assert_true(bt_xfer_am_batch_hdr_read(
        buf, len, BT_XFER_AM_BATCH_SLICES_MAX * 64, &out));
    len = batch_hdr(buf, e, BT_XFER_AM_BATCH_SLICES_MAX + 1);
    assert_false(bt_xfer_am_batch_hdr_read(
        buf, len, (BT_XFER_AM_BATCH_SLICES_MAX + 1) * 64, &out));
    e[0] = (bt_xfer_am_batch_ent_t){0, BT_XFER_AM_BATCH_BYTES_MAX};
    e[1] = (bt_xfer_am_batch_ent_t){0, 1};
    len = batch_hdr(buf, e, 2);
    assert_false(bt_xfer_am_batch_hdr_read(buf, len,
                                           BT_XFER_AM_BATCH_BYTES_MAX + 1,
                                           &out));
    /* lengths that wrap to the payload length when summed */
    e[0] = (bt_xfer_am_batch_ent_t){0, UINT64_MAX};
    e[1] = (bt_xfer_am_batch_ent_t){0, 2};
    len = batch_hdr(buf, e, 2);
    assert_false(bt_xfer_am_batch_hdr_read(buf, len, 1, &out));
    /* offset + len wraps: outside */
    e[0] = (bt_xfer_am_batch_ent_t){UINT64_MAX - 7, 16};
    len = batch_hdr(buf, e, 1);
    assert_true(bt_xfer_am_batch_hdr_read(buf, len, 16, &out));
    assert_false(bt_xfer_am_batch_fits(buf, &out, 4096));
    /* foreign magic */
    len = batch_hdr(buf, e, 1);
    buf[0] ^= 1;
    assert_false(bt_xfer_am_batch_hdr_read(buf, len, 16, &out));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_data),
        cmocka_unit_test(test_notify),
        cmocka_unit_test(test_batch),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
