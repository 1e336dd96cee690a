/* JSON reading and writing over jansson (see docs/development.md for why
 * jansson). Thin on purpose: jansson's json_t is used directly; this adds
 * bounded parsing and typed field access with precise error messages such
 * as "field 'max_tokens': expected an integer, got a string". */
#ifndef BT_JSON_H
#define BT_JSON_H

#include "status.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BT_JSON_ERR_SIZE 256

/* Parses exactly `len` bytes (no NUL needed). Rejects input over
 * `max_len`, invalid UTF-8, duplicate object keys, NUL inside strings and
 * trailing garbage. On success *root_p holds a new reference
 * (json_decref it). */
bt_status_t bt_json_parse(const char *text, size_t len, size_t max_len,
                          json_t **root_p, char *err, size_t err_size);

/* Reads and parses a whole file no larger than `max_len`. */
bt_status_t bt_json_load_file(const char *path, size_t max_len,
                              json_t **root_p, char *err, size_t err_size);

/* "an integer", "a string", ... for messages. */
const char *bt_json_type_name(const json_t *value);

/* Typed getters. A missing field returns BT_ERR_NOT_FOUND when `required`
 * is false (the output is left untouched, so preset a default) and
 * BT_ERR_INVALID_ARG with a message when it is true. A present field of
 * the wrong type or out of range is always BT_ERR_INVALID_ARG. The string
 * returned is borrowed from the JSON value. */
bt_status_t bt_json_get_string(const json_t *obj, const char *key,
                               bool required, const char **value_p,
                               char *err, size_t err_size);
bt_status_t bt_json_get_int(const json_t *obj, const char *key, bool required,
                            int64_t min, int64_t max, int64_t *value_p,
                            char *err, size_t err_size);
bt_status_t bt_json_get_number(const json_t *obj, const char *key,
                               bool required, double min, double max,
                               double *value_p, char *err, size_t err_size);
bt_status_t bt_json_get_bool(const json_t *obj, const char *key, bool required,
                             bool *value_p, char *err, size_t err_size);
bt_status_t bt_json_get_array(const json_t *obj, const char *key,
                              bool required, json_t **value_p, char *err,
                              size_t err_size);
bt_status_t bt_json_get_object(const json_t *obj, const char *key,
                               bool required, json_t **value_p, char *err,
                               size_t err_size);

/* The first key of object `obj` not in the NULL-terminated `allowed`
 * list, or NULL when every key is allowed. */
const char *bt_json_unknown_key(const json_t *obj, const char *const *allowed);

/* BT_ERR_INVALID_ARG naming the first key of `obj` not in the
 * NULL-terminated `allowed` list. */
bt_status_t bt_json_check_keys(const json_t *obj, const char *const *allowed,
                               char *err, size_t err_size);

/* Compact serialisation (keys in insertion order); free() the result.
 * NULL on out of memory. */
char *bt_json_dump(const json_t *value);

#endif
