/* Internals of the grammar engine: the compiled schema graph (gschema.c),
 * the automaton's state and its step over one byte (gstep.c), shared with
 * the vocabulary trie (gvocab.c) and the masks (gmask.c). */
#ifndef BT_GRAMMAR_INT_H
#define BT_GRAMMAR_INT_H

#include "grammar.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- compiled schema: a graph of nodes (children by index) ---- */

typedef enum {
    BT_GN_ANYOF,    /* one of alts[] (anyOf, type lists, any value) */
    BT_GN_LITERAL,  /* one of lits[] (enum, const, true/false/null) */
    BT_GN_STRING,
    BT_GN_NUMBER,   /* integer when `integer` */
    BT_GN_OBJECT,   /* declared properties in order */
    BT_GN_OBJECT_ANY, /* any keys, values `items` */
    BT_GN_ARRAY,
} bt_gn_kind_t;

typedef struct {
    uint32_t key;      /* offset in grammar->bytes of the key as JSON text,
                          quotes included */
    uint32_t key_len;
    uint32_t value;    /* node */
    bool     required;
} bt_gprop_t;

typedef struct {
    bt_gn_kind_t kind;
    uint32_t first, n;       /* ANYOF: alts[first..]; LITERAL: lits[first..];
                                OBJECT: props[first..]; OBJECT_ANY: first =
                                the key string node */
    uint32_t items;          /* ARRAY, OBJECT_ANY: the value node */
    uint32_t min, max;       /* ARRAY: items; STRING: characters */
    uint32_t regex;          /* STRING: pattern, grammar->regexes[regex - 1];
                                0: none */
    bool     integer;        /* NUMBER */
    bool     has_lo, has_hi; /* NUMBER range */
    bool     lo_excl, hi_excl;
    double   lo, hi;
} bt_gnode_t;

typedef struct {
    uint32_t off, len;       /* in grammar->bytes */
} bt_glit_t;

/* A string pattern as a position automaton (gregex.c): a state is the
 * set of positions just matched, bit 63 = nothing matched yet. */
typedef struct {
    uint32_t n;              /* positions, at most 63 */
    bool     nullable;       /* the empty string matches */
    uint64_t first, last;
    uint64_t follow[63];
    uint8_t  cls[63][32];    /* the bytes each position matches */
} bt_gregex_t;

/* BT_ERR_INVALID_ARG with *why_p ("uses lookaround or named groups", ...)
 * for what the subset lacks. */
bt_status_t bt_gregex_compile(const char *pattern, size_t len,
                              bt_gregex_t *rx, const char **why_p);
uint64_t bt_gregex_start(void);
/* The set after byte c (0: no match can continue). */
uint64_t bt_gregex_step(const bt_gregex_t *rx, uint64_t set, uint8_t c);
bool bt_gregex_accepts(const bt_gregex_t *rx, uint64_t set);

struct bt_grammar {
    bt_gnode_t *nodes;
    uint32_t    n_nodes;
    size_t      cap_nodes;
    uint32_t   *alts;
    uint32_t    n_alts;
    size_t      cap_alts;
    bt_glit_t  *lits;
    uint32_t    n_lits;
    size_t      cap_lits;
    bt_gprop_t *props;
    uint32_t    n_props;
    size_t      cap_props;
    uint8_t    *bytes;
    uint32_t    n_bytes;
    size_t      cap_bytes;
    bt_gregex_t *regexes;
    uint32_t    n_regexes;
    size_t      cap_regexes;
    uint32_t    root;
    uint32_t    any;      /* the any-value node, UINT32_MAX until built */
};

/* ---- the automaton's state: a set of stacks of frames ---- */

#define BT_GSTACK_MAX_DEPTH 24   /* frames in one stack */
#define BT_GSTATE_MAX_STACKS 32  /* stacks in one state */
#define BT_GSTATE_MAX_FRAMES 256 /* frames in one state, all stacks */

