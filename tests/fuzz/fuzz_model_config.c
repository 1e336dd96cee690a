/* libFuzzer: config.json -> bt_model_config_t. Whatever is accepted must
 * be self-consistent (the forward pass relies on these invariants). */
#include "engine/model/model_config.h"

#include "base/json.h"
#include "base/log.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[BT_JSON_ERR_SIZE];
    bt_model_config_t c;
    json_t *root;
    static int quiet;

    if (!quiet) {
        bt_log_init("fuzz", BT_LOG_LEVEL_OFF, BT_LOG_FORMAT_TEXT);
        quiet = 1;
    }
    if (bt_json_parse((const char *)data, size, 1 << 20, &root, err,
                      sizeof(err)) != BT_OK) {
        return 0;
    }
    if (bt_model_config_from_json("fuzz", root, &c) == BT_OK) {
        if (c.hidden < 1 || c.n_layers < 1 || c.n_heads < 1 ||
            c.n_kv_heads < 1 || c.n_heads % c.n_kv_heads != 0 ||
            c.head_dim < 2 || c.head_dim % 2 != 0 || c.vocab < 1 ||
            c.layer_is_moe == NULL ||
            (c.n_experts > 0 && (c.n_experts_used < 1 ||
                                 c.n_experts_used > c.n_experts))) {
            abort();
        }
        bt_model_config_cleanup(&c);
    }
    json_decref(root);
    return 0;
}
