#include "safetensors.h"

#include "base/array.h"
#include "base/endian.h"
#include "base/json.h"
#include "base/log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define BT_ST_MAX_SHARDS 4096
#define BT_ST_MAX_INDEX (64u << 20)

typedef struct {
    char   *path;
    void   *map;
    size_t  size;
} bt_st_file_t;

struct bt_st_set {
    bt_st_file_t   *files;
    size_t          n_files;
    bt_st_tensor_t *tensors;
    size_t          n_tensors;
    size_t          cap_tensors;
    size_t          bytes;
};

static const struct {
    const char *name;
    int         size;
    int         ok;   /* 1: we compute in it */
    bt_dtype_t  dtype;
} st_dtypes[] = {
    {"F32", 4, 1, BT_DTYPE_F32}, {"F16", 2, 1, BT_DTYPE_F16},
    {"BF16", 2, 1, BT_DTYPE_BF16}, {"F64", 8, 0, BT_DTYPE_F32},
    {"I64", 8, 0, BT_DTYPE_F32}, {"U64", 8, 0, BT_DTYPE_F32},
    {"I32", 4, 0, BT_DTYPE_F32}, {"U32", 4, 0, BT_DTYPE_F32},
    {"I16", 2, 0, BT_DTYPE_F32}, {"U16", 2, 0, BT_DTYPE_F32},
    {"I8", 1, 0, BT_DTYPE_F32}, {"U8", 1, 0, BT_DTYPE_F32},
    {"BOOL", 1, 0, BT_DTYPE_F32}, {"F8_E4M3", 1, 0, BT_DTYPE_F32},
    {"F8_E5M2", 1, 0, BT_DTYPE_F32},
};

static bt_status_t st_parse_tensor(const char *file, const char *name,
                                   json_t *val, uint64_t data_len,
                                   bt_st_tensor_t *t, uint64_t *begin_p)
{
    json_t *dt, *shape, *offs, *v;
    const char *dts;
    uint64_t numel = 1, b, e;
    int esize = 0;
    size_t i;

    memset(t, 0, sizeof(*t));
    if (!json_is_object(val)) {
        bt_error("file %s tensor %s: header entry is not an object", file,
                 name);
        return BT_ERR_CORRUPT;
    }
    dt = json_object_get(val, "dtype");
    shape = json_object_get(val, "shape");
    offs = json_object_get(val, "data_offsets");
    if (!json_is_string(dt) || !json_is_array(shape) ||
        !json_is_array(offs) || json_array_size(offs) != 2) {
        bt_error("file %s tensor %s: needs dtype, shape and data_offsets",
                 file, name);
        return BT_ERR_CORRUPT;
    }
    dts = json_string_value(dt);
    for (i = 0; i < sizeof(st_dtypes) / sizeof(st_dtypes[0]); i++) {
        if (strcmp(dts, st_dtypes[i].name) == 0) {
            esize = st_dtypes[i].size;
            t->dtype_ok = st_dtypes[i].ok;
            t->dtype = st_dtypes[i].dtype;
            break;
        }
    }
    if (esize == 0) {
        bt_error("file %s tensor %s: unknown dtype '%.16s'", file, name, dts);
        return BT_ERR_CORRUPT;
    }
    snprintf(t->dtype_name, sizeof(t->dtype_name), "%s", dts);
    if (json_array_size(shape) > BT_ST_MAX_DIMS) {
        bt_error("file %s tensor %s: %zu dimensions, at most %d supported",
                 file, name, json_array_size(shape), BT_ST_MAX_DIMS);
        return BT_ERR_CORRUPT;
    }
    t->n_dims = (int)json_array_size(shape);
    json_array_foreach(shape, i, v) {
        json_int_t d;

        if (!json_is_integer(v) || (d = json_integer_value(v)) < 0 ||
            d > ((json_int_t)1 << 40)) {
            bt_error("file %s tensor %s: bad shape entry %zu", file, name, i);
            return BT_ERR_CORRUPT;
        }
        t->shape[i] = d;
        if (d != 0 && numel > (UINT64_MAX >> 4) / (uint64_t)d) {
            bt_error("file %s tensor %s: shape overflows", file, name);
            return BT_ERR_CORRUPT;
        }
        numel *= (uint64_t)d;
    }
    if (!json_is_integer(json_array_get(offs, 0)) ||
        !json_is_integer(json_array_get(offs, 1)) ||
        json_integer_value(json_array_get(offs, 0)) < 0 ||
        json_integer_value(json_array_get(offs, 1)) < 0) {
        bt_error("file %s tensor %s: bad data_offsets", file, name);
        return BT_ERR_CORRUPT;
    }
    b = (uint64_t)json_integer_value(json_array_get(offs, 0));
    e = (uint64_t)json_integer_value(json_array_get(offs, 1));
    if (b > e || e > data_len) {
        bt_error("file %s tensor %s: data_offsets [%llu, %llu) outside the "
                 "%llu data bytes (truncated file?)", file, name,
                 (unsigned long long)b, (unsigned long long)e,
                 (unsigned long long)data_len);
        return BT_ERR_TRUNCATED;
    }
    if (e - b != numel * (uint64_t)esize) {
        bt_error("file %s tensor %s: %llu bytes for %llu elements of %s",
                 file, name, (unsigned long long)(e - b),
                 (unsigned long long)numel, dts);
        return BT_ERR_CORRUPT;
    }
    t->nbytes = (size_t)(e - b);
    *begin_p = b;
    return BT_OK;
}

