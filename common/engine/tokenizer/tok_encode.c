/* encode: added tokens split first (those matched on raw text, then, after
 * the normalizer, those matched on normalized text), then pre-tokenizers
 * and BPE on the text between them, then the post-processor's BOS/EOS. */
#include "tok_int.h"

#include "base/array.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#define ENC_MD_PAIRS 32

void bt_tok_ids_init(bt_tok_ids_t *v, size_t max)
{
    v->ids = NULL;
    v->n = v->cap = 0;
    v->max = max;
}

void bt_tok_ids_cleanup(bt_tok_ids_t *v)
{
    free(v->ids);
    v->ids = NULL;
    v->n = v->cap = 0;
}

bt_status_t bt_tok_ids_push(bt_tok_ids_t *v, int32_t id)
{
    if (v->n >= v->max)
        return BT_ERR_TOO_LARGE;
    if (v->n == v->cap) {
        bt_status_t st = BT_ARRAY_RESERVE(v->ids, v->cap, v->n + 1, 64);
        if (st != BT_OK)
            return st;
    }
    v->ids[v->n++] = id;
    return BT_OK;
}

/* ---- added tokens ---- */

static int cmp_added(const void *x, const void *y, void *arg)
{
    const bt_tok_t *t = arg;
    const tok_added_t *a = &t->added[*(const int32_t *)x];
    const tok_added_t *b = &t->added[*(const int32_t *)y];
    unsigned char fa = (unsigned char)t->pool.data[a->str.off];
    unsigned char fb = (unsigned char)t->pool.data[b->str.off];

    if (fa != fb)
        return fa < fb ? -1 : 1;
    if (a->str.len != b->str.len)
        return a->str.len > b->str.len ? -1 : 1;
    return a->id < b->id ? -1 : a->id > b->id;
}

bt_status_t tok_added_index_build(bt_tok_t *tok)
{
    tok->added_order = malloc((tok->n_added + 1) * sizeof(int32_t));
    if (tok->added_order == NULL)
        return BT_ERR_NO_MEMORY;
    for (size_t i = 0; i < tok->n_added; i++)
        tok->added_order[i] = (int32_t)i;
    qsort_r(tok->added_order, tok->n_added, sizeof(int32_t), cmp_added,
            tok);
    memset(tok->added_first, 0, sizeof(tok->added_first));
    for (size_t i = 0; i < tok->n_added; i++) {
        const tok_added_t *a = &tok->added[tok->added_order[i]];
        tok->added_first[(unsigned char)tok->pool.data[a->str.off] + 1]++;
    }
    for (int b = 0; b < 256; b++)
        tok->added_first[b + 1] += tok->added_first[b];
    return BT_OK;
}

/* Rust char::is_whitespace (the White_Space property). */
static bool is_ws(uint32_t c)
{
    return (c >= 0x09 && c <= 0x0d) || c == 0x20 || c == 0x85 ||
           c == 0xa0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200a) ||
           c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f ||
           c == 0x3000;
}

/* Rust regex \w: letters, marks, decimal digits, connector punctuation. */
static bool is_word(uint32_t c)
{
    if (c < 0x80)
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
               (c >= 'A' && c <= 'Z') || c == '_';
    if (c == 0x200c || c == 0x200d)
        return true;
    switch (utf8proc_category((utf8proc_int32_t)c)) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT: case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO: case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_MC: case UTF8PROC_CATEGORY_ME:
    case UTF8PROC_CATEGORY_ND: case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_PC:
        return true;
    default:
        return false;
    }
}

/* Code point ending just before s[pos] (pos > 0, valid UTF-8). */
static uint32_t cp_before(const char *s, size_t pos, size_t *start_p)
{
    size_t i = pos - 1;
    uint32_t cp;

    while (i > 0 && ((unsigned char)s[i] & 0xc0) == 0x80)
        i--;
    tok_utf8_decode(s + i, pos - i, &cp);
    *start_p = i;
    return cp;
}

/* Next added-token match in s at or after pos, among the tokens of this
 * phase (normalized or not; special ones only when parse_special). The
 * match is widened by lstrip (not below `floor`) and rstrip. */
