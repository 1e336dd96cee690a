/* baton-mkmodel: writes synthetic models of every supported architecture
 * in the Hugging Face layout, with a BPE tokenizer trained on a built-in
 * corpus. Same flags and seed -> same bytes on every machine.
 *
 *   baton-mkmodel builtin --out DIR
 *   baton-mkmodel --arch qwen2 --hidden 64 --layers 2 --out DIR */
#include "mkmodel.h"

#include "base/buf.h"
#include "base/clock.h"
#include "base/log.h"
#include "base/opts.h"
#include "engine/model/synth.h"
#include "engine/tokenizer/tokenizer.h"

#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOK_MAX_VOCAB 4096
#define CORPUS_BYTES  (256u << 10)

typedef struct {
    const char *out;
    const char *arch;
    const char *dtype;
    int64_t     hidden, layers, heads, kv_heads, head_dim, ffn, vocab;
    int64_t     experts, experts_used, moe_ffn, shared_ffn, sparse_step;
    int64_t     max_pos, seed, shards, tok_vocab, sliding_window;
    bool        tie, rope_llama3, no_tokenizer;
} mk_cfg_t;

#define O(f) offsetof(mk_cfg_t, f)
static const bt_opt_t mk_opts[] = {
    {"out", 'o', "-", NULL, "folder to write the model into (required)",
     BT_OPT_STRING, 0, 0, NULL, O(out)},
    {"arch", 0, "-", NULL, "llama|mistral|qwen2|mixtral|qwen2_moe|qwen3_moe "
     "(or the HF class name)", BT_OPT_STRING, 0, 0, NULL, O(arch)},
    {"dtype", 0, "-", "bf16", "weight dtype: f32|f16|bf16", BT_OPT_STRING, 0,
     0, NULL, O(dtype)},
    {"hidden", 0, "-", "-1", "hidden size", BT_OPT_INT, -1, 65536, NULL,
     O(hidden)},
    {"layers", 0, "-", "-1", "layers", BT_OPT_INT, -1, 1024, NULL, O(layers)},
    {"heads", 0, "-", "-1", "attention heads", BT_OPT_INT, -1, 1024, NULL,
     O(heads)},
    {"kv-heads", 0, "-", "-1", "key/value heads", BT_OPT_INT, -1, 1024, NULL,
     O(kv_heads)},
    {"head-dim", 0, "-", "-1", "head dim (0: hidden / heads)", BT_OPT_INT, -1,
     1024, NULL, O(head_dim)},
    {"ffn", 0, "-", "-1", "intermediate size", BT_OPT_INT, -1, 1 << 20, NULL,
     O(ffn)},
    {"vocab", 0, "-", "-1", "vocabulary size of the model", BT_OPT_INT, -1,
     1 << 22, NULL, O(vocab)},
    {"experts", 0, "-", "-1", "experts per MoE layer", BT_OPT_INT, -1, 1024,
     NULL, O(experts)},
    {"experts-used", 0, "-", "-1", "experts per token", BT_OPT_INT, -1, 1024,
     NULL, O(experts_used)},
    {"moe-ffn", 0, "-", "-1", "expert intermediate size (Qwen MoE)",
     BT_OPT_INT, -1, 1 << 20, NULL, O(moe_ffn)},
    {"shared-ffn", 0, "-", "-1", "shared expert size (Qwen2-MoE)", BT_OPT_INT,
     -1, 1 << 20, NULL, O(shared_ffn)},
    {"sparse-step", 0, "-", "-1", "decoder_sparse_step (Qwen MoE)", BT_OPT_INT,
     -1, 1024, NULL, O(sparse_step)},
    {"max-pos", 0, "-", "-1", "max_position_embeddings", BT_OPT_INT, -1,
     1 << 24, NULL, O(max_pos)},
    {"sliding-window", 0, "-", "-1", "sliding_window (Mistral, Mixtral)",
     BT_OPT_INT, -1, 1 << 24, NULL, O(sliding_window)},
    {"seed", 0, "-", "1", "weight seed", BT_OPT_INT, 0, 9e15, NULL, O(seed)},
    {"shards", 0, "-", "1", "safetensors files (index.json when > 1)",
     BT_OPT_INT, 1, 64, NULL, O(shards)},
    {"tok-vocab", 0, "-", "-1", "tokens the trained tokenizer has "
     "(default min(vocab, 4096))", BT_OPT_INT, -1, 1 << 22, NULL,
     O(tok_vocab)},
    {"tie", 0, "-", "false", "tie lm_head to the embeddings", BT_OPT_BOOL, 0,
     0, NULL, O(tie)},
    {"rope-llama3", 0, "-", "false", "write llama3 rope_scaling",
     BT_OPT_BOOL, 0, 0, NULL, O(rope_llama3)},
    {"no-tokenizer", 0, "-", "false", "skip the tokenizer files",
     BT_OPT_BOOL, 0, 0, NULL, O(no_tokenizer)},
};
#undef O

