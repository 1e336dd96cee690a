/* CPU backend: own matmul, RMSNorm, attention and SwiGLU kernels.
 *
 * Batch invariance comes from one rule: every dot product (and the
 * softmax's sum) accumulates in 8 lanes (element i goes to lane i mod 8,
 * in increasing i, with a fused multiply-add), then adds the lanes in a
 * fixed tree. The AVX2 path does exactly that with one __m256 per output
 * element; the portable path does it with fmaf, which rounds the same
 * way, so both give the same bits; exp is our own (cpu_exp.c) for the
 * same reason. Threads split output columns, (token, head) pairs or
 * (token, group of heads) (cpu_attn.c), never a reduction, so the thread
 * count never changes a result either. */
#include "backend.h"

#include "base/log.h"
#include "cpu_attn.h"
#include "cpu_exp.h"
#include "cpu_simd.h"
#include "cpu_tile512.h"
#include "parallel.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define NR_MAX 4   /* rows of x per tile */
#define NC_MAX 3   /* weight rows (output columns) per tile */
#define NC1_MAX 8  /* output columns per single-row (decode) tile */
#define SERIAL_MACS (1u << 18) /* smaller matmuls stay on the caller */

/* -1 not chosen yet, else a bt_cpu_kernels_t */
static atomic_int cpu_kernels = -1;

bool bt_cpu_has_avx2(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
           __builtin_cpu_supports("f16c");
#else
    return false;
#endif
}

static bt_cpu_kernels_t cpu_best(void)
{
#if defined(__x86_64__)
    if (bt_cpu_has_avx512()) {
        return BT_CPU_AVX512;
    }
#endif
    return bt_cpu_has_avx2() ? BT_CPU_AVX2 : BT_CPU_PORTABLE;
}

const char *bt_cpu_kernels_name(bt_cpu_kernels_t k)
{
    switch (k) {
    case BT_CPU_AVX512:
        return "avx512";
    case BT_CPU_AVX2:
        return "avx2";
    default:
        return "portable";
    }
}

void bt_cpu_limit_kernels(bt_cpu_kernels_t most)
{
    const bt_cpu_kernels_t best = cpu_best();

    atomic_store(&cpu_kernels, (int)(most < best ? most : best));
}

void bt_cpu_force_scalar(bool scalar)
{
    bt_cpu_limit_kernels(scalar ? BT_CPU_PORTABLE : BT_CPU_AVX512);
}

/* The best the CPU has, capped by BATON_CPU_KERNELS (portable, avx2 or
 * avx512): every path gives the same bits, so the cap only trades speed,
 * for a benchmark's A/B or a machine that misreports its vector units. */
bt_cpu_kernels_t bt_cpu_kernels(void)
{
    int v = atomic_load(&cpu_kernels);

    if (v < 0) {
        const char *cap = getenv("BATON_CPU_KERNELS");
        bt_cpu_kernels_t most = BT_CPU_AVX512;

        if (cap != NULL && *cap != '\0') {
            if (strcmp(cap, "portable") == 0) {
                most = BT_CPU_PORTABLE;
            } else if (strcmp(cap, "avx2") == 0) {
                most = BT_CPU_AVX2;
            } else if (strcmp(cap, "avx512") != 0) {
                bt_warn("BATON_CPU_KERNELS=%s is not portable, avx2 or "
                        "avx512; using the best the CPU has", cap);
            }
        }
        bt_cpu_limit_kernels(most);
        v = atomic_load(&cpu_kernels);
    }
    return (bt_cpu_kernels_t)v;
}

bool bt_cpu_simd_on(void)
{
    return bt_cpu_kernels() >= BT_CPU_AVX2;
}

/* ---- the fixed reduction ------------------------------------------ */

static float dot_scalar(const float *x, const void *w, bt_dtype_t wt, int k)
{
    float a[8] = {0};
    const int k8 = k & ~7;

    for (int i = 0; i < k8; i += 8) {
        for (int l = 0; l < 8; l++) {
            a[l] = fmaf(x[i + l], bt_dtype_load(w, wt, (size_t)(i + l)), a[l]);
        }
    }
    return bt_cpu_lanes_finish(a, x, w, wt, k8, k);
}

/* ---- AVX2 tiles ----------------------------------------------------- */

