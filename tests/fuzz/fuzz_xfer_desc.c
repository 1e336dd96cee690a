/* libFuzzer: the xfer region descriptor a peer ships over gRPC
 * (common/xfer/desc.h). The input is decoded twice: as it is, and with
 * its trailing checksum recomputed, so mutations reach the field checks
 * behind the checksum. A descriptor that decodes must lie inside the
 * blob, and encoding it again must give back the same bytes. */
#include "xfer/desc.h"

#include "base/log.h"
#include "base/sha256.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(const uint8_t *blob, size_t len)
{
    bt_xfer_desc_t d;
    void *again = NULL;
    size_t again_len = 0;

    if (bt_xfer_desc_decode(blob, len, &d) != BT_OK) {
        return;
    }
    if (d.addr < blob || d.addr + d.addr_len > blob + len ||
        d.rkey + d.rkey_len > blob + len ||
        (const uint8_t *)d.host + d.host_len > blob + len) {
        abort();
    }
    if (bt_xfer_desc_encode(&d, &again, &again_len) != BT_OK ||
        again_len != len || memcmp(again, blob, len) != 0) {
        abort();
    }
    free(again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int quiet;
    uint8_t sum[BT_SHA256_LEN];
    uint8_t *copy;

    if (!quiet) {
        bt_log_init("fuzz", BT_LOG_LEVEL_OFF, BT_LOG_FORMAT_TEXT);
        quiet = 1;
    }
    check(data, size);
    if (size < BT_XFER_DESC_SUM_LEN || size > (1u << 20)) {
        return 0;
    }
    copy = malloc(size);
    if (copy == NULL) {
        return 0;
    }
    memcpy(copy, data, size);
    if (bt_sha256(copy, size - BT_XFER_DESC_SUM_LEN, sum) == BT_OK) {
        memcpy(copy + size - BT_XFER_DESC_SUM_LEN, sum, BT_XFER_DESC_SUM_LEN);
        check(copy, size);
    }
    free(copy);
    return 0;
}
