// The CUDA backend's `exact` kernels (cuda_kernels.h). Parallelism never
// splits a reduction differently from the CPU: a dot product is 8 threads,
// thread l holding the CPU's lane l (elements i = l mod 8, increasing i,
// one fmaf each), the lanes added in the CPU's tree by shuffles; a softmax
// sum is the same 8 lanes; a weighted sum over positions is one thread per
// output element walking the positions in order. Threads split outputs
// (columns, rows, heads), so the grid never changes a result.
#include "cuda_exact.cuh"
#include "cuda_kernels.h"
#include "engine/model/exact_ops.h"

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <mma.h>

#define BT_MM_COLS 32     // output columns per block (x 8 lanes = 256 threads)
#define BT_MM_ROWS 4      // rows of x per block: each weight load serves them
#define BT_ATT_THREADS 128
#define BT_MOE_MAX_E 256  // BT_MODEL_MAX_EXPERTS

static int bt_cuda_status(void)
{
    return (int)cudaGetLastError();
}

static unsigned bt_blocks(size_t n, unsigned per)
{
    return (unsigned)((n + per - 1) / per);
}

// ---- matmul ------------------------------------------------------------

__global__ void bt_k_matmul(const float *x, int n, const void *w, int wt,
                            int rows, int cols, const float *bias, float *y)
{
    const int lane = threadIdx.x & 7;
    const int c = blockIdx.x * BT_MM_COLS + (threadIdx.x >> 3);
    const int r0 = blockIdx.y * BT_MM_ROWS;
    const bool col_ok = c < rows;
    const size_t wrow = (size_t)(col_ok ? c : 0) * (size_t)cols;
    float acc[BT_MM_ROWS];

#pragma unroll
    for (int r = 0; r < BT_MM_ROWS; r++) {
        acc[r] = 0.0f;
    }
    if (col_ok) {
        for (int i = lane; i < cols; i += 8) {
            const float wv = bt_dev_load(w, wt, wrow + (size_t)i);

#pragma unroll
            for (int r = 0; r < BT_MM_ROWS; r++) {
                if (r0 + r < n) {
                    acc[r] = fmaf(x[(size_t)(r0 + r) * cols + i], wv, acc[r]);
                }
            }
        }
    }
#pragma unroll
    for (int r = 0; r < BT_MM_ROWS; r++) {
        const float v = bt_dev_lanes_tree8(acc[r]);   // every thread calls

        if (lane == 0 && col_ok && r0 + r < n) {
            y[(size_t)(r0 + r) * rows + c] = bias != NULL ? v + bias[c] : v;
        }
    }
}

extern "C" int bt_cuda_matmul(const float *x, int n, const void *w, int wt,
                              int rows, int cols, const float *bias, float *y,
                              void *stream)
{
    dim3 grid(bt_blocks((size_t)rows, BT_MM_COLS),
              bt_blocks((size_t)n, BT_MM_ROWS));

    if (n <= 0 || rows <= 0) {
        return 0;
    }
    bt_k_matmul<<<grid, BT_MM_COLS * 8, 0, (cudaStream_t)stream>>>(
        x, n, w, wt, rows, cols, bias, y);
    return bt_cuda_status();
}

// ---- matmul on the tensor cores (`fast`) --------------------------------

#define BT_TC_ROWS 16     // rows of x per block (one wmma tile high)
#define BT_TC_COLS 64     // output columns per block: 4 warps x 16
#define BT_TC_K 64        // k per shared-memory stage

