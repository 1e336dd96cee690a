/* baton-cudaenginebench: the CUDA device step on a Llama-3-8B-shaped model
 * whose weights are made on the GPU (32 layers, hidden 4096, 32/8 heads of
 * 128, FFN 14336, vocabulary 128256, bf16): prefill tokens/s of one
 * sequence, decode tokens/s at batch 1 and at batch B, with the bytes and
 * FLOPs per token, so that tests/cuda/device-check.sh reports them as
 * fractions of the ceilings baton-cudaceilings measured in the same run.
 * Prints "name value" lines.
 * usage: baton-cudaenginebench exact|fast [PROMPT [BATCH [CTX]]] */
#include "engine/kv/kv_pool.h"
#include "engine/model/backend_select.h"
#include "engine/model/forward.h"
#include "kvspec/kv_hash.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static bt_mat_t mat(int rows, int cols)
{
    return (bt_mat_t){ .data = NULL, .dtype = BT_DTYPE_BF16, .rows = rows,
                       .cols = cols };
}

/* The shape, no data: the device step makes the weights on the GPU. */
static void llama8b(bt_model_t *m)
{
    bt_model_config_t *c = &m->cfg;
    const int H = 4096, L = 32, NH = 32, NKV = 8, HD = 128, F = 14336,
              V = 128256;

    memset(m, 0, sizeof(*m));
    c->arch = BT_ARCH_LLAMA;
    c->hidden = H; c->n_layers = L; c->n_heads = NH; c->n_kv_heads = NKV;
    c->head_dim = HD; c->ffn = F; c->vocab = V; c->max_pos = 131072;
    c->norm_eps = 1e-5f; c->rope_theta = 500000.0;
    c->torch_dtype = BT_DTYPE_BF16;
    c->bos_id = c->eos_id = -1;
    m->w.embed = mat(V, H);
    m->w.lm_head = mat(V, H);
    m->w.layers = calloc(L, sizeof(*m->w.layers));
    for (int l = 0; l < L; l++) {
        bt_layer_weights_t *w = &m->w.layers[l];

        w->wq = mat(NH * HD, H);
        w->wk = mat(NKV * HD, H);
        w->wv = mat(NKV * HD, H);
        w->wo = mat(H, NH * HD);
        w->ffn.gate = mat(F, H);
        w->ffn.up = mat(F, H);
        w->ffn.down = mat(H, F);
    }
    m->rope_inv_freq = malloc(HD / 2 * sizeof(float));
    for (int i = 0; i < HD / 2; i++) {
        m->rope_inv_freq[i] = (float)pow(c->rope_theta, -2.0 * i / HD);
    }
    /* every matrix but the embedding table, read once per decode step */
    m->weight_bytes = (size_t)2 * ((size_t)L * ((size_t)H * NH * HD * 2 +
                                                (size_t)2 * H * NKV * HD +
                                                (size_t)3 * H * F) +
                                   (size_t)V * H);
}

typedef struct {
    bt_fwd_t     *fwd;
    bt_kvpool_t  *pool;
    bt_kv_view_t  kv;
    uint8_t       root[BT_KV_HASH_LEN];
    float        *logits;
    int           vocab;
} bench_t;

/* One step of `n` sequences, each adding `per` tokens after `pos`. */
static int step(bench_t *b, bt_kvseq_t **seqs, int n, int per, int pos)
{
    bt_step_seq_t *ss = calloc((size_t)n, sizeof(*ss));
    int32_t *toks = malloc((size_t)n * per * sizeof(int32_t));
    uint32_t *u = malloc((size_t)per * sizeof(uint32_t));
    int rc = 0;

    for (int i = 0; i < n && rc == 0; i++) {
        for (int j = 0; j < per; j++) {
            toks[(size_t)i * per + j] = (int32_t)((i * 31 + pos + j) % 100000) + 1;
            u[j] = (uint32_t)toks[(size_t)i * per + j];
        }
        rc = bt_kvseq_append(seqs[i], u, (uint32_t)per) == BT_OK ? 0 : -1;
        ss[i] = (bt_step_seq_t){ .tokens = toks + (size_t)i * per, .n_tokens = per,
            .pos = pos, .block_table = bt_kvseq_blocks(seqs[i]),
            .n_blocks = (int)bt_kvseq_n_blocks(seqs[i]), .n_logits = 1,
            .logits = b->logits + (size_t)i * b->vocab };
    }
    if (rc == 0 && bt_fwd_step(b->fwd, &b->kv, ss, n, NULL) != BT_OK) {
        rc = -1;
    }
    for (int i = 0; rc == 0 && i < n; i++) {
        bt_kvseq_set_computed(seqs[i], (uint32_t)(pos + per));
    }
    free(ss); free(toks); free(u);
    return rc;
}

