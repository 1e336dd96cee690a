/* Rendezvous sharding of block hashes (kv_shard.h, docs/kv-spec.md). */
#include "base/sha256.h"
#include "kvspec/kv_shard.h"

#include <stdint.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#define N_HASHES 30000

static void hash_of(uint32_t i, uint8_t out[32])
{
    bt_sha256(&i, sizeof(i), out);
}

/* The spec's test vector, computed independently with Python's hashlib. */
static void test_vector(void **state)
{
    const char *ids[] = { "kvstore-2", "kvstore-0", "kvstore-1" };
    uint8_t h[32];
    bt_kv_shard_t *s;

    (void)state;
    assert_int_equal(bt_sha256("", 0, h), BT_OK); /* SHA-256 of nothing */
    assert_int_equal(bt_kv_shard_create(ids, 3, &s), BT_OK);
    assert_string_equal(bt_kv_shard_id(s, 0), "kvstore-0");
    assert_true(bt_kv_shard_weight(s, 0, h) == 0xdd0ff45094dff024ULL);
    assert_true(bt_kv_shard_weight(s, 1, h) == 0xe9c6ff245af7043eULL);
    assert_true(bt_kv_shard_weight(s, 2, h) == 0xcd2b4ec0e1a4088aULL);
    assert_string_equal(bt_kv_shard_id(s, bt_kv_shard_owner(s, h)),
                        "kvstore-1");
    bt_kv_shard_destroy(s);
}

/* Even spread, the same owner whatever the list order, and a change of
 * membership moves only the blocks the changed replica gains or loses. */
static void test_balance_and_stability(void **state)
{
    const char *three[] = { "a:7000", "b:7000", "c:7000" };
    const char *shuffled[] = { "c:7000", "a:7000", "b:7000" };
    const char *two[] = { "a:7000", "c:7000" };
    const char *four[] = { "a:7000", "b:7000", "c:7000", "d:7000" };
    bt_kv_shard_t *s3, *s3b, *s2, *s4;
    size_t count[3] = { 0 }, moved_rm = 0, moved_add = 0, to_d = 0;

    (void)state;
    assert_int_equal(bt_kv_shard_create(three, 3, &s3), BT_OK);
    assert_int_equal(bt_kv_shard_create(shuffled, 3, &s3b), BT_OK);
    assert_int_equal(bt_kv_shard_create(two, 2, &s2), BT_OK);
    assert_int_equal(bt_kv_shard_create(four, 4, &s4), BT_OK);
    for (uint32_t i = 0; i < N_HASHES; i++) {
        uint8_t h[32];
        const char *o3, *o2, *o4;

        hash_of(i, h);
        o3 = bt_kv_shard_id(s3, bt_kv_shard_owner(s3, h));
        o2 = bt_kv_shard_id(s2, bt_kv_shard_owner(s2, h));
        o4 = bt_kv_shard_id(s4, bt_kv_shard_owner(s4, h));
        assert_string_equal(o3, bt_kv_shard_id(s3b, bt_kv_shard_owner(s3b, h)));
        count[bt_kv_shard_owner(s3, h)]++;
        /* removing b: only b's blocks move */
        if (strcmp(o3, "b:7000") != 0) {
            assert_string_equal(o2, o3);
        } else {
            moved_rm++;
        }
        /* adding d: blocks move only to d */
        if (strcmp(o4, o3) != 0) {
            assert_string_equal(o4, "d:7000");
            moved_add++;
        }
        to_d += strcmp(o4, "d:7000") == 0;
    }
    for (int r = 0; r < 3; r++) {
        assert_true(count[r] > N_HASHES / 3 - 600 &&
                    count[r] < N_HASHES / 3 + 600);
    }
    assert_int_equal(moved_rm, count[1]);
    assert_int_equal(moved_add, to_d);
    assert_true(to_d > N_HASHES / 4 - 600 && to_d < N_HASHES / 4 + 600);
    bt_kv_shard_destroy(s3);
    bt_kv_shard_destroy(s3b);
    bt_kv_shard_destroy(s2);
    bt_kv_shard_destroy(s4);
}

static void test_bad_replica_sets(void **state)
{
    const char *dup[] = { "a", "b", "a" };
    const char *empty[] = { "a", "" };
    const char *null_id[] = { "a", NULL };
    char long_id[BT_KV_SHARD_MAX_ID + 2];
    const char *too_long[] = { long_id };
    bt_kv_shard_t *s = NULL;

    (void)state;
    memset(long_id, 'x', sizeof(long_id) - 1);
    long_id[sizeof(long_id) - 1] = '\0';
    assert_int_equal(bt_kv_shard_create(dup, 3, &s), BT_ERR_INVALID_ARG);
    assert_int_equal(bt_kv_shard_create(empty, 2, &s), BT_ERR_INVALID_ARG);
    assert_int_equal(bt_kv_shard_create(null_id, 2, &s), BT_ERR_INVALID_ARG);
    assert_int_equal(bt_kv_shard_create(too_long, 1, &s), BT_ERR_INVALID_ARG);
    assert_int_equal(bt_kv_shard_create(dup, 0, &s), BT_ERR_INVALID_ARG);
    assert_null(s);
    bt_kv_shard_destroy(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vector),
        cmocka_unit_test(test_balance_and_stability),
        cmocka_unit_test(test_bad_replica_sets),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
