/* JSON responses and stream chunks of the OpenAI-compatible API. */
#include "openai.h"

#include <string.h>

const char *bt_openai_finish_reason(Baton__V1__FinishReason reason)
{
    switch (reason) {
    case BATON__V1__FINISH_REASON__FINISH_REASON_STOP:      return "stop";
    case BATON__V1__FINISH_REASON__FINISH_REASON_LENGTH:    return "length";
    case BATON__V1__FINISH_REASON__FINISH_REASON_CANCELLED: return "abort";
    case BATON__V1__FINISH_REASON__FINISH_REASON_ERROR:     return "error";
    default:                                                return NULL;
    }
}

json_t *bt_openai_usage(const Baton__V1__Usage *usage)
{
    uint32_t p = usage ? usage->prompt_tokens : 0;
    uint32_t g = usage ? usage->completion_tokens : 0;
    uint32_t cached = usage ? usage->cached_tokens : 0;

    return json_pack("{s:I, s:I, s:I, s:{s:I}}", "prompt_tokens", (json_int_t)p,
                     "completion_tokens", (json_int_t)g, "total_tokens",
                     (json_int_t)p + g, "prompt_tokens_details",
                     "cached_tokens", (json_int_t)cached);
}

static json_t *bt_openai_finish_json(Baton__V1__FinishReason finish)
{
    const char *name = bt_openai_finish_reason(finish);

    return name ? json_string(name) : json_null();
}

static json_t *bt_openai_envelope(bt_openai_kind_t kind, bool chunk,
                                  const char *id, const char *model,
                                  uint64_t created_s, json_t *choices)
{
    const char *object = kind == BT_OPENAI_COMPLETIONS ? "text_completion" :
                         chunk ? "chat.completion.chunk" : "chat.completion";

    return json_pack("{s:s, s:s, s:I, s:s, s:o}", "id", id, "object", object,
                     "created", (json_int_t)created_s, "model", model,
                     "choices", choices);
}

json_t *bt_openai_response(bt_openai_kind_t kind, const char *id,
                           const char *model, uint64_t created_s,
                           const char *text, size_t text_len,
                           Baton__V1__FinishReason finish,
                           const Baton__V1__Usage *usage)
{
    json_t *choice, *root;

    if (kind == BT_OPENAI_COMPLETIONS) {
        choice = json_pack("{s:i, s:s%, s:n, s:o}", "index", 0, "text", text,
                           text_len, "logprobs", "finish_reason",
                           bt_openai_finish_json(finish));
    } else {
        choice = json_pack("{s:i, s:{s:s, s:s%}, s:n, s:o}", "index", 0,
                           "message", "role", "assistant", "content", text,
                           text_len, "logprobs", "finish_reason",
                           bt_openai_finish_json(finish));
    }
    if (choice == NULL) {
        return NULL;
    }
    root = bt_openai_envelope(kind, false, id, model, created_s,
                              json_pack("[o]", choice));
    if (root != NULL) {
        json_object_set_new(root, "usage", bt_openai_usage(usage));
    }
    return root;
}

json_t *bt_openai_chunk(bt_openai_kind_t kind, const char *id,
                        const char *model, uint64_t created_s,
                        const char *delta, size_t delta_len, bool first,
                        Baton__V1__FinishReason finish)
{
    json_t *choice;

    if (kind == BT_OPENAI_COMPLETIONS) {
        choice = json_pack("{s:i, s:s%, s:n, s:o}", "index", 0, "text", delta,
                           delta_len, "logprobs", "finish_reason",
                           bt_openai_finish_json(finish));
    } else {
        json_t *d = json_object();

        if (first) {
            json_object_set_new(d, "role", json_string("assistant"));
        }
        if (delta_len > 0 || first) {
            json_object_set_new(d, "content", json_stringn(delta, delta_len));
        }
        choice = json_pack("{s:i, s:o, s:n, s:o}", "index", 0, "delta", d,
                           "logprobs", "finish_reason",
                           bt_openai_finish_json(finish));
    }
    if (choice == NULL) {
        return NULL;
    }
    return bt_openai_envelope(kind, true, id, model, created_s,
                              json_pack("[o]", choice));
}

json_t *bt_openai_usage_chunk(bt_openai_kind_t kind, const char *id,
                              const char *model, uint64_t created_s,
                              const Baton__V1__Usage *usage)
{
    json_t *root = bt_openai_envelope(kind, true, id, model, created_s,
                                      json_array());

    if (root != NULL) {
        json_object_set_new(root, "usage", bt_openai_usage(usage));
    }
    return root;
}
