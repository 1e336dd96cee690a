/* Tool calling in the OpenAI chat API (docs/api.md "Tools").
 *
 * Request side: `tools` and `tool_choice` are read into the chat's
 * ChatTool list (rendered by the family's template) and a tool mode; with
 * "required" or a named function the output is constrained by the
 * tool-call grammar: a JSON Schema {"name": const, "arguments": the
 * function's parameters} (anyOf over the tools) sent as the request's
 * response_format, so the nodes mask with the grammar engine and a
 * failover replays into the same state (docs/internals/grammar.md).
 * Messages' `tool_calls` and `tool_call_id` are read into ChatMessage.
 *
 * Output side: the generated text becomes `tool_calls` — a forced call
 * is split as it streams (name first, then pieces of the arguments), an
 * `auto` output streams as text up to what may be a call and is parsed
 * for the family's call syntax when it ends. */
#ifndef BT_ROUTER_OPENAI_TOOLS_H
#define BT_ROUTER_OPENAI_TOOLS_H

#include "openai.h"

#include "base/buf.h"
#include "engine/tokenizer/chat_template.h"

#define BT_OPENAI_MAX_TOOLS       32  /* anyOf readings stay within the
                                         automaton's 32 stacks */
#define BT_OPENAI_MAX_TOOL_CALLS  32  /* per assistant message */
#define BT_OPENAI_MAX_TOOL_NAME   64

/* Reads `tools` and `tool_choice` of `root` (nulls already dropped) into
 * req (tool_mode, tool_names, chat.tools; for FORCED
 * sampling.response_format), all from `arena`. Call after
 * response_format is read: a json format with a tool choice other than
 * "none" is refused. On error BT_ERR_INVALID_ARG (or TOO_LARGE) with the
 * message in err and the field in param. */
bt_status_t bt_openai_tools_parse(const json_t *root, bt_arena_t *arena,
                                  bt_openai_req_t *req, char *err,
                                  size_t err_size, char *param,
                                  size_t param_size);

/* A message's `tool_calls` (assistant) and `tool_call_id` (tool) into cm.
 * `idx`: the message's index, for errors. */
bt_status_t bt_openai_message_tools(const json_t *m, size_t idx,
                                    bt_arena_t *arena,
                                    Baton__V1__ChatMessage *cm, char *err,
                                    size_t err_size);

/* ---- output ---- */

/* A forced call as it streams: {"name": "N", "arguments": ARGS}. */
typedef struct {
    bt_buf_t buf;          /* the text so far */
    size_t   args_at;      /* offset of ARGS in buf; 0 until the name ended */
    size_t   sent;         /* bytes of ARGS handed out */
    bool     named;        /* the name was handed out */
    char     name[BT_OPENAI_MAX_TOOL_NAME + 1];
} bt_tool_stream_t;

void bt_tool_stream_init(bt_tool_stream_t *ts);
void bt_tool_stream_cleanup(bt_tool_stream_t *ts);

/* Feeds generated text. *name_p is set (once) when the name is known;
 * *args_p and *args_len_p: the arguments' bytes new since the last call (the
 * last character, maybe the call's closing brace, is held back; `end`
 * checks that it closes the call). Text fed in whole UTF-8 characters
 * gives pieces of whole characters.
 * BT_ERR_NO_MEMORY, or BT_ERR_INVALID_ARG when the text is not a call. */
bt_status_t bt_tool_stream_feed(bt_tool_stream_t *ts, const char *text,
                                size_t len, bool end, const char **name_p,
                                const char **args_p, size_t *args_len_p);

/* Calls in `auto` output, in the family's syntax (ChatML <tool_call>
 * tags, Llama-3 a bare {"name", "parameters"} object, Mistral
 * [TOOL_CALLS] [..]). Returns a JSON array of {"name", "arguments"
 * (compact JSON text)} (new reference) when the text holds calls to tools
 * in `names` and nothing malformed, else NULL. *content_len_p: how many
 * bytes of text before the calls are the message's content. */
json_t *bt_tool_calls_parse(bt_chat_family_t family, const char *text,
                            size_t len, const char *const *names,
                            size_t n_names, size_t *content_len_p);

/* How many bytes of `auto` output (text, len bytes so far) can be streamed
 * as content now: the bytes before anything that is or may become the
 * family's call syntax, less trailing whitespace (which the content of a
 * message with calls does not keep). Always a UTF-8 boundary when text
 * is whole characters. */
size_t bt_tool_text_safe(bt_chat_family_t family, const char *text, size_t len);

/* "call_" and 24 hex digits derived from the request id and the index:
 * unique per request, the same across a stream and a retry. */
void bt_tool_call_id(const char *request_id, size_t index, char id[32]);

/* Turns a chat response (bt_openai_response) into a tool-call response:
 * message.content (NULL, or content_len bytes of content), message.
 * tool_calls [{id, type, function: {name, arguments}}], finish_reason
 * "tool_calls". `calls` as bt_tool_calls_parse returns (borrowed). */
bt_status_t bt_openai_tool_response(json_t *resp, const json_t *calls,
                                    const char *content, size_t content_len,
                                    const char *request_id);

/* A stream chunk's delta.tool_calls[0] = {index, id, type, function:
 * {name, arguments: ""}} when `name` is set, else {index, function:
 * {arguments}}; `chunk` as bt_openai_chunk made it (its content removed,
 * content null on the first chunk). */
bt_status_t bt_openai_tool_chunk(json_t *chunk, size_t index,
                                 const char *request_id, const char *name,
                                 const char *args, size_t args_len);

#endif
