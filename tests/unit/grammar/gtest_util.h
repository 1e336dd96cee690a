/* Helpers the grammar tests share: a vocabulary of single bytes plus
 * random multi-byte tokens, and a small JSON Schema validator (the
 * keywords the grammar supports) to check generated documents with. */
#ifndef BT_GTEST_UTIL_H
#define BT_GTEST_UTIL_H

#include "engine/grammar/grammar.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <jansson.h>
#include <pcre2.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static inline uint64_t gt_rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* A vocabulary with its token bytes kept for the tests. */
typedef struct {
    bt_gvocab_t *v;
    uint8_t    **bytes;
    uint32_t    *lens;
    uint32_t     n;
    int32_t      eos;
} gt_vocab_t;

/* Ids 0..255 are the bytes, then n_multi random tokens over a JSON-ish
 * alphabet (with multi-byte UTF-8), then one EOS id with no bytes. */
static inline void gt_vocab_init(gt_vocab_t *gv, uint32_t n_multi, uint64_t seed)
{
    static const char *const pieces[] = {
        "{", "}", "[", "]", "\"", ":", ",", " ", "a", "b", "e", "n", "u",
        "l", "s", "t", "r", "f", "0", "1", "5", "9", "-", ".", "\\", "\\n",
        "\xc3\xa9", "\xe6\x97\xa5", "\xf0\x9f\x98\x80", "true", "false",
        "null", "name", "age", "\":", "\",\"", "\"}", "},{", "12", "\n",
    };
    const uint32_t n = 256 + n_multi + 1;
    uint64_t rng = seed | 1;

    gv->n = n;
    gv->bytes = calloc(n, sizeof(*gv->bytes));
    gv->lens = calloc(n, sizeof(*gv->lens));
    for (uint32_t i = 0; i < 256; i++) {
        gv->bytes[i] = malloc(1);
        gv->bytes[i][0] = (uint8_t)i;
        gv->lens[i] = 1;
    }
    for (uint32_t i = 256; i < 256 + n_multi; i++) {
        uint8_t buf[64];
        uint32_t len = 0, parts = 1 + (uint32_t)(gt_rng_next(&rng) % 4);

        for (uint32_t p = 0; p < parts; p++) {
            const char *s = pieces[gt_rng_next(&rng) % (sizeof(pieces) / sizeof(pieces[0]))];
            size_t l = strlen(s);

            memcpy(buf + len, s, l);
            len += (uint32_t)l;
        }
        /* some tokens cut a UTF-8 character in two */
        if (gt_rng_next(&rng) % 8 == 0 && len > 1) {
            len--;
        }
        gv->bytes[i] = malloc(len);
        memcpy(gv->bytes[i], buf, len);
        gv->lens[i] = len;
    }
    gv->eos = (int32_t)(n - 1);
    gv->v = NULL;
    bt_gvocab_create(n, (const uint8_t *const *)gv->bytes, gv->lens, gv->eos,
                     &gv->v);
}

static inline void gt_vocab_cleanup(gt_vocab_t *gv)
{
    for (uint32_t i = 0; i < gv->n; i++) {
        free(gv->bytes[i]);
    }
    free(gv->bytes);
    free(gv->lens);
    bt_gvocab_destroy(gv->v);
}

static inline size_t gt_utf8_chars(const char *s)
{
    size_t n = 0;

    for (; *s; s++) {
        n += ((uint8_t)*s & 0xC0) != 0x80;
    }
    return n;
}

static inline bool gt_type_is(const char *t, const json_t *v)
{
    if (strcmp(t, "string") == 0) return json_is_string(v);
    if (strcmp(t, "integer") == 0) return json_is_integer(v);
    if (strcmp(t, "number") == 0) return json_is_number(v);
    if (strcmp(t, "boolean") == 0) return json_is_boolean(v);
    if (strcmp(t, "null") == 0) return json_is_null(v);
    if (strcmp(t, "object") == 0) return json_is_object(v);
    if (strcmp(t, "array") == 0) return json_is_array(v);
    return false;
}

