/* Batch invariance, bit for bit (memcmp of logits and K/V): a token's
 * results do not depend on its batch companions, on prompt chunking, on
 * prefill vs decode, on the thread count, on SIMD vs portable kernels, on
 * a prefix coming from cached blocks, or on KV imported from another pool. */
#include "eng_test_util.h"

#include "engine/kv/kv_pool.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#define NB   64   /* blocks per region */
#define BS   8    /* tokens per block */

typedef eng_model_fx_t fx_t;

static int setup_model(void **state, bt_arch_t arch)
{
    bt_synth_spec_t s;

    bt_synth_spec_default(&s, arch);
    s.seed = 3;
    return eng_model_fx_setup(state, &s);
}

static int setup_llama(void **state)
{
    return setup_model(state, BT_ARCH_LLAMA);
}

static int setup_moe(void **state)
{
    return setup_model(state, BT_ARCH_QWEN2_MOE);
}

static int teardown(void **state)
{
    return eng_model_fx_teardown(state);
}

static void make_tokens(int32_t *t, int n, int seed, int vocab)
{
    uint32_t x = (uint32_t)seed * 2654435761u + 1;

    for (int i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        t[i] = (int32_t)((x >> 8) % (uint32_t)vocab);
    }
}

/* Runs a prompt in chunks of `chunk` tokens with logits for every
 * position: logits [n][V]. */
static void run_chunked(bt_fwd_t *f, const bt_kv_view_t *kv,
                        const uint32_t *table, const int32_t *toks, int n,
                        int chunk, float *logits, int V)
{
    for (int p = 0; p < n; p += chunk) {
        int m = n - p < chunk ? n - p : chunk;
        bt_step_seq_t s = {toks + p, m, p, table, NB, m,
                           logits + (size_t)p * V};

        assert_int_equal(bt_fwd_step(f, kv, &s, 1, NULL), BT_OK);
    }
}

/* K/V of positions [0, n) of two sequences are the same bytes. */
static void assert_kv_equal(const bt_kv_view_t *a, const uint32_t *ta,
                            const bt_kv_view_t *b, const uint32_t *tb, int n)
{
    const size_t row = (size_t)a->n_kv_heads * a->head_dim *
                       bt_dtype_size(a->dtype);

    for (int l = 0; l < a->n_layers; l++) {
        for (int p = 0; p < n; p++) {
            for (int kv = 0; kv < 2; kv++) {
                assert_memory_equal(
                    bt_kv_view_at(a, l, ta[p / a->block_size], kv,
                                  p % a->block_size),
                    bt_kv_view_at(b, l, tb[p / b->block_size], kv,
                                  p % b->block_size), row);
            }
        }
    }
}

