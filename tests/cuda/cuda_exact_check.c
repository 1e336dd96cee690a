/* The CUDA backend's `exact` kernels against the CPU engine, bit for bit
 * (issue 20: `exact` is bit-identical to the CPU backend). Each kernel
 * runs on random data of awkward shapes (rows not a multiple of the
 * block's, lengths not a multiple of 8, every weight and KV dtype, NaN,
 * overflow and underflow in the exp, GQA, sliding windows, blocks of a
 * sequence scattered in the pool) and its output is compared with the
 * CPU operation's: the count of differing elements must be 0. Batch
 * invariance follows: a batch's rows equal the CPU's, which equal the
 * CPU's rows alone. Without a GPU it prints a TAP skip plan; it is built
 * wherever nvcc is, run by the device check (tests/cuda/device-check.sh). */
#include "engine/cuda/cuda_kernels.h"
#include "engine/dtype.h"
#include "engine/model/backend.h"
#include "engine/model/cpu_exp.h"
#include "engine/model/forward.h"

#include <cuda_runtime.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int n_test, n_failed;
static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint32_t rnd32(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}

/* uniform in [-a, a) */
static float rndf(float a)
{
    return ((float)(rnd32() & 0xffffff) / (float)(1 << 24) * 2.0f - 1.0f) * a;
}

static void fill(float *x, size_t n, float a)
{
    for (size_t i = 0; i < n; i++) {
        x[i] = rndf(a);
    }
}

static void tap(int ok, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void tap(int ok, const char *fmt, ...)
{
    va_list ap;

    n_test++;
    n_failed += !ok;
    printf("%s %d - ", ok ? "ok" : "not ok", n_test);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
}

/* Elements whose bits differ (NaN equals NaN of any payload only when the
 * CPU's is NaN too: both are "a NaN"). */
static size_t diff_bits(const float *a, const float *b, size_t n)
{
    size_t bad = 0;

    for (size_t i = 0; i < n; i++) {
        uint32_t x, y;

        memcpy(&x, &a[i], 4);
        memcpy(&y, &b[i], 4);
        if (x != y && !(isnan(a[i]) && isnan(b[i]))) {
            /* the first few, for whoever has to find why */
            if (bad < 3) {
                printf("# element %zu: cpu %.9g (0x%08x) gpu %.9g (0x%08x)\n",
                       i, (double)a[i], x, (double)b[i], y);
            }
            bad++;
        }
    }
    return bad;
}

static void *dev_copy(const void *host, size_t bytes)
{
    void *d = NULL;

    if (cudaMalloc(&d, bytes > 0 ? bytes : 1) != cudaSuccess ||
        (bytes > 0 && cudaMemcpy(d, host, bytes, cudaMemcpyHostToDevice) !=
                          cudaSuccess)) {
        fprintf(stderr, "cuda_exact_check: cannot copy %zu bytes to the GPU\n",
                bytes);
        exit(1);
    }
    return d;
}

static void host_copy(void *host, const void *dev, size_t bytes)
{
    if (cudaDeviceSynchronize() != cudaSuccess ||
        cudaMemcpy(host, dev, bytes, cudaMemcpyDeviceToHost) != cudaSuccess) {
        fprintf(stderr, "cuda_exact_check: a kernel failed: %s\n",
                cudaGetErrorString(cudaGetLastError()));
        exit(1);
    }
}

/* Weights of `rows` x `cols` in dtype wt, from f32 values. */
static void *make_weights(int rows, int cols, bt_dtype_t wt, float a)
{
    const size_t n = (size_t)rows * cols;
    float *f = malloc(n * sizeof(float));
    void *w = malloc(n * bt_dtype_size(wt));

    fill(f, n, a);
    bt_dtype_convert_row(f, BT_DTYPE_F32, w, wt, n);
    free(f);
    return w;
}

static void check_matmul(void *cpu)
{
    static const int shapes[][3] = { /* n, rows, cols */
        {1, 96, 200}, {3, 33, 7}, {5, 257, 4096}, {64, 128, 256}, {17, 1000, 77},
    };

    for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
        for (int wt = 0; wt < 3; wt++) {
            const int n = shapes[s][0], rows = shapes[s][1], cols = shapes[s][2];
            float *x = malloc((size_t)n * cols * sizeof(float));
            float *bias = malloc((size_t)rows * sizeof(float));
            float *yc = malloc((size_t)n * rows * sizeof(float));
            float *yg = malloc((size_t)n * rows * sizeof(float));
            void *w = make_weights(rows, cols, (bt_dtype_t)wt, 0.5f);
            bt_mat_t m = {.data = w, .dtype = (bt_dtype_t)wt, .rows = rows,
                          .cols = cols};
            const int with_bias = (int)(s % 2);
            float *dx, *db, *dy;
            void *dw;

            fill(x, (size_t)n * cols, 2.0f);
            fill(bias, (size_t)rows, 1.0f);
            bt_backend_cpu.matmul(cpu, x, n, &m, with_bias ? bias : NULL, yc);
            dx = dev_copy(x, (size_t)n * cols * sizeof(float));
            db = dev_copy(bias, (size_t)rows * sizeof(float));
            dw = dev_copy(w, (size_t)rows * cols * bt_dtype_size((bt_dtype_t)wt));
            dy = dev_copy(NULL, (size_t)n * rows * sizeof(float));
            bt_cuda_matmul(dx, n, dw, wt, rows, cols, with_bias ? db : NULL, dy,
                           NULL);
            host_copy(yg, dy, (size_t)n * rows * sizeof(float));
            {
                size_t bad = diff_bits(yc, yg, (size_t)n * rows);

                tap(bad == 0, "matmul %d x %d . (%d x %d %s)^T%s: %zu of %d "
                    "elements differ from the CPU's", n, cols, rows, cols,
                    bt_dtype_name((bt_dtype_t)wt), with_bias ? " + bias" : "",
                    bad, n * rows);
            }
            cudaFree(dx); cudaFree(db); cudaFree(dw); cudaFree(dy);
            free(x); free(bias); free(yc); free(yg); free(w);
        }
    }
}

