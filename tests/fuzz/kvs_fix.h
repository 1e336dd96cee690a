/* For the kvstore fuzz targets: makes a block file's hashes consistent
 * (chain hash from parent and tokens, sha256 of the data, header
 * checksum; kvstore/store/disk.h has the layout), so that mutations of
 * the other fields reach the checks behind the hashes. */
#ifndef BT_FUZZ_KVS_FIX_H
#define BT_FUZZ_KVS_FIX_H

#include "store/disk.h"

#include "base/endian.h"
#include "base/sha256.h"

#include <stdbool.h>
#include <stdlib.h>

/* Offsets in the fixed header. */
#define FUZZ_KVS_NTOK   12
#define FUZZ_KVS_HASH   56
#define FUZZ_KVS_PARENT 88
#define FUZZ_KVS_SUM    120

/* false when `f` is too short to hold its own header. */
static inline bool fuzz_kvs_fix(uint8_t *f, size_t size)
{
    uint32_t n, *tokens;
    size_t hlen;

    if (size < BT_KVS_FILE_FIXED) {
        return false;
    }
    n = bt_get_le32(f + FUZZ_KVS_NTOK);
    if (n > BT_KV_MAX_BLOCK_TOKENS) {
        return false;
    }
    hlen = BT_KVS_FILE_FIXED + 4u * n;
    if (size < hlen + BT_KV_HASH_LEN) {
        return false;
    }
    tokens = malloc(4u * (n ? n : 1));
    if (tokens == NULL) {
        return false;
    }
    for (uint32_t i = 0; i < n; i++) {
        tokens[i] = bt_get_le32(f + BT_KVS_FILE_FIXED + 4u * i);
    }
    bt_kv_hash_block(f + FUZZ_KVS_PARENT, tokens, n, f + FUZZ_KVS_HASH);
    free(tokens);
    bt_sha256(f + hlen + BT_KV_HASH_LEN, size - hlen - BT_KV_HASH_LEN,
              f + FUZZ_KVS_SUM);
    bt_sha256(f, hlen, f + hlen);
    return true;
}

#endif
