/* OpenAI's `n` (both endpoints) and `best_of` (completions): how many
 * choices a request returns and how many it generates to pick them from.
 * The router's --max-choices bounds both when the request starts. */
#include "openai.h"
#include "choices.h"

#include "base/json.h"

#include <stdio.h>
#include <string.h>

bt_status_t bt_openai_choices(const json_t *root, bt_openai_req_t *req,
                              char *err, size_t err_size, char *param,
                              size_t param_size)
{
    int64_t n = 1, best_of = 0;
    bt_status_t s;

    s = bt_json_get_int(root, "n", false, 1, BT_CHOICES_LIMIT, &n, err,
                        err_size);
    if (s != BT_OK && s != BT_ERR_NOT_FOUND) {
        snprintf(param, param_size, "n");
        return s;
    }
    s = bt_json_get_int(root, "best_of", false, 1, BT_CHOICES_LIMIT, &best_of,
                        err, err_size);
    if (s != BT_OK && s != BT_ERR_NOT_FOUND) {
        snprintf(param, param_size, "best_of");
        return s;
    }
    if (best_of == 0) {
        best_of = n;
    }
    snprintf(param, param_size, "best_of");
    if (best_of < n) {
        snprintf(err, err_size, "field 'best_of' (%lld) must be at least 'n' "
                 "(%lld)", (long long)best_of, (long long)n);
        return BT_ERR_INVALID_ARG;
    }
    if (best_of > n && req->stream) {
        snprintf(err, err_size, "field 'best_of' greater than 'n' cannot be "
                 "streamed (the best are known at the end)");
        return BT_ERR_INVALID_ARG;
    }
    if (best_of > 1 && req->gen.echo) {
        snprintf(param, param_size, "echo");
        snprintf(err, err_size, "field 'echo' is supported with one choice "
                 "only (n and best_of 1)");
        return BT_ERR_INVALID_ARG;
    }
    param[0] = '\0';
    req->n = (uint32_t)n;
    req->best_of = (uint32_t)best_of;
    return BT_OK;
}
