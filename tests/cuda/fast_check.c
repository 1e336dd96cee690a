/* `fast` numerics on the GPU (issue 20): the logits of one sequence are
 * the same bits whatever batch it runs in (1, 2, 8 or 64 sequences of
 * other lengths beside it) and however its prompt is chunked (all at once,
 * chunks of 5, of 16), and they are within a stated tolerance of the CPU
 * backend's exact logits (relative L2 error, printed). `exact` on the GPU
 * is run the same way and must equal the CPU bit for bit in every case.
 * usage: fast_check MODEL_DIR   (TAP; skips without a GPU) */
#include "engine/kv/kv_pool.h"
#include "engine/model/backend_select.h"
#include "engine/model/forward.h"
#include "kvspec/kv_hash.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PROMPT 40
#define DECODE 4
#define FAST_TOLERANCE 5e-2   /* relative L2 of the logits against exact */

static int n_test, n_failed;

static void tap(int ok, const char *what, double v)
{
    n_test++;
    n_failed += !ok;
    printf("%s %d - %s (%.3g)\n", ok ? "ok" : "not ok", n_test, what, v);
    fflush(stdout);
}

typedef struct {
    const bt_model_t *m;
    bt_fwd_t         *fwd;
    bt_kvpool_t      *pool;
    bt_kv_view_t      kv;
    uint8_t           root[BT_KV_HASH_LEN];
} ctx_t;

static int32_t tok(int seq, int i)
{
    return (int32_t)((seq * 7919 + i * 104729 + 13) % 1000) + 1;
}

/* Runs `B` sequences (sequence 0 the one watched, the others of other
 * lengths), their prompts in chunks of `chunk`, then DECODE steps of
 * fixed tokens; out gets sequence 0's logits: the prompt's last, then
 * each decode step's. */
static int run(ctx_t *c, int B, int chunk, float *out)
{
    const int V = c->m->cfg.vocab;
    bt_kvseq_t **seqs = calloc((size_t)B, sizeof(*seqs));
    int *len = calloc((size_t)B, sizeof(int)), *done = calloc((size_t)B, sizeof(int));
    int32_t *toks = calloc((size_t)B * (PROMPT * 2 + DECODE), sizeof(int32_t));
    bt_step_seq_t *ss = calloc((size_t)B, sizeof(*ss));
    float *logits = calloc((size_t)B * V, sizeof(float));
    int rc = -1, left;

    for (int b = 0; b < B; b++) {
        len[b] = b == 0 ? PROMPT : 3 + (b * 37) % (2 * PROMPT);
        for (int i = 0; i < len[b] + DECODE; i++) {
            toks[(size_t)b * (PROMPT * 2 + DECODE) + i] = tok(b, i);
        }
        if (bt_kvseq_create(c->pool, c->root, &seqs[b]) != BT_OK) {
            goto out;
        }
    }
    /* prefill: each step takes the next chunk of every unfinished prompt */
    do {
        int n = 0;

        left = 0;
        for (int b = 0; b < B; b++) {
            const int take = len[b] - done[b] < chunk ? len[b] - done[b] : chunk;
            const int32_t *t = toks + (size_t)b * (PROMPT * 2 + DECODE) + done[b];
            uint32_t u[2 * PROMPT];

            if (take == 0) {
                continue;
            }
            for (int i = 0; i < take; i++) {
                u[i] = (uint32_t)t[i];
            }
            if (bt_kvseq_append(seqs[b], u, (uint32_t)take) != BT_OK) {
                goto out;
            }
            ss[n] = (bt_step_seq_t){ .tokens = t, .n_tokens = take,
                .pos = done[b], .block_table = bt_kvseq_blocks(seqs[b]),
                .n_blocks = (int)bt_kvseq_n_blocks(seqs[b]),
                .n_logits = done[b] + take == len[b] ? 1 : 0,
                .logits = logits + (size_t)b * V };
            n++;
        }
        if (n > 0 && bt_fwd_step(c->fwd, &c->kv, ss, n, NULL) != BT_OK) {
            goto out;
        }
        for (int b = 0; b < B; b++) {
            const int take = len[b] - done[b] < chunk ? len[b] - done[b] : chunk;

            done[b] += take;
            bt_kvseq_set_computed(seqs[b], (uint32_t)done[b]);
            left += len[b] - done[b];
        }
    } while (left > 0);
    memcpy(out, logits, (size_t)V * sizeof(float));
    for (int d = 0; d < DECODE; d++) {
        for (int b = 0; b < B; b++) {
            const int32_t *t = toks + (size_t)b * (PROMPT * 2 + DECODE) + len[b] + d;
            uint32_t u = (uint32_t)*t;

            if (bt_kvseq_append(seqs[b], &u, 1) != BT_OK) {
                goto out;
            }
            ss[b] = (bt_step_seq_t){ .tokens = t, .n_tokens = 1,
                .pos = len[b] + d, .block_table = bt_kvseq_blocks(seqs[b]),
                .n_blocks = (int)bt_kvseq_n_blocks(seqs[b]), .n_logits = 1,
                .logits = logits + (size_t)b * V };
        }
        if (bt_fwd_step(c->fwd, &c->kv, ss, B, NULL) != BT_OK) {
            goto out;
        }
        for (int b = 0; b < B; b++) {
            bt_kvseq_set_computed(seqs[b], (uint32_t)(len[b] + d + 1));
        }
        memcpy(out + (size_t)(d + 1) * V, logits, (size_t)V * sizeof(float));
    }
    rc = 0;
out:
    for (int b = 0; b < B; b++) {
        bt_kvseq_destroy(seqs[b]);
    }
    free(seqs); free(len); free(done); free(toks); free(ss); free(logits);
    return rc;
}

