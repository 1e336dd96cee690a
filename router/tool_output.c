/* Tool calling, output side: a forced call split as it streams, `auto`
 * output parsed for each family's call syntax, and the response and
 * chunk shapes the openai SDKs read (openai_tools.h). */
#include "openai_tools.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void bt_tool_stream_init(bt_tool_stream_t *ts)
{
    memset(ts, 0, sizeof(*ts));
    bt_buf_init(&ts->buf, 64u << 20);
}

void bt_tool_stream_cleanup(bt_tool_stream_t *ts)
{
    bt_buf_cleanup(&ts->buf);
}

/* 1: `lit` is at *p (moved past it); 0: the text ends first; -1: no. */
static int bt_tool_lit(const char *b, size_t len, size_t *p, const char *lit)
{
    for (; *lit != '\0'; lit++, (*p)++) {
        if (*p >= len) {
            return 0;
        }
        if (b[*p] != *lit) {
            return -1;
        }
    }
    return 1;
}

static void bt_tool_ws(const char *b, size_t len, size_t *p)
{
    while (*p < len && (b[*p] == ' ' || b[*p] == '\n')) {
        (*p)++;
    }
}

/* `{"name": "N", "arguments": ` with the first byte of the arguments:
 * 1 (name and offset set), 0 (not yet), -1 (not a call). */
static int bt_tool_prefix(bt_tool_stream_t *ts)
{
    const char *b = ts->buf.data;
    size_t len = ts->buf.len, p = 0, n0;
    int r;

    if ((r = bt_tool_lit(b, len, &p, "{")) != 1) {
        return r;
    }
    bt_tool_ws(b, len, &p);
    if ((r = bt_tool_lit(b, len, &p, "\"name\":")) != 1) {
        return r;
    }
    bt_tool_ws(b, len, &p);
    if ((r = bt_tool_lit(b, len, &p, "\"")) != 1) {
        return r;
    }
    for (n0 = p; p < len && b[p] != '"'; p++) {
        if (b[p] == '\\' || p - n0 >= BT_OPENAI_MAX_TOOL_NAME) {
            return -1;   /* names have no escapes (openai_tools.c) */
        }
    }
    if (p >= len) {
        return 0;
    }
    memcpy(ts->name, b + n0, p - n0);
    ts->name[p - n0] = '\0';
    p++;
    bt_tool_ws(b, len, &p);
    if ((r = bt_tool_lit(b, len, &p, ",")) != 1) {
        return r;
    }
    bt_tool_ws(b, len, &p);
    if ((r = bt_tool_lit(b, len, &p, "\"arguments\":")) != 1) {
        return r;
    }
    bt_tool_ws(b, len, &p);
    if (p >= len) {
        return 0;
    }
    ts->args_at = p;
    return 1;
}

bt_status_t bt_tool_stream_feed(bt_tool_stream_t *ts, const char *text,
                                size_t len, bool end, const char **name_p,
                                const char **args_p, size_t *args_len_p)
{
    bt_status_t s = bt_buf_append(&ts->buf, text, len);
    size_t upto;

    *name_p = NULL;
    *args_p = NULL;
    *args_len_p = 0;
    if (s != BT_OK) {
        return s;
    }
    if (ts->args_at == 0) {
        int r = bt_tool_prefix(ts);

        if (r < 0 || (r == 0 && end)) {
            return BT_ERR_INVALID_ARG;
        }
        if (r == 0) {
            return BT_OK;
        }
    }
    if (!ts->named) {
        ts->named = true;
        *name_p = ts->name;
    }
    if (end && ts->buf.data[ts->buf.len - 1] != '}') {
        return BT_ERR_INVALID_ARG;
    }
    /* the last character may be the call's own closing brace; held back
     * whole, so that every piece is valid UTF-8 (the text comes in whole
     * characters) */
    upto = ts->buf.len - 1;
    while (upto > ts->args_at && ((uint8_t)ts->buf.data[upto] & 0xc0) == 0x80) {
        upto--;
    }
    if (upto > ts->args_at + ts->sent) {
        *args_p = ts->buf.data + ts->args_at + ts->sent;
        *args_len_p = upto - ts->args_at - ts->sent;
        ts->sent = upto - ts->args_at;
    }
    return BT_OK;
}

/* ---- auto: the family's syntax ---- */

static bool bt_tool_known(const char *name, const char *const *names,
                          size_t n_names)
{
    for (size_t i = 0; name != NULL && i < n_names; i++) {
        if (strcmp(names[i], name) == 0) {
            return true;
        }
    }
    return false;
}

/* A call object {"name", "arguments"|"parameters": {..}} appended to
 * calls as {"name", "arguments": compact text}; false when it is not one. */
