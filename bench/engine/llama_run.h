/* Runs llama.cpp's llama-bench on a GGUF file for one test and reads its
 * per-repetition tokens per second (its `-o jsonl` output). */
#ifndef BT_BENCH_LLAMA_RUN_H
#define BT_BENCH_LLAMA_RUN_H

#include <stddef.h>

typedef struct {
    double best;   /* tok/s of the fastest repetition */
    double mean;   /* llama-bench's avg_ts */
} bt_llama_ts_t;

/* One test: prompt processing (n_prompt > 0, n_gen 0) or generation
 * (n_prompt 0, n_gen > 0). llama-bench's stderr goes to `log`. 0, or -1
 * with the reason in err. */
int bt_llama_bench(const char *exe, const char *gguf, const char *log,
                   int threads, int n_prompt, int n_gen, int reps,
                   bt_llama_ts_t *ts, char *err, size_t errlen);

#endif
