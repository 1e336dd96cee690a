/* The vocabulary as a byte trie stored in preorder: walking it against the
 * automaton visits each shared prefix once and skips a whole subtree at
 * the first byte the automaton rejects. */
#include "grammar_int.h"

#include "base/array.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    const uint8_t *bytes;
    uint32_t       len;
    uint32_t       id;
} bt_gtok_t;

static int bt_gtok_cmp(const void *pa, const void *pb)
{
    const bt_gtok_t *a = pa, *b = pb;
    uint32_t n = a->len < b->len ? a->len : b->len;
    int c = memcmp(a->bytes, b->bytes, n);

    if (c != 0) {
        return c;
    }
    if (a->len != b->len) {
        return a->len < b->len ? -1 : 1;
    }
    return a->id < b->id ? -1 : a->id > b->id;
}

void bt_gvocab_destroy(bt_gvocab_t *v)
{
    if (v == NULL) {
        return;
    }
    for (uint32_t i = 0; v->bytes != NULL && i < v->n_vocab; i++) {
        free(v->bytes[i]);
    }
    free(v->bytes);
    free(v->lens);
    free(v->nodes);
    free(v->toks);
    free(v);
}

uint32_t bt_gvocab_size(const bt_gvocab_t *v)
{
    return v->n_vocab;
}

/* Builds the preorder trie from tokens sorted by bytes: each token shares
 * its longest common prefix with the one before it. */
static bt_status_t bt_gvocab_trie(bt_gvocab_t *v, const bt_gtok_t *t, uint32_t n)
{
    uint32_t *path = calloc((size_t)v->max_len + 1, sizeof(*path));
    size_t cap = 0;
    uint32_t depth = 0;

    if (path == NULL) {
        return BT_ERR_NO_MEMORY;
    }
    for (uint32_t i = 0; i < n; i++) {
        uint32_t lcp = 0;

        if (i > 0) {
            uint32_t m = t[i].len < t[i - 1].len ? t[i].len : t[i - 1].len;

            while (lcp < m && t[i].bytes[lcp] == t[i - 1].bytes[lcp]) {
                lcp++;
            }
        }
        while (depth > lcp) {   /* close the subtrees left behind */
            v->nodes[path[--depth]].skip = v->n_nodes;
        }
        for (; depth < t[i].len; depth++) {
            bt_gtrie_t *nd;

            if (BT_ARRAY_RESERVE(v->nodes, cap, (size_t)v->n_nodes + 1, 1024) != BT_OK) {
                free(path);
                return BT_ERR_NO_MEMORY;
            }
            nd = &v->nodes[v->n_nodes];
            nd->byte = t[i].bytes[depth];
            nd->depth = (uint16_t)(depth + 1);
            nd->skip = 0;
            nd->tok_first = i;
            nd->n_tok = 0;
            path[depth] = v->n_nodes++;
        }
        if (v->nodes[path[depth - 1]].n_tok == 0) {
            v->nodes[path[depth - 1]].tok_first = i;
        }
        v->nodes[path[depth - 1]].n_tok++;
        v->toks[i] = t[i].id;
    }
    while (depth > 0) {
        v->nodes[path[--depth]].skip = v->n_nodes;
    }
    free(path);
    return BT_OK;
}

bt_status_t bt_gvocab_create(uint32_t n_vocab, const uint8_t *const *bytes,
                             const uint32_t *lens, int32_t eos_id,
                             bt_gvocab_t **vocab_p)
{
    bt_gvocab_t *v = calloc(1, sizeof(*v));
    bt_gtok_t *t = NULL;
    uint32_t n = 0;
    bt_status_t st = BT_ERR_NO_MEMORY;

    if (v == NULL) {
        return BT_ERR_NO_MEMORY;
    }
    v->n_vocab = n_vocab;
    v->eos_id = eos_id >= 0 && (uint32_t)eos_id < n_vocab ? eos_id : -1;
    v->bytes = calloc(n_vocab ? n_vocab : 1, sizeof(*v->bytes));
    v->lens = calloc(n_vocab ? n_vocab : 1, sizeof(*v->lens));
    v->toks = calloc(n_vocab ? n_vocab : 1, sizeof(*v->toks));
    t = calloc(n_vocab ? n_vocab : 1, sizeof(*t));
    if (v->bytes == NULL || v->lens == NULL || v->toks == NULL || t == NULL) {
        goto err;
    }
    for (uint32_t i = 0; i < n_vocab; i++) {
        if (bytes[i] == NULL || lens[i] == 0 || (int32_t)i == v->eos_id) {
            continue;
        }
        if (lens[i] > 0xFFFF) {
            st = BT_ERR_TOO_LARGE;
            goto err;
        }
        v->bytes[i] = malloc(lens[i]);
        if (v->bytes[i] == NULL) {
            goto err;
        }
        memcpy(v->bytes[i], bytes[i], lens[i]);
        v->lens[i] = lens[i];
        t[n].bytes = v->bytes[i];
        t[n].len = lens[i];
        t[n].id = i;
        n++;
        if (lens[i] > v->max_len) {
            v->max_len = lens[i];
        }
    }
    qsort(t, n, sizeof(*t), bt_gtok_cmp);
    st = bt_gvocab_trie(v, t, n);
    if (st != BT_OK) {
        goto err;
    }
    free(t);
    *vocab_p = v;
    return BT_OK;

err:
    free(t);
    bt_gvocab_destroy(v);
    return st;
}
