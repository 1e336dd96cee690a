/* safetensors files, memory-mapped, never copied.
 *
 * A model is one `model.safetensors` or shards listed by
 * `model.safetensors.index.json`. Every header is validated before use:
 * its length against the file, each tensor's dtype, shape and byte range
 * against the data section (no overlap checks beyond bounds: overlapping
 * tensors are harmless for reading). Errors name the file and tensor. */
#ifndef BT_ENGINE_SAFETENSORS_H
#define BT_ENGINE_SAFETENSORS_H

#include "base/status.h"
#include "engine/dtype.h"

#include <stddef.h>
#include <stdint.h>

#define BT_ST_MAX_DIMS 4
#define BT_ST_MAX_HEADER (100u << 20)  /* as the reference implementation */

typedef struct {
    char       *name;                   /* owned by the set */
    bool        dtype_ok;               /* false: a dtype we do not compute in */
    bt_dtype_t  dtype;
    char        dtype_name[12];         /* as written in the file ("BF16", "I64") */
    int         n_dims;
    int64_t     shape[BT_ST_MAX_DIMS];
    const void *data;                   /* inside the mapping */
    size_t      nbytes;
    const char *file;                   /* path of the shard, owned by the set */
} bt_st_tensor_t;

typedef struct bt_st_set bt_st_set_t;

/* Parses one header: `hdr` is the JSON text (`len` bytes), `data_len` the
 * size of the data section that follows it. Calls `add` for each tensor
 * with data offsets already checked to lie within [0, data_len). For the
 * fuzzer and for bt_st_set_open. `file` only names errors. */
typedef bt_status_t (*bt_st_tensor_cb)(void *ctx, const char *name,
                                       const bt_st_tensor_t *t,
                                       uint64_t begin);
bt_status_t bt_st_header_parse(const char *file, const char *hdr, size_t len,
                               uint64_t data_len, bt_st_tensor_cb add,
                               void *ctx);

/* Opens every shard of the model in `dir`. */
bt_status_t bt_st_set_open(const char *dir, bt_st_set_t **set_p);
void bt_st_set_destroy(bt_st_set_t *set);

/* NULL when absent (not logged: the caller knows whether it is optional). */
const bt_st_tensor_t *bt_st_set_find(const bt_st_set_t *set, const char *name);
size_t bt_st_set_count(const bt_st_set_t *set);
const bt_st_tensor_t *bt_st_set_at(const bt_st_set_t *set, size_t i);
/* Total bytes mapped. */
size_t bt_st_set_bytes(const bt_st_set_t *set);

/* Checks that `name` exists with exactly the given shape (n_dims entries)
 * and a dtype we compute in; logs "file F tensor N: ..." otherwise.
 * BT_ERR_NOT_FOUND or BT_ERR_CORRUPT. */
bt_status_t bt_st_set_get(const bt_st_set_t *set, const char *name,
                          int n_dims, const int64_t *shape,
                          const bt_st_tensor_t **t_p);

#endif
