/* A loaded model: config, weights memory-mapped from safetensors, RoPE
 * frequencies. Read-only after bt_model_load, so any number of forward
 * contexts (forward.h) may share one.
 *
 * Laid out after llama2.c's Config / Weights split: each field says its
 * shape. Matrices are row-major [rows = outputs][cols = inputs], exactly
 * as PyTorch's nn.Linear stores them, in the file's dtype (never copied);
 * small vectors (norms, biases) are converted to f32 copies at load. */
#ifndef BT_ENGINE_MODEL_H
#define BT_ENGINE_MODEL_H

#include "base/status.h"
#include "engine/dtype.h"
#include "model_config.h"
#include "safetensors.h"

#include <stdint.h>

typedef struct {
    const void *data;   /* [rows][cols], in the mapping */
    bt_dtype_t  dtype;
    int         rows;
    int         cols;
} bt_mat_t;

typedef struct {
    bt_mat_t gate;      /* [ffn][hidden] */
    bt_mat_t up;        /* [ffn][hidden] */
    bt_mat_t down;      /* [hidden][ffn] */
} bt_ffn_weights_t;

typedef struct {
    float           *attn_norm;   /* [hidden] */
    bt_mat_t         wq;          /* [n_heads * head_dim][hidden] */
    bt_mat_t         wk;          /* [n_kv_heads * head_dim][hidden] */
    bt_mat_t         wv;          /* [n_kv_heads * head_dim][hidden] */
    bt_mat_t         wo;          /* [hidden][n_heads * head_dim] */
    float           *bq, *bk, *bv;/* biases (Qwen2), NULL otherwise */
    float           *q_norm;      /* [head_dim] (Qwen3), NULL otherwise */
    float           *k_norm;      /* [head_dim] */
    float           *ffn_norm;    /* [hidden] */
    bool             moe;         /* experts below, else ffn */
    bt_ffn_weights_t ffn;         /* dense MLP */
    bt_mat_t         router;      /* [n_experts][hidden] */
    bt_ffn_weights_t *experts;    /* [n_experts], owned array */
    bt_ffn_weights_t shared;      /* Qwen2-MoE shared expert */
    bt_mat_t         shared_gate; /* [1][hidden] */
} bt_layer_weights_t;

typedef struct {
    bt_mat_t            embed;      /* [vocab][hidden] */
    bt_layer_weights_t *layers;     /* [n_layers], owned */
    float              *final_norm; /* [hidden] */
    bt_mat_t            lm_head;    /* [vocab][hidden]; = embed when tied */
} bt_model_weights_t;

typedef struct {
    char              *dir;
    bt_model_config_t  cfg;
    bt_model_weights_t w;
    bt_st_set_t       *st;
    float             *rope_inv_freq;  /* [head_dim / 2] */
    size_t             weight_bytes;   /* bytes of all matrices */
} bt_model_t;

/* Loads `dir` (config.json + safetensors). Every tensor's name, shape and
 * dtype is checked; errors are logged naming the file and tensor. */
bt_status_t bt_model_load(const char *dir, bt_model_t **model_p);
void bt_model_destroy(bt_model_t *model);

/* Bytes of weights one decode token reads (every matrix once; for MoE the
 * experts actually used per token), for the roofline. */
size_t bt_model_bytes_per_token(const bt_model_t *model);

#endif
