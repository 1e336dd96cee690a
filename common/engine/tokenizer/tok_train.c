/* Byte-level BPE trainer for the built-in model (baton-mkmodel).
 *
 * Words are the Llama-3 regex pieces of the corpus, counted once each. The
 * classic incremental algorithm: pair counts weighted by word frequency,
 * each pair knowing the words it occurs in, a max-heap with lazy deletion
 * (a popped entry whose count is stale is pushed again with the current
 * count). Merging a pair rewrites only the words that hold it. Ties go to
 * the smallest (left id, right id), so the output is a pure function of the
 * input. */
#include "tok_int.h"

#include "base/array.h"
#include "base/json.h"
#include "base/log.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    int32_t *syms;
    int32_t  len;
    int64_t  count;
} train_word_t;

typedef struct {
    int32_t  a, b;
    int64_t  count;
    int32_t *words;   /* word indexes, possibly stale, no adjacent repeats */
    int32_t  n_words;
    int32_t  cap_words;
    uint32_t touched; /* merge step that last changed count */
} train_pair_t;

typedef struct {
    int64_t count;
    int32_t a, b;
} heap_ent_t;

typedef struct {
    /* words */
    train_word_t *words;
    size_t        n_words, cap_words;
    /* pairs: growable open addressing, slot = pair index + 1 */
    train_pair_t *pairs;
    size_t        n_pairs, cap_pairs;
    int32_t      *pair_slots;
    size_t        pair_mask;
    /* heap */
    heap_ent_t   *heap;
    size_t        n_heap, cap_heap;
    /* tokens */
    bt_buf_t      pool;
    tok_str_t    *tok_str;
    int32_t       n_tok;
    tok_idmap_t   tok_map;
    /* scratch */
    int32_t      *touched;
    size_t        n_touched, cap_touched;
} trainer_t;

static size_t pair_hash(int32_t a, int32_t b, size_t mask)
{
    uint64_t k = ((uint64_t)(uint32_t)a << 32 | (uint32_t)b) *
                 0x9e3779b97f4a7c15ull;
    return (size_t)(k >> 32) & mask;
}

static bt_status_t pairs_rehash(trainer_t *t)
{
    size_t size = (t->pair_mask + 1) * 2;
    int32_t *slots = calloc(size, sizeof(*slots));

    if (slots == NULL)
        return BT_ERR_NO_MEMORY;
    for (size_t i = 0; i < t->n_pairs; i++) {
        size_t s = pair_hash(t->pairs[i].a, t->pairs[i].b, size - 1);
        while (slots[s] != 0)
            s = (s + 1) & (size - 1);
        slots[s] = (int32_t)i + 1;
    }
    free(t->pair_slots);
    t->pair_slots = slots;
    t->pair_mask = size - 1;
    return BT_OK;
}

/* Index of pair (a, b), created with count 0 when absent; -1 on OOM. */
static int32_t pair_get(trainer_t *t, int32_t a, int32_t b)
{
    size_t s = pair_hash(a, b, t->pair_mask);
    train_pair_t *p;

    for (;;) {
        int32_t slot = t->pair_slots[s];
        if (slot == 0)
            break;
        p = &t->pairs[slot - 1];
        if (p->a == a && p->b == b)
            return slot - 1;
        s = (s + 1) & t->pair_mask;
    }
    if (BT_ARRAY_RESERVE(t->pairs, t->cap_pairs, t->n_pairs + 1, 16) != BT_OK)
        return -1;
    p = &t->pairs[t->n_pairs];
    memset(p, 0, sizeof(*p));
    p->a = a;
    p->b = b;
    t->pair_slots[s] = (int32_t)t->n_pairs + 1;
    t->n_pairs++;
    if (2 * t->n_pairs > t->pair_mask && pairs_rehash(t) != BT_OK)
        return -1;
    return (int32_t)t->n_pairs - 1;
}

static bool heap_less(const heap_ent_t *x, const heap_ent_t *y)
{
    /* true when x should come out after y */
    if (x->count != y->count)
        return x->count < y->count;
    if (x->a != y->a)
        return x->a > y->a;
    return x->b > y->b;
}

