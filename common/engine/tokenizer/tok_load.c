/* Loading tokenizer.json + tokenizer_config.json into a bt_tok_t. */
#include "tok_int.h"

#include "base/json.h"
#include "base/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ADDED 65536
#define POOL_MAX  ((size_t)512 << 20)

static bt_status_t pool_add(bt_tok_t *tok, const char *s, size_t len,
                            tok_str_t *str_p)
{
    if (tok->pool.len + len > UINT32_MAX)
        return BT_ERR_TOO_LARGE;
    str_p->off = (uint32_t)tok->pool.len;
    str_p->len = (uint32_t)len;
    return bt_buf_append(&tok->pool, s, len);
}

static bt_status_t load_vocab(bt_tok_t *tok, const json_t *vocab, char *err,
                              size_t err_size)
{
    const char *key;
    json_t *val;
    int64_t max_id = -1;
    size_t n = json_object_size(vocab);
    bt_status_t st;

    json_object_foreach((json_t *)vocab, key, val) {
        json_int_t id = json_integer_value(val);
        if (!json_is_integer(val) || id < 0 || id >= BT_TOK_MAX_VOCAB) {
            tok_err(err, err_size, "model.vocab['%.40s']: expected an id in "
                    "[0, %d)", key, BT_TOK_MAX_VOCAB);
            return BT_ERR_INVALID_ARG;
        }
        if (id > max_id)
            max_id = id;
    }
    tok->n_model = (int32_t)(max_id + 1);
    tok->model_str = calloc((size_t)tok->n_model + 1, sizeof(tok_str_t));
    if (tok->model_str == NULL)
        return BT_ERR_NO_MEMORY;
    for (int32_t i = 0; i < tok->n_model; i++)
        tok->model_str[i].len = UINT32_MAX; /* unused id */
    st = tok_idmap_init(&tok->vocab, n);
    if (st != BT_OK)
        return st;
    json_object_foreach((json_t *)vocab, key, val) {
        int32_t id = (int32_t)json_integer_value(val);
        size_t len = strlen(key);
        if (len > BT_TOK_MAX_TOKEN_LEN) {
            tok_err(err, err_size, "model.vocab: token of %zu bytes, over "
                    "the limit of %d", len, BT_TOK_MAX_TOKEN_LEN);
            return BT_ERR_TOO_LARGE;
        }
        if (tok->model_str[id].len != UINT32_MAX) {
            tok_err(err, err_size, "model.vocab: id %d is used twice", id);
            return BT_ERR_INVALID_ARG;
        }
        st = pool_add(tok, key, len, &tok->model_str[id]);
        if (st != BT_OK)
            return st;
        tok_idmap_insert(&tok->vocab, tok->model_str, tok->pool.data, id);
    }
    return BT_OK;
}

static int32_t vocab_find(const bt_tok_t *tok, const char *s, size_t len)
{
    return tok_idmap_find(&tok->vocab, tok->model_str, tok->pool.data, s,
                          len);
}

