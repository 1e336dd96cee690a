/* baton-enginebench: the engine's CPU backend on two synthetic BF16 models
 * written by the baton-mkmodel code, with yardsticks measured in the same
 * run:
 *   (a) Llama-3-shaped ~70M (hidden 256, 4 layers, 8/2 heads, FFN 768,
 *       vocab 128256), or with --model-a 1b Llama-3.2-1B-shaped (hidden
 *       2048, 16 layers, 32/8 heads, FFN 8192, vocab 128256, tied
 *       embeddings): decode tok/s at batch 1 and 16, as a fraction of the
 *       roofline (weight bytes per step / triad bandwidth);
 *   (b) ~200M (hidden 1024, 8 layers, 16/4 heads, FFN 2816, vocab 32000):
 *       prefill tok/s on 512 tokens, as a fraction of OpenBLAS cblas_sgemm
 *       on the same matmul shapes (f32, same threads);
 *   (c) with --llama-bench PATH: model (a) written as GGUF and timed by
 *       llama.cpp's llama-bench (tg128, pp512) alternated with our decode
 *       and prefill on the same weights, --rounds times (default 3): the
 *       ratio of each round and their spread.
 * Usage: baton-enginebench [--threads N] [--dir TMPDIR] [--model-a 70m|1b]
 *                          [--llama-bench PATH [--rounds N]] */
#include "base/clock.h"
#include "base/log.h"
#include "engine/model/forward.h"
#include "engine/kv/kv_pool.h"
#include "engine/model/parallel.h"
#include "engine/model/synth.h"
#include "gguf_export.h"
#include "llama_run.h"

#include <cblas.h>
#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BS 16

static int threads = 2;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: baton-enginebench [--threads N] [--dir TMPDIR] "
            "[--model-a 70m|1b]\n"
            "                         [--llama-bench PATH [--rounds N]]\n"
            "  --threads N        threads of every run (default 2)\n"
            "  --model-a SHAPE    the decode model (a) and llama.cpp's: 70m "
            "(default) or\n"
            "                     1b (Llama-3.2-1B-shaped, 2.5 GB of weights)\n"
            "  --dir DIR          where the synthetic models are written "
            "(default $TMPDIR or /tmp)\n"
            "  --llama-bench PATH also time llama.cpp's llama-bench on the "
            "decode model's\n"
            "                     weights (GGUF), alternated with ours\n"
            "  --rounds N         alternations with llama-bench (default 3)\n");
}

static void rm_model(const char *dir)
{
    char p[PATH_MAX];
    DIR *d = opendir(dir);
    struct dirent *e;

    while (d != NULL && (e = readdir(d)) != NULL) {
        if (e->d_name[0] != '.') {
            snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
            unlink(p);
        }
    }
    if (d != NULL) {
        closedir(d);
    }
    rmdir(dir);
}

/* ---- STREAM-like triad ---------------------------------------------- */

typedef struct {
    float *a, *b, *c;
    size_t n;
    int    parts;
} triad_t;

static void triad_task(void *ctx, int task, int thread)
{
    triad_t *t = ctx;
    size_t lo = t->n * (size_t)task / (size_t)t->parts;
    size_t hi = t->n * (size_t)(task + 1) / (size_t)t->parts;

    (void)thread;
    for (size_t i = lo; i < hi; i++) {
        t->a[i] = t->b[i] + 3.0f * t->c[i];
    }
}

/* Streaming read of the same arrays (what decode does with weights): one
 * xor per 8 bytes, no stores. */
typedef struct {
    const uint64_t *p;
    size_t          n;
    int             parts;
    uint64_t        sink[64];
} read_t;

static void read_task(void *ctx, int task, int thread)
{
    read_t *r = ctx;
    size_t lo = r->n * (size_t)task / (size_t)r->parts;
    size_t hi = r->n * (size_t)(task + 1) / (size_t)r->parts;
    uint64_t a = 0, b = 0, c = 0, d = 0;

    (void)thread;
    for (size_t i = lo; i + 4 <= hi; i += 4) {
        a ^= r->p[i];
        b ^= r->p[i + 1];
        c ^= r->p[i + 2];
        d ^= r->p[i + 3];
    }
    r->sink[task % 64] = a ^ b ^ c ^ d;
}

