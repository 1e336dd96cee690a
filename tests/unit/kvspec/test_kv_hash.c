/* kv-spec v2 block hashes against an independent encoding built here with
 * base/sha256 directly, plus pinned vectors from docs/kv-spec.md. */
#include "kvspec/kv_hash.h"

#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

/* computed independently with Python's hashlib (docs/kv-spec.md) */
#define ROOT_VECTOR \
    "6550ad103a0c5dec43b81553e22e5692e12efac2d68df1a4ad324f4039158d17"
#define BLOCK0_VECTOR \
    "3cc7299fcb55b9716d15e77967d1c5690e77cb1028fca219b0f9ef5aa6b9d905"

static size_t put_u32(uint8_t *p, uint32_t v)
{
    p[0] = v & 0xff;
    p[1] = (v >> 8) & 0xff;
    p[2] = (v >> 16) & 0xff;
    p[3] = (v >> 24) & 0xff;
    return 4;
}

static size_t put_str(uint8_t *p, const char *s, size_t len)
{
    size_t n = put_u32(p, (uint32_t)len);

    memcpy(p + n, s, len);
    return n + len;
}

#define NUM "cpu/exact/tp1/k1"

static void ref_root(const char *model, const char *rev, const char *dtype,
                     uint32_t bs, const char *numerics, const char *salt,
                     size_t salt_len, uint8_t out[32])
{
    uint8_t buf[512];
    size_t n = 0;

    n += put_str(buf + n, "baton-kv-v2", 11);
    n += put_str(buf + n, model, strlen(model));
    n += put_str(buf + n, rev, strlen(rev));
    n += put_str(buf + n, dtype, strlen(dtype));
    n += put_u32(buf + n, bs);
    n += put_str(buf + n, numerics, strlen(numerics));
    n += put_str(buf + n, salt, salt_len);
    assert_int_equal(bt_sha256(buf, n, out), BT_OK);
}

static void ref_block(const uint8_t parent[32], const uint32_t *t,
                      uint32_t n, uint8_t out[32])
{
    uint8_t buf[32 + 4 * 64];
    size_t len = 32;
    uint32_t i;

    memcpy(buf, parent, 32);
    for (i = 0; i < n; i++) {
        len += put_u32(buf + len, t[i]);
    }
    assert_int_equal(bt_sha256(buf, len, out), BT_OK);
}

static void test_root_matches_reference(void **state)
{
    uint8_t a[32], b[32];

    (void)state;
    assert_int_equal(bt_kv_hash_root("llama-3-8b", "main", BT_KV_DTYPE_BF16, 16, NUM,
                                     "tenant-a", 8, a), BT_OK);
    ref_root("llama-3-8b", "main", "bf16", 16, NUM, "tenant-a", 8, b);
    assert_memory_equal(a, b, 32);
    /* NULL revision and salt are the empty string */
    assert_int_equal(bt_kv_hash_root("m", NULL, BT_KV_DTYPE_F16, 32, NUM, NULL, 0, a),
                     BT_OK);
    ref_root("m", "", "f16", 32, NUM, "", 0, b);
    assert_memory_equal(a, b, 32);
    assert_int_equal(bt_kv_hash_root(NULL, NULL, BT_KV_DTYPE_F16, 32, NUM, NULL, 0,
                                     a), BT_ERR_INVALID_ARG);
    assert_int_equal(bt_kv_hash_root("m", NULL, BT_KV_DTYPE_F16, 0, NUM, NULL, 0, a),
                     BT_ERR_INVALID_ARG);
}

/* Every field of the root changes it: no two inputs collide by
 * concatenation ("ab"+"c" vs "a"+"bc") thanks to the length prefixes. */
