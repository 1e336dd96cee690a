/* The receiver's checks of active message headers (xfer/am_hdr.h): what a
 * peer sends is taken only with the right size and magic, a payload that
 * matches, and a data slice inside its region even where offset + len
 * would wrap. */
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_data),
        cmocka_unit_test(test_notify),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
