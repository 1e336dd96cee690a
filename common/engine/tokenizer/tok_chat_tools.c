/* Chat templates with tools: each family's tool format, as its reference
 * Jinja template writes it (bt_chat_render_tools, docs/api.md).
 *   chatml  system: "# Tools ... <tools>\n{tool}\n</tools> ..."; assistant
 *           calls "<tool_call>\n{"name": .., "arguments": ..}\n</tool_call>";
 *           results grouped in one user turn of <tool_response> blocks
 *           (Hermes, Qwen2.5)
 *   llama3  tools in the first user message with the JSON-call
 *           instruction; a call is {"name": .., "parameters": ..}; results
 *           are "ipython" turns (Llama 3.1)
 *   mistral [AVAILABLE_TOOLS] [..][/AVAILABLE_TOOLS] before the last
 *           [INST], [TOOL_CALLS] [..]</s>, [TOOL_RESULTS] {..}[/TOOL_RESULTS]
 * JSON is written as Python's json.dumps writes it (", " and ": "), as the
 * templates' tojson does. ChatML and Llama-3 become plain messages for
 * bt_chat_render; Mistral is rendered here (tool turns break the
 * user/assistant alternation that the plain renderer checks). */
#include "chat_template.h"
#include "tok_int.h"

#include "base/arena.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    bt_arena_t *arena;
    bt_buf_t    b;       /* scratch for one string */
    char       *err;
    size_t      err_size;
} tctx_t;

static bool has_tools(const bt_chat_msg_t *msgs, size_t n, size_t n_tools)
{
    if (n_tools > 0)
        return true;
    for (size_t i = 0; i < n; i++)
        if (msgs[i].n_tool_calls > 0 || strcmp(msgs[i].role, "tool") == 0)
            return true;
    return false;
}

/* Appends `text` (JSON) re-dumped as Python's json.dumps would, or, when
 * it does not parse as JSON and `as_string`, the text as a JSON string. */
