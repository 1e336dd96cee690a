/* Structured output on a node (node_grammar.h). */
#include "node_grammar.h"

#include "node.h"

#include "base/buf.h"
#include "base/log.h"
#include "engine/grammar/grammar.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One compiled format; requests using it hold a reference. */
typedef struct {
    char         *key;      /* type byte + schema text; NULL: free slot */
    bt_grammar_t *grammar;
    bt_gmasker_t *masker;
    uint32_t      users;
    uint64_t      last_use;
    bool          cached;   /* in the table (else freed by its last user) */
} bt_node_gfmt_t;

struct bt_node_gcache {
    bt_node_gfmt_t *slots[BT_NODE_GCACHE_ENTRIES];
    uint64_t        clock;
};

struct bt_node_gram {
    bt_node_gfmt_t   *fmt;
    bt_gmatcher_t    *matcher;
};

/* Masks per format (allocated as states are met): about a thousand masks
 * at a 128k vocabulary, so a schema's states stay cached */
#define BT_NODE_GMASK_BYTES (16u << 20)

static void bt_node_gfmt_free(bt_node_gfmt_t *f)
{
    if (f != NULL) {
        bt_gmasker_destroy(f->masker);
        bt_grammar_destroy(f->grammar);
        free(f->key);
        free(f);
    }
}

bt_status_t bt_node_grammar_init(bt_node_t *node, const bt_tok_t *tok)
{
    const uint32_t n = node->vocab;
    const uint8_t **bytes;
    uint32_t *lens;
    bt_buf_t buf;
    size_t *offs;
    bt_status_t st = BT_OK;

    node->gcache = calloc(1, sizeof(*node->gcache));
    if (node->gcache == NULL) {
        return BT_ERR_NO_MEMORY;
    }
    if (tok == NULL) {
        return BT_OK;
    }
    bytes = calloc(n, sizeof(*bytes));
    lens = calloc(n, sizeof(*lens));
    offs = calloc(n, sizeof(*offs));
    bt_buf_init(&buf, 1u << 30);
    if (bytes == NULL || lens == NULL || offs == NULL) {
        st = BT_ERR_NO_MEMORY;
        goto out;
    }
    /* each id's raw bytes, appended to one buffer (it may move) */
    for (uint32_t i = 0; i < n && i < (uint32_t)bt_tok_vocab_size(tok); i++) {
        size_t before = buf.len;

        offs[i] = before;
        if (bt_tok_is_special(tok, (int32_t)i) ||
            bt_tok_token_str(tok, (int32_t)i, &(size_t){ 0 }) == NULL) {
            continue;
        }
        if (bt_tok_token_text(tok, (int32_t)i, true, &buf) != BT_OK) {
            continue;
        }
        lens[i] = (uint32_t)(buf.len - before);
    }
    for (uint32_t i = 0; i < n; i++) {
        bytes[i] = lens[i] ? (const uint8_t *)buf.data + offs[i] : NULL;
    }
    st = bt_gvocab_create(n, bytes, lens, node->eos_id, &node->gvocab);
out:
    bt_buf_cleanup(&buf);
    free(bytes);
    free(lens);
    free(offs);
    if (st != BT_OK) {
        bt_error("cannot index the vocabulary for structured output: %s",
                 bt_status_str(st));
    }
    return st;
}

void bt_node_grammar_cleanup(bt_node_t *node)
{
    bool busy = false;

    if (node->gcache != NULL) {
        for (int i = 0; i < BT_NODE_GCACHE_ENTRIES; i++) {
            bt_node_gfmt_t *f = node->gcache->slots[i];

            if (f != NULL && f->users == 0) {
                bt_node_gfmt_free(f);
            } else if (f != NULL) {
                f->cached = false;   /* its last user frees it */
                busy = true;
            }
        }
        free(node->gcache);
        node->gcache = NULL;
    }
    /* a request still open keeps using the vocabulary: let it be */
    if (!busy) {
        bt_gvocab_destroy(node->gvocab);
    }
    node->gvocab = NULL;
}

/* The cached format for key, or a new one (cached when a slot is free or
 * holds an unused format, the least recently used first). */
