/* Masks: the allowed tokens of an automaton state, computed by walking the
 * vocabulary trie (a subtree is skipped at the first byte the automaton
 * rejects) and cached by the state's key, so a state seen before costs a
 * hash lookup. Matchers: one sequence's state, advanced token by token. */
#include "grammar_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define BT_GMASK_KEY_MAX (sizeof(bt_gstate_t))

typedef struct {
    uint64_t  hash;
    uint8_t  *key;      /* NULL: empty slot */
    uint32_t  key_len;
    uint64_t *mask;
} bt_gmentry_t;

struct bt_gmasker {
    const bt_grammar_t *g;
    const bt_gvocab_t  *v;
    size_t              words;      /* mask words, eos included */
    bt_gstate_t        *levels;     /* [max_len + 1] trie walk states */
    const bt_gstate_t **lp;         /* [max_len + 1] the state at each depth */
    bool               *idle;       /* [max_len + 1] bt_gstate_string_idle */
    bt_gmentry_t       *tab;        /* open addressing, power of two */
    size_t              tab_cap, tab_n, max_entries;
    uint8_t            *key;        /* scratch key */
    bt_gmasker_stats_t  stats;
};

struct bt_gmatcher {
    bt_gmasker_t *m;
    bt_gstate_t  *st, *tmp[2];
    bool          ended;             /* EOS accepted */
    uint64_t     *none;              /* the empty mask, after EOS */
};

static uint64_t bt_gmask_hash(const uint8_t *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;

    for (size_t i = 0; i < n; i++) {
        h = (h ^ p[i]) * 0x100000001b3ull;
    }
    return h;
}

void bt_gmasker_destroy(bt_gmasker_t *m)
{
    if (m == NULL) {
        return;
    }
    for (size_t i = 0; m->tab != NULL && i < m->tab_cap; i++) {
        free(m->tab[i].key);
        free(m->tab[i].mask);
    }
    free(m->tab);
    free(m->levels);
    free(m->lp);
    free(m->idle);
    free(m->key);
    free(m);
}

bt_status_t bt_gmasker_create(const bt_grammar_t *g, const bt_gvocab_t *v,
                              size_t cache_bytes, bt_gmasker_t **masker_p)
{
    bt_gmasker_t *m = calloc(1, sizeof(*m));
    size_t per;

    if (m == NULL) {
        return BT_ERR_NO_MEMORY;
    }
    m->g = g;
    m->v = v;
    m->words = ((size_t)v->n_vocab + 63) / 64;
    if (m->words == 0) {
        m->words = 1;
    }
    per = m->words * 8 + 512;
    m->max_entries = (cache_bytes ? cache_bytes : (64u << 20)) / per;
    if (m->max_entries < 16) {
        m->max_entries = 16;
    }
    for (m->tab_cap = 32; m->tab_cap < 2 * m->max_entries; m->tab_cap *= 2) {
    }
    m->tab = calloc(m->tab_cap, sizeof(*m->tab));
    m->levels = malloc(((size_t)v->max_len + 1) * sizeof(bt_gstate_t));
    m->lp = malloc(((size_t)v->max_len + 1) * sizeof(*m->lp));
    m->idle = malloc(((size_t)v->max_len + 1) * sizeof(*m->idle));
    m->key = malloc(BT_GMASK_KEY_MAX);
    if (m->tab == NULL || m->levels == NULL || m->lp == NULL ||
        m->idle == NULL || m->key == NULL) {
        bt_gmasker_destroy(m);
        return BT_ERR_NO_MEMORY;
    }
    *masker_p = m;
    return BT_OK;
}

void bt_gmasker_stats(const bt_gmasker_t *m, bt_gmasker_stats_t *stats_p)
{
    *stats_p = m->stats;
}

static void bt_gmask_flush(bt_gmasker_t *m)
{
    for (size_t i = 0; i < m->tab_cap; i++) {
        free(m->tab[i].key);
        free(m->tab[i].mask);
    }
    memset(m->tab, 0, m->tab_cap * sizeof(*m->tab));
    m->tab_n = 0;
    m->stats.flushes++;
}

