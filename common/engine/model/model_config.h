/* A model's hyperparameters, read from a Hugging Face `config.json`.
 *
 * One struct for every supported family; fields a family lacks keep
 * neutral values (n_experts 0 = dense). Errors name the file and key. */
#ifndef BT_ENGINE_MODEL_CONFIG_H
#define BT_ENGINE_MODEL_CONFIG_H

#include "base/status.h"
#include "engine/dtype.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define BT_MODEL_MAX_LAYERS  1024
#define BT_MODEL_MAX_EXPERTS 1024

typedef enum {
    BT_ARCH_LLAMA = 0,  /* LlamaForCausalLM */
    BT_ARCH_MISTRAL,    /* MistralForCausalLM */
    BT_ARCH_QWEN2,      /* Qwen2ForCausalLM: q/k/v biases */
    BT_ARCH_MIXTRAL,    /* MixtralForCausalLM: softmax, top-k, renormalise */
    BT_ARCH_QWEN2_MOE,  /* Qwen2MoeForCausalLM: + shared expert, sigmoid gate */
    BT_ARCH_QWEN3_MOE,  /* Qwen3MoeForCausalLM: per-head q/k RMSNorm */
    BT_ARCH_COUNT,
} bt_arch_t;

typedef struct {
    bt_arch_t  arch;
    int        hidden;          /* hidden_size */
    int        n_layers;        /* num_hidden_layers */
    int        n_heads;         /* num_attention_heads */
    int        n_kv_heads;      /* num_key_value_heads (GQA) */
    int        head_dim;        /* head_dim, default hidden / n_heads */
    int        ffn;             /* intermediate_size of dense MLPs */
    int        vocab;           /* vocab_size */
    int        max_pos;         /* max_position_embeddings */
    float      norm_eps;        /* rms_norm_eps */
    double     rope_theta;
    bool       rope_llama3;     /* rope_scaling.rope_type == "llama3" */
    double     rope_factor;
    double     rope_low_freq_factor;
    double     rope_high_freq_factor;
    double     rope_orig_max_pos;
    int        sliding_window;  /* 0: none */
    bool       tie_embeddings;  /* tie_word_embeddings: no lm_head.weight */
    bool       attn_bias;       /* q/k/v projections carry biases */
    bool       qk_norm;         /* per-head RMSNorm of q and k (Qwen3) */
    /* MoE (n_experts == 0: dense) */
    int        n_experts;       /* num_local_experts / num_experts */
    int        n_experts_used;  /* num_experts_per_tok */
    int        moe_ffn;         /* expert intermediate size */
    int        shared_ffn;      /* Qwen2-MoE shared expert size, 0: none */
    bool       norm_topk_prob;  /* renormalise the top-k weights to sum 1 */
    bool      *layer_is_moe;    /* [n_layers], owned */
    int        bos_id;          /* -1 when absent */
    int        eos_id;          /* -1 when absent */
    bt_dtype_t torch_dtype;
} bt_model_config_t;

const char *bt_arch_name(bt_arch_t arch);      /* "LlamaForCausalLM" */
bool bt_arch_parse(const char *name, bt_arch_t *arch_p);
bool bt_arch_is_moe(bt_arch_t arch);

/* Reads `path`; on failure logs "file PATH: ..." and leaves *cfg zeroed. */
bt_status_t bt_model_config_load(const char *path, bt_model_config_t *cfg);
/* Same from a parsed object (for the fuzzer and tests); `file` names
 * errors. */
bt_status_t bt_model_config_from_json(const char *file, const json_t *root,
                                      bt_model_config_t *cfg);
void bt_model_config_cleanup(bt_model_config_t *cfg);

#endif
