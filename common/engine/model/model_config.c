#include "model_config.h"

#include "base/json.h"
#include "base/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONFIG_MAX_BYTES (4u << 20)

static const struct {
    const char *arch;
    const char *model_type;
} arch_names[BT_ARCH_COUNT] = {
    [BT_ARCH_LLAMA]     = {"LlamaForCausalLM", "llama"},
    [BT_ARCH_MISTRAL]   = {"MistralForCausalLM", "mistral"},
    [BT_ARCH_QWEN2]     = {"Qwen2ForCausalLM", "qwen2"},
    [BT_ARCH_MIXTRAL]   = {"MixtralForCausalLM", "mixtral"},
    [BT_ARCH_QWEN2_MOE] = {"Qwen2MoeForCausalLM", "qwen2_moe"},
    [BT_ARCH_QWEN3_MOE] = {"Qwen3MoeForCausalLM", "qwen3_moe"},
};

const char *bt_arch_name(bt_arch_t arch)
{
    return (unsigned)arch < BT_ARCH_COUNT ? arch_names[arch].arch : "unknown";
}

bool bt_arch_parse(const char *name, bt_arch_t *arch_p)
{
    for (int i = 0; i < BT_ARCH_COUNT; i++) {
        if (strcmp(name, arch_names[i].arch) == 0 ||
            strcmp(name, arch_names[i].model_type) == 0) {
            *arch_p = (bt_arch_t)i;
            return true;
        }
    }
    return false;
}

bool bt_arch_is_moe(bt_arch_t arch)
{
    return arch == BT_ARCH_MIXTRAL || arch == BT_ARCH_QWEN2_MOE ||
           arch == BT_ARCH_QWEN3_MOE;
}

/* Reads an optional integer that may also be null (= absent). */
static bt_status_t cfg_int(const char *file, const json_t *root,
                           const char *key, bool required, int64_t min,
                           int64_t max, int *out)
{
    char err[BT_JSON_ERR_SIZE];
    int64_t v;
    bt_status_t s;

    if (json_is_null(json_object_get(root, key)) && !required) {
        return BT_OK;
    }
    s = bt_json_get_int(root, key, required, min, max, &v, err, sizeof(err));
    if (s == BT_ERR_NOT_FOUND) {
        return BT_OK;
    }
    if (s != BT_OK) {
        bt_error("file %s: %s", file, err);
        return BT_ERR_INVALID_ARG;
    }
    *out = (int)v;
    return BT_OK;
}

static bt_status_t cfg_num(const char *file, const json_t *root,
                           const char *key, double min, double max,
                           double *out)
{
    char err[BT_JSON_ERR_SIZE];
    bt_status_t s;

    if (json_is_null(json_object_get(root, key))) {
        return BT_OK;
    }
    s = bt_json_get_number(root, key, false, min, max, out, err, sizeof(err));
    if (s == BT_ERR_NOT_FOUND) {
        return BT_OK;
    }
    if (s != BT_OK) {
        bt_error("file %s: %s", file, err);
        return BT_ERR_INVALID_ARG;
    }
    return BT_OK;
}

static bt_status_t cfg_bool(const char *file, const json_t *root,
                            const char *key, bool *out)
{
    char err[BT_JSON_ERR_SIZE];
    bt_status_t s;

    if (json_is_null(json_object_get(root, key))) {
        return BT_OK;
    }
    s = bt_json_get_bool(root, key, false, out, err, sizeof(err));
    if (s == BT_ERR_NOT_FOUND) {
        return BT_OK;
    }
    if (s != BT_OK) {
        bt_error("file %s: %s", file, err);
        return BT_ERR_INVALID_ARG;
    }
    return BT_OK;
}

/* bos/eos: an integer or a list whose first entry counts. */
static void cfg_token_id(const json_t *root, const char *key, int *out)
{
    const json_t *v = json_object_get(root, key);

    if (json_is_array(v)) {
        v = json_array_get(v, 0);
    }
    if (json_is_integer(v) && json_integer_value(v) >= 0 &&
        json_integer_value(v) < (1 << 30)) {
        *out = (int)json_integer_value(v);
    }
}

