/* Normalizers: Sequence, Prepend, Replace (literal or regex) and NFC
 * (utf8proc). Each turns valid UTF-8 into valid UTF-8. */
#include "tok_int.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

static bt_status_t replace_all(const tok_norm_t *n, pcre2_match_data *md,
                               const char *in, size_t len, bt_buf_t *out)
{
    size_t pos = 0, ms, me;
    int rc;
    bt_status_t st;

    while ((rc = tok_regex_next(&n->re, md, in, len, pos, &ms, &me)) > 0) {
        st = bt_buf_append(out, in + pos, ms - pos);
        if (st == BT_OK)
            st = bt_buf_append(out, n->str, n->str_len);
        if (st != BT_OK)
            return st;
        pos = me;
    }
    if (rc < 0)
        return (bt_status_t)rc;
    return bt_buf_append(out, in + pos, len - pos);
}

static bt_status_t nfc(const char *in, size_t len, bt_buf_t *out)
{
    utf8proc_uint8_t *res = NULL;
    utf8proc_ssize_t n;
    bt_status_t st;

    if (len > ((size_t)1 << 30))
        return BT_ERR_TOO_LARGE;
    /* ASCII is already NFC: skip the copy for the common case. */
    {
        size_t i;
        for (i = 0; i < len && (unsigned char)in[i] < 0x80; i++)
            ;
        if (i == len)
            return bt_buf_append(out, in, len);
    }
    n = utf8proc_map((const utf8proc_uint8_t *)in, (utf8proc_ssize_t)len,
                     &res, UTF8PROC_STABLE | UTF8PROC_COMPOSE);
    if (n < 0)
        return n == UTF8PROC_ERROR_NOMEM ? BT_ERR_NO_MEMORY
                                         : BT_ERR_INVALID_ARG;
    st = bt_buf_append(out, res, (size_t)n);
    free(res);
    return st;
}

bt_status_t tok_norm_apply(const tok_norm_t *norm, pcre2_match_data *md,
                           const char *in, size_t len, bt_buf_t *out)
{
    switch (norm->type) {
    case TOK_NORM_PREPEND:
        if (len > 0) {
            bt_status_t st = bt_buf_append(out, norm->str, norm->str_len);
            if (st != BT_OK)
                return st;
        }
        return bt_buf_append(out, in, len);
    case TOK_NORM_REPLACE:
        return replace_all(norm, md, in, len, out);
    case TOK_NORM_NFC:
        return nfc(in, len, out);
    case TOK_NORM_SEQUENCE:
        break;
    }
    if (norm->n_children == 0)
        return bt_buf_append(out, in, len);
    {
        bt_buf_t a, b;
        bt_status_t st = BT_OK;
        const char *cur = in;
        size_t cur_len = len;

        bt_buf_init(&a, out->max);
        bt_buf_init(&b, out->max);
        for (size_t i = 0; i + 1 < norm->n_children && st == BT_OK; i++) {
            bt_buf_t *dst = (i % 2 == 0) ? &a : &b;
            bt_buf_reset(dst);
            st = tok_norm_apply(&norm->children[i], md, cur, cur_len, dst);
            /* an empty buffer has no data pointer */
            cur = dst->data ? dst->data : "";
            cur_len = dst->len;
        }
        if (st == BT_OK)
            st = tok_norm_apply(&norm->children[norm->n_children - 1], md,
                                cur, cur_len, out);
        bt_buf_cleanup(&a);
        bt_buf_cleanup(&b);
        return st;
    }
}
