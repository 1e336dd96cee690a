/* A node's cost functions for the simulator, read from and written to a
 * JSON file (docs/internals/sim.md "Cost file"):
 *   prefill chunk of n tokens after ctx cached/earlier tokens:
 *       base_ms + per_token_ms * n + per_token_ctx_us * n * (ctx + n/2) / 1000
 *   decode step of b sequences holding c tokens of context in all:
 *       base_ms + per_seq_ms * b + per_ctx_token_us * c / 1000
 *   the hand-over from the first token to the decode batch: on another
 *   node over a transport, base_ms + ms_per_mb * B / 2^20 for B bytes of
 *   KV; on the same node, decode.join_ms + join_ms_per_mb * B / 2^20
 *   kvstore fetch of k blocks: base_ms + per_block_ms * k
 *   a fixed request overhead (HTTP, tokenizing, the RPCs) added to TTFT,
 *   of which overhead.router_ms (optional) a router serves one request
 *   at a time.
 * and the node's shape (block size, pool blocks, batch, chunk size, KV
 * bytes per token). Optional: "noise", factors by which single requests'
 * TTFTs came out above or below their run's median: each simulated
 * request's overhead and prefill chunks are slowed by one of them, picked
 * by a hash of its index and the draw, so that the percentiles see the
 * host's spread. bt_sim_lsq is the fit's least squares. */
#ifndef BT_SIM_COST_H
#define BT_SIM_COST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BT_SIM_MAX_XFER 4
#define BT_SIM_MAX_NOISE 512

typedef struct {
    char   name[16];     /* "shm", "tcp", "rdma", ... */
    double base_ms;
    double ms_per_mb;
} bt_sim_xfer_cost_t;

typedef struct {
    char     name[128];
    uint32_t block_size;
    uint32_t total_blocks;
    uint32_t max_batch;
    uint32_t max_prefill_tokens;
    double   kv_bytes_per_token;
    double   p_base_ms, p_token_ms, p_ctx_us;
    double   d_base_ms, d_seq_ms, d_ctx_us;
    double   d_join_ms, d_join_ms_mb;   /* optional in the file: 0 */
    bt_sim_xfer_cost_t xfer[BT_SIM_MAX_XFER];
    size_t   n_xfer;
    double   k_base_ms, k_block_ms;
    double   ttft_overhead_ms;
    double   router_ms;       /* of it, served one request at a time */
    float    noise[BT_SIM_MAX_NOISE];   /* ascending factors, > 0 */
    size_t   n_noise;
} bt_sim_cost_t;

/* Time of one prefill chunk / decode step, in ms. */
double bt_sim_prefill_ms(const bt_sim_cost_t *c, uint32_t n, uint32_t ctx);
/* Request i's slow-down factor: one of c's noise factors picked by a hash
 * of i (1 without noise), so a run is reproducible. */
double bt_sim_noise(const bt_sim_cost_t *c, uint64_t i);
/* Keeps at most BT_SIM_MAX_NOISE of the n factors v (sorted in place),
 * evenly spaced over their order, in c. */
void bt_sim_noise_set(bt_sim_cost_t *c, double *v, size_t n);
double bt_sim_decode_ms(const bt_sim_cost_t *c, uint32_t batch,
                        uint64_t ctx_tokens);
/* The transport `name` (NULL or unknown: the first one; none: 0 ms). */
double bt_sim_xfer_ms(const bt_sim_cost_t *c, const char *name,
                      double bytes);
/* The hand-over to a decode batch on the same node. */
double bt_sim_join_ms(const bt_sim_cost_t *c, double bytes);
double bt_sim_kvstore_ms(const bt_sim_cost_t *c, uint32_t blocks);

/* Returns 0, or -1 with a message naming the missing or bad field. */
int bt_sim_cost_load(const char *path, bt_sim_cost_t *c, char *err,
                     size_t err_size);
int bt_sim_cost_save(const char *path, const bt_sim_cost_t *c,
                     const char *source, char *err, size_t err_size);

/* Least squares with non-negative coefficients: x is n rows of k
 * features (row-major), y n values; beta gets k coefficients, each >= 0
 * (a feature whose unconstrained coefficient comes out negative is dropped
 * and the rest refitted). Returns the RMS residual, or -1 when the system
 * is singular or k is 0 or over 8. */
double bt_sim_lsq(const double *x, const double *y, size_t n, size_t k,
                  double *beta);

#endif