static bt_status_t cfg_arch(const char *file, const json_t *root,
                            bt_arch_t *arch_p)
{
    const json_t *archs = json_object_get(root, "architectures");
    const char *name = NULL;

    if (json_is_array(archs) && json_array_size(archs) > 0) {
        name = json_string_value(json_array_get(archs, 0));
    } else {
        name = json_string_value(json_object_get(root, "model_type"));
    }
    if (name == NULL) {
        bt_error("file %s: no architectures or model_type", file);
        return BT_ERR_INVALID_ARG;
    }
    if (!bt_arch_parse(name, arch_p)) {
        bt_error("file %s: unknown architecture '%.64s' (supported: "
                 "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, "
                 "MixtralForCausalLM, Qwen2MoeForCausalLM, "
                 "Qwen3MoeForCausalLM)", file, name);
        return BT_ERR_UNSUPPORTED;
    }
    return BT_OK;
}

static bt_status_t cfg_rope_scaling(const char *file, const json_t *root,
                                    bt_model_config_t *cfg)
{
    const json_t *rs = json_object_get(root, "rope_scaling");
    const char *type;

    if (rs == NULL || json_is_null(rs)) {
        return BT_OK;
    }
    if (!json_is_object(rs)) {
        bt_error("file %s: rope_scaling is not an object", file);
        return BT_ERR_INVALID_ARG;
    }
    type = json_string_value(json_object_get(rs, "rope_type"));
    if (type == NULL) {
        type = json_string_value(json_object_get(rs, "type"));
    }
    if (type == NULL || strcmp(type, "default") == 0) {
        return BT_OK;
    }
    if (strcmp(type, "llama3") != 0) {
        bt_error("file %s: rope_scaling type '%.32s' is not supported "
                 "(llama3 is)", file, type);
        return BT_ERR_UNSUPPORTED;
    }
    cfg->rope_llama3 = true;
    cfg->rope_factor = 8.0;
    cfg->rope_low_freq_factor = 1.0;
    cfg->rope_high_freq_factor = 4.0;
    cfg->rope_orig_max_pos = 8192.0;
    if (cfg_num(file, rs, "factor", 1e-3, 1e6, &cfg->rope_factor) != BT_OK ||
        cfg_num(file, rs, "low_freq_factor", 1e-6, 1e6,
                &cfg->rope_low_freq_factor) != BT_OK ||
        cfg_num(file, rs, "high_freq_factor", 1e-6, 1e6,
                &cfg->rope_high_freq_factor) != BT_OK ||
        cfg_num(file, rs, "original_max_position_embeddings", 1, 1e9,
                &cfg->rope_orig_max_pos) != BT_OK) {
        return BT_ERR_INVALID_ARG;
    }
    if (cfg->rope_high_freq_factor <= cfg->rope_low_freq_factor) {
        bt_error("file %s: rope_scaling high_freq_factor must exceed "
                 "low_freq_factor", file);
        return BT_ERR_INVALID_ARG;
    }
    return BT_OK;
}

