/* KV pool geometry: slice offsets follow
 * [layer][block][k|v][block_size][n_kv_heads][head_dim] for every dtype,
 * region sizing, caller regions, and coalescing of block id runs. */
#include "engine/kv/kv_pool.h"

#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

static bt_kvpool_t *make_pool(bt_dtype_t dtype, uint32_t n_blocks)
{
    bt_kvpool_config_t cfg;
    bt_kvpool_t *pool = NULL;

    memset(&cfg, 0, sizeof(cfg));
    cfg.geom.n_layers = 3;
    cfg.geom.n_kv_heads = 2;
    cfg.geom.head_dim = 8;
    cfg.geom.block_size = 4;
    cfg.geom.dtype = bt_kv_dtype_of_elem(dtype);
    cfg.n_blocks = n_blocks;
    assert_int_equal(bt_kvpool_create(&cfg, &pool), BT_OK);
    return pool;
}

static void test_offsets_all_dtypes(void **state)
{
    const bt_dtype_t dtypes[] = {BT_DTYPE_F32, BT_DTYPE_F16, BT_DTYPE_BF16};
    size_t d;

    (void)state;
    for (d = 0; d < 3; d++) {
        bt_kvpool_t *pool = make_pool(dtypes[d], 5);
        size_t es = bt_dtype_size(dtypes[d]);
        /* element index of (layer, block, kv, slot, head, dim) by the
         * layout formula, written out independently */
        size_t slice = 2 * 4 * 2 * 8;
        uint8_t *base = bt_kvpool_base(pool);
        uint32_t l, b, t;

        assert_int_equal(bt_kvpool_slice_bytes(pool), slice * es);
        assert_int_equal(bt_kvpool_v_offset(pool), slice * es / 2);
        assert_int_equal(bt_kvpool_region_bytes(pool), 3 * 5 * slice * es);
        assert_int_equal(((uintptr_t)base) % 64, 0);
        for (l = 0; l < 3; l++) {
            for (b = 0; b < 5; b++) {
                size_t el = (l * 5 + b) * slice;
                assert_int_equal(bt_kvpool_slice_offset(pool, l, b), el * es);
                assert_ptr_equal(bt_kvpool_block_ptr(pool, l, b),
                                 base + el * es);
                for (t = 0; t < 4; t++) {
                    size_t k = el + (0 * 4 + t) * 2 * 8;
                    size_t v = el + (1 * 4 + t) * 2 * 8;
                    assert_ptr_equal(bt_kvpool_token_ptr(pool, l, b, t, false),
                                     base + k * es);
                    assert_ptr_equal(bt_kvpool_token_ptr(pool, l, b, t, true),
                                     base + v * es);
                }
            }
        }
        /* the last byte of the region is the last byte of the last slice */
        assert_int_equal(bt_kvpool_slice_offset(pool, 2, 4) +
                         bt_kvpool_slice_bytes(pool),
                         bt_kvpool_region_bytes(pool));
        memset(base, 0xab, bt_kvpool_region_bytes(pool)); /* writable */
        bt_kvpool_destroy(pool);
    }
}