static bool bt_tool_add(json_t *calls, const json_t *obj,
                        const char *const *names, size_t n_names)
{
    const char *name = json_string_value(json_object_get(obj, "name"));
    const json_t *args = json_object_get(obj, "arguments");
    char *text;
    bool ok;

    if (args == NULL) {
        args = json_object_get(obj, "parameters");   /* Llama 3.1 */
    }
    if (!json_is_object(obj) || !bt_tool_known(name, names, n_names) ||
        !json_is_object(args)) {
        return false;
    }
    text = json_dumps(args, JSON_COMPACT | JSON_PRESERVE_ORDER);
    ok = text != NULL &&
         json_array_append_new(calls, json_pack("{s:s, s:s}", "name", name,
                                                "arguments", text)) == 0;
    free(text);
    return ok;
}

static json_t *bt_tool_loadn(const char *s, size_t len)
{
    while (len > 0 && strchr(" \t\r\n", s[0]) != NULL) {
        s++;
        len--;
    }
    while (len > 0 && strchr(" \t\r\n", s[len - 1]) != NULL) {
        len--;
    }
    return json_loadb(s, len, 0, NULL);
}

/* A substring search over len bytes (the text may hold NULs). */
static const char *bt_tool_find(const char *s, size_t len, const char *lit)
{
    size_t n = strlen(lit);

    for (size_t i = 0; i + n <= len; i++) {
        if (memcmp(s + i, lit, n) == 0) {
            return s + i;
        }
    }
    return NULL;
}

/* <tool_call>\n{json}\n</tool_call>, repeated (the last may be cut). */
static bool bt_tool_chatml(json_t *calls, const char *t, size_t len,
                           size_t *content_len_p, const char *const *names,
                           size_t n_names)
{
    const char *p = bt_tool_find(t, len, "<tool_call>"), *end = t + len;

    if (p == NULL) {
        return false;
    }
    *content_len_p = (size_t)(p - t);
    while (p != NULL) {
        const char *body = p + strlen("<tool_call>");
        const char *close = bt_tool_find(body, (size_t)(end - body),
                                         "</tool_call>");
        const char *stop = close ? close : end;
        json_t *obj = bt_tool_loadn(body, (size_t)(stop - body));
        bool ok = bt_tool_add(calls, obj, names, n_names);

        json_decref(obj);
        if (!ok) {
            return false;
        }
        p = close ? close + strlen("</tool_call>") : end;
        while (p < end && strchr(" \t\r\n", *p) != NULL) {
            p++;
        }
        if (p < end && bt_tool_find(p, (size_t)(end - p), "<tool_call>") != p) {
            return false;   /* text after the calls */
        }
        p = p < end ? p : NULL;
    }
    return true;
}

json_t *bt_tool_calls_parse(bt_chat_family_t family, const char *text,
                            size_t len, const char *const *names,
                            size_t n_names, size_t *content_len_p)
{
    json_t *calls = json_array(), *v = NULL;
    const char *p;
    bool ok = false;

    *content_len_p = 0;
    if (calls == NULL) {
        return NULL;
    }
    switch (family) {
    case BT_CHAT_CHATML:
        ok = bt_tool_chatml(calls, text, len, content_len_p, names, n_names);
        break;
    case BT_CHAT_LLAMA3:
        /* the whole output is the call, maybe after <|python_tag|> */
        p = text;
        while (p < text + len && strchr(" \t\r\n", *p) != NULL) {
            p++;
        }
        if (bt_tool_find(p, len - (size_t)(p - text), "<|python_tag|>") == p) {
            p += strlen("<|python_tag|>");
        }
        v = bt_tool_loadn(p, len - (size_t)(p - text));
        ok = bt_tool_add(calls, v, names, n_names);
        break;
    case BT_CHAT_MISTRAL:
        p = bt_tool_find(text, len, "[TOOL_CALLS]");
        if (p != NULL) {
            *content_len_p = (size_t)(p - text);
            p += strlen("[TOOL_CALLS]");
            v = bt_tool_loadn(p, len - (size_t)(p - text));
            ok = json_is_array(v) && json_array_size(v) > 0;
            for (size_t i = 0; ok && i < json_array_size(v); i++) {
                ok = bt_tool_add(calls, json_array_get(v, i), names, n_names);
            }
        }
        break;
    default:
        break;
    }
    json_decref(v);
    if (!ok || json_array_size(calls) == 0) {
        json_decref(calls);
        *content_len_p = len;
        return NULL;
    }
    while (*content_len_p > 0 &&
           strchr(" \t\r\n", text[*content_len_p - 1]) != NULL) {
        (*content_len_p)--;
    }
    return calls;
}

