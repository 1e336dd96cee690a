/* arena, bounded buffer, spare buffers */
#include "base/arena.h"
#include "base/buf.h"
#include "base/spares.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

static void test_arena_alignment_and_content(void **state)
{
    bt_arena_t *a = bt_arena_create(1024, 1 << 20);
    char *ptrs[200];
    int i;

    (void)state;
    assert_non_null(a);
    for (i = 0; i < 200; i++) {
        ptrs[i] = bt_arena_alloc(a, (size_t)(i % 37) + 1);
        assert_non_null(ptrs[i]);
        assert_int_equal((uintptr_t)ptrs[i] % 16, 0);
        memset(ptrs[i], i, (size_t)(i % 37) + 1);
    }
    for (i = 0; i < 200; i++) { /* nothing overlapped */
        int j;

        for (j = 0; j < (i % 37) + 1; j++) {
            assert_int_equal((unsigned char)ptrs[i][j], i);
        }
    }
    assert_string_equal(bt_arena_strdup(a, "hello"), "hello");
    assert_string_equal(bt_arena_strndup(a, "hello", 3), "hel");
    bt_arena_destroy(a);
    bt_arena_destroy(NULL);
}

static void test_arena_cap_and_reset(void **state)
{
    bt_arena_t *a = bt_arena_create(4096, 16384);
    void *big;

    (void)state;
    assert_non_null(bt_arena_alloc(a, 4000));
    big = bt_arena_alloc(a, 10000); /* own chunk, still under the cap */
    assert_non_null(big);
    assert_null(bt_arena_alloc(a, 8000)); /* would pass 16 KiB */
    assert_null(bt_arena_alloc(a, 0));
    assert_null(bt_arena_calloc(a, SIZE_MAX / 2, 4)); /* overflow */
    assert_true(bt_arena_used(a) >= 14000);
    bt_arena_reset(a);
    assert_int_equal(bt_arena_used(a), 0);
    assert_int_equal(bt_arena_reserved(a), 4096);
    assert_non_null(bt_arena_alloc(a, 8000));
    bt_arena_destroy(a);
}

static void test_buf_bounded(void **state)
{
    bt_buf_t b;
    char *s;
    size_t len;

    (void)state;
    bt_buf_init(&b, 10);
    assert_int_equal(bt_buf_append_str(&b, "hello"), BT_OK);
    assert_int_equal(bt_buf_printf(&b, "%d", 12345), BT_OK);
    assert_string_equal(b.data, "hello12345");
    /* the 11th byte is refused and the buffer unchanged */
    assert_int_equal(bt_buf_append_byte(&b, 'x'), BT_ERR_TOO_LARGE);
    assert_int_equal(bt_buf_printf(&b, "%s", "y"), BT_ERR_TOO_LARGE);
    assert_int_equal(b.len, 10);
    assert_string_equal(b.data, "hello12345");
    assert_int_equal(bt_buf_append(&b, "z", SIZE_MAX), BT_ERR_TOO_LARGE);
    bt_buf_consume(&b, 5);
    assert_string_equal(b.data, "12345");
    s = bt_buf_steal(&b, &len);
    assert_int_equal(len, 5);
    assert_string_equal(s, "12345");
    free(s);
    assert_int_equal(b.len, 0);
    assert_null(b.data);
    bt_buf_cleanup(&b);
}

static void test_buf_grows_with_binary(void **state)
{
    bt_buf_t b;
    unsigned char chunk[1000];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(chunk); i++) {
        chunk[i] = (unsigned char)i;
    }
    bt_buf_init(&b, 1 << 20);
    for (i = 0; i < 100; i++) {
        assert_int_equal(bt_buf_append(&b, chunk, sizeof(chunk)), BT_OK);
    }
    assert_int_equal(b.len, 100000);
    assert_memory_equal(b.data + 99000, chunk, sizeof(chunk));
    assert_int_equal(b.data[b.len], '\0');
    bt_buf_reset(&b);
    assert_int_equal(b.len, 0);
    bt_buf_cleanup(&b);
    bt_buf_cleanup(NULL);
}

/* A buffer handed back is handed out again for a request it fits (not
 * one under a quarter of it); the bounds of count and bytes hold. */
static void test_spares_reuse_and_bounds(void **state)
{
    bt_spares_t s;
    size_t cap, cap2;
    void *a, *b, *c;

    (void)state;
    bt_spares_init(&s, 1u << 20);
    assert_null(bt_spares_get(&s, 0, &cap));
    a = bt_spares_get(&s, 100000, &cap);
    assert_non_null(a);
    assert_int_equal(cap, 131072);
    memset(a, 1, cap);
    bt_spares_put(&s, a, cap);
    assert_int_equal(s.n, 1);
    assert_int_equal(s.bytes, 131072);
    b = bt_spares_get(&s, 120000, &cap2);       /* fits: the same one */
    assert_ptr_equal(b, a);
    assert_int_equal(cap2, 131072);
    assert_int_equal(s.n, 0);
    assert_int_equal(s.bytes, 0);
    bt_spares_put(&s, b, cap2);
    c = bt_spares_get(&s, 1000, &cap);          /* too small for it */
    assert_ptr_not_equal(c, a);
    assert_int_equal(cap, 4096);
    assert_int_equal(s.n, 1);
    bt_spares_put(&s, c, cap);
    /* the smallest that fits */
    b = bt_spares_get(&s, 3000, &cap);
    assert_ptr_equal(b, c);
    bt_spares_put(&s, b, cap);
    /* over the byte bound: freed, not kept */
    b = bt_spares_get(&s, 1u << 20, &cap);
    bt_spares_put(&s, b, cap);
    assert_int_equal(s.n, 2);
    assert_true(s.bytes <= s.max_bytes);
    /* over the count bound */
    void *many[BT_SPARES_MAX + 2];
    size_t caps[BT_SPARES_MAX + 2];
    for (size_t i = 0; i < BT_SPARES_MAX + 2; i++) {
        many[i] = bt_spares_get(&s, 8192, &caps[i]);
        assert_non_null(many[i]);
    }
    for (size_t i = 0; i < BT_SPARES_MAX + 2; i++) {
        bt_spares_put(&s, many[i], caps[i]);
    }
    assert_int_equal(s.n, BT_SPARES_MAX);
    bt_spares_put(NULL, bt_spares_get(&s, 10, &cap), cap);   /* freed */
    bt_spares_clear(&s);
    assert_int_equal(s.n, 0);
    assert_int_equal(s.bytes, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_arena_alignment_and_content),
        cmocka_unit_test(test_arena_cap_and_reset),
        cmocka_unit_test(test_buf_bounded),
        cmocka_unit_test(test_buf_grows_with_binary),
        cmocka_unit_test(test_spares_reuse_and_bounds),
    };

    return cmocka_run_group_tests_name("memory", tests, NULL, NULL);
}