static bt_status_t load_merges(bt_tok_t *tok, const json_t *merges,
                               char *err, size_t err_size)
{
    size_t n = json_array_size(merges);
    char buf[2 * BT_TOK_MAX_TOKEN_LEN];
    bt_status_t st = tok_pairmap_init(&tok->merges, n);

    if (st != BT_OK)
        return st;
    for (size_t i = 0; i < n; i++) {
        const json_t *m = json_array_get(merges, i);
        const char *a, *b;
        size_t la, lb;
        int32_t ia, ib, im;

        if (json_is_string(m)) {
            const char *s = json_string_value(m);
            const char *sp = strchr(s, ' ');
            if (sp == NULL || strchr(sp + 1, ' ') != NULL) {
                tok_err(err, err_size, "model.merges[%zu]: expected \"a b\" "
                        "with one space", i);
                return BT_ERR_INVALID_ARG;
            }
            a = s;
            la = (size_t)(sp - s);
            b = sp + 1;
            lb = json_string_length(m) - la - 1;
        } else if (json_is_array(m) && json_array_size(m) == 2 &&
                   json_is_string(json_array_get(m, 0)) &&
                   json_is_string(json_array_get(m, 1))) {
            a = json_string_value(json_array_get(m, 0));
            la = json_string_length(json_array_get(m, 0));
            b = json_string_value(json_array_get(m, 1));
            lb = json_string_length(json_array_get(m, 1));
        } else {
            tok_err(err, err_size, "model.merges[%zu]: expected \"a b\" or "
                    "[\"a\", \"b\"]", i);
            return BT_ERR_INVALID_ARG;
        }
        if (la + lb > sizeof(buf)) {
            tok_err(err, err_size, "model.merges[%zu]: too long", i);
            return BT_ERR_TOO_LARGE;
        }
        ia = vocab_find(tok, a, la);
        ib = vocab_find(tok, b, lb);
        memcpy(buf, a, la);
        memcpy(buf + la, b, lb);
        im = vocab_find(tok, buf, la + lb);
        if (ia < 0 || ib < 0 || im < 0) {
            tok_err(err, err_size, "model.merges[%zu]: token '%.*s' is not "
                    "in the vocab", i,
                    (int)(ia < 0 ? la : ib < 0 ? lb : la + lb),
                    ia < 0 ? a : ib < 0 ? b : buf);
            return BT_ERR_INVALID_ARG;
        }
        tok_pairmap_insert(&tok->merges, ia, ib, (uint32_t)i, im);
    }
    return BT_OK;
}

/* "" and null are the only accepted values of these BPE options. */
static bt_status_t check_empty(const json_t *model, const char *key,
                               char *err, size_t err_size)
{
    const json_t *v = json_object_get(model, key);

    if (v == NULL || json_is_null(v) ||
        (json_is_string(v) && json_string_length(v) == 0))
        return BT_OK;
    tok_err(err, err_size, "model.%s is not supported", key);
    return BT_ERR_UNSUPPORTED;
}

static bt_status_t load_model(bt_tok_t *tok, const json_t *root, char *err,
                              size_t err_size)
{
    json_t *model, *vocab, *merges;
    const char *type = "BPE", *unk = NULL;
    const json_t *dropout;
    bt_status_t st;
    char name[8];

    st = bt_json_get_object(root, "model", true, &model, err, err_size);
    if (st != BT_OK)
        return st;
    st = bt_json_get_string(model, "type", false, &type, err, err_size);
    if (st != BT_OK && st != BT_ERR_NOT_FOUND)
        return st;
    if (strcmp(type, "BPE") != 0) {
        tok_err(err, err_size, "model type '%s' is not supported", type);
        return BT_ERR_UNSUPPORTED;
    }
    dropout = json_object_get(model, "dropout");
    if (dropout != NULL && !json_is_null(dropout) &&
        !(json_is_number(dropout) && json_number_value(dropout) == 0.0)) {
        tok_err(err, err_size, "model.dropout is not supported");
        return BT_ERR_UNSUPPORTED;
    }
    st = check_empty(model, "continuing_subword_prefix", err, err_size);
    if (st == BT_OK)
        st = check_empty(model, "end_of_word_suffix", err, err_size);
    if (st != BT_OK)
        return st;
    if ((st = bt_json_get_object(model, "vocab", true, &vocab, err,
                                 err_size)) != BT_OK ||
        (st = bt_json_get_array(model, "merges", true, &merges, err,
                                err_size)) != BT_OK)
        goto err_field;
#define OPT_BOOL(k, f)                                                       \
    do {                                                                     \
        st = bt_json_get_bool(model, k, false, &tok->f, err, err_size);      \
        if (st != BT_OK && st != BT_ERR_NOT_FOUND)                           \
            goto err_field;                                                  \
    } while (0)
    OPT_BOOL("ignore_merges", ignore_merges);
    OPT_BOOL("byte_fallback", byte_fallback);
    OPT_BOOL("fuse_unk", fuse_unk);
#undef OPT_BOOL
    if (json_is_string(json_object_get(model, "unk_token")))
        unk = json_string_value(json_object_get(model, "unk_token"));
    else if (!json_is_null(json_object_get(model, "unk_token")) &&
             json_object_get(model, "unk_token") != NULL) {
        tok_err(err, err_size, "model.unk_token: expected a string or null");
        return BT_ERR_INVALID_ARG;
    }
    st = load_vocab(tok, vocab, err, err_size);
    if (st == BT_OK)
        st = load_merges(tok, merges, err, err_size);
    if (st != BT_OK)
        return st;
    tok->unk_id = -1;
    if (unk != NULL) {
        tok->unk_id = vocab_find(tok, unk, strlen(unk));
        if (tok->unk_id < 0) {
            tok_err(err, err_size, "model.unk_token '%.40s' is not in the "
                    "vocab", unk);
            return BT_ERR_INVALID_ARG;
        }
    }
    for (int b = 0; b < 256; b++) {
        char c[4];
        size_t n = tok_utf8_encode(tok_byte_to_cp[b], c);
        tok->byte_ids[b] = vocab_find(tok, c, n);
        snprintf(name, sizeof(name), "<0x%02X>", b);
        tok->fallback_ids[b] = vocab_find(tok, name, 6);
    }
    tok->small_cp_ids = malloc(0x800 * sizeof(int32_t));
    if (tok->small_cp_ids == NULL)
        return BT_ERR_NO_MEMORY;
    for (uint32_t cp = 0; cp < 0x800; cp++) {
        char c[4];
        size_t n = tok_utf8_encode(cp, c);
        tok->small_cp_ids[cp] = vocab_find(tok, c, n);
    }
    return BT_OK;
err_field:
    {
        char inner[BT_TOK_ERR_SIZE];
        snprintf(inner, sizeof(inner), "%s", err);
        tok_err(err, err_size, "model: %s", inner);
    }
    return st;
}