// One block: 16 rows of x by 64 output columns, 4 warps each owning 16
// columns. Every k stage is rounded to bf16 in shared memory (zeros past
// n, rows and cols), and each warp's accumulator sums the stages in order:
// the same instructions for a row whatever else shares its tile.
__global__ void bt_k_matmul_fast(const float *x, int n, const void *w, int wt,
                                 int rows, int cols, const float *bias, float *y)
{
    using namespace nvcuda;
    // wmma loads and stores want 32-byte aligned tiles
    __shared__ __align__(32) __nv_bfloat16 sa[BT_TC_ROWS * BT_TC_K];
    __shared__ __align__(32) __nv_bfloat16 sb[BT_TC_COLS * BT_TC_K];
    __shared__ __align__(32) float sc[BT_TC_ROWS * BT_TC_COLS];
    const int warp = threadIdx.x / 32;
    const int r0 = blockIdx.y * BT_TC_ROWS, c0 = blockIdx.x * BT_TC_COLS;
    wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> fa;
    wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> fb;
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;

    wmma::fill_fragment(acc, 0.0f);
    for (int k0 = 0; k0 < cols; k0 += BT_TC_K) {
        for (int i = threadIdx.x; i < BT_TC_ROWS * BT_TC_K; i += blockDim.x) {
            const int r = i / BT_TC_K, k = k0 + i % BT_TC_K;

            sa[i] = __float2bfloat16_rn(r0 + r < n && k < cols
                                        ? x[(size_t)(r0 + r) * cols + k] : 0.0f);
        }
        for (int i = threadIdx.x; i < BT_TC_COLS * BT_TC_K; i += blockDim.x) {
            const int c = i / BT_TC_K, k = k0 + i % BT_TC_K;

            sb[i] = __float2bfloat16_rn(c0 + c < rows && k < cols
                ? bt_dev_load(w, wt, (size_t)(c0 + c) * cols + k) : 0.0f);
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < BT_TC_K; kk += 16) {
            wmma::load_matrix_sync(fa, sa + kk, BT_TC_K);
            // column j of B (k x 16) is weight row c0 + 16 warp + j
            wmma::load_matrix_sync(fb, sb + (size_t)warp * 16 * BT_TC_K + kk, BT_TC_K);
            wmma::mma_sync(acc, fa, fb, acc);
        }
        __syncthreads();
    }
    wmma::store_matrix_sync(sc + warp * 16, acc, BT_TC_COLS, wmma::mem_row_major);
    __syncthreads();
    for (int i = threadIdx.x; i < BT_TC_ROWS * BT_TC_COLS; i += blockDim.x) {
        const int r = i / BT_TC_COLS, c = i % BT_TC_COLS;

        if (r0 + r < n && c0 + c < rows) {
            const float v = sc[i];

            y[(size_t)(r0 + r) * rows + c0 + c] = bias != NULL ? v + bias[c0 + c] : v;
        }
    }
}

extern "C" int bt_cuda_matmul_fast(const float *x, int n, const void *w, int wt,
                                   int rows, int cols, const float *bias, float *y,
                                   void *stream)
{
    dim3 grid(bt_blocks((size_t)rows, BT_TC_COLS), bt_blocks((size_t)n, BT_TC_ROWS));

    if (n <= 0 || rows <= 0) {
        return 0;
    }
    bt_k_matmul_fast<<<grid, 128, 0, (cudaStream_t)stream>>>(x, n, w, wt, rows, cols,
                                                             bias, y);
    return bt_cuda_status();
}

// ---- rmsnorm -----------------------------------------------------------

__global__ void bt_k_rmsnorm(const float *x, const float *g, int d, float eps,
                             float *y)
{
    __shared__ float inv_s;
    const float *xr = x + (size_t)blockIdx.x * d;
    float *yr = y + (size_t)blockIdx.x * d;

    if (threadIdx.x < 32) {
        float a = 0.0f;

        if (threadIdx.x < 8) {
            for (int i = threadIdx.x; i < d; i += 8) {
                a = fmaf(xr[i], xr[i], a);
            }
        }
        a = bt_dev_lanes_tree8(a);
        if (threadIdx.x == 0) {
            inv_s = 1.0f / sqrtf(a / (float)d + eps);
        }
    }
    __syncthreads();
    for (int i = threadIdx.x; i < d; i += blockDim.x) {
        yr[i] = g[i] * (xr[i] * inv_s);
    }
}

extern "C" int bt_cuda_rmsnorm(const float *x, const float *g, int n, int d,
                               float eps, float *y, void *stream)
{
    if (n <= 0) {
        return 0;
    }
    bt_k_rmsnorm<<<n, 256, 0, (cudaStream_t)stream>>>(x, g, d, eps, y);
    return bt_cuda_status();
}

