/* Region descriptors: round trip, and corrupt, truncated, foreign or
 * tampered blobs give clear errors (never a crash), also through
 * bt_xfer_remote_import. */
#include "xfer/desc.h"
#include "xfer/xfer.h"

#include "base/loop.h"

#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

static const uint8_t addr[] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
static const uint8_t rkey[] = {0xaa, 0xbb, 0xcc};

static void sample(void **blob_p, size_t *len_p)
{
    bt_xfer_desc_t d = {
        .flags = BT_XFER_DESC_F_UCX_ALLOC,
        .base = 0x7f0000001000ull,
        .length = 1u << 20,
        .region_id = 5,
        .owner_id = 0x1122334455667788ull,
        .addr = addr, .addr_len = sizeof(addr),
        .rkey = rkey, .rkey_len = sizeof(rkey),
        .host = "nodeA", .host_len = 5,
    };

    assert_int_equal(bt_xfer_desc_encode(&d, blob_p, len_p), BT_OK);
}

static void test_round_trip(void **state)
{
    void *blob;
    size_t len;
    bt_xfer_desc_t d;

    (void)state;
    sample(&blob, &len);
    assert_int_equal(len, BT_XFER_DESC_HDR_LEN + 9 + 3 + 5 +
                          BT_XFER_DESC_SUM_LEN);
    assert_int_equal(bt_xfer_desc_decode(blob, len, &d), BT_OK);
    assert_int_equal(d.flags, BT_XFER_DESC_F_UCX_ALLOC);
    assert_int_equal(d.base, 0x7f0000001000ull);
    assert_int_equal(d.length, 1u << 20);
    assert_int_equal(d.region_id, 5);
    assert_int_equal(d.owner_id, 0x1122334455667788ull);
    assert_int_equal(d.addr_len, sizeof(addr));
    assert_memory_equal(d.addr, addr, sizeof(addr));
    assert_int_equal(d.rkey_len, sizeof(rkey));
    assert_memory_equal(d.rkey, rkey, sizeof(rkey));
    assert_int_equal(d.host_len, 5);
    assert_memory_equal(d.host, "nodeA", 5);
    free(blob);
}

/* Every prefix is refused as truncated (or foreign when the magic is cut). */
static void test_truncated(void **state)
{
    void *blob;
    size_t len;
    bt_xfer_desc_t d;

    (void)state;
    sample(&blob, &len);
    for (size_t n = 0; n < len; n++) {
        bt_status_t st = bt_xfer_desc_decode(blob, n, &d);

        assert_true(st == BT_ERR_TRUNCATED);
    }
    assert_int_equal(bt_xfer_desc_decode(NULL, 0, &d), BT_ERR_TRUNCATED);
    free(blob);
}

/* Flipping any single bit is detected. */
static void test_every_bit_flip(void **state)
{
    void *blob;
    size_t len;
    bt_xfer_desc_t d;

    (void)state;
    sample(&blob, &len);
    for (size_t i = 0; i < len * 8; i++) {
        uint8_t *p = blob;
        bt_status_t st;

        p[i / 8] ^= (uint8_t)(1u << (i % 8));
        st = bt_xfer_desc_decode(blob, len, &d);
        assert_true(st == BT_ERR_CORRUPT || st == BT_ERR_TRUNCATED ||
                    st == BT_ERR_UNSUPPORTED);
        p[i / 8] ^= (uint8_t)(1u << (i % 8));
    }
    assert_int_equal(bt_xfer_desc_decode(blob, len, &d), BT_OK);
    free(blob);
}

static void test_foreign_and_extra(void **state)
{
    void *blob;
    size_t len;
    bt_xfer_desc_t d;
    uint8_t junk[200];
    uint8_t *longer;

    (void)state;
    for (size_t i = 0; i < sizeof(junk); i++) {
        junk[i] = (uint8_t)(i * 13 + 7);
    }
    assert_int_equal(bt_xfer_desc_decode(junk, sizeof(junk), &d),
                     BT_ERR_CORRUPT);
    assert_int_equal(bt_xfer_desc_decode("{\"json\":1}", 11, &d),
                     BT_ERR_CORRUPT);
    sample(&blob, &len);
    longer = calloc(1, len + 1);
    memcpy(longer, blob, len);
    assert_int_equal(bt_xfer_desc_decode(longer, len + 1, &d), BT_ERR_CORRUPT);
    /* A future version is refused as such. */
    ((uint8_t *)blob)[4] = 2;
    assert_int_equal(bt_xfer_desc_decode(blob, len, &d), BT_ERR_UNSUPPORTED);
    /* A huge length field must not be trusted. */
    ((uint8_t *)blob)[4] = 1;
    ((uint8_t *)blob)[31] = 0x7f;
    assert_int_equal(bt_xfer_desc_decode(blob, len, &d), BT_ERR_CORRUPT);
    free(longer);
    free(blob);
}

static void test_encode_limits(void **state)
{
    bt_xfer_desc_t d = {.addr = addr, .addr_len = 0};
    void *blob = NULL;
    size_t len = 0;

    (void)state;
    assert_int_equal(bt_xfer_desc_encode(&d, &blob, &len), BT_ERR_TOO_LARGE);
    d.addr_len = sizeof(addr);
    d.host = "h";
    d.host_len = BT_XFER_DESC_HOST_MAX + 1;
    assert_int_equal(bt_xfer_desc_encode(&d, &blob, &len), BT_ERR_TOO_LARGE);
    assert_null(blob);
}

/* Through the real import: garbage is refused without touching UCX, and a
 * genuine blob from another context imports. */
static void test_import(void **state)
{
    struct event_base *base = bt_loop_create();
    bt_xfer_ctx_t *a, *b;
    bt_xfer_region_t *r;
    bt_xfer_remote_t *rm = NULL;
    void *blob;
    size_t len;

    (void)state;
    assert_int_equal(bt_xfer_ctx_create(base, NULL, &a), BT_OK);
    assert_int_equal(bt_xfer_ctx_create(base, NULL, &b), BT_OK);
    assert_int_equal(bt_xfer_region_alloc(a, 65536, &r), BT_OK);
    assert_int_equal(bt_xfer_region_export(r, &blob, &len), BT_OK);
    assert_int_equal(bt_xfer_remote_import(b, blob, len - 1, &rm),
                     BT_ERR_TRUNCATED);
    ((uint8_t *)blob)[len / 2] ^= 0x40;
    assert_int_equal(bt_xfer_remote_import(b, blob, len, &rm),
                     BT_ERR_CORRUPT);
    ((uint8_t *)blob)[len / 2] ^= 0x40;
    assert_int_equal(bt_xfer_remote_import(b, "nonsense", 8, &rm),
                     BT_ERR_CORRUPT);
    assert_null(rm);
    assert_int_equal(bt_xfer_remote_import(b, blob, len, &rm), BT_OK);
    assert_int_equal(bt_xfer_remote_length(rm), 65536);
    free(blob);
    bt_xfer_remote_destroy(rm);
    bt_xfer_ctx_destroy(b);
    bt_xfer_ctx_destroy(a);
    event_base_free(base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_every_bit_flip),
        cmocka_unit_test(test_foreign_and_extra),
        cmocka_unit_test(test_encode_limits),
        cmocka_unit_test(test_import),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
