/* libFuzzer: the router's API keys file (router/auth.c), read from disk
 * at start: {"keys": [{"key", "tenant", "salt", "admin"}]}. The input is
 * the file. A file that loads must authenticate each of its keys as the
 * tenant the file gives it (the last entry, when a key repeats) and
 * refuse a key it does not hold; one that fails must say why. */
#include "front.h"

#include "base/log.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_key(bt_router_t *r, const json_t *keys, size_t i)
{
    const char *key = json_string_value(json_object_get(json_array_get(keys, i), "key"));
    const char *tenant = NULL;
    bt_front_auth_t auth;
    char hdr[4096], err[256];

    if (key == NULL || strlen(key) + 8 > sizeof(hdr) ||
        strlen(key) != json_string_length(json_object_get(json_array_get(keys, i), "key"))) {
        return;   /* a NUL inside: the file itself is refused (checked below) */
    }
    for (size_t j = 0; j < json_array_size(keys); j++) {
        const json_t *e = json_array_get(keys, j);

        if (strcmp(json_string_value(json_object_get(e, "key")), key) == 0) {
            tenant = json_string_value(json_object_get(e, "tenant"));
        }
    }
    snprintf(hdr, sizeof(hdr), "Bearer %s", key);
    if (bt_front_authenticate(r, hdr, &auth, err, sizeof(err)) != BT_OK ||
        tenant == NULL || strcmp(auth.tenant, tenant) != 0) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int quiet;
    char path[] = "/tmp/baton-fuzz-keys-XXXXXX";
    bt_router_t *r;
    char err[512];
    bt_status_t s;
    int fd;

    if (!quiet) {
        bt_log_init("fuzz", BT_LOG_LEVEL_OFF, BT_LOG_FORMAT_TEXT);
        quiet = 1;
    }
    if (size > (1u << 20) || (fd = mkstemp(path)) < 0) {
        return 0;
    }
    if (write(fd, data, size) != (ssize_t)size) {
        close(fd);
        unlink(path);
        return 0;
    }
    close(fd);
    r = calloc(1, sizeof(*r));
    if (r == NULL) {
        unlink(path);
        return 0;
    }
    err[0] = '\0';
    s = bt_front_auth_load(r, path, err, sizeof(err));
    if (s == BT_OK) {
        json_t *root = json_loadb((const char *)data, size, JSON_ALLOW_NUL, NULL);
        json_t *keys = json_object_get(root, "keys");
        bt_front_auth_t auth;

        if (r->front_keys == NULL || !json_is_array(keys)) {
            abort();
        }
        for (size_t i = 0; i < json_array_size(keys) && i < 64; i++) {
            check_key(r, keys, i);
        }
        if (bt_front_authenticate(r, NULL, &auth, err, sizeof(err)) == BT_OK ||
            bt_front_authenticate(r, "Bearer", &auth, err, sizeof(err)) == BT_OK) {
            abort();
        }
        json_decref(root);
        bt_front_auth_free(r);
    } else if (err[0] == '\0' || r->front_keys != NULL) {
        abort();
    }
    free(r);
    unlink(path);
    return 0;
}
