/* Large buffers kept for reuse (spares.h). */
#include "spares.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

void bt_spares_init(bt_spares_t *s, size_t max_bytes)
{
    memset(s, 0, sizeof(*s));
    s->max_bytes = max_bytes;
}

static size_t round_up_pow2(size_t len)
{
    size_t cap = 4096;

    while (cap < len && cap <= SIZE_MAX / 2) {
        cap *= 2;
    }
    return cap < len ? len : cap;
}

void *bt_spares_get(bt_spares_t *s, size_t len, size_t *cap_p)
{
    size_t best = s->n;
    void *p;

    if (len == 0) {
        return NULL;
    }
    for (size_t i = 0; i < s->n; i++) {
        size_t cap = s->slot[i].cap;

        if (cap >= len && cap / 4 <= len &&
            (best == s->n || cap < s->slot[best].cap)) {
            best = i;
        }
    }
    if (best < s->n) {
        p = s->slot[best].p;
        *cap_p = s->slot[best].cap;
        s->bytes -= *cap_p;
        s->slot[best] = s->slot[--s->n];
        return p;
    }
    *cap_p = round_up_pow2(len);
    p = malloc(*cap_p);
    return p;
}

void bt_spares_put(bt_spares_t *s, void *p, size_t cap)
{
    if (p == NULL) {
        return;
    }
    if (s == NULL || s->n == BT_SPARES_MAX || cap > s->max_bytes ||
        s->bytes > s->max_bytes - cap) {
        free(p);
        return;
    }
    s->slot[s->n].p = p;
    s->slot[s->n].cap = cap;
    s->n++;
    s->bytes += cap;
}

void bt_spares_clear(bt_spares_t *s)
{
    for (size_t i = 0; i < s->n; i++) {
        free(s->slot[i].p);
    }
    s->n = 0;
    s->bytes = 0;
}
