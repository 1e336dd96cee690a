#include "model.h"

#include "base/log.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    bt_model_t *m;
    size_t      bytes;
} load_t;

static bt_status_t get_mat(load_t *ld, const char *name, int rows, int cols,
                           bt_mat_t *out)
{
    const int64_t shape[2] = {rows, cols};
    const bt_st_tensor_t *t;
    bt_status_t s;

    s = bt_st_set_get(ld->m->st, name, 2, shape, &t);
    if (s != BT_OK) {
        return s;
    }
    out->data = t->data;
    out->dtype = t->dtype;
    out->rows = rows;
    out->cols = cols;
    ld->bytes += t->nbytes;
    return BT_OK;
}

static bt_status_t get_vec(load_t *ld, const char *name, int n, float **out)
{
    const int64_t shape[1] = {n};
    const bt_st_tensor_t *t;
    bt_status_t s;

    s = bt_st_set_get(ld->m->st, name, 1, shape, &t);
    if (s != BT_OK) {
        return s;
    }
    *out = malloc((size_t)n * sizeof(float));
    if (*out == NULL) {
        return BT_ERR_NO_MEMORY;
    }
    bt_dtype_convert_row(t->data, t->dtype, *out, BT_DTYPE_F32, (size_t)n);
    return BT_OK;
}

static bt_status_t get_ffn(load_t *ld, const char *prefix, const char *g,
                           const char *u, const char *d, int ffn,
                           bt_ffn_weights_t *f)
{
    const int hidden = ld->m->cfg.hidden;
    char name[256];
    bt_status_t s;

    snprintf(name, sizeof(name), "%s.%s.weight", prefix, g);
    s = get_mat(ld, name, ffn, hidden, &f->gate);
    if (s == BT_OK) {
        snprintf(name, sizeof(name), "%s.%s.weight", prefix, u);
        s = get_mat(ld, name, ffn, hidden, &f->up);
    }
    if (s == BT_OK) {
        snprintf(name, sizeof(name), "%s.%s.weight", prefix, d);
        s = get_mat(ld, name, hidden, ffn, &f->down);
    }
    return s;
}

static bt_status_t load_moe(load_t *ld, int l, bt_layer_weights_t *lw)
{
    const bt_model_config_t *c = &ld->m->cfg;
    const bool mixtral = c->arch == BT_ARCH_MIXTRAL;
    const char *block = mixtral ? "block_sparse_moe" : "mlp";
    char name[256], prefix[192];
    bt_status_t s;

    snprintf(name, sizeof(name), "model.layers.%d.%s.gate.weight", l, block);
    s = get_mat(ld, name, c->n_experts, c->hidden, &lw->router);
    if (s != BT_OK) {
        return s;
    }
    lw->experts = calloc((size_t)c->n_experts, sizeof(*lw->experts));
    if (lw->experts == NULL) {
        return BT_ERR_NO_MEMORY;
    }
    for (int e = 0; e < c->n_experts; e++) {
        snprintf(prefix, sizeof(prefix), "model.layers.%d.%s.experts.%d", l,
                 block, e);
        s = mixtral ? get_ffn(ld, prefix, "w1", "w3", "w2", c->moe_ffn,
                              &lw->experts[e])
                    : get_ffn(ld, prefix, "gate_proj", "up_proj", "down_proj",
                              c->moe_ffn, &lw->experts[e]);
        if (s != BT_OK) {
            return s;
        }
    }
    if (c->shared_ffn > 0) {
        snprintf(prefix, sizeof(prefix), "model.layers.%d.mlp.shared_expert",
                 l);
        s = get_ffn(ld, prefix, "gate_proj", "up_proj", "down_proj",
                    c->shared_ffn, &lw->shared);
        if (s != BT_OK) {
            return s;
        }
        snprintf(name, sizeof(name),
                 "model.layers.%d.mlp.shared_expert_gate.weight", l);
        s = get_mat(ld, name, 1, c->hidden, &lw->shared_gate);
    }
    return s;
}

