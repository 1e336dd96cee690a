/* Reading and checking response_format (response_format.h). */
#include "response_format.h"

#include "engine/grammar/grammar.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bt_status_t bt_response_format_check(const Baton__V1__ResponseFormat *rf,
                                     char *err, size_t err_size,
                                     bool ignore_eos)
{
    char gerr[BT_GRAMMAR_ERR_SIZE];
    bt_grammar_t *g = NULL;
    bt_status_t st;

    if (rf == NULL || rf->type == BATON__V1__RESPONSE_FORMAT__TYPE__TYPE_TEXT) {
        return BT_OK;
    }
    if (ignore_eos) {
        snprintf(err, err_size, "response_format cannot be combined with "
                 "ignore_eos: the document ends with the end-of-sequence token");
        return BT_ERR_INVALID_ARG;
    }
    if (rf->type != BATON__V1__RESPONSE_FORMAT__TYPE__TYPE_JSON_OBJECT &&
        rf->type != BATON__V1__RESPONSE_FORMAT__TYPE__TYPE_JSON_SCHEMA) {
        snprintf(err, err_size, "response_format: unknown type %d", (int)rf->type);
        return BT_ERR_INVALID_ARG;
    }
    st = bt_grammar_compile(rf->type == BATON__V1__RESPONSE_FORMAT__TYPE__TYPE_JSON_OBJECT
                            ? BT_GRAMMAR_JSON_OBJECT : BT_GRAMMAR_JSON_SCHEMA,
                            rf->schema, rf->schema ? strlen(rf->schema) : 0,
                            &g, gerr, sizeof(gerr));
    bt_grammar_destroy(g);
    if (st != BT_OK) {
        snprintf(err, err_size, "response_format: %s", gerr);
        return st == BT_ERR_NO_MEMORY ? BT_ERR_TOO_LARGE : st;
    }
    return BT_OK;
}

static bt_status_t bt_rf_fail(char *err, size_t err_size, const char *msg)
{
    snprintf(err, err_size, "field 'response_format': %s", msg);
    return BT_ERR_INVALID_ARG;
}

bt_status_t bt_response_format_parse(const json_t *v, bt_arena_t *arena,
                                     Baton__V1__ResponseFormat **rf_p,
                                     char *err, size_t err_size)
{
    const char *type = json_string_value(json_object_get(v, "type"));
    Baton__V1__ResponseFormat *rf;
    const json_t *js, *schema, *x;
    const char *key;
    char *text;

    *rf_p = NULL;
    if (v == NULL) {
        return BT_OK;
    }
    if (!json_is_object(v) || type == NULL) {
        return bt_rf_fail(err, err_size, "expected an object with a 'type'");
    }
    json_object_foreach((json_t *)v, key, x) {
        if (strcmp(key, "type") != 0 && strcmp(key, "json_schema") != 0) {
            snprintf(err, err_size, "field 'response_format': unknown field '%.64s'",
                     key);
            return BT_ERR_INVALID_ARG;
        }
    }
    if (strcmp(type, "text") == 0) {
        return json_object_size(v) == 1 ? BT_OK
               : bt_rf_fail(err, err_size, "type 'text' takes no other field");
    }
    rf = bt_arena_calloc(arena, 1, sizeof(*rf));
    if (rf == NULL) {
        return BT_ERR_NO_MEMORY;
    }
    baton__v1__response_format__init(rf);
    if (strcmp(type, "json_object") == 0) {
        if (json_object_size(v) != 1) {
            return bt_rf_fail(err, err_size, "type 'json_object' takes no other field");
        }
        rf->type = BATON__V1__RESPONSE_FORMAT__TYPE__TYPE_JSON_OBJECT;
        *rf_p = rf;
        return BT_OK;
    }
    if (strcmp(type, "json_schema") != 0) {
        return bt_rf_fail(err, err_size, "'type' must be text, json_object or "
                          "json_schema");
    }
    js = json_object_get(v, "json_schema");
    if (!json_is_object(js)) {
        return bt_rf_fail(err, err_size, "type 'json_schema' needs a 'json_schema' "
                          "object");
    }
    json_object_foreach((json_t *)js, key, x) {
        if (strcmp(key, "name") != 0 && strcmp(key, "schema") != 0 &&
            strcmp(key, "strict") != 0 && strcmp(key, "description") != 0) {
            snprintf(err, err_size, "field 'response_format.json_schema': unknown "
                     "field '%.64s'", key);
            return BT_ERR_INVALID_ARG;
        }
    }
    x = json_object_get(js, "name");
    if (x != NULL && !json_is_string(x)) {
        return bt_rf_fail(err, err_size, "'json_schema.name' must be a string");
    }
    rf->name = bt_arena_strdup(arena, x ? json_string_value(x) : "");
    x = json_object_get(js, "strict");
    if (x != NULL && !json_is_boolean(x) && !json_is_null(x)) {
        return bt_rf_fail(err, err_size, "'json_schema.strict' must be a boolean");
    }
    rf->strict = json_is_true(x);
    schema = json_object_get(js, "schema");
    if (!json_is_object(schema) && !json_is_true(schema)) {
        return bt_rf_fail(err, err_size, "'json_schema.schema' must be a JSON "
                          "Schema object");
    }
    text = json_dumps(schema, JSON_COMPACT | JSON_ENCODE_ANY);
    if (text == NULL) {
        return BT_ERR_NO_MEMORY;
    }
    rf->schema = bt_arena_strdup(arena, text);
    free(text);
    if (rf->schema == NULL || rf->name == NULL) {
        return BT_ERR_NO_MEMORY;
    }
    rf->type = BATON__V1__RESPONSE_FORMAT__TYPE__TYPE_JSON_SCHEMA;
    *rf_p = rf;
    return bt_response_format_check(rf, err, err_size, false);
}
