/* Mooncake-format request traces for baton-bench and baton-sim (--trace),
 * part of the workload library (workload.h).
 *
 * One JSON object per line: {"timestamp": ms, "input_length": tokens,
 * "output_length": tokens, "hash_ids": [ids of consecutive 512-token
 * prompt blocks]}. Equal hash ids mean equal prompt content, so replaying
 * a trace needs prompts that share exactly those prefixes: block id h
 * becomes `block_tokens` token ids drawn from a generator seeded by
 * (seed, h), the same ids wherever h appears. Lengths are scaled by
 * block_tokens / 512 so the trace fits a small machine while its sharing
 * structure stays the same. */
#ifndef BT_BENCH_TRACE_H
#define BT_BENCH_TRACE_H

#include <stddef.h>
#include <stdint.h>

#define BT_TRACE_BLOCK        512      /* tokens per block in the trace */
#define BT_TRACE_MAX_BLOCKS   4096     /* hash ids per request */
#define BT_TRACE_MAX_LINE     (1 << 20)

typedef struct {
    uint64_t  t_ms;          /* arrival, relative to the first request */
    int32_t  *prompt;        /* n_prompt token ids */
    uint32_t  n_prompt;
    uint32_t  max_tokens;
    uint32_t  ideal_cached;  /* tokens an unbounded prefix cache would hold */
} bt_trace_req_t;

typedef struct {
    bt_trace_req_t *reqs;
    size_t          n;
    uint64_t        prompt_tokens;  /* sum of n_prompt */
    uint64_t        ideal_cached;   /* sum of ideal_cached */
    uint64_t        blocks, hit_blocks; /* in trace blocks, unscaled */
} bt_trace_t;

typedef struct {
    uint32_t block_tokens;   /* tokens per trace block after scaling */
    uint32_t kv_block;       /* the cluster's block size: reuse granularity */
    uint32_t max_output;     /* cap on scaled output lengths */
    uint32_t token_lo, token_hi; /* ids drawn from [lo, hi) */
    uint64_t seed;
    size_t   max_requests;   /* 0: every line */
} bt_trace_opts_t;

/* Reads and scales the first max_requests requests of `path`. The ideal
 * cache counts, per request, the longest prefix of its blocks that earlier
 * requests already had (blocks chain: a block is reusable only after all
 * before it), rounded down to kv_block tokens and at most n_prompt - 1 (the
 * last prompt token is always computed). Returns 0, or -1 with a message
 * in err (line number and field). */
int bt_trace_load(const char *path, const bt_trace_opts_t *opts,
                  bt_trace_t *trace_p, char *err, size_t err_size);
void bt_trace_free(bt_trace_t *trace);

#endif
