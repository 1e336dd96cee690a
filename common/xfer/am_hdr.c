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
