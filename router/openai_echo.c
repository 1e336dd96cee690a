/* Completions' `echo` in the logprobs object: the prompt's first token
 * (no logprob: null, as OpenAI), and the prompt's entries put before the
 * generated ones. */
#include "openai.h"

bt_status_t bt_openai_logprobs_add_first(json_t **lp_p, const char *text,
                                         size_t len)
{
    bt_openai_tok_lp_t chosen = { text, len, 0.0f };
    json_t *lp;
    size_t last;
    bt_status_t s;

    s = bt_openai_logprobs_add(BT_OPENAI_COMPLETIONS, lp_p, &chosen, NULL, 0, 0);
    if (s != BT_OK) {
        return s;
    }
    lp = *lp_p;
    last = json_array_size(json_object_get(lp, "token_logprobs")) - 1;
    if (json_array_set_new(json_object_get(lp, "token_logprobs"), last,
                           json_null()) != 0 ||
        json_array_set_new(json_object_get(lp, "top_logprobs"), last,
                           json_null()) != 0) {
        return BT_ERR_NO_MEMORY;
    }
    return BT_OK;
}

json_t *bt_openai_logprobs_join(json_t *first, json_t *then)
{
    static const char *const keys[] = {
        "tokens", "token_logprobs", "top_logprobs", "text_offset",
    };

    if (first == NULL) {
        return then;
    }
    for (size_t i = 0; then != NULL && i < sizeof(keys) / sizeof(keys[0]); i++) {
        json_t *a = json_object_get(first, keys[i]);
        json_t *b = json_object_get(then, keys[i]);

        if (a != NULL && b != NULL && json_array_extend(a, b) != 0) {
            json_decref(then);
            json_decref(first);
            return NULL;
        }
    }
    json_decref(then);
    return first;
}