static bt_status_t load_added(bt_tok_t *tok, const json_t *root, char *err,
                              size_t err_size)
{
    const json_t *arr = json_object_get(root, "added_tokens");
    size_t n;

    if (arr == NULL || json_is_null(arr))
        return BT_OK;
    if (!json_is_array(arr) || json_array_size(arr) > MAX_ADDED) {
        tok_err(err, err_size, "added_tokens: expected an array of at most "
                "%d tokens", MAX_ADDED);
        return BT_ERR_INVALID_ARG;
    }
    n = json_array_size(arr);
    tok->added = calloc(n + 1, sizeof(*tok->added));
    if (tok->added == NULL)
        return BT_ERR_NO_MEMORY;
    for (size_t i = 0; i < n; i++) {
        const json_t *a = json_array_get(arr, i);
        tok_added_t *t = &tok->added[i];
        const char *content;
        int64_t id;
        bt_status_t st;

        st = bt_json_get_int(a, "id", true, 0, BT_TOK_MAX_VOCAB - 1, &id,
                             err, err_size);
        if (st == BT_OK)
            st = bt_json_get_string(a, "content", true, &content, err,
                                    err_size);
#define OPT_BOOL(k, def)                                                     \
        if (st == BT_OK) {                                                   \
            t->k = def;                                                      \
            st = bt_json_get_bool(a, #k, false, &t->k, err, err_size);       \
            if (st == BT_ERR_NOT_FOUND)                                      \
                st = BT_OK;                                                  \
        }
        OPT_BOOL(special, false)
        OPT_BOOL(lstrip, false)
        OPT_BOOL(rstrip, false)
        OPT_BOOL(single_word, false)
        OPT_BOOL(normalized, !t->special)
#undef OPT_BOOL
        if (st == BT_OK && (strlen(content) == 0 ||
                            strlen(content) > BT_TOK_MAX_TOKEN_LEN)) {
            tok_err(err, err_size, "content is empty or over %d bytes",
                    BT_TOK_MAX_TOKEN_LEN);
            st = BT_ERR_INVALID_ARG;
        }
        if (st != BT_OK) {
            char inner[BT_TOK_ERR_SIZE];
            snprintf(inner, sizeof(inner), "%s", err);
            tok_err(err, err_size, "added_tokens[%zu]: %s", i, inner);
            return st;
        }
        t->id = (int32_t)id;
        st = pool_add(tok, content, strlen(content), &t->str);
        if (st != BT_OK)
            return st;
        if (t->normalized)
            tok->any_normalized_added = true;
        tok->n_added++;
    }
    return BT_OK;
}

/* TemplateProcessing "single": special tokens around sequence A. */
static bt_status_t load_template(bt_tok_t *tok, const json_t *post,
                                 char *err, size_t err_size)
{
    const json_t *single = json_object_get(post, "single");
    const json_t *specials = json_object_get(post, "special_tokens");
    bool seen_a = false;

    if (!json_is_array(single)) {
        tok_err(err, err_size, "post_processor TemplateProcessing: field "
                "'single' missing or not an array");
        return BT_ERR_INVALID_ARG;
    }
    for (size_t i = 0; i < json_array_size(single); i++) {
        const json_t *item = json_array_get(single, i);
        const json_t *sp = json_object_get(item, "SpecialToken");
        const json_t *seq = json_object_get(item, "Sequence");
        if (json_is_object(seq)) {
            if (seen_a || !json_is_string(json_object_get(seq, "id")) ||
                strcmp(json_string_value(json_object_get(seq, "id")), "A")) {
                tok_err(err, err_size, "post_processor TemplateProcessing: "
                        "single must hold sequence A once");
                return BT_ERR_UNSUPPORTED;
            }
            seen_a = true;
            continue;
        }
        const char *name = json_string_value(json_object_get(sp, "id"));
        const json_t *ids = json_object_get(
            json_object_get(specials, name ? name : ""), "ids");
        if (name == NULL || !json_is_array(ids)) {
            tok_err(err, err_size, "post_processor TemplateProcessing: "
                    "single[%zu] names no known special token", i);
            return BT_ERR_INVALID_ARG;
        }
        for (size_t k = 0; k < json_array_size(ids); k++) {
            json_int_t id = json_integer_value(json_array_get(ids, k));
            int32_t *dst = seen_a ? tok->post_post : tok->post_pre;
            size_t *n = seen_a ? &tok->n_post_post : &tok->n_post_pre;
            if (!json_is_integer(json_array_get(ids, k)) || id < 0 ||
                id >= BT_TOK_MAX_VOCAB || *n >= 4) {
                tok_err(err, err_size, "post_processor TemplateProcessing: "
                        "bad or too many ids for '%.40s'", name);
                return BT_ERR_INVALID_ARG;
            }
            dst[(*n)++] = (int32_t)id;
        }
    }
    if (!seen_a) {
        tok_err(err, err_size, "post_processor TemplateProcessing: single "
                "has no sequence A");
        return BT_ERR_INVALID_ARG;
    }
    return BT_OK;
}

static bt_status_t load_post(bt_tok_t *tok, const json_t *post,
                             bool *template_p, int depth, char *err,
                             size_t err_size)
{
    const char *type;

    if (post == NULL || json_is_null(post))
        return BT_OK;
    type = json_string_value(json_object_get(post, "type"));
    if (type == NULL) {
        tok_err(err, err_size, "post_processor: field 'type' missing or not "
                "a string");
        return BT_ERR_INVALID_ARG;
    }
    if (strcmp(type, "ByteLevel") == 0)
        return BT_OK; /* offsets only */
    if (strcmp(type, "TemplateProcessing") == 0) {
        if (*template_p) {
            tok_err(err, err_size, "post_processor: two TemplateProcessing");
            return BT_ERR_UNSUPPORTED;
        }
        *template_p = true;
        return load_template(tok, post, err, err_size);
    }
    if (strcmp(type, "Sequence") == 0 && depth < 4) {
        const json_t *arr = json_object_get(post, "processors");
        if (!json_is_array(arr)) {
            tok_err(err, err_size, "post_processor Sequence: field "
                    "'processors' missing or not an array");
            return BT_ERR_INVALID_ARG;
        }
        for (size_t i = 0; i < json_array_size(arr); i++) {
            bt_status_t st = load_post(tok, json_array_get(arr, i),
                                       template_p, depth + 1, err, err_size);
            if (st != BT_OK)
                return st;
        }
        return BT_OK;
    }
    tok_err(err, err_size, "post_processor type '%s' is not supported", type);
    return BT_ERR_UNSUPPORTED;
}

/* bos_token / eos_token: a string, {"content": ...} or null. */
static bt_status_t config_token(const bt_tok_t *tok, const json_t *cfg,
                                const char *key, int32_t *id_p, char *err,
                                size_t err_size)
{
    const json_t *v = json_object_get(cfg, key);
    const char *s;

    if (json_is_object(v))
        v = json_object_get(v, "content");
    if (v == NULL || json_is_null(v))
        return BT_OK;
    if (!json_is_string(v)) {
        tok_err(err, err_size, "tokenizer_config.json: field '%s': expected "
                "a string", key);
        return BT_ERR_INVALID_ARG;
    }
    s = json_string_value(v);
    *id_p = bt_tok_token_id(tok, s, json_string_length(v));
    if (*id_p < 0) {
        tok_err(err, err_size, "tokenizer_config.json: %s '%.40s' is not a "
                "token", key, s);
        return BT_ERR_INVALID_ARG;
    }
    return BT_OK;
}

static bt_status_t load_config(bt_tok_t *tok, const char *config,
                               size_t config_len, bool have_template,
                               char *err, size_t err_size)
{
    json_t *cfg = NULL, *tmpl;
    bool add_bos = false, add_eos = false;
    bt_status_t st;
    char inner[BT_TOK_ERR_SIZE];

    if (config == NULL)
        return BT_OK;
    st = bt_json_parse(config, config_len, BT_TOK_MAX_CONFIG_JSON, &cfg,
                       inner, sizeof(inner));
    if (st != BT_OK) {
        tok_err(err, err_size, "tokenizer_config.json: %s", inner);
        return st;
    }
    if (!json_is_object(cfg)) {
        tok_err(err, err_size, "tokenizer_config.json: expected an object");
        st = BT_ERR_INVALID_ARG;
        goto out;
    }
    st = config_token(tok, cfg, "bos_token", &tok->bos_id, err, err_size);
    if (st == BT_OK)
        st = config_token(tok, cfg, "eos_token", &tok->eos_id, err,
                          err_size);
    if (st != BT_OK)
        goto out;
    if (json_is_boolean(json_object_get(cfg, "add_bos_token")))
        add_bos = json_is_true(json_object_get(cfg, "add_bos_token"));
    if (json_is_boolean(json_object_get(cfg, "add_eos_token")))
        add_eos = json_is_true(json_object_get(cfg, "add_eos_token"));
    if (!have_template) {
        if (add_bos && tok->bos_id >= 0)
            tok->post_pre[tok->n_post_pre++] = tok->bos_id;
        if (add_eos && tok->eos_id >= 0)
            tok->post_post[tok->n_post_post++] = tok->eos_id;
    }
    tmpl = json_object_get(cfg, "chat_template");
    if (json_is_array(tmpl)) {
        /* [{"name": "default", "template": ...}, ...] */
        json_t *pick = json_array_get(tmpl, 0);
        for (size_t i = 0; i < json_array_size(tmpl); i++) {
            const char *nm = json_string_value(
                json_object_get(json_array_get(tmpl, i), "name"));
            if (nm != NULL && strcmp(nm, "default") == 0)
                pick = json_array_get(tmpl, i);
        }
        tmpl = json_object_get(pick, "template");
    }
    if (json_is_string(tmpl)) {
        tok->chat_template = strdup(json_string_value(tmpl));
        if (tok->chat_template == NULL)
            st = BT_ERR_NO_MEMORY;
    }
out:
    json_decref(cfg);
    return st;
}

bt_status_t bt_tok_load_mem(const char *json, size_t json_len,
                            const char *config, size_t config_len,
                            bt_tok_t **tok_p, char *err, size_t err_size)
{
    bt_tok_t *tok;
    json_t *root = NULL;
    const json_t *v;
    bool have_template = false;
    bt_status_t st;
    char inner[BT_TOK_ERR_SIZE];

    tok = calloc(1, sizeof(*tok));
    if (tok == NULL)
        return BT_ERR_NO_MEMORY;
    bt_buf_init(&tok->pool, POOL_MAX);
    tok->bos_id = tok->eos_id = tok->unk_id = -1;
    st = bt_json_parse(json, json_len, BT_TOK_MAX_JSON, &root, inner,
                       sizeof(inner));
    if (st != BT_OK) {
        tok_err(err, err_size, "tokenizer.json: %s", inner);
        goto err_free;
    }
    if (!json_is_object(root)) {
        tok_err(err, err_size, "tokenizer.json: expected an object");
        st = BT_ERR_INVALID_ARG;
        goto err_free;
    }
    inner[0] = 0;
    if (json_len > (1u << 20))
        bt_buf_reserve(&tok->pool, json_len / 2);
    st = load_model(tok, root, inner, sizeof(inner));
    if (st == BT_OK)
        st = load_added(tok, root, inner, sizeof(inner));
    if (st != BT_OK)
        goto err_msg;
    tok->n_ids = tok->n_model;
    for (size_t i = 0; i < tok->n_added; i++)
        if (tok->added[i].id >= tok->n_ids)
            tok->n_ids = tok->added[i].id + 1;
    tok->added_index = malloc(((size_t)tok->n_ids + 1) * sizeof(int32_t));
    if (tok->added_index == NULL) {
        st = BT_ERR_NO_MEMORY;
        goto err_msg;
    }
    for (int32_t i = 0; i < tok->n_ids; i++)
        tok->added_index[i] = -1;
    for (size_t i = 0; i < tok->n_added; i++) {
        if (tok->added_index[tok->added[i].id] >= 0) {
            tok_err(inner, sizeof(inner), "added_tokens[%zu]: id %d is "
                    "used twice", i, tok->added[i].id);
            st = BT_ERR_INVALID_ARG;
            goto err_msg;
        }
        tok->added_index[tok->added[i].id] = (int32_t)i;
    }

    st = tok_added_index_build(tok);
    if (st != BT_OK)
        goto err_msg;
    v = json_object_get(root, "normalizer");
    if (v != NULL && !json_is_null(v)) {
        tok->normalizer = calloc(1, sizeof(*tok->normalizer));
        st = tok->normalizer ? tok_norm_parse(v, tok->normalizer, inner,
                                              sizeof(inner))
                             : BT_ERR_NO_MEMORY;
        if (st != BT_OK)
            goto err_msg;
    }
    v = json_object_get(root, "pre_tokenizer");
    if (v != NULL && !json_is_null(v)) {
        tok->pre = calloc(1, sizeof(*tok->pre));
        st = tok->pre ? tok_pre_parse(v, tok->pre, inner, sizeof(inner))
                      : BT_ERR_NO_MEMORY;
        if (st != BT_OK)
            goto err_msg;
    }
    v = json_object_get(root, "decoder");
    if (v != NULL && !json_is_null(v)) {
        tok->decoder = calloc(1, sizeof(*tok->decoder));
        st = tok->decoder ? tok_dec_parse(v, tok->decoder, inner,
                                          sizeof(inner))
                          : BT_ERR_NO_MEMORY;
        if (st != BT_OK)
            goto err_msg;
    }
    st = load_post(tok, json_object_get(root, "post_processor"),
                   &have_template, 0, inner, sizeof(inner));
    if (st != BT_OK)
        goto err_msg;
    for (size_t i = 0; i < tok->n_post_pre + tok->n_post_post; i++) {
        int32_t id = i < tok->n_post_pre ? tok->post_pre[i]
                                         : tok->post_post[i - tok->n_post_pre];
        if (id >= tok->n_ids) {
            tok_err(inner, sizeof(inner), "post_processor: id %d is not in "
                    "the vocab", id);
            st = BT_ERR_INVALID_ARG;
            goto err_msg;
        }
    }
    json_decref(root);
    root = NULL;
    /* The config's errors carry their own file name. */
    st = load_config(tok, config, config_len, have_template, err, err_size);
    if (st != BT_OK)
        goto err_free;
    *tok_p = tok;
    return BT_OK;

err_msg:
    if (st == BT_ERR_NO_MEMORY && inner[0] == 0)
        snprintf(inner, sizeof(inner), "out of memory");
    tok_err(err, err_size, "tokenizer.json: %s", inner);
err_free:
    json_decref(root);
    bt_tok_destroy(tok);
    return st;
}

static bt_status_t read_file(const char *path, size_t max, char **data_p,
                             size_t *len_p, char *err, size_t err_size)
{
    FILE *f = fopen(path, "rb");
    char *data = NULL;
    size_t cap = 0, len = 0;

    if (f == NULL) {
        tok_err(err, err_size, "cannot open %s: %s", path, strerror(errno));
        return BT_ERR_NOT_FOUND;
    }
    for (;;) {
        if (len == cap) {
            char *n;
            cap = cap ? 2 * cap : (1u << 16);
            if (cap > max + 1)
                cap = max + 1;
            n = len < cap ? realloc(data, cap) : NULL;
            if (n == NULL) {
                free(data);
                fclose(f);
                tok_err(err, err_size, len >= max ? "%s is over %zu bytes"
                                                  : "out of memory reading "
                                                    "%s",
                        path, max);
                return len >= max ? BT_ERR_TOO_LARGE : BT_ERR_NO_MEMORY;
            }
            data = n;
        }
        size_t got = fread(data + len, 1, cap - len, f);
        if (got == 0)
            break;
        len += got;
    }
    if (ferror(f)) {
        free(data);
        fclose(f);
        tok_err(err, err_size, "cannot read %s", path);
        return BT_ERR_IO;
    }
    fclose(f);
    *data_p = data;
    *len_p = len;
    return BT_OK;
}

bt_status_t bt_tok_load_dir(const char *dir, bt_tok_t **tok_p, char *err,
                            size_t err_size)
{
    char path[4096];
    char *json = NULL, *config = NULL;
    size_t json_len = 0, config_len = 0;
    bt_status_t st;

    snprintf(path, sizeof(path), "%s/tokenizer.json", dir);
    st = read_file(path, BT_TOK_MAX_JSON, &json, &json_len, err, err_size);
    if (st != BT_OK)
        goto out;
    snprintf(path, sizeof(path), "%s/tokenizer_config.json", dir);
    st = read_file(path, BT_TOK_MAX_CONFIG_JSON, &config, &config_len, err,
                   err_size);
    if (st == BT_ERR_NOT_FOUND) {
        config = NULL;
        config_len = 0;
    } else if (st != BT_OK) {
        goto out;
    }
    st = bt_tok_load_mem(json, json_len, config, config_len, tok_p, err,
                         err_size);
out:
    if (st != BT_OK)
        bt_error("tokenizer %s: %s", dir, err ? err : "load failed");
    free(json);
    free(config);
    return st;
}

void bt_tok_destroy(bt_tok_t *tok)
{
    if (tok == NULL)
        return;
    bt_buf_cleanup(&tok->pool);
    free(tok->model_str);
    tok_idmap_cleanup(&tok->vocab);
    tok_pairmap_cleanup(&tok->merges);
    free(tok->small_cp_ids);
    free(tok->added);
    free(tok->added_index);
    free(tok->added_order);
    tok_norm_cleanup(tok->normalizer);
    free(tok->normalizer);
    tok_pre_cleanup(tok->pre);
    free(tok->pre);
    tok_dec_cleanup(tok->decoder);
    free(tok->decoder);
    free(tok->chat_template);
    free(tok);
}

int32_t bt_tok_vocab_size(const bt_tok_t *tok)
{
    return tok->n_ids;
}

int32_t bt_tok_bos_id(const bt_tok_t *tok)
{
    return tok->bos_id;
}

int32_t bt_tok_eos_id(const bt_tok_t *tok)
{
    return tok->eos_id;
}

int32_t bt_tok_token_id(const bt_tok_t *tok, const char *token, size_t len)
{
    for (size_t i = 0; i < tok->n_added; i++)
        if (tok->added[i].str.len == len &&
            memcmp(tok->pool.data + tok->added[i].str.off, token, len) == 0)
            return tok->added[i].id;
    return vocab_find(tok, token, len);
}

const char *bt_tok_token_str(const bt_tok_t *tok, int32_t id, size_t *len_p)
{
    const tok_str_t *s;

    if (id < 0 || id >= tok->n_ids)
        return NULL;
    if (tok->added_index[id] >= 0)
        s = &tok->added[tok->added_index[id]].str;
    else if (id < tok->n_model && tok->model_str[id].len != UINT32_MAX)
        s = &tok->model_str[id];
    else
        return NULL;
    *len_p = s->len;
    return tok->pool.data + s->off;
}

bool bt_tok_is_special(const bt_tok_t *tok, int32_t id)
{
    return id >= 0 && id < tok->n_ids && tok->added_index[id] >= 0 &&
           tok->added[tok->added_index[id]].special;
}

const char *bt_tok_chat_template_str(const bt_tok_t *tok)
{
    return tok->chat_template;
}