static bool added_next(const bt_tok_t *tok, const char *s, size_t len,
                       size_t pos, size_t floor, bool normalized,
                       bool parse_special, size_t *ms_p, size_t *me_p,
                       int32_t *id_p)
{
    size_t i = pos;

    while (i < len) {
        unsigned char c = (unsigned char)s[i];
        uint32_t lo = tok->added_first[c], hi = tok->added_first[c + 1];
        const tok_added_t *hit = NULL;

        for (uint32_t k = lo; k < hi; k++) {
            const tok_added_t *a = &tok->added[tok->added_order[k]];
            if (a->normalized != normalized ||
                (a->special && !parse_special) || a->str.len > len - i ||
                memcmp(s + i, tok->pool.data + a->str.off, a->str.len) != 0)
                continue;
            hit = a;
            break;
        }
        if (hit == NULL) {
            i++;
            continue;
        }
        size_t ms = i, me = i + hit->str.len, tmp;
        uint32_t cp;
        if (hit->single_word) {
            bool ok = true;
            if (ms > 0 && is_word(cp_before(s, ms, &tmp)))
                ok = false;
            if (me < len) {
                tok_utf8_decode(s + me, len - me, &cp);
                if (is_word(cp))
                    ok = false;
            }
            if (!ok) {
                i = me;
                continue;
            }
        }
        if (hit->lstrip) {
            while (ms > floor && is_ws(cp_before(s, ms, &tmp)))
                ms = tmp;
            if (ms < floor)
                ms = floor;
        }
        if (hit->rstrip) {
            while (me < len) {
                size_t cl = tok_utf8_decode(s + me, len - me, &cp);
                if (!is_ws(cp))
                    break;
                me += cl;
            }
        }
        *ms_p = ms;
        *me_p = me;
        *id_p = hit->id;
        return true;
    }
    return false;
}

/* ---- the pipeline ---- */

/* Per-call memo of BPE results for short pieces: a direct-mapped table,
 * allocated only for long inputs, where words repeat. Per call, so the
 * tokenizer stays immutable and shared. */
size_t tok_cache_min_text = 8192;
#define CACHE_SLOTS    8192
#define CACHE_KEY      22
#define CACHE_IDS      6

typedef struct {
    uint8_t klen; /* 0 = empty */
    uint8_t nids;
    char    key[CACHE_KEY];
    int32_t ids[CACHE_IDS];
} cache_ent_t;

typedef struct {
    const bt_tok_t   *tok;
    bool              parse_special;
    pcre2_match_data *md;
    tok_pieces_t      a, b;
    bt_buf_t          norm;
    bt_tok_ids_t     *out;
    cache_ent_t      *cache; /* NULL for short inputs */
} enc_t;

static bt_status_t bpe_cached(enc_t *e, const char *w, size_t len)
{
    cache_ent_t *c;
    size_t n0;
    bt_status_t st;

    if (e->cache == NULL || len > CACHE_KEY)
        return tok_bpe_word(e->tok, w, len, e->out);
    c = &e->cache[tok_hash(w, len) & (CACHE_SLOTS - 1)];
    if (c->klen == len && memcmp(c->key, w, len) == 0) {
        st = BT_OK;
        for (uint8_t i = 0; i < c->nids && st == BT_OK; i++)
            st = bt_tok_ids_push(e->out, c->ids[i]);
        return st;
    }
    n0 = e->out->n;
    st = tok_bpe_word(e->tok, w, len, e->out);
    if (st == BT_OK && e->out->n - n0 <= CACHE_IDS) {
        c->klen = (uint8_t)len;
        c->nids = (uint8_t)(e->out->n - n0);
        memcpy(c->key, w, len);
        memcpy(c->ids, e->out->ids + n0, c->nids * sizeof(int32_t));
    }
    return st;
}

/* Normalized text without added tokens: pre-tokenize, then BPE. */
static bt_status_t encode_plain(enc_t *e, const char *s, size_t len,
                                bool first)
{
    bt_status_t st;

    if (len == 0)
        return BT_OK;
    tok_pieces_reset(&e->a);
    st = tok_pieces_add(&e->a, s, len, first);
    if (st == BT_OK && e->tok->pre != NULL)
        st = tok_pre_apply(e->tok->pre, e->md, &e->a, &e->b);
    for (size_t i = 0; i < e->a.n && st == BT_OK; i++)
        st = bpe_cached(e, e->a.text.data + e->a.v[i].off, e->a.v[i].len);
    return st;
}

