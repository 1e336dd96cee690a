/* The CPU backend's own exp (cpu_exp.h): the AVX2 path gives the bits of
 * the portable one for every sampled float and every special value, the
 * error against a double exp stays under 0.51 ulp, and the softmax sum
 * adds in the backend's fixed lane order. */
#include "engine/model/backend.h"
#include "engine/model/cpu_exp.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#define BATCH 4096

static float from_bits(uint32_t u)
{
    float f;

    memcpy(&f, &u, 4);
    return f;
}

static uint32_t bits(float f)
{
    uint32_t u;

    memcpy(&u, &f, 4);
    return u;
}

/* the same inputs through every path (AVX-512 where the CPU has it,
 * AVX2, portable); also the scalar function itself */
static void check_batch(const float *x, size_t n)
{
    float best[BATCH], avx2[BATCH], port[BATCH];

    memcpy(best, x, n * sizeof(float));
    memcpy(avx2, x, n * sizeof(float));
    memcpy(port, x, n * sizeof(float));
    bt_cpu_force_scalar(false);
    bt_cpu_expf_n(best, n);
    bt_cpu_limit_kernels(BT_CPU_AVX2);
    bt_cpu_expf_n(avx2, n);
    bt_cpu_force_scalar(true);
    bt_cpu_expf_n(port, n);
    bt_cpu_force_scalar(false);
    for (size_t i = 0; i < n; i++) {
        if (bits(best[i]) != bits(port[i]) || bits(avx2[i]) != bits(port[i]) ||
            bits(port[i]) != bits(bt_cpu_expf(x[i]))) {
            fail_msg("exp(%a): %s %a, avx2 %a, portable %a", (double)x[i],
                     bt_cpu_kernels_name(bt_cpu_kernels()), (double)best[i],
                     (double)avx2[i], (double)port[i]);
        }
    }
}

static void test_paths_agree(void **state)
{
    static const float special[] = {
        0.0f, -0.0f, 1.0f, -1.0f, INFINITY, -INFINITY, NAN, -NAN,
        88.72283935546875f, 88.7228470f, 89.0f, 1000.0f, -87.33654f,
        -103.972084f, -104.0f, -150.0f, 1e-30f, -1e-30f, 0x1p-149f,
        0.34657359f, -0.34657359f, 0.693147182f,
    };
    float x[BATCH];
    size_t n = 0;
    uint64_t checked = 0;

    (void)state;
    if (!bt_cpu_has_avx2()) {
        skip();
    }
    check_batch(special, sizeof(special) / sizeof(special[0]));
    /* every 251st bit pattern: all signs, exponents and mantissa spreads */
    for (uint64_t u = 0; u <= UINT32_MAX; u += 251) {
        x[n++] = from_bits((uint32_t)u);
        if (n == BATCH) {
            check_batch(x, n);
            checked += n;
            n = 0;
        }
    }
    check_batch(x, n);
    checked += n;
    print_message("# %llu inputs, same bits\n", (unsigned long long)checked);
}

/* |result - exp(x)| in units of the float result's last place */
static void test_accuracy(void **state)
{
    double worst = 0;
    float at = 0;

    (void)state;
    for (uint32_t u = 0; u < (1u << 31); u += 97) {
        for (int sign = 0; sign < 2; sign++) {
            const float x = from_bits(u | (sign ? 0x80000000u : 0));
            const double want = exp((double)x);
            const float got = bt_cpu_expf(x);
            double ulp, err;

            if (isnan(x)) {
                assert_true(isnan(got));
                continue;
            }
            if (isinf(got)) { /* overflow: only past the largest float */
                assert_true(got > 0 && want > 0x1.fffffep127);
                continue;
            }
            ulp = want < 0x1p-126 ? 0x1p-149
                                  : ldexp(1.0, ilogb(want) - 23);
            err = fabs((double)got - want) / ulp;
            if (err > worst) {
                worst = err;
                at = x;
            }
        }
    }
    print_message("# worst error %.4f ulp at %a\n", worst, (double)at);
    assert_true(worst < 0.51);
}

static void test_sum_order(void **state)
{
    float x[67], y[67], z[67], w[67];

    (void)state;
    srand(7);
    for (size_t n = 0; n <= 67; n++) {
        float want_a[8] = {0}, got, port, mid;

        for (size_t i = 0; i < n; i++) {
            x[i] = (float)(rand() % 20000 - 15000) / 1000.0f;
            y[i] = x[i];
            z[i] = x[i];
            w[i] = x[i];
        }
        for (size_t i = 0; i < n; i++) {
            want_a[i % 8] += bt_cpu_expf(x[i] - 1.5f);
        }
        got = bt_cpu_exp_sum(y, n, 1.5f);
        bt_cpu_limit_kernels(BT_CPU_AVX2);
        mid = bt_cpu_exp_sum(w, n, 1.5f);
        bt_cpu_force_scalar(true);
        port = bt_cpu_exp_sum(z, n, 1.5f);
        bt_cpu_force_scalar(false);
        assert_int_equal(bits(got), bits(bt_cpu_lanes_sum(want_a)));
        assert_int_equal(bits(port), bits(got));
        assert_int_equal(bits(mid), bits(got));
        for (size_t i = 0; i < n; i++) {
            assert_int_equal(bits(y[i]), bits(bt_cpu_expf(x[i] - 1.5f)));
            assert_int_equal(bits(z[i]), bits(y[i]));
            assert_int_equal(bits(w[i]), bits(y[i]));
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_paths_agree),
        cmocka_unit_test(test_accuracy),
        cmocka_unit_test(test_sum_order),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