// ---- elementwise -------------------------------------------------------

__global__ void bt_k_swiglu(float *g, const float *u, size_t n)
{
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;

    if (i < n) {
        const float e = bt_exact_expf(-g[i]);

        g[i] = g[i] / (1.0f + e) * u[i];
    }
}

extern "C" int bt_cuda_swiglu(float *g, const float *u, size_t n, void *stream)
{
    if (n == 0) {
        return 0;
    }
    bt_k_swiglu<<<bt_blocks(n, 256), 256, 0, (cudaStream_t)stream>>>(g, u, n);
    return bt_cuda_status();
}

__global__ void bt_k_add(float *x, const float *y, size_t n)
{
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;

    if (i < n) {
        x[i] += y[i];
    }
}

extern "C" int bt_cuda_add(float *x, const float *y, size_t n, void *stream)
{
    if (n == 0) {
        return 0;
    }
    bt_k_add<<<bt_blocks(n, 256), 256, 0, (cudaStream_t)stream>>>(x, y, n);
    return bt_cuda_status();
}

__global__ void bt_k_embed(const void *embed, int et, int hidden,
                           const int32_t *tokens, float *x)
{
    const int t = blockIdx.x;
    const size_t row = (size_t)tokens[t] * (size_t)hidden;

    for (int i = threadIdx.x; i < hidden; i += blockDim.x) {
        x[(size_t)t * hidden + i] = bt_dev_load(embed, et, row + (size_t)i);
    }
}

extern "C" int bt_cuda_embed(const void *embed, int et, int hidden,
                             const int32_t *tokens, int T, float *x,
                             void *stream)
{
    if (T <= 0) {
        return 0;
    }
    bt_k_embed<<<T, 256, 0, (cudaStream_t)stream>>>(embed, et, hidden, tokens, x);
    return bt_cuda_status();
}

// ---- RoPE and the KV pool ---------------------------------------------

__global__ void bt_k_rope(float *x, int n_heads, int hd, const int32_t *pos,
                          const float *cs)
{
    const int t = blockIdx.x, half = hd / 2;
    const float *c = cs + (size_t)pos[t] * hd;

    for (int j = threadIdx.x; j < n_heads * half; j += blockDim.x) {
        const int h = j / half, i = j % half;
        float *v = x + ((size_t)t * n_heads + h) * hd;
        const float a = v[i], b = v[half + i];

        // the CPU's a * c + (-b) * s: two products, then an add
        v[i] = a * c[i] + (-b) * c[half + i];
        v[half + i] = b * c[i] + a * c[half + i];
    }
}

extern "C" int bt_cuda_rope(float *x, int T, int n_heads, int head_dim,
                            const int32_t *pos, const float *cs, void *stream)
{
    if (T <= 0) {
        return 0;
    }
    bt_k_rope<<<T, 128, 0, (cudaStream_t)stream>>>(x, n_heads, head_dim, pos, cs);
    return bt_cuda_status();
}

__device__ __forceinline__ size_t bt_dev_kv_index(const bt_cuda_kv_t kv, int layer,
                                                  uint32_t block, int which,
                                                  int slot)
{
    const size_t row = (size_t)kv.n_kv_heads * (size_t)kv.head_dim;

    return ((((size_t)layer * (size_t)kv.n_blocks + block) * 2 + (size_t)which) *
            (size_t)kv.block_size + (size_t)slot) * row;
}

__global__ void bt_k_kv_store(const float *k, const float *v, int layer,
                              const int32_t *pos, const uint32_t *tables,
                              const uint32_t *table_off, bt_cuda_kv_t kv)
{
    const int t = blockIdx.x;
    const int p = pos[t];
    const uint32_t blk = tables[table_off[t] + (uint32_t)(p / kv.block_size)];
    const int kvd = kv.n_kv_heads * kv.head_dim;
    const size_t ik = bt_dev_kv_index(kv, layer, blk, 0, p % kv.block_size);
    const size_t iv = bt_dev_kv_index(kv, layer, blk, 1, p % kv.block_size);

    for (int i = threadIdx.x; i < kvd; i += blockDim.x) {
        bt_dev_store(kv.base, kv.dtype, ik + (size_t)i, k[(size_t)t * kvd + i]);
        bt_dev_store(kv.base, kv.dtype, iv + (size_t)i, v[(size_t)t * kvd + i]);
    }
}

