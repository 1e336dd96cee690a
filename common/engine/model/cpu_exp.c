/* The CPU backend's exp (cpu_exp.h): a portable twin and AVX2 and
 * AVX-512 paths that perform the same double operations (4 and 8 lanes
 * at a time), so all give the same bits. */
#include "backend.h"
#include "cpu_exp.h"
#include "exact_ops.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif
#include <math.h>
#include <stdint.h>

/* the scalar exp is exact_ops.h's, shared with the CUDA kernels; the
 * AVX2 path below runs the same operations on its constants */
float bt_cpu_expf(float x)
{
    return bt_exact_expf(x);
}

static float exp_sum_scalar(float *x, size_t from, size_t n, float sub,
                            float a[8])
{
    for (size_t i = from; i < n; i++) {
        x[i] = bt_cpu_expf(x[i] - sub);
        a[i % 8] += x[i];
    }
    return bt_cpu_lanes_sum(a);
}

#if defined(__x86_64__)
#define EXP_TARGET __attribute__((target("avx2,fma")))

EXP_TARGET static inline __m256d exp4(__m256d xd)
{
    const __m256d sign = _mm256_set1_pd(-0.0);
    __m256d kd, nk, r, p, two_k;

    xd = _mm256_min_pd(_mm256_max_pd(xd, _mm256_set1_pd(BT_EXP_LO)),
                       _mm256_set1_pd(BT_EXP_HI));
    kd = _mm256_round_pd(_mm256_mul_pd(xd, _mm256_set1_pd(BT_EXP_INV_LN2)),
                         _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    nk = _mm256_xor_pd(kd, sign);
    r = _mm256_fmadd_pd(nk, _mm256_set1_pd(BT_EXP_LN2_HI), xd);
    r = _mm256_fmadd_pd(nk, _mm256_set1_pd(BT_EXP_LN2_LO), r);
    p = _mm256_fmadd_pd(_mm256_set1_pd(BT_EXP_C8), r, _mm256_set1_pd(BT_EXP_C7));
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(BT_EXP_C6));
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(BT_EXP_C5));
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(BT_EXP_C4));
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(BT_EXP_C3));
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(BT_EXP_C2));
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(BT_EXP_C1));
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(BT_EXP_C0));
    /* 2^kd: kd + 1023 lands in the low mantissa bits of 2^52 + kd + 1023,
     * and a shift by 52 moves it into the exponent */
    two_k = _mm256_castsi256_pd(_mm256_slli_epi64(
        _mm256_castpd_si256(_mm256_add_pd(kd, _mm256_set1_pd(0x1p52 + 1023))),
        52));
    return _mm256_mul_pd(p, two_k);
}

EXP_TARGET static inline __m256 exp8(__m256 x)
{
    const __m128 lo = _mm256_cvtpd_ps(exp4(_mm256_cvtps_pd(
                          _mm256_castps256_ps128(x))));
    const __m128 hi = _mm256_cvtpd_ps(exp4(_mm256_cvtps_pd(
                          _mm256_extractf128_ps(x, 1))));
    const __m256 y = _mm256_insertf128_ps(_mm256_castps128_ps256(lo), hi, 1);

    return _mm256_blendv_ps(y, _mm256_add_ps(x, x),
                            _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
}

#define EXP512_TARGET __attribute__((target("avx512f,avx512dq,avx2,fma")))

/* exp4's operations on 8 doubles */
EXP512_TARGET static inline __m512d exp8d(__m512d xd)
{
    const __m512d sign = _mm512_set1_pd(-0.0);
    __m512d kd, nk, r, p, two_k;

    xd = _mm512_min_pd(_mm512_max_pd(xd, _mm512_set1_pd(BT_EXP_LO)),
                       _mm512_set1_pd(BT_EXP_HI));
    kd = _mm512_roundscale_pd(
        _mm512_mul_pd(xd, _mm512_set1_pd(BT_EXP_INV_LN2)),
        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    nk = _mm512_xor_pd(kd, sign);
    r = _mm512_fmadd_pd(nk, _mm512_set1_pd(BT_EXP_LN2_HI), xd);
    r = _mm512_fmadd_pd(nk, _mm512_set1_pd(BT_EXP_LN2_LO), r);
    p = _mm512_fmadd_pd(_mm512_set1_pd(BT_EXP_C8), r, _mm512_set1_pd(BT_EXP_C7));
    p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(BT_EXP_C6));
    p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(BT_EXP_C5));
    p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(BT_EXP_C4));
    p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(BT_EXP_C3));
    p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(BT_EXP_C2));
    p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(BT_EXP_C1));
    p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(BT_EXP_C0));
    two_k = _mm512_castsi512_pd(_mm512_slli_epi64(
        _mm512_castpd_si512(_mm512_add_pd(kd, _mm512_set1_pd(0x1p52 + 1023))),
        52));
    return _mm512_mul_pd(p, two_k);
}