bt_status_t bt_st_header_parse(const char *file, const char *hdr, size_t len,
                               uint64_t data_len, bt_st_tensor_cb add,
                               void *ctx)
{
    char err[BT_JSON_ERR_SIZE];
    json_t *root, *val;
    const char *key;
    bt_status_t status = BT_OK;

    if (bt_json_parse(hdr, len, BT_ST_MAX_HEADER, &root, err,
                      sizeof(err)) != BT_OK) {
        bt_error("file %s: safetensors header: %s", file, err);
        return BT_ERR_CORRUPT;
    }
    if (!json_is_object(root)) {
        bt_error("file %s: safetensors header is not a json object", file);
        json_decref(root);
        return BT_ERR_CORRUPT;
    }
    json_object_foreach(root, key, val) {
        bt_st_tensor_t t;
        uint64_t begin;

        if (strcmp(key, "__metadata__") == 0) {
            continue;
        }
        status = st_parse_tensor(file, key, val, data_len, &t, &begin);
        if (status == BT_OK && add != NULL) {
            status = add(ctx, key, &t, begin);
        }
        if (status != BT_OK) {
            break;
        }
    }
    json_decref(root);
    return status;
}

typedef struct {
    bt_st_set_t  *set;
    bt_st_file_t *file;
    const uint8_t *data;
} st_add_ctx_t;

static bt_status_t st_add(void *vctx, const char *name,
                          const bt_st_tensor_t *t, uint64_t begin)
{
    st_add_ctx_t *c = vctx;
    bt_st_set_t *set = c->set;
    bt_st_tensor_t *dst;

    if (BT_ARRAY_RESERVE(set->tensors, set->cap_tensors, set->n_tensors + 1, 256)
        != BT_OK) {
        bt_error("file %s: out of memory for the tensor table", c->file->path);
        return BT_ERR_NO_MEMORY;
    }
    dst = &set->tensors[set->n_tensors];
    *dst = *t;
    dst->name = strdup(name);
    if (dst->name == NULL) {
        return BT_ERR_NO_MEMORY;
    }
    dst->data = c->data + begin;
    dst->file = c->file->path;
    set->n_tensors++;
    return BT_OK;
}

