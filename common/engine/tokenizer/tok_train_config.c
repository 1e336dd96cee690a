/* tokenizer_config.json for a trained tokenizer: BOS/EOS and the Llama-3
 * chat template (the text Meta ships), which chat family detection maps to
 * llama3. */
#include "tok_int.h"

#include "base/json.h"
#include "base/log.h"

#include <stdlib.h>
#include <string.h>

static const char llama3_template[] =
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + "
    "'<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}"
    "{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}";

bt_status_t bt_tok_write_config_json(const char *bos_token,
                                     const char *eos_token,
                                     bt_buf_t *config_json_out)
{
    json_t *root;
    char *text;
    bt_status_t st;

    if (bos_token == NULL || eos_token == NULL || config_json_out == NULL) {
        bt_error("tokenizer config: bos and eos tokens are required");
        return BT_ERR_INVALID_ARG;
    }
    root = json_pack("{s:b, s:b, s:s, s:s, s:b, s:I, s:s, s:s}",
                     "add_bos_token", 1, "add_eos_token", 0, "bos_token",
                     bos_token, "eos_token", eos_token,
                     "clean_up_tokenization_spaces", 1, "model_max_length",
                     (json_int_t)131072, "tokenizer_class",
                     "PreTrainedTokenizerFast", "chat_template",
                     llama3_template);
    if (root == NULL) {
        bt_error("tokenizer config: bos/eos token is not valid UTF-8");
        return BT_ERR_INVALID_ARG;
    }
    text = bt_json_dump(root);
    json_decref(root);
    if (text == NULL)
        return BT_ERR_NO_MEMORY;
    st = bt_buf_append_str(config_json_out, text);
    free(text);
    return st;
}