static double read_gbs(bt_par_t *par)
{
    const size_t bytes = 256u << 20;
    read_t r;
    double best = 0;
    uint64_t *p = malloc(bytes);

    if (p == NULL) {
        exit(1);
    }
    memset(p, 1, bytes);
    memset(&r, 0, sizeof(r));
    r.p = p;
    r.n = bytes / 8;
    r.parts = bt_par_threads(par);
    for (int k = 0; k < 5; k++) {
        uint64_t t0 = bt_now_ns();
        double s;

        bt_par_run(par, r.parts, read_task, &r);
        s = bt_elapsed_s(t0, bt_now_ns());
        best = bytes / s / 1e9 > best ? bytes / s / 1e9 : best;
    }
    free(p);
    return best;
}

static double triad_gbs(bt_par_t *par)
{
    triad_t t;
    double best = 0;

    t.n = 32u << 20;  /* 3 x 128 MiB, far beyond the caches */
    t.parts = bt_par_threads(par);
    t.a = malloc(t.n * sizeof(float));
    t.b = malloc(t.n * sizeof(float));
    t.c = malloc(t.n * sizeof(float));
    if (t.a == NULL || t.b == NULL || t.c == NULL) {
        exit(1);
    }
    for (size_t i = 0; i < t.n; i++) {
        t.a[i] = 0;
        t.b[i] = 1;
        t.c[i] = 2;
    }
    for (int r = 0; r < 5; r++) {
        uint64_t t0 = bt_now_ns();
        double s;

        bt_par_run(par, t.parts, triad_task, &t);
        s = bt_elapsed_s(t0, bt_now_ns());
        if (3.0 * t.n * sizeof(float) / s / 1e9 > best) {
            best = 3.0 * t.n * sizeof(float) / s / 1e9;
        }
    }
    free(t.a);
    free(t.b);
    free(t.c);
    return best;
}

/* ---- models ----------------------------------------------------------- */

static bt_model_t *make_model(const char *base, const char *name,
                              void (*shape)(bt_synth_spec_t *), char *dir)
{
    bt_synth_spec_t s;
    bt_model_t *m;
    uint64_t t0 = bt_now_ns();

    bt_synth_spec_default(&s, BT_ARCH_LLAMA);
    shape(&s);
    snprintf(dir, PATH_MAX, "%s/baton-enginebench-%s-%d", base, name,
             (int)getpid());
    if (bt_synth_write(&s, dir) != BT_OK || bt_model_load(dir, &m) != BT_OK) {
        fprintf(stderr, "enginebench: cannot write or load %s\n", dir);
        exit(1);
    }
    printf("model %s: %.1f M params, written in %.1f s\n", name,
           (double)m->weight_bytes / 2e6, bt_elapsed_s(t0, bt_now_ns()));
    return m;
}

static void shape_decode(bt_synth_spec_t *s)
{
    s->hidden = 256;
    s->n_layers = 4;
    s->n_heads = 8;
    s->n_kv_heads = 2;
    s->ffn = 768;
    s->vocab = 128256;
    s->rope_theta = 500000.0;
    s->max_pos = 8192;
}

static void shape_decode_1b(bt_synth_spec_t *s)
{
    s->hidden = 2048;
    s->n_layers = 16;
    s->n_heads = 32;
    s->n_kv_heads = 8;
    s->ffn = 8192;
    s->vocab = 128256;
    s->rope_theta = 500000.0;
    s->max_pos = 8192;
    s->tie_embeddings = true;
}

static void shape_prefill(bt_synth_spec_t *s)
{
    s->hidden = 1024;
    s->n_layers = 8;
    s->n_heads = 16;
    s->n_kv_heads = 4;
    s->ffn = 2816;
    s->vocab = 32000;
}

static void *kv_region(const bt_model_t *m, int n_blocks, bt_kv_view_t *kv)
{
    kv->dtype = BT_DTYPE_BF16;
    kv->n_layers = m->cfg.n_layers;
    kv->n_blocks = n_blocks;
    kv->block_size = BS;
    kv->n_kv_heads = m->cfg.n_kv_heads;
    kv->head_dim = m->cfg.head_dim;
    kv->base = calloc((size_t)m->cfg.n_layers * n_blocks * 2 * BS *
                      m->cfg.n_kv_heads * m->cfg.head_dim, 2);
    if (kv->base == NULL) {
        exit(1);
    }
    return kv->base;
}

