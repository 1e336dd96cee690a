/* Registered regions (ours) and remotes (a peer's region, imported from
 * its descriptor). */
#include "xfer_int.h"

#include "base/log.h"

#include <stdlib.h>
#include <string.h>

static bt_status_t region_map(bt_xfer_ctx_t *ctx, void *base, size_t length,
                              bool alloc, bt_xfer_mem_t mem,
                              bt_xfer_region_t **region_p)
{
    bt_xfer_region_t *r;
    ucp_mem_map_params_t mp;
    ucp_mem_attr_t attr;
    ucs_status_t st;

    if (length == 0 || (!alloc && base == NULL)) {
        bt_error("xfer region needs a base and a length (len %zu)", length);
        return BT_ERR_INVALID_ARG;
    }
    if (mem == BT_XFER_MEM_CUDA && !bt_xfer_ctx_has_cuda(ctx)) {
        bt_error("xfer cannot register %zu bytes of CUDA memory: this UCX "
                 "has no CUDA support (no cuda_copy transport); stage GPU "
                 "data through a pinned host region", length);
        return BT_ERR_UNSUPPORTED;
    }
    r = calloc(1, sizeof(*r));
    if (r == NULL) {
        return BT_ERR_NO_MEMORY;
    }
    memset(&mp, 0, sizeof(mp));
    mp.field_mask = UCP_MEM_MAP_PARAM_FIELD_ADDRESS |
                    UCP_MEM_MAP_PARAM_FIELD_LENGTH |
                    UCP_MEM_MAP_PARAM_FIELD_FLAGS;
    mp.address = alloc ? NULL : base;
    mp.length = length;
    mp.flags = alloc ? UCP_MEM_MAP_ALLOCATE : 0;
    if (mem == BT_XFER_MEM_CUDA) {
        mp.field_mask |= UCP_MEM_MAP_PARAM_FIELD_MEMORY_TYPE;
        mp.memory_type = UCS_MEMORY_TYPE_CUDA;
    }
    st = ucp_mem_map(ctx->ucp, &mp, &r->memh);
    if (st != UCS_OK) {
        bt_error("xfer cannot %s a region of %zu bytes: %s",
                 alloc ? "allocate" : "register", length,
                 ucs_status_string(st));
        free(r);
        return st == UCS_ERR_NO_MEMORY ? BT_ERR_NO_MEMORY : BT_ERR_INTERNAL;
    }
    memset(&attr, 0, sizeof(attr));
    attr.field_mask = UCP_MEM_ATTR_FIELD_ADDRESS | UCP_MEM_ATTR_FIELD_LENGTH;
    st = ucp_mem_query(r->memh, &attr);
    if (st != UCS_OK || attr.length < length) {
        bt_error("xfer region query failed: %s", ucs_status_string(st));
        goto err_unmap;
    }
    st = ucp_rkey_pack(ctx->ucp, r->memh, &r->rkey_buf, &r->rkey_len);
    if (st != UCS_OK) {
        bt_error("xfer rkey pack failed: %s", ucs_status_string(st));
        goto err_unmap;
    }
    r->ctx = ctx;
    r->base = attr.address;
    r->length = length;
    r->ucx_alloc = alloc;
    r->id = ctx->next_region_id++;
    bt_list_add_tail(&ctx->regions, &r->link);
    *region_p = r;
    return BT_OK;

err_unmap:
    ucp_mem_unmap(ctx->ucp, r->memh);
    free(r);
    return BT_ERR_INTERNAL;
}

bt_status_t bt_xfer_region_alloc(bt_xfer_ctx_t *ctx, size_t length,
                                 bt_xfer_region_t **region_p)
{
    return region_map(ctx, NULL, length, true, BT_XFER_MEM_HOST, region_p);
}

bt_status_t bt_xfer_region_alloc_guarded(bt_xfer_ctx_t *ctx, size_t data_len,
                                         uint64_t unit_bytes, uint32_t n_units,
                                         bt_xfer_region_t **region_p)
{
    bt_xfer_region_t *r;
    bt_status_t st;

    if (data_len == 0 || unit_bytes == 0 || n_units == 0) {
        bt_error("xfer guarded region needs data, a unit and units "
                 "(len %zu unit %llu units %u)", data_len,
                 (unsigned long long)unit_bytes, n_units);
        return BT_ERR_INVALID_ARG;
    }
    st = region_map(ctx, NULL, bt_xfer_guard_region_len(data_len, n_units),
                    true, BT_XFER_MEM_HOST, &r);
    if (st != BT_OK) {
        return st;
    }
    r->guard = bt_xfer_guard_init(r->base, data_len, unit_bytes, n_units);
    r->length = data_len;
    *region_p = r;
    return BT_OK;
}

void bt_xfer_region_guard_set(bt_xfer_region_t *r, uint64_t unit,
                              uint64_t lease)
{
    if (r->guard != NULL) {
        bt_xfer_guard_set(r->guard, unit, lease);
    }
}

uint64_t bt_xfer_region_guard_owner(const bt_xfer_region_t *r, uint64_t unit)
{
    return r->guard != NULL ? bt_xfer_guard_owner(r->guard, unit) : 0;
}

bool bt_xfer_region_guard_admits(const bt_xfer_region_t *r, uint64_t off,
                                 uint64_t len, uint64_t lease)
{
    return r->guard == NULL || bt_xfer_guard_admits(r->guard, off, len, lease);
}

