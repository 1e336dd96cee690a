#include "prefix_index.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* Open addressing with linear probing; deleted slots are tombstones that
 * an insert reuses. A slot is live when its mask is non-zero. */
typedef struct {
    uint8_t  hash[BT_BLOCK_HASH_LEN];
    uint64_t nodes[BT_PREFIX_WORDS];
    uint8_t  used;          /* 0 empty, 1 live, 2 tombstone */
} bt_prefix_slot_t;

/* The table starts this small and doubles as entries come, up to
 * cap_max: a router that tracks few blocks holds little memory. */
#define BT_PREFIX_CAP_MIN 1024

struct bt_prefix_index {
    bt_prefix_slot_t *slots;
    size_t            cap;       /* power of two, <= cap_max */
    size_t            cap_max;   /* power of two, >= 2 * max_entries */
    size_t            live;
    size_t            tombs;
    size_t            max_entries;
    uint64_t          dropped;
};

bt_prefix_index_t *bt_prefix_index_create(size_t max_entries)
{
    bt_prefix_index_t *idx = calloc(1, sizeof(*idx));
    size_t cap = 16;

    if (idx == NULL) {
        return NULL;
    }
    if (max_entries == 0) {
        max_entries = 1;
    }
    while (cap < 2 * max_entries) {
        cap *= 2;
    }
    idx->cap_max = cap;
    idx->cap = cap < BT_PREFIX_CAP_MIN ? cap : BT_PREFIX_CAP_MIN;
    idx->slots = calloc(idx->cap, sizeof(*idx->slots));
    if (idx->slots == NULL) {
        free(idx);
        return NULL;
    }
    idx->max_entries = max_entries;
    return idx;
}

void bt_prefix_index_destroy(bt_prefix_index_t *idx)
{
    if (idx == NULL) {
        return;
    }
    free(idx->slots);
    free(idx);
}

/* The hash is already uniformly random: its first 8 bytes are the key. */
static size_t bt_prefix_home(const bt_prefix_index_t *idx, const uint8_t *hash)
{
    uint64_t h;

    memcpy(&h, hash, sizeof(h));
    return (size_t)h & (idx->cap - 1);
}

/* The live slot of `hash`, or NULL; *free_p gets the first reusable slot
 * seen on the probe path (for inserts). */
static bt_prefix_slot_t *bt_prefix_find(const bt_prefix_index_t *idx,
                                        const uint8_t *hash,
                                        bt_prefix_slot_t **free_p)
{
    size_t i = bt_prefix_home(idx, hash);
    size_t n;

    if (free_p != NULL) {
        *free_p = NULL;
    }
    for (n = 0; n < idx->cap; n++, i = (i + 1) & (idx->cap - 1)) {
        bt_prefix_slot_t *s = &idx->slots[i];

        if (s->used == 0) {
            if (free_p != NULL && *free_p == NULL) {
                *free_p = s;
            }
            return NULL;
        }
        if (s->used == 2) {
            if (free_p != NULL && *free_p == NULL) {
                *free_p = s;
            }
            continue;
        }
        if (memcmp(s->hash, hash, BT_BLOCK_HASH_LEN) == 0) {
            return s;
        }
    }
    return NULL;
}

static bool bt_prefix_mask_empty(const bt_prefix_slot_t *s)
{
    size_t w;

    for (w = 0; w < BT_PREFIX_WORDS; w++) {
        if (s->nodes[w] != 0) {
            return false;
        }
    }
    return true;
}

static void bt_prefix_release(bt_prefix_index_t *idx, bt_prefix_slot_t *s)
{
    s->used = 2;
    idx->live--;
    idx->tombs++;
}

/* Rebuilds the table at `cap` slots without tombstones: to grow, or so
 * probe chains stay short under churn. On allocation failure the table is
 * left as it was. */
