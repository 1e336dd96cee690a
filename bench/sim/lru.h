/* A node's prefix cache in the simulator: a bounded set of 32-byte block
 * keys evicted least recently used first, as the node's KV pool reuses
 * its free cached blocks. Insert reports what it evicted so the caller
 * can tell the router's prefix index (a KV "removed" event). */
#ifndef BT_SIM_LRU_H
#define BT_SIM_LRU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BT_SIM_KEY_LEN 32

typedef struct bt_sim_lru bt_sim_lru_t;

/* NULL when out of memory or capacity is 0. */
bt_sim_lru_t *bt_sim_lru_create(size_t capacity);
void bt_sim_lru_destroy(bt_sim_lru_t *c);
size_t bt_sim_lru_size(const bt_sim_lru_t *c);

/* Length of the longest prefix of keys (n of them) held; the matched
 * keys become the most recently used. */
size_t bt_sim_lru_match(bt_sim_lru_t *c, const uint8_t *keys, size_t n);
/* Adds (or refreshes) key; when full the least recently used key goes
 * first: copied to evicted (BT_SIM_KEY_LEN bytes) and true returned. */
bool bt_sim_lru_insert(bt_sim_lru_t *c, const uint8_t *key, uint8_t *evicted);

#endif
