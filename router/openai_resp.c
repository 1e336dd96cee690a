/* JSON responses and stream chunks of the OpenAI-compatible API. */
#include "openai.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
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

/* The token's string: its text when valid UTF-8, else "bytes:\xNN..". */
static json_t *bt_openai_tok_str(const bt_openai_tok_lp_t *t)
{
    json_t *s = json_stringn(t->text, t->len);   /* NULL: not UTF-8 */
    char *esc;

    if (s != NULL || t->len > 4096) {
        return s;
    }
    esc = malloc(6 + 4 * t->len + 1);
    if (esc == NULL) {
        return NULL;
    }
    memcpy(esc, "bytes:", 6);
    for (size_t i = 0; i < t->len; i++) {
        snprintf(esc + 6 + 4 * i, 5, "\\x%02x", (unsigned char)t->text[i]);
    }
    s = json_string(esc);
    free(esc);
    return s;
}

static json_t *bt_openai_lp_real(float lp)
{
    return json_real(isfinite(lp) ? (double)lp : -9999.0);
}

static json_t *bt_openai_bytes(const bt_openai_tok_lp_t *t)
{
    json_t *a = json_array();

    for (size_t i = 0; a != NULL && i < t->len; i++) {
        if (json_array_append_new(a, json_integer((unsigned char)t->text[i])) != 0) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

/* {"token", "logprob", "bytes"} of chat. */
static json_t *bt_openai_chat_entry(const bt_openai_tok_lp_t *t)
{
    json_t *tok = bt_openai_tok_str(t);

    if (tok == NULL) {
        return NULL;
    }
    return json_pack("{s:o, s:o, s:o}", "token", tok, "logprob",
                     bt_openai_lp_real(t->logprob), "bytes", bt_openai_bytes(t));
}

bt_status_t bt_openai_logprobs_add(bt_openai_kind_t kind, json_t **lp_p,
                                   const bt_openai_tok_lp_t *chosen,
                                   const bt_openai_tok_lp_t *top, size_t n_top,
                                   size_t text_offset)
{
    json_t *lp = *lp_p;
    json_t *tops, *entry;

    if (lp == NULL) {
        lp = kind == BT_OPENAI_COMPLETIONS
             ? json_pack("{s:[], s:[], s:[], s:[]}", "tokens", "token_logprobs",
                         "top_logprobs", "text_offset")
             : json_pack("{s:[]}", "content");
        if (lp == NULL) {
            return BT_ERR_NO_MEMORY;
        }
        *lp_p = lp;
    }
    if (kind == BT_OPENAI_COMPLETIONS) {
        tops = json_object();
        for (size_t i = 0; tops != NULL && i < n_top; i++) {
            json_t *key = bt_openai_tok_str(&top[i]);

            if (key == NULL ||
                json_object_set_new(tops, json_string_value(key),
                                    bt_openai_lp_real(top[i].logprob)) != 0) {
                json_decref(key);
                json_decref(tops);
                return BT_ERR_NO_MEMORY;
            }
            json_decref(key);
        }
        if (tops == NULL ||
            json_array_append_new(json_object_get(lp, "tokens"),
                                  bt_openai_tok_str(chosen)) != 0 ||
            json_array_append_new(json_object_get(lp, "token_logprobs"),
                                  bt_openai_lp_real(chosen->logprob)) != 0 ||
            json_array_append_new(json_object_get(lp, "top_logprobs"), tops) != 0 ||
            json_array_append_new(json_object_get(lp, "text_offset"),
                                  json_integer((json_int_t)text_offset)) != 0) {
            return BT_ERR_NO_MEMORY;
        }
        return BT_OK;
    }
    entry = bt_openai_chat_entry(chosen);
    tops = json_array();
    for (size_t i = 0; tops != NULL && i < n_top; i++) {
        if (json_array_append_new(tops, bt_openai_chat_entry(&top[i])) != 0) {
            json_decref(tops);
            tops = NULL;
        }
    }
    if (entry == NULL || tops == NULL ||
        json_object_set_new(entry, "top_logprobs", tops) != 0 ||
        json_array_append_new(json_object_get(lp, "content"), entry) != 0) {
        if (entry == NULL) {
            json_decref(tops);
        }
        return BT_ERR_NO_MEMORY;
    }
    return BT_OK;
}

json_t *bt_openai_response(bt_openai_kind_t kind, const char *id,
                           const char *model, uint64_t created_s,
                           const char *text, size_t text_len,
                           json_t *logprobs, Baton__V1__FinishReason finish,
                           const Baton__V1__Usage *usage)
{
    json_t *choice, *root;

    if (kind == BT_OPENAI_COMPLETIONS) {
        choice = json_pack("{s:i, s:s%, s:o, s:o}", "index", 0, "text", text,
                           text_len, "logprobs",
                           logprobs != NULL ? logprobs : json_null(),
                           "finish_reason", bt_openai_finish_json(finish));
    } else {
        choice = json_pack("{s:i, s:{s:s, s:s%}, s:o, s:o}", "index", 0,
                           "message", "role", "assistant", "content", text,
                           text_len, "logprobs",
                           logprobs != NULL ? logprobs : json_null(),
                           "finish_reason", bt_openai_finish_json(finish));
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
                        json_t *logprobs, Baton__V1__FinishReason finish)
{
    json_t *choice;

    if (logprobs == NULL) {
        logprobs = json_null();
    }
    if (kind == BT_OPENAI_COMPLETIONS) {
        choice = json_pack("{s:i, s:s%, s:o, s:o}", "index", 0, "text", delta,
                           delta_len, "logprobs", logprobs, "finish_reason",
                           bt_openai_finish_json(finish));
    } else {
        json_t *d = json_object();

        if (first) {
            json_object_set_new(d, "role", json_string("assistant"));
        }
        if (delta_len > 0 || first) {
            json_object_set_new(d, "content", json_stringn(delta, delta_len));
        }
        choice = json_pack("{s:i, s:o, s:o, s:o}", "index", 0, "delta", d,
                           "logprobs", logprobs, "finish_reason",
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
