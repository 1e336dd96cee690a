/* The one mapping between the engine's element type (engine/dtype.h, what
 * kernels compute in) and kv-spec's KV dtype id (kvspec/kv_spec.h, the
 * values of baton.v1.KvDtype, what geometries, hashes and messages carry). */
#ifndef BT_KV_ELEM_H
#define BT_KV_ELEM_H

#include "engine/dtype.h"
#include "kvspec/kv_spec.h"

/* BT_KV_DTYPE_UNSPECIFIED for a value outside bt_dtype_t. */
bt_kv_dtype_t bt_kv_dtype_of_elem(bt_dtype_t elem);
/* False (and *elem_p untouched) for an unknown id. */
bool bt_kv_dtype_elem(bt_kv_dtype_t dtype, bt_dtype_t *elem_p);
/* A --kv-dtype option: the spellings of bt_dtype_parse, as a kv-spec id;
 * false (and *dtype_p untouched) for anything else. */
bool bt_kv_dtype_parse(const char *text, bt_kv_dtype_t *dtype_p);

#endif
