/* baton-grammarbench: the cost of constrained decoding against the decode
 * step it rides on, both measured in this run.
 *
 * Two vocabularies: the built-in model's (its byte-level BPE trained on
 * baton-mkmodel's corpus, 4096 tokens) and a 128256-token byte-level
 * vocabulary (the 256 bytes plus distinct substrings of the same corpus
 * and JSON punctuation runs). Yardstick: one batch-1 decode step of the
 * built-in model's shape (hidden 256, 4 layers) with that vocabulary.
 * Three schemas of growing size: compile time, then generation under the
 * mask (random logits, argmax over the allowed tokens, i.e. a
 * random-weight model at temperature 0) for a number of documents:
 * mask + accept time per token, cold (first document: every state new)
 * and warm (later documents: the mask cache of a node serving the same
 * schema), as a share of the decode step.
 * Usage: baton-grammarbench [--threads N] [--dir TMPDIR] */
#include "../../tools/mkmodel/mkmodel.h"

#include "base/buf.h"
#include "base/clock.h"
#include "base/log.h"
#include "engine/grammar/grammar.h"
#include "engine/model/forward.h"
#include "engine/model/synth.h"
#include "engine/tokenizer/tokenizer.h"

#include <dirent.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BS 16
#define VOCAB_BIG 128256

static int threads = 2;

static const char *const schemas[3][2] = {
    { "small",
      "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\","
      "\"maxLength\":40},\"age\":{\"type\":\"integer\",\"minimum\":0,"
      "\"maximum\":150},\"ok\":{\"type\":\"boolean\"}},\"required\":[\"name\","
      "\"age\",\"ok\"],\"additionalProperties\":false}" },
    { "medium",
      "{\"type\":\"object\",\"properties\":{\"id\":{\"type\":\"integer\"},"
      "\"title\":{\"type\":\"string\",\"maxLength\":60},\"status\":{\"enum\":"
      "[\"open\",\"closed\",\"pending\"]},\"score\":{\"type\":\"number\","
      "\"minimum\":0,\"maximum\":1},\"tags\":{\"type\":\"array\",\"items\":"
      "{\"type\":\"string\",\"maxLength\":12},\"maxItems\":5},\"owner\":"
      "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\","
      "\"maxLength\":30},\"email\":{\"type\":\"string\",\"maxLength\":40}},"
      "\"required\":[\"name\"]},\"due\":{\"type\":[\"string\",\"null\"],"
      "\"maxLength\":20}},\"required\":[\"id\",\"title\",\"status\",\"tags\","
      "\"owner\"],\"additionalProperties\":false}" },
    { "large", NULL },  /* built below */
};

/* 30 properties over nested objects, arrays of objects and anyOf. */
static char *large_schema(void)
{
    bt_buf_t b;
    char *out;

    bt_buf_init(&b, 1 << 20);
    bt_buf_append_str(&b, "{\"type\":\"object\",\"properties\":{");
    for (int i = 0; i < 30; i++) {
        char p[512];

        switch (i % 5) {
        case 0:
            snprintf(p, sizeof(p), "\"field_%d\":{\"type\":\"string\","
                     "\"maxLength\":24}", i);
            break;
        case 1:
            snprintf(p, sizeof(p), "\"count_%d\":{\"type\":\"integer\","
                     "\"minimum\":-1000,\"maximum\":1000}", i);
            break;
        case 2:
            snprintf(p, sizeof(p), "\"items_%d\":{\"type\":\"array\",\"maxItems\":3,"
                     "\"items\":{\"type\":\"object\",\"properties\":{\"k\":"
                     "{\"type\":\"string\",\"maxLength\":8},\"v\":{\"type\":"
                     "\"number\"}},\"required\":[\"k\",\"v\"]}}", i);
            break;
        case 3:
            snprintf(p, sizeof(p), "\"choice_%d\":{\"anyOf\":[{\"type\":"
                     "\"integer\"},{\"enum\":[\"low\",\"high\"]},{\"type\":"
                     "\"null\"}]}", i);
            break;
        default:
            snprintf(p, sizeof(p), "\"flag_%d\":{\"type\":\"boolean\"}", i);
        }
        if (i > 0) {
            bt_buf_append_str(&b, ",");
        }
        bt_buf_append_str(&b, p);
    }
    bt_buf_append_str(&b, "},\"required\":[\"field_0\",\"count_1\",\"items_2\","
                      "\"choice_3\",\"flag_4\",\"field_25\"]}");
    out = strndup(b.data, b.len);
    bt_buf_cleanup(&b);
    return out;
}

/* ---- vocabularies ---------------------------------------------------- */

