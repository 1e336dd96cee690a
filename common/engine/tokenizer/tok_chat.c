/* Chat templates in C. Each renderer reproduces the family's reference
 * Jinja template for system/user/assistant conversations:
 *   llama2  <s>[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST] {asst} </s>
 *   llama3  <|begin_of_text|><|start_header_id|>{role}<|end_header_id|>\n\n
 *           {content}<|eot_id|> ...
 *   mistral <s>[INST] {user} [/INST]{asst}</s>
 *   chatml  <|im_start|>{role}\n{content}<|im_end|>\n ... */
#include "chat_template.h"
#include "tok_int.h"

#include <string.h>

static const struct {
    const char      *name;
    bt_chat_family_t family;
} families[] = {
    {"llama2", BT_CHAT_LLAMA2},
    {"llama3", BT_CHAT_LLAMA3},
    {"mistral", BT_CHAT_MISTRAL},
    {"chatml", BT_CHAT_CHATML},
    {"qwen2", BT_CHAT_CHATML},
};

bt_status_t bt_chat_family_parse(const char *name, bt_chat_family_t *family_p,
                                 char *err, size_t err_size)
{
    for (size_t i = 0; i < sizeof(families) / sizeof(*families); i++)
        if (strcmp(name, families[i].name) == 0) {
            *family_p = families[i].family;
            return BT_OK;
        }
    tok_err(err, err_size, "unknown chat template '%.40s' (known: llama2, "
            "llama3, mistral, chatml, qwen2)", name);
    return BT_ERR_NOT_FOUND;
}

const char *bt_chat_family_name(bt_chat_family_t family)
{
    switch (family) {
    case BT_CHAT_LLAMA2: return "llama2";
    case BT_CHAT_LLAMA3: return "llama3";
    case BT_CHAT_MISTRAL: return "mistral";
    case BT_CHAT_CHATML: return "chatml";
    }
    return "unknown";
}

static bool has_token(const bt_tok_t *tok, const char *s)
{
    return bt_tok_token_id(tok, s, strlen(s)) >= 0;
}

bt_status_t bt_chat_family_detect(const bt_tok_t *tok,
                                  bt_chat_family_t *family_p, char *err,
                                  size_t err_size)
{
    const char *t = bt_tok_chat_template_str(tok);

    if (t != NULL) {
        if (strstr(t, "<|start_header_id|>") != NULL) {
            *family_p = BT_CHAT_LLAMA3;
            return BT_OK;
        }
        if (strstr(t, "<|im_start|>") != NULL) {
            *family_p = BT_CHAT_CHATML;
            return BT_OK;
        }
        if (strstr(t, "[INST]") != NULL) {
            *family_p = strstr(t, "<<SYS>>") ? BT_CHAT_LLAMA2
                                             : BT_CHAT_MISTRAL;
            return BT_OK;
        }
    } else {
        if (has_token(tok, "<|start_header_id|>") &&
            has_token(tok, "<|eot_id|>")) {
            *family_p = BT_CHAT_LLAMA3;
            return BT_OK;
        }
        if (has_token(tok, "<|im_start|>") && has_token(tok, "<|im_end|>")) {
            *family_p = BT_CHAT_CHATML;
            return BT_OK;
        }
        if (has_token(tok, "[INST]")) {
            *family_p = BT_CHAT_MISTRAL;
            return BT_OK;
        }
    }
    tok_err(err, err_size, "cannot tell the chat template family from %s; "
            "name one of llama2, llama3, mistral, chatml",
            t ? "its chat_template" : "the tokenizer (no chat_template)");
    return BT_ERR_NOT_FOUND;
}

bt_status_t bt_chat_family_select(const bt_tok_t *tok, const char *name,
                                  bt_chat_family_t *family_p, char *err,
                                  size_t err_size)
{
    if (name != NULL && name[0] != 0)
        return bt_chat_family_parse(name, family_p, err, err_size);
    if (tok == NULL) {
        tok_err(err, err_size, "no tokenizer to detect the chat template");
        return BT_ERR_INVALID_ARG;
    }
    return bt_chat_family_detect(tok, family_p, err, err_size);
}