static bt_status_t heap_push(trainer_t *t, int64_t count, int32_t a,
                             int32_t b)
{
    size_t i;

    if (BT_ARRAY_RESERVE(t->heap, t->cap_heap, t->n_heap + 1, 16) != BT_OK)
        return BT_ERR_NO_MEMORY;
    i = t->n_heap++;
    t->heap[i] = (heap_ent_t){count, a, b};
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (!heap_less(&t->heap[up], &t->heap[i]))
            break;
        heap_ent_t tmp = t->heap[up];
        t->heap[up] = t->heap[i];
        t->heap[i] = tmp;
        i = up;
    }
    return BT_OK;
}

static heap_ent_t heap_pop(trainer_t *t)
{
    heap_ent_t top = t->heap[0];
    size_t i = 0;

    t->heap[0] = t->heap[--t->n_heap];
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < t->n_heap && heap_less(&t->heap[m], &t->heap[l]))
            m = l;
        if (r < t->n_heap && heap_less(&t->heap[m], &t->heap[r]))
            m = r;
        if (m == i)
            break;
        heap_ent_t tmp = t->heap[m];
        t->heap[m] = t->heap[i];
        t->heap[i] = tmp;
        i = m;
    }
    return top;
}

/* Adds `delta` occurrences of every adjacent pair of word w. */
static bt_status_t word_pairs_add(trainer_t *t, int32_t w, int64_t delta,
                                  uint32_t step)
{
    train_word_t *word = &t->words[w];

    for (int32_t i = 0; i + 1 < word->len; i++) {
        int32_t pi = pair_get(t, word->syms[i], word->syms[i + 1]);
        train_pair_t *p;
        if (pi < 0)
            return BT_ERR_NO_MEMORY;
        p = &t->pairs[pi];
        p->count += delta;
        if (delta > 0 &&
            (p->n_words == 0 || p->words[p->n_words - 1] != w)) {
            size_t cap = (size_t)p->cap_words;
            if (BT_ARRAY_RESERVE(p->words, cap, (size_t)p->n_words + 1, 16) != BT_OK)
                return BT_ERR_NO_MEMORY;
            p->cap_words = (int32_t)cap;
            p->words[p->n_words++] = w;
        }
        if (p->touched != step) {
            p->touched = step;
            if (BT_ARRAY_RESERVE(t->touched, t->cap_touched, t->n_touched + 1, 16) != BT_OK)
                return BT_ERR_NO_MEMORY;
            t->touched[t->n_touched++] = pi;
        }
    }
    return BT_OK;
}

static bt_status_t add_token(trainer_t *t, const char *s, size_t len,
                             int32_t *id_p)
{
    int32_t id;

    if (t->n_tok > 0) {
        id = tok_idmap_find(&t->tok_map, t->tok_str, t->pool.data, s, len);
        if (id >= 0) {
            *id_p = id;
            return BT_OK;
        }
    }
    id = t->n_tok;
    t->tok_str[id].off = (uint32_t)t->pool.len;
    t->tok_str[id].len = (uint32_t)len;
    if (bt_buf_append(&t->pool, s, len) != BT_OK)
        return BT_ERR_NO_MEMORY;
    tok_idmap_insert(&t->tok_map, t->tok_str, t->pool.data, id);
    t->n_tok++;
    *id_p = id;
    return BT_OK;
}

static bt_status_t count_words(trainer_t *t, const char *corpus, size_t len)
{
    tok_regex_t re;
    pcre2_match_data *md = NULL;
    tok_idmap_t wmap = {0};
    tok_str_t *wstr = NULL;
    size_t cap_wstr = 0, pos = 0, ms, me;
    bt_status_t st;
    int rc;

    st = tok_regex_compile(&re, tok_re_llama3, strlen(tok_re_llama3),
                           false, NULL, 0);
    if (st != BT_OK)
        return BT_ERR_INTERNAL;
    md = pcre2_match_data_create_from_pattern(re.code, NULL);
    st = md ? tok_idmap_init(&wmap, len / 2 + 16) : BT_ERR_NO_MEMORY;
    if (st != BT_OK)
        goto out;
    for (;;) {
        size_t start, end;
        rc = tok_regex_next(&re, md, corpus, len, pos, &ms, &me);
        if (rc < 0) {
            st = BT_ERR_INTERNAL;
            goto out;
        }
        /* A gap between matches is a word too (Split "Isolated"). */
        start = pos;
        end = rc ? ms : len;
        for (int k = 0; k < 2; k++) {
            if (end > start) {
                int32_t w = (int32_t)t->n_words;
                st = BT_ARRAY_RESERVE(wstr, cap_wstr, t->n_words + 1, 16);
                if (st == BT_OK)
                    st = BT_ARRAY_RESERVE(t->words, t->cap_words, t->n_words + 1, 16);
                if (st != BT_OK)
                    goto out;
                wstr[w].off = (uint32_t)start;
                wstr[w].len = (uint32_t)(end - start);
                int32_t old = tok_idmap_insert(&wmap, wstr, corpus, w);
                if (old >= 0) {
                    t->words[old].count++;
                } else {
                    train_word_t *word = &t->words[w];
                    word->len = (int32_t)(end - start);
                    word->count = 1;
                    word->syms = malloc((size_t)word->len *
                                        sizeof(*word->syms));
                    if (word->syms == NULL) {
                        st = BT_ERR_NO_MEMORY;
                        goto out;
                    }
                    for (int32_t i = 0; i < word->len; i++)
                        word->syms[i] = (unsigned char)corpus[start + i];
                    t->n_words++;
                }
            }
            if (!rc)
                break;
            start = ms;
            end = me;
        }
        if (!rc)
            break;
        pos = me;
    }
    st = BT_OK;
out:
    free(wstr);
    tok_idmap_cleanup(&wmap);
    pcre2_match_data_free(md);
    tok_regex_cleanup(&re);
    return st;
}