/* How much of `marker` the end of text[0..len) could be the start of. */
static size_t bt_tool_partial(const char *t, size_t len, const char *marker)
{
    size_t m = strlen(marker);

    for (size_t k = m - 1 < len ? m - 1 : len; k > 0; k--) {
        if (memcmp(t + len - k, marker, k) == 0) {
            return k;
        }
    }
    return 0;
}

size_t bt_tool_text_safe(bt_chat_family_t family, const char *text, size_t len)
{
    const char *marker = family == BT_CHAT_CHATML ? "<tool_call>"
                         : family == BT_CHAT_MISTRAL ? "[TOOL_CALLS]" : NULL;
    size_t safe = len, i = 0;
    const char *p;

    if (family == BT_CHAT_LLAMA3) {
        /* a call is the whole output: text is text once it starts
         * otherwise */
        static const char tag[] = "<|python_tag|>";

        while (i < len && strchr(" \t\r\n", text[i]) != NULL) {
            i++;
        }
        if (i == len || text[i] == '{' ||
            memcmp(text + i, tag, len - i < sizeof(tag) - 1 ? len - i
                   : sizeof(tag) - 1) == 0) {
            return 0;
        }
        return len;
    }
    if (marker == NULL) {
        return len;
    }
    p = bt_tool_find(text, len, marker);
    safe = p ? (size_t)(p - text) : len - bt_tool_partial(text, len, marker);
    /* content before calls is trimmed at the end: hold its trailing space */
    while (safe > 0 && strchr(" \t\r\n", text[safe - 1]) != NULL) {
        safe--;
    }
    return safe;
}

/* ---- shapes ---- */

void bt_tool_call_id(const char *request_id, size_t index, char id[32])
{
    uint64_t h = 0xcbf29ce484222325ull, h2;

    for (const char *p = request_id; *p; p++) {
        h = (h ^ (uint8_t)*p) * 0x100000001b3ull;
    }
    h2 = (h ^ (uint64_t)index) * 0x100000001b3ull;
    h2 ^= h2 >> 29;
    snprintf(id, 32, "call_%016llx%08llx", (unsigned long long)h,
             (unsigned long long)(h2 & 0xffffffffull));
}

bt_status_t bt_openai_tool_response(json_t *resp, const json_t *calls,
                                    const char *content, size_t content_len,
                                    const char *request_id)
{
    json_t *choice = json_array_get(json_object_get(resp, "choices"), 0);
    json_t *msg = json_object_get(choice, "message");
    json_t *out = json_array();
    char id[32];

    if (msg == NULL || out == NULL) {
        json_decref(out);
        return BT_ERR_NO_MEMORY;
    }
    for (size_t i = 0; i < json_array_size(calls); i++) {
        const json_t *c = json_array_get(calls, i);

        bt_tool_call_id(request_id, i, id);
        if (json_array_append_new(out, json_pack(
                "{s:s, s:s, s:{s:O, s:O}}", "id", id, "type", "function",
                "function", "name", json_object_get(c, "name"), "arguments",
                json_object_get(c, "arguments"))) != 0) {
            json_decref(out);
            return BT_ERR_NO_MEMORY;
        }
    }
    if (json_object_set_new(msg, "content", content_len > 0
                            ? json_stringn(content, content_len)
                            : json_null()) != 0 ||
        json_object_set_new(msg, "tool_calls", out) != 0 ||
        json_object_set_new(choice, "finish_reason",
                            json_string("tool_calls")) != 0) {
        return BT_ERR_NO_MEMORY;
    }
    return BT_OK;
}

bt_status_t bt_openai_tool_chunk(json_t *chunk, size_t index,
                                 const char *request_id, const char *name,
                                 const char *args, size_t args_len)
{
    json_t *choice = json_array_get(json_object_get(chunk, "choices"), 0);
    json_t *delta = json_object_get(choice, "delta");
    json_t *tc;
    char id[32];

    if (delta == NULL) {
        return BT_ERR_NO_MEMORY;
    }
    if (json_object_get(delta, "role") != NULL) {
        json_object_set_new(delta, "content", json_null());
    } else {
        json_object_del(delta, "content");
    }
    if (name != NULL) {
        bt_tool_call_id(request_id, index, id);
        tc = json_pack("{s:I, s:s, s:s, s:{s:s, s:s%}}", "index",
                       (json_int_t)index, "id", id, "type", "function",
                       "function", "name", name, "arguments", args ? args : "",
                       args ? args_len : 0);
    } else {
        tc = json_pack("{s:I, s:{s:s%}}", "index", (json_int_t)index,
                       "function", "arguments", args ? args : "",
                       args ? args_len : 0);
    }
    if (tc == NULL ||
        json_object_set_new(delta, "tool_calls", json_pack("[o]", tc)) != 0) {
        return BT_ERR_NO_MEMORY;
    }
    return BT_OK;
}
