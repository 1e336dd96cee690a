/* Large buffers kept for reuse after they are freed. A fresh buffer of
 * megabytes comes from mmap and each of its pages faults on first write
 * (5-7 us a page on the shared VMs this runs on, i.e. more than the copy
 * into it); one that was used before is already mapped. Bounded in count
 * and bytes; a buffer is reused only for a request of at least a
 * quarter of its size, so a small request does not pin a big buffer. */
#ifndef BT_SPARES_H
#define BT_SPARES_H

#include <stddef.h>

#define BT_SPARES_MAX 8

typedef struct {
    struct {
        void  *p;
        size_t cap;
    } slot[BT_SPARES_MAX];
    size_t n;
    size_t bytes;       /* held in slots */
    size_t max_bytes;   /* bound of bytes */
} bt_spares_t;

void bt_spares_init(bt_spares_t *s, size_t max_bytes);

/* At least `len` bytes: the smallest kept buffer that fits, else a new
 * one of `len` rounded up to a power of two (so that later requests of
 * nearby sizes fit it). *cap_p: its size, to hand back with it. NULL on
 * out of memory or len 0. */
void *bt_spares_get(bt_spares_t *s, size_t len, size_t *cap_p);

/* Kept for the next get while the bounds allow, else freed. s NULL:
 * freed. */
void bt_spares_put(bt_spares_t *s, void *p, size_t cap);

/* Frees every kept buffer. */
void bt_spares_clear(bt_spares_t *s);

#endif