static void test_alone_vs_batched(void **state)
{
    fx_t *fx = *state;
    const int V = fx->V;
    static const int lens[8] = {5, 19, 1, 33, 7, 12, 2, 26};
    const int A = 1;  /* the sequence under test */
    int32_t toks[8][64];
    bt_step_seq_t seqs[8];
    float *alone = malloc(64 * (size_t)V * sizeof(float));
    float *batched[8];
    eng_kv_t k1, k2;
    bt_fwd_t *f;

    assert_int_equal(bt_fwd_create(fx->m, NULL, 2, &f), BT_OK);
    assert_int_equal(eng_kv_init(&k1, fx->m, BT_DTYPE_BF16, NB, BS), 0);
    assert_int_equal(eng_kv_init(&k2, fx->m, BT_DTYPE_BF16, NB, BS), 0);
    for (int i = 0; i < 8; i++) {
        make_tokens(toks[i], 64, 100 + i, V);
        batched[i] = malloc(64 * (size_t)V * sizeof(float));
    }
    /* alone, all in one step */
    run_chunked(f, &k1.view, k1.table, toks[A], lens[A], 64, alone, V);
    /* batched with 7 others of other lengths, each in its own blocks */
    for (int i = 0; i < 8; i++) {
        seqs[i] = (bt_step_seq_t){toks[i], lens[i], 0, k2.table + i * 8, 8,
                                  lens[i], batched[i]};
    }
    assert_int_equal(bt_fwd_step(f, &k2.view, seqs, 8, NULL), BT_OK);
    assert_memory_equal(alone, batched[A], (size_t)lens[A] * V * sizeof(float));
    assert_kv_equal(&k1.view, k1.table, &k2.view, k2.table + A * 8, lens[A]);

    /* a decode step alone vs next to 6 decodes and one prefill chunk */
    {
        int32_t next = 7;
        bt_step_seq_t s = {&next, 1, lens[A], k1.table, NB, 1, alone};

        assert_int_equal(bt_fwd_step(f, &k1.view, &s, 1, NULL), BT_OK);
        for (int i = 0; i < 8; i++) {
            seqs[i].pos = lens[i];
            seqs[i].tokens = i == A ? &next : &toks[i][lens[i]];
            seqs[i].n_tokens = i == 3 ? 9 : 1;  /* 3 continues its prefill */
            seqs[i].n_logits = 1;
        }
        assert_int_equal(bt_fwd_step(f, &k2.view, seqs, 8, NULL), BT_OK);
        assert_memory_equal(alone, batched[A], (size_t)V * sizeof(float));
        assert_kv_equal(&k1.view, k1.table, &k2.view, k2.table + A * 8,
                        lens[A] + 1);
    }
    for (int i = 0; i < 8; i++) {
        free(batched[i]);
    }
    free(alone);
    eng_kv_cleanup(&k1);
    eng_kv_cleanup(&k2);
    bt_fwd_destroy(f);
}

static void test_chunking(void **state)
{
    fx_t *fx = *state;
    const int V = fx->V, n = 40;
    static const int chunks[] = {1, 7, 16};
    int32_t toks[40];
    float *ref = malloc((size_t)n * V * sizeof(float));
    float *got = malloc((size_t)n * V * sizeof(float));
    eng_kv_t k1, k2;
    bt_fwd_t *f;

    make_tokens(toks, n, 7, V);
    assert_int_equal(bt_fwd_create(fx->m, NULL, 2, &f), BT_OK);
    assert_int_equal(eng_kv_init(&k1, fx->m, BT_DTYPE_F32, NB, BS), 0);
    run_chunked(f, &k1.view, k1.table, toks, n, n, ref, V);
    for (size_t c = 0; c < sizeof(chunks) / sizeof(chunks[0]); c++) {
        assert_int_equal(eng_kv_init(&k2, fx->m, BT_DTYPE_F32, NB, BS), 0);
        run_chunked(f, &k2.view, k2.table, toks, n, chunks[c], got, V);
        assert_memory_equal(ref, got, (size_t)n * V * sizeof(float));
        assert_kv_equal(&k1.view, k1.table, &k2.view, k2.table, n);
        eng_kv_cleanup(&k2);
    }
    free(ref);
    free(got);
    eng_kv_cleanup(&k1);
    bt_fwd_destroy(f);
}

