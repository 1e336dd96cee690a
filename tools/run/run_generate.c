/* Generation for baton-run: one sequence, prefill in chunks, then decode
 * one token per step, on exactly the engine pieces the nodes use (model,
 * forward step, KV pool, sampler, tokenizer). */
#include "run_generate.h"

#include "base/array.h"
#include "base/buf.h"
#include "base/clock.h"
#include "base/log.h"
#include "base/opts.h"
#include "engine/model/backend_select.h"
#include "engine/model/forward.h"
#include "engine/kv/kv_pool.h"
#include "engine/sample/sample.h"
#include "engine/tokenizer/tokenizer.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define GEN_MAX_PROMPT (1 << 20)

typedef struct {
    const char *model;
    const char *prompt;
    const char *prompt_ids;
    int64_t     max_tokens;
    double      temperature;
    int64_t     top_k;
    double      top_p;
    double      min_p;
    double      repetition_penalty;
    double      presence_penalty;
    double      frequency_penalty;
    int64_t     seed;
    const char *kv_dtype;
    const char *kv_size;
    int64_t     block_size;
    int64_t     chunk;
    const char *logits_out;
    int64_t     threads;
    int         backend;       /* BT_OPT_ENUM: BT_BACKEND_CHOICES */
    int         numerics;      /* BT_OPT_ENUM: BT_NUMERICS_CHOICES */
    int64_t     logprobs;
    bool        ignore_eos;
    bool        quiet;
} gen_cfg_t;

#define O(f) offsetof(gen_cfg_t, f)
static const bt_opt_t gen_opts[] = {
    {"model", 'm', "BATON_MODEL", NULL, "model folder (config.json, "
     "*.safetensors, tokenizer.json)", BT_OPT_STRING, 0, 0, NULL, O(model)},
    {"prompt", 'p', "-", NULL, "prompt text", BT_OPT_STRING, 0, 0, NULL,
     O(prompt)},
    {"prompt-ids", 0, "-", NULL, "prompt as token ids: 1,2,3", BT_OPT_STRING,
     0, 0, NULL, O(prompt_ids)},
    {"max-tokens", 'n', "-", "16", "tokens to generate", BT_OPT_INT, 1,
     1 << 20, NULL, O(max_tokens)},
    {"temperature", 0, "-", "0", "0: greedy", BT_OPT_DOUBLE, 0, 100, NULL,
     O(temperature)},
    {"top-k", 0, "-", "0", "0: off", BT_OPT_INT, 0, 1 << 22, NULL, O(top_k)},
    {"top-p", 0, "-", "1", "1: off", BT_OPT_DOUBLE, 0, 1, NULL, O(top_p)},
    {"min-p", 0, "-", "0", "0: off", BT_OPT_DOUBLE, 0, 1, NULL, O(min_p)},
    {"repetition-penalty", 0, "-", "1", "1: off", BT_OPT_DOUBLE, 0.01, 100,
     NULL, O(repetition_penalty)},
    {"presence-penalty", 0, "-", "0", "-2..2", BT_OPT_DOUBLE, -2, 2, NULL,
     O(presence_penalty)},
    {"frequency-penalty", 0, "-", "0", "-2..2", BT_OPT_DOUBLE, -2, 2, NULL,
     O(frequency_penalty)},
    {"seed", 's', "-", "0", "sampling seed", BT_OPT_INT, 0, 9e15, NULL,
     O(seed)},
    {"kv-dtype", 0, "-", "bf16", "KV cache dtype: bf16|f16|f32",
     BT_OPT_STRING, 0, 0, NULL, O(kv_dtype)},
    {"kv-size", 0, "-", "auto", "KV pool: bytes (256M, 2G), a fraction of "
     "free memory (0.25), or auto (what the request needs)", BT_OPT_STRING, 0,
     0, NULL, O(kv_size)},
    {"block-size", 0, "-", "16", "tokens per KV block", BT_OPT_INT, 1,
     BT_KV_MAX_BLOCK_TOKENS, NULL, O(block_size)},
    {"chunk", 0, "-", "512", "prefill chunk in tokens", BT_OPT_INT, 1,
     1 << 16, NULL, O(chunk)},
    {"logits-out", 0, "-", NULL, "write raw little-endian f32 logits, one "
     "row of vocab per position: every prompt position, then every decode "
     "step", BT_OPT_STRING, 0, 0, NULL, O(logits_out)},
    {"threads", 'j', "-", "0", "compute threads (0: all cores)", BT_OPT_INT, 0,
     1024, NULL, O(threads)},
    {"backend", 0, "-", "cpu", "compute backend: cpu, or cuda (a GPU; "
     "refused, exit 2, where none is usable)", BT_OPT_ENUM, 0, 0,
     BT_BACKEND_CHOICES, O(backend)},
    {"numerics", 0, "-", "exact", "exact (the CPU engine's bits) or fast "
     "(cuda: tensor cores, within a tolerance of exact)", BT_OPT_ENUM, 0, 0,
     BT_NUMERICS_CHOICES, O(numerics)},
    {"logprobs", 0, "-", "-1", "print each token's logprob and its top N "
     "alternatives (a 'logprobs' line per token, 17 digits of the f32); -1: "
     "none", BT_OPT_INT, -1, BT_SAMPLE_MAX_LOGPROBS, NULL, O(logprobs)},
    {"ignore-eos", 0, "-", "false", "do not stop at the end-of-text token",
     BT_OPT_BOOL, 0, 0, NULL, O(ignore_eos)},
    {"quiet", 'q', "-", "false", "print only the generated text",
     BT_OPT_BOOL, 0, 0, NULL, O(quiet)},
};
#undef O