/* The `fast` matmul: each row of a 64-row product equals the same row
 * computed alone, bit for bit (batch invariance), and the product is
 * within bf16 rounding of the CPU's exact one (relative L2 error). */
static void check_matmul_fast(void *cpu)
{
    enum { N = 64, ROWS = 200, COLS = 1000 };
    float *x = malloc((size_t)N * COLS * sizeof(float));
    float *yc = malloc((size_t)N * ROWS * sizeof(float));
    float *yb = malloc((size_t)N * ROWS * sizeof(float));
    float *y1 = malloc((size_t)ROWS * sizeof(float));
    void *w = make_weights(ROWS, COLS, BT_DTYPE_BF16, 0.5f);
    bt_mat_t m = {.data = w, .dtype = BT_DTYPE_BF16, .rows = ROWS, .cols = COLS};
    float *dx = NULL, *dy = NULL;
    void *dw = NULL;
    size_t differ = 0;
    double num = 0, den = 0;

    fill(x, (size_t)N * COLS, 2.0f);
    bt_backend_cpu.matmul(cpu, x, N, &m, NULL, yc);
    dx = dev_copy(x, (size_t)N * COLS * sizeof(float));
    dw = dev_copy(w, (size_t)ROWS * COLS * 2);
    dy = dev_copy(NULL, (size_t)N * ROWS * sizeof(float));
    bt_cuda_matmul_fast(dx, N, dw, BT_DTYPE_BF16, ROWS, COLS, NULL, dy, NULL);
    host_copy(yb, dy, (size_t)N * ROWS * sizeof(float));
    for (int r = 0; r < N; r += 7) {
        bt_cuda_matmul_fast(dx + (size_t)r * COLS, 1, dw, BT_DTYPE_BF16, ROWS, COLS,
                            NULL, dy, NULL);
        host_copy(y1, dy, (size_t)ROWS * sizeof(float));
        differ += diff_bits(y1, yb + (size_t)r * ROWS, ROWS);
    }
    for (size_t i = 0; i < (size_t)N * ROWS; i++) {
        num += ((double)yb[i] - yc[i]) * ((double)yb[i] - yc[i]);
        den += (double)yc[i] * yc[i];
    }
    tap(differ == 0, "fast matmul: rows of a 64-row product equal the rows "
        "alone, bit for bit (%zu differ)", differ);
    tap(den > 0 && sqrt(num / den) < 1e-2, "fast matmul within bf16 rounding "
        "of the exact one: relative L2 error %.2e (bound 1e-2)",
        den > 0 ? sqrt(num / den) : -1.0);
    cudaFree(dx); cudaFree(dw); cudaFree(dy);
    free(x); free(yc); free(yb); free(y1); free(w);
}