static bt_status_t cfg_moe(const char *file, const json_t *root,
                           bt_model_config_t *cfg)
{
    const json_t *only = json_object_get(root, "mlp_only_layers");
    int step = 1;
    size_t i;
    const json_t *v;

    if (cfg->arch == BT_ARCH_MIXTRAL) {
        if (cfg_int(file, root, "num_local_experts", true, 1,
                    BT_MODEL_MAX_EXPERTS, &cfg->n_experts) != BT_OK) {
            return BT_ERR_INVALID_ARG;
        }
        cfg->moe_ffn = cfg->ffn;
        cfg->norm_topk_prob = true;
    } else {
        if (cfg_int(file, root, "num_experts", true, 1, BT_MODEL_MAX_EXPERTS,
                    &cfg->n_experts) != BT_OK ||
            cfg_int(file, root, "moe_intermediate_size", true, 1, 1 << 20,
                    &cfg->moe_ffn) != BT_OK ||
            cfg_int(file, root, "decoder_sparse_step", false, 1,
                    BT_MODEL_MAX_LAYERS, &step) != BT_OK ||
            cfg_bool(file, root, "norm_topk_prob",
                     &cfg->norm_topk_prob) != BT_OK) {
            return BT_ERR_INVALID_ARG;
        }
        if (cfg->arch == BT_ARCH_QWEN2_MOE &&
            cfg_int(file, root, "shared_expert_intermediate_size", true, 1,
                    1 << 20, &cfg->shared_ffn) != BT_OK) {
            return BT_ERR_INVALID_ARG;
        }
    }
    if (cfg_int(file, root, "num_experts_per_tok", true, 1, cfg->n_experts,
                &cfg->n_experts_used) != BT_OK) {
        return BT_ERR_INVALID_ARG;
    }
    for (int l = 0; l < cfg->n_layers; l++) {
        cfg->layer_is_moe[l] = (l + 1) % step == 0;
    }
    if (only != NULL && !json_is_null(only)) {
        if (!json_is_array(only)) {
            bt_error("file %s: mlp_only_layers is not a list", file);
            return BT_ERR_INVALID_ARG;
        }
        json_array_foreach(only, i, v) {
            json_int_t l = json_integer_value(v);

            if (!json_is_integer(v) || l < 0 || l >= cfg->n_layers) {
                bt_error("file %s: mlp_only_layers[%zu] is not a layer index",
                         file, i);
                return BT_ERR_INVALID_ARG;
            }
            cfg->layer_is_moe[l] = false;
        }
    }
    return BT_OK;
}