static const bt_opts_spec_t gen_spec = {
    "baton-run", "[generate] --model DIR (--prompt TEXT | --prompt-ids IDS) "
    "[OPTIONS]",
    "generates text from a model folder on the chosen backend (--backend) "
    "and prints the tokens, the text and prefill/decode speed.",
    gen_opts, BT_OPTS_COUNT(gen_opts),
};

static int parse_ids(const char *text, int vocab, int32_t **ids_p, int *n_p)
{
    size_t cap = 16;
    int n = 0;
    int32_t *ids = malloc(cap * sizeof(*ids));
    const char *p = text;

    while (ids != NULL && *p != '\0') {
        char *end;
        long v;

        errno = 0;
        v = strtol(p, &end, 10);
        if (end == p || errno != 0 || v < 0 || v >= vocab) {
            fprintf(stderr, "baton-run: --prompt-ids: bad id near '%.16s' "
                    "(vocab %d)\n", p, vocab);
            free(ids);
            return -1;
        }
        if ((size_t)n >= GEN_MAX_PROMPT ||
            BT_ARRAY_RESERVE(ids, cap, (size_t)n + 1, 16) != BT_OK) {
            free(ids);
            return -1;
        }
        ids[n++] = (int32_t)v;
        p = end;
        while (*p == ',' || *p == ' ') {
            p++;
        }
    }
    if (ids == NULL || n == 0) {
        fprintf(stderr, "baton-run: --prompt-ids is empty\n");
        free(ids);
        return -1;
    }
    *ids_p = ids;
    *n_p = n;
    return 0;
}

/* Bytes of KV for the pool: explicit bytes, a fraction of available
 * memory, or just what this request needs. */
static int kv_budget(const char *text, const bt_kv_geom_t *g, int n_tokens,
                     size_t *bytes_p, uint32_t *blocks_p)
{
    char *end;
    double frac;

    *bytes_p = 0;
    *blocks_p = 0;
    if (strcmp(text, "auto") == 0) {
        *blocks_p = (uint32_t)((n_tokens + (int)g->block_size - 1) /
                               (int)g->block_size) + 1;
        return 0;
    }
    frac = strtod(text, &end);
    if (*end == '\0' && frac > 0 && frac <= 1 && strchr(text, '.') != NULL) {
        long pages = sysconf(_SC_AVPHYS_PAGES), psz = sysconf(_SC_PAGESIZE);

        if (pages <= 0 || psz <= 0) {
            return -1;
        }
        *bytes_p = (size_t)((double)pages * (double)psz * frac);
        return 0;
    }
    {
        uint64_t b;

        if (bt_opts_parse_size(text, &b) != BT_OK || b == 0) {
            return -1;
        }
        *bytes_p = (size_t)b;
    }
    return 0;
}