static void check_rmsnorm_swiglu(void *cpu)
{
    static const int dims[][2] = { {5, 4096}, {12, 100}, {1, 7} };
    const size_t ns = 20011;
    float *g = malloc(ns * sizeof(float)), *u = malloc(ns * sizeof(float));
    float *gc = malloc(ns * sizeof(float));
    float *dg, *du;

    for (size_t k = 0; k < sizeof(dims) / sizeof(dims[0]); k++) {
        const int n = dims[k][0], d = dims[k][1];
        float *x = malloc((size_t)n * d * sizeof(float));
        float *w = malloc((size_t)d * sizeof(float));
        float *yc = malloc((size_t)n * d * sizeof(float));
        float *yg = malloc((size_t)n * d * sizeof(float));
        float *dx, *dw, *dy;
        size_t bad;

        fill(x, (size_t)n * d, 3.0f);
        fill(w, (size_t)d, 1.5f);
        bt_backend_cpu.rmsnorm(cpu, x, w, n, d, 1e-6f, yc);
        dx = dev_copy(x, (size_t)n * d * sizeof(float));
        dw = dev_copy(w, (size_t)d * sizeof(float));
        dy = dev_copy(NULL, (size_t)n * d * sizeof(float));
        bt_cuda_rmsnorm(dx, dw, n, d, 1e-6f, dy, NULL);
        host_copy(yg, dy, (size_t)n * d * sizeof(float));
        bad = diff_bits(yc, yg, (size_t)n * d);
        /* in place, as the q/k norms run */
        bt_cuda_rmsnorm(dx, dw, n, d, 1e-6f, dx, NULL);
        host_copy(yg, dx, (size_t)n * d * sizeof(float));
        bad += diff_bits(yc, yg, (size_t)n * d);
        tap(bad == 0, "rmsnorm %d x %d (and in place): %zu differ", n, d, bad);
        cudaFree(dx); cudaFree(dw); cudaFree(dy);
        free(x); free(w); free(yc); free(yg);
    }
    /* the exp's whole range: underflow, overflow, NaN, zeros */
    fill(g, ns, 60.0f);
    fill(u, ns, 2.0f);
    g[0] = 120.0f; g[1] = -120.0f; g[2] = NAN; g[3] = 0.0f; g[4] = -0.0f;
    g[5] = 88.7f; g[6] = -103.9f; g[7] = INFINITY; g[8] = -INFINITY;
    memcpy(gc, g, ns * sizeof(float));
    bt_backend_cpu.swiglu(cpu, gc, u, ns);
    dg = dev_copy(g, ns * sizeof(float));
    du = dev_copy(u, ns * sizeof(float));
    bt_cuda_swiglu(dg, du, ns, NULL);
    host_copy(g, dg, ns * sizeof(float));
    {
        size_t bad = diff_bits(gc, g, ns);

        tap(bad == 0, "swiglu over %zu values (the exp's range, NaN, inf): %zu "
            "differ", ns, bad);
    }
    cudaFree(dg); cudaFree(du);
    free(g); free(u); free(gc);
}

/* Two sequences in a pool with their blocks scattered; T tokens of them
 * (a prefill chunk of one, a decode token of the other). */
