/* decode: ids -> token strings -> the decoder chain -> one string, as
 * Hugging Face's decode_chain (each decoder maps a list of strings to a
 * list of strings); and the incremental detokenizer built on it. */
#include "tok_int.h"

#include "base/array.h"

#include <stdlib.h>
#include <string.h>

/* A list of strings in one buffer. */
typedef struct {
    bt_buf_t   text;
    tok_str_t *v;
    size_t     n, cap;
} strs_t;

static void strs_init(strs_t *l, size_t max)
{
    bt_buf_init(&l->text, max);
    l->v = NULL;
    l->n = l->cap = 0;
}

static void strs_cleanup(strs_t *l)
{
    bt_buf_cleanup(&l->text);
    free(l->v);
}

static void strs_reset(strs_t *l)
{
    bt_buf_reset(&l->text);
    l->n = 0;
}

/* Starts a new string at the end of the buffer. */
static bt_status_t strs_open(strs_t *l)
{
    if (l->n == l->cap) {
        bt_status_t st = BT_ARRAY_RESERVE(l->v, l->cap, l->n + 1, 32);
        if (st != BT_OK)
            return st;
    }
    if (l->text.len > UINT32_MAX)
        return BT_ERR_TOO_LARGE;
    l->v[l->n].off = (uint32_t)l->text.len;
    l->v[l->n].len = 0;
    l->n++;
    return BT_OK;
}

static void strs_close(strs_t *l)
{
    l->v[l->n - 1].len = (uint32_t)(l->text.len - l->v[l->n - 1].off);
}

static bt_status_t strs_add(strs_t *l, const char *s, size_t len)
{
    bt_status_t st = strs_open(l);

    if (st == BT_OK)
        st = bt_buf_append(&l->text, s, len);
    if (st == BT_OK)
        strs_close(l);
    return st;
}

#define STR(l, i) ((l)->text.data + (l)->v[i].off)

/* `raw`: bytes that are not valid UTF-8 stay as they are (a token's own
 * bytes, bt_tok_token_text) instead of becoming U+FFFD. */
static bt_status_t dec_bytelevel(const strs_t *in, strs_t *out,
                                 bool keep_raw)
{
    bt_buf_t raw;
    bt_status_t st = BT_OK;

    bt_buf_init(&raw, in->text.max);
    for (size_t i = 0; i < in->n && st == BT_OK; i++) {
        const char *s = STR(in, i);
        size_t len = in->v[i].len, j, start = raw.len;
        for (j = 0; j < len && st == BT_OK;) {
            uint32_t cp;
            size_t cl = tok_utf8_decode(s + j, len - j, &cp);
            int b = tok_cp_to_byte(cp);
            if (b < 0)
                break;
            st = bt_buf_append_byte(&raw, (char)b);
            j += cl;
        }
        if (st == BT_OK && j < len) {
            /* a char outside the byte map: the token's own bytes */
            raw.len = start;
            st = bt_buf_append(&raw, s, len);
        }
    }
    if (st == BT_OK)
        st = strs_open(out);
    if (st == BT_OK && keep_raw)
        st = bt_buf_append(&out->text, raw.data ? raw.data : "", raw.len);
    else if (st == BT_OK)
        st = tok_utf8_append_lossy(&out->text, raw.data ? raw.data : "",
                                   raw.len);
    if (st == BT_OK)
        strs_close(out);
    bt_buf_cleanup(&raw);
    return st;
}

