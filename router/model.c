/* The served model on the router; see model.h. */
#include "model.h"
#include "openai.h"

#include "base/log.h"
#include "engine/tokenizer/chat_template.h"
#include "engine/model/model_config.h"
#include "kvspec/kv_hash.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct bt_router_model {
    char        name[BT_NODE_MODEL_MAX + 1];
    char        dir[PATH_MAX];
    bt_tok_t   *tok;
    uint32_t    max_context;
    int32_t     vocab;
    bool        kv_known;
    uint32_t    block_size;
    bt_kv_dtype_t kv_dtype;
    bool        has_chat;
    bt_chat_family_t chat;
    char        chat_err[256]; /* why chat is unavailable */
};

bt_status_t bt_router_model_load(bt_router_t *r, const char *dir,
                                 const char *name, const char *chat_template,
                                 char *err, size_t err_size)
{
    bt_router_model_t *m = calloc(1, sizeof(*m));
    bt_model_config_t cfg;
    char path[PATH_MAX];
    const char *base;
    bt_status_t s;

    if (m == NULL) {
        return BT_ERR_NO_MEMORY;
    }
    snprintf(m->dir, sizeof(m->dir), "%s", dir);
    s = bt_tok_load_dir(dir, &m->tok, err, err_size);
    if (s != BT_OK) {
        free(m);
        return s;
    }
    snprintf(path, sizeof(path), "%s/config.json", dir);
    s = bt_model_config_load(path, &cfg);
    if (s != BT_OK) {
        snprintf(err, err_size, "cannot read the model config %s: %s", path,
                 bt_status_str(s));
        bt_tok_destroy(m->tok);
        free(m);
        return s;
    }
    m->max_context = cfg.max_pos > 0 ? (uint32_t)cfg.max_pos : 2048;
    bt_model_config_cleanup(&cfg);
    if (bt_chat_family_select(m->tok, chat_template, &m->chat, m->chat_err,
                              sizeof(m->chat_err)) == BT_OK) {
        m->has_chat = true;
    } else if (chat_template != NULL) {
        snprintf(err, err_size, "--chat-template: %s", m->chat_err);
        bt_tok_destroy(m->tok);
        free(m);
        return BT_ERR_INVALID_ARG;
    } else {
        bt_warn("chat requests will be refused: %s", m->chat_err);
    }
    m->vocab = bt_tok_vocab_size(m->tok);
    if (name == NULL || name[0] == '\0') {
        size_t len = strlen(dir);

        while (len > 1 && dir[len - 1] == '/') {
            len--;
        }
        base = dir + len;
        while (base > dir && base[-1] != '/') {
            base--;
        }
        snprintf(m->name, sizeof(m->name), "%.*s", (int)(dir + len - base), base);
    } else {
        snprintf(m->name, sizeof(m->name), "%s", name);
    }
    r->model = m;
    bt_info("serving model %s from %s: vocab %d, context %u", m->name, dir,
            m->vocab, m->max_context);
    return BT_OK;
}

void bt_router_model_free(bt_router_t *r)
{
    if (r->model == NULL) {
        return;
    }
    bt_tok_destroy(r->model->tok);
    free(r->model);
    r->model = NULL;
}

const char *bt_router_model_name(const bt_router_t *r)
{
    return r->model->name;
}

uint32_t bt_router_model_max_context(const bt_router_t *r)
{
    return r->model->max_context;
}

int32_t bt_router_model_vocab_size(const bt_router_t *r)
{
    return r->model->vocab;
}

bt_status_t bt_router_model_check_node(bt_router_t *r,
                                       const bt_node_hello_t *hello, char *err,
                                       size_t err_size)
{
    bt_router_model_t *m = r->model;

    if (hello->model == NULL || strcmp(hello->model, m->name) != 0) {
        snprintf(err, err_size, "node serves model '%s'; this router serves '%s'",
                 hello->model ? hello->model : "", m->name);
        return BT_ERR_INVALID_ARG;
    }
    if (bt_kv_dtype_name(hello->kv_dtype) == NULL) {
        snprintf(err, err_size, "node reports no valid KV dtype");
        return BT_ERR_INVALID_ARG;
    }
    if (!bt_kv_numerics_valid(hello->numerics)) {
        snprintf(err, err_size, "node reports no valid numerics id (kv-spec "
                 "v2: 1 to %d bytes of [a-z0-9./_-], e.g. cpu/exact/tp1/k1; "
                 "a node older than the router?)", BT_KV_NUMERICS_MAX);
        return BT_ERR_INVALID_ARG;
    }
    if (m->kv_known && (hello->block_size != m->block_size ||
                        hello->kv_dtype != m->kv_dtype)) {
        snprintf(err, err_size, "node uses blocks of %u tokens and KV dtype %u; "
                 "the cluster uses %u and %u", hello->block_size,
                 (unsigned)hello->kv_dtype, m->block_size,
                 (unsigned)m->kv_dtype);
        return BT_ERR_INVALID_ARG;
    }
    if (!m->kv_known) {
        m->kv_known = true;
        m->block_size = hello->block_size;
        m->kv_dtype = hello->kv_dtype;
    }
    return BT_OK;
}