#if defined(__x86_64__)
/* out[r * ldo + c] = dot(x row r, w row c) (+ bias[c]), nr x nc tile. */
BT_SIMD_INLINE void tile_avx2(const float *x, int ldx, int nr,
                              const char *w, size_t ldw, bt_dtype_t wt,
                              int nc, int k, const float *bias, float *out,
                              int ldo)
{
    __m256 acc[NR_MAX][NC_MAX];
    const int k8 = k & ~7;

#pragma GCC unroll 4
    for (int r = 0; r < NR_MAX; r++) {
#pragma GCC unroll 3
        for (int c = 0; c < NC_MAX; c++) {
            acc[r][c] = _mm256_setzero_ps();
        }
    }
    for (int i = 0; i < k8; i += 8) {
#pragma GCC unroll 3
        for (int c = 0; c < NC_MAX; c++) {
            if (c < nc) {
                __m256 wv = load8(w + (size_t)c * ldw, wt, i);

                /* decode streams weights once: fetch two tiles ahead */
                if (nr == 1) {
                    _mm_prefetch(w + (size_t)(c + 2 * NC_MAX) * ldw +
                                 (size_t)i * (wt == BT_DTYPE_F32 ? 4 : 2),
                                 _MM_HINT_T0);
                }

#pragma GCC unroll 4
                for (int r = 0; r < NR_MAX; r++) {
                    if (r < nr) {
                        acc[r][c] = _mm256_fmadd_ps(
                            _mm256_loadu_ps(x + (size_t)r * ldx + i), wv,
                            acc[r][c]);
                    }
                }
            }
        }
    }
    for (int r = 0; r < nr; r++) {
        for (int c = 0; c < nc; c++) {
            float a[8];
            float v;

            _mm256_storeu_ps(a, acc[r][c]);
            v = bt_cpu_lanes_finish(a, x + (size_t)r * ldx,
                                    w + (size_t)c * ldw, wt, k8, k);
            out[(size_t)r * ldo + c] = bias != NULL ? v + bias[c] : v;
        }
    }
}

/* One function per (nr, nc, dtype) so each tile keeps its accumulators in
 * registers. */
#define TILE_FN(NR, NC, DT, SUF)                                              \
    BT_SIMD_TARGET static void tile_##NR##_##NC##_##SUF(                      \
        const float *x, int ldx, const char *w, size_t ldw, int k,            \
        const float *bias, float *out, int ldo)                               \
    {                                                                         \
        tile_avx2(x, ldx, NR, w, ldw, DT, NC, k, bias, out, ldo);             \
    }
#define TILE_ROW(NR, DT, SUF) \
    TILE_FN(NR, 1, DT, SUF) TILE_FN(NR, 2, DT, SUF) TILE_FN(NR, 3, DT, SUF)
#define TILE_ALL(DT, SUF) \
    TILE_ROW(1, DT, SUF) TILE_ROW(2, DT, SUF) TILE_ROW(3, DT, SUF) \
    TILE_ROW(4, DT, SUF)

TILE_ALL(BT_DTYPE_F32, f32)
TILE_ALL(BT_DTYPE_F16, f16)
TILE_ALL(BT_DTYPE_BF16, bf16)

typedef void (*tile_fn_t)(const float *, int, const char *, size_t, int,
                          const float *, float *, int);