/* Touches every page of the weights once so the first token is not slow;
 * shows progress on a terminal for large models. */
static void prefault(const bt_model_t *m)
{
    const bool tty = isatty(STDERR_FILENO) && m->weight_bytes > (256u << 20);
    size_t done = 0, total = bt_st_set_bytes(m->st);
    volatile unsigned char sink = 0;
    int last = -1;

    for (size_t i = 0; i < bt_st_set_count(m->st); i++) {
        const bt_st_tensor_t *t = bt_st_set_at(m->st, i);

        for (size_t off = 0; off < t->nbytes; off += 4096) {
            sink ^= ((const unsigned char *)t->data)[off];
        }
        done += t->nbytes;
        if (tty && total > 0 && (int)(done * 100 / total) != last) {
            last = (int)(done * 100 / total);
            fprintf(stderr, "\rloading weights %3d%%", last);
        }
    }
    if (tty) {
        fprintf(stderr, "\rloading weights done\n");
    }
    (void)sink;
}

typedef struct {
    gen_cfg_t      cfg;
    bt_model_t    *model;
    bt_backend_choice_t backend; /* --backend, --numerics */
    bt_fwd_t      *fwd;
    bt_tok_t      *tok;
    bt_kvpool_t   *pool;
    bt_kvseq_t    *seq;
    bt_sampler_t  *sampler;
    FILE          *logits_f;
    int32_t       *prompt;
    int            n_prompt;
    int32_t       *gen;
    int            n_gen;
    bt_sample_result_t *lps;   /* [max_tokens] with --logprobs */
    float         *logits;
} gen_t;

static int write_rows(gen_t *g, const float *rows, int n)
{
    const size_t v = (size_t)g->model->cfg.vocab;

    if (g->logits_f == NULL) {
        return 0;
    }
    /* x86 and every target we build for are little-endian */
    if (fwrite(rows, sizeof(float) * v, (size_t)n, g->logits_f) !=
        (size_t)n) {
        fprintf(stderr, "baton-run: writing %s: %s\n", g->cfg.logits_out,
                strerror(errno));
        return -1;
    }
    return 0;
}

/* Appends tokens to the sequence and runs them through the model. */
static int run_tokens(gen_t *g, bt_kv_view_t *kv, const int32_t *toks, int n,
                      int n_logits)
{
    uint32_t *u = malloc((size_t)n * sizeof(uint32_t));
    const int pos = (int)bt_kvseq_n_tokens(g->seq);
    bt_step_seq_t s;
    bt_status_t st;

    if (u == NULL) {
        return -1;
    }
    for (int i = 0; i < n; i++) {
        u[i] = (uint32_t)toks[i];
    }
    st = bt_kvseq_append(g->seq, u, (uint32_t)n);
    free(u);
    if (st != BT_OK) {
        fprintf(stderr, "baton-run: kv pool full at position %d (raise "
                "--kv-size): %s\n", pos, bt_status_str(st));
        return -1;
    }
    s.tokens = toks;
    s.n_tokens = n;
    s.pos = pos;
    s.block_table = bt_kvseq_blocks(g->seq);
    s.n_blocks = (int)bt_kvseq_n_blocks(g->seq);
    s.n_logits = n_logits;
    s.logits = g->logits;
    st = bt_fwd_step(g->fwd, kv, &s, 1, NULL);
    if (st != BT_OK) {
        fprintf(stderr, "baton-run: forward step failed: %s\n",
                bt_status_str(st));
        return -1;
    }
    bt_kvseq_set_computed(g->seq, (uint32_t)(pos + n));
    return 0;
}

