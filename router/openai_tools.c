/* Tool calling, request side: `tools`, `tool_choice`, messages' tool
 * fields, and the tool-call grammar (openai_tools.h). */
#include "openai_tools.h"

#include "base/json.h"
#include "engine/grammar/grammar.h"
#include "response_format.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bt_status_t bt_tools_fail(char *err, size_t err_size, bt_status_t s,
                                 const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static bt_status_t bt_tools_fail(char *err, size_t err_size, bt_status_t s,
                                 const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(err, err_size, fmt, ap);
    va_end(ap);
    return s;
}

/* OpenAI's rule for function names: a-z, A-Z, 0-9, '_' and '-', at most
 * 64. It also keeps names free of JSON escapes. */
static bool bt_tools_name_ok(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > BT_OPENAI_MAX_TOOL_NAME) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];

        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
              (ch >= '0' && ch <= '9') || ch == '_' || ch == '-')) {
            return false;
        }
    }
    return true;
}

/* Unknown keys of `obj` are an error naming `where` and the key. */
static bt_status_t bt_tools_keys(const json_t *obj, const char *const *allowed,
                                 const char *where, char *err, size_t err_size)
{
    const char *key = bt_json_unknown_key(obj, allowed);

    if (key != NULL) {
        return bt_tools_fail(err, err_size, BT_ERR_INVALID_ARG,
                             "field '%s': unknown field '%.64s'", where, key);
    }
    return BT_OK;
}

/* One entry of `tools`: its function object, checked; *params_p the
 * parameters schema (borrowed; NULL when absent). */
static bt_status_t bt_tools_one(const json_t *t, size_t i, const json_t **fn_p,
                                const json_t **params_p, char *err,
                                size_t err_size)
{
    static const char *const tool_keys[] = { "type", "function", NULL };
    static const char *const fn_keys[] = { "name", "description", "parameters",
                                           "strict", NULL };
    const char *type = json_string_value(json_object_get(t, "type"));
    const json_t *fn = json_object_get(t, "function"), *v;
    char where[64], gerr[BT_GRAMMAR_ERR_SIZE];
    bt_grammar_t *g = NULL;
    bt_status_t s;
    char *text;

    snprintf(where, sizeof(where), "tools[%zu]", i);
    if (!json_is_object(t)) {
        return bt_tools_fail(err, err_size, BT_ERR_INVALID_ARG,
                             "field '%s': expected an object", where);
    }
    if ((s = bt_tools_keys(t, tool_keys, where, err, err_size)) != BT_OK) {
        return s;
    }
    if (type == NULL || strcmp(type, "function") != 0) {
        return bt_tools_fail(err, err_size, BT_ERR_INVALID_ARG,
                             "field '%s.type': only 'function' is supported",
                             where);
    }
    snprintf(where, sizeof(where), "tools[%zu].function", i);
    if (!json_is_object(fn)) {
        return bt_tools_fail(err, err_size, BT_ERR_INVALID_ARG,
                             "field '%s': expected an object", where);
    }
    if ((s = bt_tools_keys(fn, fn_keys, where, err, err_size)) != BT_OK) {
        return s;
    }
    v = json_object_get(fn, "name");
    if (!json_is_string(v) || !bt_tools_name_ok(json_string_value(v))) {
        return bt_tools_fail(err, err_size, BT_ERR_INVALID_ARG,
                             "field '%s.name': expected 1 to 64 of a-z, A-Z, "
                             "0-9, '_' and '-'", where);
    }
    v = json_object_get(fn, "description");
    if (v != NULL && !json_is_string(v) && !json_is_null(v)) {
        return bt_tools_fail(err, err_size, BT_ERR_INVALID_ARG,
                             "field '%s.description': expected a string", where);
    }
    v = json_object_get(fn, "strict");
    if (v != NULL && !json_is_boolean(v) && !json_is_null(v)) {
        return bt_tools_fail(err, err_size, BT_ERR_INVALID_ARG,
                             "field '%s.strict': expected a boolean", where);
    }
    v = json_object_get(fn, "parameters");
    if (json_is_null(v)) {
        v = NULL;
    }
    if (v != NULL && !json_is_object(v)) {
        return bt_tools_fail(err, err_size, BT_ERR_INVALID_ARG,
                             "field '%s.parameters': expected a JSON Schema "
                             "object", where);
    }
    if (v != NULL) {
        /* every constraint is honoured or refused, as for response_format */
        text = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (text == NULL) {
            return BT_ERR_NO_MEMORY;
        }
        s = bt_grammar_compile(BT_GRAMMAR_JSON_SCHEMA, text, strlen(text), &g,
                               gerr, sizeof(gerr));
        free(text);
        bt_grammar_destroy(g);
        if (s != BT_OK) {
            return bt_tools_fail(err, err_size, s == BT_ERR_NO_MEMORY
                                 ? BT_ERR_TOO_LARGE : s,
                                 "field '%s.parameters': %s", where, gerr);
        }
    }
    *fn_p = fn;
    *params_p = v;
    return BT_OK;
}