#define TILE_TAB(SUF) {                                                 \
        {tile_1_1_##SUF, tile_1_2_##SUF, tile_1_3_##SUF},               \
        {tile_2_1_##SUF, tile_2_2_##SUF, tile_2_3_##SUF},               \
        {tile_3_1_##SUF, tile_3_2_##SUF, tile_3_3_##SUF},               \
        {tile_4_1_##SUF, tile_4_2_##SUF, tile_4_3_##SUF} }

static const tile_fn_t tiles[3][NR_MAX][NC_MAX] = {
    [BT_DTYPE_F32] = TILE_TAB(f32),
    [BT_DTYPE_F16] = TILE_TAB(f16),
    [BT_DTYPE_BF16] = TILE_TAB(bf16),
};

/* Decode (one row of x) is a stream over the weights: 8 columns give 8
 * independent FMA chains, enough to hide the FMA latency that a 1 x 3
 * tile exposes. Each column still accumulates in the one fixed order, so
 * the bits equal every other tile's. */

BT_SIMD_INLINE void row_avx2(const float *x, const char *w, size_t ldw,
                             bt_dtype_t wt, int nc, int k, const float *bias,
                             float *out)
{
    __m256 acc[NC1_MAX];
    const int k8 = k & ~7;
    const size_t esz = wt == BT_DTYPE_F32 ? 4 : 2;

#pragma GCC unroll 8
    for (int c = 0; c < NC1_MAX; c++) {
        acc[c] = _mm256_setzero_ps();
    }
    for (int i = 0; i < k8; i += 8) {
        const __m256 xv = _mm256_loadu_ps(x + i);

#pragma GCC unroll 8
        for (int c = 0; c < NC1_MAX; c++) {
            if (c < nc) {
                /* weights are read once: fetch each line (once) four
                 * tiles ahead, enough to cover DRAM latency (measured:
                 * one tile ahead, or a prefetch per load, is slower) */
                if (((size_t)i * esz) % 64 == 0) {
                    _mm_prefetch(w + (size_t)(c + 4 * NC1_MAX) * ldw +
                                 (size_t)i * esz, _MM_HINT_T0);
                }
                acc[c] = _mm256_fmadd_ps(xv, load8(w + (size_t)c * ldw, wt, i),
                                         acc[c]);
            }
        }
    }
    if (nc == NC1_MAX && k8 == k) {
        __m256 v = sum8_tree(acc);

        if (bias != NULL) {
            v = _mm256_add_ps(v, _mm256_loadu_ps(bias));
        }
        _mm256_storeu_ps(out, v);
        return;
    }
    for (int c = 0; c < nc; c++) {
        float a[8];
        float v;

        _mm256_storeu_ps(a, acc[c]);
        v = bt_cpu_lanes_finish(a, x, w + (size_t)c * ldw, wt, k8, k);
        out[c] = bias != NULL ? v + bias[c] : v;
    }
}

#define ROW_FN(NC, DT, SUF)                                                   \
    BT_SIMD_TARGET static void row_##NC##_##SUF(                              \
        const float *x, const char *w, size_t ldw, int k, const float *bias,  \
        float *out)                                                           \
    {                                                                         \
        row_avx2(x, w, ldw, DT, NC, k, bias, out);                            \
    }
#define ROW_ALL(DT, SUF)                                                      \
    ROW_FN(1, DT, SUF) ROW_FN(2, DT, SUF) ROW_FN(3, DT, SUF)                  \
    ROW_FN(4, DT, SUF) ROW_FN(5, DT, SUF) ROW_FN(6, DT, SUF)                  \
    ROW_FN(7, DT, SUF) ROW_FN(8, DT, SUF)

ROW_ALL(BT_DTYPE_F32, f32)
ROW_ALL(BT_DTYPE_F16, f16)
ROW_ALL(BT_DTYPE_BF16, bf16)

typedef void (*row_fn_t)(const float *, const char *, size_t, int,
                         const float *, float *);

#define ROW_TAB(SUF) {                                                        \
        row_1_##SUF, row_2_##SUF, row_3_##SUF, row_4_##SUF,                   \
        row_5_##SUF, row_6_##SUF, row_7_##SUF, row_8_##SUF }

static const row_fn_t rows[3][NC1_MAX] = {
    [BT_DTYPE_F32] = ROW_TAB(f32),
    [BT_DTYPE_F16] = ROW_TAB(f16),
    [BT_DTYPE_BF16] = ROW_TAB(bf16),
};

BT_SIMD_TARGET static float dot_avx2(const float *x, const void *w,
                                     bt_dtype_t wt, int k)
{
    float out;

    tiles[wt][0][0](x, k, w, 0, k, NULL, &out, 1);
    return out;
}
/* out[d] = fma(p[i], v_i[d], out[d]) for i = 0..n-1 in order, v_i being
 * `ld` bytes apart: the axpy loop with out kept in registers across i (the
 * same fmas in the same order per element, so the same bits). */
BT_SIMD_TARGET static void wsum_avx2(const float *p, const char *v, size_t ld,
                                     bt_dtype_t vt, int n, float *out, int hd)
{
    const int hd8 = hd & ~7;
    int d0 = 0;

    for (; d0 + 32 <= hd8; d0 += 32) {
        __m256 a0 = _mm256_loadu_ps(out + d0), a1 = _mm256_loadu_ps(out + d0 + 8),
               a2 = _mm256_loadu_ps(out + d0 + 16),
               a3 = _mm256_loadu_ps(out + d0 + 24);

        for (int i = 0; i < n; i++) {
            const char *vi = v + (size_t)i * ld;
            const __m256 pv = _mm256_set1_ps(p[i]);

            a0 = _mm256_fmadd_ps(pv, load8(vi, vt, d0), a0);
            a1 = _mm256_fmadd_ps(pv, load8(vi, vt, d0 + 8), a1);
            a2 = _mm256_fmadd_ps(pv, load8(vi, vt, d0 + 16), a2);
            a3 = _mm256_fmadd_ps(pv, load8(vi, vt, d0 + 24), a3);
        }
        _mm256_storeu_ps(out + d0, a0);
        _mm256_storeu_ps(out + d0 + 8, a1);
        _mm256_storeu_ps(out + d0 + 16, a2);
        _mm256_storeu_ps(out + d0 + 24, a3);
    }
    for (; d0 < hd8; d0 += 8) {
        __m256 a = _mm256_loadu_ps(out + d0);

        for (int i = 0; i < n; i++) {
            a = _mm256_fmadd_ps(_mm256_set1_ps(p[i]),
                                load8(v + (size_t)i * ld, vt, d0), a);
        }
        _mm256_storeu_ps(out + d0, a);
    }
    for (int d = hd8; d < hd; d++) {
        for (int i = 0; i < n; i++) {
            out[d] = fmaf(p[i], bt_dtype_load(v + (size_t)i * ld, vt,
                                              (size_t)d), out[d]);
        }
    }
}
#endif

/* s[i] = dot(q, k_i) for n keys `ld` bytes apart, each in the fixed order
 * (so equal to bt_cpu_dot). */
static void dots(const float *q, const char *k, size_t ld, bt_dtype_t kt,
                 int hd, int n, float *s)
{
#if defined(__x86_64__)
    if (bt_cpu_simd_on()) {
        for (int i = 0; i < n; i += NC1_MAX) {
            const int nc = n - i < NC1_MAX ? n - i : NC1_MAX;

            rows[kt][nc - 1](q, k + (size_t)i * ld, ld, hd, NULL, s + i);
        }
        return;
    }
#endif
    for (int i = 0; i < n; i++) {
        s[i] = dot_scalar(q, k + (size_t)i * ld, kt, hd);
    }
}

/* The PV half of attention over n positions `ld` bytes apart. */
static void wsum(const float *p, const char *v, size_t ld, bt_dtype_t vt,
                 int n, float *out, int hd)
{
#if defined(__x86_64__)
    if (bt_cpu_simd_on()) {
        wsum_avx2(p, v, ld, vt, n, out, hd);
        return;
    }
#endif
    for (int i = 0; i < n; i++) {
        for (int d = 0; d < hd; d++) {
            out[d] = fmaf(p[i], bt_dtype_load(v + (size_t)i * ld, vt,
                                              (size_t)d), out[d]);
        }
    }
}

float bt_cpu_dot(const float *x, const void *w, bt_dtype_t wt, int k)
{
#if defined(__x86_64__)
    if (bt_cpu_simd_on()) {
        return dot_avx2(x, w, wt, k);
    }
#endif
    return dot_scalar(x, w, wt, k);
}

/* ---- backend context ------------------------------------------------ */

typedef struct {
    bt_par_t *par;
    float   **scratch;      /* per thread: attention scores */
    size_t    scratch_cap;  /* floats per thread */
} cpu_ctx_t;

static bt_status_t cpu_create(int n_threads, void **ctx_p)
{
    cpu_ctx_t *c = calloc(1, sizeof(*c));

    if (c == NULL) {
        return BT_ERR_NO_MEMORY;
    }
    if (n_threads <= 0) {
        n_threads = bt_par_cpus();
    }
    c->par = bt_par_create(n_threads);
    c->scratch = calloc((size_t)n_threads, sizeof(float *));
    if (c->par == NULL || c->scratch == NULL) {
        bt_par_destroy(c->par);
        free(c->scratch);
        free(c);
        return BT_ERR_NO_MEMORY;
    }
    *ctx_p = c;
    return BT_OK;
}

static void cpu_destroy(void *vctx)
{
    cpu_ctx_t *c = vctx;

    if (c == NULL) {
        return;
    }
    for (int i = 0; i < bt_par_threads(c->par); i++) {
        free(c->scratch[i]);
    }
    free(c->scratch);
    bt_par_destroy(c->par);
    free(c);
}

static int cpu_threads(void *vctx)
{
    return bt_par_threads(((cpu_ctx_t *)vctx)->par);
}

/* ---- matmul --------------------------------------------------------- */

typedef struct {
    const float    *x;
    int             n;
    const bt_mat_t *w;
    const float    *bias;
    float          *y;
    int             cols_per_task;
    bt_cpu_kernels_t kernels;
} mm_job_t;

static void mm_tile_scalar(const float *x, int ldx, int nr, const char *w,
                           size_t ldw, bt_dtype_t wt, int nc, int k,
                           const float *bias, float *out, int ldo)
{
    for (int r = 0; r < nr; r++) {
        for (int c = 0; c < nc; c++) {
            float v = dot_scalar(x + (size_t)r * ldx, w + (size_t)c * ldw, wt,
                                 k);

            out[(size_t)r * ldo + c] = bias != NULL ? v + bias[c] : v;
        }
    }
}

/* Rows r0 .. r0 + nr - 1 (nr <= NR_MAX) by columns c0 .. c1 - 1. */
static void mm_rows(const mm_job_t *j, int r0, int nr, int c0, int c1)
{
    const bt_mat_t *w = j->w;
    const int k = w->cols, m = w->rows;
    const size_t ldw = (size_t)k * bt_dtype_size(w->dtype);

    for (int c = c0; c < c1; c += NC_MAX) {
        const int nc = c1 - c < NC_MAX ? c1 - c : NC_MAX;
        const char *wp = (const char *)w->data + (size_t)c * ldw;
        const float *bp = j->bias != NULL ? j->bias + c : NULL;
        float *op = j->y + (size_t)r0 * m + c;

#if defined(__x86_64__)
        if (j->kernels >= BT_CPU_AVX2) {
            tiles[w->dtype][nr - 1][nc - 1](j->x + (size_t)r0 * k, k, wp, ldw,
                                            k, bp, op, m);
            continue;
        }
#endif
        mm_tile_scalar(j->x + (size_t)r0 * k, k, nr, wp, ldw, w->dtype, nc, k,
                       bp, op, m);
    }
}

#if defined(__x86_64__)
/* Columns in groups of BT_TILE512_COLS by the AVX-512 tile, the last few
 * by the AVX2 tiles (the same bits either way). */
static void mm_task512(const mm_job_t *j, int c0, int c1)
{
    const bt_mat_t *w = j->w;
    const int k = w->cols, m = w->rows;
    const size_t ldw = (size_t)k * bt_dtype_size(w->dtype);
    const int c8 = c0 + (c1 - c0) / BT_TILE512_COLS * BT_TILE512_COLS;

    for (int r0 = 0; r0 < j->n; r0 += BT_TILE512_ROWS) {
        const int nr = j->n - r0 < BT_TILE512_ROWS ? j->n - r0
                                                   : BT_TILE512_ROWS;

        for (int c = c0; c < c8; c += BT_TILE512_COLS) {
            bt_cpu_tile512(j->x + (size_t)r0 * k, k, nr,
                           (const char *)w->data + (size_t)c * ldw, ldw,
                           w->dtype, k, j->bias != NULL ? j->bias + c : NULL,
                           j->y + (size_t)r0 * m + c, m);
        }
        for (int r = r0; c8 < c1 && r < r0 + nr; r += NR_MAX) {
            mm_rows(j, r, r0 + nr - r < NR_MAX ? r0 + nr - r : NR_MAX, c8, c1);
        }
    }
}
#endif

static void mm_task(void *vjob, int task, int thread)
{
    const mm_job_t *j = vjob;
    const bt_mat_t *w = j->w;
    const int k = w->cols, m = w->rows;
    const size_t ldw = (size_t)k * bt_dtype_size(w->dtype);
    const int c0 = task * j->cols_per_task;
    const int c1 = c0 + j->cols_per_task < m ? c0 + j->cols_per_task : m;

    (void)thread;
#if defined(__x86_64__)
    if (j->kernels >= BT_CPU_AVX2 && j->n == 1) {
        for (int c = c0; c < c1; c += NC1_MAX) {
            const int nc = c1 - c < NC1_MAX ? c1 - c : NC1_MAX;

            rows[w->dtype][nc - 1](j->x, (const char *)w->data + (size_t)c * ldw,
                                   ldw, k, j->bias != NULL ? j->bias + c : NULL,
                                   j->y + c);
        }
        return;
    }
    if (j->kernels == BT_CPU_AVX512) {
        mm_task512(j, c0, c1);
        return;
    }
#endif
    for (int r0 = 0; r0 < j->n; r0 += NR_MAX) {
        const int nr = j->n - r0 < NR_MAX ? j->n - r0 : NR_MAX;

        mm_rows(j, r0, nr, c0, c1);
    }
}

static void cpu_matmul(void *vctx, const float *x, int n, const bt_mat_t *w,
                       const float *bias, float *y)
{
    cpu_ctx_t *c = vctx;
    const int threads = bt_par_threads(c->par);
    mm_job_t j = {x, n, w, bias, y, 0, bt_cpu_kernels()};
    int per;

    if (n <= 0) {
        return;
    }
    /* Column chunks: enough tasks to balance threads, small enough that a
     * chunk of weight rows stays in L2 while row tiles stream past. */
    per = (w->rows + threads * 4 - 1) / (threads * 4);
    per = (per + NC_MAX - 1) / NC_MAX * NC_MAX;
    if (n <= NR_MAX) {
        /* one row tile reads each weight once: long contiguous chunks keep
         * every thread's stream sequential for the prefetchers (measured
         * 1.5x faster than 48-column chunks on the decode lm_head) */
        per = (per + NC_MAX * NC1_MAX - 1) / (NC_MAX * NC1_MAX) *
              (NC_MAX * NC1_MAX);
    } else if (per > 48) {
        per = 48;
    }
    if (per < NC_MAX) {
        per = NC_MAX;
    }
    if (j.kernels == BT_CPU_AVX512 && n > 1) {
        /* whole AVX-512 tiles; 48 is a multiple of them already */
        per = (per + BT_TILE512_COLS - 1) / BT_TILE512_COLS * BT_TILE512_COLS;
    }
    j.cols_per_task = per;
    if ((size_t)n * (size_t)w->rows * (size_t)w->cols < SERIAL_MACS) {
        /* a hand-off to other threads costs more than it saves; which
         * thread runs a task never changes its bits */
        for (int t = 0; t < (w->rows + per - 1) / per; t++) {
            mm_task(&j, t, 0);
        }
        return;
    }
    bt_par_run(c->par, (w->rows + per - 1) / per, mm_task, &j);
}

/* ---- rmsnorm -------------------------------------------------------- */

static void cpu_rmsnorm(void *vctx, const float *x, const float *g, int n,
                        int d, float eps, float *y)
{
    (void)vctx;
    for (int r = 0; r < n; r++) {
        const float *xr = x + (size_t)r * d;
        float *yr = y + (size_t)r * d;
        float ss = bt_cpu_dot(xr, xr, BT_DTYPE_F32, d);
        float inv = 1.0f / sqrtf(ss / (float)d + eps);

        for (int i = 0; i < d; i++) {
            yr[i] = g[i] * (xr[i] * inv);
        }
    }
}

/* ---- attention ------------------------------------------------------ */

typedef struct {
    const bt_attn_args_t *a;
    cpu_ctx_t            *c;
} attn_job_t;

/* What one token attends to at one K/V head: positions start..pos, whose
 * rows lie in runs of consecutive slots of a block, ld bytes apart. */
typedef struct {
    const bt_kv_view_t *kv;
    const uint32_t     *table;
    int                 layer, start, pos;
    size_t              hoff, ld;
} attn_span_t;

static attn_span_t attn_span(const bt_attn_args_t *a, int t, int kv_head)
{
    const bt_kv_view_t *kv = a->kv;
    const size_t row = (size_t)a->head_dim * bt_dtype_size(kv->dtype);
    const int pos = a->pos[t];
    attn_span_t s = {
        .kv = kv, .table = a->tables[t], .layer = a->layer, .pos = pos,
        .start = a->window > 0 && pos - a->window + 1 > 0
                 ? pos - a->window + 1 : 0,
        .hoff = (size_t)kv_head * row, .ld = (size_t)kv->n_kv_heads * row,
    };

    return s;
}

/* The run of rows from position p on, of K (which 0) or V (1), at the
 * span's head, in *rows_p; returns its length. */
static int attn_span_run(const attn_span_t *s, int p, int which,
                         const char **rows_p)
{
    const int bs = s->kv->block_size;

    *rows_p = (const char *)bt_kv_view_at(s->kv, s->layer, s->table[p / bs],
                                          which, p % bs) + s->hoff;
    return bs - p % bs < s->pos - p + 1 ? bs - p % bs : s->pos - p + 1;
}

static void attn_task(void *vjob, int task, int thread)
{
    const attn_job_t *j = vjob;
    const bt_attn_args_t *a = j->a;
    const int t = task / a->n_heads, h = task % a->n_heads;
    const attn_span_t s = attn_span(a, t, h / (a->n_heads / a->n_kv_heads));
    const int hd = a->head_dim;
    const float *q = a->q + ((size_t)t * a->n_heads + h) * hd;
    float *out = a->out + ((size_t)t * a->n_heads + h) * hd;
    float *sc = j->c->scratch[thread];
    float mx = -INFINITY, sum;
    const char *kv_rows;
    int run;

    for (int p = s.start; p <= s.pos; p += run) {
        run = attn_span_run(&s, p, 0, &kv_rows);
        dots(q, kv_rows, s.ld, s.kv->dtype, hd, run, sc + (p - s.start));
        for (int i = p - s.start; i < p - s.start + run; i++) {
            sc[i] *= a->scale;
            mx = sc[i] > mx ? sc[i] : mx;
        }
    }
    sum = bt_cpu_exp_sum(sc, (size_t)(s.pos - s.start + 1), mx);
    memset(out, 0, (size_t)hd * sizeof(float));
    /* per output element, positions in increasing order: the same with or
     * without SIMD */
    for (int p = s.start; p <= s.pos; p += run) {
        run = attn_span_run(&s, p, 1, &kv_rows);
        wsum(sc + (p - s.start), kv_rows, s.ld, s.kv->dtype, run, out, hd);
    }
    for (int d = 0; d < hd; d++) {
        out[d] = out[d] / sum;
    }
}

/* ---- SwiGLU's gate -------------------------------------------------- */

#define SWIGLU_TASK 4096  /* elements per task */
#define SWIGLU_CHUNK 256  /* exp'd at once, on the stack */

typedef struct {
    float       *g;
    const float *u;
    size_t       n;
} swiglu_job_t;

/* g / (1 + exp(-g)) * u, in that order */
static void swiglu_range(float *g, const float *u, size_t n)
{
    float e[SWIGLU_CHUNK];

    for (size_t i0 = 0; i0 < n; i0 += SWIGLU_CHUNK) {
        const size_t m = n - i0 < SWIGLU_CHUNK ? n - i0 : SWIGLU_CHUNK;

        for (size_t i = 0; i < m; i++) {
            e[i] = -g[i0 + i];
        }
        bt_cpu_expf_n(e, m);
        for (size_t i = 0; i < m; i++) {
            g[i0 + i] = g[i0 + i] / (1.0f + e[i]) * u[i0 + i];
        }
    }
}

static void swiglu_task(void *vjob, int task, int thread)
{
    const swiglu_job_t *j = vjob;
    const size_t i0 = (size_t)task * SWIGLU_TASK;
    const size_t m = j->n - i0 < SWIGLU_TASK ? j->n - i0 : SWIGLU_TASK;

    (void)thread;
    swiglu_range(j->g + i0, j->u + i0, m);
}

static void cpu_swiglu(void *vctx, float *g, const float *u, size_t n)
{
    cpu_ctx_t *c = vctx;
    swiglu_job_t j = {g, u, n};

    if (n < 2 * SWIGLU_TASK) {
        swiglu_range(g, u, n);
        return;
    }
    bt_par_run(c->par, (int)((n + SWIGLU_TASK - 1) / SWIGLU_TASK),
               swiglu_task, &j);
}

static bt_status_t cpu_reserve(void *vctx, int max_ctx)
{
    cpu_ctx_t *c = vctx;
    /* the grouped kernels keep the scores of BT_ATTN_HEADS heads */
    const size_t need = (max_ctx > 0 ? (size_t)max_ctx : 1) * BT_ATTN_HEADS;

    if (need <= c->scratch_cap) {
        return BT_OK;
    }
    for (int i = 0; i < bt_par_threads(c->par); i++) {
        float *p = realloc(c->scratch[i], need * sizeof(float));

        if (p == NULL) {
            bt_error("cpu backend: out of memory for %zu attention scores",
                     need);
            return BT_ERR_NO_MEMORY;
        }
        c->scratch[i] = p;
    }
    c->scratch_cap = need;
    return BT_OK;
}

#if defined(__x86_64__)
/* Up to BT_ATTN_HEADS heads of one token that share a K/V head: each K
 * and V row is read once for all of them (cpu_attn.c); every head's
 * numbers are attn_task's. */
static void attn_heads_task(void *vjob, int task, int thread)
{
    const attn_job_t *j = vjob;
    const bt_attn_args_t *a = j->a;
    const int G = a->n_heads / a->n_kv_heads;
    const int nb = (G + BT_ATTN_HEADS - 1) / BT_ATTN_HEADS;
    const int t = task / (a->n_kv_heads * nb);
    const int g = task % (a->n_kv_heads * nb) / nb;
    const int h0 = g * G + task % nb * BT_ATTN_HEADS;
    const int nh = g * G + G - h0 < BT_ATTN_HEADS ? g * G + G - h0
                                                  : BT_ATTN_HEADS;
    const attn_span_t s = attn_span(a, t, g);
    const int hd = a->head_dim;
    const size_t ls = (size_t)(s.pos - s.start + 1);
    const float *q = a->q + ((size_t)t * a->n_heads + h0) * hd;
    float *out = a->out + ((size_t)t * a->n_heads + h0) * hd;
    float *sc = j->c->scratch[thread];
    float sum[BT_ATTN_HEADS];
    const char *kv_rows;
    int run;

    for (int p = s.start; p <= s.pos; p += run) {
        run = attn_span_run(&s, p, 0, &kv_rows);
        bt_cpu_qk_heads(q, nh, hd, kv_rows, s.ld, s.kv->dtype, run,
                        sc + (p - s.start), ls);
    }
    for (int hh = 0; hh < nh; hh++) {
        float *sh = sc + (size_t)hh * ls;

        sum[hh] = bt_cpu_exp_sum(sh, ls, bt_cpu_scale_max(sh, ls, a->scale));
    }
    memset(out, 0, (size_t)nh * hd * sizeof(float));
    for (int p = s.start; p <= s.pos; p += run) {
        run = attn_span_run(&s, p, 1, &kv_rows);
        bt_cpu_pv_heads(sc + (p - s.start), ls, nh, kv_rows, s.ld, s.kv->dtype,
                        run, out, hd);
    }
    for (int hh = 0; hh < nh; hh++) {
        for (int d = 0; d < hd; d++) {
            out[(size_t)hh * hd + d] = out[(size_t)hh * hd + d] / sum[hh];
        }
    }
}
#endif

static void cpu_attention(void *vctx, const bt_attn_args_t *a)
{
    cpu_ctx_t *c = vctx;
    attn_job_t j = {a, c};

#if defined(__x86_64__)
    if (bt_cpu_simd_on() && a->head_dim % 8 == 0) {
        const int G = a->n_heads / a->n_kv_heads;

        bt_par_run(c->par,
                   a->n_tokens * a->n_kv_heads *
                       ((G + BT_ATTN_HEADS - 1) / BT_ATTN_HEADS),
                   attn_heads_task, &j);
        return;
    }
#endif
    bt_par_run(c->par, a->n_tokens * a->n_heads, attn_task, &j);
}

const bt_backend_ops_t bt_backend_cpu = {
    .name = "cpu",
    .create = cpu_create,
    .destroy = cpu_destroy,
    .threads = cpu_threads,
    .matmul = cpu_matmul,
    .rmsnorm = cpu_rmsnorm,
    .swiglu = cpu_swiglu,
    .reserve = cpu_reserve,
    .attention = cpu_attention,
};