static int fallback_byte(const char *s, size_t len)
{
    static const char hex[] = "0123456789ABCDEFabcdef";
    int v = 0;

    if (len != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>')
        return -1;
    for (int i = 3; i < 5; i++) {
        const char *p = memchr(hex, s[i], sizeof(hex) - 1);
        if (p == NULL)
            return -1;
        int d = (int)(p - hex);
        v = v * 16 + (d >= 16 ? d - 6 : d);
    }
    return v;
}

static bt_status_t flush_bytes(bt_buf_t *bytes, strs_t *out, bool raw)
{
    bt_status_t st = BT_OK;

    if (bytes->len == 0)
        return BT_OK;
    if (raw || tok_utf8_validate(bytes->data, bytes->len) == bytes->len)
        st = strs_add(out, bytes->data, bytes->len);
    else
        for (size_t k = 0; k < bytes->len && st == BT_OK; k++)
            st = strs_add(out, "\xef\xbf\xbd", 3);
    bt_buf_reset(bytes);
    return st;
}

static bt_status_t dec_bytefallback(const strs_t *in, strs_t *out, bool raw)
{
    bt_buf_t bytes;
    bt_status_t st = BT_OK;

    bt_buf_init(&bytes, in->text.max);
    for (size_t i = 0; i < in->n && st == BT_OK; i++) {
        int b = fallback_byte(STR(in, i), in->v[i].len);
        if (b >= 0) {
            st = bt_buf_append_byte(&bytes, (char)b);
            continue;
        }
        st = flush_bytes(&bytes, out, raw);
        if (st == BT_OK)
            st = strs_add(out, STR(in, i), in->v[i].len);
    }
    if (st == BT_OK)
        st = flush_bytes(&bytes, out, raw);
    bt_buf_cleanup(&bytes);
    return st;
}

static bt_status_t dec_strip(const tok_dec_t *d, const strs_t *in,
                             strs_t *out)
{
    size_t cl = d->content_len;
    bt_status_t st = BT_OK;

    for (size_t i = 0; i < in->n && st == BT_OK; i++) {
        const char *s = STR(in, i);
        size_t b = 0, e = in->v[i].len;
        for (size_t k = 0; k < d->start && e - b >= cl &&
                           memcmp(s + b, d->content, cl) == 0;
             k++)
            b += cl;
        for (size_t k = 0; k < d->stop && e - b >= cl &&
                           memcmp(s + e - cl, d->content, cl) == 0;
             k++)
            e -= cl;
        st = strs_add(out, s + b, e - b);
    }
    return st;
}

static bt_status_t dec_replace(const tok_dec_t *d, const strs_t *in,
                               strs_t *out)
{
    bt_status_t st = BT_OK;

    for (size_t i = 0; i < in->n && st == BT_OK; i++) {
        const char *s = STR(in, i);
        size_t len = in->v[i].len, j = 0, run = 0;
        st = strs_open(out);
        while (st == BT_OK && j + d->pattern_len <= len) {
            if (memcmp(s + j, d->pattern, d->pattern_len) == 0) {
                st = bt_buf_append(&out->text, s + run, j - run);
                if (st == BT_OK)
                    st = bt_buf_append(&out->text, d->content,
                                       d->content_len);
                j += d->pattern_len;
                run = j;
            } else {
                j++;
            }
        }
        if (st == BT_OK)
            st = bt_buf_append(&out->text, s + run, len - run);
        if (st == BT_OK)
            strs_close(out);
    }
    return st;
}

static bt_status_t dec_metaspace(const tok_dec_t *d, const strs_t *in,
                                 strs_t *out)
{
    char rep[4];
    size_t rl = tok_utf8_encode(d->replacement, rep);
    bt_status_t st = BT_OK;

    for (size_t i = 0; i < in->n && st == BT_OK; i++) {
        const char *s = STR(in, i);
        size_t len = in->v[i].len;
        /* HF drops every replacement char of the first token unless the
         * prepend scheme is "never"; elsewhere it becomes a space. */
        bool drop = i == 0 && d->prepend != TOK_PREPEND_NEVER;
        st = strs_open(out);
        for (size_t j = 0; j < len && st == BT_OK;) {
            if (j + rl <= len && memcmp(s + j, rep, rl) == 0) {
                if (!drop)
                    st = bt_buf_append_byte(&out->text, ' ');
                j += rl;
            } else {
                st = bt_buf_append_byte(&out->text, s[j]);
                j++;
            }
        }
        if (st == BT_OK)
            strs_close(out);
    }
    return st;
}

/* Applies d to *in, leaving the result in *in (tmp is scratch). */
static bt_status_t dec_apply(const tok_dec_t *d, strs_t *in, strs_t *tmp,
                             bool raw)
{
    bt_status_t st = BT_OK;

    if (d->type == TOK_DEC_SEQUENCE) {
        for (size_t i = 0; i < d->n_children && st == BT_OK; i++)
            st = dec_apply(&d->children[i], in, tmp, raw);
        return st;
    }
    strs_reset(tmp);
    switch (d->type) {
    case TOK_DEC_BYTELEVEL: st = dec_bytelevel(in, tmp, raw); break;
    case TOK_DEC_BYTEFALLBACK: st = dec_bytefallback(in, tmp, raw); break;
    case TOK_DEC_FUSE:
        st = strs_add(tmp, in->text.data ? in->text.data : "", in->text.len);
        break;
    case TOK_DEC_STRIP: st = dec_strip(d, in, tmp); break;
    case TOK_DEC_REPLACE: st = dec_replace(d, in, tmp); break;
    case TOK_DEC_METASPACE: st = dec_metaspace(d, in, tmp); break;
    case TOK_DEC_SEQUENCE: break;
    }
    if (st == BT_OK) {
        strs_t t = *in;
        *in = *tmp;
        *tmp = t;
    }
    return st;
}

static bt_status_t tok_decode_chain(const bt_tok_t *tok, const int32_t *ids,
                                    size_t n, bool skip_special, bool raw,
                                    bt_buf_t *out, char *err, size_t err_size)
{
    strs_t a, b;
    size_t max = out->max;
    bt_status_t st = BT_OK;
    size_t len0 = out->len;

    strs_init(&a, max);
    strs_init(&b, max);
    for (size_t i = 0; i < n && st == BT_OK; i++) {
        size_t len;
        const char *s = bt_tok_token_str(tok, ids[i], &len);
        if (s == NULL) {
            tok_err(err, err_size, "token id %d is not in the vocab",
                    ids[i]);
            st = BT_ERR_INVALID_ARG;
            break;
        }
        if (skip_special && bt_tok_is_special(tok, ids[i]))
            continue;
        st = strs_add(&a, s, len);
    }
    if (st == BT_OK && tok->decoder != NULL)
        st = dec_apply(tok->decoder, &a, &b, raw);
    for (size_t i = 0; i < a.n && st == BT_OK; i++) {
        if (tok->decoder == NULL && i > 0)
            st = bt_buf_append_byte(out, ' ');
        if (st == BT_OK)
            st = bt_buf_append(out, STR(&a, i), a.v[i].len);
    }
    if (st != BT_OK) {
        out->len = len0;
        if (out->data != NULL)
            out->data[len0] = 0;
        if (st != BT_ERR_INVALID_ARG)
            tok_err(err, err_size, "decode failed: %s", bt_status_str(st));
    }
    strs_cleanup(&a);
    strs_cleanup(&b);
    return st;
}

bt_status_t tok_decode_ids(const bt_tok_t *tok, const int32_t *ids,
                           size_t n, bool skip_special, bt_buf_t *out,
                           char *err, size_t err_size)
{
    return tok_decode_chain(tok, ids, n, skip_special, false, out, err,
                            err_size);
}

bt_status_t bt_tok_token_text(const bt_tok_t *tok, int32_t id, bool raw,
                              bt_buf_t *out)
{
    return tok_decode_chain(tok, &id, 1, false, raw, out, NULL, 0);
}

bt_status_t bt_tok_decode(const bt_tok_t *tok, const int32_t *ids, size_t n,
                          bool skip_special, bt_buf_t *out, char *err,
                          size_t err_size)
{
    return tok_decode_ids(tok, ids, n, skip_special, out, err, err_size);
}

/* ---- incremental detokenizer ----
 *
 * Keeps a window of ids: [0, read) were already turned into text (kept as
 * context, because decoders such as Metaspace treat the first token
 * differently), [read, n) are pending. A forced step (64 pending ids, or
 * finish) always rotates the window, even with nothing to emit (tokens that
 * decode to nothing), which keeps n <= 128. After each id the window is decoded;
 * text beyond the decode of [0, read) is emitted unless it ends in U+FFFD
 * (an incomplete character, most likely). Then the window drops its
 * context and the emitted ids become the new context. */

#define STREAM_MAX_PENDING 64
#define STREAM_TEXT_MAX    ((size_t)16 << 20)

struct bt_tok_stream {
    const bt_tok_t *tok;
    bool            skip_special;
    int32_t         ids[2 * STREAM_MAX_PENDING + 2];
    size_t          n;
    size_t          read;
    bt_buf_t        prefix; /* decode of ids[0, read) */
    bt_buf_t        cur;
};

bt_status_t bt_tok_stream_create(const bt_tok_t *tok, bool skip_special,
                                 bt_tok_stream_t **stream_p)
{
    bt_tok_stream_t *s = calloc(1, sizeof(*s));

    if (s == NULL)
        return BT_ERR_NO_MEMORY;
    s->tok = tok;
    s->skip_special = skip_special;
    bt_buf_init(&s->prefix, STREAM_TEXT_MAX);
    bt_buf_init(&s->cur, STREAM_TEXT_MAX);
    *stream_p = s;
    return BT_OK;
}

void bt_tok_stream_destroy(bt_tok_stream_t *s)
{
    if (s == NULL)
        return;
    bt_buf_cleanup(&s->prefix);
    bt_buf_cleanup(&s->cur);
    free(s);
}

static bool ends_with_fffd(const bt_buf_t *b)
{
    return b->len >= 3 && memcmp(b->data + b->len - 3, "\xef\xbf\xbd", 3) == 0;
}

static bt_status_t stream_step(bt_tok_stream_t *s, bool force, bt_buf_t *out)
{
    bt_status_t st;

    bt_buf_reset(&s->cur);
    st = tok_decode_ids(s->tok, s->ids, s->n, s->skip_special, &s->cur, NULL,
                        0);
    if (st != BT_OK)
        return st;
    bool grew = s->cur.len > s->prefix.len &&
                memcmp(s->cur.data, s->prefix.data ? s->prefix.data : "",
                       s->prefix.len) == 0;
    if (!force && (!grew || ends_with_fffd(&s->cur)))
        return BT_OK;
    if (grew) {
        st = bt_buf_append(out, s->cur.data + s->prefix.len,
                           s->cur.len - s->prefix.len);
        if (st != BT_OK)
            return st;
    }
    /* the pending ids become the context */
    memmove(s->ids, s->ids + s->read, (s->n - s->read) * sizeof(*s->ids));
    s->n -= s->read;
    s->read = s->n;
    bt_buf_reset(&s->prefix);
    return tok_decode_ids(s->tok, s->ids, s->n, s->skip_special, &s->prefix,
                          NULL, 0);
}

bt_status_t bt_tok_stream_feed(bt_tok_stream_t *s, int32_t id, bt_buf_t *out)
{
    size_t len;

    if (bt_tok_token_str(s->tok, id, &len) == NULL)
        return BT_ERR_INVALID_ARG;
    if (s->skip_special && bt_tok_is_special(s->tok, id))
        return BT_OK;
    /* invariant: the context and the pending ids are at most 64 each */
    if (s->n >= sizeof(s->ids) / sizeof(s->ids[0]))
        return BT_ERR_INTERNAL;
    s->ids[s->n++] = id;
    /* Bound the work per token: after many ids without output (only
     * broken UTF-8 does that) emit what there is. */
    return stream_step(s, s->n - s->read >= STREAM_MAX_PENDING, out);
}

bt_status_t bt_tok_stream_finish(bt_tok_stream_t *s, bt_buf_t *out)
{
    bt_status_t st = BT_OK;

    if (s->n > s->read)
        st = stream_step(s, true, out);
    s->n = s->read = 0;
    bt_buf_reset(&s->prefix);
    return st;
}
