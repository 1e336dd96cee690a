/* The CUDA backend's `exact` kernels, callable from C (docs/internals/
 * cuda.md). Each one gives the same bits as the CPU backend's operation it
 * names, for any batch: the reductions run in the CPU's fixed order (an
 * element i of a dot product goes to lane i mod 8, lanes added in the
 * fixed tree), the exp is the CPU's own, nothing is contracted into an FMA
 * the CPU does not make. All pointers are device pointers; every launch
 * goes on `stream` (a cudaStream_t; NULL: the default stream) and returns
 * at once. Element types are engine/dtype.h's numbers (f32 0, f16 1,
 * bf16 2). */
#ifndef BT_ENGINE_CUDA_KERNELS_H
#define BT_ENGINE_CUDA_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* y[n][rows] = x[n][cols] . w^T (+ bias): bt_backend_cpu.matmul. */
int bt_cuda_matmul(const float *x, int n, const void *w, int wt, int rows,
                   int cols, const float *bias, float *y, void *stream);

/* The `fast` numerics' matmul: the same product on the tensor cores, x
 * and w rounded to bf16, f32 accumulation, one fixed tile shape for every
 * n: a row's result never depends on the other rows (batch-invariant),
 * within bf16 rounding of the exact one. */
int bt_cuda_matmul_fast(const float *x, int n, const void *w, int wt, int rows,
                        int cols, const float *bias, float *y, void *stream);

/* y[n][d] = g * (x * (1 / sqrt(dot(x, x) / d + eps))): .rmsnorm (y may
 * be x). */
int bt_cuda_rmsnorm(const float *x, const float *g, int n, int d, float eps,
                    float *y, void *stream);

/* g[i] = g[i] / (1 + exp(-g[i])) * u[i]: .swiglu. */
int bt_cuda_swiglu(float *g, const float *u, size_t n, void *stream);

/* x[i] += y[i] (the residual add). */
int bt_cuda_add(float *x, const float *y, size_t n, void *stream);

/* The paged KV pool on the device, laid out as bt_kv_view_t:
 * [layer][block][k|v][block_size][n_kv_heads][head_dim]. */
typedef struct {
    void *base;
    int   dtype;
    int   n_layers, n_blocks, block_size, n_kv_heads, head_dim;
} bt_cuda_kv_t;

/* Paged attention of T tokens, .attention's numbers: token t attends to
 * positions max(0, pos[t] - window + 1) .. pos[t] of its sequence, whose
 * block table starts at tables + table_off[t]. scratch holds
 * T * n_heads * max_ctx floats (max_ctx >= pos[t] + 1 for every t). */
int bt_cuda_attention(const float *q, float *out, int T, int n_heads,
                      int n_kv_heads, int head_dim, int layer, int window,
                      float scale, const int32_t *pos, const uint32_t *tables,
                      const uint32_t *table_off, const bt_cuda_kv_t *kv,
                      float *scratch, int max_ctx, void *stream);

/* RoPE (rotate_half pairs i, i + half) of x[T][n_heads][head_dim] with
 * cos | sin rows of the host's table: cs + pos[t] * head_dim holds the
 * cos of position pos[t] in its first half and the sin in the second. */
int bt_cuda_rope(float *x, int T, int n_heads, int head_dim,
                 const int32_t *pos, const float *cs, void *stream);

/* K and V rows of T tokens (f32, [T][n_kv_heads * head_dim]) into their
 * slots of layer `layer`, converted to the pool's dtype. */
int bt_cuda_kv_store(const float *k, const float *v, int T, int layer,
                     const int32_t *pos, const uint32_t *tables,
                     const uint32_t *table_off, const bt_cuda_kv_t *kv,
                     void *stream);

/* x[t][hidden] = embed[tokens[t]] as f32. */
int bt_cuda_embed(const void *embed, int et, int hidden, const int32_t *tokens,
                  int T, float *x, void *stream);

/* MoE routing per token: softmax of logits[t][E] (own exp, sequential
 * sum), the top k (ties to the lower expert), weights renormalized when
 * norm_topk: the CPU forward's moe_route. */
int bt_cuda_moe_route(const float *logits, int T, int E, int k, int norm_topk,
                      int *sel, float *selw, void *stream);

/* y[t][H] = sum over slots j in order of selw[t][j] * slot_out[t][j][H]
 * (a product, then an add: never fused), plus, with sgate non-NULL,
 * (1 / (1 + exp(-sgate[t]))) * shared[t][H]. */
int bt_cuda_moe_combine(const float *slot_out, const float *selw, int T, int k,
                        int H, const float *sgate, const float *shared,
                        float *y, void *stream);

/* dst[i][H] = src[idx[i] / div][H] for i < n (rows gathered: a token's
 * row for each of its expert slots with div = k, or plain with div = 1). */
int bt_cuda_gather_rows(const float *src, const int *idx, int div, int n,
                        int H, float *dst, void *stream);
/* dst[idx[i]][H] = src[i][H] for i < n. */
int bt_cuda_scatter_rows(const float *src, const int *idx, int n, int H,
                         float *dst, void *stream);
/* The K and V rows the step wrote into layer `layer`, packed as
 * out[T][k|v][n_kv_heads * head_dim] in the pool's dtype (the bytes the
 * host pool gets back). */
int bt_cuda_kv_gather(int T, int layer, const int32_t *pos,
                      const uint32_t *tables, const uint32_t *table_off,
                      const bt_cuda_kv_t *kv, void *out, void *stream);

/* p[n] of dtype t = random values in [-scale, scale) from `seed` (a
 * synthetic model's weights made on the GPU: never zeros). */
int bt_cuda_fill_random(void *p, size_t n, int t, uint32_t seed, float scale,
                        void *stream);
/* p[n] = v (f32). */
int bt_cuda_fill(float *p, size_t n, float v, void *stream);

/* out[i] = ((parts[0][i] + parts[1][i]) + parts[2][i]) + ... for i < m:
 * the rank-order sum of an ordered all-reduce (nccl_comm.h). */
int bt_cuda_sum_ranks(const float *parts, int nranks, size_t m, float *out,
                      void *stream);

#ifdef __cplusplus
}
#endif

#endif