/* Raw text between raw-matched added tokens. */
static bt_status_t encode_segment(enc_t *e, const char *s, size_t len,
                                  bool first)
{
    const bt_tok_t *tok = e->tok;
    size_t pos = 0, floor = 0, ms, me;
    int32_t id;
    bt_status_t st;

    if (len == 0)
        return BT_OK;
    if (tok->normalizer != NULL) {
        bt_buf_reset(&e->norm);
        st = tok_norm_apply(tok->normalizer, e->md, s, len, &e->norm);
        if (st != BT_OK)
            return st;
        s = e->norm.data ? e->norm.data : "";
        len = e->norm.len;
    }
    if (!tok->any_normalized_added)
        return encode_plain(e, s, len, first);
    while (added_next(tok, s, len, pos, floor, true, e->parse_special, &ms,
                      &me, &id)) {
        st = encode_plain(e, s + floor, ms - floor, first && floor == 0);
        if (st == BT_OK)
            st = bt_tok_ids_push(e->out, id);
        if (st != BT_OK)
            return st;
        pos = floor = me;
    }
    return encode_plain(e, s + floor, len - floor, first && floor == 0);
}

bt_status_t bt_tok_encode(const bt_tok_t *tok, const char *text, size_t len,
                          unsigned flags, bt_tok_ids_t *out, char *err,
                          size_t err_size)
{
    enc_t e;
    size_t n0 = out->n, bad, pos = 0, floor = 0, ms, me;
    size_t bound;
    int32_t id;
    bt_status_t st = BT_OK;

    if (text == NULL && len > 0) {
        tok_err(err, err_size, "no text");
        return BT_ERR_INVALID_ARG;
    }
    if (len > ((size_t)1 << 30)) {
        tok_err(err, err_size, "text of %zu bytes is over 1 GiB", len);
        return BT_ERR_TOO_LARGE;
    }
    bad = tok_utf8_validate(text, len);
    if (bad != len) {
        tok_err(err, err_size, "text is not valid UTF-8 at byte %zu", bad);
        return BT_ERR_INVALID_ARG;
    }
    memset(&e, 0, sizeof(e));
    e.tok = tok;
    e.parse_special = (flags & BT_TOK_PARSE_SPECIAL) != 0;
    e.out = out;
    /* normalizers and the byte map grow text by a bounded factor */
    bound = 16 * len + 4096;
    tok_pieces_init(&e.a, bound);
    tok_pieces_init(&e.b, bound);
    bt_buf_init(&e.norm, bound);
    e.md = pcre2_match_data_create(ENC_MD_PAIRS, NULL);
    if (len >= tok_cache_min_text)
        e.cache = calloc(CACHE_SLOTS, sizeof(*e.cache));
    if (e.md == NULL || (len >= tok_cache_min_text && e.cache == NULL)) {
        st = BT_ERR_NO_MEMORY;
        goto out;
    }
    if (flags & BT_TOK_ADD_SPECIAL)
        for (size_t i = 0; i < tok->n_post_pre && st == BT_OK; i++)
            st = bt_tok_ids_push(out, tok->post_pre[i]);
    while (st == BT_OK && added_next(tok, text, len, pos, floor, false,
                                     e.parse_special, &ms, &me, &id)) {
        st = encode_segment(&e, text + floor, ms - floor, floor == 0);
        if (st == BT_OK)
            st = bt_tok_ids_push(out, id);
        pos = floor = me;
    }
    if (st == BT_OK)
        st = encode_segment(&e, text + floor, len - floor, floor == 0);
    if (flags & BT_TOK_ADD_SPECIAL)
        for (size_t i = 0; i < tok->n_post_post && st == BT_OK; i++)
            st = bt_tok_ids_push(out, tok->post_post[i]);
out:
    if (st != BT_OK) {
        out->n = n0;
        tok_err(err, err_size, "encode failed: %s", bt_status_str(st));
    }
    pcre2_match_data_free(e.md);
    free(e.cache);
    tok_pieces_cleanup(&e.a);
    tok_pieces_cleanup(&e.b);
    bt_buf_cleanup(&e.norm);
    return st;
}
