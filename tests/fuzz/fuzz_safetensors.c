/* libFuzzer: the safetensors header parser. The first 8 input bytes give
 * the size of the data section that would follow (little-endian, taken
 * modulo 2^32), the rest is the header JSON. Every tensor accepted must
 * lie inside the data section with a byte count that matches its shape. */
#include "engine/model/safetensors.h"

#include "base/log.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bt_status_t check(void *ctx, const char *name, const bt_st_tensor_t *t,
                         uint64_t begin)
{
    const uint64_t data_len = *(const uint64_t *)ctx;

    (void)name;
    if (begin > data_len || t->nbytes > data_len - begin ||
        t->n_dims > BT_ST_MAX_DIMS) {
        abort();
    }
    return BT_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint64_t data_len = 0;
    static int quiet;

    if (!quiet) {
        bt_log_init("fuzz", BT_LOG_LEVEL_OFF, BT_LOG_FORMAT_TEXT);
        quiet = 1;
    }
    if (size < 8) {
        return 0;
    }
    for (int i = 3; i >= 0; i--) {
        data_len = (data_len << 8) | data[i];
    }
    (void)bt_st_header_parse("fuzz", (const char *)data + 8, size - 8,
                             data_len, check, &data_len);
    return 0;
}
