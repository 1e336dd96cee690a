#include "json.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

bt_status_t bt_json_parse(const char *text, size_t len, size_t max_len,
                          json_t **root_p, char *err, size_t err_size)
{
    json_error_t jerr;
    json_t *root;

    if (len > max_len) {
        snprintf(err, err_size, "json is %zu bytes, over the limit of %zu",
                 len, max_len);
        return BT_ERR_TOO_LARGE;
    }
    root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        snprintf(err, err_size, "malformed json at line %d column %d: %s",
                 jerr.line, jerr.column, jerr.text);
        return BT_ERR_INVALID_ARG;
    }
    *root_p = root;
    return BT_OK;
}

bt_status_t bt_json_load_file(const char *path, size_t max_len,
                              json_t **root_p, char *err, size_t err_size)
{
    struct stat st;
    bt_status_t status;
    size_t got;
    char *text;
    FILE *f;

    f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(err, err_size, "cannot open %s: %s", path, strerror(errno));
        return errno == ENOENT ? BT_ERR_NOT_FOUND : BT_ERR_IO;
    }
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, err_size, "%s is not a regular file", path);
        fclose(f);
        return BT_ERR_INVALID_ARG;
    }
    if ((uint64_t)st.st_size > max_len) {
        snprintf(err, err_size, "%s is %lld bytes, over the limit of %zu",
                 path, (long long)st.st_size, max_len);
        fclose(f);
        return BT_ERR_TOO_LARGE;
    }
    text = malloc((size_t)st.st_size + 1);
    if (text == NULL) {
        fclose(f);
        snprintf(err, err_size, "out of memory reading %s", path);
        return BT_ERR_NO_MEMORY;
    }
    got = fread(text, 1, (size_t)st.st_size, f);
    fclose(f);
    if (got != (size_t)st.st_size) {
        free(text);
        snprintf(err, err_size, "short read on %s", path);
        return BT_ERR_IO;
    }
    status = bt_json_parse(text, got, max_len, root_p, err, err_size);
    if (status != BT_OK) {
        char inner[BT_JSON_ERR_SIZE];

        snprintf(inner, sizeof(inner), "%s", err);
        snprintf(err, err_size, "%s: %s", path, inner);
    }
    free(text);
    return status;
}

const char *bt_json_type_name(const json_t *value)
{
    switch (json_typeof(value)) {
    case JSON_OBJECT:  return "an object";
    case JSON_ARRAY:   return "an array";
    case JSON_STRING:  return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL:    return "a number";
    case JSON_TRUE:
    case JSON_FALSE:   return "a boolean";
    case JSON_NULL:    return "null";
    }
    return "unknown";
}

/* Looks `key` up; fills the message for a missing required field. */
static bt_status_t bt_json_field(const json_t *obj, const char *key,
                                 bool required, json_t **value_p, char *err,
                                 size_t err_size)
{
    json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;

    if (v == NULL) {
        if (!required) {
            return BT_ERR_NOT_FOUND;
        }
        snprintf(err, err_size, "missing required field '%s'", key);
        return BT_ERR_INVALID_ARG;
    }
    *value_p = v;
    return BT_OK;
}

static bt_status_t bt_json_wrong_type(const char *key, const char *want,
                                      const json_t *got, char *err,
                                      size_t err_size)
{
    snprintf(err, err_size, "field '%s': expected %s, got %s", key, want,
             bt_json_type_name(got));
    return BT_ERR_INVALID_ARG;
}

bt_status_t bt_json_get_string(const json_t *obj, const char *key,
                               bool required, const char **value_p,
                               char *err, size_t err_size)
{
    json_t *v;
    bt_status_t status = bt_json_field(obj, key, required, &v, err, err_size);

    if (status != BT_OK) {
        return status;
    }
    if (!json_is_string(v)) {
        return bt_json_wrong_type(key, "a string", v, err, err_size);
    }
    *value_p = json_string_value(v);
    return BT_OK;
}

