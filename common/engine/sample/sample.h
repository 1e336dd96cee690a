/* Token sampling (DESIGN §7; docs/internals/sampling.md).
 *
 * Deterministic across batches, nodes and machines: randomness comes from
 * Philox-4x32-10 keyed by the request seed with the token position as the
 * counter, so a sequence's tokens never depend on its neighbours; ties are
 * broken by the lower token id; the decision path uses only IEEE basic
 * arithmetic (own exp in double precision, no libm), so the same logits
 * give the same token on every machine.
 *
 * Order of processing, as vLLM:
 *   1. penalties on the raw logits: repetition (over prompt and generated
 *      tokens: a positive logit is divided by r, a negative one multiplied),
 *      then frequency (- f * count in generated) and presence (- p if it
 *      occurs in generated); then logit_bias (added);
 *   2. temperature (logits / T; T == 0 means greedy: argmax, lowest id on
 *      ties, steps 3-4 skipped);
 *   3. truncation: top-k, then top-p (smallest prefix of the sorted
 *      distribution with mass >= p), then min-p (p_i >= min_p * p_max);
 *   4. draw u = philox(seed, position) in [0, 1) and walk the kept
 *      candidates in (logit desc, id asc) order.
 * Logprobs are the log-softmax of the logits after steps 1-2 (before
 * truncation), so the chosen token always has a finite logprob.
 *
 * A sampler owns scratch buffers for one vocabulary; not thread safe (one
 * per worker thread).
 */
#ifndef BT_SAMPLE_H
#define BT_SAMPLE_H

#include "base/status.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BT_SAMPLE_MAX_STOP_IDS 32
#define BT_SAMPLE_MAX_LOGPROBS 20
#define BT_SAMPLE_MAX_BIAS 300     /* logit_bias entries per request */
#define BT_SAMPLE_BIAS_LIMIT 100.0f /* |bias| <= this, as OpenAI */

typedef struct {
    float temperature;        /* 0: greedy; else > 0 */
    int32_t top_k;            /* <= 0: off */
    float top_p;              /* (0, 1]; 1: off */
    float min_p;              /* [0, 1]; 0: off */
    float repetition_penalty; /* > 0; 1: off */
    float presence_penalty;   /* [-2, 2] like OpenAI; 0: off */
    float frequency_penalty;  /* [-2, 2]; 0: off */
    uint64_t seed;            /* request seed (random when the client gave none,
                                 chosen once by the router) */
    int32_t max_tokens;       /* > 0: generation stops after this many */
    int32_t logprobs;         /* top-n logprobs to return, 0..MAX_LOGPROBS;
                                 < 0: none (not even the chosen one) */
    uint32_t n_stop_ids;      /* stop token ids (EOS included by the caller
                                 unless ignore_eos) */
    int32_t stop_ids[BT_SAMPLE_MAX_STOP_IDS];
    uint32_t n_bias;          /* logit_bias: bias_values[i] is added to the
                                 logit of bias_ids[i] (distinct ids, each in
                                 the vocabulary, |value| <= 100) */
    int32_t bias_ids[BT_SAMPLE_MAX_BIAS];
    float bias_values[BT_SAMPLE_MAX_BIAS];
} bt_sample_params_t;

/* temperature 1, top_k 0, top_p 1, min_p 0, penalties off, seed 0,
 * max_tokens 16, logprobs -1, no stop ids. */
void bt_sample_params_default(bt_sample_params_t *params_p);
/* BT_ERR_INVALID_ARG (logged with the field name) when a field is out of
 * range: NaN, negative temperature, top_p outside (0, 1], ... */
bt_status_t bt_sample_params_check(const bt_sample_params_t *params);

typedef enum {
    BT_FINISH_NONE = 0,   /* keep generating */
    BT_FINISH_STOP = 1,   /* a stop token id (or stop string) was produced */
    BT_FINISH_LENGTH = 2, /* max_tokens reached */
} bt_finish_t;

typedef struct {
    int32_t token;
    float logprob;         /* of the chosen token; 0 when logprobs < 0 */
    uint32_t n_top;        /* entries in top_ids/top_logprobs */
    int32_t top_ids[BT_SAMPLE_MAX_LOGPROBS];
    float top_logprobs[BT_SAMPLE_MAX_LOGPROBS]; /* descending, ties by id */
    bt_finish_t finish;    /* from bt_sample_finish for this token */
} bt_sample_result_t;

/* What the sampler sees of the sequence: prompt and generated tokens so
 * far (borrowed for the call), and the position of the token being
 * sampled (= n_prompt + n_generated for an unbroken sequence; a failover
 * re-prefill keeps positions, hence the same tokens). */