static void test_threads_and_simd(void **state)
{
    fx_t *fx = *state;
    const int V = fx->V, n = 23;
    int32_t toks[23];
    float *ref = malloc((size_t)n * V * sizeof(float));
    float *got = malloc((size_t)n * V * sizeof(float));
    eng_kv_t k1, k2;
    bt_fwd_t *f1, *f2;

    make_tokens(toks, n, 9, V);
    assert_int_equal(bt_fwd_create(fx->m, NULL, 1, &f1), BT_OK);
    assert_int_equal(bt_fwd_create(fx->m, NULL, 3, &f2), BT_OK);
    assert_int_equal(eng_kv_init(&k1, fx->m, BT_DTYPE_F16, NB, BS), 0);
    assert_int_equal(eng_kv_init(&k2, fx->m, BT_DTYPE_F16, NB, BS), 0);
    run_chunked(f1, &k1.view, k1.table, toks, n, 5, ref, V);
    run_chunked(f2, &k2.view, k2.table, toks, n, 5, got, V);
    assert_memory_equal(ref, got, (size_t)n * V * sizeof(float));
    assert_kv_equal(&k1.view, k1.table, &k2.view, k2.table, n);

    /* AVX2 and portable kernels give the bits of the best (AVX-512's
     * prefill tile where the CPU has it) */
    print_message("# best kernels here: %s\n",
                  bt_cpu_kernels_name(bt_cpu_kernels()));
    for (int most = BT_CPU_AVX2; most >= BT_CPU_PORTABLE; most--) {
        bt_cpu_limit_kernels((bt_cpu_kernels_t)most);
        run_chunked(f2, &k2.view, k2.table, toks, n, n, got, V);
        bt_cpu_limit_kernels(BT_CPU_AVX512);
        assert_memory_equal(ref, got, (size_t)n * V * sizeof(float));
        assert_kv_equal(&k1.view, k1.table, &k2.view, k2.table, n);
    }
    free(ref);
    free(got);
    eng_kv_cleanup(&k1);
    eng_kv_cleanup(&k2);
    bt_fwd_destroy(f1);
    bt_fwd_destroy(f2);
}

/* Generated tokens fed back as a prompt give the K/V and logits they had
 * when decoded one at a time. */
static void test_refeed(void **state)
{
    fx_t *fx = *state;
    const int V = fx->V, np = 10, ng = 12;
    int32_t toks[32];
    float *dec = malloc((size_t)(np + ng) * V * sizeof(float));
    float *all = malloc((size_t)(np + ng) * V * sizeof(float));
    eng_kv_t k1, k2;
    bt_fwd_t *f;

    make_tokens(toks, np, 11, V);
    assert_int_equal(bt_fwd_create(fx->m, NULL, 2, &f), BT_OK);
    assert_int_equal(eng_kv_init(&k1, fx->m, BT_DTYPE_BF16, NB, BS), 0);
    assert_int_equal(eng_kv_init(&k2, fx->m, BT_DTYPE_BF16, NB, BS), 0);
    run_chunked(f, &k1.view, k1.table, toks, np, np, dec, V);
    for (int i = 0; i < ng; i++) {
        const int p = np + i;
        bt_step_seq_t s;

        toks[p] = eng_argmax(dec + (size_t)(p - 1) * V, V);
        s = (bt_step_seq_t){&toks[p], 1, p, k1.table, NB, 1,
                            dec + (size_t)p * V};
        assert_int_equal(bt_fwd_step(f, &k1.view, &s, 1, NULL), BT_OK);
    }
    run_chunked(f, &k2.view, k2.table, toks, np + ng, np + ng, all, V);
    assert_memory_equal(dec, all, (size_t)(np + ng) * V * sizeof(float));
    assert_kv_equal(&k1.view, k1.table, &k2.view, k2.table, np + ng);
    free(dec);
    free(all);
    eng_kv_cleanup(&k1);
    eng_kv_cleanup(&k2);
    bt_fwd_destroy(f);
}

/* ---- with the KV pool ------------------------------------------------- */

static bt_kvpool_t *make_pool(const bt_model_t *m)
{
    bt_kvpool_config_t c;
    bt_kvpool_t *pool = NULL;

    memset(&c, 0, sizeof(c));
    c.geom.n_layers = (uint32_t)m->cfg.n_layers;
    c.geom.n_kv_heads = (uint32_t)m->cfg.n_kv_heads;
    c.geom.head_dim = (uint32_t)m->cfg.head_dim;
    c.geom.block_size = BS;
    c.geom.dtype = BT_KV_DTYPE_BF16;
    c.n_blocks = 32;
    assert_int_equal(bt_kvpool_create(&c, &pool), BT_OK);
    return pool;
}