static void test_root_fields_separate(void **state)
{
    uint8_t r[10][32];
    int i, j;

    (void)state;
    assert_int_equal(bt_kv_hash_root("ab", "c", BT_KV_DTYPE_BF16, 16, NUM, "s", 1,
                                     r[0]), BT_OK);
    assert_int_equal(bt_kv_hash_root("a", "bc", BT_KV_DTYPE_BF16, 16, NUM, "s", 1,
                                     r[1]), BT_OK);
    assert_int_equal(bt_kv_hash_root("ab", "c", BT_KV_DTYPE_F16, 16, NUM, "s", 1,
                                     r[2]), BT_OK);
    assert_int_equal(bt_kv_hash_root("ab", "c", BT_KV_DTYPE_BF16, 32, NUM, "s", 1,
                                     r[3]), BT_OK);
    assert_int_equal(bt_kv_hash_root("ab", "c", BT_KV_DTYPE_BF16, 16, NUM, "t", 1,
                                     r[4]), BT_OK);
    assert_int_equal(bt_kv_hash_root("ab", "c", BT_KV_DTYPE_BF16, 16, NUM, NULL, 0,
                                     r[5]), BT_OK);
    assert_int_equal(bt_kv_hash_root("ab", "", BT_KV_DTYPE_BF16, 16, NUM, "cs", 2,
                                     r[6]), BT_OK);
    assert_int_equal(bt_kv_hash_root("ab", "c", BT_KV_DTYPE_F32, 16, NUM, "s", 1,
                                     r[7]), BT_OK);
    /* the numerics id: another backend or mode, another tp degree */
    assert_int_equal(bt_kv_hash_root("ab", "c", BT_KV_DTYPE_BF16, 16,
                                     "cuda/fast/tp1/k1", "s", 1, r[8]), BT_OK);
    assert_int_equal(bt_kv_hash_root("ab", "c", BT_KV_DTYPE_BF16, 16,
                                     "cpu/exact/tp2/k1", "s", 1, r[9]), BT_OK);
    for (i = 0; i < 10; i++) {
        for (j = i + 1; j < 10; j++) {
            assert_memory_not_equal(r[i], r[j], 32);
        }
    }
}

static void test_chain_matches_reference(void **state)
{
    uint32_t toks[50];
    uint8_t root[32], chain[4][32], ref[32], prev[32];
    size_t n = 0;
    int i;

    (void)state;
    for (i = 0; i < 50; i++) {
        toks[i] = (uint32_t)(i * 2654435761u); /* all four bytes used */
    }
    assert_int_equal(bt_kv_hash_root("m", "r", BT_KV_DTYPE_BF16, 16, NUM, "x", 1,
                                     root), BT_OK);
    assert_int_equal(bt_kv_hash_chain(root, 16, toks, 50, chain, 4, &n),
                     BT_OK);
    assert_int_equal(n, 3); /* only full blocks */
    memcpy(prev, root, 32);
    for (i = 0; i < 3; i++) {
        ref_block(prev, toks + 16 * i, 16, ref);
        assert_memory_equal(chain[i], ref, 32);
        memcpy(prev, ref, 32);
    }
    /* max_hashes bounds the output */
    assert_int_equal(bt_kv_hash_chain(root, 16, toks, 50, chain, 2, &n),
                     BT_OK);
    assert_int_equal(n, 2);
    /* a block of 64 tokens crosses the internal staging buffer */
    ref_block(root, toks, 50, ref);
    assert_int_equal(bt_kv_hash_block(root, toks, 50, prev), BT_OK);
    assert_memory_equal(prev, ref, 32);
}

static void test_salt_changes_every_hash(void **state)
{
    uint32_t toks[64];
    uint8_t ra[32], rb[32], ca[4][32], cb[4][32];
    size_t n;
    int i, j;

    (void)state;
    for (i = 0; i < 64; i++) {
        toks[i] = (uint32_t)i;
    }
    assert_int_equal(bt_kv_hash_root("m", "r", BT_KV_DTYPE_BF16, 16, NUM, "tenant-a",
                                     8, ra), BT_OK);
    assert_int_equal(bt_kv_hash_root("m", "r", BT_KV_DTYPE_BF16, 16, NUM, "tenant-b",
                                     8, rb), BT_OK);
    assert_int_equal(bt_kv_hash_chain(ra, 16, toks, 64, ca, 4, &n), BT_OK);
    assert_int_equal(bt_kv_hash_chain(rb, 16, toks, 64, cb, 4, &n), BT_OK);
    for (i = 0; i < 4; i++) {
        for (j = 0; j < 4; j++) {
            assert_memory_not_equal(ca[i], cb[j], 32);
        }
    }
}

