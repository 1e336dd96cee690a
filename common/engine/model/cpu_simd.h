/* AVX2 and AVX-512 helpers shared by the CPU backend's kernels
 * (backend_cpu.c, cpu_attn.c, cpu_tile512.c): 16-bit loads widened
 * exactly, and the backend's fixed lane tree (cpu_exp.h) for eight
 * accumulators at once. x86-64 only. */
#ifndef BT_ENGINE_CPU_SIMD_H
#define BT_ENGINE_CPU_SIMD_H

#if defined(__x86_64__)
#include "engine/dtype.h"

#include <immintrin.h>
#include <stdint.h>

#define BT_SIMD_TARGET __attribute__((target("avx2,fma,f16c")))
#define BT_SIMD_INLINE __attribute__((target("avx2,fma,f16c"), always_inline)) \
    static inline

/* The AVX-512 kernels' subsets (cpu_tile512.c, cpu_attn.c), taken only
 * where bt_cpu_has_avx512() says the CPU and the OS have them. */
#define BT_SIMD512_TARGET \
    __attribute__((target("avx512f,avx512dq,avx2,fma,f16c")))
#define BT_SIMD512_INLINE \
    __attribute__((target("avx512f,avx512dq,avx2,fma,f16c"), always_inline)) \
    static inline

BT_SIMD_INLINE __m256 load8(const void *w, bt_dtype_t wt, int i)
{
    if (wt == BT_DTYPE_BF16) {
        __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)w + i));
        return _mm256_castsi256_ps(
            _mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    }
    if (wt == BT_DTYPE_F16) {
        return _mm256_cvtph_ps(
            _mm_loadu_si128((const __m128i *)((const uint16_t *)w + i)));
    }
    return _mm256_loadu_ps((const float *)w + i);
}

/* Sixteen elements i.. widened exactly, as load8 does eight. */
BT_SIMD512_INLINE __m512 load16(const void *w, bt_dtype_t wt, int i)
{
    if (wt == BT_DTYPE_BF16) {
        const __m256i h =
            _mm256_loadu_si256((const __m256i *)((const uint16_t *)w + i));

        return _mm512_castsi512_ps(
            _mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    }
    if (wt == BT_DTYPE_F16) {
        return _mm512_cvtph_ps(
            _mm256_loadu_si256((const __m256i *)((const uint16_t *)w + i)));
    }
    return _mm512_loadu_ps((const float *)w + i);
}

/* lanes_sum of eight accumulators at once, the same additions in the same
 * grouping: per accumulator s = low half + high half (a0+a4 .. a3+a7),
 * then (s0+s2) + (s1+s3). A transpose brings each accumulator's partial
 * sums into one lane, so the result is the eight sums in order. For short
 * dot products (attention's head_dim) the scalar tree per column cost
 * more than the products. */
BT_SIMD_INLINE __m256 sum8_tree(const __m256 acc[8])
{
    __m256 p[4];

    for (int c = 0; c < 4; c++) { /* [s of acc c | s of acc c + 4] */
        p[c] = _mm256_add_ps(_mm256_permute2f128_ps(acc[c], acc[c + 4], 0x20),
                             _mm256_permute2f128_ps(acc[c], acc[c + 4], 0x31));
    }
    /* per 128-bit lane: [s0+s2 of p0, of p1, s1+s3 of p0, of p1] */
    const __m256 u01 = _mm256_add_ps(_mm256_unpacklo_ps(p[0], p[1]),
                                     _mm256_unpackhi_ps(p[0], p[1]));
    const __m256 u23 = _mm256_add_ps(_mm256_unpacklo_ps(p[2], p[3]),
                                     _mm256_unpackhi_ps(p[2], p[3]));

    return _mm256_add_ps(_mm256_shuffle_ps(u01, u23, 0x44),
                         _mm256_shuffle_ps(u01, u23, 0xee));
}

#endif

#endif