extern "C" int bt_cuda_kv_store(const float *k, const float *v, int T, int layer,
                                const int32_t *pos, const uint32_t *tables,
                                const uint32_t *table_off, const bt_cuda_kv_t *kv,
                                void *stream)
{
    if (T <= 0) {
        return 0;
    }
    bt_k_kv_store<<<T, 128, 0, (cudaStream_t)stream>>>(k, v, layer, pos, tables,
                                                       table_off, *kv);
    return bt_cuda_status();
}

// ---- attention ---------------------------------------------------------

// One block per (token, head): the scores in 8-lane dot products, 16
// positions at a time; the max; exp and its sum in the CPU's 8 lanes of
// positions; then each output element walks the positions in order.
__global__ void bt_k_attention(const float *q, float *out, int n_heads,
                               int n_kv_heads, int hd, int layer, int window,
                               float scale, const int32_t *pos,
                               const uint32_t *tables, const uint32_t *table_off,
                               bt_cuda_kv_t kv, float *scratch, int max_ctx)
{
    __shared__ float red[BT_ATT_THREADS];
    __shared__ float sum_s;
    const int t = blockIdx.x / n_heads, h = blockIdx.x % n_heads;
    const int kvh = h / (n_heads / n_kv_heads);
    const int p_last = pos[t];
    const int start = window > 0 && p_last - window + 1 > 0 ? p_last - window + 1 : 0;
    const int n = p_last - start + 1;
    const uint32_t *table = tables + table_off[t];
    const float *qh = q + ((size_t)t * n_heads + h) * hd;
    float *oh = out + ((size_t)t * n_heads + h) * hd;
    float *sc = scratch + (size_t)blockIdx.x * (size_t)max_ctx;
    const int lane = threadIdx.x & 7, group = threadIdx.x >> 3;
    const int groups = BT_ATT_THREADS / 8;
    const size_t hoff = (size_t)kvh * hd;
    float mx = -INFINITY;

    for (int i0 = 0; i0 < n; i0 += groups) {    // uniform trip count
        const int i = i0 + group;
        float a = 0.0f;

        if (i < n) {
            const int p = start + i;
            const size_t base = bt_dev_kv_index(kv, layer, table[p / kv.block_size],
                                                0, p % kv.block_size) + hoff;

            for (int d = lane; d < hd; d += 8) {
                a = fmaf(qh[d], bt_dev_load(kv.base, kv.dtype, base + (size_t)d), a);
            }
        }
        a = bt_dev_lanes_tree8(a);
        if (lane == 0 && i < n) {
            sc[i] = a * scale;
        }
    }
    __syncthreads();
    // the max (the CPU's v > m ? v : m; the order of a max is free)
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        mx = sc[i] > mx ? sc[i] : mx;
    }
    red[threadIdx.x] = mx;
    __syncthreads();
    for (int s = BT_ATT_THREADS / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) {
            const float o = red[threadIdx.x + s];

            red[threadIdx.x] = o > red[threadIdx.x] ? o : red[threadIdx.x];
        }
        __syncthreads();
    }
    mx = red[0];
    // exp(s - max) and the sum: position i in lane i mod 8
    if (threadIdx.x < 32) {
        float a = 0.0f;

        if (threadIdx.x < 8) {
            for (int i = threadIdx.x; i < n; i += 8) {
                const float e = bt_exact_expf(sc[i] - mx);

                sc[i] = e;
                a += e;
            }
        }
        a = bt_dev_lanes_tree8(a);
        if (threadIdx.x == 0) {
            sum_s = a;
        }
    }
    __syncthreads();
    for (int d = threadIdx.x; d < hd; d += blockDim.x) {
        float o = 0.0f;

        for (int i = 0; i < n; i++) {
            const int p = start + i;
            const size_t base = bt_dev_kv_index(kv, layer, table[p / kv.block_size],
                                                1, p % kv.block_size) + hoff;

            o = fmaf(sc[i], bt_dev_load(kv.base, kv.dtype, base + (size_t)d), o);
        }
        oh[d] = o / sum_s;
    }
}