static bt_status_t put_json(tctx_t *c, const char *text, bool as_string,
                            const char *what)
{
    json_error_t je;
    json_t *v = json_loads(text, JSON_DECODE_ANY, &je);
    char *s;
    bt_status_t st;

    if (v == NULL && as_string)
        v = json_string(text);
    if (v == NULL) {
        tok_err(c->err, c->err_size, "%s is not valid JSON", what);
        return BT_ERR_INVALID_ARG;
    }
    s = json_dumps(v, JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
    json_decref(v);
    if (s == NULL)
        return BT_ERR_NO_MEMORY;
    st = bt_buf_append_str(&c->b, s);
    free(s);
    return st;
}

/* {"type": "function", "function": {"name", "description", "parameters"}}
 * (indent 4 for Llama-3). */
static bt_status_t put_tool(tctx_t *c, const bt_chat_tool_t *t, int indent)
{
    json_t *fn = json_object(), *tool = json_object(), *params = NULL;
    json_error_t je;
    char *s;
    bt_status_t st = BT_ERR_NO_MEMORY;

    if (fn == NULL || tool == NULL)
        goto out;
    json_object_set_new(tool, "type", json_string("function"));
    json_object_set_new(fn, "name", json_string(t->name));
    if (t->description != NULL && t->description[0] != '\0')
        json_object_set_new(fn, "description", json_string(t->description));
    if (t->parameters != NULL && t->parameters[0] != '\0') {
        params = json_loads(t->parameters, 0, &je);
        if (params == NULL) {
            tok_err(c->err, c->err_size, "tool '%.64s': parameters are not "
                    "valid JSON", t->name);
            st = BT_ERR_INVALID_ARG;
            goto out;
        }
        json_object_set_new(fn, "parameters", params);
    }
    json_object_set(tool, "function", fn);
    s = json_dumps(tool, JSON_PRESERVE_ORDER |
                   (indent ? JSON_INDENT(indent) : 0));
    if (s != NULL) {
        st = bt_buf_append_str(&c->b, s);
        free(s);
    }
out:
    json_decref(fn);
    json_decref(tool);
    return st;
}

/* {"name": N, "<args_key>": ARGS[, "id": ID]} */
static bt_status_t put_call(tctx_t *c, const bt_chat_tool_call_t *tc,
                            const char *args_key, bool with_id)
{
    json_t *name = json_string(tc->name ? tc->name : "");
    char *s = json_dumps(name, JSON_ENCODE_ANY);
    bt_status_t st = s ? BT_OK : BT_ERR_NO_MEMORY;

    json_decref(name);
    if (st == BT_OK)
        st = bt_buf_printf(&c->b, "{\"name\": %s, \"%s\": ", s, args_key);
    free(s);
    if (st == BT_OK)
        st = put_json(c, tc->arguments && tc->arguments[0] ? tc->arguments
                      : "{}", false, "a tool call's arguments");
    if (st == BT_OK && with_id) {
        json_t *id = json_string(tc->id ? tc->id : "");

        s = json_dumps(id, JSON_ENCODE_ANY);
        json_decref(id);
        st = s ? bt_buf_printf(&c->b, ", \"id\": %s", s) : BT_ERR_NO_MEMORY;
        free(s);
    }
    return st == BT_OK ? bt_buf_append_str(&c->b, "}") : st;
}

/* The scratch buffer as an arena string (then emptied). */
static const char *take(tctx_t *c)
{
    const char *s = bt_arena_strndup(c->arena, c->b.data ? c->b.data : "",
                                     c->b.len);

    bt_buf_reset(&c->b);
    return s;
}

#define TRY(x)                                                               \
    do {                                                                     \
        if ((st = (x)) != BT_OK)                                             \
            return st;                                                       \
    } while (0)

static bt_status_t chatml_msgs(tctx_t *c, const bt_chat_tool_t *tools,
                               size_t n_tools, const bt_chat_msg_t *msgs,
                               size_t n, bt_chat_msg_t *o, size_t *n_o)
{
    size_t k = 0, i = 0;
    bt_status_t st;

    if (n_tools > 0) {
        if (n > 0 && strcmp(msgs[0].role, "system") == 0) {
            TRY(bt_buf_append_str(&c->b, msgs[0].content));
            TRY(bt_buf_append_str(&c->b, "\n\n"));
            i = 1;
        }
        TRY(bt_buf_append_str(&c->b, "# Tools\n\nYou may call one or more "
            "functions to assist with the user query.\n\nYou are provided "
            "with function signatures within <tools></tools> XML tags:\n"
            "<tools>"));
        for (size_t t = 0; t < n_tools; t++) {
            TRY(bt_buf_append_str(&c->b, "\n"));
            TRY(put_tool(c, &tools[t], 0));
        }
        TRY(bt_buf_append_str(&c->b, "\n</tools>\n\nFor each function call, "
            "return a json object with function name and arguments within "
            "<tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": "
            "<function-name>, \"arguments\": <args-json-object>}\n"
            "</tool_call>"));
        o[k].role = "system";
        o[k++].content = take(c);
    }
    for (; i < n; i++) {
        if (strcmp(msgs[i].role, "tool") == 0) {
            /* consecutive results share one user turn */
            for (; i < n && strcmp(msgs[i].role, "tool") == 0; i++) {
                if (c->b.len > 0)
                    TRY(bt_buf_append_str(&c->b, "\n"));
                TRY(bt_buf_printf(&c->b, "<tool_response>\n%s\n"
                                  "</tool_response>", msgs[i].content));
            }
            i--;
            o[k].role = "user";
        } else if (msgs[i].n_tool_calls > 0) {
            TRY(bt_buf_append_str(&c->b, msgs[i].content));
            for (size_t t = 0; t < msgs[i].n_tool_calls; t++) {
                if (c->b.len > 0)
                    TRY(bt_buf_append_str(&c->b, "\n"));
                TRY(bt_buf_append_str(&c->b, "<tool_call>\n"));
                TRY(put_call(c, &msgs[i].tool_calls[t], "arguments", false));
                TRY(bt_buf_append_str(&c->b, "\n</tool_call>"));
            }
            o[k].role = msgs[i].role;
        } else {
            TRY(bt_buf_append_str(&c->b, msgs[i].content));
            o[k].role = msgs[i].role;
        }
        o[k++].content = take(c);
    }
    *n_o = k;
    return BT_OK;
}

static bt_status_t llama3_msgs(tctx_t *c, const bt_chat_tool_t *tools,
                               size_t n_tools, const bt_chat_msg_t *msgs,
                               size_t n, bt_chat_msg_t *o, size_t *n_o)
{
    bool tools_done = n_tools == 0;
    bt_status_t st;

    for (size_t i = 0; i < n; i++) {
        o[i].role = msgs[i].role;
        if (strcmp(msgs[i].role, "user") == 0 && !tools_done) {
            tools_done = true;
            TRY(bt_buf_append_str(&c->b, "Given the following functions, "
                "please respond with a JSON for a function call with its "
                "proper arguments that best answers the given prompt.\n\n"
                "Respond in the format {\"name\": function name, "
                "\"parameters\": dictionary of argument name and its value}."
                "Do not use variables.\n\n"));
            for (size_t t = 0; t < n_tools; t++) {
                TRY(put_tool(c, &tools[t], 4));
                TRY(bt_buf_append_str(&c->b, "\n\n"));
            }
            TRY(bt_buf_append_str(&c->b, msgs[i].content));
        } else if (msgs[i].n_tool_calls > 0) {
            if (msgs[i].n_tool_calls > 1) {
                tok_err(c->err, c->err_size, "message %zu: the llama3 "
                        "template renders one tool call per message", i);
                return BT_ERR_INVALID_ARG;
            }
            TRY(put_call(c, &msgs[i].tool_calls[0], "parameters", false));
        } else if (strcmp(msgs[i].role, "tool") == 0) {
            o[i].role = "ipython";
            TRY(put_json(c, msgs[i].content, true, "a tool result"));
        } else {
            TRY(bt_buf_append_str(&c->b, msgs[i].content));
        }
        o[i].content = take(c);
    }
    if (!tools_done) {
        tok_err(c->err, c->err_size, "the llama3 template puts tools in the "
                "first user message; there is none");
        return BT_ERR_INVALID_ARG;
    }
    *n_o = n;
    return BT_OK;
}

static bt_status_t mistral_render(tctx_t *c, const bt_tok_t *tok,
                                  const bt_chat_tool_t *tools, size_t n_tools,
                                  const bt_chat_msg_t *msgs, size_t n,
                                  bt_buf_t *out)
{
    size_t bl, el, last_user = n, first = 0;
    const char *bos = NULL, *eos = NULL;
    const char *sys = NULL;
    bt_status_t st;

    if (tok != NULL && bt_tok_bos_id(tok) >= 0)
        bos = bt_tok_token_str(tok, bt_tok_bos_id(tok), &bl);
    if (bos == NULL)
        bos = "<s>", bl = 3;
    if (tok != NULL && bt_tok_eos_id(tok) >= 0)
        eos = bt_tok_token_str(tok, bt_tok_eos_id(tok), &el);
    if (eos == NULL)
        eos = "</s>", el = 4;
    if (n > 0 && strcmp(msgs[0].role, "system") == 0) {
        sys = msgs[0].content;
        first = 1;
    }
    for (size_t i = first; i < n; i++)
        if (strcmp(msgs[i].role, "user") == 0)
            last_user = i;
    TRY(bt_buf_append(out, bos, bl));
    for (size_t i = first; i < n; i++) {
        const bt_chat_msg_t *m = &msgs[i];

        if (strcmp(m->role, "user") == 0) {
            if (i == last_user && n_tools > 0) {
                TRY(bt_buf_append_str(&c->b, "[AVAILABLE_TOOLS] ["));
                for (size_t t = 0; t < n_tools; t++) {
                    if (t > 0)
                        TRY(bt_buf_append_str(&c->b, ", "));
                    TRY(put_tool(c, &tools[t], 0));
                }
                TRY(bt_buf_append_str(&c->b, "][/AVAILABLE_TOOLS]"));
            }
            TRY(bt_buf_append_str(&c->b, "[INST] "));
            if (i == last_user && sys != NULL)
                TRY(bt_buf_printf(&c->b, "%s\n\n", sys));
            TRY(bt_buf_printf(&c->b, "%s[/INST]", m->content));
        } else if (m->n_tool_calls > 0) {
            TRY(bt_buf_append_str(&c->b, "[TOOL_CALLS] ["));
            for (size_t t = 0; t < m->n_tool_calls; t++) {
                if (t > 0)
                    TRY(bt_buf_append_str(&c->b, ", "));
                TRY(put_call(c, &m->tool_calls[t], "arguments", true));
            }
            TRY(bt_buf_append_str(&c->b, "]"));
            TRY(bt_buf_append(&c->b, eos, el));
        } else if (strcmp(m->role, "tool") == 0) {
            json_t *id = json_string(m->tool_call_id ? m->tool_call_id : "");
            char *ids = json_dumps(id, JSON_ENCODE_ANY);

            json_decref(id);
            if (ids == NULL)
                return BT_ERR_NO_MEMORY;
            st = bt_buf_append_str(&c->b, "[TOOL_RESULTS] {\"content\": ");
            if (st == BT_OK)
                st = put_json(c, m->content, true, "a tool result");
            if (st == BT_OK)
                st = bt_buf_printf(&c->b, ", \"call_id\": %s}[/TOOL_RESULTS]",
                                   ids);
            free(ids);
            TRY(st);
        } else if (strcmp(m->role, "assistant") == 0) {
            TRY(bt_buf_printf(&c->b, " %s", m->content));
            TRY(bt_buf_append(&c->b, eos, el));
        } else {
            tok_err(c->err, c->err_size, "message %zu: role '%.20s' where "
                    "user, assistant or tool is expected", i, m->role);
            return BT_ERR_INVALID_ARG;
        }
        TRY(bt_buf_append(out, c->b.data, c->b.len));
        bt_buf_reset(&c->b);
    }
    return BT_OK;
}

bt_status_t bt_chat_render_tools(const bt_tok_t *tok, bt_chat_family_t family,
                                 const bt_chat_tool_t *tools, size_t n_tools,
                                 const bt_chat_msg_t *msgs, size_t n_msgs,
                                 bool add_generation_prompt, bt_buf_t *out,
                                 char *err, size_t err_size)
{
    tctx_t c = { NULL, { 0 }, err, err_size };
    bt_chat_msg_t *plain = NULL;
    size_t n_plain = 0, len0 = out->len;
    bt_status_t st;

    if (!has_tools(msgs, n_msgs, n_tools))
        return bt_chat_render(tok, family, msgs, n_msgs, add_generation_prompt,
                              out, err, err_size);
    for (size_t i = 0; i < n_msgs; i++) {
        if (msgs[i].role == NULL || msgs[i].content == NULL) {
            tok_err(err, err_size, "message %zu: role and content are "
                    "required", i);
            return BT_ERR_INVALID_ARG;
        }
    }
    if (family == BT_CHAT_LLAMA2) {
        tok_err(err, err_size, "the llama2 chat template has no tool format");
        return BT_ERR_INVALID_ARG;
    }
    c.arena = bt_arena_create(4096, out->max + (1u << 20));
    plain = calloc(n_msgs + 1, sizeof(*plain));
    if (c.arena == NULL || plain == NULL) {
        st = BT_ERR_NO_MEMORY;
        goto out;
    }
    bt_buf_init(&c.b, out->max);
    switch (family) {
    case BT_CHAT_CHATML:
        st = chatml_msgs(&c, tools, n_tools, msgs, n_msgs, plain, &n_plain);
        break;
    case BT_CHAT_LLAMA3:
        st = llama3_msgs(&c, tools, n_tools, msgs, n_msgs, plain, &n_plain);
        break;
    default:
        st = mistral_render(&c, tok, tools, n_tools, msgs, n_msgs, out);
        goto out;
    }
    for (size_t i = 0; st == BT_OK && i < n_plain; i++)
        if (plain[i].content == NULL)
            st = BT_ERR_NO_MEMORY;
    if (st == BT_OK)
        st = bt_chat_render(tok, family, plain, n_plain, add_generation_prompt,
                            out, err, err_size);
out:
    if (st != BT_OK) {
        out->len = len0;
        if (out->data != NULL)
            out->data[len0] = 0;
        if (st == BT_ERR_TOO_LARGE)
            tok_err(err, err_size, "chat prompt over %zu bytes", out->max);
        else if (st == BT_ERR_NO_MEMORY)
            tok_err(err, err_size, "out of memory rendering the chat prompt");
    }
    bt_buf_cleanup(&c.b);
    bt_arena_destroy(c.arena);
    free(plain);
    return st;
}