typedef enum {
    BT_GP_START_WS,   /* a value; one space may come first */
    BT_GP_START,      /* a value */
    BT_GP_LIT,        /* a = literal index, v = bytes matched */
    BT_GP_STR,        /* in a string; a = characters; x = UTF-8 state;
                         v = pattern state */
    BT_GP_STR_ESC,    /* after a backslash */
    BT_GP_NUM_SIGN,   /* after '-' */
    BT_GP_NUM_ZERO,   /* integer part "0" */
    BT_GP_NUM_INT,    /* integer part; v = magnitude, a = digits */
    BT_GP_NUM_DOT,    /* after '.' */
    BT_GP_NUM_FRAC,   /* fraction; v = magnitude, a = digits, b = fraction digits */
    BT_GP_OBJ_KEY0,   /* after '{'; a = next property */
    BT_GP_OBJ_KEY_WS, /* after ','; one space may come */
    BT_GP_OBJ_KEY,    /* after ',' (and its space) */
    BT_GP_OBJ_NAME,   /* in a key; a = property, v = bytes matched */
    BT_GP_OBJ_COLON,  /* after a key; a = property */
    BT_GP_OBJ_AFTER,  /* after a value; a = next property */
    BT_GP_OANY_FIRST, /* after '{' of any-object */
    BT_GP_OANY_KEY_WS,
    BT_GP_OANY_KEY,
    BT_GP_OANY_COLON,
    BT_GP_OANY_AFTER,
    BT_GP_ARR_FIRST,  /* after '[' */
    BT_GP_ARR_AFTER,  /* after an item; a = items so far */
} bt_gphase_t;

#define BT_GX_NEG 1u      /* NUM: a '-' came first */

/* No implicit padding: frames are compared with memcmp. */
typedef struct {
    uint16_t node;
    uint8_t  phase;
    uint8_t  x;       /* STR: UTF-8 continuation state; NUM: flags */
    uint16_t b;
    uint16_t pad;
    int64_t  v;
    uint32_t a;
    uint32_t pad2;
} bt_gframe_t;

typedef struct {
    uint16_t    n_stacks;
    uint16_t    n_frames;
    uint16_t    start[BT_GSTATE_MAX_STACKS + 1]; /* stack i: frames
                                                    [start[i], start[i+1]) */
    bt_gframe_t f[BT_GSTATE_MAX_FRAMES];
} bt_gstate_t;

/* The state at the start of a document. */
void bt_gstate_init(const bt_grammar_t *g, bt_gstate_t *s);
/* out = s after byte `c`; out->n_stacks == 0 means rejected. */
void bt_gstate_step(const bt_grammar_t *g, const bt_gstate_t *s, uint8_t c,
                    bt_gstate_t *out);
/* Whether every plain ASCII string byte (0x20..0x7F but '"' and '\\')
 * leaves s unchanged: one stack, inside a string with no length bound
 * and no pending UTF-8 byte. The mask walk skips the step there. */
bool bt_gstate_string_idle(const bt_grammar_t *g, const bt_gstate_t *s);
static inline bool bt_gbyte_plain(uint8_t c)
{
    return c >= 0x20 && c <= 0x7F && c != '"' && c != '\\';
}
/* Whether the bytes so far form a whole document. */
bool bt_gstate_complete(const bt_grammar_t *g, const bt_gstate_t *s);
/* Bytes of s written to key (at most key_cap; returns the length, or 0
 * when it does not fit) such that equal keys give equal masks for tokens
 * of at most `tok_max` bytes: counters far from their bound are clamped. */
size_t bt_gstate_key(const bt_grammar_t *g, const bt_gstate_t *s,
                     uint32_t tok_max, uint8_t *key, size_t key_cap);
/* Bytes of the used part of s (to copy it). */
static inline size_t bt_gstate_size(const bt_gstate_t *s)
{
    return offsetof(bt_gstate_t, f) + s->n_frames * sizeof(bt_gframe_t);
}

/* Number range checks (gnum.c). */
bool bt_gnum_feasible(const bt_gnode_t *n, const bt_gframe_t *f,
                      uint8_t phase);
bool bt_gnum_in_range(const bt_gnode_t *n, const bt_gframe_t *f);

/* ---- vocabulary trie, preorder ---- */

typedef struct {
    uint8_t  byte;      /* edge from the parent */
    uint16_t depth;     /* 1 for the root's children */
    uint32_t skip;      /* index after this node's subtree */
    uint32_t tok_first; /* tokens ending here: vocab->toks[tok_first..] */
    uint32_t n_tok;
} bt_gtrie_t;

struct bt_gvocab {
    uint32_t    n_vocab;
    int32_t     eos_id;
    bt_gtrie_t *nodes;      /* the root is not stored */
    uint32_t    n_nodes;
    uint32_t   *toks;
    uint32_t    max_len;    /* longest token, bytes */
    uint8_t   **bytes;      /* per id, for accept(); NULL: never allowed */
    uint32_t   *lens;
};

#endif
