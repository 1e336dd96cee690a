/* Region descriptor encoding and validation (desc.h). */
#include "desc.h"

#include "base/endian.h"
#include "base/log.h"
#include "base/sha256.h"

#include <stdlib.h>
#include <string.h>

static bt_status_t checksum(const uint8_t *p, size_t len,
                            uint8_t out[BT_XFER_DESC_SUM_LEN])
{
    uint8_t digest[BT_SHA256_LEN];
    bt_status_t st = bt_sha256(p, len, digest);

    if (st == BT_OK) {
        memcpy(out, digest, BT_XFER_DESC_SUM_LEN);
    }
    return st;
}

bt_status_t bt_xfer_desc_encode(const bt_xfer_desc_t *d, void **blob_p,
                                size_t *len_p)
{
    size_t len;
    uint8_t *p;
    bt_status_t st;

    if (d->addr_len == 0 || d->addr_len > BT_XFER_DESC_ADDR_MAX ||
        d->rkey_len > BT_XFER_DESC_RKEY_MAX ||
        d->host_len > BT_XFER_DESC_HOST_MAX) {
        bt_error("xfer descriptor fields too large addr %zu rkey %zu host %zu",
                 d->addr_len, d->rkey_len, d->host_len);
        return BT_ERR_TOO_LARGE;
    }
    len = BT_XFER_DESC_HDR_LEN + d->addr_len + d->rkey_len + d->host_len +
          BT_XFER_DESC_SUM_LEN;
    p = malloc(len);
    if (p == NULL) {
        return BT_ERR_NO_MEMORY;
    }
    bt_put_le32(p, BT_XFER_DESC_MAGIC);
    bt_put_le16(p + 4, BT_XFER_DESC_VERSION);
    bt_put_le16(p + 6, d->flags);
    bt_put_le64(p + 8, d->base);
    bt_put_le64(p + 16, d->length);
    bt_put_le32(p + 24, d->region_id);
    bt_put_le32(p + 28, (uint32_t)d->addr_len);
    bt_put_le32(p + 32, (uint32_t)d->rkey_len);
    bt_put_le32(p + 36, (uint32_t)d->host_len);
    bt_put_le64(p + 40, d->owner_id);
    size_t off = BT_XFER_DESC_HDR_LEN;
    memcpy(p + off, d->addr, d->addr_len);
    off += d->addr_len;
    if (d->rkey_len > 0) {
        memcpy(p + off, d->rkey, d->rkey_len);
        off += d->rkey_len;
    }
    if (d->host_len > 0) {
        memcpy(p + off, d->host, d->host_len);
        off += d->host_len;
    }
    st = checksum(p, off, p + off);
    if (st != BT_OK) {
        free(p);
        return st;
    }
    *blob_p = p;
    *len_p = len;
    return BT_OK;
}

bt_status_t bt_xfer_desc_decode(const void *blob, size_t len,
                                bt_xfer_desc_t *d_p)
{
    const uint8_t *p = blob;
    bt_xfer_desc_t d;
    uint8_t sum[BT_XFER_DESC_SUM_LEN];
    uint16_t version;
    size_t need;

    if (blob == NULL || len < 4) {
        bt_error("xfer descriptor truncated len %zu", len);
        return BT_ERR_TRUNCATED;
    }
    if (bt_get_le32(p) != BT_XFER_DESC_MAGIC) {
        bt_error("xfer descriptor has a foreign magic 0x%08x len %zu",
                 bt_get_le32(p), len);
        return BT_ERR_CORRUPT;
    }
    if (len < BT_XFER_DESC_HDR_LEN + BT_XFER_DESC_SUM_LEN) {
        bt_error("xfer descriptor truncated len %zu", len);
        return BT_ERR_TRUNCATED;
    }
    version = bt_get_le16(p + 4);
    if (version != BT_XFER_DESC_VERSION) {
        bt_error("xfer descriptor version %u unsupported (want %u)",
                 version, BT_XFER_DESC_VERSION);
        return BT_ERR_UNSUPPORTED;
    }
    memset(&d, 0, sizeof(d));
    d.flags = bt_get_le16(p + 6);
    d.base = bt_get_le64(p + 8);
    d.length = bt_get_le64(p + 16);
    d.region_id = bt_get_le32(p + 24);
    d.addr_len = bt_get_le32(p + 28);
    d.rkey_len = bt_get_le32(p + 32);
    d.host_len = bt_get_le32(p + 36);
    d.owner_id = bt_get_le64(p + 40);
    if (d.addr_len == 0 || d.addr_len > BT_XFER_DESC_ADDR_MAX ||
        d.rkey_len > BT_XFER_DESC_RKEY_MAX ||
        d.host_len > BT_XFER_DESC_HOST_MAX) {
        bt_error("xfer descriptor field lengths out of range addr %zu rkey %zu "
                 "host %zu", d.addr_len, d.rkey_len, d.host_len);
        return BT_ERR_CORRUPT;
    }
    /* The maxima keep this sum far from overflow. */
    need = BT_XFER_DESC_HDR_LEN + d.addr_len + d.rkey_len + d.host_len +
           BT_XFER_DESC_SUM_LEN;
    if (len < need) {
        bt_error("xfer descriptor truncated len %zu want %zu", len, need);
        return BT_ERR_TRUNCATED;
    }
    if (len > need) {
        bt_error("xfer descriptor has %zu trailing bytes", len - need);
        return BT_ERR_CORRUPT;
    }
    if (checksum(p, need - BT_XFER_DESC_SUM_LEN, sum) != BT_OK) {
        return BT_ERR_INTERNAL;
    }
    if (memcmp(sum, p + need - BT_XFER_DESC_SUM_LEN, sizeof(sum)) != 0) {
        bt_error("xfer descriptor checksum mismatch len %zu", len);
        return BT_ERR_CORRUPT;
    }
    if (d.length == 0 || d.base + d.length < d.base) {
        bt_error("xfer descriptor region range invalid base 0x%llx len %llu",
                 (unsigned long long)d.base, (unsigned long long)d.length);
        return BT_ERR_CORRUPT;
    }
    d.addr = p + BT_XFER_DESC_HDR_LEN;
    d.rkey = d.addr + d.addr_len;
    d.host = (const char *)(d.rkey + d.rkey_len);
    *d_p = d;
    return BT_OK;
}