/* True when v validates against schema s (the supported keywords). */
static inline bool gt_valid(const json_t *s, const json_t *v)
{
    const json_t *k, *x;
    const char *key;
    size_t i;

    if (json_is_true(s)) {
        return true;
    }
    if ((k = json_object_get(s, "const")) != NULL && !json_equal(k, (json_t *)v)) {
        return false;
    }
    if ((k = json_object_get(s, "enum")) != NULL) {
        bool any = false;

        json_array_foreach(k, i, x) {
            any = any || json_equal((json_t *)x, (json_t *)v);
        }
        if (!any) return false;
    }
    if ((k = json_object_get(s, "anyOf")) != NULL) {
        bool any = false;

        json_array_foreach(k, i, x) {
            any = any || gt_valid(x, v);
        }
        if (!any) return false;
    }
    if ((k = json_object_get(s, "type")) != NULL) {
        bool any = json_is_string(k) && gt_type_is(json_string_value(k), v);

        json_array_foreach(k, i, x) {
            any = any || gt_type_is(json_string_value(x), v);
        }
        if (!any) return false;
    }
    if (json_is_number(v)) {
        double d = json_number_value(v);

        if ((k = json_object_get(s, "minimum")) && d < json_number_value(k)) return false;
        if ((k = json_object_get(s, "maximum")) && d > json_number_value(k)) return false;
        if ((k = json_object_get(s, "exclusiveMinimum")) && d <= json_number_value(k)) return false;
        if ((k = json_object_get(s, "exclusiveMaximum")) && d >= json_number_value(k)) return false;
    }
    if (json_is_string(v) && (k = json_object_get(s, "pattern")) != NULL) {
        int err;
        PCRE2_SIZE off;
        pcre2_code *re = pcre2_compile((PCRE2_SPTR)json_string_value(k),
                                       PCRE2_ZERO_TERMINATED, PCRE2_UTF, &err,
                                       &off, NULL);
        pcre2_match_data *md = re ? pcre2_match_data_create_from_pattern(re, NULL) : NULL;
        int rc = md ? pcre2_match(re, (PCRE2_SPTR)json_string_value(v),
                                  json_string_length(v), 0, 0, md, NULL) : -1;

        pcre2_match_data_free(md);
        pcre2_code_free(re);
        if (rc < 0) return false;
    }
    if (json_is_string(v)) {
        size_t n = gt_utf8_chars(json_string_value(v));

        if ((k = json_object_get(s, "minLength")) && n < (size_t)json_integer_value(k)) return false;
        if ((k = json_object_get(s, "maxLength")) && n > (size_t)json_integer_value(k)) return false;
    }
    if (json_is_array(v)) {
        size_t n = json_array_size(v);

        if ((k = json_object_get(s, "minItems")) && n < (size_t)json_integer_value(k)) return false;
        if ((k = json_object_get(s, "maxItems")) && n > (size_t)json_integer_value(k)) return false;
        if ((k = json_object_get(s, "items")) != NULL) {
            json_array_foreach(v, i, x) {
                if (!gt_valid(k, x)) return false;
            }
        }
    }
    if (json_is_object(v)) {
        const json_t *props = json_object_get(s, "properties");
        const json_t *extra = json_object_get(s, "additionalProperties");

        json_array_foreach(json_object_get(s, "required"), i, x) {
            if (json_object_get(v, json_string_value(x)) == NULL) return false;
        }
        json_object_foreach((json_t *)v, key, x) {
            const json_t *ps = props ? json_object_get(props, key) : NULL;

            if (ps != NULL) {
                if (!gt_valid(ps, x)) return false;
            } else if (json_is_false(extra)) {
                return false;
            } else if (json_is_object(extra) && !gt_valid(extra, x)) {
                return false;
            }
        }
    }
    return true;
}

#endif
