/* Rendezvous hashing of block hashes onto kvstore replicas (kv_shard.h). */
#include "kv_shard.h"

#include "base/endian.h"
#include "base/log.h"
#include "base/sha256.h"

#include <stdlib.h>
#include <string.h>

#define SHARD_TAG "baton-kv-shard-v1"

struct bt_kv_shard {
    size_t n;
    char  *ids[];   /* sorted bytewise */
};

static int cmp_id(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

bt_status_t bt_kv_shard_create(const char *const *ids, size_t n,
                               bt_kv_shard_t **shard_p)
{
    bt_kv_shard_t *s;

    if (ids == NULL || n == 0 || n > BT_KV_SHARD_MAX_REPLICAS) {
        bt_error("kv shard: %zu replicas (expected 1..%d)", n,
                 BT_KV_SHARD_MAX_REPLICAS);
        return BT_ERR_INVALID_ARG;
    }
    s = calloc(1, sizeof(*s) + n * sizeof(char *));
    if (s == NULL) {
        return BT_ERR_NO_MEMORY;
    }
    for (size_t i = 0; i < n; i++) {
        size_t len = ids[i] != NULL ? strlen(ids[i]) : 0;

        if (len == 0 || len > BT_KV_SHARD_MAX_ID) {
            bt_error("kv shard: replica id %zu is empty or over %d bytes", i,
                     BT_KV_SHARD_MAX_ID);
            goto err_free;
        }
        if ((s->ids[i] = strdup(ids[i])) == NULL) {
            goto err_free;
        }
        s->n = i + 1;
    }
    qsort(s->ids, n, sizeof(char *), cmp_id);
    for (size_t i = 1; i < n; i++) {
        if (strcmp(s->ids[i - 1], s->ids[i]) == 0) {
            bt_error("kv shard: replica id %s is listed twice", s->ids[i]);
            goto err_free;
        }
    }
    *shard_p = s;
    return BT_OK;
err_free:
    bt_kv_shard_destroy(s);
    return BT_ERR_INVALID_ARG;
}

void bt_kv_shard_destroy(bt_kv_shard_t *shard)
{
    if (shard == NULL) {
        return;
    }
    for (size_t i = 0; i < shard->n; i++) {
        free(shard->ids[i]);
    }
    free(shard);
}

size_t bt_kv_shard_count(const bt_kv_shard_t *shard)
{
    return shard->n;
}

const char *bt_kv_shard_id(const bt_kv_shard_t *shard, size_t i)
{
    return i < shard->n ? shard->ids[i] : NULL;
}

uint64_t bt_kv_shard_weight(const bt_kv_shard_t *shard, size_t i,
                            const uint8_t hash[32])
{
    /* enc(tag) || enc(id) || hash, as kv-spec.md writes it */
    uint8_t msg[4 + sizeof(SHARD_TAG) - 1 + 4 + BT_KV_SHARD_MAX_ID + 32];
    uint8_t d[BT_SHA256_LEN];
    size_t  tl = sizeof(SHARD_TAG) - 1, il = strlen(shard->ids[i]), n = 0;
    uint64_t w = 0;

    bt_put_le32(msg, (uint32_t)tl);
    memcpy(msg + 4, SHARD_TAG, tl);
    n = 4 + tl;
    bt_put_le32(msg + n, (uint32_t)il);
    memcpy(msg + n + 4, shard->ids[i], il);
    n += 4 + il;
    memcpy(msg + n, hash, 32);
    n += 32;
    if (bt_sha256(msg, n, d) != BT_OK) {
        return 0; /* OpenSSL failing is not recoverable; weight 0 is safe */
    }
    for (int b = 7; b >= 0; b--) {
        w = w << 8 | d[b];
    }
    return w;
}

size_t bt_kv_shard_owner(const bt_kv_shard_t *shard, const uint8_t hash[32])
{
    size_t   best = 0;
    uint64_t best_w = bt_kv_shard_weight(shard, 0, hash);

    for (size_t i = 1; i < shard->n; i++) {
        uint64_t w = bt_kv_shard_weight(shard, i, hash);

        if (w > best_w) { /* ties keep the smaller id */
            best = i;
            best_w = w;
        }
    }
    return best;
}
