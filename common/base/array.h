/* Growable arrays: a pointer, a count and a capacity kept by the caller,
 * grown by doubling with the overflow checks written once. */
#ifndef BT_ARRAY_H
#define BT_ARRAY_H

#include "status.h"

#include <stddef.h>
#include <stdint.h>

/* Makes room for at least `need` elements of `elem_size` bytes in *items
 * (capacity *cap, first allocation at least `min_cap`). On failure the
 * array is unchanged: BT_ERR_NO_MEMORY, or BT_ERR_TOO_LARGE when the
 * size would overflow. */
bt_status_t bt_array_reserve(void **items, size_t *cap, size_t need,
                             size_t elem_size, size_t min_cap);

/* The same for an array of T at `_ptr` with a size_t capacity `_cap`. */
#define BT_ARRAY_RESERVE(_ptr, _cap, _need, _min) \
    bt_array_reserve((void **)&(_ptr), &(_cap), (_need), sizeof(*(_ptr)), (_min))

#endif
