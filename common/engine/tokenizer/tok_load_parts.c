/* tokenizer.json normalizer, pre_tokenizer and decoder objects -> trees of
 * tok_norm_t / tok_pre_t / tok_dec_t. A type we do not implement is an
 * error naming it: a silent approximation would mis-tokenize. */
#include "tok_int.h"

#include "base/json.h"

#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 16
#define MAX_CHILDREN 64

static bt_status_t get_type(const json_t *obj, const char *what,
                            const char **type_p, char *err, size_t err_size)
{
    const json_t *t;

    if (!json_is_object(obj)) {
        tok_err(err, err_size, "%s: expected an object, got %s", what,
                bt_json_type_name(obj));
        return BT_ERR_INVALID_ARG;
    }
    t = json_object_get(obj, "type");
    if (!json_is_string(t)) {
        tok_err(err, err_size, "%s: field 'type' missing or not a string",
                what);
        return BT_ERR_INVALID_ARG;
    }
    *type_p = json_string_value(t);
    return BT_OK;
}

static bt_status_t unsupported(const char *what, const char *type, char *err,
                               size_t err_size)
{
    tok_err(err, err_size, "%s type '%s' is not supported", what, type);
    return BT_ERR_UNSUPPORTED;
}

static bt_status_t field_err(bt_status_t st, const char *what,
                             const char *type, char *err, size_t err_size)
{
    char inner[BT_TOK_ERR_SIZE];

    snprintf(inner, sizeof(inner), "%s", err);
    tok_err(err, err_size, "%s %s: %s", what, type, inner);
    return st;
}

/* Optional boolean with a default. */
static bt_status_t opt_bool(const json_t *obj, const char *key, bool def,
                            bool *v_p, char *err, size_t err_size)
{
    bt_status_t st;

    *v_p = def;
    st = bt_json_get_bool(obj, key, false, v_p, err, err_size);
    return st == BT_ERR_NOT_FOUND ? BT_OK : st;
}

/* A single code point string such as Metaspace's "▁". */
static bt_status_t get_char(const json_t *obj, const char *key, uint32_t def,
                            uint32_t *cp_p, char *err, size_t err_size)
{
    const char *s = NULL;
    bt_status_t st = bt_json_get_string(obj, key, false, &s, err, err_size);
    size_t len;

    if (st == BT_ERR_NOT_FOUND) {
        *cp_p = def;
        return BT_OK;
    }
    if (st != BT_OK)
        return st;
    len = strlen(s);
    if (len == 0 || tok_utf8_char_len((const unsigned char *)s, len) != len) {
        tok_err(err, err_size, "field '%s': expected one character", key);
        return BT_ERR_INVALID_ARG;
    }
    tok_utf8_decode(s, len, cp_p);
    return BT_OK;
}

/* Split/Replace "pattern": {"String": ...} or {"Regex": ...}. */
static bt_status_t get_pattern(const json_t *obj, tok_regex_t *re,
                               bool allow_regex, char *err, size_t err_size)
{
    const json_t *pat = json_object_get(obj, "pattern");
    const json_t *s = json_object_get(pat, "String");
    const json_t *r = json_object_get(pat, "Regex");

    if (json_is_string(s))
        return tok_regex_compile(re, json_string_value(s),
                                 json_string_length(s), true, err, err_size);
    if (json_is_string(r)) {
        if (!allow_regex) {
            tok_err(err, err_size, "a Regex pattern is not supported here");
            return BT_ERR_UNSUPPORTED;
        }
        return tok_regex_compile(re, json_string_value(r),
                                 json_string_length(r), false, err, err_size);
    }
    tok_err(err, err_size,
            "field 'pattern': expected {\"String\": ...} or {\"Regex\": ...}");
    return BT_ERR_INVALID_ARG;
}