typedef struct {
    uint32_t  n;
    uint8_t **bytes;
    uint32_t *lens;
    int32_t   eos;
} vocab_t;

static void vocab_builtin(const char *corpus, size_t len, vocab_t *v)
{
    static const char *const specials[] = {
        "<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
        "<|end_header_id|>", "<|eot_id|>",
    };
    char err[BT_TOK_ERR_SIZE];
    bt_buf_t tj, one;
    bt_tok_t *tok;

    bt_buf_init(&tj, 64u << 20);
    if (bt_tok_train_bytelevel_bpe(corpus, len, 4096, specials, 5, &tj) != BT_OK ||
        bt_tok_load_mem(tj.data, tj.len, NULL, 0, &tok, err, sizeof(err)) != BT_OK) {
        fprintf(stderr, "grammarbench: cannot make the built-in tokenizer\n");
        exit(1);
    }
    v->n = (uint32_t)bt_tok_vocab_size(tok);
    v->bytes = calloc(v->n, sizeof(*v->bytes));
    v->lens = calloc(v->n, sizeof(*v->lens));
    v->eos = bt_tok_token_id(tok, "<|eot_id|>", 10);
    bt_buf_init(&one, 1 << 16);
    for (uint32_t i = 0; i < v->n; i++) {
        one.len = 0;
        if (bt_tok_is_special(tok, (int32_t)i) ||
            bt_tok_token_text(tok, (int32_t)i, true, &one) != BT_OK || one.len == 0) {
            continue;
        }
        v->bytes[i] = malloc(one.len);
        memcpy(v->bytes[i], one.data, one.len);
        v->lens[i] = (uint32_t)one.len;
    }
    bt_buf_cleanup(&one);
    bt_buf_cleanup(&tj);
    bt_tok_destroy(tok);
}

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* 256 bytes, JSON punctuation runs, then distinct corpus substrings of 2
 * to 10 bytes (a prefix-closed-ish set, as BPE merges give) until full. */
static void vocab_big(const char *corpus, size_t len, vocab_t *v)
{
    static const char *const punct[] = {
        "{\"", "\":", "\": ", "\",", "\", \"", "\"}", "},", "}]", "[{", "\":\"",
        "\":[", "\": [", "\":{", "\": {", "\":\"", "]}", "}}", "null", "true",
        "false", ", ", ",\"", "\"]", "[\"", "\",\"",
    };
    const size_t cap = 1u << 22;
    uint64_t *seen = calloc(cap, sizeof(*seen));   /* hashes, open addressing */
    uint64_t rng = 0x1234567;
    uint32_t n = 0;

    v->n = VOCAB_BIG;
    v->bytes = calloc(v->n, sizeof(*v->bytes));
    v->lens = calloc(v->n, sizeof(*v->lens));
    v->eos = VOCAB_BIG - 1;
    for (; n < 256; n++) {
        v->bytes[n] = malloc(1);
        v->bytes[n][0] = (uint8_t)n;
        v->lens[n] = 1;
    }
    for (size_t i = 0; i < sizeof(punct) / sizeof(punct[0]); i++, n++) {
        v->lens[n] = (uint32_t)strlen(punct[i]);
        v->bytes[n] = (uint8_t *)strdup(punct[i]);
    }
    while (n < VOCAB_BIG - 1) {
        size_t l = 2 + rng_next(&rng) % 9, off = rng_next(&rng) % (len - l);
        uint64_t h = 1469598103934665603ull;
        size_t slot;

        for (size_t k = 0; k < l; k++) {
            h = (h ^ (uint8_t)corpus[off + k]) * 1099511628211ull;
        }
        h |= 1;
        for (slot = h & (cap - 1); seen[slot] != 0 && seen[slot] != h;
             slot = (slot + 1) & (cap - 1)) {
        }
        if (seen[slot] == h) {
            continue;
        }
        seen[slot] = h;
        v->bytes[n] = malloc(l);
        memcpy(v->bytes[n], corpus + off, l);
        v->lens[n] = (uint32_t)l;
        n++;
    }
    free(seen);
}

static void vocab_free(vocab_t *v)
{
    for (uint32_t i = 0; i < v->n; i++) {
        free(v->bytes[i]);
    }
    free(v->bytes);
    free(v->lens);
}

/* ---- the yardstick: a decode step ------------------------------------ */

