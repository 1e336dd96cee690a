/* Grouped-query attention kernels (cpu_attn.h). */
#include "cpu_attn.h"

#include "backend.h"
#include "cpu_simd.h"
#include "cpu_tile512.h"

#include <math.h>

#if defined(__x86_64__)

/* NH heads by NK keys per pass (NH * NK <= 8 accumulators, summed by one
 * sum8_tree); a key past n repeats the last one and is not stored. */
BT_SIMD_INLINE void qk_tile(const float *q, int hd, const char *k, size_t ld,
                            bt_dtype_t kt, int n, float *s, size_t ls,
                            const int NH, const int NK)
{
    for (int i = 0; i < n; i += NK) {
        const char *kr[8];
        __m256 acc[8];
        float o[8];

#pragma GCC unroll 8
        for (int c = 0; c < 8; c++) {
            acc[c] = _mm256_setzero_ps();
        }
#pragma GCC unroll 8
        for (int kk = 0; kk < NK; kk++) {
            kr[kk] = k + (size_t)(i + kk < n ? i + kk : n - 1) * ld;
        }
        for (int d = 0; d < hd; d += 8) {
            __m256 qv[4];

#pragma GCC unroll 4
            for (int hh = 0; hh < NH; hh++) {
                qv[hh] = _mm256_loadu_ps(q + (size_t)hh * hd + d);
            }
#pragma GCC unroll 8
            for (int kk = 0; kk < NK; kk++) {
                const __m256 kv = load8(kr[kk], kt, d);

#pragma GCC unroll 4
                for (int hh = 0; hh < NH; hh++) {
                    acc[hh * NK + kk] =
                        _mm256_fmadd_ps(qv[hh], kv, acc[hh * NK + kk]);
                }
            }
        }
        _mm256_storeu_ps(o, sum8_tree(acc));
        for (int hh = 0; hh < NH; hh++) {
            for (int kk = 0; kk < NK && i + kk < n; kk++) {
                s[(size_t)hh * ls + (size_t)(i + kk)] = o[hh * NK + kk];
            }
        }
    }
}

/* NH heads' outputs, DC chunks of 8 at d0, held in registers over the
 * positions. */
BT_SIMD_INLINE void pv_tile(const float *p, size_t ls, const char *v,
                            size_t ld, bt_dtype_t vt, int n, float *out,
                            int hd, int d0, const int NH, const int DC)
{
    __m256 acc[4][2];

#pragma GCC unroll 4
    for (int hh = 0; hh < NH; hh++) {
#pragma GCC unroll 2
        for (int c = 0; c < DC; c++) {
            acc[hh][c] = _mm256_loadu_ps(out + (size_t)hh * hd + d0 + 8 * c);
        }
    }
    for (int i = 0; i < n; i++) {
        const char *vi = v + (size_t)i * ld;
        __m256 vv[2];

#pragma GCC unroll 2
        for (int c = 0; c < DC; c++) {
            vv[c] = load8(vi, vt, d0 + 8 * c);
        }
#pragma GCC unroll 4
        for (int hh = 0; hh < NH; hh++) {
            const __m256 pb = _mm256_broadcast_ss(p + (size_t)hh * ls + i);

#pragma GCC unroll 2
            for (int c = 0; c < DC; c++) {
                acc[hh][c] = _mm256_fmadd_ps(pb, vv[c], acc[hh][c]);
            }
        }
    }
#pragma GCC unroll 4
    for (int hh = 0; hh < NH; hh++) {
#pragma GCC unroll 2
        for (int c = 0; c < DC; c++) {
            _mm256_storeu_ps(out + (size_t)hh * hd + d0 + 8 * c, acc[hh][c]);
        }
    }
}

#define HEADS_FN(NH, NK)                                                      \
    BT_SIMD_TARGET static void qk_##NH(const float *q, int hd, const char *k, \
                                       size_t ld, bt_dtype_t kt, int n,       \
                                       float *s, size_t ls)                   \
    {                                                                         \
        qk_tile(q, hd, k, ld, kt, n, s, ls, NH, NK);                          \
    }                                                                         \
    BT_SIMD_TARGET static void pv_##NH(const float *p, size_t ls,             \
                                       const char *v, size_t ld,              \
                                       bt_dtype_t vt, int n, float *out,      \
                                       int hd)                                \
    {                                                                         \
        int d0 = 0;                                                           \
                                                                              \
        for (; d0 + 16 <= hd; d0 += 16) {                                     \
            pv_tile(p, ls, v, ld, vt, n, out, hd, d0, NH, 2);                 \
        }                                                                     \
        if (d0 < hd) {                                                        \
            pv_tile(p, ls, v, ld, vt, n, out, hd, d0, NH, 1);                 \
        }                                                                     \
    }

HEADS_FN(1, 8)
HEADS_FN(2, 4)
HEADS_FN(3, 2)
HEADS_FN(4, 2)

