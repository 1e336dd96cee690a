/* libFuzzer: the request heads the HTTP server reads from any client
 * (common/http/http_parse.c). A head that parses must have a path that
 * starts with '/', a known HTTP minor version, and header names and
 * values inside the parsed copy. */
#include "http/http_int.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    bt_http_head_t head;
    const char *why = NULL;
    char *text;
    int code;

    if (size > BT_HTTP_MAX_HEAD) {
        return 0;
    }
    text = malloc(size + 1);
    if (text == NULL) {
        return 0;
    }
    memcpy(text, data, size);
    text[size] = '\0';
    code = bt_http_head_parse(text, size, &head, &why);
    if (code == 0) {
        if (head.path == NULL || head.path[0] != '/' ||
            (head.minor != 0 && head.minor != 1) || head.n_hdr > BT_HTTP_MAX_HDRS) {
            abort();
        }
        for (size_t i = 0; i < head.n_hdr; i++) {
            if (head.hdr[i].name < text || head.hdr[i].name >= text + size ||
                head.hdr[i].value < text || head.hdr[i].value > text + size) {
                abort();
            }
        }
    } else if (why == NULL || code < 400 || code > 599) {
        abort();
    }
    free(text);
    return 0;
}
