/* Which kvstore replica owns a block: rendezvous (highest random weight)
 * hashing on the block hash (DESIGN §5; docs/kv-spec.md "Sharding").
 *
 * The router and every node compute the owner the same way, from the same
 * list of replica ids, so a block is put to and looked up at one replica
 * without asking anyone. Adding or removing a replica moves only the
 * blocks it gains or loses (about 1/n of them), never blocks between the
 * others. */
#ifndef BT_KV_SHARD_H
#define BT_KV_SHARD_H

#include "base/status.h"

#include <stddef.h>
#include <stdint.h>

#define BT_KV_SHARD_MAX_REPLICAS 256
#define BT_KV_SHARD_MAX_ID       255   /* bytes of one replica id */

/* A replica set, prepared once (each replica's hash prefix is computed at
 * creation). Immutable after creation: safe to share between threads. */
typedef struct bt_kv_shard bt_kv_shard_t;

/* `ids`: n (1..BT_KV_SHARD_MAX_REPLICAS) distinct, non-empty replica ids
 * of at most BT_KV_SHARD_MAX_ID bytes (e.g. "kvstore-0" or an address),
 * copied. BT_ERR_INVALID_ARG (with the reason logged) for an empty list,
 * an empty, overlong or repeated id. */
bt_status_t bt_kv_shard_create(const char *const *ids, size_t n,
                               bt_kv_shard_t **shard_p);
void bt_kv_shard_destroy(bt_kv_shard_t *shard); /* NULL-safe */

size_t bt_kv_shard_count(const bt_kv_shard_t *shard);
const char *bt_kv_shard_id(const bt_kv_shard_t *shard, size_t i);

/* The weight of replica i for a block: the first 8 bytes, little-endian,
 * of SHA-256(enc("baton-kv-shard-v1") || enc(id_i) || hash). */
uint64_t bt_kv_shard_weight(const bt_kv_shard_t *shard, size_t i,
                            const uint8_t hash[32]);

/* Index of the replica with the highest weight; ties (practically never)
 * go to the smaller id. Indexes follow the ids sorted bytewise at
 * creation, so the order in which a caller lists them does not matter. */
size_t bt_kv_shard_owner(const bt_kv_shard_t *shard, const uint8_t hash[32]);

#endif