/* Replaces every (a, b) in word w by `id`, left to right; true if any. */
static bool word_merge(train_word_t *word, int32_t a, int32_t b, int32_t id)
{
    int32_t i = 0, j = 0;
    bool any = false;

    while (i < word->len) {
        if (i + 1 < word->len && word->syms[i] == a &&
            word->syms[i + 1] == b) {
            word->syms[j++] = id;
            i += 2;
            any = true;
        } else {
            word->syms[j++] = word->syms[i++];
        }
    }
    word->len = j;
    return any;
}

static bool word_has(const train_word_t *word, int32_t a, int32_t b)
{
    for (int32_t i = 0; i + 1 < word->len; i++)
        if (word->syms[i] == a && word->syms[i + 1] == b)
            return true;
    return false;
}

static bt_status_t learn(trainer_t *t, int target, json_t *merges)
{
    uint32_t step = 1;
    bt_status_t st;
    char tmp[2 * BT_TOK_MAX_TOKEN_LEN];

    for (size_t w = 0; w < t->n_words; w++) {
        st = word_pairs_add(t, (int32_t)w, t->words[w].count, step);
        if (st != BT_OK)
            return st;
    }
    for (size_t i = 0; i < t->n_touched; i++) {
        train_pair_t *p = &t->pairs[t->touched[i]];
        if (p->count > 0 && heap_push(t, p->count, p->a, p->b) != BT_OK)
            return BT_ERR_NO_MEMORY;
    }
    t->n_touched = 0;

    while (t->n_tok < target && t->n_heap > 0) {
        heap_ent_t top = heap_pop(t);
        int32_t pi = pair_get(t, top.a, top.b);
        train_pair_t *p;
        tok_str_t sa, sb;
        int32_t id;

        if (pi < 0)
            return BT_ERR_NO_MEMORY;
        p = &t->pairs[pi];
        if (p->count <= 0)
            continue;
        if (p->count != top.count) {
            if (heap_push(t, p->count, p->a, p->b) != BT_OK)
                return BT_ERR_NO_MEMORY;
            continue;
        }
        sa = t->tok_str[top.a];
        sb = t->tok_str[top.b];
        if ((size_t)sa.len + sb.len > BT_TOK_MAX_TOKEN_LEN)
            return BT_ERR_INTERNAL;
        memcpy(tmp, t->pool.data + sa.off, sa.len);
        memcpy(tmp + sa.len, t->pool.data + sb.off, sb.len);
        st = add_token(t, tmp, (size_t)sa.len + sb.len, &id);
        if (st != BT_OK)
            return st;
        {
            json_t *m = json_array();
            char ma[2 * BT_TOK_MAX_TOKEN_LEN], mb[2 * BT_TOK_MAX_TOKEN_LEN];
            size_t la = 0, lb = 0;
            /* Written in the byte-level alphabet, as the vocab is. */
            for (uint32_t k = 0; k < sa.len; k++)
                la += tok_utf8_encode(
                    tok_byte_to_cp[(unsigned char)t->pool.data[sa.off + k]],
                    ma + la);
            for (uint32_t k = 0; k < sb.len; k++)
                lb += tok_utf8_encode(
                    tok_byte_to_cp[(unsigned char)t->pool.data[sb.off + k]],
                    mb + lb);
            if (m == NULL ||
                json_array_append_new(m, json_stringn(ma, la)) != 0 ||
                json_array_append_new(m, json_stringn(mb, lb)) != 0 ||
                json_array_append_new(merges, m) != 0) {
                json_decref(m);
                return BT_ERR_NO_MEMORY;
            }
        }
        step++;
        /* p may move as pairs grow: copy what the loop needs. */
        int32_t a = top.a, b = top.b, n_words = p->n_words;
        int32_t *words = p->words;
        p->words = NULL;
        p->n_words = p->cap_words = 0;
        for (int32_t k = 0; k < n_words; k++) {
            int32_t w = words[k];
            train_word_t *word = &t->words[w];
            if (!word_has(word, a, b))
                continue;
            st = word_pairs_add(t, w, -word->count, step);
            if (st == BT_OK) {
                word_merge(word, a, b, id);
                st = word_pairs_add(t, w, word->count, step);
            }
            if (st != BT_OK) {
                free(words);
                return st;
            }
        }
        free(words);
        for (size_t i = 0; i < t->n_touched; i++) {
            train_pair_t *q = &t->pairs[t->touched[i]];
            if (q->count > 0 && heap_push(t, q->count, q->a, q->b) != BT_OK)
                return BT_ERR_NO_MEMORY;
        }
        t->n_touched = 0;
    }
    return BT_OK;
}