static const bt_opts_spec_t mk_spec = {
    "baton-mkmodel", "[PRESET] --out DIR [OPTIONS]",
    "writes a synthetic model (config.json, model.safetensors, tokenizer) "
    "in the Hugging Face layout. presets: builtin, builtin-moe, "
    "bench-decode (llama-3-shaped ~70M), bench-prefill (~200M); flags "
    "override the preset.",
    mk_opts, BT_OPTS_COUNT(mk_opts),
};

static bool preset(const char *name, bt_synth_spec_t *s)
{
    if (strcmp(name, "builtin") == 0) {
        bt_synth_spec_default(s, BT_ARCH_LLAMA);
        s->hidden = 256;
        s->n_layers = 4;
        s->n_heads = 8;
        s->n_kv_heads = 4;
        s->ffn = 768;
        s->vocab = 4096;
    } else if (strcmp(name, "builtin-moe") == 0) {
        bt_synth_spec_default(s, BT_ARCH_QWEN3_MOE);
        s->hidden = 256;
        s->n_layers = 4;
        s->n_heads = 8;
        s->n_kv_heads = 4;
        s->head_dim = 32;
        s->ffn = 768;
        s->n_experts = 8;
        s->n_experts_used = 2;
        s->moe_ffn = 256;
        s->vocab = 4096;
    } else if (strcmp(name, "bench-decode") == 0) {
        bt_synth_spec_default(s, BT_ARCH_LLAMA);
        s->hidden = 256;
        s->n_layers = 4;
        s->n_heads = 8;
        s->n_kv_heads = 2;
        s->ffn = 768;
        s->vocab = 128256;
        s->rope_theta = 500000.0;
        s->rope_llama3 = true;
        s->max_pos = 131072;
    } else if (strcmp(name, "bench-prefill") == 0) {
        bt_synth_spec_default(s, BT_ARCH_LLAMA);
        s->hidden = 1024;
        s->n_layers = 8;
        s->n_heads = 16;
        s->n_kv_heads = 4;
        s->ffn = 2816;
        s->vocab = 32000;
    } else {
        return false;
    }
    return true;
}

static int apply_flags(const mk_cfg_t *c, bt_synth_spec_t *s, bool have_preset)
{
    bt_arch_t arch;

    if (c->arch != NULL) {
        if (!bt_arch_parse(c->arch, &arch)) {
            fprintf(stderr, "baton-mkmodel: unknown --arch %s\n", c->arch);
            return -1;
        }
        if (!have_preset) {
            bt_synth_spec_default(s, arch);
        } else {
            s->arch = arch;
        }
    }
    if (c->dtype != NULL && !bt_dtype_parse(c->dtype, &s->dtype)) {
        fprintf(stderr, "baton-mkmodel: unknown --dtype %s\n", c->dtype);
        return -1;
    }
#define SET(flag, field) if (c->flag >= 0) s->field = (int)c->flag
    SET(hidden, hidden);
    SET(layers, n_layers);
    SET(heads, n_heads);
    SET(kv_heads, n_kv_heads);
    SET(head_dim, head_dim);
    SET(ffn, ffn);
    SET(vocab, vocab);
    SET(experts, n_experts);
    SET(experts_used, n_experts_used);
    SET(moe_ffn, moe_ffn);
    SET(shared_ffn, shared_ffn);
    SET(sparse_step, sparse_step);
    SET(max_pos, max_pos);
    SET(sliding_window, sliding_window);
#undef SET
    if (s->arch == BT_ARCH_MIXTRAL) {
        s->moe_ffn = s->ffn;
    }
    s->seed = (uint64_t)c->seed;
    s->n_shards = (int)c->shards;
    s->tie_embeddings = s->tie_embeddings || c->tie;
    s->rope_llama3 = s->rope_llama3 || c->rope_llama3;
    if (s->hidden < 1 || s->n_layers < 1 || s->n_heads < 1 ||
        s->n_kv_heads < 1 || s->n_heads % s->n_kv_heads != 0 ||
        (s->head_dim == 0 && s->hidden % s->n_heads != 0) || s->ffn < 1 ||
        s->vocab < 8 || (bt_arch_is_moe(s->arch) &&
                         (s->n_experts < 1 || s->n_experts_used < 1 ||
                          s->n_experts_used > s->n_experts))) {
        fprintf(stderr, "baton-mkmodel: inconsistent dimensions\n");
        return -1;
    }
    return 0;
}