static bt_status_t get_prepend(const json_t *obj, tok_prepend_t *p_p,
                               char *err, size_t err_size)
{
    const char *scheme = NULL;
    bool add = true;
    bt_status_t st;

    st = bt_json_get_string(obj, "prepend_scheme", false, &scheme, err,
                            err_size);
    if (st == BT_OK) {
        if (strcmp(scheme, "always") == 0)
            *p_p = TOK_PREPEND_ALWAYS;
        else if (strcmp(scheme, "first") == 0)
            *p_p = TOK_PREPEND_FIRST;
        else if (strcmp(scheme, "never") == 0)
            *p_p = TOK_PREPEND_NEVER;
        else {
            tok_err(err, err_size, "prepend_scheme '%s' is not supported",
                    scheme);
            return BT_ERR_UNSUPPORTED;
        }
        return BT_OK;
    }
    if (st != BT_ERR_NOT_FOUND)
        return st;
    /* older files: add_prefix_space */
    st = opt_bool(obj, "add_prefix_space", true, &add, err, err_size);
    *p_p = add ? TOK_PREPEND_ALWAYS : TOK_PREPEND_NEVER;
    return st;
}

static bt_status_t get_children(const json_t *obj, const char *key,
                                const char *what, json_t **arr_p,
                                size_t *n_p, char *err, size_t err_size)
{
    json_t *arr;
    bt_status_t st = bt_json_get_array(obj, key, true, &arr, err, err_size);

    if (st != BT_OK)
        return st;
    if (json_array_size(arr) > MAX_CHILDREN) {
        tok_err(err, err_size, "%s Sequence: more than %d steps", what,
                MAX_CHILDREN);
        return BT_ERR_TOO_LARGE;
    }
    *arr_p = arr;
    *n_p = json_array_size(arr);
    return BT_OK;
}

/* ---- normalizers ---- */

static bt_status_t norm_parse(const json_t *obj, tok_norm_t *n, int depth,
                              char *err, size_t err_size)
{
    const char *type;
    bt_status_t st = get_type(obj, "normalizer", &type, err, err_size);

    memset(n, 0, sizeof(*n));
    if (st != BT_OK)
        return st;
    if (depth > MAX_DEPTH) {
        tok_err(err, err_size, "normalizer: nested too deeply");
        return BT_ERR_TOO_LARGE;
    }
    if (strcmp(type, "Sequence") == 0) {
        json_t *arr;
        n->type = TOK_NORM_SEQUENCE;
        st = get_children(obj, "normalizers", "normalizer", &arr,
                          &n->n_children, err, err_size);
        if (st != BT_OK)
            return field_err(st, "normalizer", type, err, err_size);
        n->children = calloc(n->n_children + 1, sizeof(*n->children));
        if (n->children == NULL)
            return BT_ERR_NO_MEMORY;
        for (size_t i = 0; i < n->n_children; i++) {
            st = norm_parse(json_array_get(arr, i), &n->children[i],
                            depth + 1, err, err_size);
            if (st != BT_OK)
                return st;
        }
        return BT_OK;
    }
    if (strcmp(type, "Prepend") == 0 || strcmp(type, "Replace") == 0) {
        const char *key = type[0] == 'P' ? "prepend" : "content";
        const char *s;
        n->type = type[0] == 'P' ? TOK_NORM_PREPEND : TOK_NORM_REPLACE;
        st = bt_json_get_string(obj, key, true, &s, err, err_size);
        if (st == BT_OK && n->type == TOK_NORM_REPLACE)
            st = get_pattern(obj, &n->re, true, err, err_size);
        if (st != BT_OK)
            return field_err(st, "normalizer", type, err, err_size);
        n->str_len = strlen(s);
        n->str = strdup(s);
        return n->str ? BT_OK : BT_ERR_NO_MEMORY;
    }
    if (strcmp(type, "NFC") == 0) {
        n->type = TOK_NORM_NFC;
        return BT_OK;
    }
    return unsupported("normalizer", type, err, err_size);
}

bt_status_t tok_norm_parse(const void *json, tok_norm_t *norm, char *err,
                           size_t err_size)
{
    return norm_parse(json, norm, 0, err, err_size);
}

void tok_norm_cleanup(tok_norm_t *norm)
{
    if (norm == NULL)
        return;
    for (size_t i = 0; i < norm->n_children; i++)
        tok_norm_cleanup(&norm->children[i]);
    free(norm->children);
    free(norm->str);
    tok_regex_cleanup(&norm->re);
    memset(norm, 0, sizeof(*norm));
}

/* ---- pre-tokenizers ---- */

