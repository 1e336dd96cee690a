/* The model the router serves: its tokenizer (prompts are tokenized and
 * generated tokens detokenized here), chat template, context limit, and
 * the KV block hashing that must match the nodes' (docs/kv-spec.md). The
 * block size and KV dtype come from the first node that registers; every
 * later node must agree. */
#ifndef BT_ROUTER_MODEL_H
#define BT_ROUTER_MODEL_H

#include "router.h"

#include "engine/sample/sample.h"
#include "engine/tokenizer/chat_template.h"
#include "engine/tokenizer/tokenizer.h"
#include "generate.pb-c.h"

/* `chat_template`: a family name to force, or NULL to detect it. */
bt_status_t bt_router_model_load(bt_router_t *r, const char *dir,
                                 const char *name, const char *chat_template,
                                 char *err, size_t err_size);
void bt_router_model_free(bt_router_t *r);

const char *bt_router_model_name(const bt_router_t *r);
uint32_t bt_router_model_max_context(const bt_router_t *r);
int32_t bt_router_model_vocab_size(const bt_router_t *r);

/* A registering node must serve this model with a consistent KV layout. */
bt_status_t bt_router_model_check_node(bt_router_t *r,
                                       const bt_node_hello_t *hello, char *err,
                                       size_t err_size);

/* Prompt text → ids (BOS etc. as the model's post-processor says). */
bt_status_t bt_router_model_encode(bt_router_t *r, const char *text,
                                   size_t len, bt_tok_ids_t *out, char *err,
                                   size_t err_size);
/* The same with the post-processor's special tokens or without
 * (baton.v1 TokenizeRequest.add_special_tokens). */
bt_status_t bt_router_model_encode_text(bt_router_t *r, const char *text,
                                        size_t len, bool add_special,
                                        bt_tok_ids_t *out, char *err,
                                        size_t err_size);
/* Chat messages → the model's chat template → ids. */
bt_status_t bt_router_model_encode_chat(bt_router_t *r,
                                        const Baton__V1__ChatMessages *chat,
                                        bt_tok_ids_t *out, char *err,
                                        size_t err_size);
/* The chat template family; false when the model has none. */
bool bt_router_model_chat_family(const bt_router_t *r,
                                 bt_chat_family_t *family_p);
/* Every id is in the vocabulary. */
bt_status_t bt_router_model_check_tokens(bt_router_t *r, const uint32_t *ids,
                                         size_t n, char *err, size_t err_size);

bt_status_t bt_router_model_detok(bt_router_t *r, bt_tok_stream_t **stream_p);
bt_status_t bt_router_model_decode(bt_router_t *r, const uint32_t *ids,
                                   size_t n, bt_buf_t *out);
/* Appends the text of token `id` alone (logprobs): raw bytes (maybe part
 * of a UTF-8 character) or, without `raw`, valid UTF-8 (U+FFFD for the
 * rest). An id outside the vocabulary appends nothing. */
void bt_router_model_token_text(bt_router_t *r, uint32_t id, bool raw,
                                bt_buf_t *out);

/* h_{-1} for a tenant and a numerics id (kv-spec v2); BT_ERR_NOT_FOUND
 * until a node told the KV layout. */
bt_status_t bt_router_model_root(bt_router_t *r, const char *numerics,
                                 const uint8_t *salt, size_t salt_len,
                                 uint8_t root[BT_BLOCK_HASH_LEN]);
/* Hashes of the full blocks of prompt ++ gen; *hashes_p is malloc'ed
 * (NULL and 0 when nothing is known yet). */
void bt_router_model_hashes(bt_router_t *r, const uint8_t root[BT_BLOCK_HASH_LEN],
                            const uint32_t *prompt, size_t n_prompt,
                            const uint32_t *gen, size_t n_gen,
                            uint8_t (**hashes_p)[BT_BLOCK_HASH_LEN],
                            size_t *n_p);

#endif