/* Walks the trie from state s into mask (cleared first). lp[d] is the
 * state after the first d bytes of the current path: a plain string byte
 * in an idle string leaves it as it is (no step, no copy). */
static void bt_gmask_walk(bt_gmasker_t *m, const bt_gstate_t *s, uint64_t *mask)
{
    const bt_gvocab_t *v = m->v;
    bt_gstate_t *lv = m->levels;
    const bt_gstate_t **lp = m->lp;
    bool *idle = m->idle;

    memset(mask, 0, m->words * 8);
    lp[0] = s;
    idle[0] = bt_gstate_string_idle(m->g, s);
    for (uint32_t i = 0; i < v->n_nodes;) {
        const bt_gtrie_t *nd = &v->nodes[i];
        const uint16_t d = nd->depth;

        if (idle[d - 1] && bt_gbyte_plain(nd->byte)) {
            lp[d] = lp[d - 1];
            idle[d] = true;
        } else {
            bt_gstate_step(m->g, lp[d - 1], nd->byte, &lv[d]);
            if (lv[d].n_stacks == 0) {
                i = nd->skip;
                continue;
            }
            lp[d] = &lv[d];
            idle[d] = bt_gstate_string_idle(m->g, &lv[d]);
        }
        for (uint32_t k = 0; k < nd->n_tok; k++) {
            uint32_t id = v->toks[nd->tok_first + k];

            mask[id / 64] |= 1ull << (id % 64);
        }
        i++;
    }
    if (v->eos_id >= 0 && bt_gstate_complete(m->g, s)) {
        mask[v->eos_id / 64] |= 1ull << (v->eos_id % 64);
    }
}

/* The mask of state s: from the cache, or walked and cached. */
static const uint64_t *bt_gmask_get(bt_gmasker_t *m, const bt_gstate_t *s)
{
    size_t len = bt_gstate_key(m->g, s, m->v->max_len, m->key, BT_GMASK_KEY_MAX);
    uint64_t h = bt_gmask_hash(m->key, len);
    size_t i = h & (m->tab_cap - 1);
    bt_gmentry_t *e;

    for (;; i = (i + 1) & (m->tab_cap - 1)) {
        e = &m->tab[i];
        if (e->key == NULL) {
            break;
        }
        if (e->hash == h && e->key_len == len &&
            memcmp(e->key, m->key, len) == 0) {
            m->stats.hits++;
            return e->mask;
        }
    }
    m->stats.misses++;
    if (m->tab_n >= m->max_entries) {
        bt_gmask_flush(m);
        for (i = h & (m->tab_cap - 1); m->tab[i].key != NULL;
             i = (i + 1) & (m->tab_cap - 1)) {
        }
        e = &m->tab[i];
    }
    e->key = malloc(len ? len : 1);
    e->mask = malloc(m->words * 8);
    if (e->key == NULL || e->mask == NULL) {
        free(e->key);
        free(e->mask);
        e->key = NULL;
        e->mask = NULL;
        return NULL;
    }
    memcpy(e->key, m->key, len);
    e->key_len = (uint32_t)len;
    e->hash = h;
    m->tab_n++;
    bt_gmask_walk(m, s, e->mask);
    return e->mask;
}

void bt_gmatcher_destroy(bt_gmatcher_t *mt)
{
    if (mt == NULL) {
        return;
    }
    free(mt->st);
    free(mt->tmp[0]);
    free(mt->tmp[1]);
    free(mt->none);
    free(mt);
}

bt_status_t bt_gmatcher_create(bt_gmasker_t *m, bt_gmatcher_t **matcher_p)
{
    bt_gmatcher_t *mt = calloc(1, sizeof(*mt));

    if (mt == NULL) {
        return BT_ERR_NO_MEMORY;
    }
    mt->m = m;
    mt->st = malloc(sizeof(*mt->st));
    mt->tmp[0] = malloc(sizeof(bt_gstate_t));
    mt->tmp[1] = malloc(sizeof(bt_gstate_t));
    mt->none = calloc(m->words, 8);
    if (mt->st == NULL || mt->tmp[0] == NULL || mt->tmp[1] == NULL ||
        mt->none == NULL) {
        bt_gmatcher_destroy(mt);
        return BT_ERR_NO_MEMORY;
    }
    bt_gstate_init(m->g, mt->st);
    *matcher_p = mt;
    return BT_OK;
}

