// Device twins of the CPU engine's arithmetic, for the CUDA backend's
// `exact` numerics (docs/internals/cuda.md): every function here performs
// the same IEEE operations in the same order as its CPU original, so the
// results are the same bits. Compiled with --fmad=false (no contraction of
// a*b+c the CPU code does not make) and IEEE division and square root.
//
//   bt_dev_bf16 / bt_dev_f16 / to_*   engine/dtype.h, dtype.c
//   bt_dev_lanes_tree8                cpu_exp.h bt_cpu_lanes_sum
// The exp and the MoE routing are not twins: both sides compile the one
// text of engine/model/exact_ops.h.
#ifndef BT_ENGINE_CUDA_EXACT_CUH
#define BT_ENGINE_CUDA_EXACT_CUH

#include <stdint.h>

// Element types as engine/dtype.h numbers them.
#define BT_DEV_F32 0
#define BT_DEV_F16 1
#define BT_DEV_BF16 2

__device__ __forceinline__ float bt_dev_bits_f32(uint32_t u)
{
    return __uint_as_float(u);
}

__device__ __forceinline__ float bt_dev_f16_to_f32(uint16_t h)
{
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    const uint32_t e = (h >> 10) & 0x1fu;
    const uint32_t man = h & 0x3ffu;

    if (e == 0) {
        const float v = (float)man * 0x1p-24f;   // exact
        return sign ? -v : v;
    }
    if (e == 31) {
        return bt_dev_bits_f32(sign | 0x7f800000u | (man << 13));
    }
    return bt_dev_bits_f32(sign | ((e + 112u) << 23) | (man << 13));
}

__device__ __forceinline__ uint16_t bt_dev_f32_to_f16(float f)
{
    const uint32_t u = __float_as_uint(f);
    const uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    const uint32_t au = u & 0x7fffffffu;

    if (au > 0x7f800000u) {
        return (uint16_t)(sign | 0x7e00u);
    }
    if (au >= 0x477ff000u) {
        return (uint16_t)(sign | 0x7c00u);
    }
    if (au < 0x38800000u) {
        const float v = bt_dev_bits_f32(au) * 0x1p24f;   // exact scaling
        return (uint16_t)(sign | (uint16_t)rintf(v));    // ties to even
    }
    {
        const uint32_t e = (au >> 23) - 112u;
        const uint32_t m = au & 0x7fffffu;
        uint32_t r = (e << 10) | (m >> 13);
        const uint32_t rest = m & 0x1fffu;

        if (rest > 0x1000u || (rest == 0x1000u && (r & 1u))) {
            r++;
        }
        return (uint16_t)(sign | r);
    }
}

__device__ __forceinline__ uint16_t bt_dev_f32_to_bf16(float f)
{
    uint32_t u = __float_as_uint(f);

    if ((u & 0x7fffffffu) > 0x7f800000u) {
        return (uint16_t)((u >> 16) | 0x40);
    }
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

// Element i of a row of type t, as f32 (bt_dtype_load).
__device__ __forceinline__ float bt_dev_load(const void *p, int t, size_t i)
{
    if (t == BT_DEV_BF16) {
        return bt_dev_bits_f32((uint32_t)((const uint16_t *)p)[i] << 16);
    }
    if (t == BT_DEV_F16) {
        return bt_dev_f16_to_f32(((const uint16_t *)p)[i]);
    }
    return ((const float *)p)[i];
}

__device__ __forceinline__ void bt_dev_store(void *p, int t, size_t i, float v)
{
    if (t == BT_DEV_BF16) {
        ((uint16_t *)p)[i] = bt_dev_f32_to_bf16(v);
    } else if (t == BT_DEV_F16) {
        ((uint16_t *)p)[i] = bt_dev_f32_to_f16(v);
    } else {
        ((float *)p)[i] = v;
    }
}

// The fixed tree over the 8 lanes held by 8 consecutive threads (lane =
// threadIdx % 8, every thread of the warp calling): (a0+a4 + a2+a6) +
// (a1+a5 + a3+a7), the CPU's bt_cpu_lanes_sum. Lane 0 gets the sum.
__device__ __forceinline__ float bt_dev_lanes_tree8(float a)
{
    a = a + __shfl_down_sync(0xffffffffu, a, 4, 8);   // s_l = a_l + a_{l+4}
    a = a + __shfl_down_sync(0xffffffffu, a, 2, 8);   // s0+s2, s1+s3
    return a + __shfl_down_sync(0xffffffffu, a, 1, 8);
}

#endif
