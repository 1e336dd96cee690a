/* Tokenizer internals shared by the tok_*.c files only. */
#ifndef BT_ENGINE_TOK_INT_H
#define BT_ENGINE_TOK_INT_H

#include "tokenizer.h"

#include "base/buf.h"
#include "base/status.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- utf-8 (tok_utf8.c) ---- */

/* Length of the valid UTF-8 character at s (1..4), 0 when invalid or
 * truncated. */
size_t tok_utf8_char_len(const unsigned char *s, size_t len);
/* Offset of the first invalid byte, or len when all is valid. */
size_t tok_utf8_validate(const char *s, size_t len);
/* Decodes the valid character at s; returns its length. */
size_t tok_utf8_decode(const char *s, size_t len, uint32_t *cp_p);
size_t tok_utf8_encode(uint32_t cp, char out[4]);
/* Appends `s` with invalid sequences replaced by U+FFFD, one per maximal
 * subpart (Rust's String::from_utf8_lossy). */
bt_status_t tok_utf8_append_lossy(bt_buf_t *out, const char *s, size_t len);

/* GPT-2 byte <-> unicode map. */
extern const uint16_t tok_byte_to_cp[256];
/* -1 when cp is not one of the 256 mapped code points. */
int tok_cp_to_byte(uint32_t cp);

/* ---- hash tables (tok_map.c) ---- */

typedef struct {
    uint32_t off;
    uint32_t len;
} tok_str_t;

/* String -> id over strings kept elsewhere (strs[id] in pool). */
typedef struct {
    int32_t *slots; /* id + 1; 0 = empty */
    size_t   mask;
} tok_idmap_t;

bt_status_t tok_idmap_init(tok_idmap_t *map, size_t n_expected);
void tok_idmap_cleanup(tok_idmap_t *map);
int32_t tok_idmap_find(const tok_idmap_t *map, const tok_str_t *strs,
                       const char *pool, const char *s, size_t len);
/* Returns the id already holding that string, or -1 after inserting. */
int32_t tok_idmap_insert(tok_idmap_t *map, const tok_str_t *strs,
                         const char *pool, int32_t id);
uint64_t tok_hash(const void *s, size_t len);

/* (left id, right id) -> (rank, merged id). */
typedef struct {
    uint64_t *keys; /* UINT64_MAX = empty */
    uint32_t *ranks;
    int32_t  *ids;
    size_t    mask;
} tok_pairmap_t;

bt_status_t tok_pairmap_init(tok_pairmap_t *map, size_t n_expected);
void tok_pairmap_cleanup(tok_pairmap_t *map);
/* false when the pair is already present (first rank kept). */
bool tok_pairmap_insert(tok_pairmap_t *map, int32_t a, int32_t b,
                        uint32_t rank, int32_t id);
bool tok_pairmap_find(const tok_pairmap_t *map, int32_t a, int32_t b,
                      uint32_t *rank_p, int32_t *id_p);

/* ---- regex over PCRE2 (tok_regex.c) ---- */

typedef struct {
    pcre2_code *code;
    bool        jit;
} tok_regex_t;

/* Compiles in UTF + UCP mode; a literal when `literal` is true. */
bt_status_t tok_regex_compile(tok_regex_t *re, const char *pattern,
                              size_t len, bool literal, char *err,
                              size_t err_size);
void tok_regex_cleanup(tok_regex_t *re);
/* Next non-empty match at or after `start` in valid UTF-8 `s`: 1 found,
 * 0 none, negative status on a matcher error. */
int tok_regex_next(const tok_regex_t *re, pcre2_match_data *md,
                   const char *s, size_t len, size_t start,
                   size_t *mstart_p, size_t *mend_p);
/* The GPT-2 and Llama-3 split regexes. */
extern const char tok_re_gpt2[];
extern const char tok_re_llama3[];

/* ---- pieces of text between pipeline steps (tok_pieces.c) ---- */

typedef struct {
    size_t off;   /* into text */
    size_t len;
    bool   first; /* begins at offset 0 of the original input */
} tok_piece_t;

typedef struct {
    bt_buf_t     text;
    tok_piece_t *v;
    size_t       n;
    size_t       cap;
} tok_pieces_t;

void tok_pieces_init(tok_pieces_t *p, size_t max_bytes);
void tok_pieces_cleanup(tok_pieces_t *p);
void tok_pieces_reset(tok_pieces_t *p);
/* Appends a piece with a copy of s (empty pieces are dropped). */
bt_status_t tok_pieces_add(tok_pieces_t *p, const char *s, size_t len,
                           bool first);
/* Opens a piece whose bytes the caller then appends to p->text. */
bt_status_t tok_pieces_open(tok_pieces_t *p, bool first);
/* Closes the open piece (dropped when empty). */
void tok_pieces_close(tok_pieces_t *p);

/* ---- pipeline components ---- */

typedef enum {
    TOK_NORM_SEQUENCE,
    TOK_NORM_PREPEND,
    TOK_NORM_REPLACE,
    TOK_NORM_NFC,
} tok_norm_type_t;

typedef struct tok_norm tok_norm_t;
struct tok_norm {
    tok_norm_type_t type;
    tok_norm_t     *children;   /* Sequence */
    size_t          n_children;
    char           *str;        /* Prepend: prefix; Replace: content */
    size_t          str_len;
    tok_regex_t     re;         /* Replace */
};

typedef enum {
    TOK_SPLIT_REMOVED,
    TOK_SPLIT_ISOLATED,
    TOK_SPLIT_MERGED_PREV,
    TOK_SPLIT_MERGED_NEXT,
    TOK_SPLIT_CONTIGUOUS,
} tok_split_behavior_t;

