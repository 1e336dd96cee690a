/* SHA-256 through OpenSSL's EVP interface (block hashes, DESIGN §3). */
#ifndef BT_SHA256_H
#define BT_SHA256_H

#include "status.h"

#include <stddef.h>
#include <stdint.h>

#define BT_SHA256_LEN 32
#define BT_SHA256_HEX_LEN 64

typedef struct {
    void *md_ctx; /* EVP_MD_CTX */
} bt_sha256_t;

bt_status_t bt_sha256_init(bt_sha256_t *ctx);
bt_status_t bt_sha256_update(bt_sha256_t *ctx, const void *data, size_t len);
/* Writes the digest and releases the context (init again to reuse). */
bt_status_t bt_sha256_final(bt_sha256_t *ctx, uint8_t out[BT_SHA256_LEN]);
void bt_sha256_cleanup(bt_sha256_t *ctx); /* after an error; NULL-safe */

/* One shot. */
bt_status_t bt_sha256(const void *data, size_t len, uint8_t out[BT_SHA256_LEN]);

/* Lowercase hex, NUL-terminated (out has 65 bytes). */
void bt_sha256_hex(const uint8_t digest[BT_SHA256_LEN],
                   char out[BT_SHA256_HEX_LEN + 1]);

#endif