static bt_status_t st_file_open(bt_st_set_t *set, const char *path)
{
    bt_st_file_t *f = &set->files[set->n_files];
    st_add_ctx_t ctx;
    struct stat st;
    uint64_t hlen = 0;
    bt_status_t status;
    int fd;

    memset(f, 0, sizeof(*f));
    f->path = strdup(path);
    if (f->path == NULL) {
        return BT_ERR_NO_MEMORY;
    }
    set->n_files++;  /* from here destroy cleans it up */
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        bt_error("file %s: cannot open: %s", path, bt_strerror(errno));
        return errno == ENOENT ? BT_ERR_NOT_FOUND : BT_ERR_IO;
    }
    if (fstat(fd, &st) != 0) {
        bt_error("file %s: cannot stat: %s", path, bt_strerror(errno));
        close(fd);
        return BT_ERR_IO;
    }
    if (st.st_size < 8) {
        bt_error("file %s: %lld bytes, too short for a safetensors header",
                 path, (long long)st.st_size);
        close(fd);
        return BT_ERR_TRUNCATED;
    }
    f->size = (size_t)st.st_size;
    f->map = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (f->map == MAP_FAILED) {
        f->map = NULL;
        bt_error("file %s: mmap of %zu bytes failed: %s", path, f->size, bt_strerror(errno));
        return BT_ERR_IO;
    }
    hlen = bt_get_le64(f->map);
    if (hlen > f->size - 8 || hlen > BT_ST_MAX_HEADER) {
        bt_error("file %s: header length %llu past the end of the %zu-byte "
                 "file (truncated or not safetensors)", path,
                 (unsigned long long)hlen, f->size);
        return BT_ERR_TRUNCATED;
    }
    ctx.set = set;
    ctx.file = f;
    ctx.data = (const uint8_t *)f->map + 8 + hlen;
    status = bt_st_header_parse(path, (const char *)f->map + 8, (size_t)hlen,
                                f->size - 8 - hlen, st_add, &ctx);
    if (status == BT_OK) {
        set->bytes += f->size;
    }
    return status;
}

static int st_cmp(const void *a, const void *b)
{
    return strcmp(((const bt_st_tensor_t *)a)->name,
                  ((const bt_st_tensor_t *)b)->name);
}

static bool st_shard_name_ok(const char *s)
{
    size_t n = strlen(s);

    return n > 0 && n < 256 && s[0] != '.' && strchr(s, '/') == NULL;
}

static bt_status_t st_open_index(bt_st_set_t *set, const char *dir,
                                 const char *index_path)
{
    char err[BT_JSON_ERR_SIZE], path[PATH_MAX];
    json_t *root, *map, *val;
    const char **names = NULL;
    size_t n_names = 0;
    const char *key;
    bt_status_t status;

    status = bt_json_load_file(index_path, BT_ST_MAX_INDEX, &root, err,
                               sizeof(err));
    if (status != BT_OK) {
        bt_error("file %s: %s", index_path, err);
        return BT_ERR_CORRUPT;
    }
    map = json_object_get(root, "weight_map");
    if (!json_is_object(map) || json_object_size(map) == 0) {
        bt_error("file %s: no weight_map object", index_path);
        status = BT_ERR_CORRUPT;
        goto out;
    }
    names = calloc(json_object_size(map), sizeof(*names));
    if (names == NULL) {
        status = BT_ERR_NO_MEMORY;
        goto out;
    }
    json_object_foreach(map, key, val) {
        const char *s = json_string_value(val);
        size_t j;

        if (s == NULL || !st_shard_name_ok(s)) {
            bt_error("file %s tensor %s: bad shard file name", index_path,
                     key);
            status = BT_ERR_CORRUPT;
            goto out;
        }
        for (j = 0; j < n_names && strcmp(names[j], s) != 0; j++) {
        }
        if (j == n_names) {
            if (n_names == BT_ST_MAX_SHARDS) {
                bt_error("file %s: more than %d shards", index_path,
                         BT_ST_MAX_SHARDS);
                status = BT_ERR_TOO_LARGE;
                goto out;
            }
            names[n_names++] = s;
        }
    }
    set->files = calloc(n_names, sizeof(*set->files));
    if (set->files == NULL) {
        status = BT_ERR_NO_MEMORY;
        goto out;
    }
    for (size_t j = 0; j < n_names; j++) {
        snprintf(path, sizeof(path), "%s/%s", dir, names[j]);
        status = st_file_open(set, path);
        if (status != BT_OK) {
            goto out;
        }
    }
    if (set->n_tensors > 0) {
        qsort(set->tensors, set->n_tensors, sizeof(*set->tensors), st_cmp);
    }
    json_object_foreach(map, key, val) {
        const bt_st_tensor_t *t = bt_st_set_find(set, key);

        if (t == NULL) {
            bt_error("file %s tensor %s: listed in the index but not in %s",
                     index_path, key, json_string_value(val));
            status = BT_ERR_CORRUPT;
            goto out;
        }
    }
    status = BT_OK;
out:
    free(names);
    json_decref(root);
    return status;
}

