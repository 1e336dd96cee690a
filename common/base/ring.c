#include "ring.h"

#include <stdlib.h>
#include <string.h>

#define BT_RING_MIN_CAP 4u

void bt_ring_init(bt_ring_t *r, size_t elem_size)
{
    memset(r, 0, sizeof(*r));
    r->elem_size = elem_size;
}

void bt_ring_cleanup(bt_ring_t *r)
{
    free(r->items);
    bt_ring_init(r, r->elem_size);
}

static char *bt_ring_slot(const bt_ring_t *r, uint32_t i)
{
    return (char *)r->items + (size_t)((r->head + i) % r->cap) * r->elem_size;
}

/* Doubles the storage, moving the elements to the front in order. */
static bt_status_t bt_ring_grow(bt_ring_t *r)
{
    uint32_t cap = r->cap != 0 ? r->cap * 2 : BT_RING_MIN_CAP;
    uint32_t first;
    char *items;

    if (r->cap > UINT32_MAX / 4 || (size_t)cap > SIZE_MAX / r->elem_size) {
        return BT_ERR_TOO_LARGE;
    }
    items = malloc((size_t)cap * r->elem_size);
    if (items == NULL) {
        return BT_ERR_NO_MEMORY;
    }
    if (r->len > 0) {
        /* the part from head to the end of storage, then the wrapped part */
        first = r->cap - r->head < r->len ? r->cap - r->head : r->len;
        memcpy(items, bt_ring_slot(r, 0), (size_t)first * r->elem_size);
        memcpy(items + (size_t)first * r->elem_size, r->items,
               (size_t)(r->len - first) * r->elem_size);
    }
    free(r->items);
    r->items = items;
    r->head = 0;
    r->cap = cap;
    return BT_OK;
}

bt_status_t bt_ring_push(bt_ring_t *r, const void *elem)
{
    if (r->len == r->cap) {
        bt_status_t st = bt_ring_grow(r);

        if (st != BT_OK) {
            return st;
        }
    }
    memcpy(bt_ring_slot(r, r->len), elem, r->elem_size);
    r->len++;
    return BT_OK;
}

void *bt_ring_at(const bt_ring_t *r, uint32_t i)
{
    return i < r->len ? bt_ring_slot(r, i) : NULL;
}

bool bt_ring_pop(bt_ring_t *r, void *elem_p)
{
    if (r->len == 0) {
        return false;
    }
    if (elem_p != NULL) {
        memcpy(elem_p, bt_ring_slot(r, 0), r->elem_size);
    }
    r->head = (r->head + 1) % r->cap;
    r->len--;
    return true;
}
