/* response_format (structured outputs): OpenAI's JSON form read into
 * baton.v1.ResponseFormat, and the check both APIs run before a request
 * starts (the schema compiles), so a bad schema is a 400 / INVALID_ARGUMENT
 * naming the keyword, never a failure on a node. */
#ifndef BT_ROUTER_RESPONSE_FORMAT_H
#define BT_ROUTER_RESPONSE_FORMAT_H

#include "base/arena.h"
#include "base/status.h"
#include "common.pb-c.h"

#include <jansson.h>
#include <stdbool.h>

/* `v`: the request's "response_format" value (NULL: absent). {"type":
 * "text"} and absent leave *rf_p NULL; "json_object" and "json_schema"
 * ({"name", "schema", "strict", "description"}) set it, allocated from
 * `arena`. The schema is checked (bt_response_format_check). On error
 * BT_ERR_INVALID_ARG / BT_ERR_TOO_LARGE with the message in err. */
bt_status_t bt_response_format_parse(const json_t *v, bt_arena_t *arena,
                                     Baton__V1__ResponseFormat **rf_p,
                                     char *err, size_t err_size);

/* BT_OK when rf is NULL, TEXT, JSON_OBJECT or a JSON_SCHEMA whose schema
 * compiles; else the compiler's error, prefixed "response_format: ".
 * A format with `ignore_eos` is refused: the document ends with the
 * end-of-sequence token, nothing may follow it. */
bt_status_t bt_response_format_check(const Baton__V1__ResponseFormat *rf,
                                     char *err, size_t err_size,
                                     bool ignore_eos);

#endif