EXP512_TARGET static inline __m256 exp8_512(__m256 x)
{
    const __m256 y = _mm512_cvtpd_ps(exp8d(_mm512_cvtps_pd(x)));

    return _mm256_blendv_ps(y, _mm256_add_ps(x, x),
                            _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
}

/* The loops over 8 floats at a time, one pair per exp8 kernel: x[i] =
 * exp(x[i]), and x[i] = exp(x[i] - sub) with their sum in 8 lanes. */
#define EXP_LOOPS(TARGET, SUF, EXP8)                                          \
    TARGET static void expf_n_##SUF(float *x, size_t n)                       \
    {                                                                         \
        size_t i = 0;                                                         \
                                                                              \
        for (; i + 8 <= n; i += 8) {                                          \
            _mm256_storeu_ps(x + i, EXP8(_mm256_loadu_ps(x + i)));            \
        }                                                                     \
        for (; i < n; i++) {                                                  \
            x[i] = bt_cpu_expf(x[i]);                                         \
        }                                                                     \
    }                                                                         \
    TARGET static float exp_sum_##SUF(float *x, size_t n, float sub)          \
    {                                                                         \
        const __m256 s = _mm256_set1_ps(sub);                                 \
        __m256 acc = _mm256_setzero_ps();                                     \
        float a[8];                                                           \
        size_t i = 0;                                                         \
                                                                              \
        for (; i + 8 <= n; i += 8) {                                          \
            const __m256 e = EXP8(_mm256_sub_ps(_mm256_loadu_ps(x + i), s));  \
                                                                              \
            _mm256_storeu_ps(x + i, e);                                       \
            acc = _mm256_add_ps(acc, e);                                      \
        }                                                                     \
        _mm256_storeu_ps(a, acc);                                             \
        return exp_sum_scalar(x, i, n, sub, a);                               \
    }

EXP_LOOPS(EXP_TARGET, avx2, exp8)
EXP_LOOPS(EXP512_TARGET, avx512, exp8_512)
#endif

void bt_cpu_expf_n(float *x, size_t n)
{
#if defined(__x86_64__)
    if (bt_cpu_kernels() == BT_CPU_AVX512) {
        expf_n_avx512(x, n);
        return;
    }
    if (bt_cpu_simd_on()) {
        expf_n_avx2(x, n);
        return;
    }
#endif
    for (size_t i = 0; i < n; i++) {
        x[i] = bt_cpu_expf(x[i]);
    }
}

float bt_cpu_exp_sum(float *x, size_t n, float sub)
{
    float a[8] = {0};

#if defined(__x86_64__)
    if (bt_cpu_kernels() == BT_CPU_AVX512) {
        return exp_sum_avx512(x, n, sub);
    }
    if (bt_cpu_simd_on()) {
        return exp_sum_avx2(x, n, sub);
    }
#endif
    return exp_sum_scalar(x, 0, n, sub, a);
}