static void rm_dir(const char *dir)
{
    char p[PATH_MAX + 256];
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

/* Seconds per batch-1 decode step of the built-in shape with `vocab`
 * (best of three runs of 32 steps after a 32-token prompt). */
static double decode_step_s(const char *base, int vocab)
{
    const int ctx = 32, steps = 32, per = (ctx + steps) / BS + 1;
    char dir[PATH_MAX - 256];
    bt_synth_spec_t s;
    bt_model_t *m;
    bt_fwd_t *f;
    bt_kv_view_t kv;
    uint32_t table[8];
    int32_t toks[64];
    float *logits = malloc((size_t)vocab * sizeof(float));
    bt_step_seq_t seq;
    double best = 1e30;

    bt_synth_spec_default(&s, BT_ARCH_LLAMA);
    s.hidden = 256;
    s.n_layers = 4;
    s.n_heads = 8;
    s.n_kv_heads = 4;
    s.ffn = 768;
    s.vocab = vocab;
    s.bos_id = vocab - 5;
    s.eos_id = vocab - 4;
    snprintf(dir, sizeof(dir), "%s/baton-grammarbench-%d-%d", base, vocab,
             (int)getpid());
    if (bt_synth_write(&s, dir) != BT_OK || bt_model_load(dir, &m) != BT_OK ||
        bt_fwd_create(m, NULL, threads, &f) != BT_OK) {
        fprintf(stderr, "grammarbench: cannot write or load %s\n", dir);
        exit(1);
    }
    kv.dtype = BT_DTYPE_BF16;
    kv.n_layers = m->cfg.n_layers;
    kv.n_blocks = per;
    kv.block_size = BS;
    kv.n_kv_heads = m->cfg.n_kv_heads;
    kv.head_dim = m->cfg.head_dim;
    kv.base = calloc((size_t)m->cfg.n_layers * per * 2 * BS *
                     m->cfg.n_kv_heads * m->cfg.head_dim, 2);
    for (int i = 0; i < per; i++) {
        table[i] = (uint32_t)i;
    }
    for (int i = 0; i < ctx + steps; i++) {
        toks[i] = (i * 7919) % 4000 + 10;
    }
    seq = (bt_step_seq_t){toks, ctx, 0, table, per, 1, logits};
    bt_fwd_step(f, &kv, &seq, 1, NULL);
    for (int rep = 0; rep < 3; rep++) {
        uint64_t t0 = bt_now_ns();
        double el;

        for (int st = 0; st < steps; st++) {
            seq.tokens = toks + ctx + st;
            seq.n_tokens = 1;
            seq.pos = ctx + st;
            bt_fwd_step(f, &kv, &seq, 1, NULL);
        }
        el = bt_elapsed_s(t0, bt_now_ns()) / steps;
        best = el < best ? el : best;
    }
    bt_fwd_destroy(f);
    bt_model_destroy(m);
    free(kv.base);
    free(logits);
    rm_dir(dir);
    return best;
}

/* ---- the grammar ----------------------------------------------------- */

typedef struct {
    double us_per_tok;   /* mask + accept, mean */
    double median_us;
    uint64_t tokens;
    int docs_done;
    double hit_rate;     /* masks from the cache */
} gen_t;

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

/* Generates `docs` documents (at most 400 tokens each) under the mask. */
static void generate(bt_gmasker_t *m, const vocab_t *v, int docs,
                     uint64_t seed, gen_t *out)
{
    float *logits = malloc(v->n * sizeof(float));
    double *each = malloc((size_t)docs * 400 * sizeof(double));
    uint64_t rng = seed, ns = 0;
    bt_gmasker_stats_t st0, st1;

    memset(out, 0, sizeof(*out));
    bt_gmasker_stats(m, &st0);
    for (int d = 0; d < docs; d++) {
        bt_gmatcher_t *mt;

        if (bt_gmatcher_create(m, &mt) != BT_OK) {
            exit(1);
        }
        for (int step = 0; step < 400; step++) {
            int32_t best = -1;
            uint64_t t0, t1, t2, t3;
            double us;

            /* random logits: the model's part of the step, not timed */
            for (uint32_t i = 0; i < v->n; i++) {
                logits[i] = (float)(rng_next(&rng) >> 40) / (float)(1 << 24);
            }
            if (v->eos >= 0) {
                logits[v->eos] += 0.9f;   /* end when allowed, mostly */
            }
            t0 = bt_now_ns();
            if (bt_gmatcher_apply(mt, logits, v->n) != BT_OK) {
                fprintf(stderr, "grammarbench: no token allowed\n");
                exit(1);
            }
            t1 = bt_now_ns();
            /* argmax: the sampler's work, not timed */
            for (uint32_t i = 0; i < v->n; i++) {
                if (logits[i] != -INFINITY && (best < 0 || logits[i] > logits[best])) {
                    best = (int32_t)i;
                }
            }
            t2 = bt_now_ns();
            if (bt_gmatcher_accept(mt, best) != BT_OK) {
                exit(1);
            }
            t3 = bt_now_ns();
            ns += (t1 - t0) + (t3 - t2);
            us = (double)((t1 - t0) + (t3 - t2)) / 1e3;
            each[out->tokens++] = us;
            if (best == v->eos) {
                out->docs_done++;
                break;
            }
        }
        bt_gmatcher_destroy(mt);
    }
    out->us_per_tok = out->tokens ? (double)ns / 1e3 / (double)out->tokens : 0;
    qsort(each, out->tokens, sizeof(*each), cmp_double);
    out->median_us = out->tokens ? each[out->tokens / 2] : 0;
    bt_gmasker_stats(m, &st1);
    out->hit_rate = (double)(st1.hits - st0.hits) /
                    (double)(st1.hits - st0.hits + st1.misses - st0.misses);
    free(each);
    free(logits);
}

static void bench_vocab(const char *name, const vocab_t *v, double step_s)
{
    bt_gvocab_t *gv;
    uint64_t t0 = bt_now_ns();

    if (bt_gvocab_create(v->n, (const uint8_t *const *)v->bytes, v->lens,
                         v->eos, &gv) != BT_OK) {
        exit(1);
    }
    printf("\nvocabulary %s: %u tokens, trie built in %.1f ms; decode step "
           "%.3f ms (batch 1, hidden 256, 4 layers)\n", name, v->n,
           bt_elapsed_s(t0, bt_now_ns()) * 1e3, step_s * 1e3);
    printf("  %-7s %10s %12s %10s %12s %10s %12s %9s %6s\n", "schema",
           "compile", "cold us/tok", "cold share", "warm us/tok", "warm share",
           "warm median", "warm hits", "docs");
    for (int i = 0; i < 3; i++) {
        const char *text = schemas[i][1];
        char *own = NULL, err[BT_GRAMMAR_ERR_SIZE];
        bt_grammar_t *g;
        bt_gmasker_t *m;
        gen_t cold, warm;
        double compile_us;
        int reps = 200;

        if (text == NULL) {
            text = own = large_schema();
        }
        t0 = bt_now_ns();
        for (int r = 0; r < reps; r++) {
            if (bt_grammar_compile(BT_GRAMMAR_JSON_SCHEMA, text, strlen(text),
                                   &g, err, sizeof(err)) != BT_OK) {
                fprintf(stderr, "grammarbench: %s\n", err);
                exit(1);
            }
            if (r + 1 < reps) {
                bt_grammar_destroy(g);
            }
        }
        compile_us = bt_elapsed_s(t0, bt_now_ns()) * 1e6 / reps;
        if (bt_gmasker_create(g, gv, 0, &m) != BT_OK) {
            exit(1);
        }
        generate(m, v, 1, 99 + (uint64_t)i, &cold);
        generate(m, v, 20, 7 + (uint64_t)i, &warm);
        printf("  %-7s %8.1f us %12.1f %9.1f%% %12.1f %9.1f%% %9.1f us %8.1f%% %3d/%d\n",
               schemas[i][0], compile_us, cold.us_per_tok,
               100 * cold.us_per_tok / (step_s * 1e6), warm.us_per_tok,
               100 * warm.us_per_tok / (step_s * 1e6), warm.median_us,
               100 * warm.hit_rate, warm.docs_done, 20);
        bt_gmasker_destroy(m);
        bt_grammar_destroy(g);
        free(own);
    }
    bt_gvocab_destroy(gv);
}

int main(int argc, char **argv)
{
    const char *base = "/tmp";
    vocab_t small, big;
    size_t len;
    char *corpus;
    double step_small, step_big;

    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--threads") == 0) {
            threads = atoi(argv[i + 1]);
        } else if (strcmp(argv[i], "--dir") == 0) {
            base = argv[i + 1];
        }
    }
    bt_log_init("grammarbench", BT_LOG_LEVEL_WARN, BT_LOG_FORMAT_TEXT);
    corpus = mkmodel_corpus(4u << 20, &len);
    if (corpus == NULL) {
        return 1;
    }
    vocab_builtin(corpus, len, &small);
    vocab_big(corpus, len, &big);
    free(corpus);
    step_small = decode_step_s(base, (int)small.n);
    step_big = decode_step_s(base, VOCAB_BIG);
    printf("baton-grammarbench: mask + accept per generated token; share = "
           "of one decode step measured in this run (%d threads)\n", threads);
    bench_vocab("built-in", &small, step_small);
    bench_vocab("128k", &big, step_big);
    vocab_free(&small);
    vocab_free(&big);
    return 0;
}