extern "C" int bt_cuda_attention(const float *q, float *out, int T, int n_heads,
                                 int n_kv_heads, int head_dim, int layer,
                                 int window, float scale, const int32_t *pos,
                                 const uint32_t *tables, const uint32_t *table_off,
                                 const bt_cuda_kv_t *kv, float *scratch,
                                 int max_ctx, void *stream)
{
    if (T <= 0) {
        return 0;
    }
    bt_k_attention<<<T * n_heads, BT_ATT_THREADS, 0, (cudaStream_t)stream>>>(
        q, out, n_heads, n_kv_heads, head_dim, layer, window, scale, pos, tables,
        table_off, *kv, scratch, max_ctx);
    return bt_cuda_status();
}

// ---- MoE ----------------------------------------------------------------

__global__ void bt_k_moe_route(const float *logits, int T, int E, int k,
                               int norm_topk, int *sel, float *selw)
{
    const int t = blockIdx.x * blockDim.x + threadIdx.x;
    float p[BT_MOE_MAX_E];

    if (t < T) {
        bt_exact_moe_route(logits + (size_t)t * E, E, k, norm_topk != 0, p,
                           sel + (size_t)t * k, selw + (size_t)t * k);
    }
}

extern "C" int bt_cuda_moe_route(const float *logits, int T, int E, int k,
                                 int norm_topk, int *sel, float *selw,
                                 void *stream)
{
    if (T <= 0) {
        return 0;
    }
    if (E > BT_MOE_MAX_E || k > E) {
        return (int)cudaErrorInvalidValue;
    }
    bt_k_moe_route<<<bt_blocks((size_t)T, 64), 64, 0, (cudaStream_t)stream>>>(
        logits, T, E, k, norm_topk, sel, selw);
    return bt_cuda_status();
}

__global__ void bt_k_moe_combine(const float *slot_out, const float *selw, int k,
                                 int H, const float *sgate, const float *shared,
                                 float *y)
{
    const int t = blockIdx.x;
    const float gs = sgate != NULL ? 1.0f / (1.0f + bt_exact_expf(-sgate[t])) : 0.0f;

    for (int i = threadIdx.x; i < H; i += blockDim.x) {
        float acc = 0.0f;

        for (int j = 0; j < k; j++) {
            const float w = selw[(size_t)t * k + j];

            acc += w * slot_out[((size_t)t * k + j) * H + i];
        }
        if (sgate != NULL) {
            acc += gs * shared[(size_t)t * H + i];
        }
        y[(size_t)t * H + i] = acc;
    }
}

extern "C" int bt_cuda_moe_combine(const float *slot_out, const float *selw, int T,
                                   int k, int H, const float *sgate,
                                   const float *shared, float *y, void *stream)
{
    if (T <= 0) {
        return 0;
    }
    bt_k_moe_combine<<<T, 256, 0, (cudaStream_t)stream>>>(slot_out, selw, k, H,
                                                          sgate, shared, y);
    return bt_cuda_status();
}

// ---- moving rows ---------------------------------------------------------

__global__ void bt_k_gather_rows(const float *src, const int *idx, int div, int H,
                                 float *dst)
{
    const float *s = src + (size_t)(idx[blockIdx.x] / div) * H;
    float *d = dst + (size_t)blockIdx.x * H;

    for (int i = threadIdx.x; i < H; i += blockDim.x) {
        d[i] = s[i];
    }
}

extern "C" int bt_cuda_gather_rows(const float *src, const int *idx, int div,
                                   int n, int H, float *dst, void *stream)
{
    if (n <= 0) {
        return 0;
    }
    bt_k_gather_rows<<<n, 256, 0, (cudaStream_t)stream>>>(src, idx, div, H, dst);
    return bt_cuda_status();
}

