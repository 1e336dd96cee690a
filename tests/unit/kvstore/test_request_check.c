/* The kvstore service's field checks (kvstore/request_check.h): each bad
 * field is refused with a message that names it; good requests pass and
 * their hashes and blocks are copied as sent. */
#include "request_check.h"

#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

static uint8_t h32[BT_KV_HASH_LEN] = { 1, 2, 3 };

static void test_names(void **state)
{
    char err[160], *long_name = malloc(BT_KVSD_MAX_NAME + 2);

    (void)state;
    assert_int_equal(bt_kvsd_check_name(NULL, "model", err, sizeof(err)), BT_OK);
    memset(long_name, 'a', BT_KVSD_MAX_NAME);
    long_name[BT_KVSD_MAX_NAME] = '\0';
    assert_int_equal(bt_kvsd_check_name(long_name, "model", err, sizeof(err)), BT_OK);
    strcat(long_name, "a");
    assert_int_equal(bt_kvsd_check_name(long_name, "node_id", err, sizeof(err)),
                     BT_ERR_INVALID_ARG);
    assert_non_null(strstr(err, "node_id"));
    free(long_name);
}

static void test_hashes(void **state)
{
    ProtobufCBinaryData h[2] = { { 32, h32 }, { 31, h32 } };
    uint8_t *out = NULL;
    char err[160];

    (void)state;
    assert_int_equal(bt_kvsd_copy_hashes(h, 1, "block_hashes", &out, err,
                                         sizeof(err)), BT_OK);
    assert_memory_equal(out, h32, 32);
    free(out);
    assert_int_equal(bt_kvsd_copy_hashes(h, 2, "block_hashes", &out, err,
                                         sizeof(err)), BT_ERR_INVALID_ARG);
    assert_non_null(strstr(err, "block_hashes[1] is 31 bytes"));
    assert_int_equal(bt_kvsd_copy_hashes(h, BT_KV_MAX_HASHES + 1, "block_hashes",
                                         &out, err, sizeof(err)),
                     BT_ERR_INVALID_ARG);
}

static void test_reserve(void **state)
{
    Baton__V1__ReserveRequest req = BATON__V1__RESERVE_REQUEST__INIT;
    Baton__V1__KvGeometry geom = BATON__V1__KV_GEOMETRY__INIT;
    ProtobufCBinaryData h = { 32, h32 };
    char err[256];

    (void)state;
    assert_int_equal(bt_kvsd_check_reserve(&req, err, sizeof(err)), BT_ERR_INVALID_ARG);
    assert_non_null(strstr(err, "no block_hashes"));
    req.n_block_hashes = 1;
    req.block_hashes = &h;
    assert_int_equal(bt_kvsd_check_reserve(&req, err, sizeof(err)), BT_ERR_INVALID_ARG);
    assert_non_null(strstr(err, "geometry"));
    req.geometry = &geom;
    req.parent_hash.len = 31;
    req.parent_hash.data = h32;
    assert_int_equal(bt_kvsd_check_reserve(&req, err, sizeof(err)), BT_ERR_INVALID_ARG);
    assert_non_null(strstr(err, "parent_hash is 31 bytes"));
    req.parent_hash.len = 32;
    assert_int_equal(bt_kvsd_check_reserve(&req, err, sizeof(err)), BT_OK);
}

static void test_commit_blocks(void **state)
{
    Baton__V1__CommitRequest req = BATON__V1__COMMIT_REQUEST__INIT;
    Baton__V1__CommittedBlock b = BATON__V1__COMMITTED_BLOCK__INIT, *bp = &b;
    uint32_t ids[2] = { 7, 8 };
    bt_kvs_commit_block_t out[2];
    char err[256];

    (void)state;
    req.n_blocks = 1;
    req.blocks = &bp;
    b.block_hash.len = 32;
    b.block_hash.data = h32;
    b.checksum.len = 16;
    b.checksum.data = h32;
    assert_int_equal(bt_kvsd_commit_blocks(&req, out, err, sizeof(err)),
                     BT_ERR_INVALID_ARG);
    assert_non_null(strstr(err, "blocks[0]"));
    b.checksum.len = 32;
    b.n_token_ids = BT_KV_MAX_BLOCK_TOKENS + 1;
    b.token_ids = ids;
    assert_int_equal(bt_kvsd_commit_blocks(&req, out, err, sizeof(err)),
                     BT_ERR_INVALID_ARG);
    b.n_token_ids = 2;
    assert_int_equal(bt_kvsd_commit_blocks(&req, out, err, sizeof(err)), BT_OK);
    assert_memory_equal(out[0].hash, h32, 32);
    assert_ptr_equal(out[0].tokens, ids);
    assert_int_equal(out[0].n_tokens, 2);
    req.n_blocks = BT_KV_MAX_HASHES + 1;
    assert_int_equal(bt_kvsd_commit_blocks(&req, out, err, sizeof(err)),
                     BT_ERR_INVALID_ARG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_hashes),
        cmocka_unit_test(test_reserve),
        cmocka_unit_test(test_commit_blocks),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