typedef enum {
    TOK_PRE_SEQUENCE,
    TOK_PRE_SPLIT,
    TOK_PRE_BYTELEVEL,
    TOK_PRE_METASPACE,
} tok_pre_type_t;

typedef enum {
    TOK_PREPEND_ALWAYS,
    TOK_PREPEND_FIRST,
    TOK_PREPEND_NEVER,
} tok_prepend_t;

typedef struct tok_pre tok_pre_t;
struct tok_pre {
    tok_pre_type_t       type;
    tok_pre_t           *children;
    size_t               n_children;
    tok_regex_t          re;          /* Split; ByteLevel with use_regex */
    bool                 has_re;
    tok_split_behavior_t behavior;
    bool                 invert;
    bool                 add_prefix_space; /* ByteLevel */
    uint32_t             replacement;      /* Metaspace code point */
    tok_prepend_t        prepend;          /* Metaspace */
    bool                 split;            /* Metaspace */
};

typedef enum {
    TOK_DEC_SEQUENCE,
    TOK_DEC_BYTELEVEL,
    TOK_DEC_BYTEFALLBACK,
    TOK_DEC_FUSE,
    TOK_DEC_STRIP,
    TOK_DEC_REPLACE,
    TOK_DEC_METASPACE,
} tok_dec_type_t;

typedef struct tok_dec tok_dec_t;
struct tok_dec {
    tok_dec_type_t type;
    tok_dec_t     *children;
    size_t         n_children;
    char          *pattern;  /* Replace: literal pattern */
    size_t         pattern_len;
    char          *content;  /* Replace: content; Strip: the character */
    size_t         content_len;
    size_t         start;    /* Strip */
    size_t         stop;
    uint32_t       replacement; /* Metaspace */
    tok_prepend_t  prepend;
};

typedef struct {
    tok_str_t str;  /* content, in tok->pool */
    int32_t id;
    bool    special;
    bool    lstrip;
    bool    rstrip;
    bool    single_word;
    bool    normalized;
} tok_added_t;

struct bt_tok {
    bt_buf_t      pool;        /* every string */
    tok_str_t    *model_str;   /* [n_model] model vocab strings by id */
    int32_t       n_model;     /* model ids are < n_model */
    tok_idmap_t   vocab;
    int32_t       byte_ids[256];       /* byte-level char of byte b, or -1 */
    int32_t       fallback_ids[256];   /* "<0xXX>" ids, or -1 */
    int32_t      *small_cp_ids;        /* [0x800] id of that one-char token */
    tok_pairmap_t merges;
    bool          ignore_merges;
    bool          byte_fallback;
    bool          fuse_unk;
    int32_t       unk_id;             /* -1: none */

    tok_added_t  *added;
    size_t        n_added;
    int32_t      *added_index;  /* [n_ids] index into added or -1 */
    int32_t      *added_order;  /* added indexes by (first byte, length desc) */
    uint32_t      added_first[257]; /* added_order range per first byte */
    bool          any_normalized_added; /* some added token is matched
                                           after normalization */

    int32_t       n_ids;        /* vocab size (largest id + 1) */

    tok_norm_t   *normalizer;   /* NULL: none */
    tok_pre_t    *pre;          /* NULL: none */
    tok_dec_t    *decoder;      /* NULL: none (tokens joined by spaces) */

    int32_t       post_pre[4];  /* ids put before a single sequence */
    size_t        n_post_pre;
    int32_t       post_post[4];
    size_t        n_post_post;

    int32_t       bos_id;
    int32_t       eos_id;
    char         *chat_template;
};

/* tok_load_parts.c: builds components from JSON; err names the field. */
bt_status_t tok_norm_parse(const void *json, tok_norm_t *norm, char *err,
                           size_t err_size);
void tok_norm_cleanup(tok_norm_t *norm);
bt_status_t tok_pre_parse(const void *json, tok_pre_t *pre, char *err,
                          size_t err_size);
void tok_pre_cleanup(tok_pre_t *pre);
bt_status_t tok_dec_parse(const void *json, tok_dec_t *dec, char *err,
                          size_t err_size);
void tok_dec_cleanup(tok_dec_t *dec);

/* tok_normalize.c: normalizes `in` into `out` (appended). */
bt_status_t tok_norm_apply(const tok_norm_t *norm, pcre2_match_data *md,
                           const char *in, size_t len, bt_buf_t *out);

/* tok_pretok.c: replaces `p` with the pieces after `pre`; `tmp` is
 * scratch space of the same bound. */
bt_status_t tok_pre_apply(const tok_pre_t *pre, pcre2_match_data *md,
                          tok_pieces_t *p, tok_pieces_t *tmp);

/* tok_bpe.c: appends the ids of one pre-tokenized word. */
bt_status_t tok_bpe_word(const bt_tok_t *tok, const char *w, size_t len,
                         bt_tok_ids_t *out);

/* tok_encode.c: inputs of at least this many bytes memoize BPE results per
 * call (tests set it to 0 or SIZE_MAX to compare both paths). */
extern size_t tok_cache_min_text;

/* tok_encode.c: builds added_order/added_first after loading. */
bt_status_t tok_added_index_build(bt_tok_t *tok);

/* tok_decode.c */
bt_status_t tok_decode_ids(const bt_tok_t *tok, const int32_t *ids,
                           size_t n, bool skip_special, bt_buf_t *out,
                           char *err, size_t err_size);

void tok_err(char *err, size_t err_size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
