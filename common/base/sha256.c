#include "sha256.h"

#include <openssl/evp.h>

bt_status_t bt_sha256_init(bt_sha256_t *ctx)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();

    if (md == NULL) {
        return BT_ERR_NO_MEMORY;
    }
    if (EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(md);
        return BT_ERR_INTERNAL;
    }
    ctx->md_ctx = md;
    return BT_OK;
}

bt_status_t bt_sha256_update(bt_sha256_t *ctx, const void *data, size_t len)
{
    if (len == 0) {
        return BT_OK;
    }
    return EVP_DigestUpdate(ctx->md_ctx, data, len) == 1 ? BT_OK
                                                         : BT_ERR_INTERNAL;
}

bt_status_t bt_sha256_final(bt_sha256_t *ctx, uint8_t out[BT_SHA256_LEN])
{
    unsigned int n = 0;
    int ok = EVP_DigestFinal_ex(ctx->md_ctx, out, &n);

    EVP_MD_CTX_free(ctx->md_ctx);
    ctx->md_ctx = NULL;
    return ok == 1 && n == BT_SHA256_LEN ? BT_OK : BT_ERR_INTERNAL;
}

void bt_sha256_cleanup(bt_sha256_t *ctx)
{
    if (ctx == NULL || ctx->md_ctx == NULL) {
        return;
    }
    EVP_MD_CTX_free(ctx->md_ctx);
    ctx->md_ctx = NULL;
}

bt_status_t bt_sha256(const void *data, size_t len, uint8_t out[BT_SHA256_LEN])
{
    unsigned int n = 0;

    if (EVP_Digest(data, len, out, &n, EVP_sha256(), NULL) != 1 ||
        n != BT_SHA256_LEN) {
        return BT_ERR_INTERNAL;
    }
    return BT_OK;
}

void bt_sha256_hex(const uint8_t digest[BT_SHA256_LEN],
                   char out[BT_SHA256_HEX_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    int i;

    for (i = 0; i < BT_SHA256_LEN; i++) {
        out[2 * i] = hex[digest[i] >> 4];
        out[2 * i + 1] = hex[digest[i] & 15];
    }
    out[BT_SHA256_HEX_LEN] = '\0';
}
