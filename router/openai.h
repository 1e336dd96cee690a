/* The OpenAI-compatible HTTP API of the router: request bodies of
 * /v1/completions and /v1/chat/completions parsed and validated into the
 * same baton.v1.GenerateRequest the gRPC API takes, and the JSON the API
 * answers with (whole responses and stream chunks).
 *
 * Validation is strict where it matters: unknown fields, wrong types, out
 * of range values and unsupported features each get a 400 with a message
 * that names the field, in OpenAI's error shape. */
#ifndef BT_ROUTER_OPENAI_H
#define BT_ROUTER_OPENAI_H

#include "base/arena.h"
#include "base/status.h"
#include "generate.pb-c.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

typedef enum {
    BT_OPENAI_COMPLETIONS,
    BT_OPENAI_CHAT,
} bt_openai_kind_t;

#define BT_OPENAI_MAX_STOP       16
#define BT_OPENAI_MAX_STOP_LEN   256
#define BT_OPENAI_MAX_STOP_IDS   32
#define BT_OPENAI_MAX_MESSAGES   1024
#define BT_OPENAI_MAX_LOGPROBS   20
#define BT_OPENAI_MAX_TOKENS     (1 << 20)
#define BT_OPENAI_MAX_PROMPT_IDS (1 << 20)
#define BT_OPENAI_MAX_LOGIT_BIAS 300   /* = BT_SAMPLE_MAX_BIAS */

/* What the output of a chat request with `tools` is read as
 * (openai_tools.h). */
typedef enum {
    BT_OPENAI_TOOLS_NONE = 0, /* no tools, or tool_choice "none": text */
    BT_OPENAI_TOOLS_AUTO,     /* calls parsed from the family's syntax */
    BT_OPENAI_TOOLS_FORCED,   /* "required" or a named function: the output
                                 is one call, constrained by a grammar */
} bt_openai_tool_mode_t;

typedef struct {
    bt_openai_kind_t            kind;
    bt_openai_tool_mode_t       tool_mode;
    const char                **tool_names;  /* the tools' names */
    size_t                      n_tool_names;
    bool                        stream;
    bool                        include_usage; /* stream_options.include_usage */
    bool                        logprobs;      /* logprobs asked for (completions:
                                                  `logprobs` set; chat:
                                                  `logprobs: true`) */
    uint32_t                    n;             /* choices returned, >= 1 */
    uint32_t                    best_of;       /* choices generated, >= n */
    Baton__V1__GenerateRequest  gen;           /* everything in `arena` */
    Baton__V1__SamplingParams   sampling;
    Baton__V1__ChatMessages     chat;
    Baton__V1__TokenIds         ids;
} bt_openai_req_t;

/* Parses `body` (len bytes, max `max_len`) into `req`; every pointer in
 * it is allocated from `arena` (a per-request arena the caller frees).
 * `max_tokens` absent: left 0 (the server's default). On error returns
 * BT_ERR_INVALID_ARG (or BT_ERR_TOO_LARGE / BT_ERR_UNSUPPORTED) and
 * writes the message and the offending field's name (or "") into
 * err/param. */
bt_status_t bt_openai_parse(bt_openai_kind_t kind, const char *body,
                            size_t len, size_t max_len, bt_arena_t *arena,
                            bt_openai_req_t *req, char *err, size_t err_size,
                            char *param, size_t param_size);

/* openai_bias.c: `logit_bias` of `root` (absent: nothing) into
 * sp->logit_bias, allocated from `arena`: keys are decimal token ids,
 * values numbers in [-100, 100], at most BT_OPENAI_MAX_LOGIT_BIAS. The
 * vocabulary is checked when the request starts. BT_ERR_INVALID_ARG with
 * a message in err, or BT_ERR_NO_MEMORY. */
bt_status_t bt_openai_logit_bias(const json_t *root, bt_arena_t *arena,
                                 Baton__V1__SamplingParams *sp, char *err,
                                 size_t err_size);