static int ctx_open(ctx_t *c, const bt_model_t *m, bt_backend_kind_t kind,
                    bt_numerics_mode_t mode, char *err, size_t err_size)
{
    bt_backend_choice_t ch;
    bt_kvpool_config_t pc;

    memset(c, 0, sizeof(*c));
    c->m = m;
    if (bt_backend_choose(kind, mode, 1, &ch, err, err_size) != BT_OK ||
        bt_backend_fwd_create(&ch, m, 2, &c->fwd, err, err_size) != BT_OK) {
        return -1;
    }
    memset(&pc, 0, sizeof(pc));
    pc.geom = (bt_kv_geom_t){ (uint32_t)m->cfg.n_layers, (uint32_t)m->cfg.n_kv_heads,
                              (uint32_t)m->cfg.head_dim, 16, BT_KV_DTYPE_F32 };
    pc.n_blocks = 1024;
    if (bt_kvpool_create(&pc, &c->pool) != BT_OK ||
        bt_kv_view_from_pool(c->pool, &c->kv) != BT_OK ||
        bt_kv_hash_root("check", NULL, BT_KV_DTYPE_F32, 16, ch.id, NULL, 0,
                        c->root) != BT_OK) {
        snprintf(err, err_size, "cannot make the KV pool");
        return -1;
    }
    return 0;
}

static void ctx_close(ctx_t *c)
{
    bt_fwd_destroy(c->fwd);
    bt_kvpool_destroy(c->pool);
}

int main(int argc, char **argv)
{
    static const int batches[] = {1, 2, 8, 64}, chunks[] = {PROMPT, 5, 16};
    bt_model_t *m = NULL;
    ctx_t cpu, gpu;
    char err[256];
    float *ref, *cur, *base;
    size_t rows;

    if (argc != 2 || bt_model_load(argv[1], &m) != BT_OK) {
        printf("Bail out! usage: fast_check MODEL_DIR (a model that loads)\n");
        return 1;
    }
    rows = (size_t)(DECODE + 1) * m->cfg.vocab;
    ref = malloc(rows * sizeof(float));
    cur = malloc(rows * sizeof(float));
    base = malloc(rows * sizeof(float));
    if (ctx_open(&cpu, m, BT_BACKEND_CPU, BT_NUMERICS_EXACT, err, sizeof(err)) != 0 ||
        run(&cpu, 1, PROMPT, ref) != 0) {
        printf("Bail out! the CPU reference: %s\n", err);
        return 1;
    }
    for (int mode = 0; mode < 2; mode++) {
        const char *name = mode ? "fast" : "exact";
        size_t differ = 0;
        double num = 0, den = 0;

        if (ctx_open(&gpu, m, BT_BACKEND_CUDA, (bt_numerics_mode_t)mode, err,
                     sizeof(err)) != 0) {
            printf("1..0 # SKIP %s\n", err);
            return 0;
        }
        if (run(&gpu, 1, PROMPT, base) != 0) {
            printf("Bail out! a %s step failed\n", name);
            return 1;
        }
        for (size_t b = 0; b < sizeof(batches) / sizeof(batches[0]); b++) {
            for (size_t k = 0; k < sizeof(chunks) / sizeof(chunks[0]); k++) {
                if (run(&gpu, batches[b], chunks[k], cur) != 0) {
                    printf("Bail out! a %s step failed\n", name);
                    return 1;
                }
                differ += memcmp(cur, base, rows * sizeof(float)) != 0;
            }
        }
        for (size_t i = 0; i < rows; i++) {
            num += ((double)base[i] - ref[i]) * ((double)base[i] - ref[i]);
            den += (double)ref[i] * ref[i];
        }
        printf("# %s: batches 1, 2, 8, 64 x prompt chunks 40, 5, 16\n", name);
        tap(differ == 0, mode ? "fast: one sequence's logits are the same bits in "
            "every batch and chunking (cases differing)" : "exact: the same "
            "bits in every batch and chunking (cases differing)", (double)differ);
        tap(mode ? sqrt(num / den) < FAST_TOLERANCE : num == 0,
            mode ? "fast: logits within 5e-2 of the CPU's exact ones (relative L2)"
                 : "exact: logits equal the CPU's bit for bit (relative L2)",
            den > 0 ? sqrt(num / den) : -1.0);
        ctx_close(&gpu);
    }
    ctx_close(&cpu);
    bt_model_destroy(m);
    free(ref); free(cur); free(base);
    printf("1..%d\n", n_test);
    return n_failed > 0;
}
