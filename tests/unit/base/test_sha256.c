#include "base/sha256.h"

#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

static void hex_of(const void *data, size_t len, char out[65])
{
    uint8_t d[BT_SHA256_LEN];

    assert_int_equal(bt_sha256(data, len, d), BT_OK);
    bt_sha256_hex(d, out);
}

/* FIPS 180-2 test vectors */
static void test_known_vectors(void **state)
{
    char hex[65];

    (void)state;
    hex_of("", 0, hex);
    assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    hex_of("abc", 3, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    hex_of("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 56, hex);
    assert_string_equal(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

static void test_incremental_equals_one_shot(void **state)
{
    uint8_t a[BT_SHA256_LEN], b[BT_SHA256_LEN];
    unsigned char data[1000];
    bt_sha256_t ctx;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(data); i++) {
        data[i] = (unsigned char)(i * 7);
    }
    assert_int_equal(bt_sha256(data, sizeof(data), a), BT_OK);
    assert_int_equal(bt_sha256_init(&ctx), BT_OK);
    for (i = 0; i < sizeof(data); i += 77) {
        size_t n = sizeof(data) - i < 77 ? sizeof(data) - i : 77;

        assert_int_equal(bt_sha256_update(&ctx, data + i, n), BT_OK);
    }
    assert_int_equal(bt_sha256_final(&ctx, b), BT_OK);
    assert_memory_equal(a, b, BT_SHA256_LEN);
    bt_sha256_cleanup(&ctx); /* after final: a no-op */
    bt_sha256_cleanup(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_vectors),
        cmocka_unit_test(test_incremental_equals_one_shot),
    };

    return cmocka_run_group_tests_name("sha256", tests, NULL, NULL);
}