/* A prompt over `out`'s limit: say how long it is against the context,
 * as the token-id path does (a second, unbounded encode; rare). */
static bt_status_t bt_router_model_too_long(bt_router_t *r, const char *text,
                                            size_t len, unsigned flags,
                                            const bt_tok_ids_t *out, char *err,
                                            size_t err_size)
{
    bt_tok_ids_t all;
    char ignored[64];

    bt_tok_ids_init(&all, len + 64);   /* never more tokens than bytes + specials */
    if (bt_tok_encode(r->model->tok, text, len, flags, &all, ignored,
                      sizeof(ignored)) == BT_OK) {
        snprintf(err, err_size, "the prompt has %zu tokens; the model's context "
                 "is %u tokens", all.n, r->model->max_context);
    } else {
        snprintf(err, err_size, "the prompt has more than %zu tokens; the "
                 "model's context is %u tokens", out->max, r->model->max_context);
    }
    bt_tok_ids_cleanup(&all);
    return BT_ERR_INVALID_ARG;
}

bt_status_t bt_router_model_encode_text(bt_router_t *r, const char *text,
                                        size_t len, bool add_special,
                                        bt_tok_ids_t *out, char *err,
                                        size_t err_size)
{
    unsigned flags = add_special ? BT_TOK_ADD_SPECIAL : 0;
    bt_status_t s = bt_tok_encode(r->model->tok, text, len, flags, out, err,
                                  err_size);

    if (s == BT_ERR_TOO_LARGE) {
        return bt_router_model_too_long(r, text, len, flags, out, err, err_size);
    }
    return s;
}

bt_status_t bt_router_model_encode(bt_router_t *r, const char *text,
                                   size_t len, bt_tok_ids_t *out, char *err,
                                   size_t err_size)
{
    return bt_router_model_encode_text(r, text, len, true, out, err, err_size);
}

bool bt_router_model_chat_family(const bt_router_t *r,
                                 bt_chat_family_t *family_p)
{
    if (!r->model->has_chat) {
        return false;
    }
    *family_p = r->model->chat;
    return true;
}

/* The proto's messages, tool calls and tools as the template's structs
 * (borrowing the strings; *tools_p and *calls_p are malloc'ed). */
static bt_status_t bt_router_chat_tools(const Baton__V1__ChatMessages *chat,
                                        bt_chat_msg_t *msgs,
                                        bt_chat_tool_t **tools_p,
                                        bt_chat_tool_call_t **calls_p,
                                        char *err, size_t err_size)
{
    size_t i, n_calls = 0;
    bt_chat_tool_call_t *calls;
    bt_chat_tool_t *tools;

    for (i = 0; i < chat->n_messages; i++) {
        n_calls += chat->messages[i]->n_tool_calls;
    }
    tools = calloc(chat->n_tools + 1, sizeof(*tools));
    calls = calloc(n_calls + 1, sizeof(*calls));
    if (tools == NULL || calls == NULL) {
        free(tools);
        free(calls);
        return BT_ERR_NO_MEMORY;
    }
    for (i = 0; i < chat->n_tools; i++) {
        tools[i].name = chat->tools[i]->name;
        tools[i].description = chat->tools[i]->description;
        tools[i].parameters = chat->tools[i]->parameters;
    }
    n_calls = 0;
    for (i = 0; i < chat->n_messages; i++) {
        const Baton__V1__ChatMessage *cm = chat->messages[i];

        if (!bt_openai_role_ok(cm->role)) {
            snprintf(err, err_size, "messages[%zu].role: expected one of system, "
                     "developer, user, assistant, tool", i);
            free(tools);
            free(calls);
            return BT_ERR_INVALID_ARG;
        }
        msgs[i].role = strcmp(cm->role, "developer") == 0 ? "system" : cm->role;
        msgs[i].content = cm->content ? cm->content : "";
        msgs[i].tool_call_id = cm->tool_call_id;
        msgs[i].tool_calls = &calls[n_calls];
        msgs[i].n_tool_calls = cm->n_tool_calls;
        for (size_t j = 0; j < cm->n_tool_calls; j++, n_calls++) {
            calls[n_calls].id = cm->tool_calls[j]->id;
            calls[n_calls].name = cm->tool_calls[j]->name;
            calls[n_calls].arguments = cm->tool_calls[j]->arguments;
        }
    }
    *tools_p = tools;
    *calls_p = calls;
    return BT_OK;
}

