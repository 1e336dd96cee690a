/* libFuzzer: chat templates with tools. The input is split at NUL bytes
 * into strings: a tool's name, description and parameters, then messages
 * of role, content and one tool call (id, name, arguments); every family
 * renders them (or refuses them) without reading out of bounds, and a
 * refusal leaves the output as it was. */
#include "engine/tokenizer/chat_template.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_STR 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const roles[] = { "system", "user", "assistant", "tool" };
    char *copy = malloc(size + 1), *s[MAX_STR];
    size_t n = 0, n_msgs = 0;
    bt_chat_tool_t tool;
    bt_chat_tool_call_t calls[MAX_STR];
    bt_chat_msg_t msgs[MAX_STR];
    char err[256];

    if (copy == NULL)
        return 0;
    memcpy(copy, data, size);
    copy[size] = 0;
    for (char *p = copy; n < MAX_STR && p <= copy + size; p += strlen(p) + 1)
        s[n++] = p;
    if (n < 3) {
        free(copy);
        return 0;
    }
    tool = (bt_chat_tool_t){ s[0], s[1], s[2] };
    for (size_t i = 3; i + 4 < n; i += 5, n_msgs++) {
        calls[n_msgs] = (bt_chat_tool_call_t){ s[i + 2], s[i + 3], s[i + 4] };
        msgs[n_msgs] = (bt_chat_msg_t){
            roles[(unsigned char)s[i][0] % 4], s[i + 1],
            s[i][0] & 4 ? &calls[n_msgs] : NULL, s[i][0] & 4 ? 1 : 0,
            s[i + 2] };
    }
    for (int f = BT_CHAT_LLAMA2; f <= BT_CHAT_CHATML; f++) {
        bt_buf_t out;

        bt_buf_init(&out, 1 << 20);
        bt_buf_append_str(&out, "x");
        if (bt_chat_render_tools(NULL, (bt_chat_family_t)f, &tool, size & 1,
                                 msgs, n_msgs, true, &out, err,
                                 sizeof(err)) != BT_OK && out.len != 1)
            abort();
        bt_buf_cleanup(&out);
    }
    free(copy);
    return 0;
}