/* Appends and computes n tokens; logits of the last one into `out`. */
static void seq_run(bt_fwd_t *f, bt_kvpool_t *pool, bt_kvseq_t *seq,
                    const int32_t *toks, int n, float *out)
{
    bt_kv_view_t kv;
    uint32_t u[64];
    const int pos = (int)bt_kvseq_n_tokens(seq);
    bt_step_seq_t s;

    for (int i = 0; i < n; i++) {
        u[i] = (uint32_t)toks[i];
    }
    assert_int_equal(bt_kv_view_from_pool(pool, &kv), BT_OK);
    assert_int_equal(bt_kvseq_append(seq, u, (uint32_t)n), BT_OK);
    s = (bt_step_seq_t){toks, n, pos, bt_kvseq_blocks(seq),
                        (int)bt_kvseq_n_blocks(seq), 1, out};
    assert_int_equal(bt_fwd_step(f, &kv, &s, 1, NULL), BT_OK);
    assert_int_equal(bt_kvseq_set_computed(seq, (uint32_t)(pos + n)), BT_OK);
}

static void test_pool_prefix_cache(void **state)
{
    fx_t *fx = *state;
    const int V = fx->V, n = 37;
    uint8_t root[BT_KV_HASH_LEN];
    int32_t toks[40];
    uint32_t u[40], matched = 0;
    float *ref = malloc((size_t)V * sizeof(float));
    float *got = malloc((size_t)V * sizeof(float));
    bt_kvpool_t *pool = make_pool(fx->m);
    bt_kvseq_t *s1, *s2;
    bt_fwd_t *f;

    make_tokens(toks, n, 13, V);
    for (int i = 0; i < n; i++) {
        u[i] = (uint32_t)toks[i];
    }
    assert_int_equal(bt_fwd_create(fx->m, NULL, 2, &f), BT_OK);
    assert_int_equal(bt_kv_hash_root("test", NULL, BT_KV_DTYPE_BF16, BS,
                                     "cpu/exact/tp1/k1", NULL, 0, root), BT_OK);
    assert_int_equal(bt_kvseq_create(pool, root, &s1), BT_OK);
    seq_run(f, pool, s1, toks, n, ref);
    bt_kvseq_destroy(s1);   /* full blocks stay cached */

    assert_int_equal(bt_kvseq_create(pool, root, &s2), BT_OK);
    assert_int_equal(bt_kvseq_match_prefix(s2, u, n - 1, NULL, &matched),
                     BT_OK);
    assert_int_equal(matched, (uint32_t)((n - 1) / BS));
    seq_run(f, pool, s2, toks + matched * BS, n - (int)matched * BS, got);
    assert_memory_equal(ref, got, (size_t)V * sizeof(float));
    bt_kvseq_destroy(s2);
    bt_kvpool_destroy(pool);
    bt_fwd_destroy(f);
    free(ref);
    free(got);
}

