/* The BPE model on one pre-tokenized word, as Hugging Face's Word::merge_all:
 * repeatedly merge the adjacent pair of lowest merge rank (leftmost on a
 * tie) using a binary heap and a doubly linked list of symbols, so a word
 * of n characters costs O(n log n). */
#include "tok_int.h"

#include <stdlib.h>
#include <string.h>

#define STACK_SYMS 64

typedef struct {
    int32_t id;   /* -1 once merged into its left neighbour */
    int32_t prev;
    int32_t next;
} sym_t;

typedef struct {
    uint32_t rank;
    int32_t  pos;
    int32_t  new_id;
} merge_t;

static inline bool merge_before(const merge_t *x, const merge_t *y)
{
    return x->rank < y->rank || (x->rank == y->rank && x->pos < y->pos);
}

static void heap_push(merge_t *h, size_t *n, merge_t m)
{
    size_t i = (*n)++;

    h[i] = m;
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (!merge_before(&h[i], &h[up]))
            break;
        merge_t t = h[up];
        h[up] = h[i];
        h[i] = t;
        i = up;
    }
}

static merge_t heap_pop(merge_t *h, size_t *n)
{
    merge_t top = h[0];
    size_t i = 0;

    h[0] = h[--(*n)];
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < *n && merge_before(&h[l], &h[m]))
            m = l;
        if (r < *n && merge_before(&h[r], &h[m]))
            m = r;
        if (m == i)
            break;
        merge_t t = h[m];
        h[m] = h[i];
        h[i] = t;
        i = m;
    }
    return top;
}

static int32_t char_id(const bt_tok_t *tok, const char *s, size_t n)
{
    if (n == 1)
        return tok->small_cp_ids[(unsigned char)s[0]];
    if (n == 2) {
        uint32_t cp = ((uint32_t)(s[0] & 0x1f) << 6) | (s[1] & 0x3f);
        return tok->small_cp_ids[cp];
    }
    return tok_idmap_find(&tok->vocab, tok->model_str, tok->pool.data, s, n);
}

bt_status_t tok_bpe_word(const bt_tok_t *tok, const char *w, size_t len,
                         bt_tok_ids_t *out)
{
    sym_t stack_syms[STACK_SYMS], *syms = stack_syms;
    merge_t stack_heap[3 * STACK_SYMS], *heap = stack_heap;
    size_t n = 0, n_heap = 0, cap = len; /* one symbol per byte at most */
    bool last_unk = false;
    bt_status_t st = BT_OK;

    if (len == 0)
        return BT_OK;
    if (tok->ignore_merges) {
        int32_t id = tok_idmap_find(&tok->vocab, tok->model_str,
                                    tok->pool.data, w, len);
        if (id >= 0)
            return bt_tok_ids_push(out, id);
    }
    if (cap > STACK_SYMS) {
        syms = malloc(cap * sizeof(*syms));
        /* each merge pushes at most two entries: 3 per symbol suffices */
        heap = malloc(3 * cap * sizeof(*heap));
        if (syms == NULL || heap == NULL) {
            st = BT_ERR_NO_MEMORY;
            goto out;
        }
    }
    for (size_t i = 0; i < len;) {
        size_t cl = tok_utf8_char_len((const unsigned char *)w + i, len - i);
        int32_t id;
        if (cl == 0)
            cl = 1; /* cannot happen on validated text; keep moving */
        id = char_id(tok, w + i, cl);
        if (id >= 0) {
            syms[n++].id = id;
            last_unk = false;
        } else {
            bool done = false;
            if (tok->byte_fallback) {
                size_t k;
                for (k = 0; k < cl; k++)
                    if (tok->fallback_ids[(unsigned char)w[i + k]] < 0)
                        break;
                if (k == cl) {
                    for (k = 0; k < cl; k++)
                        syms[n++].id =
                            tok->fallback_ids[(unsigned char)w[i + k]];
                    done = true;
                    last_unk = false;
                }
            }
            if (!done && tok->unk_id >= 0) {
                if (!(tok->fuse_unk && last_unk))
                    syms[n++].id = tok->unk_id;
                last_unk = true;
            }
            /* no unk token: the character is dropped, as in HF */
        }
        i += cl;
    }
    for (size_t i = 0; i < n; i++) {
        syms[i].prev = (int32_t)i - 1;
        syms[i].next = i + 1 < n ? (int32_t)i + 1 : -1;
    }
    for (size_t i = 0; i + 1 < n; i++) {
        uint32_t rank;
        int32_t nid;
        if (tok_pairmap_find(&tok->merges, syms[i].id, syms[i + 1].id, &rank,
                             &nid))
            heap_push(heap, &n_heap, (merge_t){rank, (int32_t)i, nid});
    }
    while (n_heap > 0) {
        merge_t m = heap_pop(heap, &n_heap);
        sym_t *s = &syms[m.pos];
        uint32_t rank;
        int32_t nid, next;

        if (s->id < 0 || s->next < 0)
            continue;
        next = s->next;
        if (!tok_pairmap_find(&tok->merges, s->id, syms[next].id, &rank,
                              &nid) ||
            nid != m.new_id)
            continue;
        s->id = m.new_id;
        s->next = syms[next].next;
        if (s->next >= 0)
            syms[s->next].prev = m.pos;
        syms[next].id = -1;
        if (s->prev >= 0 &&
            tok_pairmap_find(&tok->merges, syms[s->prev].id, s->id, &rank,
                             &nid))
            heap_push(heap, &n_heap, (merge_t){rank, s->prev, nid});
        if (s->next >= 0 &&
            tok_pairmap_find(&tok->merges, s->id, syms[s->next].id, &rank,
                             &nid))
            heap_push(heap, &n_heap, (merge_t){rank, m.pos, nid});
    }
    for (int32_t i = n > 0 ? 0 : -1; i >= 0 && st == BT_OK; i = syms[i].next)
        st = bt_tok_ids_push(out, syms[i].id);
out:
    if (syms != stack_syms)
        free(syms);
    if (heap != stack_heap)
        free(heap);
    return st;
}