/* openai_choices.c: `n` and `best_of` (both 1..128, best_of >= n, absent
 * = n) into req->n and req->best_of; best_of > n is not streamed and
 * echo takes one choice only. Reads req->stream and req->gen.echo.
 * BT_ERR_INVALID_ARG with err and param. */
bt_status_t bt_openai_choices(const json_t *root, bt_openai_req_t *req,
                              char *err, size_t err_size, char *param,
                              size_t param_size);

/* A chat role both APIs accept: system, developer (OpenAI's newer name
 * for system), user, assistant, tool. */
bool bt_openai_role_ok(const char *role);

/* "stop", "length", "cancelled"→null-ish, as OpenAI names them. */
const char *bt_openai_finish_reason(Baton__V1__FinishReason reason);

/* Usage object {prompt_tokens, completion_tokens, total_tokens,
 * prompt_tokens_details: {cached_tokens}}. New reference. */
json_t *bt_openai_usage(const Baton__V1__Usage *usage);

/* One token and its log-probability, as the logprobs objects show it.
 * `text` (len bytes) is the token decoded alone, raw: a byte-level token
 * may hold part of a UTF-8 character. Such a token's string is
 * "bytes:\\xNN..." (OpenAI's convention); chat's `bytes` always has the
 * raw bytes. A non-finite logprob is written as -9999 (JSON has no -inf). */
typedef struct {
    const char *text;
    size_t      len;
    float       logprob;
} bt_openai_tok_lp_t;

/* Appends one generated token to a choice's logprobs object (*lp_p,
 * created when NULL): completions {"tokens", "token_logprobs",
 * "top_logprobs": [{text: logprob}], "text_offset"} (text_offset: the
 * token's byte offset in the completion text), chat {"content": [{"token",
 * "logprob", "bytes", "top_logprobs": [{"token", "logprob", "bytes"}]}]}.
 * `top`: n_top alternatives, most likely first. BT_ERR_NO_MEMORY. */
bt_status_t bt_openai_logprobs_add(bt_openai_kind_t kind, json_t **lp_p,
                                   const bt_openai_tok_lp_t *chosen,
                                   const bt_openai_tok_lp_t *top, size_t n_top,
                                   size_t text_offset);

/* openai_echo.c (completions' echo with logprobs): appends the prompt's
 * first token, whose logprob and top_logprobs are null, at text_offset 0;
 * BT_ERR_NO_MEMORY. join: `first`'s entries, then `then`'s (both stolen;
 * either may be NULL); NULL on out of memory. */
bt_status_t bt_openai_logprobs_add_first(json_t **lp_p, const char *text,
                                         size_t len);
json_t *bt_openai_logprobs_join(json_t *first, json_t *then);

/* A whole (non-streaming) response. `text` is the full completion;
 * `logprobs` (stolen; NULL: null) the choice's logprobs object. New
 * reference; NULL on out of memory. */
json_t *bt_openai_response(bt_openai_kind_t kind, const char *id,
                           const char *model, uint64_t created_s,
                           const char *text, size_t text_len,
                           json_t *logprobs, Baton__V1__FinishReason finish,
                           const Baton__V1__Usage *usage);

/* One stream chunk: a text delta (`finish` NONE/UNSPECIFIED: null), or
 * the first chat chunk with the role when `first` is true; `logprobs`
 * (stolen; NULL: null) those of the tokens since the last chunk. New
 * reference. */
json_t *bt_openai_chunk(bt_openai_kind_t kind, const char *id,
                        const char *model, uint64_t created_s,
                        const char *delta, size_t delta_len, bool first,
                        json_t *logprobs, Baton__V1__FinishReason finish);

/* The last chunk of a stream with include_usage: empty choices + usage. */
json_t *bt_openai_usage_chunk(bt_openai_kind_t kind, const char *id,
                              const char *model, uint64_t created_s,
                              const Baton__V1__Usage *usage);

#endif
