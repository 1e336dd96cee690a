/* Intrusive doubly linked list: circular, with a head node, so insertion
 * and removal never branch on the ends. An element embeds a bt_list_t
 * and is found from it with BT_CONTAINER_OF. */
#ifndef BT_LIST_H
#define BT_LIST_H

#include <stdbool.h>
#include <stddef.h>

typedef struct bt_list {
    struct bt_list *prev, *next;
} bt_list_t;

#define BT_CONTAINER_OF(_ptr, _type, _member) \
    ((_type *)(void *)((char *)(_ptr) - offsetof(_type, _member)))

/* A head, or an element that is in no list (bt_list_del leaves it so). */
static inline void bt_list_init(bt_list_t *h)
{
    h->prev = h->next = h;
}

static inline bool bt_list_empty(const bt_list_t *h)
{
    return h->next == h;
}

static inline void bt_list_add_tail(bt_list_t *h, bt_list_t *n)
{
    n->prev = h->prev;
    n->next = h;
    h->prev->next = n;
    h->prev = n;
}

static inline void bt_list_add_head(bt_list_t *h, bt_list_t *n)
{
    bt_list_add_tail(h->next, n);
}

/* Safe on an element in no list (after bt_list_init or bt_list_del). */
static inline void bt_list_del(bt_list_t *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = n->next = n;
}

/* `_it` walks the elements; the body may bt_list_del the current one
 * (`_next` is read before the body runs). */
#define bt_list_foreach_safe(_it, _next, _head) \
    for ((_it) = (_head)->next, (_next) = (_it)->next; (_it) != (_head); \
         (_it) = (_next), (_next) = (_it)->next)

#endif
