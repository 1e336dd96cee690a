/* base/list.h, base/array.h, base/ring.h, base/endian.h. */
#include "base/array.h"
#include "base/endian.h"
#include "base/list.h"
#include "base/ring.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

typedef struct {
    int       value;
    bt_list_t link;
} item_t;

static void test_list_order_and_delete_while_walking(void **state)
{
    bt_list_t head, *it, *next;
    item_t items[5];
    int seen[5], n = 0;

    (void)state;
    bt_list_init(&head);
    assert_true(bt_list_empty(&head));
    for (int i = 0; i < 4; i++) {
        items[i].value = i;
        bt_list_add_tail(&head, &items[i].link);
    }
    items[4].value = -1;
    bt_list_add_head(&head, &items[4].link);
    /* delete the odd ones while walking */
    bt_list_foreach_safe(it, next, &head) {
        item_t *x = BT_CONTAINER_OF(it, item_t, link);

        if (x->value % 2 != 0) {
            bt_list_del(&x->link);
            assert_ptr_equal(x->link.next, &x->link); /* in no list */
            bt_list_del(&x->link);                    /* and safe again */
        }
    }
    bt_list_foreach_safe(it, next, &head) {
        seen[n++] = BT_CONTAINER_OF(it, item_t, link)->value;
    }
    assert_int_equal(n, 2);
    assert_int_equal(seen[0], 0);
    assert_int_equal(seen[1], 2);
}

static void test_array_grows_and_refuses_overflow(void **state)
{
    uint32_t *a = NULL;
    size_t cap = 0;

    (void)state;
    assert_int_equal(BT_ARRAY_RESERVE(a, cap, 1, 16), BT_OK);
    assert_int_equal(cap, 16);
    a[15] = 7;
    assert_int_equal(BT_ARRAY_RESERVE(a, cap, 17, 16), BT_OK);
    assert_int_equal(cap, 32);
    assert_int_equal(a[15], 7);
    assert_int_equal(BT_ARRAY_RESERVE(a, cap, 1000, 16), BT_OK);
    assert_int_equal(cap, 1024);
    assert_int_equal(BT_ARRAY_RESERVE(a, cap, 10, 16), BT_OK); /* no shrink */
    assert_int_equal(cap, 1024);
    assert_int_equal(BT_ARRAY_RESERVE(a, cap, SIZE_MAX / 2, 16), BT_ERR_TOO_LARGE);
    assert_int_equal(cap, 1024);                               /* unchanged */
    assert_int_equal(a[15], 7);
    free(a);
}

/* FIFO order holds across growth while the ring has wrapped around. */
static void test_ring_keeps_order_across_growth(void **state)
{
    bt_ring_t r;
    uint64_t v, next_in = 0, next_out = 0;

    (void)state;
    bt_ring_init(&r, sizeof(uint64_t));
    assert_false(bt_ring_pop(&r, &v));
    assert_null(bt_ring_at(&r, 0));
    for (int round = 0; round < 50; round++) {
        /* push 3, pop 2: the head walks round the storage while it grows */
        for (int i = 0; i < 3; i++, next_in++) {
            assert_int_equal(bt_ring_push(&r, &next_in), BT_OK);
        }
        assert_int_equal(*(uint64_t *)bt_ring_at(&r, 0), next_out);
        assert_int_equal(*(uint64_t *)bt_ring_at(&r, bt_ring_len(&r) - 1),
                         next_in - 1);
        for (int i = 0; i < 2; i++, next_out++) {
            assert_true(bt_ring_pop(&r, &v));
            assert_int_equal(v, next_out);
        }
    }
    assert_int_equal(bt_ring_len(&r), next_in - next_out);
    assert_null(bt_ring_at(&r, bt_ring_len(&r)));
    while (bt_ring_pop(&r, &v)) {
        assert_int_equal(v, next_out++);
    }
    assert_int_equal(next_out, next_in);
    bt_ring_cleanup(&r);
    assert_int_equal(bt_ring_len(&r), 0);
    assert_int_equal(bt_ring_push(&r, &next_in), BT_OK);    /* usable again */
    assert_true(bt_ring_pop(&r, NULL));
    bt_ring_cleanup(&r);
}

static void test_endian_round_trip(void **state)
{
    uint8_t b[8];

    (void)state;
    bt_put_le32(b, 0x11223344u);
    assert_int_equal(b[0], 0x44);
    assert_int_equal(b[3], 0x11);
    assert_int_equal(bt_get_le32(b), 0x11223344u);
    bt_put_le64(b, 0x0102030405060708ull);
    assert_int_equal(b[0], 0x08);
    assert_int_equal(b[7], 0x01);
    assert_true(bt_get_le64(b) == 0x0102030405060708ull);
    bt_put_le16(b, 0xbeef);
    assert_int_equal(bt_get_le16(b), 0xbeef);
    assert_int_equal(b[0], 0xef);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_list_order_and_delete_while_walking),
        cmocka_unit_test(test_array_grows_and_refuses_overflow),
        cmocka_unit_test(test_ring_keeps_order_across_growth),
        cmocka_unit_test(test_endian_round_trip),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
