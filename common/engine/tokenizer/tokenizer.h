/* Tokenizer: loads a Hugging Face tokenizer.json (+ tokenizer_config.json)
 * and encodes/decodes exactly as the `tokenizers` library does for the
 * supported subset (BPE model; Sequence/Split/ByteLevel/Metaspace
 * pre-tokenizers; Sequence/Prepend/Replace/NFC normalizers; ByteLevel,
 * ByteFallback, Fuse, Strip, Replace, Metaspace, Sequence decoders; added
 * tokens; TemplateProcessing or add_bos_token/add_eos_token). Anything else
 * fails to load with an error naming the field. See
 * docs/internals/tokenizer.md.
 *
 * A loaded bt_tok_t is immutable: encode/decode may run on many threads at
 * once. A stream (incremental detokenizer) belongs to one thread. */
#ifndef BT_ENGINE_TOKENIZER_H
#define BT_ENGINE_TOKENIZER_H

#include "base/buf.h"
#include "base/status.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BT_TOK_MAX_JSON        (64u << 20) /* tokenizer.json size limit */
#define BT_TOK_MAX_CONFIG_JSON (8u << 20)  /* tokenizer_config.json limit */
#define BT_TOK_MAX_VOCAB       (1 << 22)   /* ids are below this */
#define BT_TOK_MAX_TOKEN_LEN   1024        /* bytes in one vocab entry */
#define BT_TOK_ERR_SIZE        256

typedef struct bt_tok bt_tok_t;

/* Loads <dir>/tokenizer.json and, when present, <dir>/tokenizer_config.json.
 * On failure `err` holds one line such as
 * "tokenizer.json: normalizer type 'NFKD' is not supported". */
bt_status_t bt_tok_load_dir(const char *dir, bt_tok_t **tok_p, char *err,
                            size_t err_size);

/* Same from memory; `config` may be NULL (config_len 0). The buffers are
 * not kept. */
bt_status_t bt_tok_load_mem(const char *json, size_t json_len,
                            const char *config, size_t config_len,
                            bt_tok_t **tok_p, char *err, size_t err_size);

void bt_tok_destroy(bt_tok_t *tok);

/* A bounded, growable array of token ids. */
typedef struct {
    int32_t *ids;
    size_t   n;
    size_t   cap;
    size_t   max; /* n never exceeds this */
} bt_tok_ids_t;

void bt_tok_ids_init(bt_tok_ids_t *v, size_t max);
void bt_tok_ids_cleanup(bt_tok_ids_t *v);
bt_status_t bt_tok_ids_push(bt_tok_ids_t *v, int32_t id);

/* Encode flags. */
#define BT_TOK_ADD_SPECIAL   (1u << 0) /* post-processor: BOS/EOS template */
#define BT_TOK_PARSE_SPECIAL (1u << 1) /* match special added tokens in text */

/* Appends the ids of `text` to `out`. Non-special added tokens are always
 * matched; special ones only with BT_TOK_PARSE_SPECIAL (otherwise they are
 * tokenized as plain text). Text that is not valid UTF-8 is rejected with
 * BT_ERR_INVALID_ARG naming the byte offset; `out` is then unchanged. */
bt_status_t bt_tok_encode(const bt_tok_t *tok, const char *text, size_t len,
                          unsigned flags, bt_tok_ids_t *out, char *err,
                          size_t err_size);

/* Appends the text of `ids` to `out` (bytes that do not form valid UTF-8
 * become U+FFFD, as in Hugging Face). An id out of range is
 * BT_ERR_INVALID_ARG. */
bt_status_t bt_tok_decode(const bt_tok_t *tok, const int32_t *ids, size_t n,
                          bool skip_special, bt_buf_t *out, char *err,
                          size_t err_size);

/* Appends the text of token `id` decoded on its own (a special token as
 * its text). raw: the bytes as they are, which for a byte-level or
 * byte-fallback token can be part of a UTF-8 character (what OpenAI's
 * logprob `bytes` carry); else invalid UTF-8 becomes U+FFFD as in
 * bt_tok_decode. An id out of range is BT_ERR_INVALID_ARG. */
bt_status_t bt_tok_token_text(const bt_tok_t *tok, int32_t id, bool raw,
                              bt_buf_t *out);

/* Incremental detokenizer: text appended by feed/finish, concatenated, is
 * exactly bt_tok_decode() of all ids fed; no UTF-8 character is ever split
 * across two appends. The tokenizer must outlive the stream. */
typedef struct bt_tok_stream bt_tok_stream_t;

bt_status_t bt_tok_stream_create(const bt_tok_t *tok, bool skip_special,
                                 bt_tok_stream_t **stream_p);
bt_status_t bt_tok_stream_feed(bt_tok_stream_t *stream, int32_t id,
                               bt_buf_t *out);
/* Flushes what is held back (an incomplete character becomes U+FFFD). */
bt_status_t bt_tok_stream_finish(bt_tok_stream_t *stream, bt_buf_t *out);
void bt_tok_stream_destroy(bt_tok_stream_t *stream);

/* Largest id + 1 (vocab and added tokens together). */
int32_t bt_tok_vocab_size(const bt_tok_t *tok);
/* -1 when the files name none. */
int32_t bt_tok_bos_id(const bt_tok_t *tok);
int32_t bt_tok_eos_id(const bt_tok_t *tok);
/* Id of an exact token string (vocab or added), -1 when absent. */
int32_t bt_tok_token_id(const bt_tok_t *tok, const char *token, size_t len);
/* Borrowed token string (not NUL-terminated in general; *len_p is set),
 * NULL for an unused id. */
const char *bt_tok_token_str(const bt_tok_t *tok, int32_t id, size_t *len_p);
bool bt_tok_is_special(const bt_tok_t *tok, int32_t id);
/* tokenizer_config.json's chat_template string (borrowed), or NULL. */
const char *bt_tok_chat_template_str(const bt_tok_t *tok);

/* ---- training (used by baton-mkmodel) ----
 *
 * Learns a byte-level BPE on `corpus` (UTF-8; split with the Llama-3
 * regex) and writes a complete tokenizer.json to `tokenizer_json_out`
 * (appended). `vocab_size` counts the 256 byte tokens, the merges and the
 * special tokens, which get the last ids in the order given. Deterministic:
 * the most frequent pair wins, ties go to the pair whose (left id, right id)
 * is smallest. BT_ERR_INVALID_ARG when the corpus has too few distinct
 * pairs to reach `vocab_size`. */
bt_status_t bt_tok_train_bytelevel_bpe(const char *corpus, size_t len,
                                       int vocab_size,
                                       const char *const *special_tokens,
                                       size_t n_special,
                                       bt_buf_t *tokenizer_json_out);

/* Writes a tokenizer_config.json naming `bos_token`/`eos_token`
 * (add_bos_token true, add_eos_token false) with a Llama-3 chat template
 * that bt_chat_family_detect() recognises as llama3. */
bt_status_t bt_tok_write_config_json(const char *bos_token,
                                     const char *eos_token,
                                     bt_buf_t *config_json_out);

#endif
