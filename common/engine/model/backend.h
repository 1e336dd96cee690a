/* Compute backends behind one vtable (UCX's `_ops_t` style). The forward
 * pass (forward.c) calls these for the heavy operations; the CPU backend
 * is always there, CUDA joins behind the same table.
 *
 * Contract shared by every backend: BATCH INVARIANCE. An output element's
 * value depends only on its own inputs, never on how many rows share the
 * call, how the work is split across threads or which sequences are in
 * the batch. Reductions run in one fixed order per output element. */
#ifndef BT_ENGINE_BACKEND_H
#define BT_ENGINE_BACKEND_H

#include "base/status.h"
#include "engine/dtype.h"
#include "model.h"

#include <stddef.h>
#include <stdint.h>

/* Where K/V live: one region laid out
 * [layer][block][k|v][block_size][n_kv_heads][head_dim] in `dtype`. */
typedef struct {
    void      *base;
    bt_dtype_t dtype;
    int        n_layers;
    int        n_blocks;
    int        block_size;
    int        n_kv_heads;
    int        head_dim;
    /* per block, raised when the pool hands it out (bt_kvpool_gens); NULL
     * when unknown. A device step keeps its copy of a block only while
     * this stays. */
    const uint32_t *gen;
} bt_kv_view_t;

/* Address of K (kv = 0) or V (kv = 1) of one token slot of one block. */
static inline void *bt_kv_view_at(const bt_kv_view_t *v, int layer,
                                  uint32_t block, int kv, int slot)
{
    size_t row = (size_t)v->n_kv_heads * (size_t)v->head_dim;
    size_t idx = ((((size_t)layer * (size_t)v->n_blocks + (size_t)block) * 2 +
                   (size_t)kv) * (size_t)v->block_size + (size_t)slot) * row;

    return (char *)v->base + idx * bt_dtype_size(v->dtype);
}

struct bt_kvpool;
/* Fills a view of a pool made by kv_pool.h (same layout). */
bt_status_t bt_kv_view_from_pool(const struct bt_kvpool *pool,
                                 bt_kv_view_t *view_p);

/* One attention call covers every token of a step. Token t attends to
 * positions max(0, pos[t] - window + 1) .. pos[t] of its sequence, whose
 * K/V (including token t's own) are already in the pool. */
typedef struct {
    int                 n_tokens;
    int                 n_heads;
    int                 n_kv_heads;
    int                 head_dim;
    int                 layer;
    int                 window;       /* 0: unlimited */
    float               scale;        /* 1 / sqrt(head_dim) */
    const float        *q;            /* [n_tokens][n_heads * head_dim] */
    float              *out;          /* [n_tokens][n_heads * head_dim] */
    const int32_t      *pos;          /* [n_tokens] */
    const uint32_t *const *tables;    /* [n_tokens] -> block table */
    const bt_kv_view_t *kv;
} bt_attn_args_t;

typedef struct bt_backend_ops {
    const char *name;
    bt_status_t (*create)(int n_threads, void **ctx_p);
    void (*destroy)(void *ctx);
    int (*threads)(void *ctx);
    /* y[n][w->rows] = x[n][w->cols] . w^T (+ bias[w->rows]) */
    void (*matmul)(void *ctx, const float *x, int n, const bt_mat_t *w,
                   const float *bias, float *y);
    /* y[n][d] = x / rms(x) * g, per row */
    void (*rmsnorm)(void *ctx, const float *x, const float *g, int n, int d,
                    float eps, float *y);
    /* g[i] = silu(g[i]) * u[i] = g[i] / (1 + exp(-g[i])) * u[i] */
    void (*swiglu)(void *ctx, float *g, const float *u, size_t n);
    /* Scratch for contexts up to `max_ctx` positions; call before
     * attention with the step's longest context. */
    bt_status_t (*reserve)(void *ctx, int max_ctx);
    void (*attention)(void *ctx, const bt_attn_args_t *a);
} bt_backend_ops_t;

extern const bt_backend_ops_t bt_backend_cpu;

/* CPU kernels, exposed for tests and the benchmark. Each path gives the
 * same bits; the backend takes the widest the CPU has (AVX-512 for the
 * prefill matmul, AVX2/FMA elsewhere), capped by BATON_CPU_KERNELS or by
 * bt_cpu_limit_kernels. */
typedef enum {
    BT_CPU_PORTABLE = 0,
    BT_CPU_AVX2 = 1,
    BT_CPU_AVX512 = 2,
} bt_cpu_kernels_t;

bool bt_cpu_has_avx2(void);
bt_cpu_kernels_t bt_cpu_kernels(void);
void bt_cpu_limit_kernels(bt_cpu_kernels_t most);
const char *bt_cpu_kernels_name(bt_cpu_kernels_t k);
/* portable kernels (true) or the best again (false) */
void bt_cpu_force_scalar(bool scalar);
/* One output element: sum_i x[i] * w[i] in the fixed order of every
 * kernel (8 lanes, i mod 8, then a fixed tree). */
float bt_cpu_dot(const float *x, const void *w, bt_dtype_t wt, int k);

#endif