static void test_sizing(void **state)
{
    bt_kvpool_config_t cfg;
    bt_kvpool_t *pool = NULL;
    size_t per_block;
    void *region;

    (void)state;
    memset(&cfg, 0, sizeof(cfg));
    cfg.geom = (bt_kv_geom_t){2, 4, 16, 16, BT_KV_DTYPE_BF16};
    per_block = bt_kv_region_bytes(&cfg.geom, 1);
    assert_int_equal(per_block, 2 * 2 * 16 * 4 * 16 * 2);
    assert_int_equal(bt_kv_region_bytes(&cfg.geom, 7), 7 * per_block);

    /* from a byte budget: whole blocks only */
    cfg.budget_bytes = 10 * per_block + per_block / 2;
    assert_int_equal(bt_kvpool_create(&cfg, &pool), BT_OK);
    assert_int_equal(bt_kvpool_n_blocks(pool), 10);
    bt_kvpool_destroy(pool);

    /* too small a budget */
    cfg.budget_bytes = per_block - 1;
    pool = NULL;
    assert_int_equal(bt_kvpool_create(&cfg, &pool), BT_ERR_INVALID_ARG);
    assert_null(pool);

    /* caller region: used as is, never freed by the pool */
    cfg.budget_bytes = 0;
    region = aligned_alloc(4096, 6 * per_block);
    assert_non_null(region);
    cfg.base = region;
    cfg.base_len = 6 * per_block;
    assert_int_equal(bt_kvpool_create(&cfg, &pool), BT_OK);
    assert_int_equal(bt_kvpool_n_blocks(pool), 6);
    assert_ptr_equal(bt_kvpool_base(pool), region);
    assert_ptr_equal(bt_kvpool_block_ptr(pool, 1, 2),
                     (uint8_t *)region + (1 * 6 + 2) * (per_block / 2));
    bt_kvpool_destroy(pool);

    /* a region shorter than the blocks asked for */
    cfg.n_blocks = 7;
    pool = NULL;
    assert_int_equal(bt_kvpool_create(&cfg, &pool), BT_ERR_INVALID_ARG);
    assert_null(pool);
    free(region);

    /* bad geometry */
    cfg.base = NULL;
    cfg.base_len = 0;
    cfg.geom.head_dim = 0;
    assert_int_equal(bt_kvpool_create(&cfg, &pool), BT_ERR_INVALID_ARG);
    cfg.geom.head_dim = 16;
    cfg.geom.block_size = BT_KV_MAX_BLOCK_TOKENS + 1;
    assert_int_equal(bt_kvpool_create(&cfg, &pool), BT_ERR_INVALID_ARG);
    cfg.geom.block_size = 16;
    cfg.geom.dtype = (bt_kv_dtype_t)7;
    assert_int_equal(bt_kvpool_create(&cfg, &pool), BT_ERR_INVALID_ARG);
}

static void test_runs(void **state)
{
    const uint32_t ids[] = {4, 5, 6, 9, 10, 2, 3, 3, 8};
    bt_kv_run_t runs[9];
    uint32_t n = 0;

    (void)state;
    assert_int_equal(bt_kv_runs(ids, 9, runs, 9, &n), BT_OK);
    assert_int_equal(n, 5);
    assert_int_equal(runs[0].index, 0);
    assert_int_equal(runs[0].first, 4);
    assert_int_equal(runs[0].count, 3);
    assert_int_equal(runs[1].index, 3);
    assert_int_equal(runs[1].first, 9);
    assert_int_equal(runs[1].count, 2);
    assert_int_equal(runs[2].index, 5);
    assert_int_equal(runs[2].first, 2);
    assert_int_equal(runs[2].count, 2);
    /* a repeated id is not consecutive */
    assert_int_equal(runs[3].index, 7);
    assert_int_equal(runs[3].first, 3);
    assert_int_equal(runs[3].count, 1);
    assert_int_equal(runs[4].first, 8);
    assert_int_equal(runs[4].count, 1);
    assert_int_equal(bt_kv_runs(ids, 9, runs, 4, &n), BT_ERR_TOO_LARGE);
    assert_int_equal(bt_kv_runs(ids, 0, runs, 0, &n), BT_OK);
    assert_int_equal(n, 0);
}

/* A run of consecutive blocks is one contiguous byte range per layer. */
static void test_run_is_contiguous(void **state)
{
    bt_kvpool_t *pool = make_pool(BT_DTYPE_F16, 8);
    uint32_t l;

    (void)state;
    for (l = 0; l < 3; l++) {
        assert_int_equal(bt_kvpool_slice_offset(pool, l, 3) +
                         3 * bt_kvpool_slice_bytes(pool),
                         bt_kvpool_slice_offset(pool, l, 6));
    }
    bt_kvpool_destroy(pool);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_offsets_all_dtypes),
        cmocka_unit_test(test_sizing),
        cmocka_unit_test(test_runs),
        cmocka_unit_test(test_run_is_contiguous),
    };

    return cmocka_run_group_tests_name("kv_layout", tests, NULL, NULL);
}
