/* libFuzzer: tokenizer.json (+ tokenizer_config.json) parsing. The input
 * is split at the first NUL: before it the tokenizer.json, after it the
 * config. Whatever loads is also used to encode and decode a little. */
#include "engine/tokenizer/chat_template.h"
#include "engine/tokenizer/tokenizer.h"

#include "base/log.h"

#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *json = (const char *)data;
    const char *nul = memchr(data, 0, size);
    size_t json_len = nul ? (size_t)(nul - json) : size;
    const char *cfg = nul ? nul + 1 : NULL;
    size_t cfg_len = nul ? size - json_len - 1 : 0;
    bt_tok_t *tok;
    char err[256];
    static int quiet;

    if (!quiet) {
        bt_log_init("fuzz", BT_LOG_LEVEL_OFF, BT_LOG_FORMAT_TEXT);
        quiet = 1;
    }
    if (bt_tok_load_mem(json, json_len, cfg, cfg_len, &tok, err,
                        sizeof(err)) != BT_OK)
        return 0;
    {
        static const char text[] = "Hello, world! <s> \xe2\x96\x81x  42\n";
        bt_tok_ids_t ids;
        bt_buf_t out;
        bt_chat_family_t f;
        bt_tok_ids_init(&ids, 4096);
        bt_buf_init(&out, 1 << 16);
        if (bt_tok_encode(tok, text, sizeof(text) - 1,
                          BT_TOK_ADD_SPECIAL | BT_TOK_PARSE_SPECIAL, &ids,
                          err, sizeof(err)) == BT_OK)
            (void)bt_tok_decode(tok, ids.ids, ids.n, false, &out, err,
                                sizeof(err));
        (void)bt_chat_family_detect(tok, &f, err, sizeof(err));
        bt_tok_ids_cleanup(&ids);
        bt_buf_cleanup(&out);
    }
    bt_tok_destroy(tok);
    return 0;
}
