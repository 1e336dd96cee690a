// Device twins of the CPU engine's arithmetic, for the CUDA backend's
// `exact` numerics (docs/internals/cuda.md): every function here performs
// the same IEEE operations in the same order as its CPU original, so the
// results are the same bits. Compiled with --fmad=false (no contraction of
// a*b+c the CPU code does not make) and IEEE division and square root.
//
//   bt_dev_lanes_tree8                cpu_exp.h bt_cpu_lanes_sum
// The dtype conversions, the exp and the MoE routing are not twins: both
// sides compile the one text of engine/dtype.h and engine/model/
// exact_ops.h.
#ifndef BT_ENGINE_CUDA_EXACT_CUH
#define BT_ENGINE_CUDA_EXACT_CUH

#include "engine/dtype.h"

#include <stdint.h>

// Element i of a row of dtype t (engine/dtype.h's numbers), as f32, and
// back: dtype.h's own functions, compiled for the device.
__device__ __forceinline__ float bt_dev_load(const void *p, int t, size_t i)
{
    return bt_dtype_load(p, (bt_dtype_t)t, i);
}

__device__ __forceinline__ void bt_dev_store(void *p, int t, size_t i, float v)
{
    bt_dtype_store(p, (bt_dtype_t)t, i, v);
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