/* {"type":"object","properties":{"name":{"const":N},"arguments":P},
 *  "required":["name","arguments"],"additionalProperties":false} */
static json_t *bt_tools_call_schema(const json_t *fn, const json_t *params)
{
    json_t *args = params != NULL ? json_deep_copy(params)
                   : json_pack("{s:s, s:{}, s:b}", "type", "object",
                               "properties", "additionalProperties", 0);

    if (args == NULL) {
        return NULL;
    }
    return json_pack("{s:s, s:{s:{s:O}, s:o}, s:[s,s], s:b}", "type", "object",
                     "properties", "name", "const",
                     json_object_get(fn, "name"), "arguments", args,
                     "required", "name", "arguments",
                     "additionalProperties", 0);
}

/* tool_choice → mode and, when a function is named, its name. */
static bt_status_t bt_tools_choice(const json_t *tc, bool have_tools,
                                   bt_openai_tool_mode_t *mode_p,
                                   const char **named_p, char *err,
                                   size_t err_size)
{
    static const char *const keys[] = { "type", "function", NULL };
    const char *s = json_string_value(tc);
    const json_t *fn;

    *named_p = NULL;
    if (tc == NULL) {
        *mode_p = have_tools ? BT_OPENAI_TOOLS_AUTO : BT_OPENAI_TOOLS_NONE;
        return BT_OK;
    }
    if (s != NULL && strcmp(s, "none") == 0) {
        *mode_p = BT_OPENAI_TOOLS_NONE;
        return BT_OK;
    }
    if (s != NULL && strcmp(s, "auto") != 0 && strcmp(s, "required") != 0) {
        return bt_tools_fail(err, err_size, BT_ERR_INVALID_ARG,
                             "field 'tool_choice': expected none, auto, "
                             "required or {\"type\": \"function\", "
                             "\"function\": {\"name\": ...}}");
    }
    if (s == NULL) {
        const char *type = json_string_value(json_object_get(tc, "type"));

        fn = json_object_get(tc, "function");
        if (!json_is_object(tc) ||
            bt_tools_keys(tc, keys, "tool_choice", err, err_size) != BT_OK ||
            type == NULL || strcmp(type, "function") != 0 ||
            !json_is_object(fn) || json_object_size(fn) != 1 ||
            !json_is_string(json_object_get(fn, "name"))) {
            return bt_tools_fail(err, err_size, BT_ERR_INVALID_ARG,
                                 "field 'tool_choice': expected none, auto, "
                                 "required or {\"type\": \"function\", "
                                 "\"function\": {\"name\": ...}}");
        }
        *named_p = json_string_value(json_object_get(fn, "name"));
    }
    if (!have_tools) {
        return bt_tools_fail(err, err_size, BT_ERR_INVALID_ARG,
                             "field 'tool_choice': no 'tools' to choose from");
    }
    *mode_p = s != NULL && strcmp(s, "auto") == 0 ? BT_OPENAI_TOOLS_AUTO
              : BT_OPENAI_TOOLS_FORCED;
    return BT_OK;
}

/* The forced call's grammar as the request's response_format. */
static bt_status_t bt_tools_forced(json_t *alts, bt_arena_t *arena,
                                   bt_openai_req_t *req, char *err,
                                   size_t err_size)
{
    Baton__V1__ResponseFormat *rf = bt_arena_calloc(arena, 1, sizeof(*rf));
    json_t *schema = json_array_size(alts) == 1
                     ? json_incref(json_array_get(alts, 0))
                     : json_pack("{s:O}", "anyOf", alts);
    char *text = schema ? json_dumps(schema, JSON_COMPACT | JSON_PRESERVE_ORDER)
                 : NULL;
    bt_status_t s;

    json_decref(schema);
    if (rf == NULL || text == NULL) {
        free(text);
        return BT_ERR_NO_MEMORY;
    }
    baton__v1__response_format__init(rf);
    rf->type = BATON__V1__RESPONSE_FORMAT__TYPE__TYPE_JSON_SCHEMA;
    rf->name = bt_arena_strdup(arena, "tool_call");
    rf->strict = true;
    rf->schema = bt_arena_strdup(arena, text);
    free(text);
    if (rf->schema == NULL || rf->name == NULL) {
        return BT_ERR_NO_MEMORY;
    }
    s = bt_response_format_check(rf, err, err_size, req->sampling.ignore_eos);
    if (s != BT_OK) {
        return s;
    }
    req->sampling.response_format = rf;
    return BT_OK;
}

