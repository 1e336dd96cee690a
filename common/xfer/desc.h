/* The region descriptor: the bytes one process ships to another (over
 * gRPC) so the other can write into or read from its region.
 *
 * Layout, little-endian, version 1:
 *   0  u32 magic "BTXD"      4  u16 version       6  u16 flags
 *   8  u64 base             16  u64 length       24  u32 region id
 *  28  u32 worker addr len  32  u32 rkey len     36  u32 host len
 *  40  u64 owner context id
 *  48  worker address | packed rkey | host name (no NUL)
 *  end u64 checksum: the first 8 bytes of SHA-256 over everything before
 *
 * Every length is bounded and checked against the blob before use. */
#ifndef BT_XFER_DESC_H
#define BT_XFER_DESC_H

#include "base/status.h"

#include <stddef.h>
#include <stdint.h>

#define BT_XFER_DESC_MAGIC      0x44585442u   /* "BTXD" */
#define BT_XFER_DESC_VERSION    1u
#define BT_XFER_DESC_HDR_LEN    48u
#define BT_XFER_DESC_SUM_LEN    8u
#define BT_XFER_DESC_ADDR_MAX   (64u * 1024u)
#define BT_XFER_DESC_RKEY_MAX   (64u * 1024u)
#define BT_XFER_DESC_HOST_MAX   255u

#define BT_XFER_DESC_F_UCX_ALLOC 0x1u  /* region allocated by UCX */
/* The owner takes batch data messages (am_hdr.h); a sender uses them
 * only then, so peers of an older build keep getting one message per
 * slice. Decoders ignore flags they do not know. */
#define BT_XFER_DESC_F_AM_BATCH  0x2u
/* The registered memory holds a write guard for direct copies after the
 * `length` bytes the descriptor names (guard.h); writers that map the
 * region copy only for the lease that owns the blocks. */
#define BT_XFER_DESC_F_GUARD     0x4u

/* Decoded view; the pointers borrow the blob. */
typedef struct {
    uint16_t       flags;
    uint64_t       base;
    uint64_t       length;
    uint32_t       region_id;
    uint64_t       owner_id;
    const uint8_t *addr;
    size_t         addr_len;
    const uint8_t *rkey;
    size_t         rkey_len;
    const char    *host;       /* not NUL-terminated */
    size_t         host_len;
} bt_xfer_desc_t;

/* Caller frees *blob_p with free(). BT_ERR_TOO_LARGE past the maxima. */
bt_status_t bt_xfer_desc_encode(const bt_xfer_desc_t *d, void **blob_p,
                                size_t *len_p);
/* BT_ERR_TRUNCATED (short), BT_ERR_CORRUPT (bad magic, lengths, sum,
 * range), BT_ERR_UNSUPPORTED (other version); logged once here. */
bt_status_t bt_xfer_desc_decode(const void *blob, size_t len,
                                bt_xfer_desc_t *d_p);

#endif
