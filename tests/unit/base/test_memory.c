/* arena and bounded buffer */
#include "base/arena.h"
#include "base/buf.h"

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_arena_alignment_and_content),
        cmocka_unit_test(test_arena_cap_and_reset),
        cmocka_unit_test(test_buf_bounded),
        cmocka_unit_test(test_buf_grows_with_binary),
    };

    return cmocka_run_group_tests_name("memory", tests, NULL, NULL);
}