bt_status_t bt_openai_tools_parse(const json_t *root, bt_arena_t *arena,
                                  bt_openai_req_t *req, char *err,
                                  size_t err_size, char *param,
                                  size_t param_size)
{
    const json_t *tools = json_object_get(root, "tools");
    const json_t *tc = json_object_get(root, "tool_choice");
    size_t i, n = json_array_size(tools);
    bt_openai_tool_mode_t mode = BT_OPENAI_TOOLS_NONE;
    const char *named = NULL;
    json_t *alts = NULL;
    bool found = false;
    bt_status_t s;

    snprintf(param, param_size, "tools");
    if (tools != NULL && (!json_is_array(tools) || n == 0)) {
        return bt_tools_fail(err, err_size, BT_ERR_INVALID_ARG,
                             "field 'tools': expected a non-empty array");
    }
    if (n > BT_OPENAI_MAX_TOOLS) {
        return bt_tools_fail(err, err_size, BT_ERR_INVALID_ARG,
                             "field 'tools': at most %d tools",
                             BT_OPENAI_MAX_TOOLS);
    }
    snprintf(param, param_size, "tool_choice");
    s = bt_tools_choice(tc, n > 0, &mode, &named, err, err_size);
    if (s != BT_OK) {
        return s;
    }
    if (n == 0) {
        param[0] = '\0';
        return BT_OK;   /* no tools, tool_choice absent or "none" */
    }
    snprintf(param, param_size, "tools");
    req->chat.tools = bt_arena_calloc(arena, n, sizeof(void *));
    req->tool_names = bt_arena_calloc(arena, n, sizeof(char *));
    alts = json_array();
    if (req->chat.tools == NULL || req->tool_names == NULL || alts == NULL) {
        s = BT_ERR_NO_MEMORY;
        goto out;
    }
    for (i = 0; i < n; i++) {
        const json_t *fn = NULL, *params = NULL;
        Baton__V1__ChatTool *ct;
        const char *name, *desc;
        char *text = NULL;

        s = bt_tools_one(json_array_get(tools, i), i, &fn, &params, err,
                         err_size);
        if (s != BT_OK) {
            goto out;
        }
        name = json_string_value(json_object_get(fn, "name"));
        for (size_t j = 0; j < i; j++) {
            if (strcmp(req->tool_names[j], name) == 0) {
                s = bt_tools_fail(err, err_size, BT_ERR_INVALID_ARG,
                                  "field 'tools[%zu].function.name': '%s' "
                                  "is defined twice", i, name);
                goto out;
            }
        }
        ct = bt_arena_alloc(arena, sizeof(*ct));
        if (params != NULL) {
            text = json_dumps(params, JSON_COMPACT | JSON_PRESERVE_ORDER);
        }
        if (ct == NULL || (params != NULL && text == NULL)) {
            free(text);
            s = BT_ERR_NO_MEMORY;
            goto out;
        }
        baton__v1__chat_tool__init(ct);
        ct->name = bt_arena_strdup(arena, name);
        desc = json_string_value(json_object_get(fn, "description"));
        ct->description = bt_arena_strdup(arena, desc ? desc : "");
        ct->parameters = bt_arena_strdup(arena, text ? text : "");
        free(text);
        if (ct->name == NULL || ct->description == NULL ||
            ct->parameters == NULL) {
            s = BT_ERR_NO_MEMORY;
            goto out;
        }
        req->chat.tools[i] = ct;
        req->tool_names[i] = ct->name;
        if (named == NULL || strcmp(named, name) == 0) {
            found = true;
            if (json_array_append_new(alts, bt_tools_call_schema(fn, params))) {
                s = BT_ERR_NO_MEMORY;
                goto out;
            }
        }
    }
    if (mode == BT_OPENAI_TOOLS_NONE) {
        s = BT_OK;   /* checked, but the model is not to call them */
        goto out;
    }
    req->chat.n_tools = n;
    req->n_tool_names = n;
    req->tool_mode = mode;
    if (req->sampling.response_format != NULL) {
        snprintf(param, param_size, "response_format");
        s = bt_tools_fail(err, err_size, BT_ERR_INVALID_ARG,
                          "field 'response_format': cannot be combined "
                          "with tools unless tool_choice is \"none\"");
        goto out;
    }
    if (named != NULL && !found) {
        snprintf(param, param_size, "tool_choice");
        s = bt_tools_fail(err, err_size, BT_ERR_INVALID_ARG,
                          "field 'tool_choice': no tool named '%.64s' in "
                          "'tools'", named);
        goto out;
    }
    s = mode == BT_OPENAI_TOOLS_FORCED
        ? bt_tools_forced(alts, arena, req, err, err_size) : BT_OK;
    if (s != BT_OK) {
        snprintf(param, param_size, "tools");
    }
out:
    json_decref(alts);
    if (s == BT_OK) {
        param[0] = '\0';
    }
    return s;
}