static void test_pool_export_import(void **state)
{
    fx_t *fx = *state;
    const int V = fx->V, n = 24;  /* 3 full blocks */
    uint8_t root[BT_KV_HASH_LEN];
    int32_t toks[32];
    uint32_t u[32], ids[3];
    float *ref = malloc((size_t)V * sizeof(float));
    float *got = malloc((size_t)V * sizeof(float));
    bt_kvpool_t *pa = make_pool(fx->m), *pb = make_pool(fx->m);
    bt_kvseq_t *sa, *sb;
    bt_fwd_t *f;
    size_t bytes;
    void *buf;
    int32_t next = 5;

    make_tokens(toks, n, 17, V);
    for (int i = 0; i < n; i++) {
        u[i] = (uint32_t)toks[i];
    }
    assert_int_equal(bt_fwd_create(fx->m, NULL, 2, &f), BT_OK);
    assert_int_equal(bt_kv_hash_root("test", NULL, BT_KV_DTYPE_BF16, BS,
                                     "cpu/exact/tp1/k1", NULL, 0, root), BT_OK);
    /* pool A: prefill, then export; keep decoding there for reference */
    assert_int_equal(bt_kvseq_create(pa, root, &sa), BT_OK);
    seq_run(f, pa, sa, toks, n, ref);
    bytes = bt_kvpool_export_bytes(pa, 3);
    buf = malloc(bytes);
    assert_int_equal(bt_kvpool_export(pa, bt_kvseq_blocks(sa), 3, buf, bytes),
                     BT_OK);
    /* pool B: reserve, import, commit, then decode as if computed here */
    assert_int_equal(bt_kvpool_reserve(pb, 3, ids), BT_OK);
    assert_int_equal(bt_kvpool_import(pb, ids, 3, buf, bytes), BT_OK);
    assert_int_equal(bt_kvseq_create(pb, root, &sb), BT_OK);
    assert_int_equal(bt_kvseq_commit_reserved(sb, ids, 3, u, (uint32_t)n),
                     BT_OK);
    seq_run(f, pa, sa, &next, 1, ref);
    seq_run(f, pb, sb, &next, 1, got);
    assert_memory_equal(ref, got, (size_t)V * sizeof(float));
    free(buf);
    bt_kvseq_destroy(sa);
    bt_kvseq_destroy(sb);
    bt_kvpool_destroy(pa);
    bt_kvpool_destroy(pb);
    bt_fwd_destroy(f);
    free(ref);
    free(got);
}

/* ---- hooks, errors, MoE counters ---------------------------------------- */

typedef struct {
    int             calls;
    int             last;
    const eng_kv_t *kv;
    int             pos;
    bool            written;
} hook_t;

static void layer_done(void *ctx, int layer)
{
    hook_t *h = ctx;
    const float *k = bt_kv_view_at(&h->kv->view, layer, 0, 0, h->pos);
    bool nonzero = false;

    for (int i = 0; i < h->kv->view.n_kv_heads * h->kv->view.head_dim; i++) {
        nonzero |= k[i] != 0.0f;
    }
    h->written &= nonzero;
    h->calls++;
    assert_int_equal(layer, h->last + 1);
    h->last = layer;
}

static void test_layer_hook_and_errors(void **state)
{
    fx_t *fx = *state;
    const int V = fx->V;
    int32_t toks[4] = {1, 2, 3, 4}, bad = V;
    float *lg = malloc(4 * (size_t)V * sizeof(float));
    eng_kv_t kv;
    bt_fwd_t *f;
    hook_t h = {0, -1, NULL, 3, true};
    bt_step_hooks_t hooks = {layer_done, &h};
    bt_step_seq_t s = {toks, 4, 0, NULL, NB, 1, lg};
    bt_kv_view_t other;

    assert_int_equal(bt_fwd_create(fx->m, NULL, 2, &f), BT_OK);
    assert_int_equal(eng_kv_init(&kv, fx->m, BT_DTYPE_F32, NB, BS), 0);
    h.kv = &kv;
    s.block_table = kv.table;
    assert_int_equal(bt_fwd_step(f, &kv.view, &s, 1, &hooks), BT_OK);
    assert_int_equal(h.calls, fx->m->cfg.n_layers);
    assert_true(h.written);

    bt_log_set_level(BT_LOG_LEVEL_OFF);
    s.tokens = &bad;
    s.n_tokens = 1;
    assert_int_equal(bt_fwd_step(f, &kv.view, &s, 1, NULL),
                     BT_ERR_INVALID_ARG);
    s.tokens = toks;
    s.n_tokens = 4;
    s.pos = NB * BS - 2;  /* runs past the table */
    assert_int_equal(bt_fwd_step(f, &kv.view, &s, 1, NULL),
                     BT_ERR_INVALID_ARG);
    s.pos = 0;
    other = kv.view;
    other.head_dim = 2;
    assert_int_equal(bt_fwd_step(f, &other, &s, 1, NULL), BT_ERR_INVALID_ARG);
    s.n_logits = 5;
    assert_int_equal(bt_fwd_step(f, &kv.view, &s, 1, NULL),
                     BT_ERR_INVALID_ARG);
    bt_log_set_level(BT_LOG_LEVEL_WARN);
    free(lg);
    eng_kv_cleanup(&kv);
    bt_fwd_destroy(f);
}

