/* Bearer-token authentication: each API key maps to a tenant whose salt
 * roots its KV block hashes, so tenants never share cache (DESIGN §9). */
#include "front.h"

#include "base/json.h"
#include "base/log.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    uint8_t key_hash[32];    /* SHA-256 of the key: the key itself is not kept */
    char    tenant[BT_FRONT_TENANT_MAX + 1];
    uint8_t salt[BT_FRONT_SALT_MAX];
    size_t  salt_len;
    bool    admin;
} bt_front_key_t;

/* r->front_keys: NULL while authentication is off */
struct bt_front_keys {
    bt_front_key_t *keys;
    size_t          n;
};

static int bt_front_hex(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 :
           c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

bt_status_t bt_front_auth_load(bt_router_t *r, const char *path, char *err,
                               size_t err_size)
{
    json_t *root = NULL, *keys = NULL;
    bt_front_keys_t *k;
    bt_status_t s;
    size_t i;

    (void)r;
    if (path == NULL || path[0] == '\0') {
        return BT_OK;
    }
    s = bt_json_load_file(path, 16u << 20, &root, err, err_size);
    if (s != BT_OK) {
        return s;
    }
    s = bt_json_get_array(root, "keys", true, &keys, err, err_size);
    if (s != BT_OK) {
        json_decref(root);
        return s;
    }
    k = calloc(1, sizeof(*k));
    if (k == NULL ||
        (k->keys = calloc(json_array_size(keys) + 1, sizeof(*k->keys))) == NULL) {
        free(k);
        json_decref(root);
        snprintf(err, err_size, "%s: out of memory", path);
        return BT_ERR_NO_MEMORY;
    }
    for (i = 0; i < json_array_size(keys); i++) {
        json_t *e = json_array_get(keys, i);
        const char *key = NULL, *tenant = NULL, *salt = "";
        bt_front_key_t *dst = &k->keys[i];
        size_t j, n;

        if (bt_json_get_string(e, "key", true, &key, err, err_size) != BT_OK ||
            bt_json_get_string(e, "tenant", true, &tenant, err, err_size) != BT_OK) {
            goto err_bad;
        }
        /* optional fields, but of the right type: a salt that is not a
         * string must not silently become the empty (shared) salt */
        s = bt_json_get_string(e, "salt", false, &salt, err, err_size);
        if (s != BT_OK && s != BT_ERR_NOT_FOUND) {
            goto err_bad;
        }
        s = bt_json_get_bool(e, "admin", false, &dst->admin, err, err_size);
        if (s != BT_OK && s != BT_ERR_NOT_FOUND) {
            goto err_bad;
        }
        n = strlen(salt);
        if (strlen(key) < 8 || strlen(tenant) == 0 ||
            strlen(tenant) > BT_FRONT_TENANT_MAX || n % 2 != 0 ||
            n / 2 > BT_FRONT_SALT_MAX) {
            snprintf(err, err_size, "%s: key %zu: keys need 8+ bytes, a tenant of 1 "
                     "to %d bytes and a hex salt of at most %d bytes", path, i,
                     BT_FRONT_TENANT_MAX, BT_FRONT_SALT_MAX);
            goto err_bad;
        }
        for (j = 0; j < n / 2; j++) {
            int hi = bt_front_hex(salt[2 * j]), lo = bt_front_hex(salt[2 * j + 1]);

            if (hi < 0 || lo < 0) {
                snprintf(err, err_size, "%s: key %zu: salt is not hex", path, i);
                goto err_bad;
            }
            dst->salt[j] = (uint8_t)(hi << 4 | lo);
        }
        dst->salt_len = n / 2;
        SHA256((const unsigned char *)key, strlen(key), dst->key_hash);
        snprintf(dst->tenant, sizeof(dst->tenant), "%s", tenant);
    }
    k->n = json_array_size(keys);
    json_decref(root);
    bt_front_auth_free(r);
    r->front_keys = k;
    bt_info("authentication on: %zu api keys", k->n);
    return BT_OK;

err_bad:
    free(k->keys);
    free(k);
    json_decref(root);
    return BT_ERR_INVALID_ARG;
}

void bt_front_auth_free(bt_router_t *r)
{
    bt_front_keys_t *k = r->front_keys;

    if (k != NULL) {
        OPENSSL_cleanse(k->keys, k->n * sizeof(bt_front_key_t));
        free(k->keys);
        free(k);
        r->front_keys = NULL;
    }
}

bt_status_t bt_front_authenticate(bt_router_t *r, const char *authorization,
                                  bt_front_auth_t *auth_p, char *err,
                                  size_t err_size)
{
    uint8_t h[32];
    const char *key;
    size_t i;
    const bt_front_key_t *found = NULL;
    const bt_front_keys_t *keys = r->front_keys;

    memset(auth_p, 0, sizeof(*auth_p));
    if (keys == NULL) {
        snprintf(auth_p->tenant, sizeof(auth_p->tenant), "default");
        auth_p->admin = true;
        return BT_OK;
    }
    if (authorization == NULL || strncmp(authorization, "Bearer ", 7) != 0) {
        snprintf(err, err_size, "missing bearer token (Authorization: Bearer KEY)");
        return BT_ERR_PERMISSION;
    }
    key = authorization + 7;
    SHA256((const unsigned char *)key, strlen(key), h);
    for (i = 0; i < keys->n; i++) {
        /* constant time per key: no early exit on a prefix match */
        if (CRYPTO_memcmp(h, keys->keys[i].key_hash, sizeof(h)) == 0) {
            found = &keys->keys[i];
        }
    }
    if (found == NULL) {
        snprintf(err, err_size, "invalid api key");
        return BT_ERR_PERMISSION;
    }
    snprintf(auth_p->tenant, sizeof(auth_p->tenant), "%s", found->tenant);
    memcpy(auth_p->salt, found->salt, found->salt_len);
    auth_p->salt_len = found->salt_len;
    auth_p->admin = found->admin;
    return BT_OK;
}
