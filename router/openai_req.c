/* Parsing and validation of OpenAI-style request bodies. */
#include "openai.h"

#include "base/json.h"
#include "openai_tools.h"
#include "response_format.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    bt_arena_t *arena;
    char       *err;
    size_t      err_size;
    char       *param;
    size_t      param_size;
} bt_openai_ctx_t;

static bt_status_t bt_openai_fail(bt_openai_ctx_t *c, bt_status_t status,
                                  const char *param, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static bt_status_t bt_openai_fail(bt_openai_ctx_t *c, bt_status_t status,
                                  const char *param, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(c->err, c->err_size, fmt, ap);
    va_end(ap);
    snprintf(c->param, c->param_size, "%s", param);
    return status;
}

/* The field name at the start of a bt_json error ("field 'x': ...") is
 * copied into `param`. */
static bt_status_t bt_openai_json_err(bt_openai_ctx_t *c, bt_status_t status,
                                      const char *key)
{
    snprintf(c->param, c->param_size, "%s", key);
    return status;
}

static char *bt_openai_strdup(bt_openai_ctx_t *c, const char *s)
{
    return bt_arena_strdup(c->arena, s);
}

/* Every field a request may name: OpenAI's (read, refused with a 400
 * naming it when we cannot honour it, or ignored when it cannot change
 * the output) and vLLM's sampling extensions. Any other name is an
 * error: a typo must not silently fall back to a default. */
static const char *const bt_openai_completion_keys[] = {
    "model", "prompt", "max_tokens", "temperature", "top_p", "top_k",
    "min_p", "presence_penalty", "frequency_penalty", "repetition_penalty",
    "seed", "stop", "stop_token_ids", "stream", "stream_options", "logprobs",
    "n", "ignore_eos", "user", "echo", "best_of", "suffix", "logit_bias",
    "response_format",
    NULL,
};

static const char *const bt_openai_chat_keys[] = {
    "model", "messages", "max_tokens", "max_completion_tokens", "temperature",
    "top_p", "top_k", "min_p", "presence_penalty", "frequency_penalty",
    "repetition_penalty", "seed", "stop", "stop_token_ids", "stream",
    "stream_options", "logprobs", "top_logprobs", "n", "ignore_eos", "user",
    "logit_bias", "tools", "tool_choice", "response_format",
    "add_generation_prompt",
    /* OpenAI's, ignored: they cannot change the text generated */
    "store", "metadata", "service_tier", "parallel_tool_calls",
    "prompt_cache_key", "safety_identifier", "prediction", "modalities",
    /* OpenAI's, refused (400 naming the field) */
    "audio", "functions", "function_call", "reasoning_effort", "verbosity",
    "web_search_options",
    NULL,
};

/* The first key of `obj` not in `allowed`: 400 with param = the key. */
static bt_status_t bt_openai_check_keys(bt_openai_ctx_t *c, const json_t *obj,
                                        const char *const *allowed,
                                        const char *where)
{
    const char *key = bt_json_unknown_key(obj, allowed);

    if (key != NULL) {
        return bt_openai_fail(c, BT_ERR_INVALID_ARG, key,
                              "unknown field '%s%.64s'", where, key);
    }
    return BT_OK;
}

/* null means absent, for every optional field (the SDKs send null for
 * what the caller left unset): such keys are dropped before reading. */
static void bt_openai_drop_nulls(json_t *obj)
{
    const char *key;
    json_t *v;
    void *tmp;

    json_object_foreach_safe(obj, tmp, key, v) {
        if (json_is_null(v)) {
            json_object_del(obj, key);
        }
    }
}

/* A float field in [min, max] (or (min, max] when `open_min`). */
static bt_status_t bt_openai_float(bt_openai_ctx_t *c, const json_t *root,
                                   const char *key, double min, double max,
                                   bool open_min, float *out)
{
    double d;
    bt_status_t s = bt_json_get_number(root, key, false, min, max, &d, c->err,
                                       c->err_size);

    if (s == BT_ERR_NOT_FOUND) {
        return BT_OK;
    }
    if (s != BT_OK) {
        return bt_openai_json_err(c, s, key);
    }
    if (open_min && d <= min) {
        return bt_openai_fail(c, BT_ERR_INVALID_ARG, key,
                              "field '%s': must be greater than %g", key, min);
    }
    *out = (float)d;
    return BT_OK;
}

static bt_status_t bt_openai_stop(bt_openai_ctx_t *c, const json_t *root,
                                  Baton__V1__SamplingParams *sp)
{
    json_t *stop = json_object_get(root, "stop");
    size_t i, n;

    if (stop == NULL || json_is_null(stop)) {
        return BT_OK;
    }
    if (json_is_string(stop)) {
        n = 1;
    } else if (json_is_array(stop)) {
        n = json_array_size(stop);
    } else {
        return bt_openai_fail(c, BT_ERR_INVALID_ARG, "stop",
                              "field 'stop': expected a string or an array of "
                              "strings, got %s", bt_json_type_name(stop));
    }
    if (n > BT_OPENAI_MAX_STOP) {
        return bt_openai_fail(c, BT_ERR_INVALID_ARG, "stop",
                              "field 'stop': at most %d stop strings",
                              BT_OPENAI_MAX_STOP);
    }
    sp->stop = bt_arena_calloc(c->arena, n ? n : 1, sizeof(char *));
    if (sp->stop == NULL) {
        return BT_ERR_NO_MEMORY;
    }
    for (i = 0; i < n; i++) {
        json_t *v = json_is_string(stop) ? stop : json_array_get(stop, i);
        size_t len;

        if (!json_is_string(v)) {
            return bt_openai_fail(c, BT_ERR_INVALID_ARG, "stop",
                                  "field 'stop[%zu]': expected a string", i);
        }
        len = json_string_length(v);
        if (len == 0 || len > BT_OPENAI_MAX_STOP_LEN) {
            return bt_openai_fail(c, BT_ERR_INVALID_ARG, "stop",
                                  "field 'stop[%zu]': must be 1 to %d bytes",
                                  i, BT_OPENAI_MAX_STOP_LEN);
        }
        sp->stop[i] = bt_openai_strdup(c, json_string_value(v));
        if (sp->stop[i] == NULL) {
            return BT_ERR_NO_MEMORY;
        }
    }
    sp->n_stop = n;
    return BT_OK;
}

static bt_status_t bt_openai_ids(bt_openai_ctx_t *c, const json_t *arr,
                                 const char *key, size_t max, size_t *n_p,
                                 uint32_t **ids_p)
{
    size_t i, n = json_array_size(arr);
    uint32_t *ids;

    if (n > max) {
        return bt_openai_fail(c, BT_ERR_TOO_LARGE, key,
                              "field '%s': at most %zu token ids", key, max);
    }
    ids = bt_arena_calloc(c->arena, n ? n : 1, sizeof(uint32_t));
    if (ids == NULL) {
        return BT_ERR_NO_MEMORY;
    }
    for (i = 0; i < n; i++) {
        json_t *v = json_array_get(arr, i);

        if (!json_is_integer(v) || json_integer_value(v) < 0 ||
            json_integer_value(v) > INT32_MAX) {
            return bt_openai_fail(c, BT_ERR_INVALID_ARG, key,
                                  "field '%s[%zu]': expected a token id "
                                  "(a non-negative integer)", key, i);
        }
        ids[i] = (uint32_t)json_integer_value(v);
    }
    *n_p = n;
    *ids_p = ids;
    return BT_OK;
}

static bt_status_t bt_openai_sampling(bt_openai_ctx_t *c, bt_openai_kind_t kind,
                                      const json_t *root, bt_openai_req_t *req)
{
    Baton__V1__SamplingParams *sp = &req->sampling;
    json_t *v, *arr = NULL;
    int64_t i64 = 0;
    bt_status_t s;
    bool b;

    sp->temperature = 1.0f; /* OpenAI's default; proto 0 would mean greedy */
    sp->top_p = 1.0f;
    sp->repetition_penalty = 1.0f;

    s = bt_json_get_int(root, "max_tokens", false, 1, BT_OPENAI_MAX_TOKENS,
                        &i64, c->err, c->err_size);
    if (s != BT_OK && s != BT_ERR_NOT_FOUND) {
        return bt_openai_json_err(c, s, "max_tokens");
    }
    if (kind == BT_OPENAI_CHAT) {
        /* the newer name wins when both are given (OpenAI, vLLM) */
        int64_t mct = 0;

        s = bt_json_get_int(root, "max_completion_tokens", false, 1,
                            BT_OPENAI_MAX_TOKENS, &mct, c->err, c->err_size);
        if (s == BT_OK) {
            i64 = mct;
        } else if (s != BT_ERR_NOT_FOUND) {
            return bt_openai_json_err(c, s, "max_completion_tokens");
        }
    }
    sp->max_tokens = (int32_t)i64;

    if ((s = bt_openai_float(c, root, "temperature", 0, 2, false,
                             &sp->temperature)) != BT_OK ||
        (s = bt_openai_float(c, root, "top_p", 0, 1, true, &sp->top_p)) != BT_OK ||
        (s = bt_openai_float(c, root, "min_p", 0, 1, false, &sp->min_p)) != BT_OK ||
        (s = bt_openai_float(c, root, "presence_penalty", -2, 2, false,
                             &sp->presence_penalty)) != BT_OK ||
        (s = bt_openai_float(c, root, "frequency_penalty", -2, 2, false,
                             &sp->frequency_penalty)) != BT_OK ||
        (s = bt_openai_float(c, root, "repetition_penalty", 0, 10, true,
                             &sp->repetition_penalty)) != BT_OK) {
        return s;
    }
    i64 = 0;
    s = bt_json_get_int(root, "top_k", false, -1, 1 << 20, &i64, c->err,
                        c->err_size);
    if (s != BT_OK && s != BT_ERR_NOT_FOUND) {
        return bt_openai_json_err(c, s, "top_k");
    }
    sp->top_k = i64 < 0 ? 0 : (int32_t)i64; /* vLLM: -1 disables */

    s = bt_json_get_int(root, "seed", false, INT64_MIN, INT64_MAX, &i64,
                        c->err, c->err_size);
    if (s == BT_OK) {
        sp->seed_opt_case = BATON__V1__SAMPLING_PARAMS__SEED_OPT_SEED;
        sp->seed = (uint64_t)i64;
    } else if (s != BT_ERR_NOT_FOUND) {
        return bt_openai_json_err(c, s, "seed");
    }

    if ((s = bt_openai_stop(c, root, sp)) != BT_OK) {
        return s;
    }
    s = bt_json_get_array(root, "stop_token_ids", false, &arr, c->err,
                          c->err_size);
    if (s == BT_OK) {
        s = bt_openai_ids(c, arr, "stop_token_ids", BT_OPENAI_MAX_STOP_IDS,
                          &sp->n_stop_token_ids, &sp->stop_token_ids);
        if (s != BT_OK) {
            return s;
        }
    } else if (s != BT_ERR_NOT_FOUND) {
        return bt_openai_json_err(c, s, "stop_token_ids");
    }

    b = false;
    s = bt_json_get_bool(root, "ignore_eos", false, &b, c->err, c->err_size);
    if (s != BT_OK && s != BT_ERR_NOT_FOUND) {
        return bt_openai_json_err(c, s, "ignore_eos");
    }
    sp->ignore_eos = b;

    /* logprobs: an integer on completions, a boolean + top_logprobs on chat */
    if (kind == BT_OPENAI_COMPLETIONS) {
        v = json_object_get(root, "logprobs");
        if (v != NULL && !json_is_null(v)) {
            s = bt_json_get_int(root, "logprobs", true, 0, BT_OPENAI_MAX_LOGPROBS,
                                &i64, c->err, c->err_size);
            if (s != BT_OK) {
                return bt_openai_json_err(c, s, "logprobs");
            }
            /* logprobs: 0 is the chosen token's alone */
            sp->logprobs = (int32_t)i64;
            sp->logprobs_chosen = true;
            req->logprobs = true;
        }
    } else {
        b = false;
        s = bt_json_get_bool(root, "logprobs", false, &b, c->err, c->err_size);
        if (s != BT_OK && s != BT_ERR_NOT_FOUND) {
            return bt_openai_json_err(c, s, "logprobs");
        }
        req->logprobs = b;
        i64 = 0;
        s = bt_json_get_int(root, "top_logprobs", false, 0,
                            BT_OPENAI_MAX_LOGPROBS, &i64, c->err, c->err_size);
        if (s != BT_OK && s != BT_ERR_NOT_FOUND) {
            return bt_openai_json_err(c, s, "top_logprobs");
        }
        if (s == BT_OK && !b) {
            return bt_openai_fail(c, BT_ERR_INVALID_ARG, "top_logprobs",
                                  "field 'top_logprobs' needs 'logprobs': true");
        }
        sp->logprobs = b ? (int32_t)i64 : 0;
        sp->logprobs_chosen = b;
    }
    return BT_OK;
}

/* Features we refuse rather than silently ignore; each 400 names the
 * field in `param`. Values that ask for nothing (tool_choice "none",
 * modalities ["text"]) pass. */
static bt_status_t bt_openai_unsupported(bt_openai_ctx_t *c, const json_t *root)
{
    static const char *const refused[] = {
        "audio", "functions", "function_call", "reasoning_effort",
        "verbosity", "web_search_options",
    };
    const char *str;
    json_t *v;
    size_t i;

    for (i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        if (json_object_get(root, refused[i]) != NULL) {
            return bt_openai_fail(c, BT_ERR_INVALID_ARG, refused[i],
                                  "field '%s' is not supported", refused[i]);
        }
    }
    v = json_object_get(root, "suffix");
    if (v != NULL && !(json_is_string(v) && json_string_length(v) == 0)) {
        return bt_openai_fail(c, BT_ERR_INVALID_ARG, "suffix",
                              "field 'suffix' is not supported");
    }
    v = json_object_get(root, "modalities");
    if (v != NULL && !(json_is_array(v) && json_array_size(v) == 1 &&
                       (str = json_string_value(json_array_get(v, 0))) &&
                       strcmp(str, "text") == 0)) {
        return bt_openai_fail(c, BT_ERR_INVALID_ARG, "modalities",
                              "field 'modalities': only [\"text\"] is supported");
    }
    return BT_OK;
}

/* Fields read only to check their type: ignored otherwise. */
static bt_status_t bt_openai_ignored(bt_openai_ctx_t *c, const json_t *root)
{
    static const struct { const char *key; json_type type; } ignored[] = {
        { "user", JSON_STRING },           { "store", JSON_TRUE },
        { "metadata", JSON_OBJECT },       { "service_tier", JSON_STRING },
        { "parallel_tool_calls", JSON_TRUE }, { "prompt_cache_key", JSON_STRING },
        { "safety_identifier", JSON_STRING }, { "prediction", JSON_OBJECT },
    };

    for (size_t i = 0; i < sizeof(ignored) / sizeof(ignored[0]); i++) {
        json_t *v = json_object_get(root, ignored[i].key);
        bool ok = v == NULL || json_typeof(v) == ignored[i].type ||
                  (ignored[i].type == JSON_TRUE && json_is_boolean(v));

        if (!ok) {
            return bt_openai_fail(c, BT_ERR_INVALID_ARG, ignored[i].key,
                                  "field '%s': expected %s, got %s",
                                  ignored[i].key,
                                  ignored[i].type == JSON_STRING ? "a string" :
                                  ignored[i].type == JSON_OBJECT ? "an object" :
                                  "a boolean", bt_json_type_name(v));
        }
    }
    return BT_OK;
}

static bt_status_t bt_openai_prompt(bt_openai_ctx_t *c, const json_t *root,
                                    bt_openai_req_t *req)
{
    json_t *p = json_object_get(root, "prompt");

    if (p == NULL) {
        return bt_openai_fail(c, BT_ERR_INVALID_ARG, "prompt",
                              "missing required field 'prompt'");
    }
    /* one prompt in an array of strings is the same as the string */
    if (json_is_array(p) && json_array_size(p) == 1 &&
        json_is_string(json_array_get(p, 0))) {
        p = json_array_get(p, 0);
    }
    if (json_is_string(p)) {
        if (json_string_length(p) == 0) {
            return bt_openai_fail(c, BT_ERR_INVALID_ARG, "prompt",
                                  "field 'prompt' must not be empty");
        }
        req->gen.input_case = BATON__V1__GENERATE_REQUEST__INPUT_PROMPT;
        req->gen.prompt = bt_openai_strdup(c, json_string_value(p));
        return req->gen.prompt ? BT_OK : BT_ERR_NO_MEMORY;
    }
    if (json_is_array(p)) {
        bt_status_t s;

        if (json_array_size(p) == 0) {
            return bt_openai_fail(c, BT_ERR_INVALID_ARG, "prompt",
                                  "field 'prompt' must not be empty");
        }
        if (json_is_string(json_array_get(p, 0)) ||
            json_is_array(json_array_get(p, 0))) {
            return bt_openai_fail(c, BT_ERR_INVALID_ARG, "prompt",
                                  "field 'prompt': batched prompts are not "
                                  "supported; send one prompt per request");
        }
        s = bt_openai_ids(c, p, "prompt", BT_OPENAI_MAX_PROMPT_IDS,
                          &req->ids.n_ids, &req->ids.ids);
        if (s != BT_OK) {
            return s;
        }
        req->gen.input_case = BATON__V1__GENERATE_REQUEST__INPUT_TOKENS;
        req->gen.tokens = &req->ids;
        return BT_OK;
    }
    return bt_openai_fail(c, BT_ERR_INVALID_ARG, "prompt",
                          "field 'prompt': expected a string or an array of "
                          "token ids, got %s", bt_json_type_name(p));
}

/* content: a string, or an array of {"type": "text", "text": ...} parts
 * that are concatenated. */
static bt_status_t bt_openai_content(bt_openai_ctx_t *c, const json_t *content,
                                     size_t idx, char **out_p)
{
    size_t i, total = 0;
    char *text;

    if (json_is_string(content)) {
        *out_p = bt_openai_strdup(c, json_string_value(content));
        return *out_p ? BT_OK : BT_ERR_NO_MEMORY;
    }
    if (!json_is_array(content)) {
        return bt_openai_fail(c, BT_ERR_INVALID_ARG, "messages",
                              "field 'messages[%zu].content': expected a string "
                              "or an array of text parts, got %s", idx,
                              content ? bt_json_type_name(content) : "nothing");
    }
    for (i = 0; i < json_array_size(content); i++) {
        json_t *part = json_array_get(content, i);
        const char *type = json_string_value(json_object_get(part, "type"));
        json_t *t = json_object_get(part, "text");

        if (type == NULL || strcmp(type, "text") != 0 || !json_is_string(t)) {
            return bt_openai_fail(c, BT_ERR_INVALID_ARG, "messages",
                                  "field 'messages[%zu].content[%zu]': only "
                                  "parts of type 'text' are supported", idx, i);
        }
        total += json_string_length(t);
    }
    text = bt_arena_alloc(c->arena, total + 1);
    if (text == NULL) {
        return BT_ERR_NO_MEMORY;
    }
    total = 0;
    for (i = 0; i < json_array_size(content); i++) {
        json_t *t = json_object_get(json_array_get(content, i), "text");

        memcpy(text + total, json_string_value(t), json_string_length(t));
        total += json_string_length(t);
    }
    text[total] = '\0';
    *out_p = text;
    return BT_OK;
}

bool bt_openai_role_ok(const char *role)
{
    static const char *const roles[] = { "system", "developer", "user",
                                         "assistant", "tool" };

    for (size_t i = 0; role != NULL && i < sizeof(roles) / sizeof(roles[0]); i++) {
        if (strcmp(role, roles[i]) == 0) {
            return true;
        }
    }
    return false;
}

static bt_status_t bt_openai_messages(bt_openai_ctx_t *c, const json_t *root,
                                      bt_openai_req_t *req)
{
    json_t *arr = NULL;
    bt_status_t s;
    size_t i, n;
    bool b = true;

    s = bt_json_get_array(root, "messages", true, &arr, c->err, c->err_size);
    if (s != BT_OK) {
        return bt_openai_json_err(c, s, "messages");
    }
    n = json_array_size(arr);
    if (n == 0) {
        return bt_openai_fail(c, BT_ERR_INVALID_ARG, "messages",
                              "field 'messages' must not be empty");
    }
    if (n > BT_OPENAI_MAX_MESSAGES) {
        return bt_openai_fail(c, BT_ERR_TOO_LARGE, "messages",
                              "field 'messages': at most %d messages",
                              BT_OPENAI_MAX_MESSAGES);
    }
    req->chat.messages = bt_arena_calloc(c->arena, n, sizeof(void *));
    if (req->chat.messages == NULL) {
        return BT_ERR_NO_MEMORY;
    }
    for (i = 0; i < n; i++) {
        json_t *m = json_array_get(arr, i);
        Baton__V1__ChatMessage *cm;
        json_t *content;
        const char *role;

        if (!json_is_object(m)) {
            return bt_openai_fail(c, BT_ERR_INVALID_ARG, "messages",
                                  "field 'messages[%zu]': expected an object", i);
        }
        role = json_string_value(json_object_get(m, "role"));
        if (!bt_openai_role_ok(role)) {
            return bt_openai_fail(c, BT_ERR_INVALID_ARG, "messages",
                                  "field 'messages[%zu].role': expected one of "
                                  "system, developer, user, assistant, tool", i);
        }
        cm = bt_arena_alloc(c->arena, sizeof(*cm));
        if (cm == NULL) {
            return BT_ERR_NO_MEMORY;
        }
        baton__v1__chat_message__init(cm);
        /* "developer" is OpenAI's newer name for the system role */
        cm->role = bt_openai_strdup(c, strcmp(role, "developer") == 0 ? "system"
                                                                       : role);
        content = json_object_get(m, "content");
        if ((content == NULL || json_is_null(content)) &&
            strcmp(role, "assistant") == 0) {
            /* an assistant turn may have no content (OpenAI) */
            cm->content = bt_openai_strdup(c, "");
            s = cm->content ? BT_OK : BT_ERR_NO_MEMORY;
        } else {
            s = bt_openai_content(c, content, i, &cm->content);
        }
        if (s == BT_OK) {
            s = bt_openai_message_tools(m, i, c->arena, cm, c->err, c->err_size);
            if (s != BT_OK) {
                snprintf(c->param, c->param_size, "messages");
            }
        }
        if (s != BT_OK) {
            return s;
        }
        req->chat.messages[i] = cm;
    }
    req->chat.n_messages = n;
    s = bt_json_get_bool(root, "add_generation_prompt", false, &b, c->err,
                         c->err_size);
    if (s != BT_OK && s != BT_ERR_NOT_FOUND) {
        return bt_openai_json_err(c, s, "add_generation_prompt");
    }
    req->chat.add_generation_prompt = b;
    req->gen.input_case = BATON__V1__GENERATE_REQUEST__INPUT_CHAT;
    req->gen.chat = &req->chat;
    return BT_OK;
}

bt_status_t bt_openai_parse(bt_openai_kind_t kind, const char *body,
                            size_t len, size_t max_len, bt_arena_t *arena,
                            bt_openai_req_t *req, char *err, size_t err_size,
                            char *param, size_t param_size)
{
    bt_openai_ctx_t c = { arena, err, err_size, param, param_size };
    json_t *root = NULL, *opts = NULL;
    const char *model = NULL;
    bt_status_t s;
    bool b = false;

    err[0] = '\0';
    param[0] = '\0';
    memset(req, 0, sizeof(*req));
    req->kind = kind;
    baton__v1__generate_request__init(&req->gen);
    baton__v1__sampling_params__init(&req->sampling);
    baton__v1__chat_messages__init(&req->chat);
    baton__v1__token_ids__init(&req->ids);
    req->gen.sampling = &req->sampling;

    s = bt_json_parse(body, len, max_len, &root, err, err_size);
    if (s != BT_OK) {
        if (strstr(err, "NUL") != NULL) {  /* jansson names its flag */
            snprintf(err, err_size, "the request body has a NUL character "
                     "(\\u0000) in a string; it is not accepted");
        }
        return s;
    }
    if (!json_is_object(root)) {
        s = bt_openai_fail(&c, BT_ERR_INVALID_ARG, "",
                           "the request body must be a JSON object");
        goto out;
    }
    bt_openai_drop_nulls(root);
    s = bt_openai_check_keys(&c, root, kind == BT_OPENAI_CHAT
                             ? bt_openai_chat_keys : bt_openai_completion_keys, "");
    if (s != BT_OK) {
        goto out;
    }
    s = bt_openai_ignored(&c, root);
    if (s != BT_OK) {
        goto out;
    }
    s = bt_json_get_string(root, "model", true, &model, err, err_size);
    if (s != BT_OK) {
        bt_openai_json_err(&c, s, "model");
        goto out;
    }
    if (model[0] == '\0') {
        s = bt_openai_fail(&c, BT_ERR_INVALID_ARG, "model",
                           "field 'model' must not be empty");
        goto out;
    }
    req->gen.model = bt_openai_strdup(&c, model);

    s = bt_openai_unsupported(&c, root);
    if (s != BT_OK) {
        goto out;
    }
    s = kind == BT_OPENAI_CHAT ? bt_openai_messages(&c, root, req)
                               : bt_openai_prompt(&c, root, req);
    if (s != BT_OK) {
        goto out;
    }
    s = bt_openai_sampling(&c, kind, root, req);
    if (s != BT_OK) {
        goto out;
    }
    s = bt_response_format_parse(json_object_get(root, "response_format"),
                                 arena, &req->sampling.response_format, err,
                                 err_size);
    if (s != BT_OK) {
        bt_openai_json_err(&c, s, "response_format");
        goto out;
    }
    s = bt_json_get_bool(root, "echo", false, &b, err, err_size);
    if (s != BT_OK && s != BT_ERR_NOT_FOUND) {
        bt_openai_json_err(&c, s, "echo");
        goto out;
    }
    req->gen.echo = s == BT_OK && b;
    b = false;
    s = bt_openai_logit_bias(root, arena, &req->sampling, err, err_size);
    if (s != BT_OK) {
        bt_openai_json_err(&c, s, "logit_bias");
        goto out;
    }
    if (kind == BT_OPENAI_CHAT) {
        s = bt_openai_tools_parse(root, arena, req, err, err_size, param,
                                  param_size);
        if (s != BT_OK) {
            goto out;
        }
    }
    s = bt_json_get_bool(root, "stream", false, &b, err, err_size);
    if (s != BT_OK && s != BT_ERR_NOT_FOUND) {
        bt_openai_json_err(&c, s, "stream");
        goto out;
    }
    req->stream = b;
    s = bt_json_get_object(root, "stream_options", false, &opts, err, err_size);
    if (s == BT_OK) {
        static const char *const opt_keys[] = { "include_usage", NULL };

        bt_openai_drop_nulls(opts);
        if (!req->stream) {
            s = bt_openai_fail(&c, BT_ERR_INVALID_ARG, "stream_options",
                               "field 'stream_options' needs 'stream': true");
            goto out;
        }
        s = bt_openai_check_keys(&c, opts, opt_keys, "stream_options.");
        if (s != BT_OK) {
            goto out;
        }
        if (s == BT_OK) {
            b = false;
            s = bt_json_get_bool(opts, "include_usage", false, &b, err, err_size);
            req->include_usage = b;
            if (s == BT_ERR_NOT_FOUND) {
                s = BT_OK;
            }
        }
        if (s != BT_OK) {
            bt_openai_json_err(&c, s, "stream_options");
            goto out;
        }
    } else if (s != BT_ERR_NOT_FOUND) {
        bt_openai_json_err(&c, s, "stream_options");
        goto out;
    }
    s = bt_openai_choices(root, req, err, err_size, param, param_size);

out:
    json_decref(root);
    if (s == BT_ERR_NO_MEMORY) {
        snprintf(err, err_size, "request too large for its memory budget");
        s = BT_ERR_TOO_LARGE;
    }
    return s;
}
