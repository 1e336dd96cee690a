/* Chained SHA-256 block hashes, kv-spec v2 (kv_hash.h, docs/kv-spec.md). */
#include "kv_hash.h"

#include "base/endian.h"
#include "base/log.h"

#include <string.h>

#define BT_KV_ROOT_TAG "baton-kv-v2"
#define BT_KV_ROOT_MAX_STR 4096

/* u32le(len) || bytes */
static bt_status_t bt_kv_hash_put_str(bt_sha256_t *ctx, const void *s,
                                      size_t len)
{
    uint8_t le[4];
    bt_status_t st;

    bt_put_le32(le, (uint32_t)len);
    st = bt_sha256_update(ctx, le, sizeof(le));
    if (st == BT_OK && len > 0) {
        st = bt_sha256_update(ctx, s, len);
    }
    return st;
}

bt_status_t bt_kv_hash_root(const char *model_id, const char *revision,
                            bt_kv_dtype_t dtype, uint32_t block_size,
                            const char *numerics,
                            const void *salt, size_t salt_len,
                            uint8_t root_p[BT_KV_HASH_LEN])
{
    const char *dname = bt_kv_dtype_name(dtype);
    size_t model_len, rev_len;
    uint8_t le[4];
    bt_sha256_t ctx;
    bt_status_t st;

    if (model_id == NULL || block_size == 0 || dname == NULL ||
        (salt == NULL && salt_len)) {
        bt_error("kv hash root: model id, block size and dtype are required");
        return BT_ERR_INVALID_ARG;
    }
    if (!bt_kv_numerics_valid(numerics)) {
        bt_error("kv hash root: a numerics id is required "
                 "([a-z0-9./_-], 1 to %d bytes)", BT_KV_NUMERICS_MAX);
        return BT_ERR_INVALID_ARG;
    }
    if (revision == NULL) {
        revision = "";
    }
    model_len = strlen(model_id);
    rev_len = strlen(revision);
    if (model_len > BT_KV_ROOT_MAX_STR || rev_len > BT_KV_ROOT_MAX_STR ||
        salt_len > BT_KV_ROOT_MAX_STR) {
        bt_error("kv hash root: model id, revision or salt over %d bytes",
                 BT_KV_ROOT_MAX_STR);
        return BT_ERR_TOO_LARGE;
    }
    st = bt_sha256_init(&ctx);
    if (st != BT_OK) {
        return st;
    }
    bt_put_le32(le, block_size);
    if ((st = bt_kv_hash_put_str(&ctx, BT_KV_ROOT_TAG,
                                 strlen(BT_KV_ROOT_TAG))) != BT_OK ||
        (st = bt_kv_hash_put_str(&ctx, model_id, model_len)) != BT_OK ||
        (st = bt_kv_hash_put_str(&ctx, revision, rev_len)) != BT_OK ||
        (st = bt_kv_hash_put_str(&ctx, dname, strlen(dname))) != BT_OK ||
        (st = bt_sha256_update(&ctx, le, sizeof(le))) != BT_OK ||
        (st = bt_kv_hash_put_str(&ctx, numerics, strlen(numerics))) != BT_OK ||
        (st = bt_kv_hash_put_str(&ctx, salt, salt_len)) != BT_OK) {
        bt_sha256_cleanup(&ctx);
        return st;
    }
    return bt_sha256_final(&ctx, root_p);
}

bt_status_t bt_kv_hash_block(const uint8_t parent[BT_KV_HASH_LEN],
                             const uint32_t *tokens, uint32_t n_tokens,
                             uint8_t hash_p[BT_KV_HASH_LEN])
{
    uint8_t buf[256];
    bt_sha256_t ctx;
    bt_status_t st;
    uint32_t i = 0;

    st = bt_sha256_init(&ctx);
    if (st != BT_OK) {
        return st;
    }
    st = bt_sha256_update(&ctx, parent, BT_KV_HASH_LEN);
    while (st == BT_OK && i < n_tokens) {
        size_t n = 0;
        for (; i < n_tokens && n + 4 <= sizeof(buf); i++, n += 4) {
            bt_put_le32(buf + n, tokens[i]);
        }
        st = bt_sha256_update(&ctx, buf, n);
    }
    if (st != BT_OK) {
        bt_sha256_cleanup(&ctx);
        return st;
    }
    return bt_sha256_final(&ctx, hash_p);
}

bt_status_t bt_kv_hash_chain(const uint8_t root[BT_KV_HASH_LEN],
                             uint32_t block_size, const uint32_t *tokens,
                             size_t n_tokens, uint8_t (*hashes)[BT_KV_HASH_LEN],
                             size_t max_hashes, size_t *n_hashes_p)
{
    size_t n, i;

    if (block_size == 0) {
        bt_error("kv hash chain: block size 0");
        return BT_ERR_INVALID_ARG;
    }
    n = n_tokens / block_size;
    if (n > max_hashes) {
        n = max_hashes;
    }
    for (i = 0; i < n; i++) {
        const uint8_t *parent = i == 0 ? root : hashes[i - 1];
        bt_status_t st = bt_kv_hash_block(parent, tokens + i * block_size,
                                          block_size, hashes[i]);
        if (st != BT_OK) {
            return st;
        }
    }
    *n_hashes_p = n;
    return BT_OK;
}

bool bt_kv_tokens_match(const uint32_t *stored, uint32_t n_stored,
                        const uint32_t *want, uint32_t n_want)
{
    return n_stored == n_want &&
           (n_stored == 0 || memcmp(stored, want, 4u * n_stored) == 0);
}
