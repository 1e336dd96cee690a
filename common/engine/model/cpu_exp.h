/* The CPU backend's own exp, so that softmax and SiLU give the same bits
 * on every machine and in both kernel paths: libm's expf differs between
 * libm versions and between its FMA and non-FMA builds, which would let a
 * prefill node and a decode node with different libraries disagree.
 *
 * exp(x) = 2^k * p(r), k = round(x / ln 2), r = x - k ln 2 (two fused
 * steps), p the degree-8 Taylor polynomial by Horner with fused
 * multiply-adds, all in double; the float result is rounded once. Error
 * under 0.51 ulp; overflow gives +inf, underflow 0 (or a subnormal), NaN
 * stays NaN. The AVX2 path runs the same double operations four lanes at
 * a time. */
#ifndef BT_ENGINE_CPU_EXP_H
#define BT_ENGINE_CPU_EXP_H

#include "engine/dtype.h"

#include <math.h>
#include <stdbool.h>
#include <stddef.h>

/* Whether the CPU kernels take their AVX2/FMA path now (backend_cpu.c). */
bool bt_cpu_simd_on(void);

/* The backend's fixed tree over 8 lanes: (a0+a4 + a2+a6) + (a1+a5 + a3+a7). */
static inline float bt_cpu_lanes_sum(const float a[8])
{
    float s0 = a[0] + a[4], s1 = a[1] + a[5], s2 = a[2] + a[6],
          s3 = a[3] + a[7];

    return (s0 + s2) + (s1 + s3);
}

/* A dot product's tail and end, every kernel's: elements k8..k-1 of x.w
 * go to lanes 0.. by fused multiply-add, then the tree. */
static inline float bt_cpu_lanes_finish(float a[8], const float *x,
                                        const void *w, bt_dtype_t wt, int k8,
                                        int k)
{
    for (int i = k8; i < k; i++) {
        a[i - k8] = fmaf(x[i], bt_dtype_load(w, wt, (size_t)i), a[i - k8]);
    }
    return bt_cpu_lanes_sum(a);
}

float bt_cpu_expf(float x);

/* x[i] = exp(x[i]) */
void bt_cpu_expf_n(float *x, size_t n);

/* x[i] = exp(x[i] - sub); returns their sum, added in 8 lanes (element i
 * to lane i mod 8, in increasing i) and then the lanes' fixed tree, like
 * every dot product of the backend. */
float bt_cpu_exp_sum(float *x, size_t n, float sub);

#endif