/* The string of token `id`, or `def` when the tokenizer has none. */
static const char *tok_text(const bt_tok_t *tok, int32_t id, const char *def,
                            size_t *len_p)
{
    const char *s = NULL;

    if (tok != NULL && id >= 0)
        s = bt_tok_token_str(tok, id, len_p);
    if (s == NULL) {
        s = def;
        *len_p = strlen(def);
    }
    return s;
}

/* Python str.strip() for ASCII whitespace: Jinja's trim / .strip(). */
static void strip(const char **s, size_t *len)
{
    while (*len > 0 && strchr(" \t\n\r\v\f", (*s)[0]) != NULL && (*s)[0]) {
        (*s)++;
        (*len)--;
    }
    while (*len > 0 && strchr(" \t\n\r\v\f", (*s)[*len - 1]) != NULL &&
           (*s)[*len - 1])
        (*len)--;
}

#define APPEND(b, s, n)                                                      \
    do {                                                                     \
        st = bt_buf_append((b), (s), (n));                                   \
        if (st != BT_OK)                                                     \
            goto out;                                                        \
    } while (0)
#define APPEND_STR(b, s) APPEND(b, s, strlen(s))

static bool is_role(const bt_chat_msg_t *m, const char *role)
{
    return strcmp(m->role, role) == 0;
}

/* Llama-2 and Mistral: optional leading system, then strictly alternating
 * user/assistant starting with user. */
static bt_status_t check_alternation(const bt_chat_msg_t *msgs, size_t n,
                                     size_t first, char *err,
                                     size_t err_size)
{
    for (size_t i = first; i < n; i++) {
        bool user_turn = (i - first) % 2 == 0;
        if (!is_role(&msgs[i], user_turn ? "user" : "assistant")) {
            tok_err(err, err_size, "message %zu: role '%.20s' where '%s' is "
                    "expected (roles must alternate user/assistant after an "
                    "optional system message)", i, msgs[i].role,
                    user_turn ? "user" : "assistant");
            return BT_ERR_INVALID_ARG;
        }
    }
    return BT_OK;
}

static bt_status_t render_inst(const bt_tok_t *tok, bool llama2,
                               const bt_chat_msg_t *msgs, size_t n,
                               bt_buf_t *out, char *err, size_t err_size)
{
    size_t first = n > 0 && is_role(&msgs[0], "system") ? 1 : 0;
    size_t bl, el;
    const char *bos = tok_text(tok, tok ? bt_tok_bos_id(tok) : -1, "<s>", &bl);
    const char *eos = tok_text(tok, tok ? bt_tok_eos_id(tok) : -1, "</s>",
                               &el);
    bt_buf_t content;
    bt_status_t st = check_alternation(msgs, n, first, err, err_size);

    if (st != BT_OK)
        return st;
    bt_buf_init(&content, out->max);
    if (!llama2)
        APPEND(out, bos, bl);
    for (size_t i = first; i < n; i++) {
        const char *c = msgs[i].content;
        size_t cl = strlen(c);
        bt_buf_reset(&content);
        if (i == first && first == 1) {
            if (llama2) {
                APPEND_STR(&content, "<<SYS>>\n");
                APPEND_STR(&content, msgs[0].content);
                APPEND_STR(&content, "\n<</SYS>>\n\n");
            } else {
                APPEND_STR(&content, msgs[0].content);
                APPEND_STR(&content, "\n\n");
            }
        }
        APPEND(&content, c, cl);
        c = content.data;
        cl = content.len;
        if (llama2)
            strip(&c, &cl);
        if (is_role(&msgs[i], "user")) {
            if (llama2)
                APPEND(out, bos, bl);
            APPEND_STR(out, "[INST] ");
            APPEND(out, c, cl);
            APPEND_STR(out, " [/INST]");
        } else {
            if (llama2)
                APPEND_STR(out, " ");
            APPEND(out, c, cl);
            if (llama2)
                APPEND_STR(out, " ");
            APPEND(out, eos, el);
        }
    }
out:
    bt_buf_cleanup(&content);
    return st;
}