static bt_status_t bt_node_gfmt_get(bt_node_t *node, const char *key,
                                    size_t key_len, bt_node_gfmt_t **f_p,
                                    char *err, size_t err_size)
{
    bt_node_gcache_t *c = node->gcache;
    char gerr[BT_GRAMMAR_ERR_SIZE];
    bt_node_gfmt_t *f;
    int victim = -1;
    bt_status_t st;

    for (int i = 0; i < BT_NODE_GCACHE_ENTRIES; i++) {
        f = c->slots[i];
        if (f != NULL && strcmp(f->key, key) == 0) {
            f->last_use = ++c->clock;
            *f_p = f;
            return BT_OK;
        }
        if (f == NULL) {
            if (victim < 0 || c->slots[victim] != NULL) {
                victim = i;   /* an empty slot first */
            }
        } else if (f->users == 0 &&
                   (victim < 0 || (c->slots[victim] != NULL &&
                                   c->slots[victim]->last_use > f->last_use))) {
            victim = i;
        }
    }
    f = calloc(1, sizeof(*f));
    if (f == NULL || (f->key = strdup(key)) == NULL) {
        free(f);
        return BT_ERR_NO_MEMORY;
    }
    st = bt_grammar_compile(key[0] == 'o' ? BT_GRAMMAR_JSON_OBJECT
                                          : BT_GRAMMAR_JSON_SCHEMA,
                            key + 1, key_len - 1, &f->grammar, gerr, sizeof(gerr));
    if (st == BT_OK) {
        st = bt_gmasker_create(f->grammar, node->gvocab, BT_NODE_GMASK_BYTES,
                               &f->masker);
        snprintf(gerr, sizeof(gerr), "out of memory");
    }
    if (st != BT_OK) {
        snprintf(err, err_size, "response_format: %s", gerr);
        bt_node_gfmt_free(f);
        return st == BT_ERR_NO_MEMORY ? st : BT_ERR_INVALID_ARG;
    }
    f->last_use = ++c->clock;
    if (victim >= 0) {
        bt_node_gfmt_free(c->slots[victim]);
        c->slots[victim] = f;
        f->cached = true;
    }
    *f_p = f;
    return BT_OK;
}

bt_status_t bt_node_gram_open(bt_node_t *node,
                              const Baton__V1__SamplingParams *p,
                              const int32_t *gen, size_t n_gen,
                              bt_node_gram_t **g_p, char *err, size_t err_size)
{
    const Baton__V1__ResponseFormat *rf = p ? p->response_format : NULL;
    bt_node_gram_t *g;
    bt_status_t st;
    size_t len;
    char *key;

    *g_p = NULL;
    if (rf == NULL || rf->type == BATON__V1__RESPONSE_FORMAT__TYPE__TYPE_TEXT) {
        return BT_OK;
    }
    if (node->gvocab == NULL || node->gcache == NULL) {
        snprintf(err, err_size, "response_format: this node has no tokenizer "
                 "to constrain the output with");
        return BT_ERR_INVALID_ARG;
    }
    if (rf->type != BATON__V1__RESPONSE_FORMAT__TYPE__TYPE_JSON_OBJECT &&
        rf->type != BATON__V1__RESPONSE_FORMAT__TYPE__TYPE_JSON_SCHEMA) {
        snprintf(err, err_size, "response_format: unknown type %d", (int)rf->type);
        return BT_ERR_INVALID_ARG;
    }
    /* key: 'o' for any object, 's' + the schema text */
    len = 1 + (rf->type == BATON__V1__RESPONSE_FORMAT__TYPE__TYPE_JSON_SCHEMA &&
               rf->schema ? strlen(rf->schema) : 0);
    key = malloc(len + 1);
    g = calloc(1, sizeof(*g));
    if (key == NULL || g == NULL) {
        free(key);
        free(g);
        return BT_ERR_NO_MEMORY;
    }
    key[0] = rf->type == BATON__V1__RESPONSE_FORMAT__TYPE__TYPE_JSON_OBJECT ? 'o' : 's';
    memcpy(key + 1, len > 1 ? rf->schema : "", len - 1);
    key[len] = '\0';
    st = bt_node_gfmt_get(node, key, len, &g->fmt, err, err_size);
    free(key);
    if (st != BT_OK) {
        free(g);
        return st;
    }
    g->fmt->users++;
    st = bt_gmatcher_create(g->fmt->masker, &g->matcher);
    for (size_t i = 0; st == BT_OK && i < n_gen; i++) {
        st = bt_gmatcher_accept(g->matcher, gen[i]);
        if (st != BT_OK) {
            snprintf(err, err_size, "generated token %zu (id %d) does not fit "
                     "the response_format", i, gen[i]);
        }
    }
    if (st != BT_OK) {
        bt_node_gram_close(g);
        return st == BT_ERR_NO_MEMORY ? st : BT_ERR_INVALID_ARG;
    }
    *g_p = g;
    return BT_OK;
}

bt_status_t bt_node_gram_mask(bt_node_gram_t *g, float *logits, size_t n)
{
    return bt_gmatcher_apply(g->matcher, logits, n);
}

bt_status_t bt_node_gram_accept(bt_node_gram_t *g, int32_t token)
{
    return bt_gmatcher_accept(g->matcher, token);
}

void bt_node_gram_close(bt_node_gram_t *g)
{
    if (g == NULL) {
        return;
    }
    bt_gmatcher_destroy(g->matcher);
    if (--g->fmt->users == 0 && !g->fmt->cached) {
        bt_node_gfmt_free(g->fmt);
    }
    free(g);
}
