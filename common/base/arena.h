/* Per-request bump allocator (nginx pools): many small allocations, one
 * free when the request ends. A maximum total size is mandatory, so input
 * from the network cannot grow an arena without bound. */
#ifndef BT_ARENA_H
#define BT_ARENA_H

#include <stddef.h>

typedef struct bt_arena bt_arena_t;

/* `chunk_size`: bytes per underlying malloc (larger requests get their own
 * chunk); `max_bytes`: cap on all chunks together. NULL on out of memory. */
bt_arena_t *bt_arena_create(size_t chunk_size, size_t max_bytes);
void bt_arena_destroy(bt_arena_t *arena);

/* 16-byte aligned memory owned by the arena, or NULL when the cap would be
 * exceeded (or size is 0 or malloc fails). */
void *bt_arena_alloc(bt_arena_t *arena, size_t size);
void *bt_arena_calloc(bt_arena_t *arena, size_t n, size_t size);
char *bt_arena_strdup(bt_arena_t *arena, const char *s);
char *bt_arena_strndup(bt_arena_t *arena, const char *s, size_t n);

/* Frees every chunk but the first; everything allocated becomes invalid. */
void bt_arena_reset(bt_arena_t *arena);

/* Bytes handed out / held in chunks. */
size_t bt_arena_used(const bt_arena_t *arena);
size_t bt_arena_reserved(const bt_arena_t *arena);

#endif