bt_status_t bt_openai_message_tools(const json_t *m, size_t idx,
                                    bt_arena_t *arena,
                                    Baton__V1__ChatMessage *cm, char *err,
                                    size_t err_size)
{
    const json_t *calls = json_object_get(m, "tool_calls");
    const json_t *id = json_object_get(m, "tool_call_id");
    size_t n = json_array_size(calls);

    if (strcmp(cm->role, "tool") == 0) {
        if (!json_is_string(id) || json_string_length(id) == 0) {
            return bt_tools_fail(err, err_size, BT_ERR_INVALID_ARG,
                                 "field 'messages[%zu].tool_call_id': a tool "
                                 "message needs the id of the call it answers",
                                 idx);
        }
        cm->tool_call_id = bt_arena_strdup(arena, json_string_value(id));
        if (cm->tool_call_id == NULL) {
            return BT_ERR_NO_MEMORY;
        }
    } else if (id != NULL && !json_is_null(id)) {
        return bt_tools_fail(err, err_size, BT_ERR_INVALID_ARG,
                             "field 'messages[%zu].tool_call_id': only on "
                             "tool messages", idx);
    }
    if (calls == NULL || json_is_null(calls)) {
        return BT_OK;
    }
    if (strcmp(cm->role, "assistant") != 0 || !json_is_array(calls) ||
        n > BT_OPENAI_MAX_TOOL_CALLS) {
        return bt_tools_fail(err, err_size, BT_ERR_INVALID_ARG,
                             "field 'messages[%zu].tool_calls': an array of at "
                             "most %d calls, on assistant messages only", idx,
                             BT_OPENAI_MAX_TOOL_CALLS);
    }
    cm->tool_calls = bt_arena_calloc(arena, n ? n : 1, sizeof(void *));
    if (cm->tool_calls == NULL) {
        return BT_ERR_NO_MEMORY;
    }
    for (size_t i = 0; i < n; i++) {
        const json_t *c = json_array_get(calls, i);
        const json_t *fn = json_object_get(c, "function");
        const char *type = json_string_value(json_object_get(c, "type"));
        const char *cid = json_string_value(json_object_get(c, "id"));
        const char *name = json_string_value(json_object_get(fn, "name"));
        const char *args = json_string_value(json_object_get(fn, "arguments"));
        Baton__V1__ChatToolCall *tc;
        json_t *parsed;

        if (cid == NULL || type == NULL || strcmp(type, "function") != 0 ||
            name == NULL || args == NULL) {
            return bt_tools_fail(err, err_size, BT_ERR_INVALID_ARG,
                                 "field 'messages[%zu].tool_calls[%zu]': "
                                 "expected {\"id\", \"type\": \"function\", "
                                 "\"function\": {\"name\", \"arguments\"}} "
                                 "with strings", idx, i);
        }
        parsed = json_loads(args, 0, NULL);
        if (!json_is_object(parsed)) {
            json_decref(parsed);
            return bt_tools_fail(err, err_size, BT_ERR_INVALID_ARG,
                                 "field 'messages[%zu].tool_calls[%zu].function."
                                 "arguments': not a JSON object", idx, i);
        }
        json_decref(parsed);
        tc = bt_arena_alloc(arena, sizeof(*tc));
        if (tc == NULL) {
            return BT_ERR_NO_MEMORY;
        }
        baton__v1__chat_tool_call__init(tc);
        tc->id = bt_arena_strdup(arena, cid);
        tc->name = bt_arena_strdup(arena, name);
        tc->arguments = bt_arena_strdup(arena, args);
        if (tc->id == NULL || tc->name == NULL || tc->arguments == NULL) {
            return BT_ERR_NO_MEMORY;
        }
        cm->tool_calls[i] = tc;
    }
    cm->n_tool_calls = n;
    return BT_OK;
}
