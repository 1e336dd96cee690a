/* Field checks of the kvstore service's requests (request_check.h). */
#include "request_check.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bt_status_t bt_kvsd_bad(char *err, size_t err_size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static bt_status_t bt_kvsd_bad(char *err, size_t err_size, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(err, err_size, fmt, ap);
    va_end(ap);
    return BT_ERR_INVALID_ARG;
}

bt_status_t bt_kvsd_check_name(const char *s, const char *field, char *err,
                               size_t err_size)
{
    if (s != NULL && strlen(s) > BT_KVSD_MAX_NAME) {
        return bt_kvsd_bad(err, err_size, "%s longer than %d bytes", field,
                           BT_KVSD_MAX_NAME);
    }
    return BT_OK;
}

bt_status_t bt_kvsd_copy_hashes(const ProtobufCBinaryData *h, size_t n,
                                const char *field, uint8_t **out_p, char *err,
                                size_t err_size)
{
    uint8_t *out;

    if (n > BT_KV_MAX_HASHES) {
        return bt_kvsd_bad(err, err_size, "%zu %s (at most %u per call)", n,
                           field, BT_KV_MAX_HASHES);
    }
    out = malloc(n > 0 ? n * BT_KV_HASH_LEN : 1);
    if (out == NULL) {
        snprintf(err, err_size, "out of memory");
        return BT_ERR_NO_MEMORY;
    }
    for (size_t i = 0; i < n; i++) {
        if (h[i].len != BT_KV_HASH_LEN) {
            free(out);
            return bt_kvsd_bad(err, err_size, "%s[%zu] is %zu bytes, a block "
                               "hash is 32", field, i, h[i].len);
        }
        memcpy(out + i * BT_KV_HASH_LEN, h[i].data, BT_KV_HASH_LEN);
    }
    *out_p = out;
    return BT_OK;
}

bt_status_t bt_kvsd_check_reserve(const Baton__V1__ReserveRequest *req,
                                  char *err, size_t err_size)
{
    bt_status_t st = bt_kvsd_check_name(req->model, "model", err, err_size);

    if (st == BT_OK) {
        st = bt_kvsd_check_name(req->node_id, "node_id", err, err_size);
    }
    if (st != BT_OK) {
        return st;
    }
    if (req->n_block_hashes == 0) {
        return bt_kvsd_bad(err, err_size, "no block_hashes to reserve");
    }
    if (req->geometry == NULL) {
        return bt_kvsd_bad(err, err_size, "geometry is required");
    }
    if (req->parent_hash.len != BT_KV_HASH_LEN) {
        return bt_kvsd_bad(err, err_size, "parent_hash is %zu bytes, want 32 "
                           "(the hash before block_hashes[0], the root for a "
                           "chain's first block)", req->parent_hash.len);
    }
    return BT_OK;
}

bt_status_t bt_kvsd_commit_blocks(const Baton__V1__CommitRequest *req,
                                  bt_kvs_commit_block_t *blocks, char *err,
                                  size_t err_size)
{
    if (req->n_blocks > BT_KV_MAX_HASHES) {
        return bt_kvsd_bad(err, err_size, "%zu blocks (at most %u per call)",
                           req->n_blocks, BT_KV_MAX_HASHES);
    }
    for (size_t i = 0; i < req->n_blocks; i++) {
        const Baton__V1__CommittedBlock *b = req->blocks[i];

        if (b->block_hash.len != BT_KV_HASH_LEN ||
            b->checksum.len != BT_KV_HASH_LEN) {
            return bt_kvsd_bad(err, err_size, "blocks[%zu]: block_hash is %zu "
                               "bytes and checksum %zu, both must be 32 "
                               "(sha256)", i, b->block_hash.len, b->checksum.len);
        }
        if (b->n_token_ids > BT_KV_MAX_BLOCK_TOKENS) {
            return bt_kvsd_bad(err, err_size, "blocks[%zu]: %zu token ids (at "
                               "most %u)", i, b->n_token_ids,
                               BT_KV_MAX_BLOCK_TOKENS);
        }
        memcpy(blocks[i].hash, b->block_hash.data, BT_KV_HASH_LEN);
        memcpy(blocks[i].checksum, b->checksum.data, BT_KV_HASH_LEN);
        blocks[i].tokens = b->token_ids;
        blocks[i].n_tokens = (uint32_t)b->n_token_ids;
    }
    return BT_OK;
}