/* decode tok/s with `batch` sequences of `ctx` prompt tokens each */
static double bench_decode(const bt_model_t *m, int batch, int ctx, int steps)
{
    const int per = (ctx + steps) / BS + 1;
    bt_kv_view_t kv;
    uint32_t *table = malloc((size_t)batch * per * sizeof(uint32_t));
    int32_t *toks = malloc((size_t)batch * (ctx + steps) * sizeof(int32_t));
    float *logits = malloc((size_t)batch * m->cfg.vocab * sizeof(float));
    bt_step_seq_t *seqs = calloc((size_t)batch, sizeof(*seqs));
    bt_fwd_t *f;
    uint64_t t0;
    double s;

    kv_region(m, batch * per, &kv);
    if (bt_fwd_create(m, NULL, threads, &f) != BT_OK) {
        exit(1);
    }
    for (int i = 0; i < batch * per; i++) {
        table[i] = (uint32_t)i;
    }
    for (int i = 0; i < batch * (ctx + steps); i++) {
        toks[i] = (int32_t)((i * 7919) % 4000 + 10);
    }
    for (int b = 0; b < batch; b++) {
        seqs[b] = (bt_step_seq_t){toks + (size_t)b * (ctx + steps), ctx, 0,
                                  table + (size_t)b * per, per, 1,
                                  logits + (size_t)b * m->cfg.vocab};
    }
    bt_fwd_step(f, &kv, seqs, batch, NULL);
    /* best of three passes over the same steps (each rewrites the same
     * positions), like the bandwidth yardstick: the machine may be shared */
    s = 1e30;
    for (int rep = 0; rep < 3; rep++) {
        double el;

        t0 = bt_now_ns();
        for (int st = 0; st < steps; st++) {
            for (int b = 0; b < batch; b++) {
                seqs[b].tokens = toks + (size_t)b * (ctx + steps) + ctx + st;
                seqs[b].n_tokens = 1;
                seqs[b].pos = ctx + st;
            }
            bt_fwd_step(f, &kv, seqs, batch, NULL);
        }
        el = bt_elapsed_s(t0, bt_now_ns());
        s = el < s ? el : s;
    }
    bt_fwd_destroy(f);
    free(kv.base);
    free(table);
    free(toks);
    free(logits);
    free(seqs);
    return (double)batch * steps / s;
}

static double bench_prefill(const bt_model_t *m, int n, int reps)
{
    const int per = n / BS + 1;
    bt_kv_view_t kv;
    uint32_t *table = malloc((size_t)per * sizeof(uint32_t));
    int32_t *toks = malloc((size_t)n * sizeof(int32_t));
    float *logits = malloc((size_t)m->cfg.vocab * sizeof(float));
    bt_fwd_t *f;
    double best = 1e30;

    kv_region(m, per, &kv);
    if (bt_fwd_create(m, NULL, threads, &f) != BT_OK) {
        exit(1);
    }
    for (int i = 0; i < per; i++) {
        table[i] = (uint32_t)i;
    }
    for (int i = 0; i < n; i++) {
        toks[i] = (int32_t)((i * 7919) % 30000 + 10);
    }
    for (int r = 0; r < reps; r++) {
        bt_step_seq_t s = {toks, n, 0, table, per, 1, logits};
        uint64_t t0 = bt_now_ns();
        double el;

        bt_fwd_step(f, &kv, &s, 1, NULL);
        el = bt_elapsed_s(t0, bt_now_ns());
        best = el < best ? el : best;
    }
    bt_fwd_destroy(f);
    free(kv.base);
    free(table);
    free(toks);
    free(logits);
    return n / best;
}

/* sgemm on every linear of one prefill (M = n rows), f32; returns seconds
 * (best of reps) and the flops through *flops_p. */
