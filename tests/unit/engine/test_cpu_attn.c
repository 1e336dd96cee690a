/* The CPU backend's attention, bit for bit: the AVX2 path (grouped-query
 * kernels, up to four query heads per pass over a K/V head) equals the
 * portable per-head path for group sizes 1 to 9 (so 1 to 4 heads per
 * pass and several passes per group), head sizes with and without a
 * 16-wide tail, BF16 and F32 K/V, scattered blocks, partial last blocks
 * and a sliding window. */
#include "engine/model/backend.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#define BS 4 /* tokens per block: runs of 1..4 keys */

typedef struct {
    int        n_heads, n_kv, hd, ctx, window;
    bt_dtype_t dt;
} shape_t;

static float frand(void)
{
    return (float)(rand() % 20001 - 10000) / 2500.0f;
}

/* out of every token of one sequence of `ctx` positions, all attending */
static void run(const shape_t *sh, bool scalar, float *out)
{
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
    bt_cpu_force_scalar(scalar);
    assert_int_equal(bt_backend_cpu.create(2, &be), BT_OK);
    assert_int_equal(bt_backend_cpu.reserve(be, sh->ctx), BT_OK);
    bt_backend_cpu.attention(be, &a);
    bt_backend_cpu.destroy(be);
    bt_cpu_force_scalar(false);
    free(kv.base);
    free(table);
    free(tables);
    free(pos);
    free(q);
}

static void check(const shape_t *sh)
{
    const size_t n = (size_t)sh->ctx * sh->n_heads * sh->hd;
    float *simd = malloc(n * sizeof(float)), *port = malloc(n * sizeof(float));

    run(sh, false, simd);
    run(sh, true, port);
    if (memcmp(simd, port, n * sizeof(float)) != 0) {
        fail_msg("heads %d/%d hd %d ctx %d window %d dtype %d differ",
                 sh->n_heads, sh->n_kv, sh->hd, sh->ctx, sh->window,
                 (int)sh->dt);
    }
    free(simd);
    free(port);
}

static void test_groups(void **state)
{
    (void)state;
    if (!bt_cpu_has_avx2()) {
        skip();
    }
    for (int g = 1; g <= 9; g++) {
        for (int kvh = 1; kvh <= 2; kvh++) {
            const shape_t sh = {g * kvh, kvh, 24, 19, 0, BT_DTYPE_BF16};

            check(&sh);
        }
    }
}

static void test_shapes(void **state)
{
    static const shape_t shapes[] = {
        {8, 2, 8, 33, 0, BT_DTYPE_BF16},
        {8, 2, 16, 1, 0, BT_DTYPE_BF16},
        {8, 2, 32, 40, 0, BT_DTYPE_BF16},
        {12, 4, 40, 17, 0, BT_DTYPE_F32},
        {6, 2, 64, 23, 0, BT_DTYPE_F16},
        {32, 8, 128, 9, 0, BT_DTYPE_BF16},
        {8, 2, 32, 30, 7, BT_DTYPE_BF16},  /* sliding window */
        {4, 4, 32, 21, 0, BT_DTYPE_BF16},  /* no grouping */
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