static json_t *bytelevel_json(bool add_prefix_space, bool trim, bool regex)
{
    return json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel",
                     "add_prefix_space", add_prefix_space, "trim_offsets",
                     trim, "use_regex", regex);
}

static bt_status_t write_json(trainer_t *t, json_t *merges,
                              const char *const *special, size_t n_special,
                              bt_buf_t *out)
{
    json_t *root = NULL, *model = NULL, *pre = NULL;
    json_t *bl_pre, *bl_post, *bl_dec, *vocab, *added;
    char *text = NULL;
    bt_status_t st = BT_ERR_NO_MEMORY;
    char tmp[4 * BT_TOK_MAX_TOKEN_LEN];

    vocab = json_object();
    added = json_array();
    bl_pre = bytelevel_json(false, true, false);
    bl_post = bytelevel_json(true, false, true);
    bl_dec = bytelevel_json(true, true, true);
    if (vocab == NULL || added == NULL || bl_pre == NULL || bl_post == NULL ||
        bl_dec == NULL)
        goto out;
    for (int32_t id = 0; id < t->n_tok; id++) {
        tok_str_t s = t->tok_str[id];
        size_t n = 0;
        for (uint32_t k = 0; k < s.len; k++)
            n += tok_utf8_encode(
                tok_byte_to_cp[(unsigned char)t->pool.data[s.off + k]],
                tmp + n);
        tmp[n] = 0;
        if (json_object_set_new(vocab, tmp, json_integer(id)) != 0)
            goto out;
    }
    for (size_t i = 0; i < n_special; i++) {
        json_t *a = json_pack("{s:I, s:s, s:b, s:b, s:b, s:b, s:b}", "id",
                              (json_int_t)(t->n_tok + (int32_t)i), "content",
                              special[i], "single_word", 0, "lstrip", 0,
                              "rstrip", 0, "normalized", 0, "special", 1);
        if (a == NULL || json_array_append_new(added, a) != 0)
            goto out;
    }
    pre = json_pack("{s:s, s:[{s:s, s:{s:s}, s:s, s:b}, O]}", "type",
                    "Sequence", "pretokenizers", "type", "Split", "pattern",
                    "Regex", tok_re_llama3, "behavior", "Isolated", "invert",
                    0, bl_pre);
    if (pre == NULL)
        goto out;
    model = json_pack(
        "{s:s, s:n, s:n, s:n, s:n, s:b, s:b, s:b, s:O, s:O}", "type", "BPE",
        "dropout", "unk_token", "continuing_subword_prefix",
        "end_of_word_suffix", "fuse_unk", 0, "byte_fallback", 0,
        "ignore_merges", 0, "vocab", vocab, "merges", merges);
    if (model == NULL)
        goto out;
    root = json_pack("{s:s, s:n, s:n, s:O, s:n, s:O, s:O, s:O, s:O}",
                     "version", "1.0", "truncation", "padding",
                     "added_tokens", added, "normalizer", "pre_tokenizer",
                     pre, "post_processor", bl_post, "decoder", bl_dec,
                     "model", model);
    if (root == NULL)
        goto out;
    text = bt_json_dump(root);
    if (text == NULL)
        goto out;
    st = bt_buf_append_str(out, text);
out:
    free(text);
    json_decref(root);
    json_decref(model);
    json_decref(pre);
    json_decref(bl_pre);
    json_decref(bl_post);
    json_decref(bl_dec);
    json_decref(vocab);
    json_decref(added);
    return st;
}