static bt_status_t pre_parse(const json_t *obj, tok_pre_t *p, int depth,
                             char *err, size_t err_size)
{
    const char *type;
    bt_status_t st = get_type(obj, "pre_tokenizer", &type, err, err_size);

    memset(p, 0, sizeof(*p));
    if (st != BT_OK)
        return st;
    if (depth > MAX_DEPTH) {
        tok_err(err, err_size, "pre_tokenizer: nested too deeply");
        return BT_ERR_TOO_LARGE;
    }
    if (strcmp(type, "Sequence") == 0) {
        json_t *arr;
        p->type = TOK_PRE_SEQUENCE;
        st = get_children(obj, "pretokenizers", "pre_tokenizer", &arr,
                          &p->n_children, err, err_size);
        if (st != BT_OK)
            return field_err(st, "pre_tokenizer", type, err, err_size);
        p->children = calloc(p->n_children + 1, sizeof(*p->children));
        if (p->children == NULL)
            return BT_ERR_NO_MEMORY;
        for (size_t i = 0; i < p->n_children; i++) {
            st = pre_parse(json_array_get(arr, i), &p->children[i],
                           depth + 1, err, err_size);
            if (st != BT_OK)
                return st;
        }
        return BT_OK;
    }
    if (strcmp(type, "Split") == 0) {
        static const char *const names[] = {
            "Removed", "Isolated", "MergedWithPrevious", "MergedWithNext",
            "Contiguous",
        };
        const char *behavior;
        size_t i;
        p->type = TOK_PRE_SPLIT;
        st = bt_json_get_string(obj, "behavior", true, &behavior, err,
                                err_size);
        if (st == BT_OK)
            st = opt_bool(obj, "invert", false, &p->invert, err, err_size);
        if (st == BT_OK) {
            for (i = 0; i < 5 && strcmp(behavior, names[i]) != 0; i++)
                ;
            if (i == 5) {
                tok_err(err, err_size, "behavior '%s' is not supported",
                        behavior);
                st = BT_ERR_UNSUPPORTED;
            }
            p->behavior = (tok_split_behavior_t)i;
        }
        if (st == BT_OK) {
            st = get_pattern(obj, &p->re, true, err, err_size);
            p->has_re = st == BT_OK;
        }
        return st == BT_OK ? st
                           : field_err(st, "pre_tokenizer", type, err,
                                       err_size);
    }
    if (strcmp(type, "ByteLevel") == 0) {
        bool use_regex;
        p->type = TOK_PRE_BYTELEVEL;
        st = opt_bool(obj, "add_prefix_space", true, &p->add_prefix_space,
                      err, err_size);
        if (st == BT_OK)
            st = opt_bool(obj, "use_regex", true, &use_regex, err, err_size);
        if (st == BT_OK && use_regex) {
            st = tok_regex_compile(&p->re, tok_re_gpt2, strlen(tok_re_gpt2),
                                   false, err, err_size);
            p->has_re = st == BT_OK;
        }
        return st == BT_OK ? st
                           : field_err(st, "pre_tokenizer", type, err,
                                       err_size);
    }
    if (strcmp(type, "Metaspace") == 0) {
        p->type = TOK_PRE_METASPACE;
        st = get_char(obj, "replacement", 0x2581, &p->replacement, err,
                      err_size);
        if (st == BT_OK)
            st = get_prepend(obj, &p->prepend, err, err_size);
        if (st == BT_OK)
            st = opt_bool(obj, "split", true, &p->split, err, err_size);
        return st == BT_OK ? st
                           : field_err(st, "pre_tokenizer", type, err,
                                       err_size);
    }
    return unsupported("pre_tokenizer", type, err, err_size);
}

bt_status_t tok_pre_parse(const void *json, tok_pre_t *pre, char *err,
                          size_t err_size)
{
    return pre_parse(json, pre, 0, err, err_size);
}

void tok_pre_cleanup(tok_pre_t *pre)
{
    if (pre == NULL)
        return;
    for (size_t i = 0; i < pre->n_children; i++)
        tok_pre_cleanup(&pre->children[i]);
    free(pre->children);
    if (pre->has_re)
        tok_regex_cleanup(&pre->re);
    memset(pre, 0, sizeof(*pre));
}

/* ---- decoders ---- */

