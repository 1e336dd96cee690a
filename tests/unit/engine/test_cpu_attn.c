/* The CPU backend's attention, bit for bit: the AVX-512 and AVX2 paths
 * (grouped-query kernels, up to four query heads per pass over a K/V
 * head) equal the portable per-head path for group sizes 1 to 9 (so 1 to
 * 4 heads per pass and several passes per group), head sizes with and
 * without 64-, 16- and 8-wide tails, BF16, F16 and F32 K/V, scattered
 * blocks of 4 and 16 tokens (runs of keys shorter and longer than the
 * AVX-512 tile's 8), partial last blocks and a sliding window. */
#include "engine/model/backend.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>


typedef struct {
    int        n_heads, n_kv, hd, ctx, window;
    bt_dtype_t dt;
    int        bs; /* tokens per block (4 when 0): keys per run */
} shape_t;

static float frand(void)
{
    return (float)(rand() % 20001 - 10000) / 2500.0f;
}

/* out of every token of one sequence of `ctx` positions, all attending */
static void run(const shape_t *sh, bt_cpu_kernels_t kernels, float *out)
{
    const int BS = sh->bs > 0 ? sh->bs : 4;
    const int nb = (sh->ctx + BS - 1) / BS + 3;
    const size_t row = (size_t)sh->n_kv * sh->hd;
    const size_t qn = (size_t)sh->ctx * sh->n_heads * sh->hd;
    bt_kv_view_t kv = {NULL, sh->dt, 1, nb, BS, sh->n_kv, sh->hd, NULL};
    uint32_t *table = malloc((size_t)nb * sizeof(uint32_t));
    const uint32_t **tables = malloc((size_t)sh->ctx * sizeof(*tables));
    int32_t *pos = malloc((size_t)sh->ctx * sizeof(int32_t));
    float *q = malloc(qn * sizeof(float));
    bt_attn_args_t a;
    void *be;

    srand(11);
    kv.base = calloc((size_t)nb * 2 * BS * row, bt_dtype_size(sh->dt));
    for (int b = 0; b < nb; b++) {
        table[b] = (uint32_t)((b * 5 + 2) % nb); /* scattered blocks */
    }
    for (int p = 0; p < sh->ctx; p++) {
        for (int side = 0; side < 2; side++) {
            void *at = bt_kv_view_at(&kv, 0, table[p / BS], side, p % BS);

            for (size_t i = 0; i < row; i++) {
                float f = frand();

                bt_dtype_convert_row(&f, BT_DTYPE_F32,
                                     (char *)at + i * bt_dtype_size(sh->dt),
                                     sh->dt, 1);
            }
        }
        pos[p] = p;
        tables[p] = table;
    }
    for (size_t i = 0; i < qn; i++) {
        q[i] = frand();
    }
    a = (bt_attn_args_t){sh->ctx, sh->n_heads, sh->n_kv, sh->hd, 0,
                         sh->window, 0.125f, q, out, pos, tables, &kv};
    bt_cpu_limit_kernels(kernels);
    assert_int_equal(bt_backend_cpu.create(2, &be), BT_OK);
    assert_int_equal(bt_backend_cpu.reserve(be, sh->ctx), BT_OK);
    bt_backend_cpu.attention(be, &a);
    bt_backend_cpu.destroy(be);
    bt_cpu_limit_kernels(BT_CPU_AVX512);
    free(kv.base);
    free(table);
    free(tables);
    free(pos);
    free(q);
}

static void check(const shape_t *sh)
{
    const size_t n = (size_t)sh->ctx * sh->n_heads * sh->hd;
    float *best = malloc(n * sizeof(float)), *got = malloc(n * sizeof(float));

    run(sh, BT_CPU_AVX512, best);
    for (int k = BT_CPU_AVX2; k >= BT_CPU_PORTABLE; k--) {
        run(sh, (bt_cpu_kernels_t)k, got);
        if (memcmp(best, got, n * sizeof(float)) != 0) {
            fail_msg("heads %d/%d hd %d ctx %d window %d dtype %d block %d: "
                     "%s differs from %s", sh->n_heads, sh->n_kv, sh->hd,
                     sh->ctx, sh->window, (int)sh->dt, sh->bs,
                     bt_cpu_kernels_name((bt_cpu_kernels_t)k),
                     bt_cpu_kernels_name(bt_cpu_kernels()));
        }
    }
    free(best);
    free(got);
}

static void test_groups(void **state)
{
    (void)state;
    if (!bt_cpu_has_avx2()) {
        skip();
    }
    for (int g = 1; g <= 9; g++) {
        for (int kvh = 1; kvh <= 2; kvh++) {
            const shape_t sh = {g * kvh, kvh, 24, 19, 0, BT_DTYPE_BF16, 0};
            const shape_t wide = {g * kvh, kvh, 80, 37, 0, BT_DTYPE_BF16, 16};

            check(&sh);
            check(&wide);
        }
    }
}

static void test_shapes(void **state)
{
    static const shape_t shapes[] = {
        {8, 2, 8, 33, 0, BT_DTYPE_BF16, 0},
        {8, 2, 16, 1, 0, BT_DTYPE_BF16, 0},
        {8, 2, 32, 40, 0, BT_DTYPE_BF16, 0},
        {12, 4, 40, 17, 0, BT_DTYPE_F32, 0},
        {6, 2, 64, 23, 0, BT_DTYPE_F16, 0},
        {32, 8, 128, 9, 0, BT_DTYPE_BF16, 0},
        {8, 2, 32, 30, 7, BT_DTYPE_BF16, 0},  /* sliding window */
        {4, 4, 32, 21, 0, BT_DTYPE_BF16, 0},  /* no grouping */
        {8, 2, 128, 45, 0, BT_DTYPE_BF16, 16},
        {12, 4, 96, 40, 0, BT_DTYPE_F16, 16},
        {8, 2, 72, 33, 0, BT_DTYPE_F32, 16},
        {8, 2, 64, 50, 13, BT_DTYPE_BF16, 16},
    };

    (void)state;
    if (!bt_cpu_has_avx2()) {
        skip();
    }
    for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
        check(&shapes[i]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_groups),
        cmocka_unit_test(test_shapes),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
