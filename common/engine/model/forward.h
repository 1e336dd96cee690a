/* The step API: one call runs a batch that mixes prefill chunks of some
 * sequences with decode tokens of others.
 *
 * Each sequence brings its new tokens, the position of the first one
 * (= how many tokens of it are already in the KV pool, computed here or
 * imported from elsewhere) and its block table. The step writes the new
 * tokens' K/V into the blocks, layer by layer, and returns logits for
 * the last `n_logits` new tokens of each sequence.
 *
 * Results are batch-invariant (backend.h): a token's K/V and logits are
 * the same bits whatever else is in the batch, however its prompt was
 * chunked, with any thread count. */
#ifndef BT_ENGINE_FORWARD_H
#define BT_ENGINE_FORWARD_H

#include "backend.h"
#include "base/status.h"
#include "experts.h"
#include "model.h"

#include <stdint.h>

typedef struct {
    const int32_t *tokens;      /* [n_tokens] new tokens */
    int            n_tokens;    /* >= 1 */
    int            pos;         /* position of tokens[0] */
    const uint32_t *block_table; /* pool block ids, position p in
                                   block_table[p / block_size] */
    int            n_blocks;    /* entries; must cover pos + n_tokens */
    int            n_logits;    /* logits for the last n_logits tokens */
    float         *logits;      /* out: [n_logits][vocab], caller-owned */
} bt_step_seq_t;

/* Called on the stepping thread after layer `layer`'s K/V of every token
 * in the batch is in the pool (the hook for layer-wise KV transfer). */
typedef void (*bt_layer_done_cb)(void *ctx, int layer);

typedef struct {
    bt_layer_done_cb layer_done;
    void            *ctx;
} bt_step_hooks_t;

/* MoE routing counters since the last reset. tokens[l * E + e]: routings
 * of a token to expert e in layer l; transitions[(l * E + a) * E + b]: a
 * token routed to a in layer l and to b in layer l + 1 (both MoE). */
typedef struct {
    int       n_layers;
    int       n_experts;
    uint64_t *tokens;       /* [n_layers][n_experts] */
    uint64_t *transitions;  /* [n_layers][n_experts][n_experts] */
} bt_moe_stats_t;

typedef struct bt_fwd bt_fwd_t;

/* `model` is borrowed and must outlive the context. n_threads <= 0: all
 * cores. */
bt_status_t bt_fwd_create(const bt_model_t *model,
                          const bt_backend_ops_t *ops, int n_threads,
                          bt_fwd_t **fwd_p);
void bt_fwd_destroy(bt_fwd_t *fwd);
int bt_fwd_threads(const bt_fwd_t *fwd);

/* Runs one step. Input errors (token out of range, block table too short,
 * KV view of another shape) return BT_ERR_INVALID_ARG before anything is
 * written. One step at a time per context. */
bt_status_t bt_fwd_step(bt_fwd_t *fwd, const bt_kv_view_t *kv,
                        bt_step_seq_t *seqs, int n_seqs,
                        const bt_step_hooks_t *hooks);

/* Spreads a MoE model's experts over `n_devices` expert devices
 * (experts.h), the context's threads split evenly between them; slots <=
 * 0: bt_ep_default_slots. Before the first step. Without it a context
 * runs every expert itself (the one-device path). BT_ERR_INVALID_ARG for
 * a dense model. */
bt_status_t bt_fwd_experts_init(bt_fwd_t *fwd, int n_devices, int slots);
/* The expert devices (stage plans, read loads), NULL without them. Steps
 * switch to a staged plan before their first layer. */
bt_ep_t *bt_fwd_experts(bt_fwd_t *fwd);

/* Copies the MoE counters into `out` (arrays allocated here; free with
 * bt_moe_stats_cleanup) and optionally zeroes them. Safe from any thread.
 * BT_ERR_UNSUPPORTED for a dense model. */
bt_status_t bt_fwd_moe_stats(bt_fwd_t *fwd, bool reset, bt_moe_stats_t *out);
void bt_moe_stats_cleanup(bt_moe_stats_t *s);

/* The forward pass's own elementwise pieces, exposed so that another
 * backend's kernels can be checked against them bit for bit
 * (tests/cuda/cuda_exact_check.c). */
/* rope[t][head_dim]: cos of each frequency for pos[t], then the sin. */
void bt_fwd_rope_tables(const bt_model_t *m, const int32_t *pos, int T,
                        float *rope);
/* RoPE (rotate_half) of n_heads heads of one token with its table row. */
void bt_fwd_rope_apply(float *x, int n_heads, int hd, const float *cs);
/* One token's MoE routing: softmax, top k, weights (renormalized when the
 * model asks). */
void bt_fwd_moe_route(const bt_model_config_t *c, const float *logits,
                      int *sel, float *w);
/* y[t] = sum over slots j in order of selw[t][j] * slot_out[t][j]. */
void bt_fwd_moe_combine(const float *slot_out, const float *selw, int T,
                        int K, int H, float *y);
/* y[t] += sigmoid(sgate[t]) * o[t] (the shared expert). */
void bt_fwd_moe_shared_add(const float *sgate, const float *o, int T, int H,
                           float *y);

#endif
