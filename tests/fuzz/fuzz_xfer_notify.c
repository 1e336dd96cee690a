/* libFuzzer: the active messages a transfer peer sends (common/xfer/
 * am_hdr.h) and the kv-complete payload a decode node reads from a
 * completion message (decode_node/decode_lease.c: 12 bytes of first
 * token, tokens written and status, then the first token's logprobs,
 * common/node/node_lp.h). Input: one byte of region size and request
 * shape, then a header (with our magic patched in when the second byte
 * is odd, so mutations reach the checks behind it) and the payload. An
 * accepted data slice must lie in its region; an accepted completion
 * message must carry exactly its payload; accepted logprobs must fit the
 * request's top-n and the vocabulary. A batch message (second byte's
 * bits 1-2 set and bit 6) takes a third byte for its table length: an
 * accepted batch carries exactly its payload, and its fits check agrees
 * with every slice lying in the region. */
#include "xfer/am_hdr.h"
#include "xfer/xfer.h"

#include "base/endian.h"
#include "node/node_lp.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define DONE_PAYLOAD 12   /* BT_NODE_DONE_PAYLOAD (common/node/node.h) */

static void data_hdr(const uint8_t *hdr, size_t hlen, size_t payload,
                     size_t region_len)
{
    bt_xfer_am_data_hdr_t h;

    if (bt_xfer_am_data_hdr_read(hdr, hlen, payload, &h) &&
        bt_xfer_am_data_fits(&h, region_len) &&
        (h.len != payload || h.offset + h.len > region_len ||
         h.offset + h.len < h.offset)) {
        abort();
    }
}

/* What bt_decode_kv_complete reads from the payload. */
static void kv_complete(const uint8_t *u, size_t len, uint8_t shape)
{
    int32_t want = (int32_t)(shape % (BT_SAMPLE_MAX_LOGPROBS + 2)) - 1;
    uint32_t vocab = 1u + (uint32_t)(shape >> 3) * 4099u;
    bt_sample_result_t lp;
    uint32_t first;

    if (len < DONE_PAYLOAD) {
        return;
    }
    first = bt_get_le32(u);
    if (want < 0 || first >= vocab) {
        return;
    }
    if (bt_node_lp_unpack(u + DONE_PAYLOAD, len - DONE_PAYLOAD, (int32_t)first,
                          want, vocab, &lp) == BT_OK) {
        if (lp.token != (int32_t)first || lp.n_top > (uint32_t)want ||
            BT_NODE_LP_BYTES(lp.n_top) != len - DONE_PAYLOAD) {
            abort();
        }
        for (uint32_t i = 0; i < lp.n_top; i++) {
            if (lp.top_ids[i] < 0 || (uint32_t)lp.top_ids[i] >= vocab) {
                abort();
            }
        }
    }
}

static void batch(const uint8_t *data, size_t size, size_t region_len)
{
    bt_xfer_am_batch_hdr_t h;
    uint32_t magic = BT_XFER_AM_MAGIC, n_table = data[2] % 70u;
    size_t hlen = sizeof(h) + (size_t)n_table * sizeof(bt_xfer_am_batch_ent_t);
    uint64_t total = 0;
    bool inside = true;
    uint8_t *hdr;

    if (size - 3 < hlen || (hdr = malloc(hlen)) == NULL) {
        return;
    }
    memcpy(hdr, data + 3, hlen);
    if (data[1] & 1) {
        memcpy(hdr, &magic, 4);
    }
    if (data[1] & 0x80) {   /* a table length that matches its count */
        memcpy(hdr + offsetof(bt_xfer_am_batch_hdr_t, n_slices), &n_table, 4);
    }
    if (bt_xfer_am_batch_hdr_read(hdr, hlen, size - 3 - hlen, &h)) {
        if (h.magic != BT_XFER_AM_MAGIC || h.n_slices == 0 ||
            h.n_slices > BT_XFER_AM_BATCH_SLICES_MAX || h.n_slices != n_table) {
            abort();
        }
        for (uint32_t i = 0; i < h.n_slices; i++) {
            bt_xfer_am_batch_ent_t e = bt_xfer_am_batch_ent(hdr, i);

            total += e.len;
            if (e.offset > region_len || e.len > region_len - e.offset) {
                inside = false;
            }
        }
        if (total != size - 3 - hlen || total > BT_XFER_AM_BATCH_BYTES_MAX ||
            bt_xfer_am_batch_fits(hdr, &h, region_len) != inside) {
            abort();
        }
    }
    free(hdr);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    bt_xfer_am_notify_hdr_t h;
    uint8_t hdr[sizeof(bt_xfer_am_notify_hdr_t) + 8];
    size_t hlen, region_len;
    uint32_t magic = BT_XFER_AM_MAGIC;
    const uint8_t *payload;
    size_t plen;

    if (size < 2 || size > 4 * BT_XFER_USER_MAX) {
        return 0;
    }
    region_len = (size_t)data[0] << 6;
    if ((data[1] >> 1) % 4 == 3 && (data[1] & 0x40)) {
        if (size >= 3) {
            batch(data, size, region_len);
        }
        return 0;
    }
    /* the header: its own length (the right one for either kind, or a
     * wrong one), then its bytes */
    hlen = (data[1] >> 1) % 4 == 0 ? sizeof(bt_xfer_am_data_hdr_t) :
           (data[1] >> 1) % 4 == 1 ? sizeof(bt_xfer_am_notify_hdr_t) :
           (data[1] >> 3) % sizeof(hdr);
    if (size - 2 < hlen) {
        return 0;
    }
    memcpy(hdr, data + 2, hlen);
    if ((data[1] & 1) && hlen >= 4) {
        memcpy(hdr, &magic, 4);
    }
    payload = data + 2 + hlen;
    plen = size - 2 - hlen;
    if ((data[1] & 1) && hlen == sizeof(bt_xfer_am_notify_hdr_t)) {
        uint32_t ul = (uint32_t)plen;   /* let the length match too */

        memcpy(hdr + offsetof(bt_xfer_am_notify_hdr_t, user_len), &ul, 4);
    }
    if ((data[1] & 1) && hlen == sizeof(bt_xfer_am_data_hdr_t)) {
        uint64_t len = plen;

        memcpy(hdr + offsetof(bt_xfer_am_data_hdr_t, len), &len, 8);
    }
    data_hdr(hdr, hlen, plen, region_len);
    if (bt_xfer_am_notify_hdr_read(hdr, hlen, plen, &h)) {
        if (h.user_len != plen || plen > BT_XFER_USER_MAX ||
            h.magic != BT_XFER_AM_MAGIC) {
            abort();
        }
        kv_complete(payload, plen, data[0]);
    }
    return 0;
}
