/* Slice coalescing: neighbours in both address spaces merge, order is
 * kept, empty slices vanish, near-misses stay apart. */
#include "xfer/xfer.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

static char pool[1 << 16];

static void test_adjacent_merge(void **state)
{
    bt_xfer_slice_t s[] = {
        {pool, 0, 16},
        {pool + 16, 16, 16},
        {pool + 32, 32, 32},
    };

    (void)state;
    assert_int_equal(bt_xfer_slices_coalesce(s, 3), 1);
    assert_ptr_equal(s[0].local, pool);
    assert_int_equal(s[0].remote_off, 0);
    assert_int_equal(s[0].len, 64);
}

static void test_near_misses(void **state)
{
    bt_xfer_slice_t s[] = {
        {pool, 0, 16},
        {pool + 16, 17, 16},    /* remote gap */
        {pool + 33, 33, 16},    /* local gap */
        {pool + 49, 49, 0},     /* empty: dropped */
        {pool + 49, 49, 8},     /* continues the third */
        {pool, 100, 8},         /* backwards */
    };

    (void)state;
    assert_int_equal(bt_xfer_slices_coalesce(s, 6), 4);
    assert_int_equal(s[0].len, 16);
    assert_int_equal(s[1].remote_off, 17);
    assert_ptr_equal(s[2].local, pool + 33);
    assert_int_equal(s[2].len, 24);
    assert_int_equal(s[3].remote_off, 100);
}

/* KV-shaped: L layers x B blocks where consecutive block ids are also
 * consecutive in both pools coalesce into one slice per layer. */
static void test_kv_shape(void **state)
{
    enum { L = 4, B = 8, BLK = 256 };
    bt_xfer_slice_t s[L * B];
    size_t n = 0;

    (void)state;
    for (int l = 0; l < L; l++) {
        for (int b = 0; b < B; b++) {
            s[n].local = pool + (l * 64 + b) * BLK;
            s[n].remote_off = (uint64_t)(l * 32 + b) * BLK;
            s[n].len = BLK;
            n++;
        }
    }
    assert_int_equal(bt_xfer_slices_coalesce(s, n), L);
    for (int l = 0; l < L; l++) {
        assert_int_equal(s[l].len, B * BLK);
    }
    assert_int_equal(bt_xfer_slices_coalesce(s, 0), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_adjacent_merge),
        cmocka_unit_test(test_near_misses),
        cmocka_unit_test(test_kv_shape),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