bt_status_t bt_json_get_int(const json_t *obj, const char *key, bool required,
                            int64_t min, int64_t max, int64_t *value_p,
                            char *err, size_t err_size)
{
    json_t *v;
    json_int_t i;
    bt_status_t status = bt_json_field(obj, key, required, &v, err, err_size);

    if (status != BT_OK) {
        return status;
    }
    if (!json_is_integer(v)) {
        return bt_json_wrong_type(key, "an integer", v, err, err_size);
    }
    i = json_integer_value(v);
    if (i < min || i > max) {
        snprintf(err, err_size, "field '%s': %lld is out of range [%lld, %lld]",
                 key, (long long)i, (long long)min, (long long)max);
        return BT_ERR_INVALID_ARG;
    }
    *value_p = (int64_t)i;
    return BT_OK;
}

bt_status_t bt_json_get_number(const json_t *obj, const char *key,
                               bool required, double min, double max,
                               double *value_p, char *err, size_t err_size)
{
    json_t *v;
    double d;
    bt_status_t status = bt_json_field(obj, key, required, &v, err, err_size);

    if (status != BT_OK) {
        return status;
    }
    if (!json_is_number(v)) {
        return bt_json_wrong_type(key, "a number", v, err, err_size);
    }
    d = json_number_value(v);
    if (!(d >= min && d <= max)) {
        snprintf(err, err_size, "field '%s': %g is out of range [%g, %g]", key,
                 d, min, max);
        return BT_ERR_INVALID_ARG;
    }
    *value_p = d;
    return BT_OK;
}

bt_status_t bt_json_get_bool(const json_t *obj, const char *key, bool required,
                             bool *value_p, char *err, size_t err_size)
{
    json_t *v;
    bt_status_t status = bt_json_field(obj, key, required, &v, err, err_size);

    if (status != BT_OK) {
        return status;
    }
    if (!json_is_boolean(v)) {
        return bt_json_wrong_type(key, "a boolean", v, err, err_size);
    }
    *value_p = json_is_true(v);
    return BT_OK;
}

bt_status_t bt_json_get_array(const json_t *obj, const char *key,
                              bool required, json_t **value_p, char *err,
                              size_t err_size)
{
    json_t *v;
    bt_status_t status = bt_json_field(obj, key, required, &v, err, err_size);

    if (status != BT_OK) {
        return status;
    }
    if (!json_is_array(v)) {
        return bt_json_wrong_type(key, "an array", v, err, err_size);
    }
    *value_p = v;
    return BT_OK;
}

bt_status_t bt_json_get_object(const json_t *obj, const char *key,
                               bool required, json_t **value_p, char *err,
                               size_t err_size)
{
    json_t *v;
    bt_status_t status = bt_json_field(obj, key, required, &v, err, err_size);

    if (status != BT_OK) {
        return status;
    }
    if (!json_is_object(v)) {
        return bt_json_wrong_type(key, "an object", v, err, err_size);
    }
    *value_p = v;
    return BT_OK;
}

const char *bt_json_unknown_key(const json_t *obj, const char *const *allowed)
{
    const char *key;
    json_t *value;

    json_object_foreach((json_t *)obj, key, value) {
        const char *const *a;

        (void)value;
        for (a = allowed; *a != NULL && strcmp(*a, key) != 0; a++) {
        }
        if (*a == NULL) {
            return key;
        }
    }
    return NULL;
}

bt_status_t bt_json_check_keys(const json_t *obj, const char *const *allowed,
                               char *err, size_t err_size)
{
    const char *key = bt_json_unknown_key(obj, allowed);

    if (key != NULL) {
        snprintf(err, err_size, "unknown field '%s'", key);
        return BT_ERR_INVALID_ARG;
    }
    return BT_OK;
}

char *bt_json_dump(const json_t *value)
{
    return json_dumps(value, JSON_COMPACT | JSON_PRESERVE_ORDER |
                             JSON_ENCODE_ANY);
}
