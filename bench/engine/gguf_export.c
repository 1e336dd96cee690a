/* GGUF v3 writer for enginebench's llama.cpp yardstick (gguf_export.h).
 * Layout: header (magic, version, tensor and key counts), key/value
 * pairs, tensor infos, then each tensor's bytes at a 32-byte aligned
 * offset from the start of the data section. */
#include "gguf_export.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GGUF_ALIGN 32

enum { /* value types */
    GV_UINT32 = 4, GV_INT32 = 5, GV_FLOAT32 = 6, GV_BOOL = 7, GV_STRING = 8,
    GV_ARRAY = 9,
};

enum { GT_F32 = 0, GT_F16 = 1, GT_BF16 = 30 }; /* ggml tensor types */

typedef struct {
    char        name[48];
    int         n_dims;
    uint64_t    ne[2];      /* ne[0] is the contiguous dimension */
    uint32_t    type;
    size_t      esize;
    const void *data;
    int         rope_heads; /* > 0: rows reordered per head (q, k) */
    uint64_t    off;
} tensor_t;

typedef struct {
    FILE    *f;
    bool     bad;
    uint64_t n_kv;
    tensor_t *t;
    int       n_t;
    int       head_dim;
} gguf_t;

static void put(gguf_t *g, const void *p, size_t n)
{
    if (!g->bad && n > 0 && fwrite(p, 1, n, g->f) != n) {
        g->bad = true;
    }
}

static void put_u32(gguf_t *g, uint32_t v) { put(g, &v, 4); }
static void put_u64(gguf_t *g, uint64_t v) { put(g, &v, 8); }

static void put_str(gguf_t *g, const char *s, size_t len)
{
    put_u64(g, len);
    put(g, s, len);
}

static void key(gguf_t *g, const char *k, uint32_t type)
{
    put_str(g, k, strlen(k));
    put_u32(g, type);
    g->n_kv++;
}

static void kv_str(gguf_t *g, const char *k, const char *v)
{
    key(g, k, GV_STRING);
    put_str(g, v, strlen(v));
}

static void kv_u32(gguf_t *g, const char *k, uint32_t v)
{
    key(g, k, GV_UINT32);
    put_u32(g, v);
}

static void kv_f32(gguf_t *g, const char *k, float v)
{
    key(g, k, GV_FLOAT32);
    put(g, &v, 4);
}

static void kv_bool(gguf_t *g, const char *k, bool v)
{
    uint8_t b = v;

    key(g, k, GV_BOOL);
    put(g, &b, 1);
}

/* GPT-2's byte-level alphabet: printable bytes stand for themselves, the
 * others for code points from 256 on, in byte order. */
static uint32_t byte_symbol(int b)
{
    int n = 0;

    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174) {
        return (uint32_t)b;
    }
    for (int c = 0; c < b; c++) {
        if (!((c >= 33 && c <= 126) || (c >= 161 && c <= 172) || c >= 174)) {
            n++;
        }
    }
    return 256u + (uint32_t)n;
}

static size_t utf8(uint32_t cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    out[0] = (char)(0xc0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3f));
    return 2; /* byte symbols stay under 0x800 */
}

static void put_vocab(gguf_t *g, int vocab)
{
    char s[32];

    kv_str(g, "tokenizer.ggml.model", "gpt2");
    kv_str(g, "tokenizer.ggml.pre", "default");
    key(g, "tokenizer.ggml.tokens", GV_ARRAY);
    put_u32(g, GV_STRING);
    put_u64(g, (uint64_t)vocab);
    for (int i = 0; i < vocab; i++) {
        size_t n = i < 256 ? utf8(byte_symbol(i), s)
                           : (size_t)snprintf(s, sizeof(s), "<t%d>", i);
        put_str(g, s, n);
    }
    key(g, "tokenizer.ggml.merges", GV_ARRAY);
    put_u32(g, GV_STRING);
    put_u64(g, 0);
    kv_u32(g, "tokenizer.ggml.bos_token_id", (uint32_t)(vocab - 2));
    kv_u32(g, "tokenizer.ggml.eos_token_id", (uint32_t)(vocab - 1));
    kv_bool(g, "tokenizer.ggml.add_bos_token", false);
}

