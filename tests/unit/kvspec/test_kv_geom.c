/* kv-spec dtype ids and block geometry (kv_spec.h) and their protobuf
 * forms (kv_proto.h): ids equal baton.v1.KvDtype, block sizes and the
 * limits the kvstore enforces on requests; a KvEvent message built in
 * one allocation. */
#include "kvspec/kv_proto.h"
#include "kvspec/kv_spec.h"

#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

static void test_dtype_ids(void **state)
{
    (void)state;
    assert_int_equal(BT_KV_DTYPE_F32, BATON__V1__KV_DTYPE__KV_DTYPE_F32);
    assert_int_equal(BT_KV_DTYPE_F16, BATON__V1__KV_DTYPE__KV_DTYPE_F16);
    assert_int_equal(BT_KV_DTYPE_BF16, BATON__V1__KV_DTYPE__KV_DTYPE_BF16);
    /* the names hashed into every root (docs/kv-spec.md) */
    assert_string_equal(bt_kv_dtype_name(BT_KV_DTYPE_F32), "f32");
    assert_string_equal(bt_kv_dtype_name(BT_KV_DTYPE_F16), "f16");
    assert_string_equal(bt_kv_dtype_name(BT_KV_DTYPE_BF16), "bf16");
    assert_null(bt_kv_dtype_name(BT_KV_DTYPE_UNSPECIFIED));
    assert_null(bt_kv_dtype_name((bt_kv_dtype_t)4));
    assert_int_equal(bt_kv_dtype_size(BT_KV_DTYPE_F32), 4);
    assert_int_equal(bt_kv_dtype_size(BT_KV_DTYPE_F16), 2);
    assert_int_equal(bt_kv_dtype_size(BT_KV_DTYPE_BF16), 2);
    assert_int_equal(bt_kv_dtype_size(BT_KV_DTYPE_UNSPECIFIED), 0);
    assert_int_equal(bt_kv_dtype_size((bt_kv_dtype_t)4), 0);
}

static void test_block_bytes_and_limits(void **state)
{
    bt_kv_geom_t g = { 4, 2, 64, 16, BT_KV_DTYPE_F16 };
    bt_kv_geom_t b;
    char err[256];

    (void)state;
    assert_int_equal(bt_kv_geom_block_bytes(&g), 4ull * 2 * 16 * 2 * 64 * 2);
    assert_int_equal(bt_kv_geom_check_block(&g, 32768, err, sizeof(err)),
                     BT_OK);
    assert_int_equal(bt_kv_geom_check_block(&g, 32767, err, sizeof(err)),
                     BT_ERR_INVALID_ARG);
    assert_non_null(strstr(err, "does not match the geometry"));
    b = g;
    b.dtype = BT_KV_DTYPE_UNSPECIFIED;
    assert_int_equal(bt_kv_geom_block_bytes(&b), 0);
    assert_int_equal(bt_kv_geom_check_block(&b, 0, err, sizeof(err)),
                     BT_ERR_INVALID_ARG);
    assert_non_null(strstr(err, "insane kv geometry"));
    b = g;
    b.block_size = BT_KV_MAX_BLOCK_TOKENS + 1;
    assert_int_equal(bt_kv_geom_block_bytes(&b), 0);
    b.block_size = BT_KV_MAX_BLOCK_TOKENS;
    assert_int_not_equal(bt_kv_geom_block_bytes(&b), 0);
    b = g;
    b.n_layers = BT_KV_MAX_GEOM_DIM + 1;
    assert_int_equal(bt_kv_geom_block_bytes(&b), 0);
    b = g;
    b.head_dim = 0;
    assert_int_equal(bt_kv_geom_block_bytes(&b), 0);
    /* every dimension in range, the block over 1 GiB */
    b = (bt_kv_geom_t){ 4096, 64, 128, 16, BT_KV_DTYPE_F32 };
    assert_int_equal(bt_kv_geom_block_bytes(&b), 0);
}

static void test_proto_round_trip(void **state)
{
    const bt_kv_geom_t g = { 32, 8, 128, 16, BT_KV_DTYPE_BF16 };
    Baton__V1__KvGeometry pb = BATON__V1__KV_GEOMETRY__INIT;
    bt_kv_geom_t back;

    (void)state;
    bt_kv_geom_to_proto(&g, &pb);
    assert_int_equal(pb.n_layers, 32);
    assert_int_equal(pb.n_kv_heads, 8);
    assert_int_equal(pb.head_dim, 128);
    assert_int_equal(pb.block_size, 16);
    assert_int_equal(pb.dtype, BATON__V1__KV_DTYPE__KV_DTYPE_BF16);
    memset(&back, 0xff, sizeof(back));
    bt_kv_geom_from_proto(&pb, &back);
    assert_memory_equal(&back, &g, sizeof(g));
    /* a peer's unknown dtype passes through, to be refused by the check */
    pb.dtype = (Baton__V1__KvDtype)9;
    bt_kv_geom_from_proto(&pb, &back);
    assert_int_equal(bt_kv_geom_block_bytes(&back), 0);
    assert_int_equal(bt_kv_dtype_from_proto(BATON__V1__KV_DTYPE__KV_DTYPE_F32),
                     BT_KV_DTYPE_F32);
    assert_int_equal(bt_kv_dtype_to_proto(BT_KV_DTYPE_F16),
                     BATON__V1__KV_DTYPE__KV_DTYPE_F16);
}

/* A KvEvent in one allocation: its hash and parent copied, none for a
 * CLEARED without a hash; the packed message names both. */
static void test_kv_event_msg(void **state)
{
    uint8_t h[BT_KV_HASH_LEN], p[BT_KV_HASH_LEN];
    Baton__V1__KvEvent *m, *back;
    uint8_t buf[256];
    size_t len;

    (void)state;
    memset(h, 0xab, sizeof(h));
    memset(p, 0x12, sizeof(p));
    m = bt_kv_event_msg_new(BATON__V1__KV_EVENT__KIND__KIND_STORED,
                            BATON__V1__KV_TIER__KV_TIER_DISK, h, p);
    assert_non_null(m);
    memset(h, 0, sizeof(h));   /* copied, not borrowed */
    len = baton__v1__kv_event__pack(m, buf);
    free(m);
    back = baton__v1__kv_event__unpack(NULL, len, buf);
    assert_non_null(back);
    assert_int_equal(back->kind, BATON__V1__KV_EVENT__KIND__KIND_STORED);
    assert_int_equal(back->tier, BATON__V1__KV_TIER__KV_TIER_DISK);
    assert_int_equal(back->n_block_hashes, 1);
    assert_int_equal(back->block_hashes[0].len, BT_KV_HASH_LEN);
    assert_int_equal(back->block_hashes[0].data[0], 0xab);
    assert_int_equal(back->parent_hash.len, BT_KV_HASH_LEN);
    assert_memory_equal(back->parent_hash.data, p, BT_KV_HASH_LEN);
    baton__v1__kv_event__free_unpacked(back, NULL);

    m = bt_kv_event_msg_new(BATON__V1__KV_EVENT__KIND__KIND_CLEARED,
                            BATON__V1__KV_TIER__KV_TIER_DEVICE, NULL, NULL);
    assert_non_null(m);
    assert_int_equal(m->n_block_hashes, 0);
    assert_int_equal(m->parent_hash.len, 0);
    free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dtype_ids),
        cmocka_unit_test(test_block_bytes_and_limits),
        cmocka_unit_test(test_proto_round_trip),
        cmocka_unit_test(test_kv_event_msg),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
