/* Open-addressing hash tables for the vocab (string -> id) and the merges
 * ((left, right) -> rank, merged id). Sized once at load for a load factor
 * at most 1/2, so probes stay short and nothing ever rehashes. */
#include "tok_int.h"

#include <stdlib.h>
#include <string.h>

uint64_t tok_hash(const void *s, size_t len)
{
    const unsigned char *p = s;
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */

    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h ^ (h >> 29);
}

static size_t table_size(size_t n_expected)
{
    size_t size = 16;

    while (size < 2 * n_expected + 1)
        size <<= 1;
    return size;
}

bt_status_t tok_idmap_init(tok_idmap_t *map, size_t n_expected)
{
    size_t size = table_size(n_expected);

    map->slots = calloc(size, sizeof(*map->slots));
    if (map->slots == NULL)
        return BT_ERR_NO_MEMORY;
    map->mask = size - 1;
    return BT_OK;
}

void tok_idmap_cleanup(tok_idmap_t *map)
{
    free(map->slots);
    map->slots = NULL;
}

int32_t tok_idmap_find(const tok_idmap_t *map, const tok_str_t *strs,
                       const char *pool, const char *s, size_t len)
{
    size_t i = tok_hash(s, len) & map->mask;

    for (;;) {
        int32_t slot = map->slots[i];
        if (slot == 0)
            return -1;
        const tok_str_t *t = &strs[slot - 1];
        if (t->len == len && memcmp(pool + t->off, s, len) == 0)
            return slot - 1;
        i = (i + 1) & map->mask;
    }
}

int32_t tok_idmap_insert(tok_idmap_t *map, const tok_str_t *strs,
                         const char *pool, int32_t id)
{
    const tok_str_t *key = &strs[id];
    const char *s = pool + key->off;
    size_t i = tok_hash(s, key->len) & map->mask;

    for (;;) {
        int32_t slot = map->slots[i];
        if (slot == 0) {
            map->slots[i] = id + 1;
            return -1;
        }
        const tok_str_t *t = &strs[slot - 1];
        if (t->len == key->len && memcmp(pool + t->off, s, key->len) == 0)
            return slot - 1;
        i = (i + 1) & map->mask;
    }
}

static inline uint64_t pair_key(int32_t a, int32_t b)
{
    return ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
}

static inline size_t pair_slot(uint64_t key, size_t mask)
{
    key *= 0x9e3779b97f4a7c15ull;
    return (size_t)(key >> 32) & mask;
}

bt_status_t tok_pairmap_init(tok_pairmap_t *map, size_t n_expected)
{
    size_t size = table_size(n_expected);

    map->keys = malloc(size * sizeof(*map->keys));
    map->ranks = malloc(size * sizeof(*map->ranks));
    map->ids = malloc(size * sizeof(*map->ids));
    if (map->keys == NULL || map->ranks == NULL || map->ids == NULL) {
        tok_pairmap_cleanup(map);
        return BT_ERR_NO_MEMORY;
    }
    memset(map->keys, 0xff, size * sizeof(*map->keys));
    map->mask = size - 1;
    return BT_OK;
}

void tok_pairmap_cleanup(tok_pairmap_t *map)
{
    free(map->keys);
    free(map->ranks);
    free(map->ids);
    map->keys = NULL;
    map->ranks = NULL;
    map->ids = NULL;
}

bool tok_pairmap_insert(tok_pairmap_t *map, int32_t a, int32_t b,
                        uint32_t rank, int32_t id)
{
    uint64_t key = pair_key(a, b);
    size_t i = pair_slot(key, map->mask);

    while (map->keys[i] != UINT64_MAX) {
        if (map->keys[i] == key)
            return false;
        i = (i + 1) & map->mask;
    }
    map->keys[i] = key;
    map->ranks[i] = rank;
    map->ids[i] = id;
    return true;
}

bool tok_pairmap_find(const tok_pairmap_t *map, int32_t a, int32_t b,
                      uint32_t *rank_p, int32_t *id_p)
{
    uint64_t key = pair_key(a, b);
    size_t i = pair_slot(key, map->mask);

    for (;;) {
        uint64_t k = map->keys[i];
        if (k == key) {
            *rank_p = map->ranks[i];
            *id_p = map->ids[i];
            return true;
        }
        if (k == UINT64_MAX)
            return false;
        i = (i + 1) & map->mask;
    }
}
