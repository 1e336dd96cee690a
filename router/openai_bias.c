/* OpenAI's logit_bias: {"<token id>": bias, ...} into
 * SamplingParams.logit_bias. The ids are checked against the vocabulary
 * when the request starts (bt_front_start), for both APIs. */
#include "openai.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A decimal token id: digits only, no sign, no spaces, < 2^31. */
static bool bt_openai_bias_id(const char *key, uint32_t *id_p)
{
    unsigned long v;
    char *end;

    if (key[0] < '0' || key[0] > '9' || strlen(key) > 10) {
        return false;
    }
    errno = 0;
    v = strtoul(key, &end, 10);
    if (errno != 0 || *end != '\0' || v > INT32_MAX) {
        return false;
    }
    *id_p = (uint32_t)v;
    return true;
}

bt_status_t bt_openai_logit_bias(const json_t *root, bt_arena_t *arena,
                                 Baton__V1__SamplingParams *sp, char *err,
                                 size_t err_size)
{
    const json_t *obj = json_object_get(root, "logit_bias");
    const char *key;
    json_t *v;
    size_t n = 0;

    if (obj == NULL) {
        return BT_OK;
    }
    if (!json_is_object(obj)) {
        snprintf(err, err_size, "field 'logit_bias' must be an object of "
                 "token ids to biases");
        return BT_ERR_INVALID_ARG;
    }
    if (json_object_size(obj) > BT_OPENAI_MAX_LOGIT_BIAS) {
        snprintf(err, err_size, "field 'logit_bias' has %zu entries; at most "
                 "%d", json_object_size(obj), BT_OPENAI_MAX_LOGIT_BIAS);
        return BT_ERR_INVALID_ARG;
    }
    if (json_object_size(obj) == 0) {
        return BT_OK;
    }
    sp->logit_bias = bt_arena_calloc(arena, json_object_size(obj),
                                     sizeof(*sp->logit_bias));
    if (sp->logit_bias == NULL) {
        return BT_ERR_NO_MEMORY;
    }
    json_object_foreach((json_t *)obj, key, v) {
        Baton__V1__LogitBias *b;
        double d;
        uint32_t id;

        if (!bt_openai_bias_id(key, &id)) {
            snprintf(err, err_size, "field 'logit_bias': key '%.32s' is not "
                     "a token id", key);
            return BT_ERR_INVALID_ARG;
        }
        if (!json_is_number(v)) {
            snprintf(err, err_size, "field 'logit_bias': the bias of token "
                     "%u must be a number", id);
            return BT_ERR_INVALID_ARG;
        }
        d = json_number_value(v);
        if (!(d >= -100.0 && d <= 100.0)) {
            snprintf(err, err_size, "field 'logit_bias': the bias of token "
                     "%u must be in [-100, 100]", id);
            return BT_ERR_INVALID_ARG;
        }
        b = bt_arena_alloc(arena, sizeof(*b));
        if (b == NULL) {
            return BT_ERR_NO_MEMORY;
        }
        baton__v1__logit_bias__init(b);
        b->token_id = id;
        b->bias = (float)d;
        sp->logit_bias[n++] = b;
    }
    sp->n_logit_bias = n;
    return BT_OK;
}