bt_status_t bt_st_set_open(const char *dir, bt_st_set_t **set_p)
{
    char path[PATH_MAX];
    bt_st_set_t *set;
    bt_status_t status;

    set = calloc(1, sizeof(*set));
    if (set == NULL) {
        return BT_ERR_NO_MEMORY;
    }
    snprintf(path, sizeof(path), "%s/model.safetensors.index.json", dir);
    if (access(path, F_OK) == 0) {
        status = st_open_index(set, dir, path);
    } else {
        set->files = calloc(1, sizeof(*set->files));
        if (set->files == NULL) {
            status = BT_ERR_NO_MEMORY;
        } else {
            snprintf(path, sizeof(path), "%s/model.safetensors", dir);
            status = st_file_open(set, path);
            if (set->n_tensors > 0) {
                qsort(set->tensors, set->n_tensors, sizeof(*set->tensors),
                      st_cmp);
            }
        }
    }
    if (status == BT_OK) {
        for (size_t i = 1; i < set->n_tensors; i++) {
            if (strcmp(set->tensors[i - 1].name, set->tensors[i].name) == 0) {
                bt_error("file %s tensor %s: also in %s", set->tensors[i].file,
                         set->tensors[i].name, set->tensors[i - 1].file);
                status = BT_ERR_CORRUPT;
                break;
            }
        }
    }
    if (status != BT_OK) {
        bt_st_set_destroy(set);
        return status;
    }
    *set_p = set;
    return BT_OK;
}

void bt_st_set_destroy(bt_st_set_t *set)
{
    if (set == NULL) {
        return;
    }
    for (size_t i = 0; i < set->n_tensors; i++) {
        free(set->tensors[i].name);
    }
    free(set->tensors);
    for (size_t i = 0; i < set->n_files; i++) {
        if (set->files[i].map != NULL) {
            munmap(set->files[i].map, set->files[i].size);
        }
        free(set->files[i].path);
    }
    free(set->files);
    free(set);
}

const bt_st_tensor_t *bt_st_set_find(const bt_st_set_t *set, const char *name)
{
    size_t lo = 0, hi = set->n_tensors;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(name, set->tensors[mid].name);

        if (c == 0) {
            return &set->tensors[mid];
        }
        if (c < 0) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    return NULL;
}

size_t bt_st_set_count(const bt_st_set_t *set)
{
    return set->n_tensors;
}

const bt_st_tensor_t *bt_st_set_at(const bt_st_set_t *set, size_t i)
{
    return i < set->n_tensors ? &set->tensors[i] : NULL;
}

size_t bt_st_set_bytes(const bt_st_set_t *set)
{
    return set->bytes;
}

bt_status_t bt_st_set_get(const bt_st_set_t *set, const char *name,
                          int n_dims, const int64_t *shape,
                          const bt_st_tensor_t **t_p)
{
    const bt_st_tensor_t *t = bt_st_set_find(set, name);
    bool same;

    if (t == NULL) {
        bt_error("model %s tensor %s: missing",
                 set->n_files ? set->files[0].path : "?", name);
        return BT_ERR_NOT_FOUND;
    }
    same = t->n_dims == n_dims;
    for (int i = 0; same && i < n_dims; i++) {
        same = t->shape[i] == shape[i];
    }
    if (!same) {
        char want[96], got[96];
        int w = 0, g = 0;

        for (int i = 0; i < n_dims; i++) {
            w += snprintf(want + w, sizeof(want) - (size_t)w, "%s%lld",
                          i ? "," : "", (long long)shape[i]);
        }
        want[w] = '\0';
        got[0] = '\0';
        for (int i = 0; i < t->n_dims; i++) {
            g += snprintf(got + g, sizeof(got) - (size_t)g, "%s%lld",
                          i ? "," : "", (long long)t->shape[i]);
        }
        bt_error("file %s tensor %s: shape [%s], expected [%s]", t->file,
                 name, got, want);
        return BT_ERR_CORRUPT;
    }
    if (!t->dtype_ok) {
        bt_error("file %s tensor %s: dtype %s, expected F32, F16 or BF16",
                 t->file, name, t->dtype_name);
        return BT_ERR_CORRUPT;
    }
    *t_p = t;
    return BT_OK;
}