static void check_attention(void *cpu)
{
    static const int cfgs[][5] = { /* n_heads, n_kv, head_dim, window, dtype */
        {8, 2, 64, 0, BT_DTYPE_F32}, {8, 2, 64, 0, BT_DTYPE_BF16},
        {4, 4, 40, 0, BT_DTYPE_F16}, {8, 1, 128, 5, BT_DTYPE_BF16},
        {6, 3, 36, 9, BT_DTYPE_F32},
    };
    const int BS = 16, NB = 24, L = 2, layer = 1;

    for (size_t c = 0; c < sizeof(cfgs) / sizeof(cfgs[0]); c++) {
        const int nh = cfgs[c][0], nkv = cfgs[c][1], hd = cfgs[c][2];
        const int window = cfgs[c][3];
        const bt_dtype_t dt = (bt_dtype_t)cfgs[c][4];
        const size_t pool_elems = (size_t)L * NB * 2 * BS * nkv * hd;
        void *pool = malloc(pool_elems * bt_dtype_size(dt));
        float *pf = malloc(pool_elems * sizeof(float));
        uint32_t tab_a[8] = {5, 17, 2, 9, 23, 0, 11, 14}, tab_b[8] = {3, 21, 7, 1};
        enum { T = 9 };
        int32_t pos[T];
        const uint32_t *tables[T];
        uint32_t off[T], flat[16];
        float *q = malloc((size_t)T * nh * hd * sizeof(float));
        float *oc = malloc((size_t)T * nh * hd * sizeof(float));
        float *og = malloc((size_t)T * nh * hd * sizeof(float));
        bt_kv_view_t kv = {pool, dt, L, NB, BS, nkv, hd, NULL};
        bt_attn_args_t a;
        bt_cuda_kv_t dkv;
        int max_ctx = 0;
        float *dq, *dout, *dscr;
        int32_t *dpos;
        uint32_t *dtab, *doff;
        size_t bad;

        fill(pf, pool_elems, 1.5f);
        bt_dtype_convert_row(pf, BT_DTYPE_F32, pool, dt, pool_elems);
        /* tokens 0..7: positions 100..107 of sequence a; 8: position 50 of b */
        memcpy(flat, tab_a, sizeof(tab_a));
        memcpy(flat + 8, tab_b, sizeof(tab_b));
        for (int t = 0; t < T; t++) {
            pos[t] = t < 8 ? 100 + t : 50;
            tables[t] = t < 8 ? tab_a : tab_b;
            off[t] = t < 8 ? 0 : 8;
            max_ctx = pos[t] + 1 > max_ctx ? pos[t] + 1 : max_ctx;
        }
        fill(q, (size_t)T * nh * hd, 1.0f);
        memset(&a, 0, sizeof(a));
        a.n_tokens = T; a.n_heads = nh; a.n_kv_heads = nkv; a.head_dim = hd;
        a.layer = layer; a.window = window; a.scale = 1.0f / sqrtf((float)hd);
        a.q = q; a.out = oc; a.pos = pos; a.tables = tables; a.kv = &kv;
        bt_backend_cpu.reserve(cpu, max_ctx);
        bt_backend_cpu.attention(cpu, &a);
        dkv.base = dev_copy(pool, pool_elems * bt_dtype_size(dt));
        dkv.dtype = (int)dt; dkv.n_layers = L; dkv.n_blocks = NB;
        dkv.block_size = BS; dkv.n_kv_heads = nkv; dkv.head_dim = hd;
        dq = dev_copy(q, (size_t)T * nh * hd * sizeof(float));
        dout = dev_copy(NULL, (size_t)T * nh * hd * sizeof(float));
        dscr = dev_copy(NULL, (size_t)T * nh * max_ctx * sizeof(float));
        dpos = dev_copy(pos, sizeof(pos));
        dtab = dev_copy(flat, sizeof(flat));
        doff = dev_copy(off, sizeof(off));
        bt_cuda_attention(dq, dout, T, nh, nkv, hd, layer, window, a.scale, dpos,
                          dtab, doff, &dkv, dscr, max_ctx, NULL);
        host_copy(og, dout, (size_t)T * nh * hd * sizeof(float));
        bad = diff_bits(oc, og, (size_t)T * nh * hd);
        tap(bad == 0, "attention %d heads / %d kv, head_dim %d, window %d, kv %s, "
            "%d tokens of 2 sequences: %zu of %d differ", nh, nkv, hd, window,
            bt_dtype_name(dt), T, bad, T * nh * hd);

        /* the K/V store of the same tokens into the pool */
        {
            const int kvd = nkv * hd;
            float *k = malloc((size_t)T * kvd * sizeof(float));
            float *v = malloc((size_t)T * kvd * sizeof(float));
            void *pg = malloc(pool_elems * bt_dtype_size(dt));
            float *dk, *dv;

            fill(k, (size_t)T * kvd, 4.0f);
            fill(v, (size_t)T * kvd, 4.0f);
            k[0] = NAN; v[1] = 1e30f; k[2] = 6e-8f;
            for (int t = 0; t < T; t++) {
                const uint32_t blk = tables[t][pos[t] / BS];

                bt_dtype_convert_row(k + (size_t)t * kvd, BT_DTYPE_F32,
                                     bt_kv_view_at(&kv, layer, blk, 0, pos[t] % BS),
                                     dt, (size_t)kvd);
                bt_dtype_convert_row(v + (size_t)t * kvd, BT_DTYPE_F32,
                                     bt_kv_view_at(&kv, layer, blk, 1, pos[t] % BS),
                                     dt, (size_t)kvd);
            }
            dk = dev_copy(k, (size_t)T * kvd * sizeof(float));
            dv = dev_copy(v, (size_t)T * kvd * sizeof(float));
            bt_cuda_kv_store(dk, dv, T, layer, dpos, dtab, doff, &dkv, NULL);
            host_copy(pg, dkv.base, pool_elems * bt_dtype_size(dt));
            tap(memcmp(pg, pool, pool_elems * bt_dtype_size(dt)) == 0,
                "kv store of %d tokens as %s (NaN, overflow, subnormal): the "
                "pool's bytes equal the CPU's", T, bt_dtype_name(dt));
            cudaFree(dk); cudaFree(dv);
            free(k); free(v); free(pg);
        }
        cudaFree(dkv.base); cudaFree(dq); cudaFree(dout); cudaFree(dscr);
        cudaFree(dpos); cudaFree(dtab); cudaFree(doff);
        free(pool); free(pf); free(q); free(oc); free(og);
    }
}