static bt_status_t load_layer(load_t *ld, int l)
{
    const bt_model_config_t *c = &ld->m->cfg;
    bt_layer_weights_t *lw = &ld->m->w.layers[l];
    const int qd = c->n_heads * c->head_dim, kvd = c->n_kv_heads * c->head_dim;
    char name[256], prefix[128];
    bt_status_t s;

#define LNAME(...) (snprintf(name, sizeof(name), __VA_ARGS__), name)
    if ((s = get_vec(ld, LNAME("model.layers.%d.input_layernorm.weight", l),
                     c->hidden, &lw->attn_norm)) != BT_OK ||
        (s = get_mat(ld, LNAME("model.layers.%d.self_attn.q_proj.weight", l),
                     qd, c->hidden, &lw->wq)) != BT_OK ||
        (s = get_mat(ld, LNAME("model.layers.%d.self_attn.k_proj.weight", l),
                     kvd, c->hidden, &lw->wk)) != BT_OK ||
        (s = get_mat(ld, LNAME("model.layers.%d.self_attn.v_proj.weight", l),
                     kvd, c->hidden, &lw->wv)) != BT_OK ||
        (s = get_mat(ld, LNAME("model.layers.%d.self_attn.o_proj.weight", l),
                     c->hidden, qd, &lw->wo)) != BT_OK ||
        (s = get_vec(ld,
                     LNAME("model.layers.%d.post_attention_layernorm.weight",
                           l), c->hidden, &lw->ffn_norm)) != BT_OK) {
        return s;
    }
    if (c->attn_bias &&
        ((s = get_vec(ld, LNAME("model.layers.%d.self_attn.q_proj.bias", l),
                      qd, &lw->bq)) != BT_OK ||
         (s = get_vec(ld, LNAME("model.layers.%d.self_attn.k_proj.bias", l),
                      kvd, &lw->bk)) != BT_OK ||
         (s = get_vec(ld, LNAME("model.layers.%d.self_attn.v_proj.bias", l),
                      kvd, &lw->bv)) != BT_OK)) {
        return s;
    }
    if (c->qk_norm &&
        ((s = get_vec(ld, LNAME("model.layers.%d.self_attn.q_norm.weight", l),
                      c->head_dim, &lw->q_norm)) != BT_OK ||
         (s = get_vec(ld, LNAME("model.layers.%d.self_attn.k_norm.weight", l),
                      c->head_dim, &lw->k_norm)) != BT_OK)) {
        return s;
    }
#undef LNAME
    lw->moe = c->n_experts > 0 && c->layer_is_moe[l];
    if (lw->moe) {
        return load_moe(ld, l, lw);
    }
    snprintf(prefix, sizeof(prefix), "model.layers.%d.mlp", l);
    return get_ffn(ld, prefix, "gate_proj", "up_proj", "down_proj", c->ffn,
                   &lw->ffn);
}

static bt_status_t rope_init(bt_model_t *m)
{
    const bt_model_config_t *c = &m->cfg;
    const int half = c->head_dim / 2;

    m->rope_inv_freq = malloc((size_t)half * sizeof(float));
    if (m->rope_inv_freq == NULL) {
        return BT_ERR_NO_MEMORY;
    }
    for (int i = 0; i < half; i++) {
        double f = 1.0 / pow(c->rope_theta, (2.0 * i) / c->head_dim);

        if (c->rope_llama3) {
            /* Llama 3.1: long wavelengths slow down by `factor`, short
             * ones stay, a smooth blend between. */
            const double lo_wl = c->rope_orig_max_pos / c->rope_low_freq_factor;
            const double hi_wl = c->rope_orig_max_pos /
                                 c->rope_high_freq_factor;
            const double wl = 2.0 * M_PI / f;

            if (wl > lo_wl) {
                f = f / c->rope_factor;
            } else if (wl >= hi_wl) {
                double sm = (c->rope_orig_max_pos / wl -
                             c->rope_low_freq_factor) /
                            (c->rope_high_freq_factor -
                             c->rope_low_freq_factor);
                f = (1.0 - sm) * f / c->rope_factor + sm * f;
            }
        }
        m->rope_inv_freq[i] = (float)f;
    }
    return BT_OK;
}