static int gen_setup(gen_t *g, bt_kv_view_t *kv)
{
    gen_cfg_t *c = &g->cfg;
    char err[BT_TOK_ERR_SIZE];
    bt_kvpool_config_t pc;
    uint8_t root[BT_KV_HASH_LEN];
    bt_status_t st;
    int n_total;
    const int chunk_rows = c->logits_out != NULL ? (int)c->chunk : 1;

    if (bt_model_load(c->model, &g->model) != BT_OK) {
        fprintf(stderr, "baton-run: cannot load model %s (see the error "
                "above)\n", c->model);
        return -1;
    }
    prefault(g->model);
    if (c->prompt_ids != NULL) {
        if (parse_ids(c->prompt_ids, g->model->cfg.vocab, &g->prompt,
                      &g->n_prompt) != 0) {
            return -1;
        }
        if (bt_tok_load_dir(c->model, &g->tok, err, sizeof(err)) != BT_OK) {
            g->tok = NULL;  /* ids only: print no text */
        }
    } else {
        bt_tok_ids_t ids;

        if (bt_tok_load_dir(c->model, &g->tok, err, sizeof(err)) != BT_OK) {
            fprintf(stderr, "baton-run: %s\n", err);
            return -1;
        }
        bt_tok_ids_init(&ids, GEN_MAX_PROMPT);
        st = bt_tok_encode(g->tok, c->prompt, strlen(c->prompt),
                           BT_TOK_ADD_SPECIAL, &ids, err, sizeof(err));
        if (st != BT_OK || ids.n == 0) {
            fprintf(stderr, "baton-run: cannot encode the prompt: %s\n",
                    st != BT_OK ? err : "no tokens");
            bt_tok_ids_cleanup(&ids);
            return -1;
        }
        g->prompt = ids.ids;
        g->n_prompt = (int)ids.n;
        for (int i = 0; i < g->n_prompt; i++) {
            if (g->prompt[i] >= g->model->cfg.vocab) {
                fprintf(stderr, "baton-run: tokenizer id %d is outside the "
                        "model's vocabulary of %d\n", g->prompt[i],
                        g->model->cfg.vocab);
                return -1;
            }
        }
    }
    if (bt_backend_fwd_create(&g->backend, g->model, (int)c->threads,
                              &g->fwd, err, sizeof(err)) != BT_OK) {
        fprintf(stderr, "baton-run: %s\n", err);
        return -1;
    }
    memset(&pc, 0, sizeof(pc));
    pc.geom.n_layers = (uint32_t)g->model->cfg.n_layers;
    pc.geom.n_kv_heads = (uint32_t)g->model->cfg.n_kv_heads;
    pc.geom.head_dim = (uint32_t)g->model->cfg.head_dim;
    pc.geom.block_size = (uint32_t)c->block_size;
    if (!bt_kv_dtype_parse(c->kv_dtype, &pc.geom.dtype)) {
        fprintf(stderr, "baton-run: --kv-dtype must be bf16, f16 or f32\n");
        return -1;
    }
    n_total = g->n_prompt + (int)c->max_tokens;
    if (kv_budget(c->kv_size, &pc.geom, n_total, &pc.budget_bytes,
                  &pc.n_blocks) != 0) {
        fprintf(stderr, "baton-run: --kv-size: bytes (512M), a fraction "
                "(0.25) or auto\n");
        return -1;
    }
    if (bt_kvpool_create(&pc, &g->pool) != BT_OK ||
        bt_kv_view_from_pool(g->pool, kv) != BT_OK ||
        bt_kv_hash_root("baton-run", NULL, pc.geom.dtype, pc.geom.block_size,
                        g->backend.id, NULL, 0, root) != BT_OK ||
        bt_kvseq_create(g->pool, root, &g->seq) != BT_OK ||
        bt_sampler_create((uint32_t)g->model->cfg.vocab, &g->sampler) !=
            BT_OK) {
        fprintf(stderr, "baton-run: cannot set up the kv pool or sampler\n");
        return -1;
    }
    g->logits = malloc((size_t)chunk_rows * (size_t)g->model->cfg.vocab *
                       sizeof(float));
    g->gen = malloc((size_t)c->max_tokens * sizeof(int32_t));
    if (c->logprobs >= 0) {
        g->lps = malloc((size_t)c->max_tokens * sizeof(*g->lps));
    }
    if (g->logits == NULL || g->gen == NULL ||
        (c->logprobs >= 0 && g->lps == NULL)) {
        fprintf(stderr, "baton-run: out of memory\n");
        return -1;
    }
    if (c->logits_out != NULL &&
        (g->logits_f = fopen(c->logits_out, "wb")) == NULL) {
        fprintf(stderr, "baton-run: cannot create %s: %s\n", c->logits_out,
                strerror(errno));
        return -1;
    }
    return 0;
}

