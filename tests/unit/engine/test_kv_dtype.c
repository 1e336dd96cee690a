/* f32 <-> bf16 / f16 conversions (engine/dtype.h) against a bit-level
 * reference written here from the IEEE 754 definitions: every 16-bit code
 * decodes exactly, and every rounding boundary (exact values, midpoints,
 * one ulp either side) narrows to nearest, ties to even, including
 * denormals, overflow to infinity, zeros and NaN. */
#include "engine/dtype.h"

#include <math.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

typedef struct {
    int exp_bits, man_bits; /* 5/10 for f16, 8/7 for bf16 */
    uint16_t (*narrow)(float);
    float (*widen)(uint16_t);
} fmt_t;

static uint16_t to_bf16(float f) { return bt_f32_to_bf16(f); }
static float from_bf16(uint16_t h) { return bt_bf16_to_f32(h); }
static uint16_t to_f16(float f) { return bt_f32_to_f16(f); }
static float from_f16(uint16_t h) { return bt_f16_to_f32(h); }

static const fmt_t F16 = {5, 10, to_f16, from_f16};
static const fmt_t BF16 = {8, 7, to_bf16, from_bf16};

/* Reference value of a finite code, in double (exact). */
static double ref_value(const fmt_t *f, uint16_t h)
{
    int bias = (1 << (f->exp_bits - 1)) - 1;
    int e = (h >> f->man_bits) & ((1 << f->exp_bits) - 1);
    int m = h & ((1 << f->man_bits) - 1);
    double v = e == 0 ? ldexp(m, 1 - bias - f->man_bits)
                      : ldexp(m + (1 << f->man_bits), e - bias - f->man_bits);

    return (h >> 15) ? -v : v;
}

static bool is_special(const fmt_t *f, uint16_t h)
{
    int e = (h >> f->man_bits) & ((1 << f->exp_bits) - 1);

    return e == (1 << f->exp_bits) - 1;
}

static uint32_t fbits(float x)
{
    uint32_t u;

    memcpy(&u, &x, 4);
    return u;
}

static void check_format(const fmt_t *f)
{
    uint16_t inf = (uint16_t)(((1 << f->exp_bits) - 1) << f->man_bits);
    uint32_t c;

    for (c = 0; c < 0x10000; c++) {
        uint16_t h = (uint16_t)c, next = (uint16_t)(c + 1);
        uint16_t sign = h & 0x8000;
        double v, w, mid;
        float fm;

        if (is_special(f, h)) {
            float x = f->widen(h);
            if (h & ((1 << f->man_bits) - 1)) {
                assert_true(isnan(x));
                assert_int_equal(!!signbit(x), !!sign);
                /* narrowing a NaN gives a NaN of the same sign */
                assert_true(is_special(f, f->narrow(x)));
                assert_int_not_equal(f->narrow(x) &
                                     ((1 << f->man_bits) - 1), 0);
                assert_int_equal(f->narrow(x) & 0x8000, sign);
            } else {
                assert_true(isinf(x));
                assert_int_equal(f->narrow(x), h);
            }
            continue;
        }
        v = ref_value(f, h);
        /* exact widening, bit for bit (signed zero included) */
        assert_true((double)f->widen(h) == v);
        assert_int_equal(!!signbit(f->widen(h)), !!sign);
        assert_int_equal(f->narrow((float)v), h);
        /* the midpoint to the next code of larger magnitude */
        w = is_special(f, next) ? ldexp(sign ? -1.0 : 1.0,
                                        (1 << (f->exp_bits - 1)))
                                : ref_value(f, next);
        if ((next & 0x7fff) == 0) {
            continue; /* wrapped past -0 */
        }
        mid = (v + w) / 2; /* exact: one more bit than the format */
        fm = (float)mid;
        assert_true((double)fm == mid);
        /* tie: the even code wins (inf counts as the even neighbour of
         * the largest finite value, which is odd) */
        assert_int_equal(f->narrow(fm), (h & 1) ? next : h);
        if (is_special(f, next)) {
            assert_int_equal(f->narrow(fm), inf | sign);
        }
        /* one float ulp either side of the midpoint */
        assert_int_equal(f->narrow(nextafterf(fm, 0.0f)), h);
        assert_int_equal(f->narrow(nextafterf(fm, sign ? -INFINITY
                                                       : INFINITY)),
                         next);
    }
}

static void test_f16(void **state)
{
    (void)state;
    check_format(&F16);
    /* values far below the smallest denormal round to signed zero */
    assert_int_equal(bt_f32_to_f16(1e-30f), 0x0000);
    assert_int_equal(bt_f32_to_f16(-1e-30f), 0x8000);
    assert_int_equal(bt_f32_to_f16(ldexpf(1.0f, -25)), 0x0000); /* tie */
    assert_int_equal(bt_f32_to_f16(nextafterf(ldexpf(1.0f, -25), 1.0f)),
                     0x0001);
    assert_int_equal(bt_f32_to_f16(1e10f), 0x7c00);
    assert_int_equal(bt_f32_to_f16(-1e10f), 0xfc00);
    assert_int_equal(bt_f32_to_f16(65504.0f), 0x7bff);
}

static void test_bf16(void **state)
{
    (void)state;
    check_format(&BF16);
    assert_int_equal(bt_f32_to_bf16(1.0f), 0x3f80);
    /* f32 denormals keep their top bits */
    assert_int_equal(bt_f32_to_bf16(ldexpf(1.0f, -133)), 0x0001);
    assert_int_equal(bt_f32_to_bf16(3.4028235e38f), 0x7f80); /* rounds up */
}

/* Random f32 bit patterns: the result is a nearest code, ties to even. */
static void test_random_nearest(void **state)
{
    const fmt_t *fmts[2] = {&F16, &BF16};
    uint64_t x = 0x9e3779b97f4a7c15ull;
    int i, k;

    (void)state;
    for (k = 0; k < 2; k++) {
        const fmt_t *f = fmts[k];
        for (i = 0; i < 200000; i++) {
            uint32_t u;
            float in;
            uint16_t h;
            double d, e0, e1, e2;

            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            u = (uint32_t)x;
            memcpy(&in, &u, 4);
            if (isnan(in) || isinf(in)) {
                continue;
            }
            h = f->narrow(in);
            if (is_special(f, h)) {
                /* only beyond the largest finite value's half ulp */
                assert_true(fabs((double)in) >=
                            fabs(ref_value(f, (uint16_t)((h & 0x8000) |
                                                         ((h & 0x7fff) - 1)))));
                continue;
            }
            d = (double)in;
            e0 = fabs(d - ref_value(f, h));
            if ((h & 0x7fff) > 0) {
                e1 = fabs(d - ref_value(f, (uint16_t)(h - 1)));
                assert_true(e0 < e1 || (e0 == e1 && !(h & 1)));
            }
            if (!is_special(f, (uint16_t)(h + 1)) && (h & 0x7fff) != 0x7fff) {
                e2 = fabs(d - ref_value(f, (uint16_t)(h + 1)));
                assert_true(e0 < e2 || (e0 == e2 && !(h & 1)));
            }
            assert_int_equal(!!(h & 0x8000), !!(fbits(in) >> 31));
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_f16),
        cmocka_unit_test(test_bf16),
        cmocka_unit_test(test_random_nearest),
    };

    return cmocka_run_group_tests_name("kv_dtype", tests, NULL, NULL);
}