static tensor_t *add(gguf_t *g, const char *name, const void *data,
                     uint32_t type, size_t esize, uint64_t ne0, uint64_t ne1)
{
    tensor_t *t = &g->t[g->n_t++];

    memset(t, 0, sizeof(*t));
    snprintf(t->name, sizeof(t->name), "%s", name);
    t->n_dims = ne1 > 0 ? 2 : 1;
    t->ne[0] = ne0;
    t->ne[1] = ne1;
    t->type = type;
    t->esize = esize;
    t->data = data;
    return t;
}

static tensor_t *add_mat(gguf_t *g, const char *name, const bt_mat_t *w)
{
    uint32_t type = w->dtype == BT_DTYPE_F32   ? GT_F32
                    : w->dtype == BT_DTYPE_F16 ? GT_F16
                                               : GT_BF16;

    return add(g, name, w->data, type, bt_dtype_size(w->dtype),
               (uint64_t)w->cols, (uint64_t)w->rows);
}

static void add_vec(gguf_t *g, const char *name, const float *v, int n)
{
    add(g, name, v, GT_F32, 4, (uint64_t)n, 0);
}

static uint64_t tensor_bytes(const tensor_t *t)
{
    return t->ne[0] * (t->n_dims == 2 ? t->ne[1] : 1) * t->esize;
}

static void put_pad(gguf_t *g)
{
    static const char zero[GGUF_ALIGN];
    long at = ftell(g->f);

    if (at < 0) {
        g->bad = true;
        return;
    }
    put(g, zero, (GGUF_ALIGN - (size_t)at % GGUF_ALIGN) % GGUF_ALIGN);
}

/* out row h*hd + 2i + s is in row h*hd + s*hd/2 + i */
static void put_data(gguf_t *g, const tensor_t *t)
{
    const size_t row = t->ne[0] * t->esize;
    const int hd = g->head_dim;

    if (t->rope_heads == 0) {
        put(g, t->data, tensor_bytes(t));
        return;
    }
    for (uint64_t r = 0; r < t->ne[1]; r++) {
        uint64_t h = r / (uint64_t)hd, j = r % (uint64_t)hd;
        uint64_t in = h * (uint64_t)hd + (j % 2) * (uint64_t)(hd / 2) + j / 2;

        put(g, (const char *)t->data + in * row, row);
    }
}

static void collect(gguf_t *g, const bt_model_t *m, float *freqs)
{
    const bt_model_config_t *c = &m->cfg;
    char n[48];

    add_mat(g, "token_embd.weight", &m->w.embed);
    add_vec(g, "output_norm.weight", m->w.final_norm, c->hidden);
    if (m->w.lm_head.data != m->w.embed.data) {
        add_mat(g, "output.weight", &m->w.lm_head);
    }
    if (freqs != NULL) {
        add_vec(g, "rope_freqs.weight", freqs, c->head_dim / 2);
    }
    for (int l = 0; l < c->n_layers; l++) {
        const bt_layer_weights_t *L = &m->w.layers[l];

#define NAME(s) (snprintf(n, sizeof(n), "blk.%d." s ".weight", l), n)
        add_vec(g, NAME("attn_norm"), L->attn_norm, c->hidden);
        add_mat(g, NAME("attn_q"), &L->wq)->rope_heads = c->n_heads;
        add_mat(g, NAME("attn_k"), &L->wk)->rope_heads = c->n_kv_heads;
        add_mat(g, NAME("attn_v"), &L->wv);
        add_mat(g, NAME("attn_output"), &L->wo);
        add_vec(g, NAME("ffn_norm"), L->ffn_norm, c->hidden);
        add_mat(g, NAME("ffn_gate"), &L->ffn.gate);
        add_mat(g, NAME("ffn_up"), &L->ffn.up);
        add_mat(g, NAME("ffn_down"), &L->ffn.down);
#undef NAME
    }
}

