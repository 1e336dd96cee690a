/* Constrained decoding: JSON Schema → a pushdown automaton over bytes →
 * the set of vocabulary tokens that keep the output a valid prefix
 * (docs/internals/grammar.md).
 *
 * Three objects:
 *   bt_grammar_t   a compiled schema; immutable, shareable between threads;
 *   bt_gvocab_t    a vocabulary as byte strings in a preorder trie;
 *                  immutable, one per tokenizer;
 *   bt_gmasker_t   (grammar, vocabulary) with a cache of masks per
 *                  automaton state; one thread at a time (the nodes sample
 *                  on their loop thread);
 *   bt_gmatcher_t  one sequence's automaton state, advanced by the tokens
 *                  it emits; it borrows its masker.
 *
 * The mask is a pure function of the state (the cache only saves time), so
 * sampling under a grammar stays deterministic and batch-invariant, and a
 * sequence rebuilt by replaying its tokens (failover) is in the same state.
 */
#ifndef BT_ENGINE_GRAMMAR_H
#define BT_ENGINE_GRAMMAR_H

#include "base/status.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BT_GRAMMAR_MAX_SCHEMA   (256u << 10) /* schema text, bytes */
#define BT_GRAMMAR_MAX_DEPTH    16           /* schema nesting */
#define BT_GRAMMAR_MAX_NODES    4096         /* compiled schema nodes */
#define BT_GRAMMAR_MAX_ALTS     64           /* anyOf / type list / enum size */
#define BT_GRAMMAR_MAX_PROPS    256          /* properties of one object */
#define BT_GRAMMAR_MAX_LITERAL  (64u << 10)  /* all enum/const/key bytes */
#define BT_GRAMMAR_MAX_ITEMS    4096         /* minItems / maxItems bound */
#define BT_GRAMMAR_MAX_LENGTH   65536        /* minLength / maxLength bound */
#define BT_GRAMMAR_ERR_SIZE     256

typedef enum {
    BT_GRAMMAR_JSON_OBJECT = 1, /* any JSON object */
    BT_GRAMMAR_JSON_SCHEMA = 2, /* the given schema */
} bt_grammar_kind_t;

typedef struct bt_grammar bt_grammar_t;

/* Compiles `schema` (len bytes of JSON text; ignored for JSON_OBJECT).
 * On error returns BT_ERR_INVALID_ARG (BT_ERR_TOO_LARGE past a limit) and
 * writes one line to err naming the keyword and where it is, e.g.
 * "unsupported schema keyword 'pattern' at /properties/id". */
bt_status_t bt_grammar_compile(bt_grammar_kind_t kind, const char *schema,
                               size_t len, bt_grammar_t **grammar_p,
                               char *err, size_t err_size);
void bt_grammar_destroy(bt_grammar_t *grammar); /* NULL-safe */

/* ---- vocabulary ---- */

typedef struct bt_gvocab bt_gvocab_t;

/* `n_vocab` tokens; token i is bytes[i] (lens[i] bytes). A NULL or empty
 * entry is never allowed (special and unused ids). `eos_id` (-1: none) is
 * allowed exactly where the document is complete. The bytes are copied. */
bt_status_t bt_gvocab_create(uint32_t n_vocab, const uint8_t *const *bytes,
                             const uint32_t *lens, int32_t eos_id,
                             bt_gvocab_t **vocab_p);
void bt_gvocab_destroy(bt_gvocab_t *vocab); /* NULL-safe */
uint32_t bt_gvocab_size(const bt_gvocab_t *vocab);

/* ---- masks ---- */

typedef struct bt_gmasker bt_gmasker_t;

/* Both must outlive the masker. `cache_bytes` bounds the mask cache (0:
 * 64 MiB); when full it is emptied. */
bt_status_t bt_gmasker_create(const bt_grammar_t *grammar,
                              const bt_gvocab_t *vocab, size_t cache_bytes,
                              bt_gmasker_t **masker_p);
void bt_gmasker_destroy(bt_gmasker_t *masker); /* NULL-safe */

typedef struct {
    uint64_t hits;     /* masks served from the cache */
    uint64_t misses;   /* masks computed by walking the trie */
    uint64_t flushes;  /* times the cache was emptied */
} bt_gmasker_stats_t;
void bt_gmasker_stats(const bt_gmasker_t *masker, bt_gmasker_stats_t *stats_p);

typedef struct bt_gmatcher bt_gmatcher_t;

/* A matcher at the start of the document. The masker must outlive it. */
bt_status_t bt_gmatcher_create(bt_gmasker_t *masker,
                               bt_gmatcher_t **matcher_p);
void bt_gmatcher_destroy(bt_gmatcher_t *matcher); /* NULL-safe */

/* A copy of `src` in its current state (same masker). */
bt_status_t bt_gmatcher_clone(const bt_gmatcher_t *src,
                              bt_gmatcher_t **matcher_p);

/* Advances by one token. BT_ERR_INVALID_ARG (state unchanged) when the
 * token is not allowed here. EOS is allowed only where complete, and
 * leaves the matcher finished: nothing is allowed after it. */
bt_status_t bt_gmatcher_accept(bt_gmatcher_t *matcher, int32_t token);

/* Advances by raw bytes (all or nothing); BT_ERR_INVALID_ARG when they
 * do not continue a valid prefix. For tests and tools. */
bt_status_t bt_gmatcher_feed(bt_gmatcher_t *matcher, const uint8_t *bytes,
                             size_t len);

/* True when the output so far is a whole document. */
bool bt_gmatcher_complete(const bt_gmatcher_t *matcher);

/* The allowed tokens for the next step as a bitset of
 * ceil(n_vocab / 64) words, bit i of word i / 64 for token i (borrowed;
 * valid until the next call on this matcher or its masker).
 * NULL on out of memory. */
const uint64_t *bt_gmatcher_mask(bt_gmatcher_t *matcher);

/* Sets logits[i] = -inf for every token not allowed (n_logits may exceed
 * the vocabulary: those ids are never allowed). BT_ERR_NO_MEMORY, or
 * BT_ERR_INVALID_ARG when no token is allowed (cannot happen for a
 * compiled grammar; checked anyway). */
bt_status_t bt_gmatcher_apply(bt_gmatcher_t *matcher, float *logits,
                              size_t n_logits);

#endif