__global__ void bt_k_scatter_rows(const float *src, const int *idx, int H,
                                  float *dst)
{
    const float *s = src + (size_t)blockIdx.x * H;
    float *d = dst + (size_t)idx[blockIdx.x] * H;

    for (int i = threadIdx.x; i < H; i += blockDim.x) {
        d[i] = s[i];
    }
}

extern "C" int bt_cuda_scatter_rows(const float *src, const int *idx, int n,
                                    int H, float *dst, void *stream)
{
    if (n <= 0) {
        return 0;
    }
    bt_k_scatter_rows<<<n, 256, 0, (cudaStream_t)stream>>>(src, idx, H, dst);
    return bt_cuda_status();
}

__global__ void bt_k_kv_gather(int layer, const int32_t *pos, const uint32_t *tables,
                               const uint32_t *table_off, bt_cuda_kv_t kv,
                               void *out)
{
    const int t = blockIdx.x, p = pos[t];
    const uint32_t blk = tables[table_off[t] + (uint32_t)(p / kv.block_size)];
    const int kvd = kv.n_kv_heads * kv.head_dim;
    const size_t esz = kv.dtype == BT_DTYPE_F32 ? 4 : 2;
    const char *base = (const char *)kv.base;
    char *o = (char *)out + (size_t)t * 2 * kvd * esz;

    for (int which = 0; which < 2; which++) {
        const char *src = base + bt_dev_kv_index(kv, layer, blk, which,
                                                 p % kv.block_size) * esz;

        for (size_t i = threadIdx.x; i < (size_t)kvd * esz; i += blockDim.x) {
            o[(size_t)which * kvd * esz + i] = src[i];
        }
    }
}

extern "C" int bt_cuda_kv_gather(int T, int layer, const int32_t *pos,
                                 const uint32_t *tables, const uint32_t *table_off,
                                 const bt_cuda_kv_t *kv, void *out, void *stream)
{
    if (T <= 0) {
        return 0;
    }
    bt_k_kv_gather<<<T, 256, 0, (cudaStream_t)stream>>>(layer, pos, tables, table_off,
                                                        *kv, out);
    return bt_cuda_status();
}

// ---- rank-order sum ------------------------------------------------------

__global__ void bt_k_sum_ranks(const float *parts, int nranks, size_t m, float *out)
{
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;

    if (i < m) {
        float acc = parts[i];

        for (int r = 1; r < nranks; r++) {
            acc += parts[(size_t)r * m + i];
        }
        out[i] = acc;
    }
}

extern "C" int bt_cuda_sum_ranks(const float *parts, int nranks, size_t m,
                                 float *out, void *stream)
{
    if (m == 0) {
        return 0;
    }
    bt_k_sum_ranks<<<bt_blocks(m, 256), 256, 0, (cudaStream_t)stream>>>(parts, nranks,
                                                                        m, out);
    return bt_cuda_status();
}

// ---- synthetic weights -----------------------------------------------------

__global__ void bt_k_fill_random(void *p, size_t n, int t, uint32_t seed, float scale)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        uint32_t x = (uint32_t)i * 2654435761u ^ (uint32_t)(i >> 32) ^ seed;

        x ^= x >> 16;
        x *= 0x7feb352du;
        x ^= x >> 15;
        x *= 0x846ca68bu;
        x ^= x >> 16;
        bt_dev_store(p, t, i, ((float)(x >> 8) * 0x1p-23f - 1.0f) * scale);
    }
}

extern "C" int bt_cuda_fill_random(void *p, size_t n, int t, uint32_t seed,
                                   float scale, void *stream)
{
    if (n == 0) {
        return 0;
    }
    bt_k_fill_random<<<1024, 256, 0, (cudaStream_t)stream>>>(p, n, t, seed, scale);
    return bt_cuda_status();
}

__global__ void bt_k_fill(float *p, size_t n, float v)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        p[i] = v;
    }
}

extern "C" int bt_cuda_fill(float *p, size_t n, float v, void *stream)
{
    if (n == 0) {
        return 0;
    }
    bt_k_fill<<<256, 256, 0, (cudaStream_t)stream>>>(p, n, v);
    return bt_cuda_status();
}