static void put_model_keys(gguf_t *g, const bt_model_config_t *c)
{
    kv_str(g, "general.architecture", "llama");
    kv_str(g, "general.name", "baton-enginebench");
    kv_u32(g, "general.alignment", GGUF_ALIGN);
    kv_u32(g, "llama.block_count", (uint32_t)c->n_layers);
    kv_u32(g, "llama.context_length", (uint32_t)c->max_pos);
    kv_u32(g, "llama.embedding_length", (uint32_t)c->hidden);
    kv_u32(g, "llama.feed_forward_length", (uint32_t)c->ffn);
    kv_u32(g, "llama.attention.head_count", (uint32_t)c->n_heads);
    kv_u32(g, "llama.attention.head_count_kv", (uint32_t)c->n_kv_heads);
    kv_u32(g, "llama.attention.key_length", (uint32_t)c->head_dim);
    kv_u32(g, "llama.attention.value_length", (uint32_t)c->head_dim);
    kv_u32(g, "llama.rope.dimension_count", (uint32_t)c->head_dim);
    kv_f32(g, "llama.rope.freq_base", (float)c->rope_theta);
    kv_f32(g, "llama.attention.layer_norm_rms_epsilon", c->norm_eps);
    kv_u32(g, "llama.vocab_size", (uint32_t)c->vocab);
}

int bt_gguf_export(const bt_model_t *m, const char *path, char *err,
                   size_t errlen)
{
    const bt_model_config_t *c = &m->cfg;
    gguf_t g;
    float *freqs = NULL;
    uint64_t off = 0;
    int rc = -1;

    if (c->arch != BT_ARCH_LLAMA || c->attn_bias || c->qk_norm ||
        c->n_experts > 0 || c->sliding_window > 0) {
        snprintf(err, errlen, "only a dense Llama model can be exported");
        return -1;
    }
    memset(&g, 0, sizeof(g));
    g.head_dim = c->head_dim;
    g.t = calloc((size_t)c->n_layers * 9 + 4, sizeof(*g.t));
    if (c->rope_llama3) {
        /* llama.cpp divides each pair's angle by its factor */
        freqs = malloc((size_t)(c->head_dim / 2) * sizeof(float));
        for (int i = 0; freqs != NULL && i < c->head_dim / 2; i++) {
            freqs[i] = (float)(pow(c->rope_theta, -2.0 * i / c->head_dim) /
                               m->rope_inv_freq[i]);
        }
    }
    g.f = fopen(path, "wb");
    if (g.t == NULL || (c->rope_llama3 && freqs == NULL) || g.f == NULL) {
        snprintf(err, errlen, "cannot write %s", path);
        if (g.f != NULL) {
            fclose(g.f);
        }
        goto out;
    }
    collect(&g, m, freqs);
    put(&g, "GGUF", 4);
    put_u32(&g, 3);
    put_u64(&g, (uint64_t)g.n_t);
    put_u64(&g, 0); /* the key count, written at the end */
    put_model_keys(&g, c);
    put_vocab(&g, c->vocab);
    for (int i = 0; i < g.n_t; i++) {
        tensor_t *t = &g.t[i];

        put_str(&g, t->name, strlen(t->name));
        put_u32(&g, (uint32_t)t->n_dims);
        for (int d = 0; d < t->n_dims; d++) {
            put_u64(&g, t->ne[d]);
        }
        put_u32(&g, t->type);
        t->off = off;
        put_u64(&g, off);
        off += (tensor_bytes(t) + GGUF_ALIGN - 1) / GGUF_ALIGN * GGUF_ALIGN;
    }
    for (int i = 0; i < g.n_t; i++) {
        put_pad(&g);
        put_data(&g, &g.t[i]);
    }
    if (!g.bad && fseek(g.f, 16, SEEK_SET) == 0) {
        put_u64(&g, g.n_kv);
    } else {
        g.bad = true;
    }
    if (fclose(g.f) != 0 || g.bad) {
        snprintf(err, errlen, "cannot write %s", path);
    } else {
        rc = 0;
    }
out:
    free(g.t);
    free(freqs);
    return rc;
}