static double sgemm_prefill(const bt_model_t *m, int n, int reps,
                            double *flops_p)
{
    const bt_model_config_t *c = &m->cfg;
    const int qd = c->n_heads * c->head_dim, kvd = c->n_kv_heads * c->head_dim;
    const int shapes[][2] = {   /* {out, in} per layer */
        {qd, c->hidden}, {kvd, c->hidden}, {kvd, c->hidden},
        {c->hidden, qd}, {c->ffn, c->hidden}, {c->ffn, c->hidden},
        {c->hidden, c->ffn},
    };
    const int ns = (int)(sizeof(shapes) / sizeof(shapes[0]));
    size_t maxw = 0, maxio = 0;
    float *a, *w, *out;
    double best = 1e30, flops = 0;

    for (int i = 0; i < ns; i++) {
        size_t sw = (size_t)shapes[i][0] * shapes[i][1];

        maxw = sw > maxw ? sw : maxw;
        maxio = (size_t)shapes[i][0] > maxio ? (size_t)shapes[i][0] : maxio;
        maxio = (size_t)shapes[i][1] > maxio ? (size_t)shapes[i][1] : maxio;
        flops += 2.0 * n * shapes[i][0] * shapes[i][1] * c->n_layers;
    }
    a = calloc((size_t)n * maxio, sizeof(float));
    out = calloc((size_t)n * maxio, sizeof(float));
    w = malloc(maxw * sizeof(float));
    for (size_t i = 0; i < maxw; i++) {
        w[i] = (float)(i % 13) * 0.01f;
    }
    for (int r = 0; r < reps; r++) {
        uint64_t t0 = bt_now_ns();
        double el;

        for (int l = 0; l < c->n_layers; l++) {
            for (int i = 0; i < ns; i++) {
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n,
                            shapes[i][0], shapes[i][1], 1.0f, a, shapes[i][1],
                            w, shapes[i][1], 0.0f, out, shapes[i][0]);
            }
        }
        el = bt_elapsed_s(t0, bt_now_ns());
        best = el < best ? el : best;
    }
    free(a);
    free(w);
    free(out);
    *flops_p = flops;
    return best;
}

/* ---- llama.cpp on the same weights ------------------------------------ */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

static void spread(const char *what, double *r, int n)
{
    qsort(r, (size_t)n, sizeof(*r), cmp_double);
    printf("(c) %s: ours / llama.cpp over %d rounds: min %.2f, median %.2f, "
           "max %.2f\n", what, n, r[0], r[n / 2], r[n - 1]);
}

/* Alternates ours and llama-bench, one test at a time, so both see the
 * same moments of a shared machine. Best repetition against best. */
static int vs_llama(const bt_model_t *m, const char *exe, const char *base,
                    int rounds)
{
    char gguf[PATH_MAX], log[PATH_MAX], err[512];
    double tg_r[64], pp_r[64];
    int rc = 0;

    snprintf(gguf, sizeof(gguf), "%s/baton-enginebench-%d.gguf", base,
             (int)getpid());
    snprintf(log, sizeof(log), "%s/baton-enginebench-%d.llama.log", base,
             (int)getpid());
    if (bt_gguf_export(m, gguf, err, sizeof(err)) != 0) {
        fprintf(stderr, "enginebench: %s\n", err);
        return -1;
    }
    printf("(c) llama.cpp: %s on %s (llama-bench's messages: %s)\n", exe,
           gguf, log);
    for (int r = 0; r < rounds; r++) {
        bt_llama_ts_t ltg, lpp;
        double tg, pp;

        tg = bench_decode(m, 1, 1, 128);
        if (bt_llama_bench(exe, gguf, log, threads, 0, 128, 3, &ltg, err,
                           sizeof(err)) != 0) {
            rc = -1;
            break;
        }
        pp = bench_prefill(m, 512, 3);
        if (bt_llama_bench(exe, gguf, log, threads, 512, 0, 3, &lpp, err,
                           sizeof(err)) != 0) {
            rc = -1;
            break;
        }
        tg_r[r] = tg / ltg.best;
        pp_r[r] = pp / lpp.best;
        printf("(c) round %d: tg128 ours %.1f tok/s, llama.cpp %.1f (mean "
               "%.1f): %.2f; pp512 ours %.1f tok/s, llama.cpp %.1f (mean "
               "%.1f): %.2f\n", r + 1, tg, ltg.best, ltg.mean, tg_r[r], pp,
               lpp.best, lpp.mean, pp_r[r]);
        fflush(stdout);
    }
    if (rc != 0) {
        fprintf(stderr, "enginebench: %s\n", err);
    } else {
        spread("decode tg128", tg_r, rounds);
        spread("prefill pp512", pp_r, rounds);
    }
    unlink(gguf);
    return rc;
}

