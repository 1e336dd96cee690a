/* The wire headers of xfer's active messages (data slices and completion
 * messages) and the checks a receiver runs on them before it trusts a
 * field: what a peer sends is untrusted bytes. No UCX here, so the checks
 * are testable (and fuzzed, tests/fuzz/fuzz_xfer_notify.c) alone. */
#ifndef BT_XFER_AM_HDR_H
#define BT_XFER_AM_HDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* "2MTB": same-build peers. Raised when a header changes (2: data and
 * batch headers carry the lease id). */
#define BT_XFER_AM_MAGIC 0x42544d32u

/* Header of a data active message (AM mode). Native byte order: both
 * ends run the same build (the magic checks it). */
typedef struct {
    uint32_t magic;
    uint32_t region_id;
    uint64_t sender_id;
    uint64_t op_id;
    uint64_t lease_id;   /* the writer's, for the receiver's admit check */
    uint64_t offset;
    uint64_t len;
} bt_xfer_am_data_hdr_t;

/* Header of a batch data message (AM mode, to a receiver whose
 * descriptor carries BT_XFER_DESC_F_AM_BATCH): `n_slices` slices of one
 * transfer sent as one eager message. The header is this fixed part
 * followed by n_slices bt_xfer_am_batch_ent_t (where each lands); the
 * payload is their bytes back to back, in table order. */
typedef struct {
    uint32_t magic;
    uint32_t region_id;
    uint64_t sender_id;
    uint64_t op_id;
    uint64_t lease_id;   /* as in the data header */
    uint32_t n_slices;
    uint32_t pad;
} bt_xfer_am_batch_hdr_t;

typedef struct {
    uint64_t offset;
    uint64_t len;
} bt_xfer_am_batch_ent_t;

/* Most slices and bytes one batch message carries (a sender splits
 * larger transfers): the table stays ~1 KiB, and the message fits one
 * tcp receive segment (UCX_TCP_RX_SEG_SIZE, 512K by default) with room
 * to spare, so the receiver copies each byte once. */
#define BT_XFER_AM_BATCH_SLICES_MAX 64u
#define BT_XFER_AM_BATCH_BYTES_MAX  (256u * 1024u)

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

/* A batch message's header (header_len bytes; the fixed part copied
 * into *h): true when it has our magic, 1..BT_XFER_AM_BATCH_SLICES_MAX
 * slices whose table fills the rest of the header exactly, at most
 * BT_XFER_AM_BATCH_BYTES_MAX bytes, and slice lengths that add up to
 * exactly `payload_len` (no overflow). Every slice must then be checked
 * with bt_xfer_am_batch_fits before any byte is written. */
bool bt_xfer_am_batch_hdr_read(const void *header, size_t header_len,
                               size_t payload_len, bt_xfer_am_batch_hdr_t *h);

/* Slice `i` of a header bt_xfer_am_batch_hdr_read accepted (the table
 * may be unaligned in the message; it is copied out). */
bt_xfer_am_batch_ent_t bt_xfer_am_batch_ent(const void *header, uint32_t i);

/* Every slice of an accepted batch lies inside a region of region_len
 * bytes (no overflow): all or nothing, so a bad slice never leaves the
 * good ones half written. */
bool bt_xfer_am_batch_fits(const void *header,
                           const bt_xfer_am_batch_hdr_t *h,
                           size_t region_len);

/* A completion message's header: true when it has the right size (then
 * copied into *h), our magic, and user bytes that match the payload and
 * are at most BT_XFER_USER_MAX. */
bool bt_xfer_am_notify_hdr_read(const void *header, size_t header_len,
                                size_t payload_len, bt_xfer_am_notify_hdr_t *h);

#endif