typedef struct {
    const int32_t *prompt;
    uint32_t n_prompt;
    const int32_t *generated;
    uint32_t n_generated;
    uint64_t position;
} bt_sample_seq_t;

typedef struct bt_sampler bt_sampler_t;

bt_status_t bt_sampler_create(uint32_t n_vocab, bt_sampler_t **sampler_p);
void bt_sampler_destroy(bt_sampler_t *sampler); /* NULL-safe */

/* Samples one token from `logits` (n_vocab floats, not modified). Token
 * ids in seq outside [0, n_vocab) are ignored by the penalties. Non-finite
 * logits: NaN counts as -inf; all -inf -> BT_ERR_INVALID_ARG. Sets
 * result_p->finish with bt_sample_finish (n_generated + 1 tokens). */
bt_status_t bt_sampler_sample(bt_sampler_t *sampler,
                              const bt_sample_params_t *params,
                              const float *logits, const bt_sample_seq_t *seq,
                              bt_sample_result_t *result_p);

/* logit_bias (sample_bias.c): checks the entries (count, ids in
 * [0, n_vocab), distinct, values finite in [-100, 100]); on error writes
 * a message naming the entry into err and returns BT_ERR_INVALID_ARG. */
bt_status_t bt_sample_bias_check(const bt_sample_params_t *params,
                                 uint32_t n_vocab, char *err, size_t err_size);
/* Adds each bias to its token's logit (entries already checked; ids
 * outside [0, n_vocab) are skipped). One addition per token, so the result
 * depends on nothing but the logits and the entries. */
void bt_sample_bias_apply(const bt_sample_params_t *params, float *logits,
                          uint32_t n_vocab);

/* sample_lp.c: the logprob of `token` and the top n_top (0..20) by
 * (logit desc, id asc) under the log-softmax of the raw `logits` (no
 * penalties, bias or temperature): a prompt token's logprobs given its
 * prefix (echo). Bit-equal to bt_sampler_sample's logprobs at temperature
 * 1 without penalties or bias. finish is NONE. BT_ERR_INVALID_ARG for a
 * token outside the vocabulary, n_top out of range, or logits all -inf. */
bt_status_t bt_sample_token_logprobs(const float *logits, uint32_t n_vocab,
                                     int32_t token, int32_t n_top,
                                     bt_sample_result_t *res_p);

/* STOP if token is one of params->stop_ids, else LENGTH when n_generated
 * (counting this token) >= max_tokens, else NONE. */
bt_finish_t bt_sample_finish(const bt_sample_params_t *params, int32_t token,
                             uint32_t n_generated);

/* Philox-4x32-10 (Salmon et al., SC'11) with key = seed, counter =
 * (position lo, position hi, stream, 0). */
void bt_philox4x32(const uint32_t ctr[4], const uint32_t key[2],
                   uint32_t out[4]);
/* Uniform double in [0, 1) with 53 random bits from (seed, position). */
double bt_sample_uniform(uint64_t seed, uint64_t position);

/* Deterministic exp and log in double precision using only + - * / and
 * exact scaling by powers of two (relative error < 1e-15). */
double bt_sample_exp(double x);
double bt_sample_log(double x);

/* ---- stop strings over incremental text ---- */

#define BT_STOPSTR_MAX 16         /* stop strings per request */
#define BT_STOPSTR_MAX_LEN 256    /* bytes per stop string */

typedef struct bt_stopstr bt_stopstr_t;

/* `stops` (n <= BT_STOPSTR_MAX, each 1..BT_STOPSTR_MAX_LEN bytes) are
 * copied. BT_ERR_INVALID_ARG / BT_ERR_TOO_LARGE otherwise. */
bt_status_t bt_stopstr_create(const char *const *stops, uint32_t n,
                              bt_stopstr_t **matcher_p);
void bt_stopstr_destroy(bt_stopstr_t *matcher); /* NULL-safe */

/* Feeds the next piece of detokenized text. *out_p (never NULL) and
 * *out_len_p: the text that is now safe to send (borrowed; valid until the
 * next call); the tail that could still become a stop string is held
 * back. When a stop string occurs, *stopped_p is true, the output ends
 * right before it (the stop string is not included) and later feeds emit
 * nothing. BT_ERR_TOO_LARGE if len > 1 MiB. */
bt_status_t bt_stopstr_feed(bt_stopstr_t *matcher, const char *text,
                            size_t len, const char **out_p, size_t *out_len_p,
                            bool *stopped_p);
/* At the end of generation (no stop string): the held-back text. */
void bt_stopstr_flush(bt_stopstr_t *matcher, const char **out_p,
                      size_t *out_len_p);

#endif
