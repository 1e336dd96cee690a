/* Synthetic models in the Hugging Face layout (baton-mkmodel, tests).
 *
 * Weights come from a seed through a portable integer PRNG (splitmix64
 * keyed by the tensor name) and exact float arithmetic, so the same spec
 * writes the same bytes on every machine. Writes config.json,
 * generation_config.json and model.safetensors (or shards with
 * model.safetensors.index.json); the tokenizer files are the caller's. */
#ifndef BT_ENGINE_SYNTH_H
#define BT_ENGINE_SYNTH_H

#include "base/status.h"
#include "engine/dtype.h"
#include "model_config.h"

#include <stdint.h>

#define BT_SYNTH_MAX_MLP_ONLY 16

typedef struct {
    bt_arch_t  arch;
    int        hidden;
    int        n_layers;
    int        n_heads;
    int        n_kv_heads;
    int        head_dim;        /* 0: hidden / n_heads (not written) */
    int        ffn;             /* intermediate_size */
    int        vocab;
    int        max_pos;
    double     rope_theta;
    bool       rope_llama3;     /* write a llama3 rope_scaling block */
    bool       tie_embeddings;
    float      norm_eps;
    int        n_experts;       /* MoE archs */
    int        n_experts_used;
    int        moe_ffn;         /* Qwen MoE: moe_intermediate_size */
    int        shared_ffn;      /* Qwen2-MoE */
    bool       norm_topk_prob;
    int        sparse_step;     /* decoder_sparse_step (Qwen MoE) */
    int        n_mlp_only;
    int        mlp_only[BT_SYNTH_MAX_MLP_ONLY];
    int        sliding_window;  /* Mistral; 0: null */
    int        bos_id;
    int        eos_id;
    bt_dtype_t dtype;
    uint64_t   seed;
    int        n_shards;        /* 1: model.safetensors */
} bt_synth_spec_t;

/* A small model of `arch` (hidden 64, 2 layers, vocab 512, ...). */
void bt_synth_spec_default(bt_synth_spec_t *spec, bt_arch_t arch);

/* Writes the model into `dir` (created if missing). */
bt_status_t bt_synth_write(const bt_synth_spec_t *spec, const char *dir);

/* The generator, exposed for tests: value i of tensor `name`. */
float bt_synth_value(uint64_t seed, const char *name, uint64_t i,
                     float scale);

#endif