bt_status_t bt_model_load(const char *dir, bt_model_t **model_p)
{
    char path[PATH_MAX];
    bt_model_t *m;
    bt_model_config_t *c;
    load_t ld;
    bt_status_t s;

    m = calloc(1, sizeof(*m));
    if (m == NULL) {
        return BT_ERR_NO_MEMORY;
    }
    m->dir = strdup(dir);
    if (m->dir == NULL) {
        s = BT_ERR_NO_MEMORY;
        goto err;
    }
    c = &m->cfg;
    snprintf(path, sizeof(path), "%s/config.json", dir);
    s = bt_model_config_load(path, c);
    if (s != BT_OK) {
        goto err;
    }
    s = bt_st_set_open(dir, &m->st);
    if (s != BT_OK) {
        goto err;
    }
    ld.m = m;
    ld.bytes = 0;
    s = get_mat(&ld, "model.embed_tokens.weight", c->vocab, c->hidden,
                &m->w.embed);
    if (s != BT_OK) {
        goto err;
    }
    m->w.layers = calloc((size_t)c->n_layers, sizeof(*m->w.layers));
    if (m->w.layers == NULL) {
        s = BT_ERR_NO_MEMORY;
        goto err;
    }
    for (int l = 0; l < c->n_layers; l++) {
        s = load_layer(&ld, l);
        if (s != BT_OK) {
            goto err;
        }
    }
    s = get_vec(&ld, "model.norm.weight", c->hidden, &m->w.final_norm);
    if (s != BT_OK) {
        goto err;
    }
    if (c->tie_embeddings && bt_st_set_find(m->st, "lm_head.weight") == NULL) {
        m->w.lm_head = m->w.embed;
    } else {
        s = get_mat(&ld, "lm_head.weight", c->vocab, c->hidden,
                    &m->w.lm_head);
        if (s != BT_OK) {
            goto err;
        }
    }
    s = rope_init(m);
    if (s != BT_OK) {
        goto err;
    }
    m->weight_bytes = ld.bytes;
    bt_info("loaded model %s arch %s layers %d hidden %d heads %d/%d "
            "vocab %d experts %d weights %zu MiB", dir, bt_arch_name(c->arch),
            c->n_layers, c->hidden, c->n_heads, c->n_kv_heads, c->vocab,
            c->n_experts, ld.bytes >> 20);
    *model_p = m;
    return BT_OK;

err:
    if (s == BT_ERR_NO_MEMORY) {
        bt_error("model %s: out of memory while loading", dir);
    }
    bt_model_destroy(m);
    return s;
}

void bt_model_destroy(bt_model_t *m)
{
    if (m == NULL) {
        return;
    }
    if (m->w.layers != NULL) {
        for (int l = 0; l < m->cfg.n_layers; l++) {
            bt_layer_weights_t *lw = &m->w.layers[l];

            free(lw->attn_norm);
            free(lw->ffn_norm);
            free(lw->bq);
            free(lw->bk);
            free(lw->bv);
            free(lw->q_norm);
            free(lw->k_norm);
            free(lw->experts);
        }
    }
    free(m->w.layers);
    free(m->w.final_norm);
    free(m->rope_inv_freq);
    bt_st_set_destroy(m->st);
    bt_model_config_cleanup(&m->cfg);
    free(m->dir);
    free(m);
}

static size_t mat_bytes(const bt_mat_t *w)
{
    return (size_t)w->rows * (size_t)w->cols * bt_dtype_size(w->dtype);
}

static size_t ffn_bytes(const bt_ffn_weights_t *f)
{
    return mat_bytes(&f->gate) + mat_bytes(&f->up) + mat_bytes(&f->down);
}

size_t bt_model_bytes_per_token(const bt_model_t *m)
{
    const bt_model_config_t *c = &m->cfg;
    size_t b = mat_bytes(&m->w.lm_head) +
               (size_t)c->hidden * bt_dtype_size(m->w.embed.dtype);

    for (int l = 0; l < c->n_layers; l++) {
        const bt_layer_weights_t *lw = &m->w.layers[l];

        b += mat_bytes(&lw->wq) + mat_bytes(&lw->wk) + mat_bytes(&lw->wv) +
             mat_bytes(&lw->wo);
        if (lw->moe) {
            b += mat_bytes(&lw->router) +
                 (size_t)c->n_experts_used * ffn_bytes(&lw->experts[0]);
            if (c->shared_ffn > 0) {
                b += ffn_bytes(&lw->shared) + mat_bytes(&lw->shared_gate);
            }
        } else {
            b += ffn_bytes(&lw->ffn);
        }
    }
    return b;
}