static void check_rope_embed(void)
{
    enum { T = 6, NH = 4, HD = 64, V = 50, H = 72 };
    bt_model_t m;
    float inv_freq[HD / 2];
    int32_t pos[T] = {0, 1, 7, 4095, 123456, 31};
    int32_t toks[T] = {0, 49, 3, 3, 17, 25};
    float *cs = malloc((size_t)T * HD * sizeof(float));
    float *table = malloc((size_t)T * HD * sizeof(float));
    float x[T * NH * HD], xg[T * NH * HD];
    int32_t seq[T];
    float *dx, *dcs;
    int32_t *dpos;

    memset(&m, 0, sizeof(m));
    m.cfg.head_dim = HD;
    for (int i = 0; i < HD / 2; i++) {
        inv_freq[i] = powf(500000.0f, -2.0f * (float)i / HD);
    }
    m.rope_inv_freq = inv_freq;
    bt_fwd_rope_tables(&m, pos, T, cs);
    /* the device reads row pos[t] of a table; here row t holds pos[t] */
    for (int t = 0; t < T; t++) {
        seq[t] = t;
        memcpy(table + (size_t)t * HD, cs + (size_t)t * HD, HD * sizeof(float));
    }
    fill(x, sizeof(x) / sizeof(x[0]), 3.0f);
    dx = dev_copy(x, sizeof(x));
    dcs = dev_copy(table, (size_t)T * HD * sizeof(float));
    dpos = dev_copy(seq, sizeof(seq));
    for (int t = 0; t < T; t++) {
        bt_fwd_rope_apply(x + (size_t)t * NH * HD, NH, HD, cs + (size_t)t * HD);
    }
    bt_cuda_rope(dx, T, NH, HD, dpos, dcs, NULL);
    host_copy(xg, dx, sizeof(xg));
    {
        size_t bad = diff_bits(x, xg, sizeof(x) / sizeof(x[0]));

        tap(bad == 0, "rope of %d tokens x %d heads (positions to 123456): %zu "
            "differ", T, NH, bad);
    }
    cudaFree(dx); cudaFree(dcs); cudaFree(dpos);
    for (int et = 0; et < 3; et++) {
        void *emb = make_weights(V, H, (bt_dtype_t)et, 0.3f);
        float want[T * H], got[T * H];
        float *dxe;
        void *demb = dev_copy(emb, (size_t)V * H * bt_dtype_size((bt_dtype_t)et));
        int32_t *dtok = dev_copy(toks, sizeof(toks));

        for (int t = 0; t < T; t++) {
            bt_dtype_convert_row((const char *)emb + (size_t)toks[t] * H *
                                 bt_dtype_size((bt_dtype_t)et), (bt_dtype_t)et,
                                 want + (size_t)t * H, BT_DTYPE_F32, H);
        }
        dxe = dev_copy(NULL, sizeof(got));
        bt_cuda_embed(demb, et, H, dtok, T, dxe, NULL);
        host_copy(got, dxe, sizeof(got));
        tap(diff_bits(want, got, T * H) == 0, "embedding rows of %s",
            bt_dtype_name((bt_dtype_t)et));
        cudaFree(dxe); cudaFree(demb); cudaFree(dtok);
        free(emb);
    }
    free(cs);
    free(table);
}

