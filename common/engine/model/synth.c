#include "synth.h"

#include "base/array.h"
#include "base/log.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define SYNTH_MAX_TENSORS 65536

typedef struct {
    char    name[128];
    int     n_dims;
    int64_t shape[2];
    float   scale;      /* uniform in [-scale, scale) */
    float   offset;     /* added: 1 for norm weights */
    int     shard;
    uint64_t begin, end;
} synth_tensor_t;

typedef struct {
    synth_tensor_t *t;
    int             n;
    size_t          cap;
    bt_status_t     status;
} synth_list_t;

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;

    for (; *s; s++) {
        h = (h ^ (uint8_t)*s) * 0x100000001b3ull;
    }
    return h;
}

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static float synth_at(uint64_t key, uint64_t i, float scale)
{
    uint64_t r = mix64(key + (i + 1) * 0x9e3779b97f4a7c15ull);
    /* 24 random bits -> [-1, 1) exactly, then one rounding */
    float u = (float)(r >> 40) * 0x1p-23f - 1.0f;

    return u * scale;
}

float bt_synth_value(uint64_t seed, const char *name, uint64_t i, float scale)
{
    return synth_at(mix64(seed) ^ fnv1a(name), i, scale);
}

void bt_synth_spec_default(bt_synth_spec_t *s, bt_arch_t arch)
{
    memset(s, 0, sizeof(*s));
    s->arch = arch;
    s->hidden = 64;
    s->n_layers = 2;
    s->n_heads = 4;
    s->n_kv_heads = 2;
    s->ffn = 128;
    s->vocab = 512;
    s->max_pos = 2048;
    s->rope_theta = 10000.0;
    s->norm_eps = 1e-5f;
    s->bos_id = 1;
    s->eos_id = 2;
    s->dtype = BT_DTYPE_BF16;
    s->seed = 1;
    s->n_shards = 1;
    s->sparse_step = 1;
    if (bt_arch_is_moe(arch)) {
        s->n_experts = 4;
        s->n_experts_used = 2;
        s->moe_ffn = arch == BT_ARCH_MIXTRAL ? s->ffn : 64;
        s->norm_topk_prob = arch != BT_ARCH_QWEN2_MOE;
        if (arch == BT_ARCH_QWEN2_MOE) {
            s->shared_ffn = 96;
        }
    }
    if (arch == BT_ARCH_QWEN3_MOE) {
        s->head_dim = 32;  /* differs from hidden / heads on purpose */
    }
}

static void add(synth_list_t *l, float scale, float offset, int n_dims,
                int64_t d0, int64_t d1, const char *fmt, ...)
{
    synth_tensor_t *t;
    va_list ap;

    if (l->status != BT_OK) {
        return;
    }
    if (l->n >= SYNTH_MAX_TENSORS ||
        BT_ARRAY_RESERVE(l->t, l->cap, (size_t)l->n + 1, 64) != BT_OK) {
        l->status = BT_ERR_NO_MEMORY;
        return;
    }
    t = &l->t[l->n++];
    memset(t, 0, sizeof(*t));
    va_start(ap, fmt);
    vsnprintf(t->name, sizeof(t->name), fmt, ap);
    va_end(ap);
    t->n_dims = n_dims;
    t->shape[0] = d0;
    t->shape[1] = d1;
    t->scale = scale;
    t->offset = offset;
}

static float wscale(int fan_in)
{
    return 1.0f / sqrtf((float)fan_in);
}

static void add_ffn(synth_list_t *l, const bt_synth_spec_t *s,
                    const char *prefix, const char *g, const char *u,
                    const char *d, int ffn)
{
    add(l, wscale(s->hidden), 0, 2, ffn, s->hidden, "%s.%s.weight", prefix, g);
    add(l, wscale(s->hidden), 0, 2, ffn, s->hidden, "%s.%s.weight", prefix, u);
    add(l, wscale(ffn), 0, 2, s->hidden, ffn, "%s.%s.weight", prefix, d);
}