int main(int argc, char **argv)
{
    const char *base = getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp";
    char dir_a[PATH_MAX], dir_b[PATH_MAX];
    const char *llama = NULL;
    void (*shape_a)(bt_synth_spec_t *) = shape_decode;
    int rounds = 3, rc = 0;
    bt_model_t *ma, *mb;
    bt_par_t *par;
    double bw, rbw, d1, d16, pf, sg_s, flops, roof;
    size_t bytes;

    for (int i = 1; i < argc; i += 2) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "enginebench: %s needs a value\n", argv[i]);
            usage(stderr);
            return 2;
        }
        if (strcmp(argv[i], "--threads") == 0) {
            threads = atoi(argv[i + 1]);
        } else if (strcmp(argv[i], "--dir") == 0) {
            base = argv[i + 1];
        } else if (strcmp(argv[i], "--llama-bench") == 0) {
            llama = argv[i + 1];
        } else if (strcmp(argv[i], "--rounds") == 0) {
            rounds = atoi(argv[i + 1]);
        } else if (strcmp(argv[i], "--model-a") == 0) {
            if (strcmp(argv[i + 1], "70m") != 0 &&
                strcmp(argv[i + 1], "1b") != 0) {
                fprintf(stderr, "enginebench: --model-a takes 70m or 1b, "
                        "not %s\n", argv[i + 1]);
                return 2;
            }
            shape_a = argv[i + 1][0] == '1' ? shape_decode_1b : shape_decode;
        } else {
            fprintf(stderr, "enginebench: unknown option %s\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (threads < 1 || threads > 256 || rounds < 1 || rounds > 64) {
        fprintf(stderr, "enginebench: --threads 1..256, --rounds 1..64\n");
        return 2;
    }
    if (llama != NULL && access(llama, X_OK) != 0) {
        fprintf(stderr, "enginebench: %s is not an executable\n", llama);
        return 2;
    }
    bt_log_init("enginebench", BT_LOG_LEVEL_WARN, BT_LOG_FORMAT_TEXT);
    openblas_set_num_threads(threads);
    printf("baton-enginebench: %d threads, kernels %s (BATON_CPU_KERNELS caps "
           "them), kv bf16\n", threads, bt_cpu_kernels_name(bt_cpu_kernels()));
    par = bt_par_create(threads);
    bw = triad_gbs(par);
    rbw = read_gbs(par);
    printf("bandwidth before: triad %.1f GB/s, read %.1f GB/s\n", bw, rbw);

    ma = make_model(base, "decode", shape_a, dir_a);
    bytes = bt_model_bytes_per_token(ma);
    d1 = bench_decode(ma, 1, 32, 64);
    d16 = bench_decode(ma, 16, 32, 16);
    /* the machine may be shared: take the best bandwidth seen around the
     * decode runs, so the fraction errs low */
    {
        double t2 = triad_gbs(par), r2 = read_gbs(par);

        printf("bandwidth after: triad %.1f GB/s, read %.1f GB/s\n", t2, r2);
        bw = t2 > bw ? t2 : bw;
        rbw = r2 > rbw ? r2 : rbw;
    }
    bt_par_destroy(par);
    if (rbw > bw) {
        bw = rbw;
    }
    roof = bw * 1e9 / (double)bytes;
    printf("(a) decode batch 1: %.1f tok/s; roofline %.1f tok/s (%.1f MB of "
           "weights per step at %.1f GB/s, the best of triad and read): "
           "%.2f of roofline\n", d1, roof, bytes / 1e6, bw, d1 / roof);
    printf("(a) decode batch 16: %.1f tok/s (%.2f x the batch-1 roofline)\n",
           d16, d16 / roof);
    if (llama != NULL && vs_llama(ma, llama, base, rounds) != 0) {
        rc = 1;
    }
    bt_model_destroy(ma);
    rm_model(dir_a);

    mb = make_model(base, "prefill", shape_prefill, dir_b);
    pf = bench_prefill(mb, 512, 2);
    sg_s = sgemm_prefill(mb, 512, 2, &flops);
    printf("(b) prefill 512 tokens: %.1f tok/s (%.1f GFLOP/s of matmul); "
           "OpenBLAS sgemm on the same shapes: %.1f GFLOP/s (%.1f tok/s "
           "equivalent): %.2f of sgemm\n", pf, flops / (512.0 / pf) / 1e9,
           flops / sg_s / 1e9, 512.0 / sg_s, pf / (512.0 / sg_s));
    bt_model_destroy(mb);
    rm_model(dir_b);
    return rc;
}