bt_status_t bt_model_config_from_json(const char *file, const json_t *root,
                                      bt_model_config_t *cfg)
{
    bt_status_t s;
    double eps = 1e-6;
    bool attn_bias = false, use_sw = true;
    const char *dt;

    memset(cfg, 0, sizeof(*cfg));
    if (!json_is_object(root)) {
        bt_error("file %s: not a json object", file);
        return BT_ERR_INVALID_ARG;
    }
    s = cfg_arch(file, root, &cfg->arch);
    if (s != BT_OK) {
        return s;
    }
    cfg->head_dim = 0;
    cfg->max_pos = 4096;
    cfg->rope_theta = 10000.0;
    cfg->bos_id = -1;
    cfg->eos_id = -1;
    cfg->torch_dtype = BT_DTYPE_BF16;
    if (cfg_int(file, root, "hidden_size", true, 1, 1 << 16,
                &cfg->hidden) != BT_OK ||
        cfg_int(file, root, "num_hidden_layers", true, 1,
                BT_MODEL_MAX_LAYERS, &cfg->n_layers) != BT_OK ||
        cfg_int(file, root, "num_attention_heads", true, 1, 1024,
                &cfg->n_heads) != BT_OK ||
        cfg_int(file, root, "intermediate_size", true, 1, 1 << 20,
                &cfg->ffn) != BT_OK ||
        cfg_int(file, root, "vocab_size", true, 1, 1 << 22,
                &cfg->vocab) != BT_OK) {
        goto err_inval;
    }
    cfg->n_kv_heads = cfg->n_heads;
    if (cfg_int(file, root, "num_key_value_heads", false, 1, 1024,
                &cfg->n_kv_heads) != BT_OK ||
        cfg_int(file, root, "head_dim", false, 2, 1024,
                &cfg->head_dim) != BT_OK ||
        cfg_int(file, root, "max_position_embeddings", false, 1, 1 << 24,
                &cfg->max_pos) != BT_OK ||
        cfg_num(file, root, "rms_norm_eps", 0, 1, &eps) != BT_OK ||
        cfg_num(file, root, "rope_theta", 1, 1e12,
                &cfg->rope_theta) != BT_OK ||
        cfg_bool(file, root, "tie_word_embeddings",
                 &cfg->tie_embeddings) != BT_OK ||
        cfg_bool(file, root, "attention_bias", &attn_bias) != BT_OK ||
        cfg_bool(file, root, "use_sliding_window", &use_sw) != BT_OK ||
        cfg_int(file, root, "sliding_window", false, 1, 1 << 24,
                &cfg->sliding_window) != BT_OK) {
        goto err_inval;
    }
    cfg->norm_eps = (float)eps;
    if (cfg->head_dim == 0) {
        if (cfg->hidden % cfg->n_heads != 0) {
            bt_error("file %s: hidden_size %d is not a multiple of "
                     "num_attention_heads %d", file, cfg->hidden,
                     cfg->n_heads);
            goto err_inval;
        }
        cfg->head_dim = cfg->hidden / cfg->n_heads;
    }
    if (cfg->head_dim % 2 != 0) {
        bt_error("file %s: head_dim %d is odd (rope needs pairs)", file,
                 cfg->head_dim);
        goto err_inval;
    }
    if (cfg->n_heads % cfg->n_kv_heads != 0) {
        bt_error("file %s: num_attention_heads %d is not a multiple of "
                 "num_key_value_heads %d", file, cfg->n_heads,
                 cfg->n_kv_heads);
        goto err_inval;
    }
    /* Qwen2 configs carry a sliding_window that only applies when
     * use_sliding_window is set; Mistral's applies when present. */
    if ((cfg->arch != BT_ARCH_MISTRAL && cfg->arch != BT_ARCH_MIXTRAL &&
         !json_is_true(json_object_get(root, "use_sliding_window"))) ||
        !use_sw) {
        cfg->sliding_window = 0;
    }
    if (cfg->sliding_window >= cfg->max_pos) {
        cfg->sliding_window = 0;
    }
    cfg->attn_bias = cfg->arch == BT_ARCH_QWEN2 ||
                     cfg->arch == BT_ARCH_QWEN2_MOE;
    if (attn_bias && !cfg->attn_bias) {
        bt_error("file %s: attention_bias true is not supported for %s",
                 file, bt_arch_name(cfg->arch));
        s = BT_ERR_UNSUPPORTED;
        goto err;
    }
    cfg->qk_norm = cfg->arch == BT_ARCH_QWEN3_MOE;
    s = cfg_rope_scaling(file, root, cfg);
    if (s != BT_OK) {
        goto err;
    }
    cfg_token_id(root, "bos_token_id", &cfg->bos_id);
    cfg_token_id(root, "eos_token_id", &cfg->eos_id);
    dt = json_string_value(json_object_get(root, "torch_dtype"));
    if (dt == NULL) {
        dt = json_string_value(json_object_get(root, "dtype"));
    }
    if (dt != NULL && !bt_dtype_parse(dt, &cfg->torch_dtype)) {
        cfg->torch_dtype = BT_DTYPE_F32;
    }
    cfg->layer_is_moe = calloc((size_t)cfg->n_layers, sizeof(bool));
    if (cfg->layer_is_moe == NULL) {
        s = BT_ERR_NO_MEMORY;
        goto err;
    }
    if (bt_arch_is_moe(cfg->arch)) {
        s = cfg_moe(file, root, cfg);
        if (s != BT_OK) {
            goto err;
        }
    }
    return BT_OK;

err_inval:
    s = BT_ERR_INVALID_ARG;
err:
    bt_model_config_cleanup(cfg);
    return s;
}

bt_status_t bt_model_config_load(const char *path, bt_model_config_t *cfg)
{
    char err[BT_JSON_ERR_SIZE];
    json_t *root;
    bt_status_t s;

    memset(cfg, 0, sizeof(*cfg));
    s = bt_json_load_file(path, CONFIG_MAX_BYTES, &root, err, sizeof(err));
    if (s != BT_OK) {
        bt_error("model config: %s", err);
        return s == BT_ERR_TOO_LARGE ? s : BT_ERR_INVALID_ARG;
    }
    s = bt_model_config_from_json(path, root, cfg);
    json_decref(root);
    return s;
}

void bt_model_config_cleanup(bt_model_config_t *cfg)
{
    if (cfg == NULL) {
        return;
    }
    free(cfg->layer_is_moe);
    memset(cfg, 0, sizeof(*cfg));
}