static bool layer_is_moe(const bt_synth_spec_t *s, int l)
{
    if (s->n_experts == 0 || (l + 1) % (s->sparse_step > 0 ? s->sparse_step
                                                            : 1) != 0) {
        return false;
    }
    for (int i = 0; i < s->n_mlp_only; i++) {
        if (s->mlp_only[i] == l) {
            return false;
        }
    }
    return true;
}

static void synth_tensors(const bt_synth_spec_t *s, synth_list_t *l)
{
    const int hd = s->head_dim ? s->head_dim : s->hidden / s->n_heads;
    const int qd = s->n_heads * hd, kvd = s->n_kv_heads * hd;
    const bool bias = s->arch == BT_ARCH_QWEN2 || s->arch == BT_ARCH_QWEN2_MOE;
    char p[96];

    add(l, 1.0f, 0, 2, s->vocab, s->hidden, "model.embed_tokens.weight");
    for (int i = 0; i < s->n_layers; i++) {
        add(l, 0.1f, 1.0f, 1, s->hidden, 0,
            "model.layers.%d.input_layernorm.weight", i);
        add(l, 0.1f, 1.0f, 1, s->hidden, 0,
            "model.layers.%d.post_attention_layernorm.weight", i);
        add(l, wscale(s->hidden), 0, 2, qd, s->hidden,
            "model.layers.%d.self_attn.q_proj.weight", i);
        add(l, wscale(s->hidden), 0, 2, kvd, s->hidden,
            "model.layers.%d.self_attn.k_proj.weight", i);
        add(l, wscale(s->hidden), 0, 2, kvd, s->hidden,
            "model.layers.%d.self_attn.v_proj.weight", i);
        add(l, wscale(qd), 0, 2, s->hidden, qd,
            "model.layers.%d.self_attn.o_proj.weight", i);
        if (bias) {
            add(l, 0.2f, 0, 1, qd, 0, "model.layers.%d.self_attn.q_proj.bias",
                i);
            add(l, 0.2f, 0, 1, kvd, 0,
                "model.layers.%d.self_attn.k_proj.bias", i);
            add(l, 0.2f, 0, 1, kvd, 0,
                "model.layers.%d.self_attn.v_proj.bias", i);
        }
        if (s->arch == BT_ARCH_QWEN3_MOE) {
            add(l, 0.1f, 1.0f, 1, hd, 0,
                "model.layers.%d.self_attn.q_norm.weight", i);
            add(l, 0.1f, 1.0f, 1, hd, 0,
                "model.layers.%d.self_attn.k_norm.weight", i);
        }
        if (!layer_is_moe(s, i)) {
            snprintf(p, sizeof(p), "model.layers.%d.mlp", i);
            add_ffn(l, s, p, "gate_proj", "up_proj", "down_proj", s->ffn);
        } else if (s->arch == BT_ARCH_MIXTRAL) {
            add(l, 2 * wscale(s->hidden), 0, 2, s->n_experts, s->hidden,
                "model.layers.%d.block_sparse_moe.gate.weight", i);
            for (int e = 0; e < s->n_experts; e++) {
                snprintf(p, sizeof(p),
                         "model.layers.%d.block_sparse_moe.experts.%d", i, e);
                add_ffn(l, s, p, "w1", "w3", "w2", s->ffn);
            }
        } else {
            add(l, 2 * wscale(s->hidden), 0, 2, s->n_experts, s->hidden,
                "model.layers.%d.mlp.gate.weight", i);
            for (int e = 0; e < s->n_experts; e++) {
                snprintf(p, sizeof(p), "model.layers.%d.mlp.experts.%d", i, e);
                add_ffn(l, s, p, "gate_proj", "up_proj", "down_proj",
                        s->moe_ffn);
            }
            if (s->shared_ffn > 0) {
                snprintf(p, sizeof(p), "model.layers.%d.mlp.shared_expert", i);
                add_ffn(l, s, p, "gate_proj", "up_proj", "down_proj",
                        s->shared_ffn);
                add(l, wscale(s->hidden), 0, 2, 1, s->hidden,
                    "model.layers.%d.mlp.shared_expert_gate.weight", i);
            }
        }
    }
    add(l, 0.1f, 1.0f, 1, s->hidden, 0, "model.norm.weight");
    if (!s->tie_embeddings) {
        add(l, 2 * wscale(s->hidden), 0, 2, s->vocab, s->hidden,
            "lm_head.weight");
    }
}