static void gen_cleanup(gen_t *g)
{
    if (g->logits_f != NULL) {
        fclose(g->logits_f);
    }
    free(g->logits);
    free(g->gen);
    free(g->lps);
    free(g->prompt);
    bt_sampler_destroy(g->sampler);
    bt_kvseq_destroy(g->seq);
    bt_kvpool_destroy(g->pool);
    bt_fwd_destroy(g->fwd);
    bt_tok_destroy(g->tok);
    bt_model_destroy(g->model);
}

static void print_text(gen_t *g, bt_tok_stream_t *ts, int32_t id)
{
    bt_buf_t out;

    if (ts == NULL) {
        return;
    }
    bt_buf_init(&out, 1 << 16);
    if (bt_tok_stream_feed(ts, id, &out) == BT_OK && out.len > 0) {
        fwrite(out.data, 1, out.len, stdout);
        fflush(stdout);
    }
    bt_buf_cleanup(&out);
}

static int gen_run(gen_t *g, bt_kv_view_t *kv)
{
    gen_cfg_t *c = &g->cfg;
    const size_t V = (size_t)g->model->cfg.vocab;
    bt_sample_params_t sp;
    bt_tok_stream_t *ts = NULL;
    uint64_t t0, t1, t2;
    bool stopped = false;

    bt_sample_params_default(&sp);
    sp.temperature = (float)c->temperature;
    sp.top_k = (int32_t)c->top_k;
    sp.top_p = (float)c->top_p;
    sp.min_p = (float)c->min_p;
    sp.repetition_penalty = (float)c->repetition_penalty;
    sp.presence_penalty = (float)c->presence_penalty;
    sp.frequency_penalty = (float)c->frequency_penalty;
    sp.seed = (uint64_t)c->seed;
    sp.max_tokens = (int32_t)c->max_tokens;
    sp.logprobs = (int32_t)c->logprobs;
    if (!c->ignore_eos) {
        int32_t eos = g->tok != NULL ? bt_tok_eos_id(g->tok)
                                     : g->model->cfg.eos_id;

        if (eos >= 0) {
            sp.stop_ids[sp.n_stop_ids++] = eos;
        }
    }
    if (bt_sample_params_check(&sp) != BT_OK) {
        fprintf(stderr, "baton-run: sampling parameters out of range\n");
        return -1;
    }
    if (!c->quiet) {
        printf("prompt: %d tokens [", g->n_prompt);
        for (int i = 0; i < g->n_prompt; i++) {
            printf(i ? ", %d" : "%d", g->prompt[i]);
        }
        printf("]\n");
    }
    if (g->tok != NULL) {
        bt_tok_stream_create(g->tok, true, &ts);
    }
    t0 = bt_now_ns();
    for (int p = 0; p < g->n_prompt; p += (int)c->chunk) {
        const int n = g->n_prompt - p < c->chunk ? g->n_prompt - p
                                                 : (int)c->chunk;
        const int nl = g->logits_f != NULL ? n : (p + n == g->n_prompt);

        if (run_tokens(g, kv, g->prompt + p, n, nl) != 0 ||
            write_rows(g, g->logits, nl) != 0) {
            bt_tok_stream_destroy(ts);
            return -1;
        }
    }
    t1 = bt_now_ns();
    {
        /* the last prompt row sits at row nl - 1 of the last chunk */
        const int last_n = (g->n_prompt - 1) % (int)c->chunk + 1;
        const float *row = g->logits_f != NULL
                           ? g->logits + (size_t)(last_n - 1) * V : g->logits;

        if (row != g->logits) {
            memmove(g->logits, row, V * sizeof(float));
        }
    }
    while (!stopped) {
        bt_sample_seq_t ss = {g->prompt, (uint32_t)g->n_prompt, g->gen,
                              (uint32_t)g->n_gen,
                              (uint64_t)(g->n_prompt + g->n_gen)};
        bt_sample_result_t r;

        if (bt_sampler_sample(g->sampler, &sp, g->logits, &ss, &r) != BT_OK) {
            fprintf(stderr, "baton-run: sampling failed\n");
            bt_tok_stream_destroy(ts);
            return -1;
        }
        if (g->lps != NULL) {
            g->lps[g->n_gen] = r;
        }
        g->gen[g->n_gen++] = r.token;
        stopped = r.finish != BT_FINISH_NONE;
        if (r.finish != BT_FINISH_STOP) {
            print_text(g, ts, r.token);
        }
        if (!stopped &&
            (run_tokens(g, kv, &g->gen[g->n_gen - 1], 1, 1) != 0 ||
             write_rows(g, g->logits, 1) != 0)) {
            bt_tok_stream_destroy(ts);
            return -1;
        }
    }
    t2 = bt_now_ns();
    if (ts != NULL) {
        bt_buf_t out;

        bt_buf_init(&out, 1 << 16);
        if (bt_tok_stream_finish(ts, &out) == BT_OK && out.len > 0) {
            fwrite(out.data, 1, out.len, stdout);
        }
        bt_buf_cleanup(&out);
        bt_tok_stream_destroy(ts);
    }
    printf("\n");
    for (int i = 0; i < g->n_gen && sp.logprobs >= 0; i++) {
        const bt_sample_result_t *r = &g->lps[i];

        printf("logprobs %d: %d %.17g [", i, r->token, (double)r->logprob);
        for (uint32_t t = 0; t < r->n_top; t++) {
            printf(t ? ", %d:%.17g" : "%d:%.17g", r->top_ids[t],
                   (double)r->top_logprobs[t]);
        }
        printf("]\n");
    }
    if (!c->quiet) {
        const double pf = bt_elapsed_s(t0, t1), dc = bt_elapsed_s(t1, t2);

        printf("tokens: %d [", g->n_gen);
        for (int i = 0; i < g->n_gen; i++) {
            printf(i ? ", %d" : "%d", g->gen[i]);
        }
        printf("]\n");
        printf("prefill: %d tokens in %.1f ms (%.1f tok/s); decode: %d "
               "tokens in %.1f ms (%.1f tok/s); threads %d, kv %s, cpu "
               "kernels %s\n",
               g->n_prompt, pf * 1e3, pf > 0 ? g->n_prompt / pf : 0.0,
               g->n_gen - 1, dc * 1e3,
               dc > 0 ? (g->n_gen - 1) / dc : 0.0, bt_fwd_threads(g->fwd),
               c->kv_dtype, bt_cpu_kernels_name(bt_cpu_kernels()));
    }
    return 0;
}

int bt_run_generate_main(int argc, char **argv)
{
    gen_t g;
    bt_kv_view_t kv;
    int rc;

    memset(&g, 0, sizeof(g));
    bt_log_init("baton-run", BT_LOG_LEVEL_WARN, BT_LOG_FORMAT_TEXT);
    (void)bt_opts_parse_or_exit(&gen_spec, &g.cfg, argc, argv);
    if (g.cfg.model == NULL ||
        (g.cfg.prompt == NULL) == (g.cfg.prompt_ids == NULL)) {
        fprintf(stderr, "baton-run: needs --model and one of --prompt or "
                "--prompt-ids (see --help)\n");
        return 2;
    }
    {
        char err[256];

        if (bt_backend_choose((bt_backend_kind_t)g.cfg.backend,
                              (bt_numerics_mode_t)g.cfg.numerics, 1, &g.backend,
                              err, sizeof(err)) != BT_OK) {
            fprintf(stderr, "baton-run: %s\n", err);
            return 2;
        }
    }
    rc = gen_setup(&g, &kv) == 0 && gen_run(&g, &kv) == 0 ? 0 : 1;
    gen_cleanup(&g);
    return rc;
}