/* pv_tile in 512-bit registers: NH heads by DC chunks of 16 dims. */
BT_SIMD512_INLINE void pv_tile512(const float *p, size_t ls, const char *v,
                                  size_t ld, bt_dtype_t vt, int n, float *out,
                                  int hd, int d0, const int NH, const int DC)
{
    __m512 acc[4][4];

#pragma GCC unroll 4
    for (int hh = 0; hh < NH; hh++) {
#pragma GCC unroll 4
        for (int c = 0; c < DC; c++) {
            acc[hh][c] = _mm512_loadu_ps(out + (size_t)hh * hd + d0 + 16 * c);
        }
    }
    for (int i = 0; i < n; i++) {
        const char *vi = v + (size_t)i * ld;
        __m512 vv[4];

#pragma GCC unroll 4
        for (int c = 0; c < DC; c++) {
            vv[c] = load16(vi, vt, d0 + 16 * c);
        }
#pragma GCC unroll 4
        for (int hh = 0; hh < NH; hh++) {
            const __m512 pb = _mm512_set1_ps(p[(size_t)hh * ls + i]);

#pragma GCC unroll 4
            for (int c = 0; c < DC; c++) {
                acc[hh][c] = _mm512_fmadd_ps(pb, vv[c], acc[hh][c]);
            }
        }
    }
#pragma GCC unroll 4
    for (int hh = 0; hh < NH; hh++) {
#pragma GCC unroll 4
        for (int c = 0; c < DC; c++) {
            _mm512_storeu_ps(out + (size_t)hh * hd + d0 + 16 * c, acc[hh][c]);
        }
    }
}

/* 64 dims at a time, then 16, then the AVX2 tile for a last 8 */
#define PV512_FN(NH)                                                          \
    BT_SIMD512_TARGET static void pv512_##NH(const float *p, size_t ls,       \
                                             const char *v, size_t ld,        \
                                             bt_dtype_t vt, int n, float *out,\
                                             int hd)                          \
    {                                                                         \
        int d0 = 0;                                                           \
                                                                              \
        for (; d0 + 64 <= hd; d0 += 64) {                                     \
            pv_tile512(p, ls, v, ld, vt, n, out, hd, d0, NH, 4);              \
        }                                                                     \
        for (; d0 + 16 <= hd; d0 += 16) {                                     \
            pv_tile512(p, ls, v, ld, vt, n, out, hd, d0, NH, 1);              \
        }                                                                     \
        if (d0 < hd) {                                                        \
            pv_tile(p, ls, v, ld, vt, n, out, hd, d0, NH, 1);                 \
        }                                                                     \
    }

PV512_FN(1)
PV512_FN(2)
PV512_FN(3)
PV512_FN(4)

BT_SIMD_TARGET float bt_cpu_scale_max(float *s, size_t n, float scale)
{
    const __m256 sv = _mm256_set1_ps(scale);
    __m256 mv = _mm256_set1_ps(-INFINITY);
    float m[8], mx;
    size_t i = 0;

    /* max_ps keeps its second operand when the first is NaN, as the
     * scalar `s > mx ? s : mx` does; which zero wins does not matter to
     * exp(s - mx) */
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_mul_ps(_mm256_loadu_ps(s + i), sv);

        _mm256_storeu_ps(s + i, v);
        mv = _mm256_max_ps(v, mv);
    }
    _mm256_storeu_ps(m, mv);
    mx = m[0];
    for (int l = 1; l < 8; l++) {
        mx = m[l] > mx ? m[l] : mx;
    }
    for (; i < n; i++) {
        s[i] *= scale;
        mx = s[i] > mx ? s[i] : mx;
    }
    return mx;
}

void bt_cpu_qk_heads(const float *q, int nh, int hd, const char *k,
                     size_t ld, bt_dtype_t kt, int n, float *s, size_t ls)
{
    if (bt_cpu_kernels() == BT_CPU_AVX512) {
        /* the heads are the tile's rows of x, 8 keys its weight rows */
        const int n8 = n / BT_TILE512_COLS * BT_TILE512_COLS;

        for (int i = 0; i < n8; i += BT_TILE512_COLS) {
            bt_cpu_tile512(q, hd, nh, k + (size_t)i * ld, ld, kt, hd, NULL,
                           s + i, (int)ls);
        }
        k += (size_t)n8 * ld;
        s += n8;
        n -= n8;
        if (n == 0) {
            return;
        }
    }
    switch (nh) {
    case 1: qk_1(q, hd, k, ld, kt, n, s, ls); break;
    case 2: qk_2(q, hd, k, ld, kt, n, s, ls); break;
    case 3: qk_3(q, hd, k, ld, kt, n, s, ls); break;
    default: qk_4(q, hd, k, ld, kt, n, s, ls); break;
    }
}

void bt_cpu_pv_heads(const float *p, size_t ls, int nh, const char *v,
                     size_t ld, bt_dtype_t vt, int n, float *out, int hd)
{
    if (bt_cpu_kernels() == BT_CPU_AVX512) {
        switch (nh) {
        case 1: pv512_1(p, ls, v, ld, vt, n, out, hd); break;
        case 2: pv512_2(p, ls, v, ld, vt, n, out, hd); break;
        case 3: pv512_3(p, ls, v, ld, vt, n, out, hd); break;
        default: pv512_4(p, ls, v, ld, vt, n, out, hd); break;
        }
        return;
    }
    switch (nh) {
    case 1: pv_1(p, ls, v, ld, vt, n, out, hd); break;
    case 2: pv_2(p, ls, v, ld, vt, n, out, hd); break;
    case 3: pv_3(p, ls, v, ld, vt, n, out, hd); break;
    default: pv_4(p, ls, v, ld, vt, n, out, hd); break;
    }
}

#else
typedef int bt_cpu_attn_unused_t; /* an empty file is not ISO C */
#endif
