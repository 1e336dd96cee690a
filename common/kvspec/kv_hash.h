/* The block-hash chain of kv-spec v2 (docs/kv-spec.md): the root h_{-1}
 * of a model, dtype, block size, numerics id and tenant, and each full block's hash
 * chained from its parent. The one implementation: the node's pool, the
 * router's prefix index and the kvstore's commit check all call these.
 * Pure functions. */
#ifndef BT_KV_HASH_H
#define BT_KV_HASH_H

#include "kv_spec.h"

/* h_{-1} = SHA-256(enc("baton-kv-v2") || enc(model_id) || enc(revision) ||
 * enc(dtype name) || u32le(block_size) || enc(numerics) || enc(salt))
 * with enc(x) = u32le(len) || bytes. `revision` and `salt` may be NULL
 * (= empty). Strings are length-limited to 4096 bytes (BT_ERR_TOO_LARGE);
 * BT_ERR_INVALID_ARG without a model id, block size, known dtype or valid
 * numerics id (bt_kv_numerics_valid). */
bt_status_t bt_kv_hash_root(const char *model_id, const char *revision,
                            bt_kv_dtype_t dtype, uint32_t block_size,
                            const char *numerics,
                            const void *salt, size_t salt_len,
                            uint8_t root_p[BT_KV_HASH_LEN]);

/* h_i = SHA-256(h_{i-1} || u32le(tokens[0]) || ... || u32le(tokens[n-1])). */
bt_status_t bt_kv_hash_block(const uint8_t parent[BT_KV_HASH_LEN],
                             const uint32_t *tokens, uint32_t n_tokens,
                             uint8_t hash_p[BT_KV_HASH_LEN]);

/* Hashes of the full blocks of `tokens` (n_tokens / block_size of them,
 * at most `max_hashes`) chained from `root`; *n_hashes_p gets the count. */
bt_status_t bt_kv_hash_chain(const uint8_t root[BT_KV_HASH_LEN],
                             uint32_t block_size, const uint32_t *tokens,
                             size_t n_tokens, uint8_t (*hashes)[BT_KV_HASH_LEN],
                             size_t max_hashes, size_t *n_hashes_p);

/* The check made on every hash hit before a block is used: same count,
 * same token ids. */
bool bt_kv_tokens_match(const uint32_t *stored, uint32_t n_stored,
                        const uint32_t *want, uint32_t n_want);

#endif
