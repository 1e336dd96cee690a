#include "arena.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define BT_ARENA_ALIGN 16

typedef struct bt_arena_chunk {
    struct bt_arena_chunk *next;
    size_t                 size;  /* usable bytes after the header */
    size_t                 used;
    /* data follows, aligned */
} bt_arena_chunk_t;

#define BT_ARENA_HDR \
    ((sizeof(bt_arena_chunk_t) + BT_ARENA_ALIGN - 1) & ~(size_t)(BT_ARENA_ALIGN - 1))

struct bt_arena {
    bt_arena_chunk_t *head;       /* current chunk first */
    size_t            chunk_size;
    size_t            max_bytes;
    size_t            reserved;   /* bytes of all chunks' data areas */
    size_t            used;
};

static bt_arena_chunk_t *bt_arena_chunk_new(bt_arena_t *arena, size_t size)
{
    bt_arena_chunk_t *chunk;

    if (size > arena->max_bytes - arena->reserved) {
        return NULL;
    }
    chunk = aligned_alloc(BT_ARENA_ALIGN,
                          (BT_ARENA_HDR + size + BT_ARENA_ALIGN - 1) &
                          ~(size_t)(BT_ARENA_ALIGN - 1));
    if (chunk == NULL) {
        return NULL;
    }
    chunk->size = size;
    chunk->used = 0;
    chunk->next = NULL;
    arena->reserved += size;
    return chunk;
}

bt_arena_t *bt_arena_create(size_t chunk_size, size_t max_bytes)
{
    bt_arena_t *arena;

    if (chunk_size < 256) {
        chunk_size = 256;
    }
    if (max_bytes < chunk_size) {
        max_bytes = chunk_size;
    }
    arena = calloc(1, sizeof(*arena));
    if (arena == NULL) {
        return NULL;
    }
    arena->chunk_size = chunk_size;
    arena->max_bytes = max_bytes;
    arena->head = bt_arena_chunk_new(arena, chunk_size);
    if (arena->head == NULL) {
        free(arena);
        return NULL;
    }
    return arena;
}

void bt_arena_destroy(bt_arena_t *arena)
{
    bt_arena_chunk_t *c, *next;

    if (arena == NULL) {
        return;
    }
    for (c = arena->head; c != NULL; c = next) {
        next = c->next;
        free(c);
    }
    free(arena);
}

void *bt_arena_alloc(bt_arena_t *arena, size_t size)
{
    bt_arena_chunk_t *chunk = arena->head;
    size_t need;
    void *p;

    if (size == 0 || size > SIZE_MAX - 2 * BT_ARENA_ALIGN) {
        return NULL;
    }
    need = (size + BT_ARENA_ALIGN - 1) & ~(size_t)(BT_ARENA_ALIGN - 1);
    if (chunk == NULL || chunk->size - chunk->used < need) {
        bt_arena_chunk_t *fresh;

        fresh = bt_arena_chunk_new(arena, need > arena->chunk_size ?
                                          need : arena->chunk_size);
        if (fresh == NULL) {
            return NULL;
        }
        if (need > arena->chunk_size && chunk != NULL) {
            /* a dedicated chunk: keep the current one for small requests */
            fresh->next = chunk->next;
            chunk->next = fresh;
            chunk = fresh;
        } else {
            fresh->next = chunk;
            arena->head = fresh;
            chunk = fresh;
        }
    }
    p = (char *)chunk + BT_ARENA_HDR + chunk->used;
    chunk->used += need;
    arena->used += size;
    return p;
}

void *bt_arena_calloc(bt_arena_t *arena, size_t n, size_t size)
{
    void *p;

    if (size != 0 && n > SIZE_MAX / size) {
        return NULL;
    }
    p = bt_arena_alloc(arena, n * size);
    if (p != NULL) {
        memset(p, 0, n * size);
    }
    return p;
}

char *bt_arena_strndup(bt_arena_t *arena, const char *s, size_t n)
{
    char *p = bt_arena_alloc(arena, n + 1);

    if (p != NULL) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

char *bt_arena_strdup(bt_arena_t *arena, const char *s)
{
    return bt_arena_strndup(arena, s, strlen(s));
}

void bt_arena_reset(bt_arena_t *arena)
{
    bt_arena_chunk_t *c, *keep = NULL, *next;

    /* keep one chunk of the standard size, free the rest */
    for (c = arena->head; c != NULL; c = next) {
        next = c->next;
        if (keep == NULL && c->size == arena->chunk_size) {
            keep = c;
        } else {
            arena->reserved -= c->size;
            free(c);
        }
    }
    if (keep == NULL) {
        keep = bt_arena_chunk_new(arena, arena->chunk_size);
        /* cannot fail for the cap (everything was freed); on malloc failure
         * the arena is left empty and every alloc fails cleanly */
    }
    if (keep != NULL) {
        keep->used = 0;
        keep->next = NULL;
    }
    arena->head = keep;
    arena->used = 0;
}

size_t bt_arena_used(const bt_arena_t *arena)
{
    return arena->used;
}

size_t bt_arena_reserved(const bt_arena_t *arena)
{
    return arena->reserved;
}