static void test_moe_invariance_and_stats(void **state)
{
    fx_t *fx = *state;
    const bt_model_config_t *c = &fx->m->cfg;
    const int V = fx->V, E = c->n_experts, K = c->n_experts_used;
    int32_t a[20], b[11];
    float *ref = malloc(20 * (size_t)V * sizeof(float));
    float *got = malloc(20 * (size_t)V * sizeof(float));
    float *other = malloc(11 * (size_t)V * sizeof(float));
    eng_kv_t k1, k2;
    bt_fwd_t *f;
    bt_moe_stats_t st;
    uint64_t sum;

    make_tokens(a, 20, 21, V);
    make_tokens(b, 11, 22, V);
    assert_int_equal(bt_fwd_create(fx->m, NULL, 2, &f), BT_OK);
    assert_int_equal(eng_kv_init(&k1, fx->m, BT_DTYPE_BF16, NB, BS), 0);
    assert_int_equal(eng_kv_init(&k2, fx->m, BT_DTYPE_BF16, NB, BS), 0);
    run_chunked(f, &k1.view, k1.table, a, 20, 20, ref, V);
    assert_int_equal(bt_fwd_moe_stats(f, true, &st), BT_OK);
    assert_int_equal(st.n_layers, c->n_layers);
    assert_int_equal(st.n_experts, E);
    for (int l = 0; l < c->n_layers; l++) {
        sum = 0;
        for (int e = 0; e < E; e++) {
            sum += st.tokens[l * E + e];
        }
        assert_int_equal(sum, 20 * K);
        if (l + 1 < c->n_layers) {
            sum = 0;
            for (int i = 0; i < E * E; i++) {
                sum += st.transitions[(size_t)l * E * E + i];
            }
            assert_int_equal(sum, 20 * K * K);
        }
    }
    bt_moe_stats_cleanup(&st);
    {
        bt_step_seq_t s[2] = {
            {b, 11, 0, k2.table, 8, 11, other},
            {a, 20, 0, k2.table + 8, 8, 20, got},
        };

        assert_int_equal(bt_fwd_step(f, &k2.view, s, 2, NULL), BT_OK);
    }
    assert_memory_equal(ref, got, 20 * (size_t)V * sizeof(float));
    assert_int_equal(bt_fwd_moe_stats(f, false, &st), BT_OK);
    sum = 0;
    for (int e = 0; e < E; e++) {
        sum += st.tokens[e];
    }
    assert_int_equal(sum, 31 * K);   /* the reset took effect */
    bt_moe_stats_cleanup(&st);
    free(ref);
    free(got);
    free(other);
    eng_kv_cleanup(&k1);
    eng_kv_cleanup(&k2);
    bt_fwd_destroy(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_alone_vs_batched, setup_llama,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_chunking, setup_llama, teardown),
        cmocka_unit_test_setup_teardown(test_threads_and_simd, setup_llama,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_refeed, setup_llama, teardown),
        cmocka_unit_test_setup_teardown(test_pool_prefix_cache, setup_llama,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_pool_export_import, setup_llama,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_layer_hook_and_errors,
                                        setup_llama, teardown),
        cmocka_unit_test_setup_teardown(test_moe_invariance_and_stats,
                                        setup_moe, teardown),
    };

    bt_log_init("test", BT_LOG_LEVEL_WARN, BT_LOG_FORMAT_TEXT);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