int main(int argc, char **argv)
{
    const bool fast = argc > 1 && strcmp(argv[1], "fast") == 0;
    const int prompt = argc > 2 ? atoi(argv[2]) : 512;
    const int batch = argc > 3 ? atoi(argv[3]) : 64;
    const int ctx = argc > 4 ? atoi(argv[4]) : 128;
    const int reps = 8;
    bt_backend_choice_t ch;
    bt_kvpool_config_t pc;
    bt_model_t m;
    bench_t b;
    bt_kvseq_t **seqs;
    char err[256];
    double t0, t;
    const double flops_tok = 2.0 * (double)(32.0 * (4096.0 * 4096 * 2 +
                                                    2.0 * 4096 * 1024 +
                                                    3.0 * 4096 * 14336) +
                                            128256.0 * 4096);

    if (argc < 2 || (!fast && strcmp(argv[1], "exact") != 0) || prompt < 1 ||
        batch < 1 || ctx < 1) {
        fprintf(stderr, "usage: baton-cudaenginebench exact|fast [PROMPT [BATCH "
                "[CTX]]]\n");
        return 2;
    }
    llama8b(&m);
    memset(&b, 0, sizeof(b));
    b.vocab = m.cfg.vocab;
    b.logits = malloc((size_t)(batch > 1 ? batch : 1) * m.cfg.vocab * sizeof(float));
    if (bt_backend_choose(BT_BACKEND_CUDA, fast ? BT_NUMERICS_FAST : BT_NUMERICS_EXACT,
                          1, &ch, err, sizeof(err)) != BT_OK) {
        fprintf(stderr, "baton-cudaenginebench: %s\n", err);
        return 1;
    }
    t0 = now_s();
    if (bt_backend_fwd_create(&ch, &m, 1, &b.fwd, err, sizeof(err)) != BT_OK) {
        fprintf(stderr, "baton-cudaenginebench: %s\n", err);
        return 1;
    }
    printf("numerics %s\nweights_made_s %.2f\nweight_bytes %zu\nflops_per_token %.4g\n",
           ch.id, now_s() - t0, m.weight_bytes, flops_tok);
    memset(&pc, 0, sizeof(pc));
    pc.geom = (bt_kv_geom_t){ 32, 8, 128, 16, BT_KV_DTYPE_BF16 };
    pc.n_blocks = (uint32_t)((prompt + reps + 32) / 16 + 1 +
                             batch * ((ctx + reps + 32) / 16 + 1));
    if (bt_kvpool_create(&pc, &b.pool) != BT_OK ||
        bt_kv_view_from_pool(b.pool, &b.kv) != BT_OK ||
        bt_kv_hash_root("bench", NULL, BT_KV_DTYPE_BF16, 16, ch.id, NULL, 0,
                        b.root) != BT_OK) {
        fprintf(stderr, "baton-cudaenginebench: no room for the KV pool\n");
        return 1;
    }
    seqs = calloc((size_t)batch, sizeof(*seqs));
    for (int i = 0; i < batch; i++) {
        bt_kvseq_create(b.pool, b.root, &seqs[i]);
    }
    /* prefill of one sequence (a warm-up first: allocations, the RoPE table) */
    if (step(&b, seqs, 1, prompt, 0) != 0) {
        fprintf(stderr, "baton-cudaenginebench: a prefill step failed\n");
        return 1;
    }
    bt_kvseq_destroy(seqs[0]);
    bt_kvseq_create(b.pool, b.root, &seqs[0]);
    t0 = now_s();
    step(&b, seqs, 1, prompt, 0);
    t = now_s() - t0;
    printf("prefill_tokens %d\nprefill_tok_s %.1f\n", prompt, prompt / t);
    /* decode at batch 1 after that prompt */
    step(&b, seqs, 1, 1, prompt);
    t0 = now_s();
    for (int r = 0; r < reps; r++) {
        step(&b, seqs, 1, 1, prompt + 1 + r);
    }
    t = now_s() - t0;
    printf("decode1_context %d\ndecode1_tok_s %.2f\n", prompt, reps / t);
    /* decode at batch B, contexts of ctx tokens */
    for (int i = 0; i < batch; i++) {
        bt_kvseq_destroy(seqs[i]);
        bt_kvseq_create(b.pool, b.root, &seqs[i]);
    }
    for (int i0 = 0; i0 < batch; i0 += 8) {
        step(&b, seqs + i0, batch - i0 < 8 ? batch - i0 : 8, ctx, 0);
    }
    step(&b, seqs, batch, 1, ctx);
    t0 = now_s();
    for (int r = 0; r < reps; r++) {
        if (step(&b, seqs, batch, 1, ctx + 1 + r) != 0) {
            fprintf(stderr, "baton-cudaenginebench: a decode step failed\n");
            return 1;
        }
    }
    t = now_s() - t0;
    printf("decodeB_batch %d\ndecodeB_context %d\ndecodeB_tok_s %.1f\n", batch, ctx,
           batch * reps / t);
    return 0;
}
