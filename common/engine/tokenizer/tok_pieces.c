/* A list of text pieces sharing one bounded buffer: the unit passed from
 * the added-token split through the normalizer and pre-tokenizers. */
#include "tok_int.h"

#include "base/array.h"

#include <stdlib.h>

void tok_pieces_init(tok_pieces_t *p, size_t max_bytes)
{
    bt_buf_init(&p->text, max_bytes);
    p->v = NULL;
    p->n = 0;
    p->cap = 0;
}

void tok_pieces_cleanup(tok_pieces_t *p)
{
    bt_buf_cleanup(&p->text);
    free(p->v);
    p->v = NULL;
    p->n = p->cap = 0;
}

void tok_pieces_reset(tok_pieces_t *p)
{
    bt_buf_reset(&p->text);
    p->n = 0;
}

bt_status_t tok_pieces_open(tok_pieces_t *p, bool first)
{
    if (p->n == p->cap) {
        bt_status_t st = BT_ARRAY_RESERVE(p->v, p->cap, p->n + 1, 16);
        if (st != BT_OK)
            return st;
    }
    p->v[p->n].off = p->text.len;
    p->v[p->n].len = 0;
    p->v[p->n].first = first;
    p->n++;
    return BT_OK;
}

void tok_pieces_close(tok_pieces_t *p)
{
    tok_piece_t *last = &p->v[p->n - 1];

    last->len = p->text.len - last->off;
    if (last->len == 0)
        p->n--;
}

bt_status_t tok_pieces_add(tok_pieces_t *p, const char *s, size_t len,
                           bool first)
{
    bt_status_t st;

    if (len == 0)
        return BT_OK;
    st = tok_pieces_open(p, first);
    if (st != BT_OK)
        return st;
    st = bt_buf_append(&p->text, s, len);
    if (st != BT_OK) {
        p->n--;
        return st;
    }
    tok_pieces_close(p);
    return BT_OK;
}
