/* Built-in chat templates (written in C, no Jinja): Llama-2, Llama-3,
 * Mistral and ChatML (Qwen2). The family is recognised from the model's
 * tokenizer_config.json chat_template or its special tokens, or named
 * explicitly. The rendered prompt contains the BOS and control tokens as
 * text: encode it with BT_TOK_PARSE_SPECIAL and without BT_TOK_ADD_SPECIAL.
 * See docs/internals/tokenizer.md for the exact formats. */
#ifndef BT_ENGINE_CHAT_TEMPLATE_H
#define BT_ENGINE_CHAT_TEMPLATE_H

#include "tokenizer.h"

#include "base/buf.h"
#include "base/status.h"

#include <stdbool.h>
#include <stddef.h>

typedef enum {
    BT_CHAT_LLAMA2,
    BT_CHAT_LLAMA3,
    BT_CHAT_MISTRAL,
    BT_CHAT_CHATML,
} bt_chat_family_t;

/* A call an assistant message made; `arguments` is a JSON object as text. */
typedef struct {
    const char *id;
    const char *name;
    const char *arguments;
} bt_chat_tool_call_t;

/* A function offered to the model; `parameters` is a JSON Schema as text
 * (NULL or "": none), `description` may be NULL. */
typedef struct {
    const char *name;
    const char *description;
    const char *parameters;
} bt_chat_tool_t;

typedef struct {
    const char *role;    /* "system", "user", "assistant" (ChatML and
                          * Llama-3 also take other roles, e.g. "tool") */
    const char *content; /* UTF-8 */
    const bt_chat_tool_call_t *tool_calls; /* assistant: its calls */
    size_t      n_tool_calls;
    const char *tool_call_id;              /* "tool": the call answered */
} bt_chat_msg_t;

/* "llama2", "llama3", "mistral", "chatml" (also "qwen2"); anything else is
 * BT_ERR_NOT_FOUND with the known names in `err`. */
bt_status_t bt_chat_family_parse(const char *name, bt_chat_family_t *family_p,
                                 char *err, size_t err_size);
const char *bt_chat_family_name(bt_chat_family_t family);

/* From tok's chat_template string, else its special tokens. An unknown
 * family is BT_ERR_NOT_FOUND ("cannot tell the chat template family ...;
 * name one"). */
bt_status_t bt_chat_family_detect(const bt_tok_t *tok,
                                  bt_chat_family_t *family_p, char *err,
                                  size_t err_size);

/* `name` when not NULL, else detection. */
bt_status_t bt_chat_family_select(const bt_tok_t *tok, const char *name,
                                  bt_chat_family_t *family_p, char *err,
                                  size_t err_size);

/* Appends the prompt for `msgs` to `out`. `tok` supplies the BOS/EOS
 * strings (NULL: the family's usual ones). Role order errors (Llama-2 and
 * Mistral need user/assistant alternation) are BT_ERR_INVALID_ARG. */
bt_status_t bt_chat_render(const bt_tok_t *tok, bt_chat_family_t family,
                           const bt_chat_msg_t *msgs, size_t n_msgs,
                           bool add_generation_prompt, bt_buf_t *out,
                           char *err, size_t err_size);

/* bt_chat_render with tools and tool messages, rendered as each family's
 * own template does (docs/api.md): ChatML the Hermes/Qwen2.5 <tools> and
 * <tool_call> tags, Llama-3 the JSON function calling of Llama 3.1 (tools
 * in the first user message, results as "ipython"), Mistral
 * [AVAILABLE_TOOLS], [TOOL_CALLS] and [TOOL_RESULTS]. Llama-2 has no tool
 * format: tools or tool messages there are BT_ERR_INVALID_ARG. Without
 * tools, tool calls or tool messages it is bt_chat_render. */
bt_status_t bt_chat_render_tools(const bt_tok_t *tok, bt_chat_family_t family,
                                 const bt_chat_tool_t *tools, size_t n_tools,
                                 const bt_chat_msg_t *msgs, size_t n_msgs,
                                 bool add_generation_prompt, bt_buf_t *out,
                                 char *err, size_t err_size);

#endif