static int tensor_cmp(const void *a, const void *b)
{
    return strcmp(((const synth_tensor_t *)a)->name,
                  ((const synth_tensor_t *)b)->name);
}

static json_t *config_json(const bt_synth_spec_t *s)
{
    static const char *const model_types[BT_ARCH_COUNT] = {
        "llama", "mistral", "qwen2", "mixtral", "qwen2_moe", "qwen3_moe",
    };
    json_t *c = json_object();
    json_t *archs = json_array();

    json_array_append_new(archs, json_string(bt_arch_name(s->arch)));
    json_object_set_new(c, "architectures", archs);
    json_object_set_new(c, "model_type", json_string(model_types[s->arch]));
    json_object_set_new(c, "hidden_size", json_integer(s->hidden));
    json_object_set_new(c, "intermediate_size", json_integer(s->ffn));
    json_object_set_new(c, "num_hidden_layers", json_integer(s->n_layers));
    json_object_set_new(c, "num_attention_heads", json_integer(s->n_heads));
    json_object_set_new(c, "num_key_value_heads", json_integer(s->n_kv_heads));
    if (s->head_dim > 0) {
        json_object_set_new(c, "head_dim", json_integer(s->head_dim));
    }
    json_object_set_new(c, "vocab_size", json_integer(s->vocab));
    json_object_set_new(c, "max_position_embeddings",
                        json_integer(s->max_pos));
    json_object_set_new(c, "rms_norm_eps", json_real(s->norm_eps));
    json_object_set_new(c, "rope_theta", json_real(s->rope_theta));
    json_object_set_new(c, "hidden_act", json_string("silu"));
    json_object_set_new(c, "tie_word_embeddings",
                        json_boolean(s->tie_embeddings));
    json_object_set_new(c, "bos_token_id", json_integer(s->bos_id));
    json_object_set_new(c, "eos_token_id", json_integer(s->eos_id));
    json_object_set_new(c, "torch_dtype",
                        json_string(s->dtype == BT_DTYPE_BF16 ? "bfloat16"
                                    : s->dtype == BT_DTYPE_F16 ? "float16"
                                    : "float32"));
    if (s->arch == BT_ARCH_LLAMA || s->arch == BT_ARCH_QWEN3_MOE) {
        json_object_set_new(c, "attention_bias", json_false());
    }
    if (s->rope_llama3) {
        json_t *rs = json_object();

        json_object_set_new(rs, "rope_type", json_string("llama3"));
        json_object_set_new(rs, "factor", json_real(8.0));
        json_object_set_new(rs, "low_freq_factor", json_real(1.0));
        json_object_set_new(rs, "high_freq_factor", json_real(4.0));
        json_object_set_new(rs, "original_max_position_embeddings",
                            json_integer(s->max_pos / 4 > 0 ? s->max_pos / 4
                                                            : 1));
        json_object_set_new(c, "rope_scaling", rs);
    } else {
        json_object_set_new(c, "rope_scaling", json_null());
    }
    if (s->arch == BT_ARCH_MISTRAL || s->arch == BT_ARCH_MIXTRAL) {
        json_object_set_new(c, "sliding_window",
                            s->sliding_window > 0
                                ? json_integer(s->sliding_window)
                                : json_null());
    }
    if (s->arch == BT_ARCH_QWEN2 || s->arch == BT_ARCH_QWEN2_MOE ||
        s->arch == BT_ARCH_QWEN3_MOE) {
        json_object_set_new(c, "use_sliding_window", json_false());
    }
    if (s->arch == BT_ARCH_MIXTRAL) {
        json_object_set_new(c, "num_local_experts", json_integer(s->n_experts));
        json_object_set_new(c, "num_experts_per_tok",
                            json_integer(s->n_experts_used));
    } else if (bt_arch_is_moe(s->arch)) {
        json_t *only = json_array();

        for (int i = 0; i < s->n_mlp_only; i++) {
            json_array_append_new(only, json_integer(s->mlp_only[i]));
        }
        json_object_set_new(c, "num_experts", json_integer(s->n_experts));
        json_object_set_new(c, "num_experts_per_tok",
                            json_integer(s->n_experts_used));
        json_object_set_new(c, "moe_intermediate_size",
                            json_integer(s->moe_ffn));
        json_object_set_new(c, "norm_topk_prob",
                            json_boolean(s->norm_topk_prob));
        json_object_set_new(c, "decoder_sparse_step",
                            json_integer(s->sparse_step));
        json_object_set_new(c, "mlp_only_layers", only);
        if (s->arch == BT_ARCH_QWEN2_MOE) {
            json_object_set_new(c, "shared_expert_intermediate_size",
                                json_integer(s->shared_ffn));
        }
    }
    return c;
}

