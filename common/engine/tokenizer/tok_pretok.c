/* Pre-tokenizers: Sequence, Split (PCRE2, all five HF delimiter
 * behaviours, invert), ByteLevel (prefix space, GPT-2 regex, byte -> char
 * map) and Metaspace. Each maps a list of pieces to a new list. */
#include "tok_int.h"

#include <string.h>

typedef struct {
    size_t start, end;
    bool   match;
} seg_t;

#define MAX_SEGS_STACK 256

/* Splits [0, len) of s into alternating match / non-match segments. */
static bt_status_t find_segments(const tok_regex_t *re, pcre2_match_data *md,
                                 const char *s, size_t len, bool invert,
                                 seg_t **segs_p, size_t *n_p, size_t *cap_p,
                                 seg_t *stack)
{
    size_t pos = 0, ms, me, n = 0;
    int rc;
    seg_t *segs = *segs_p;

    for (;;) {
        rc = tok_regex_next(re, md, s, len, pos, &ms, &me);
        if (rc < 0)
            return (bt_status_t)rc;
        if (n + 2 > *cap_p) {
            size_t cap = *cap_p * 2;
            seg_t *ns = segs == stack ? malloc(cap * sizeof(*ns))
                                      : realloc(segs, cap * sizeof(*ns));
            if (ns == NULL)
                return BT_ERR_NO_MEMORY;
            if (segs == stack)
                memcpy(ns, stack, n * sizeof(*ns));
            segs = ns;
            *segs_p = segs;
            *cap_p = cap;
        }
        if (rc == 0) {
            if (pos < len)
                segs[n++] = (seg_t){pos, len, invert};
            break;
        }
        if (ms > pos)
            segs[n++] = (seg_t){pos, ms, invert};
        segs[n++] = (seg_t){ms, me, !invert};
        pos = me;
    }
    *n_p = n;
    return BT_OK;
}

/* Applies an HF SplitDelimiterBehavior to the segments, in place. */
static size_t apply_behavior(tok_split_behavior_t b, seg_t *segs, size_t n)
{
    size_t out = 0;
    bool prev_match = false;

    switch (b) {
    case TOK_SPLIT_ISOLATED:
        return n;
    case TOK_SPLIT_REMOVED:
        for (size_t i = 0; i < n; i++)
            if (!segs[i].match)
                segs[out++] = segs[i];
        return out;
    case TOK_SPLIT_MERGED_PREV:
        for (size_t i = 0; i < n; i++) {
            if (segs[i].match && !prev_match && out > 0)
                segs[out - 1].end = segs[i].end;
            else
                segs[out++] = segs[i];
            prev_match = segs[i].match;
        }
        return out;
    case TOK_SPLIT_MERGED_NEXT: {
        /* right to left, then the kept segments are the tail */
        size_t w = n;
        for (size_t i = n; i-- > 0;) {
            bool m = segs[i].match;
            if (m && !prev_match && w < n)
                segs[w].start = segs[i].start;
            else
                segs[--w] = segs[i];
            prev_match = m;
        }
        memmove(segs, segs + w, (n - w) * sizeof(*segs));
        return n - w;
    }
    case TOK_SPLIT_CONTIGUOUS:
        for (size_t i = 0; i < n; i++) {
            if (segs[i].match == prev_match && out > 0)
                segs[out - 1].end = segs[i].end;
            else
                segs[out++] = segs[i];
            prev_match = segs[i].match;
        }
        return out;
    }
    return n;
}

static bt_status_t split_piece(const tok_regex_t *re, pcre2_match_data *md,
                               tok_split_behavior_t behavior, bool invert,
                               const char *s, size_t len, bool first,
                               tok_pieces_t *dst)
{
    seg_t stack[MAX_SEGS_STACK], *segs = stack;
    size_t n = 0, cap = MAX_SEGS_STACK;
    bt_status_t st;

    st = find_segments(re, md, s, len, invert, &segs, &n, &cap, stack);
    if (st == BT_OK) {
        n = apply_behavior(behavior, segs, n);
        for (size_t i = 0; i < n && st == BT_OK; i++)
            st = tok_pieces_add(dst, s + segs[i].start,
                                segs[i].end - segs[i].start,
                                first && segs[i].start == 0);
    }
    if (segs != stack)
        free(segs);
    return st;
}

static bt_status_t bytelevel_map(const char *s, size_t len, bool first,
                                 tok_pieces_t *dst)
{
    bt_status_t st = tok_pieces_open(dst, first);

    if (st != BT_OK)
        return st;
    st = bt_buf_reserve(&dst->text, 2 * len);
    if (st != BT_OK) {
        tok_pieces_close(dst);
        return st;
    }
    for (size_t i = 0; i < len; i++) {
        char c[4];
        size_t cl = tok_utf8_encode(tok_byte_to_cp[(unsigned char)s[i]], c);
        memcpy(dst->text.data + dst->text.len, c, cl);
        dst->text.len += cl;
    }
    dst->text.data[dst->text.len] = 0;
    tok_pieces_close(dst);
    return BT_OK;
}