/* Pinned vectors, also printed in docs/kv-spec.md: any change of the
 * encoding breaks them and must bump the spec version. */
static void test_spec_vectors(void **state)
{
    uint32_t toks[16];
    uint8_t root[32], h[32];
    char hex[65];
    int i;

    (void)state;
    for (i = 0; i < 16; i++) {
        toks[i] = (uint32_t)i;
    }
    assert_int_equal(bt_kv_hash_root("baton-tiny", "v1", BT_KV_DTYPE_BF16, 16, NUM,
                                     "", 0, root), BT_OK);
    bt_sha256_hex(root, hex);
    assert_string_equal(hex, ROOT_VECTOR);
    assert_int_equal(bt_kv_hash_block(root, toks, 16, h), BT_OK);
    bt_sha256_hex(h, hex);
    assert_string_equal(hex, BLOCK0_VECTOR);
}

/* A root needs a numerics id of the spec's alphabet and length. */
static void test_numerics_id(void **state)
{
    char id[BT_KV_NUMERICS_MAX + 1], long_id[BT_KV_NUMERICS_MAX + 2];
    uint8_t root[32];

    (void)state;
    assert_true(bt_kv_numerics_format(id, sizeof(id), "cpu", "exact", 1, 1));
    assert_string_equal(id, "cpu/exact/tp1/k1");
    assert_true(bt_kv_numerics_format(id, sizeof(id), "cuda", "fast", 8, 12));
    assert_string_equal(id, "cuda/fast/tp8/k12");
    assert_false(bt_kv_numerics_format(id, sizeof(id), "cu/da", "fast", 1, 1));
    assert_false(bt_kv_numerics_format(id, sizeof(id), "cuda", "", 1, 1));
    assert_false(bt_kv_numerics_format(id, sizeof(id), "cuda", "fast", 0, 1));
    assert_false(bt_kv_numerics_format(id, sizeof(id), "cuda", "fast", 1, 0));
    assert_false(bt_kv_numerics_format(id, 8, "cuda", "fast", 1, 1));
    memset(long_id, 'a', sizeof(long_id) - 1);
    long_id[sizeof(long_id) - 1] = '\0';
    assert_false(bt_kv_numerics_valid(long_id));
    long_id[BT_KV_NUMERICS_MAX] = '\0';
    assert_true(bt_kv_numerics_valid(long_id));
    assert_false(bt_kv_numerics_valid("CPU/exact"));
    assert_false(bt_kv_numerics_valid("cpu exact"));
    assert_false(bt_kv_numerics_valid(""));
    assert_false(bt_kv_numerics_valid(NULL));
    assert_int_equal(bt_kv_hash_root("m", NULL, BT_KV_DTYPE_F16, 16, NULL, NULL,
                                     0, root), BT_ERR_INVALID_ARG);
    assert_int_equal(bt_kv_hash_root("m", NULL, BT_KV_DTYPE_F16, 16, "",
                                     NULL, 0, root), BT_ERR_INVALID_ARG);
    assert_int_equal(bt_kv_hash_root("m", NULL, BT_KV_DTYPE_F16, 16, "a\nb",
                                     NULL, 0, root), BT_ERR_INVALID_ARG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_root_matches_reference),
        cmocka_unit_test(test_root_fields_separate),
        cmocka_unit_test(test_numerics_id),
        cmocka_unit_test(test_chain_matches_reference),
        cmocka_unit_test(test_salt_changes_every_hash),
        cmocka_unit_test(test_spec_vectors),
    };

    return cmocka_run_group_tests_name("kv_hash", tests, NULL, NULL);
}
