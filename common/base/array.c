#include "array.h"

#include <stdlib.h>

bt_status_t bt_array_reserve(void **items, size_t *cap, size_t need,
                             size_t elem_size, size_t min_cap)
{
    size_t n = *cap;
    void *p;

    if (need <= n) {
        return BT_OK;
    }
    if (n < min_cap) {
        n = min_cap;
    }
    while (n < need) {
        n = n > SIZE_MAX / 2 ? need : n * 2;
    }
    if (elem_size != 0 && n > SIZE_MAX / elem_size) {
        return BT_ERR_TOO_LARGE;
    }
    p = realloc(*items, n * elem_size);
    if (p == NULL) {
        return BT_ERR_NO_MEMORY;
    }
    *items = p;
    *cap = n;
    return BT_OK;
}
