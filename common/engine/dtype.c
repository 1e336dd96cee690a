#include "dtype.h"

#include <math.h>
#include <strings.h>

const char *bt_dtype_name(bt_dtype_t t)
{
    switch (t) {
    case BT_DTYPE_F32:  return "f32";
    case BT_DTYPE_F16:  return "f16";
    case BT_DTYPE_BF16: return "bf16";
    }
    return "unknown";
}

bool bt_dtype_parse(const char *text, bt_dtype_t *t_p)
{
    static const struct { const char *name; bt_dtype_t t; } names[] = {
        {"f32", BT_DTYPE_F32}, {"float32", BT_DTYPE_F32},
        {"f16", BT_DTYPE_F16}, {"float16", BT_DTYPE_F16},
        {"bf16", BT_DTYPE_BF16}, {"bfloat16", BT_DTYPE_BF16},
    };

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcasecmp(text, names[i].name) == 0) {
            *t_p = names[i].t;
            return true;
        }
    }
    return false;
}

void bt_dtype_convert_row(const void *src, bt_dtype_t src_t, void *dst,
                          bt_dtype_t dst_t, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        bt_dtype_store(dst, dst_t, i, bt_dtype_load(src, src_t, i));
    }
}
