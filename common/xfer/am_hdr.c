/* Checks of the active message headers a peer sends (am_hdr.h). */
#include "am_hdr.h"

#include "xfer.h"

#include <string.h>

bool bt_xfer_am_data_hdr_read(const void *header, size_t header_len,
                              size_t payload_len, bt_xfer_am_data_hdr_t *h)
{
    if (header_len != sizeof(*h)) {
        return false;
    }
    memcpy(h, header, sizeof(*h));
    return h->magic == BT_XFER_AM_MAGIC && h->len == payload_len;
}

bool bt_xfer_am_data_fits(const bt_xfer_am_data_hdr_t *h, size_t region_len)
{
    return h->len <= region_len && h->offset <= region_len - h->len;
}

bool bt_xfer_am_batch_hdr_read(const void *header, size_t header_len,
                               size_t payload_len, bt_xfer_am_batch_hdr_t *h)
{
    uint64_t total = 0;

    if (header_len < sizeof(*h)) {
        return false;
    }
    memcpy(h, header, sizeof(*h));
    if (h->magic != BT_XFER_AM_MAGIC || h->n_slices == 0 ||
        h->n_slices > BT_XFER_AM_BATCH_SLICES_MAX ||
        header_len != sizeof(*h) +
                          h->n_slices * sizeof(bt_xfer_am_batch_ent_t)) {
        return false;
    }
    for (uint32_t i = 0; i < h->n_slices; i++) {
        bt_xfer_am_batch_ent_t e = bt_xfer_am_batch_ent(header, i);

        /* each length is bounded first, so the sum cannot wrap */
        if (e.len > BT_XFER_AM_BATCH_BYTES_MAX) {
            return false;
        }
        total += e.len;
    }
    return total <= BT_XFER_AM_BATCH_BYTES_MAX && total == payload_len;
}

bt_xfer_am_batch_ent_t bt_xfer_am_batch_ent(const void *header, uint32_t i)
{
    bt_xfer_am_batch_ent_t e;

    memcpy(&e, (const char *)header + sizeof(bt_xfer_am_batch_hdr_t) +
                   (size_t)i * sizeof(e), sizeof(e));
    return e;
}

bool bt_xfer_am_batch_fits(const void *header,
                           const bt_xfer_am_batch_hdr_t *h,
                           size_t region_len)
{
    for (uint32_t i = 0; i < h->n_slices; i++) {
        bt_xfer_am_batch_ent_t e = bt_xfer_am_batch_ent(header, i);

        if (e.len > region_len || e.offset > region_len - e.len) {
            return false;
        }
    }
    return true;
}

bool bt_xfer_am_notify_hdr_read(const void *header, size_t header_len,
                                size_t payload_len, bt_xfer_am_notify_hdr_t *h)
{
    if (header_len != sizeof(*h)) {
        return false;
    }
    memcpy(h, header, sizeof(*h));
    return h->magic == BT_XFER_AM_MAGIC && h->user_len == payload_len &&
           h->user_len <= BT_XFER_USER_MAX;
}
