/* Engine element type <-> kv-spec dtype id (kv_elem.h). */
#include "kv_elem.h"

bt_kv_dtype_t bt_kv_dtype_of_elem(bt_dtype_t elem)
{
    switch (elem) {
    case BT_DTYPE_F32:  return BT_KV_DTYPE_F32;
    case BT_DTYPE_F16:  return BT_KV_DTYPE_F16;
    case BT_DTYPE_BF16: return BT_KV_DTYPE_BF16;
    }
    return BT_KV_DTYPE_UNSPECIFIED;
}

bool bt_kv_dtype_elem(bt_kv_dtype_t dtype, bt_dtype_t *elem_p)
{
    switch (dtype) {
    case BT_KV_DTYPE_F32:  *elem_p = BT_DTYPE_F32;  return true;
    case BT_KV_DTYPE_F16:  *elem_p = BT_DTYPE_F16;  return true;
    case BT_KV_DTYPE_BF16: *elem_p = BT_DTYPE_BF16; return true;
    case BT_KV_DTYPE_UNSPECIFIED: break;
    }
    return false;
}

bool bt_kv_dtype_parse(const char *text, bt_kv_dtype_t *dtype_p)
{
    bt_kv_dtype_t dtype;
    bt_dtype_t elem;

    if (!bt_dtype_parse(text, &elem) ||
        (dtype = bt_kv_dtype_of_elem(elem)) == BT_KV_DTYPE_UNSPECIFIED) {
        return false;
    }
    *dtype_p = dtype;
    return true;
}
