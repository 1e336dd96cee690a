/* The CPU backend's prefill matmul tile for AVX-512 (x86-64 only): 6 rows
 * of x by 8 weight rows, each zmm register holding two output columns'
 * eight lanes. Every output accumulates exactly as the AVX2 and portable
 * kernels do (element i to lane i mod 8 by fused multiply-add, in
 * increasing i, then the fixed tree), so the bits are the same; only the
 * width differs: twice the products per instruction on cores with full
 * 512-bit units. */
#ifndef BT_ENGINE_CPU_TILE512_H
#define BT_ENGINE_CPU_TILE512_H

#include "engine/dtype.h"

#include <stdbool.h>
#include <stddef.h>

#define BT_TILE512_ROWS 6 /* most rows of x per tile */
#define BT_TILE512_COLS 8 /* weight rows (output columns) per tile */

/* Whether the CPU and the OS support the AVX-512 subsets the tile uses. */
bool bt_cpu_has_avx512(void);

/* out[r * ldo + c] = dot(x row r, w row c) (+ bias[c]) for r < nr
 * (1..BT_TILE512_ROWS) and c < BT_TILE512_COLS; rows of x are ldx floats
 * apart, weight rows ldw bytes apart. Call only where
 * bt_cpu_has_avx512(). */
void bt_cpu_tile512(const float *x, int ldx, int nr, const char *w,
                    size_t ldw, bt_dtype_t wt, int k, const float *bias,
                    float *out, int ldo);

#endif
