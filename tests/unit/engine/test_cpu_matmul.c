/* The CPU backend's matmul gives the same bits through every kernel path
 * (AVX-512 tile, AVX2 tiles, portable), every row count (the tiles' edges
 * included), every thread count and every weight dtype, with and without
 * a bias; and each element equals bt_cpu_dot, the one fixed order. */
#include "engine/model/backend.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

typedef struct {
    int n, rows, cols;
} shape_t;

/* rows of x around the 6- and 4-row tiles, columns around the 8- and
 * 3-column tiles, reductions with and without a tail of k mod 8 */
static const shape_t shapes[] = {
    {1, 8, 64},   {2, 8, 64},   {5, 7, 24},   {6, 8, 16},  {7, 9, 40},
    {12, 16, 8},  {13, 24, 72}, {23, 50, 96}, {6, 77, 13}, {11, 33, 67},
    {4, 3, 5},    {17, 200, 264}, {64, 130, 128},
};

static uint32_t rng_next(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

static float rnd(uint32_t *s)
{
    return (float)(rng_next(s) % 20001) / 10000.0f - 1.0f;
}

static void run(bt_cpu_kernels_t kernels, int threads, const float *x,
                int n, const bt_mat_t *w, const float *bias, float *y)
{
    void *ctx;

    bt_cpu_limit_kernels(kernels);
    assert_int_equal(bt_backend_cpu.create(threads, &ctx), BT_OK);
    bt_backend_cpu.matmul(ctx, x, n, w, bias, y);
    bt_backend_cpu.destroy(ctx);
    bt_cpu_limit_kernels(BT_CPU_AVX512);
}

static void check_shape(const shape_t *sh, bt_dtype_t dt, bool with_bias)
{
    const size_t ny = (size_t)sh->n * (size_t)sh->rows;
    float *x = malloc((size_t)sh->n * (size_t)sh->cols * sizeof(float));
    void *wd = malloc((size_t)sh->rows * (size_t)sh->cols * 4);
    float *bias = malloc((size_t)sh->rows * sizeof(float));
    float *ref = malloc(ny * sizeof(float)), *got = malloc(ny * sizeof(float));
    const bt_mat_t w = {wd, dt, sh->rows, sh->cols};
    static const bt_cpu_kernels_t paths[] = {BT_CPU_AVX2, BT_CPU_PORTABLE};
    uint32_t s = 0x9e3779b9u ^ (uint32_t)(sh->n * 131 + sh->rows * 7 +
                                          sh->cols);

    for (int i = 0; i < sh->n * sh->cols; i++) {
        x[i] = rnd(&s);
    }
    for (int i = 0; i < sh->rows * sh->cols; i++) {
        bt_dtype_store(wd, dt, (size_t)i, rnd(&s) * 0.25f);
    }
    for (int i = 0; i < sh->rows; i++) {
        bias[i] = rnd(&s);
    }
    run(BT_CPU_AVX512, 2, x, sh->n, &w, with_bias ? bias : NULL, ref);
    for (int r = 0; r < sh->n; r++) {
        for (int c = 0; c < sh->rows; c++) {
            const size_t esz = bt_dtype_size(dt);
            float d = bt_cpu_dot(x + (size_t)r * sh->cols,
                                 (const char *)wd + (size_t)c * sh->cols * esz,
                                 dt, sh->cols);

            if (with_bias) {
                d += bias[c];
            }
            if (memcmp(&d, &ref[(size_t)r * sh->rows + c], sizeof(d)) != 0) {
                fail_msg("n %d rows %d cols %d dtype %d: y[%d][%d] %a, dot %a",
                         sh->n, sh->rows, sh->cols, (int)dt, r, c,
                         (double)ref[(size_t)r * sh->rows + c], (double)d);
            }
        }
    }
    for (size_t p = 0; p < sizeof(paths) / sizeof(paths[0]); p++) {
        for (int threads = 1; threads <= 3; threads += 2) {
            memset(got, 0xff, ny * sizeof(float));
            run(paths[p], threads, x, sh->n, &w, with_bias ? bias : NULL,
                got);
            if (memcmp(ref, got, ny * sizeof(float)) != 0) {
                fail_msg("n %d rows %d cols %d dtype %d: %s with %d threads "
                         "differs from %s", sh->n, sh->rows, sh->cols, (int)dt,
                         bt_cpu_kernels_name(paths[p]), threads,
                         bt_cpu_kernels_name(bt_cpu_kernels()));
            }
        }
    }
    free(x);
    free(wd);
    free(bias);
    free(ref);
    free(got);
}

static void test_paths_agree(void **state)
{
    static const bt_dtype_t dts[] = {BT_DTYPE_BF16, BT_DTYPE_F16,
                                     BT_DTYPE_F32};

    (void)state;
    print_message("# best kernels here: %s\n",
                  bt_cpu_kernels_name(bt_cpu_kernels()));
    for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
        for (size_t d = 0; d < sizeof(dts) / sizeof(dts[0]); d++) {
            check_shape(&shapes[i], dts[d], false);
            check_shape(&shapes[i], dts[d], true);
        }
    }
}

/* the cap takes effect and is reported; it never raises past the CPU */
static void test_limit(void **state)
{
    (void)state;
    bt_cpu_limit_kernels(BT_CPU_PORTABLE);
    assert_int_equal(bt_cpu_kernels(), BT_CPU_PORTABLE);
    bt_cpu_limit_kernels(BT_CPU_AVX2);
    assert_int_equal(bt_cpu_kernels(),
                     bt_cpu_has_avx2() ? BT_CPU_AVX2 : BT_CPU_PORTABLE);
    bt_cpu_limit_kernels(BT_CPU_AVX512);
    assert_true(bt_cpu_kernels() >= BT_CPU_PORTABLE &&
                bt_cpu_kernels() <= BT_CPU_AVX512);
    assert_string_equal(bt_cpu_kernels_name(BT_CPU_AVX512), "avx512");
    assert_string_equal(bt_cpu_kernels_name(BT_CPU_AVX2), "avx2");
    assert_string_equal(bt_cpu_kernels_name(BT_CPU_PORTABLE), "portable");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_paths_agree),
        cmocka_unit_test(test_limit),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