static bt_status_t write_json(const char *dir, const char *name, json_t *v)
{
    char path[PATH_MAX];

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    if (json_dump_file(v, path, JSON_INDENT(2)) != 0) {
        bt_error("mkmodel: cannot write %s: %s", path, bt_strerror(errno));
        return BT_ERR_IO;
    }
    return BT_OK;
}

static bt_status_t write_tensor(FILE *f, const bt_synth_spec_t *s,
                                const synth_tensor_t *t)
{
    const uint64_t key = mix64(s->seed) ^ fnv1a(t->name);
    const uint64_t n = (uint64_t)t->shape[0] *
                       (uint64_t)(t->n_dims == 2 ? t->shape[1] : 1);
    const size_t es = bt_dtype_size(s->dtype);
    uint8_t buf[16384];
    const uint64_t per = sizeof(buf) / es;

    for (uint64_t i = 0; i < n; i += per) {
        const uint64_t m = n - i < per ? n - i : per;

        for (uint64_t j = 0; j < m; j++) {
            bt_dtype_store(buf, s->dtype, (size_t)j,
                           synth_at(key, i + j, t->scale) + t->offset);
        }
        if (fwrite(buf, es, (size_t)m, f) != (size_t)m) {
            return BT_ERR_IO;
        }
    }
    return BT_OK;
}