static bt_status_t write_file(const char *dir, const char *name,
                              const char *data, size_t len)
{
    char path[PATH_MAX];
    FILE *f;
    bool ok;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    f = fopen(path, "wb");
    if (f == NULL) {
        bt_error("mkmodel: cannot create %s: %s", path, bt_strerror(errno));
        return BT_ERR_IO;
    }
    ok = fwrite(data, 1, len, f) == len;
    ok = fclose(f) == 0 && ok;
    if (!ok) {
        bt_error("mkmodel: cannot write %s: %s", path, bt_strerror(errno));
        return BT_ERR_IO;
    }
    return BT_OK;
}

/* Trains the tokenizer first: its size fixes bos/eos, the last two ids. */
static bt_status_t make_tokenizer(bt_synth_spec_t *s, int tok_vocab,
                                  bt_buf_t *tj, bt_buf_t *tc)
{
    static const char *const specials[] = {
        "<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
        "<|end_header_id|>", "<|eot_id|>",
    };
    const size_t n_sp = sizeof(specials) / sizeof(specials[0]);
    size_t len;
    char *corpus = mkmodel_corpus(CORPUS_BYTES, &len);
    bt_status_t st;

    if (corpus == NULL) {
        return BT_ERR_NO_MEMORY;
    }
    st = bt_tok_train_bytelevel_bpe(corpus, len, tok_vocab, specials, n_sp,
                                    tj);
    free(corpus);
    if (st != BT_OK) {
        return st;
    }
    st = bt_tok_write_config_json(specials[0], specials[4], tc);
    /* specials take the last ids in the order given */
    s->bos_id = tok_vocab - (int)n_sp;
    s->eos_id = tok_vocab - (int)n_sp + 1;
    return st;
}

int main(int argc, char **argv)
{
    mk_cfg_t c;
    bt_synth_spec_t s;
    bt_buf_t tj, tc;
    bool have_preset = false;
    uint64_t t0 = bt_now_ns();
    int first, tok_vocab;
    bt_status_t st = BT_OK;

    memset(&c, 0, sizeof(c));
    bt_log_init("mkmodel", BT_LOG_LEVEL_WARN, BT_LOG_FORMAT_TEXT);
    first = bt_opts_parse_or_exit(&mk_spec, &c, argc, argv);
    bt_synth_spec_default(&s, BT_ARCH_LLAMA);
    if (first < argc) {
        if (!preset(argv[first], &s)) {
            fprintf(stderr, "baton-mkmodel: unknown preset %s (builtin, "
                    "builtin-moe, bench-decode, bench-prefill)\n",
                    argv[first]);
            return 2;
        }
        have_preset = true;
    }
    if (c.out == NULL) {
        fprintf(stderr, "baton-mkmodel: --out DIR is required\n");
        return 2;
    }
    if (apply_flags(&c, &s, have_preset) != 0) {
        return 2;
    }
    bt_buf_init(&tj, 64u << 20);
    bt_buf_init(&tc, 1u << 20);
    if (!c.no_tokenizer) {
        tok_vocab = c.tok_vocab > 0 ? (int)c.tok_vocab
                    : s.vocab < TOK_MAX_VOCAB ? s.vocab : TOK_MAX_VOCAB;
        if (tok_vocab > s.vocab) {
            fprintf(stderr, "baton-mkmodel: --tok-vocab %d exceeds --vocab "
                    "%d\n", tok_vocab, s.vocab);
            st = BT_ERR_INVALID_ARG;
            goto out;
        }
        st = make_tokenizer(&s, tok_vocab, &tj, &tc);
        if (st != BT_OK) {
            fprintf(stderr, "baton-mkmodel: tokenizer training failed: %s "
                    "(try a smaller --tok-vocab)\n", bt_status_str(st));
            goto out;
        }
    }
    st = bt_synth_write(&s, c.out);
    if (st == BT_OK && !c.no_tokenizer) {
        st = write_file(c.out, "tokenizer.json", tj.data, tj.len);
        if (st == BT_OK) {
            st = write_file(c.out, "tokenizer_config.json", tc.data, tc.len);
        }
    }
    if (st == BT_OK) {
        printf("wrote %s: %s hidden %d layers %d heads %d/%d vocab %d%s "
               "%s in %.2f s\n", c.out, bt_arch_name(s.arch), s.hidden,
               s.n_layers, s.n_heads, s.n_kv_heads, s.vocab,
               s.n_experts ? " (MoE)" : "", bt_dtype_name(s.dtype),
               bt_elapsed_s(t0, bt_now_ns()));
    }
out:
    bt_buf_cleanup(&tj);
    bt_buf_cleanup(&tc);
    return st == BT_OK ? 0 : 1;
}