static bt_status_t bytelevel_piece(const tok_pre_t *pre, pcre2_match_data *md,
                                   const char *s, size_t len, bool first,
                                   tok_pieces_t *dst, bt_buf_t *scratch)
{
    bt_status_t st;

    if (pre->add_prefix_space && (len == 0 || s[0] != ' ')) {
        bt_buf_reset(scratch);
        st = bt_buf_append_byte(scratch, ' ');
        if (st == BT_OK)
            st = bt_buf_append(scratch, s, len);
        if (st != BT_OK)
            return st;
        s = scratch->data;
        len = scratch->len;
    }
    if (!pre->has_re)
        return bytelevel_map(s, len, first, dst);
    {
        size_t pos = 0, ms, me;
        int rc;
        while ((rc = tok_regex_next(&pre->re, md, s, len, pos, &ms, &me)) >
               0) {
            if (ms > pos) {
                st = bytelevel_map(s + pos, ms - pos, first && pos == 0, dst);
                if (st != BT_OK)
                    return st;
            }
            st = bytelevel_map(s + ms, me - ms, first && ms == 0, dst);
            if (st != BT_OK)
                return st;
            pos = me;
        }
        if (rc < 0)
            return (bt_status_t)rc;
        if (pos < len)
            return bytelevel_map(s + pos, len - pos, first && pos == 0, dst);
    }
    return BT_OK;
}

static bt_status_t metaspace_piece(const tok_pre_t *pre, const char *s,
                                   size_t len, bool first, tok_pieces_t *dst)
{
    char rep[4];
    size_t rl = tok_utf8_encode(pre->replacement, rep);
    bool prepend = false;
    size_t i, start;
    bt_status_t st;

    if (pre->prepend == TOK_PREPEND_ALWAYS ||
        (pre->prepend == TOK_PREPEND_FIRST && first)) {
        /* prepend unless the piece already starts with the replacement
         * (a leading space counts: it becomes one) */
        prepend = !(len > 0 && s[0] == ' ') &&
                  !(len >= rl && memcmp(s, rep, rl) == 0);
    }
    /* Build the replaced text as one piece first, then split it at each
     * replacement character, keeping it at the start (MergedWithNext). */
    st = tok_pieces_open(dst, first);
    if (st != BT_OK)
        return st;
    size_t base = dst->text.len;
    if (prepend)
        st = bt_buf_append(&dst->text, rep, rl);
    for (i = 0; i < len && st == BT_OK; i++) {
        if (s[i] == ' ')
            st = bt_buf_append(&dst->text, rep, rl);
        else
            st = bt_buf_append_byte(&dst->text, s[i]);
    }
    if (st != BT_OK || !pre->split) {
        tok_pieces_close(dst);
        return st;
    }
    /* Re-cut [base, end) into pieces starting at each replacement. */
    dst->n--; /* drop the open piece; re-add the cuts over the same bytes */
    {
        size_t end = dst->text.len;
        const char *t = dst->text.data;
        start = base;
        for (i = base; i + rl <= end; i++) {
            if (i > start && memcmp(t + i, rep, rl) == 0) {
                st = tok_pieces_open(dst, first && start == base);
                if (st != BT_OK)
                    return st;
                dst->v[dst->n - 1].off = start;
                dst->v[dst->n - 1].len = i - start;
                start = i;
            }
        }
        if (end > start) {
            st = tok_pieces_open(dst, first && start == base);
            if (st != BT_OK)
                return st;
            dst->v[dst->n - 1].off = start;
            dst->v[dst->n - 1].len = end - start;
        }
    }
    return BT_OK;
}

bt_status_t tok_pre_apply(const tok_pre_t *pre, pcre2_match_data *md,
                          tok_pieces_t *p, tok_pieces_t *tmp)
{
    bt_status_t st = BT_OK;
    bt_buf_t scratch;

    if (pre->type == TOK_PRE_SEQUENCE) {
        for (size_t i = 0; i < pre->n_children && st == BT_OK; i++)
            st = tok_pre_apply(&pre->children[i], md, p, tmp);
        return st;
    }
    bt_buf_init(&scratch, p->text.max);
    tok_pieces_reset(tmp);
    for (size_t i = 0; i < p->n && st == BT_OK; i++) {
        const char *s = p->text.data + p->v[i].off;
        size_t len = p->v[i].len;
        bool first = p->v[i].first;
        switch (pre->type) {
        case TOK_PRE_SPLIT:
            st = split_piece(&pre->re, md, pre->behavior, pre->invert, s, len,
                             first, tmp);
            break;
        case TOK_PRE_BYTELEVEL:
            st = bytelevel_piece(pre, md, s, len, first, tmp, &scratch);
            break;
        case TOK_PRE_METASPACE:
            st = metaspace_piece(pre, s, len, first, tmp);
            break;
        case TOK_PRE_SEQUENCE:
            break;
        }
    }
    bt_buf_cleanup(&scratch);
    if (st == BT_OK) {
        tok_pieces_t t = *p;
        *p = *tmp;
        *tmp = t;
    }
    return st;
}
