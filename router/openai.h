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

typedef struct {
    bt_openai_kind_t            kind;
    bool                        stream;
    bool                        include_usage; /* stream_options.include_usage */
    bool                        logprobs;      /* chat: logprobs: true */
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

/* "stop", "length", "cancelled"→null-ish, as OpenAI names them. */
const char *bt_openai_finish_reason(Baton__V1__FinishReason reason);

/* Usage object {prompt_tokens, completion_tokens, total_tokens,
 * prompt_tokens_details: {cached_tokens}}. New reference. */
json_t *bt_openai_usage(const Baton__V1__Usage *usage);

/* A whole (non-streaming) response. `text` is the full completion. New
 * reference; NULL on out of memory. */
json_t *bt_openai_response(bt_openai_kind_t kind, const char *id,
                           const char *model, uint64_t created_s,
                           const char *text, size_t text_len,
                           Baton__V1__FinishReason finish,
                           const Baton__V1__Usage *usage);

/* One stream chunk: a text delta (`finish` NONE/UNSPECIFIED: null), or
 * the first chat chunk with the role when `first` is true. New reference. */
json_t *bt_openai_chunk(bt_openai_kind_t kind, const char *id,
                        const char *model, uint64_t created_s,
                        const char *delta, size_t delta_len, bool first,
                        Baton__V1__FinishReason finish);

/* The last chunk of a stream with include_usage: empty choices + usage. */
json_t *bt_openai_usage_chunk(bt_openai_kind_t kind, const char *id,
                              const char *model, uint64_t created_s,
                              const Baton__V1__Usage *usage);

#endif
