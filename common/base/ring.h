/* A FIFO of fixed-size elements in a ring that doubles when full, keeping
 * the order across growth (the RPC send queues). Elements are copied in
 * and out; what they point to stays the caller's. */
#ifndef BT_RING_H
#define BT_RING_H

#include "status.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    void     *items;      /* cap elements of elem_size bytes */
    size_t    elem_size;
    uint32_t  head;       /* index of the oldest element */
    uint32_t  len;
    uint32_t  cap;
} bt_ring_t;

/* An empty ring of elements of `elem_size` bytes; allocates nothing. */
void bt_ring_init(bt_ring_t *r, size_t elem_size);

/* Frees the storage (not what the elements point to); the ring is empty
 * and usable again. */
void bt_ring_cleanup(bt_ring_t *r);

/* Copies *elem in at the tail. On failure the ring is unchanged:
 * BT_ERR_NO_MEMORY, or BT_ERR_TOO_LARGE past 2^31 elements. */
bt_status_t bt_ring_push(bt_ring_t *r, const void *elem);

/* The i-th element from the head (0: the oldest), or NULL past the end.
 * Valid until the next push or cleanup. */
void *bt_ring_at(const bt_ring_t *r, uint32_t i);

/* Copies the oldest element out to *elem_p (when not NULL) and removes it;
 * false when the ring is empty. */
bool bt_ring_pop(bt_ring_t *r, void *elem_p);

static inline uint32_t bt_ring_len(const bt_ring_t *r)
{
    return r->len;
}

#endif