bt_status_t bt_router_model_encode_chat(bt_router_t *r,
                                        const Baton__V1__ChatMessages *chat,
                                        bt_tok_ids_t *out, char *err,
                                        size_t err_size)
{
    bt_router_model_t *m = r->model;
    bt_chat_tool_call_t *calls = NULL;
    bt_chat_tool_t *tools = NULL;
    bt_chat_msg_t *msgs;
    bt_buf_t text;
    bt_status_t s;

    if (!m->has_chat) {
        snprintf(err, err_size, "this model has no chat template: %s", m->chat_err);
        return BT_ERR_INVALID_ARG;
    }
    msgs = calloc(chat->n_messages ? chat->n_messages : 1, sizeof(*msgs));
    if (msgs == NULL) {
        return BT_ERR_NO_MEMORY;
    }
    s = bt_router_chat_tools(chat, msgs, &tools, &calls, err, err_size);
    if (s != BT_OK) {
        free(msgs);
        return s;
    }
    bt_buf_init(&text, 64u << 20);
    s = bt_chat_render_tools(m->tok, m->chat, tools, chat->n_tools, msgs,
                             chat->n_messages, chat->add_generation_prompt,
                             &text, err, err_size);
    free(msgs);
    free(tools);
    free(calls);
    if (s == BT_OK) {
        /* the template wrote the special tokens (BOS, headers) as text */
        s = bt_tok_encode(m->tok, text.data ? text.data : "", text.len,
                          BT_TOK_PARSE_SPECIAL, out, err, err_size);
        if (s == BT_ERR_TOO_LARGE) {
            s = bt_router_model_too_long(r, text.data ? text.data : "", text.len,
                                         BT_TOK_PARSE_SPECIAL, out, err, err_size);
        }
    }
    bt_buf_cleanup(&text);
    return s;
}

bt_status_t bt_router_model_check_tokens(bt_router_t *r, const uint32_t *ids,
                                         size_t n, char *err, size_t err_size)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (ids[i] >= (uint32_t)r->model->vocab) {
            snprintf(err, err_size, "token id %u at position %zu is outside the "
                     "vocabulary of %d", ids[i], i, r->model->vocab);
            return BT_ERR_INVALID_ARG;
        }
    }
    return BT_OK;
}

bt_status_t bt_router_model_detok(bt_router_t *r, bt_tok_stream_t **stream_p)
{
    return bt_tok_stream_create(r->model->tok, true, stream_p);
}

bt_status_t bt_router_model_decode(bt_router_t *r, const uint32_t *ids,
                                   size_t n, bt_buf_t *out)
{
    char err[BT_TOK_ERR_SIZE];

    return bt_tok_decode(r->model->tok, (const int32_t *)ids, n, true, out, err,
                         sizeof(err));
}

void bt_router_model_token_text(bt_router_t *r, uint32_t id, bool raw,
                                bt_buf_t *out)
{
    size_t len0 = out->len;

    if (id > INT32_MAX ||
        bt_tok_token_text(r->model->tok, (int32_t)id, raw, out) != BT_OK) {
        out->len = len0;   /* unknown id, or over the buffer's limit */
        if (out->data != NULL) {
            out->data[len0] = '\0';
        }
    }
}

bt_status_t bt_router_model_root(bt_router_t *r, const char *numerics,
                                 const uint8_t *salt, size_t salt_len,
                                 uint8_t root[BT_BLOCK_HASH_LEN])
{
    bt_router_model_t *m = r->model;

    if (!m->kv_known) {
        return BT_ERR_NOT_FOUND;
    }
    return bt_kv_hash_root(m->name, "", m->kv_dtype, m->block_size, numerics,
                           salt, salt_len, root);
}

void bt_router_model_hashes(bt_router_t *r, const uint8_t root[BT_BLOCK_HASH_LEN],
                            const uint32_t *prompt, size_t n_prompt,
                            const uint32_t *gen, size_t n_gen,
                            uint8_t (**hashes_p)[BT_BLOCK_HASH_LEN],
                            size_t *n_p)
{
    bt_router_model_t *m = r->model;
    size_t n_tokens = n_prompt + n_gen;
    size_t max_blocks, n = 0;
    uint32_t *all;
    uint8_t (*hashes)[BT_BLOCK_HASH_LEN];

    *hashes_p = NULL;
    *n_p = 0;
    if (!m->kv_known || n_tokens < m->block_size) {
        return;
    }
    max_blocks = n_tokens / m->block_size;
    all = malloc(n_tokens * sizeof(*all));
    hashes = malloc(max_blocks * sizeof(*hashes));
    if (all == NULL || hashes == NULL) {
        free(all);
        free(hashes);
        return;
    }
    memcpy(all, prompt, n_prompt * sizeof(*all));
    if (n_gen > 0) {
        memcpy(all + n_prompt, gen, n_gen * sizeof(*all));
    }
    if (bt_kv_hash_chain(root, m->block_size, all, n_tokens, hashes, max_blocks,
                         &n) != BT_OK) {
        free(hashes);
        hashes = NULL;
        n = 0;
    }
    free(all);
    *hashes_p = hashes;
    *n_p = n;
}