bool bt_xfer_region_guard_busy(bt_xfer_region_t *r, uint64_t lease,
                               uint64_t *pid_p)
{
    return r->guard != NULL && bt_xfer_guard_busy(r->guard, lease, pid_p);
}

bt_status_t bt_xfer_region_register(bt_xfer_ctx_t *ctx, void *base,
                                    size_t length,
                                    bt_xfer_region_t **region_p)
{
    return region_map(ctx, base, length, false, BT_XFER_MEM_HOST, region_p);
}

bt_status_t bt_xfer_region_register_mem(bt_xfer_ctx_t *ctx, void *base,
                                        size_t length, bt_xfer_mem_t mem,
                                        bt_xfer_region_t **region_p)
{
    if (mem != BT_XFER_MEM_HOST && mem != BT_XFER_MEM_CUDA) {
        bt_error("xfer region of unknown memory type %d", (int)mem);
        return BT_ERR_INVALID_ARG;
    }
    return region_map(ctx, base, length, false, mem, region_p);
}

void bt_xfer_region_destroy(bt_xfer_region_t *r)
{
    if (r == NULL) {
        return;
    }
    bt_list_del(&r->link);
    bt_xfer_prefault_stop(r->ctx, &r->pf);   /* the thread out of it first */
    ucp_rkey_buffer_release(r->rkey_buf);
    ucp_mem_unmap(r->ctx->ucp, r->memh);
    free(r);
}

void *bt_xfer_region_base(const bt_xfer_region_t *r)
{
    return r->base;
}

size_t bt_xfer_region_length(const bt_xfer_region_t *r)
{
    return r->length;
}

uint32_t bt_xfer_region_id(const bt_xfer_region_t *r)
{
    return r->id;
}

bt_status_t bt_xfer_region_export(const bt_xfer_region_t *r, void **blob_p,
                                  size_t *len_p)
{
    bt_xfer_desc_t d;

    memset(&d, 0, sizeof(d));
    d.flags = (uint16_t)((r->ucx_alloc ? BT_XFER_DESC_F_UCX_ALLOC : 0) |
                         (r->guard != NULL ? BT_XFER_DESC_F_GUARD : 0) |
                         BT_XFER_DESC_F_AM_BATCH);
    d.base = (uint64_t)(uintptr_t)r->base;
    d.length = r->length;
    d.region_id = r->id;
    d.owner_id = r->ctx->id;
    d.addr = (const uint8_t *)r->ctx->addr;
    d.addr_len = r->ctx->addr_len;
    d.rkey = r->rkey_buf;
    d.rkey_len = r->rkey_len;
    d.host = r->ctx->host;
    d.host_len = strlen(r->ctx->host);
    return bt_xfer_desc_encode(&d, blob_p, len_p);
}

bt_status_t bt_xfer_remote_import(bt_xfer_ctx_t *ctx, const void *blob,
                                  size_t len, bt_xfer_remote_t **remote_p)
{
    bt_xfer_remote_t *rm;
    bt_xfer_desc_t d;
    bt_status_t st;

    st = bt_xfer_desc_decode(blob, len, &d);
    if (st != BT_OK) {
        return st;
    }
    if (d.rkey_len == 0) {
        bt_error("xfer descriptor carries no rkey");
        return BT_ERR_CORRUPT;
    }
    rm = calloc(1, sizeof(*rm));
    if (rm == NULL) {
        return BT_ERR_NO_MEMORY;
    }
    rm->blob = malloc(len);
    if (rm->blob == NULL) {
        free(rm);
        return BT_ERR_NO_MEMORY;
    }
    memcpy(rm->blob, blob, len);
    /* Re-decode over our copy so the pointers borrow it. */
    st = bt_xfer_desc_decode(rm->blob, len, &rm->desc);
    if (st != BT_OK) {
        goto err_free;
    }
    st = bt_xfer_peer_get(ctx, &rm->desc, &rm->peer);
    if (st != BT_OK) {
        goto err_free;
    }
    rm->ctx = ctx;
    rm->guard_slot = -1;
    bt_list_add_tail(&ctx->remotes, &rm->link);
    *remote_p = rm;
    return BT_OK;

err_free:
    free(rm->blob);
    free(rm);
    return st;
}

void bt_xfer_remote_destroy(bt_xfer_remote_t *rm)
{
    if (rm == NULL) {
        return;
    }
    bt_list_del(&rm->link);
    bt_xfer_prefault_stop(rm->ctx, &rm->pf);
    if (rm->guard != NULL) {
        bt_xfer_guard_release(rm->guard, rm->guard_slot);   /* still mapped */
    }
    if (rm->rkey != NULL) {
        ucp_rkey_destroy(rm->rkey);
    }
    bt_xfer_peer_unref(rm->peer);
    free(rm->blob);
    free(rm);
}

size_t bt_xfer_remote_length(const bt_xfer_remote_t *rm)
{
    return rm->desc.length;
}

uint64_t bt_xfer_remote_owner_id(const bt_xfer_remote_t *rm)
{
    return rm->desc.owner_id;
}

bt_xfer_mode_t bt_xfer_remote_mode(const bt_xfer_remote_t *rm)
{
    return bt_xfer_peer_mode(rm->peer);
}

void bt_xfer_remote_set_mode(bt_xfer_remote_t *rm, bt_xfer_mode_t mode)
{
    rm->peer->mode_cfg = mode;
}