static bt_status_t check_role(const bt_chat_msg_t *m, size_t i, char *err,
                              size_t err_size)
{
    size_t len = strlen(m->role);

    if (len == 0 || len > 64 || strpbrk(m->role, "<>|\n") != NULL) {
        tok_err(err, err_size, "message %zu: role '%.20s' is not a plain "
                "name", i, m->role);
        return BT_ERR_INVALID_ARG;
    }
    return BT_OK;
}

static bt_status_t render_llama3(const bt_tok_t *tok,
                                 const bt_chat_msg_t *msgs, size_t n,
                                 bool gen, bt_buf_t *out, char *err,
                                 size_t err_size)
{
    size_t bl;
    const char *bos = tok_text(tok, tok ? bt_tok_bos_id(tok) : -1,
                               "<|begin_of_text|>", &bl);
    bt_status_t st = BT_OK;

    for (size_t i = 0; i < n; i++)
        if ((st = check_role(&msgs[i], i, err, err_size)) != BT_OK)
            return st;
    APPEND(out, bos, bl);
    for (size_t i = 0; i < n; i++) {
        const char *c = msgs[i].content;
        size_t cl = strlen(c);
        strip(&c, &cl); /* the template's "| trim" */
        APPEND_STR(out, "<|start_header_id|>");
        APPEND_STR(out, msgs[i].role);
        APPEND_STR(out, "<|end_header_id|>\n\n");
        APPEND(out, c, cl);
        APPEND_STR(out, "<|eot_id|>");
    }
    if (gen)
        APPEND_STR(out, "<|start_header_id|>assistant<|end_header_id|>\n\n");
out:
    return st;
}

static bt_status_t render_chatml(const bt_chat_msg_t *msgs, size_t n,
                                 bool gen, bt_buf_t *out, char *err,
                                 size_t err_size)
{
    bt_status_t st = BT_OK;

    for (size_t i = 0; i < n; i++)
        if ((st = check_role(&msgs[i], i, err, err_size)) != BT_OK)
            return st;
    for (size_t i = 0; i < n; i++) {
        APPEND_STR(out, "<|im_start|>");
        APPEND_STR(out, msgs[i].role);
        APPEND_STR(out, "\n");
        APPEND_STR(out, msgs[i].content);
        APPEND_STR(out, "<|im_end|>\n");
    }
    if (gen)
        APPEND_STR(out, "<|im_start|>assistant\n");
out:
    return st;
}

bt_status_t bt_chat_render(const bt_tok_t *tok, bt_chat_family_t family,
                           const bt_chat_msg_t *msgs, size_t n_msgs,
                           bool add_generation_prompt, bt_buf_t *out,
                           char *err, size_t err_size)
{
    size_t len0 = out->len;
    bt_status_t st;

    for (size_t i = 0; i < n_msgs; i++) {
        if (msgs[i].role == NULL || msgs[i].content == NULL) {
            tok_err(err, err_size, "message %zu: role and content are "
                    "required", i);
            return BT_ERR_INVALID_ARG;
        }
        if (tok_utf8_validate(msgs[i].content, strlen(msgs[i].content)) !=
            strlen(msgs[i].content)) {
            tok_err(err, err_size, "message %zu: content is not valid "
                    "UTF-8", i);
            return BT_ERR_INVALID_ARG;
        }
    }
    switch (family) {
    case BT_CHAT_LLAMA2:
    case BT_CHAT_MISTRAL:
        /* both templates ignore add_generation_prompt: the prompt already
         * ends with [/INST] */
        st = render_inst(tok, family == BT_CHAT_LLAMA2, msgs, n_msgs, out,
                         err, err_size);
        break;
    case BT_CHAT_LLAMA3:
        st = render_llama3(tok, msgs, n_msgs, add_generation_prompt, out, err,
                           err_size);
        break;
    case BT_CHAT_CHATML:
        st = render_chatml(msgs, n_msgs, add_generation_prompt, out, err,
                           err_size);
        break;
    default:
        tok_err(err, err_size, "unknown chat family %d", (int)family);
        return BT_ERR_INVALID_ARG;
    }
    if (st != BT_OK) {
        out->len = len0;
        if (out->data != NULL)
            out->data[len0] = 0;
        if (st == BT_ERR_TOO_LARGE)
            tok_err(err, err_size, "chat prompt over %zu bytes", out->max);
    }
    return st;
}
