/* The simulator's LRU set of block keys (lru.h): chained buckets over a
 * fixed pool of entries, a doubly linked recency list by index. */
#include "lru.h"

#include <stdlib.h>
#include <string.h>

#define NIL UINT32_MAX

typedef struct {
    uint8_t  key[BT_SIM_KEY_LEN];
    uint32_t chain;        /* next in bucket */
    uint32_t prev, next;   /* recency: head is the most recent */
} lru_ent_t;

struct bt_sim_lru {
    lru_ent_t *ent;
    uint32_t  *bucket;
    size_t     cap, n, mask;
    uint32_t   head, tail, free_list;
};

bt_sim_lru_t *bt_sim_lru_create(size_t capacity)
{
    bt_sim_lru_t *c;
    size_t nb = 16;

    if (capacity == 0 || capacity >= NIL || (c = calloc(1, sizeof(*c))) == NULL) {
        return NULL;
    }
    while (nb < capacity) {
        nb *= 2;
    }
    c->ent = malloc(capacity * sizeof(*c->ent));
    c->bucket = malloc(nb * sizeof(*c->bucket));
    if (c->ent == NULL || c->bucket == NULL) {
        bt_sim_lru_destroy(c);
        return NULL;
    }
    memset(c->bucket, 0xff, nb * sizeof(*c->bucket));
    c->cap = capacity;
    c->mask = nb - 1;
    c->head = c->tail = NIL;
    for (size_t i = 0; i < capacity; i++) {
        c->ent[i].chain = i + 1 < capacity ? (uint32_t)(i + 1) : NIL;
    }
    c->free_list = 0;
    return c;
}

void bt_sim_lru_destroy(bt_sim_lru_t *c)
{
    if (c != NULL) {
        free(c->ent);
        free(c->bucket);
        free(c);
    }
}

size_t bt_sim_lru_size(const bt_sim_lru_t *c)
{
    return c->n;
}

static uint32_t *lru_slot(bt_sim_lru_t *c, const uint8_t *key)
{
    uint64_t h;

    memcpy(&h, key, sizeof(h));
    return &c->bucket[(h ^ (h >> 29)) & c->mask];
}

static uint32_t lru_find(bt_sim_lru_t *c, const uint8_t *key)
{
    uint32_t i = *lru_slot(c, key);

    while (i != NIL && memcmp(c->ent[i].key, key, BT_SIM_KEY_LEN) != 0) {
        i = c->ent[i].chain;
    }
    return i;
}

static void lru_unlink(bt_sim_lru_t *c, uint32_t i)
{
    lru_ent_t *e = &c->ent[i];

    if (e->prev != NIL) {
        c->ent[e->prev].next = e->next;
    } else {
        c->head = e->next;
    }
    if (e->next != NIL) {
        c->ent[e->next].prev = e->prev;
    } else {
        c->tail = e->prev;
    }
}

static void lru_push_front(bt_sim_lru_t *c, uint32_t i)
{
    c->ent[i].prev = NIL;
    c->ent[i].next = c->head;
    if (c->head != NIL) {
        c->ent[c->head].prev = i;
    } else {
        c->tail = i;
    }
    c->head = i;
}

size_t bt_sim_lru_match(bt_sim_lru_t *c, const uint8_t *keys, size_t n)
{
    size_t k;

    for (k = 0; k < n; k++) {
        uint32_t i = lru_find(c, keys + k * BT_SIM_KEY_LEN);

        if (i == NIL) {
            break;
        }
        lru_unlink(c, i);
        lru_push_front(c, i);
    }
    return k;
}

bool bt_sim_lru_insert(bt_sim_lru_t *c, const uint8_t *key, uint8_t *evicted)
{
    uint32_t i = lru_find(c, key), *b;
    bool out = false;

    if (i != NIL) {
        lru_unlink(c, i);
        lru_push_front(c, i);
        return false;
    }
    if (c->free_list == NIL) {
        /* evict the tail: take it out of its bucket chain */
        uint32_t t = c->tail, *p = lru_slot(c, c->ent[t].key);

        while (*p != t) {
            p = &c->ent[*p].chain;
        }
        *p = c->ent[t].chain;
        lru_unlink(c, t);
        memcpy(evicted, c->ent[t].key, BT_SIM_KEY_LEN);
        c->ent[t].chain = NIL;
        c->free_list = t;
        c->n--;
        out = true;
    }
    i = c->free_list;
    c->free_list = c->ent[i].chain;
    memcpy(c->ent[i].key, key, BT_SIM_KEY_LEN);
    b = lru_slot(c, key);
    c->ent[i].chain = *b;
    *b = i;
    lru_push_front(c, i);
    c->n++;
    return out;
}
