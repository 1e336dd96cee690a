/* Structured output on a node: the vocabulary as bytes (built once from
 * the tokenizer), a small cache of compiled response formats shared by
 * the requests that use the same one (so their masks are computed once),
 * and a per-request handle the roles use where they sample. Everything
 * runs on the loop thread. */
#ifndef BT_NODE_GRAMMAR_H
#define BT_NODE_GRAMMAR_H

#include "base/status.h"
#include "common.pb-c.h"
#include "engine/tokenizer/tokenizer.h"

#include <stddef.h>
#include <stdint.h>

typedef struct bt_node bt_node_t;
typedef struct bt_node_gram bt_node_gram_t;
typedef struct bt_node_gcache bt_node_gcache_t;

#define BT_NODE_GCACHE_ENTRIES 16

/* Builds node->gvocab from `tok` (special tokens and unused ids are never
 * allowed; EOS only where a document is complete) and the format cache.
 * Without a tokenizer (tok NULL) structured output is refused. */
bt_status_t bt_node_grammar_init(bt_node_t *node, const bt_tok_t *tok);
void bt_node_grammar_cleanup(bt_node_t *node);

/* The request's handle for p->response_format in the state after its
 * `n_gen` generated tokens (a re-prefill or failover replays them); *g_p
 * is NULL when the request has no format. BT_ERR_INVALID_ARG with a
 * message in err for a schema that does not compile or generated tokens
 * the format does not allow. */
bt_status_t bt_node_gram_open(bt_node_t *node,
                              const Baton__V1__SamplingParams *p,
                              const int32_t *gen, size_t n_gen,
                              bt_node_gram_t **g_p, char *err, size_t err_size);
/* -inf on the logits of every token not allowed next. */
bt_status_t bt_node_gram_mask(bt_node_gram_t *g, float *logits, size_t n);
/* Records a token the request produced. */
bt_status_t bt_node_gram_accept(bt_node_gram_t *g, int32_t token);
void bt_node_gram_close(bt_node_gram_t *g); /* NULL-safe */

#endif
