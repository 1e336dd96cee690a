/* Attention kernels for the heads that share one K/V head (GQA): each K
 * and V row is loaded and widened once for up to BT_ATTN_HEADS query
 * heads. Every (head, position) keeps the per-head kernels' order, so the
 * bits are theirs: q.k in 8 lanes then the fixed tree, and the weighted
 * sum of V over positions in increasing order. x86-64 with AVX2 (and
 * 512-bit registers where bt_cpu_kernels() says AVX-512: q.k by the
 * matmul's tile, 8 keys at a time), head_dim a multiple of 8. */
#ifndef BT_ENGINE_CPU_ATTN_H
#define BT_ENGINE_CPU_ATTN_H

#include "engine/dtype.h"

#include <stddef.h>

#define BT_ATTN_HEADS 4

/* s[h * ls + i] = q_h . k_i for h < nh (q_h = q + h * hd), n keys `ld`
 * bytes apart. */
void bt_cpu_qk_heads(const float *q, int nh, int hd, const char *k,
                     size_t ld, bt_dtype_t kt, int n, float *s, size_t ls);

/* out_h[d] = fma(p[h * ls + i], v_i[d], out_h[d]) for i = 0..n-1 in order,
 * h < nh (out_h = out + h * hd). */
void bt_cpu_pv_heads(const float *p, size_t ls, int nh, const char *v,
                     size_t ld, bt_dtype_t vt, int n, float *out, int hd);

/* s[i] *= scale for i < n; returns the largest (NaN skipped; -inf for
 * none), for the softmax. */
float bt_cpu_scale_max(float *s, size_t n, float scale);

#endif