bt_status_t bt_tok_train_bytelevel_bpe(const char *corpus, size_t len,
                                       int vocab_size,
                                       const char *const *special_tokens,
                                       size_t n_special,
                                       bt_buf_t *tokenizer_json_out)
{
    trainer_t t;
    json_t *merges = NULL;
    bt_status_t st;
    int target;
    size_t bad;

    if (corpus == NULL || tokenizer_json_out == NULL ||
        (special_tokens == NULL && n_special > 0) || vocab_size < 0 ||
        vocab_size > BT_TOK_MAX_VOCAB || len > (1u << 30)) {
        bt_error("bpe train: invalid arguments");
        return BT_ERR_INVALID_ARG;
    }
    target = vocab_size - (int)n_special;
    if (target < 256) {
        bt_error("bpe train: vocab size %d leaves no room for 256 bytes and "
                 "%zu special tokens", vocab_size, n_special);
        return BT_ERR_INVALID_ARG;
    }
    bad = tok_utf8_validate(corpus, len);
    if (bad != len) {
        bt_error("bpe train: corpus is not valid UTF-8 at byte %zu", bad);
        return BT_ERR_INVALID_ARG;
    }
    for (size_t i = 0; i < n_special; i++) {
        size_t sl = special_tokens[i] ? strlen(special_tokens[i]) : 0;
        if (sl == 0 || sl > BT_TOK_MAX_TOKEN_LEN ||
            tok_utf8_validate(special_tokens[i], sl) != sl) {
            bt_error("bpe train: special token %zu is empty, too long or not "
                     "UTF-8", i);
            return BT_ERR_INVALID_ARG;
        }
        for (size_t j = 0; j < i; j++)
            if (strcmp(special_tokens[i], special_tokens[j]) == 0) {
                bt_error("bpe train: special token '%s' given twice",
                         special_tokens[i]);
                return BT_ERR_INVALID_ARG;
            }
    }

    memset(&t, 0, sizeof(t));
    bt_buf_init(&t.pool, (size_t)1 << 30);
    st = BT_ERR_NO_MEMORY;
    t.pair_slots = calloc(1024, sizeof(*t.pair_slots));
    t.pair_mask = 1023;
    t.tok_str = calloc((size_t)target, sizeof(*t.tok_str));
    merges = json_array();
    if (t.pair_slots == NULL || t.tok_str == NULL || merges == NULL ||
        tok_idmap_init(&t.tok_map, (size_t)target) != BT_OK)
        goto out;
    for (int b = 0; b < 256; b++) {
        char c = (char)b;
        int32_t id;
        st = add_token(&t, &c, 1, &id);
        if (st != BT_OK)
            goto out;
    }
    st = count_words(&t, corpus, len);
    if (st == BT_OK)
        st = learn(&t, target, merges);
    if (st != BT_OK)
        goto out;
    if (t.n_tok < target) {
        bt_error("bpe train: corpus too small: %d tokens learned, %d wanted",
                 t.n_tok, target);
        st = BT_ERR_INVALID_ARG;
        goto out;
    }
    st = write_json(&t, merges, special_tokens, n_special,
                    tokenizer_json_out);
out:
    if (st == BT_ERR_NO_MEMORY)
        bt_error("bpe train: out of memory");
    json_decref(merges);
    for (size_t i = 0; i < t.n_words; i++)
        free(t.words[i].syms);
    free(t.words);
    for (size_t i = 0; i < t.n_pairs; i++)
        free(t.pairs[i].words);
    free(t.pairs);
    free(t.pair_slots);
    free(t.heap);
    free(t.touched);
    free(t.tok_str);
    tok_idmap_cleanup(&t.tok_map);
    bt_buf_cleanup(&t.pool);
    return st;
}