static void check_moe(void)
{
    enum { T = 37, E = 64, K = 6, H = 96 };
    bt_model_config_t c;
    float logits[T * E], selw[T * K], selw_g[T * K];
    int sel[T * K], sel_g[T * K];
    float *so = malloc((size_t)T * K * H * sizeof(float));
    float *sh = malloc((size_t)T * H * sizeof(float));
    float sgate[T];
    float *yc = malloc((size_t)T * H * sizeof(float));
    float *yg = malloc((size_t)T * H * sizeof(float));
    float *dl, *dw, *dso, *dsh, *dsg, *dy;
    int *ds;

    for (int norm = 0; norm < 2; norm++) {
        memset(&c, 0, sizeof(c));
        c.n_experts = E;
        c.n_experts_used = K;
        c.norm_topk_prob = norm;
        fill(logits, T * E, 6.0f);
        logits[5] = logits[9];   /* a tie: the lower expert first */
        for (int t = 0; t < T; t++) {
            bt_fwd_moe_route(&c, logits + t * E, sel + t * K, selw + t * K);
        }
        dl = dev_copy(logits, sizeof(logits));
        ds = dev_copy(NULL, sizeof(sel_g));
        dw = dev_copy(NULL, sizeof(selw_g));
        bt_cuda_moe_route(dl, T, E, K, norm, ds, dw, NULL);
        host_copy(sel_g, ds, sizeof(sel_g));
        host_copy(selw_g, dw, sizeof(selw_g));
        tap(memcmp(sel, sel_g, sizeof(sel)) == 0 &&
            diff_bits(selw, selw_g, T * K) == 0,
            "moe routing, %d tokens, top %d of %d%s: the same experts and weights",
            T, K, E, norm ? ", renormalized" : "");
        cudaFree(dl); cudaFree(ds); cudaFree(dw);
    }
    fill(so, (size_t)T * K * H, 2.0f);
    fill(sh, (size_t)T * H, 2.0f);
    fill(sgate, T, 8.0f);
    bt_fwd_moe_combine(so, selw, T, K, H, yc);
    dso = dev_copy(so, (size_t)T * K * H * sizeof(float));
    dw = dev_copy(selw, sizeof(selw));
    dy = dev_copy(NULL, (size_t)T * H * sizeof(float));
    bt_cuda_moe_combine(dso, dw, T, K, H, NULL, NULL, dy, NULL);
    host_copy(yg, dy, (size_t)T * H * sizeof(float));
    tap(diff_bits(yc, yg, (size_t)T * H) == 0, "moe combine in slot order");
    bt_fwd_moe_shared_add(sgate, sh, T, H, yc);
    dsh = dev_copy(sh, (size_t)T * H * sizeof(float));
    dsg = dev_copy(sgate, sizeof(sgate));
    bt_cuda_moe_combine(dso, dw, T, K, H, dsg, dsh, dy, NULL);
    host_copy(yg, dy, (size_t)T * H * sizeof(float));
    tap(diff_bits(yc, yg, (size_t)T * H) == 0, "moe combine with the shared "
        "expert's gate");
    cudaFree(dso); cudaFree(dw); cudaFree(dy); cudaFree(dsh); cudaFree(dsg);
    free(so); free(sh); free(yc); free(yg);
}

int main(void)
{
    int devices = 0;
    void *cpu = NULL;

    if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
        printf("1..0 # SKIP no CUDA device here: built, not run\n");
        return 0;
    }
    if (bt_backend_cpu.create(2, &cpu) != BT_OK) {
        printf("Bail out! cannot start the CPU backend\n");
        return 1;
    }
    for (int scalar = 0; scalar < 2; scalar++) {
        /* both CPU paths give the same bits; check against each */
        bt_cpu_force_scalar(scalar != 0);
        printf("# CPU kernels: %s path\n", scalar ? "portable" : "AVX2");
        check_matmul(cpu);
        check_rmsnorm_swiglu(cpu);
        check_attention(cpu);
    }
    check_matmul_fast(cpu);
    check_rope_embed();
    check_moe();
    bt_backend_cpu.destroy(cpu);
    printf("1..%d\n", n_test);
    return n_failed > 0;
}
