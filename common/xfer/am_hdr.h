/* The wire headers of xfer's active messages (data slices and completion
 * messages) and the checks a receiver runs on them before it trusts a
 * field: what a peer sends is untrusted bytes. No UCX here, so the checks
 * are testable (and fuzzed, tests/fuzz/fuzz_xfer_notify.c) alone. */
#ifndef BT_XFER_AM_HDR_H
#define BT_XFER_AM_HDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BT_XFER_AM_MAGIC 0x42544d31u   /* "1MTB": same-build peers */

/* Header of a data active message (AM mode). Native byte order: both
 * ends run the same build (the magic checks it). */
typedef struct {
    uint32_t magic;
    uint32_t region_id;
    uint64_t sender_id;
    uint64_t op_id;
    uint64_t offset;
    uint64_t len;
} bt_xfer_am_data_hdr_t;

/* Header of a completion message; the user bytes are its payload. */
typedef struct {
    uint32_t magic;
    uint32_t region_id;
    uint64_t sender_id;
    uint64_t op_id;
    uint64_t lease_id;
    uint64_t bytes;
    uint32_t layer;
    int32_t  status;
    uint32_t user_len;
    uint32_t pad;
} bt_xfer_am_notify_hdr_t;

/* A data message's header (header_len bytes, copied into *h when it has
 * the right size): true when it has our magic and carries exactly
 * `payload_len` bytes. Its region must then be checked with
 * bt_xfer_am_data_fits. */
bool bt_xfer_am_data_hdr_read(const void *header, size_t header_len,
                              size_t payload_len, bt_xfer_am_data_hdr_t *h);

/* The slice [offset, offset + len) lies inside a region of region_len
 * bytes (no overflow). */
bool bt_xfer_am_data_fits(const bt_xfer_am_data_hdr_t *h, size_t region_len);

/* A completion message's header: true when it has the right size (then
 * copied into *h), our magic, and user bytes that match the payload and
 * are at most BT_XFER_USER_MAX. */
bool bt_xfer_am_notify_hdr_read(const void *header, size_t header_len,
                                size_t payload_len, bt_xfer_am_notify_hdr_t *h);

#endif
