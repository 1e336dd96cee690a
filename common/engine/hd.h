/* BT_HD marks an inline function that compiles both for the host and, in
 * a CUDA translation unit, for the device: the engine's exact arithmetic
 * has one text for both (dtype.h, model/exact_ops.h). */
#ifndef BT_ENGINE_HD_H
#define BT_ENGINE_HD_H

#ifdef __CUDACC__
#define BT_HD __host__ __device__
#else
#define BT_HD
#endif

#endif