bt_status_t bt_gmatcher_clone(const bt_gmatcher_t *src,
                              bt_gmatcher_t **matcher_p)
{
    bt_gmatcher_t *mt;
    bt_status_t st = bt_gmatcher_create(src->m, &mt);

    if (st != BT_OK) {
        return st;
    }
    memcpy(mt->st, src->st, bt_gstate_size(src->st));
    mt->ended = src->ended;
    *matcher_p = mt;
    return BT_OK;
}

bool bt_gmatcher_complete(const bt_gmatcher_t *mt)
{
    return mt->ended || bt_gstate_complete(mt->m->g, mt->st);
}

bt_status_t bt_gmatcher_feed(bt_gmatcher_t *mt, const uint8_t *bytes,
                             size_t len)
{
    const bt_gstate_t *cur = mt->st;

    if (mt->ended) {
        return len == 0 ? BT_OK : BT_ERR_INVALID_ARG;
    }
    /* two scratch states in turn; st changes only when every byte fits */
    for (size_t i = 0; i < len; i++) {
        bt_gstate_t *next = cur == mt->tmp[0] ? mt->tmp[1] : mt->tmp[0];

        bt_gstate_step(mt->m->g, cur, bytes[i], next);
        if (next->n_stacks == 0) {
            return BT_ERR_INVALID_ARG;
        }
        cur = next;
    }
    if (cur != mt->st) {
        memcpy(mt->st, cur, bt_gstate_size(cur));
    }
    return BT_OK;
}

bt_status_t bt_gmatcher_accept(bt_gmatcher_t *mt, int32_t token)
{
    const bt_gvocab_t *v = mt->m->v;

    if (token < 0 || (uint32_t)token >= v->n_vocab || mt->ended) {
        return BT_ERR_INVALID_ARG;
    }
    if (token == v->eos_id) {
        if (!bt_gstate_complete(mt->m->g, mt->st)) {
            return BT_ERR_INVALID_ARG;
        }
        mt->ended = true;
        return BT_OK;
    }
    if (v->bytes[token] == NULL) {
        return BT_ERR_INVALID_ARG;
    }
    return bt_gmatcher_feed(mt, v->bytes[token], v->lens[token]);
}

const uint64_t *bt_gmatcher_mask(bt_gmatcher_t *mt)
{
    return mt->ended ? mt->none : bt_gmask_get(mt->m, mt->st);
}

bt_status_t bt_gmatcher_apply(bt_gmatcher_t *mt, float *logits,
                              size_t n_logits)
{
    const uint64_t *mask = bt_gmatcher_mask(mt);
    const size_t n_vocab = mt->m->v->n_vocab;
    const size_t n = n_logits < n_vocab ? n_logits : n_vocab;
    size_t allowed = 0;

    if (mask == NULL) {
        return BT_ERR_NO_MEMORY;
    }
    for (size_t w = 0; w * 64 < n; w++) {
        uint64_t bits = mask[w];
        size_t base = w * 64, end = base + 64 < n ? base + 64 : n;

        if (bits == ~0ull && end - base == 64) {
            allowed += 64;
            continue;
        }
        if (bits == 0) {
            for (size_t i = base; i < end; i++) {
                logits[i] = -INFINITY;
            }
            continue;
        }
        for (size_t i = base; i < end; i++) {
            if ((bits >> (i - base)) & 1) {
                allowed++;
            } else {
                logits[i] = -INFINITY;
            }
        }
    }
    for (size_t i = n; i < n_logits; i++) {
        logits[i] = -INFINITY;
    }
    return allowed > 0 ? BT_OK : BT_ERR_INVALID_ARG;
}