static void bt_prefix_rebuild(bt_prefix_index_t *idx, size_t cap)
{
    bt_prefix_slot_t *old = idx->slots;
    bt_prefix_slot_t *fresh = calloc(cap, sizeof(*fresh));
    size_t old_cap = idx->cap;
    size_t i;

    if (fresh == NULL) {
        return;
    }
    idx->slots = fresh;
    idx->cap = cap;
    for (i = 0; i < old_cap; i++) {
        size_t j;

        if (old[i].used != 1) {
            continue;
        }
        j = bt_prefix_home(idx, old[i].hash);
        while (fresh[j].used != 0) {
            j = (j + 1) & (idx->cap - 1);
        }
        fresh[j] = old[i];
    }
    idx->tombs = 0;
    free(old);
}

void bt_prefix_index_add(bt_prefix_index_t *idx, const uint8_t *hash,
                         unsigned node)
{
    bt_prefix_slot_t *free_slot;
    bt_prefix_slot_t *s = bt_prefix_find(idx, hash, &free_slot);

    if (node >= BT_ROUTER_MAX_NODES) {
        return;
    }
    if (s == NULL && idx->live < idx->max_entries &&
        2 * (idx->live + idx->tombs + 1) > idx->cap && idx->cap < idx->cap_max) {
        /* keep the table at most half full: grow, then probe again */
        bt_prefix_rebuild(idx, idx->cap * 2);
        s = bt_prefix_find(idx, hash, &free_slot);
    }
    if (s == NULL) {
        if (idx->live >= idx->max_entries || free_slot == NULL) {
            idx->dropped++;
            return;
        }
        if (free_slot->used == 2) {
            idx->tombs--;
        }
        s = free_slot;
        memcpy(s->hash, hash, BT_BLOCK_HASH_LEN);
        memset(s->nodes, 0, sizeof(s->nodes));
        s->used = 1;
        idx->live++;
    }
    s->nodes[node / 64] |= 1ull << (node % 64);
    if (idx->tombs > idx->cap / 4) {
        bt_prefix_rebuild(idx, idx->cap);
    }
}

void bt_prefix_index_remove(bt_prefix_index_t *idx, const uint8_t *hash,
                            unsigned node)
{
    bt_prefix_slot_t *s = bt_prefix_find(idx, hash, NULL);

    if (s == NULL || node >= BT_ROUTER_MAX_NODES) {
        return;
    }
    s->nodes[node / 64] &= ~(1ull << (node % 64));
    if (bt_prefix_mask_empty(s)) {
        bt_prefix_release(idx, s);
    }
}

void bt_prefix_index_remove_node(bt_prefix_index_t *idx, unsigned node)
{
    size_t i;

    if (node >= BT_ROUTER_MAX_NODES) {
        return;
    }
    for (i = 0; i < idx->cap; i++) {
        bt_prefix_slot_t *s = &idx->slots[i];

        if (s->used != 1) {
            continue;
        }
        s->nodes[node / 64] &= ~(1ull << (node % 64));
        if (bt_prefix_mask_empty(s)) {
            bt_prefix_release(idx, s);
        }
    }
}

size_t bt_prefix_index_match_any(const bt_prefix_index_t *idx,
                                 const uint8_t *hashes, size_t n,
                                 const uint64_t *mask)
{
    size_t i;

    for (i = 0; i < n; i++) {
        const bt_prefix_slot_t *s =
            bt_prefix_find(idx, hashes + i * BT_BLOCK_HASH_LEN, NULL);
        uint64_t any = 0;

        for (unsigned w = 0; s != NULL && w < BT_PREFIX_WORDS; w++) {
            any |= s->nodes[w] & mask[w];
        }
        if (any == 0) {
            break;
        }
    }
    return i;
}

size_t bt_prefix_index_match(const bt_prefix_index_t *idx,
                             const uint8_t *hashes, size_t n, unsigned node)
{
    uint64_t mask[BT_PREFIX_WORDS] = {0};

    if (node >= BT_ROUTER_MAX_NODES) {
        return 0;
    }
    mask[node / 64] = 1ull << (node % 64);
    return bt_prefix_index_match_any(idx, hashes, n, mask);
}

size_t bt_prefix_index_size(const bt_prefix_index_t *idx)
{
    return idx->live;
}

uint64_t bt_prefix_index_dropped(const bt_prefix_index_t *idx)
{
    return idx->dropped;
}

size_t bt_prefix_index_bytes(const bt_prefix_index_t *idx)
{
    return sizeof(*idx) + idx->cap * sizeof(*idx->slots);
}