static bt_status_t dec_parse(const json_t *obj, tok_dec_t *d, int depth,
                             char *err, size_t err_size)
{
    const char *type;
    bt_status_t st = get_type(obj, "decoder", &type, err, err_size);

    memset(d, 0, sizeof(*d));
    if (st != BT_OK)
        return st;
    if (depth > MAX_DEPTH) {
        tok_err(err, err_size, "decoder: nested too deeply");
        return BT_ERR_TOO_LARGE;
    }
    if (strcmp(type, "Sequence") == 0) {
        json_t *arr;
        d->type = TOK_DEC_SEQUENCE;
        st = get_children(obj, "decoders", "decoder", &arr, &d->n_children,
                          err, err_size);
        if (st != BT_OK)
            return field_err(st, "decoder", type, err, err_size);
        d->children = calloc(d->n_children + 1, sizeof(*d->children));
        if (d->children == NULL)
            return BT_ERR_NO_MEMORY;
        for (size_t i = 0; i < d->n_children; i++) {
            st = dec_parse(json_array_get(arr, i), &d->children[i],
                           depth + 1, err, err_size);
            if (st != BT_OK)
                return st;
        }
        return BT_OK;
    }
    if (strcmp(type, "ByteLevel") == 0) {
        d->type = TOK_DEC_BYTELEVEL;
        return BT_OK;
    }
    if (strcmp(type, "ByteFallback") == 0) {
        d->type = TOK_DEC_BYTEFALLBACK;
        return BT_OK;
    }
    if (strcmp(type, "Fuse") == 0) {
        d->type = TOK_DEC_FUSE;
        return BT_OK;
    }
    if (strcmp(type, "Strip") == 0) {
        int64_t start = 0, stop = 0;
        uint32_t cp;
        char buf[4];
        d->type = TOK_DEC_STRIP;
        st = get_char(obj, "content", ' ', &cp, err, err_size);
        if (st == BT_OK)
            st = bt_json_get_int(obj, "start", true, 0, 1 << 20, &start, err,
                                 err_size);
        if (st == BT_OK)
            st = bt_json_get_int(obj, "stop", true, 0, 1 << 20, &stop, err,
                                 err_size);
        if (st != BT_OK)
            return field_err(st, "decoder", type, err, err_size);
        d->start = (size_t)start;
        d->stop = (size_t)stop;
        d->content_len = tok_utf8_encode(cp, buf);
        d->content = malloc(4);
        if (d->content == NULL)
            return BT_ERR_NO_MEMORY;
        memcpy(d->content, buf, d->content_len);
        return BT_OK;
    }
    if (strcmp(type, "Replace") == 0) {
        const json_t *pat = json_object_get(obj, "pattern");
        const json_t *s = json_object_get(pat, "String");
        const char *content;
        d->type = TOK_DEC_REPLACE;
        if (!json_is_string(s) || json_string_length(s) == 0) {
            tok_err(err, err_size, "decoder Replace: only a non-empty "
                                   "{\"String\": ...} pattern is supported");
            return BT_ERR_UNSUPPORTED;
        }
        st = bt_json_get_string(obj, "content", true, &content, err,
                                err_size);
        if (st != BT_OK)
            return field_err(st, "decoder", type, err, err_size);
        d->pattern_len = json_string_length(s);
        d->pattern = malloc(d->pattern_len + 1);
        d->content_len = strlen(content);
        d->content = strdup(content);
        if (d->pattern == NULL || d->content == NULL)
            return BT_ERR_NO_MEMORY;
        memcpy(d->pattern, json_string_value(s), d->pattern_len + 1);
        return BT_OK;
    }
    if (strcmp(type, "Metaspace") == 0) {
        d->type = TOK_DEC_METASPACE;
        st = get_char(obj, "replacement", 0x2581, &d->replacement, err,
                      err_size);
        if (st == BT_OK)
            st = get_prepend(obj, &d->prepend, err, err_size);
        return st == BT_OK ? st
                           : field_err(st, "decoder", type, err, err_size);
    }
    return unsupported("decoder", type, err, err_size);
}

bt_status_t tok_dec_parse(const void *json, tok_dec_t *dec, char *err,
                          size_t err_size)
{
    return dec_parse(json, dec, 0, err, err_size);
}

void tok_dec_cleanup(tok_dec_t *dec)
{
    if (dec == NULL)
        return;
    for (size_t i = 0; i < dec->n_children; i++)
        tok_dec_cleanup(&dec->children[i]);
    free(dec->children);
    free(dec->pattern);
    free(dec->content);
    memset(dec, 0, sizeof(*dec));
}