static bt_status_t write_shard(const bt_synth_spec_t *s, const char *path,
                               synth_list_t *l, int shard)
{
    const char *dt = s->dtype == BT_DTYPE_BF16 ? "BF16"
                     : s->dtype == BT_DTYPE_F16 ? "F16" : "F32";
    json_t *hdr = json_object(), *meta = json_object();
    uint64_t off = 0;
    char *text = NULL;
    size_t len, pad;
    uint8_t lenb[8];
    bt_status_t st = BT_OK;
    FILE *f = NULL;

    json_object_set_new(meta, "format", json_string("pt"));
    json_object_set_new(hdr, "__metadata__", meta);
    for (int i = 0; i < l->n; i++) {
        synth_tensor_t *t = &l->t[i];
        json_t *e, *shape, *offs;
        uint64_t nb;

        if (t->shard != shard) {
            continue;
        }
        shape = json_array();
        offs = json_array();
        nb = (uint64_t)t->shape[0] *
             (uint64_t)(t->n_dims == 2 ? t->shape[1] : 1) *
             bt_dtype_size(s->dtype);
        t->begin = off;
        t->end = off + nb;
        off += nb;
        for (int d = 0; d < t->n_dims; d++) {
            json_array_append_new(shape, json_integer(t->shape[d]));
        }
        json_array_append_new(offs, json_integer((json_int_t)t->begin));
        json_array_append_new(offs, json_integer((json_int_t)t->end));
        e = json_object();
        json_object_set_new(e, "dtype", json_string(dt));
        json_object_set_new(e, "shape", shape);
        json_object_set_new(e, "data_offsets", offs);
        json_object_set_new(hdr, t->name, e);
    }
    text = json_dumps(hdr, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(hdr);
    if (text == NULL) {
        return BT_ERR_NO_MEMORY;
    }
    len = strlen(text);
    pad = (8 - len % 8) % 8;  /* data starts 8-byte aligned */
    for (int i = 0; i < 8; i++) {
        lenb[i] = (uint8_t)((uint64_t)(len + pad) >> (8 * i));
    }
    f = fopen(path, "wb");
    if (f == NULL) {
        bt_error("mkmodel: cannot create %s: %s", path, bt_strerror(errno));
        free(text);
        return BT_ERR_IO;
    }
    if (fwrite(lenb, 1, 8, f) != 8 || fwrite(text, 1, len, f) != len ||
        fwrite("        ", 1, pad, f) != pad) {
        st = BT_ERR_IO;
    }
    for (int i = 0; st == BT_OK && i < l->n; i++) {
        if (l->t[i].shard == shard) {
            st = write_tensor(f, s, &l->t[i]);
        }
    }
    if (fclose(f) != 0) {
        st = BT_ERR_IO;
    }
    if (st != BT_OK) {
        bt_error("mkmodel: writing %s failed: %s", path, bt_strerror(errno));
    }
    free(text);
    return st;
}

static int mkdir_p(const char *dir)
{
    char p[PATH_MAX];
    size_t n = strlen(dir);

    if (n == 0 || n >= sizeof(p)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(p, dir, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (p[i] == '/' || p[i] == '\0') {
            char c = p[i];

            p[i] = '\0';
            if (mkdir(p, 0755) != 0 && errno != EEXIST) {
                return -1;
            }
            p[i] = c;
        }
    }
    return 0;
}

bt_status_t bt_synth_write(const bt_synth_spec_t *s, const char *dir)
{
    synth_list_t l = {NULL, 0, 0, BT_OK};
    char path[PATH_MAX];
    json_t *cfg, *gen;
    bt_status_t st;
    const int shards = s->n_shards > 1 ? s->n_shards : 1;

    if (mkdir_p(dir) != 0) {
        bt_error("mkmodel: cannot create %s: %s", dir, bt_strerror(errno));
        return BT_ERR_IO;
    }
    synth_tensors(s, &l);
    if (l.status != BT_OK) {
        free(l.t);
        return l.status;
    }
    qsort(l.t, (size_t)l.n, sizeof(*l.t), tensor_cmp);
    for (int i = 0; i < l.n; i++) {
        l.t[i].shard = (int)((int64_t)i * shards / l.n);
    }
    cfg = config_json(s);
    st = write_json(dir, "config.json", cfg);
    json_decref(cfg);
    gen = json_object();
    json_object_set_new(gen, "bos_token_id", json_integer(s->bos_id));
    json_object_set_new(gen, "eos_token_id", json_integer(s->eos_id));
    json_object_set_new(gen, "do_sample", json_false());
    if (st == BT_OK) {
        st = write_json(dir, "generation_config.json", gen);
    }
    json_decref(gen);
    for (int sh = 0; st == BT_OK && sh < shards; sh++) {
        if (shards == 1) {
            snprintf(path, sizeof(path), "%s/model.safetensors", dir);
        } else {
            snprintf(path, sizeof(path), "%s/model-%05d-of-%05d.safetensors",
                     dir, sh + 1, shards);
        }
        st = write_shard(s, path, &l, sh);
    }
    if (st == BT_OK && shards > 1) {
        json_t *idx = json_object(), *map = json_object();

        for (int i = 0; i < l.n; i++) {
            snprintf(path, sizeof(path), "model-%05d-of-%05d.safetensors",
                     l.t[i].shard + 1, shards);
            json_object_set_new(map, l.t[i].name, json_string(path));
        }
        json_object_set_new(idx, "metadata", json_object());
        json_object_set_new(idx, "weight_map", map);
        st = write_json(dir, "model.safetensors.index.json", idx);
        json_decref(idx);
    } else if (st == BT_OK) {
        /* a stale index from an earlier sharded run would win at load */
        snprintf(path, sizeof(path), "%s/model.safetensors.index.json", dir);
        remove(path);
    }
    free(l.t);
    return st;
}
