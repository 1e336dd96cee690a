/* TLS flags of a process: checks and the plaintext policy (tls_cfg.h). */
#include "tls_cfg.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

/* Same bound as tls.c, which reads the files again when credentials are
 * made (so a rotated file is picked up by the next channel). */
#define BT_RPC_TLS_CFG_PEM_MAX (1024 * 1024)

typedef enum {
    BT_PEM_CERT,
    BT_PEM_KEY,
} bt_pem_kind_t;

/* Checks that `path` is a readable regular file under the size bound that
 * holds a PEM block of `kind`. The contents are never copied into `err`. */
static bt_status_t bt_rpc_tls_cfg_file(const char *flag, const char *path,
                                       bt_pem_kind_t kind, char *err,
                                       size_t err_size)
{
    static const char *const cert_tag = "-----BEGIN CERTIFICATE-----";
    struct stat st;
    bt_status_t s = BT_ERR_INVALID_ARG;
    char *data = NULL;
    FILE *f;

    if (path[0] == '\0') {
        snprintf(err, err_size, "--%s is empty", flag);
        return BT_ERR_INVALID_ARG;
    }
    f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(err, err_size, "--%s %s: %s", flag, path, strerror(errno));
        return BT_ERR_INVALID_ARG;
    }
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, err_size, "--%s %s: not a regular file", flag, path);
        goto out;
    }
    if (st.st_size <= 0 || st.st_size > BT_RPC_TLS_CFG_PEM_MAX) {
        snprintf(err, err_size, "--%s %s: %s", flag, path,
                 st.st_size <= 0 ? "empty" : "over 1 MiB");
        goto out;
    }
    data = malloc((size_t)st.st_size + 1);
    if (data == NULL) {
        snprintf(err, err_size, "--%s %s: out of memory", flag, path);
        goto out;
    }
    if (fread(data, 1, (size_t)st.st_size, f) != (size_t)st.st_size) {
        snprintf(err, err_size, "--%s %s: %s", flag, path,
                 ferror(f) ? strerror(errno) : "short read");
        goto out;
    }
    data[st.st_size] = '\0';
    if (kind == BT_PEM_CERT && strstr(data, cert_tag) == NULL) {
        snprintf(err, err_size, "--%s %s: no PEM certificate in it", flag, path);
        goto out;
    }
    if (kind == BT_PEM_KEY &&
        (strstr(data, "-----BEGIN ") == NULL ||
         strstr(data, "PRIVATE KEY-----") == NULL)) {
        snprintf(err, err_size, "--%s %s: no PEM private key in it", flag, path);
        goto out;
    }
    s = BT_OK;
out:
    if (data != NULL) {
        /* it may be a private key: do not leave it in freed memory */
        memset(data, 0, (size_t)st.st_size);
        free(data);
    }
    fclose(f);
    return s;
}

static bool bt_set(const char *v)
{
    return v != NULL;
}

bt_status_t bt_rpc_tls_cfg_check(bt_rpc_tls_cfg_t *cfg, bool serves,
                                 char *err, size_t err_size)
{
    const char *ccert, *ckey;
    bt_status_t s;

    cfg->enabled = false;
    memset(&cfg->server, 0, sizeof(cfg->server));
    memset(&cfg->client, 0, sizeof(cfg->client));
    if (!serves && (cfg->client_cert_file != NULL ||
                    cfg->client_key_file != NULL)) {
        /* the client-only table has no such options; a caller bug */
        snprintf(err, err_size, "client certificate options without a listener");
        return BT_ERR_INVALID_ARG;
    }
    if (!bt_set(cfg->cert_file) && !bt_set(cfg->key_file) &&
        !bt_set(cfg->ca_file) && !bt_set(cfg->client_cert_file) &&
        !bt_set(cfg->client_key_file) && !bt_set(cfg->server_name)) {
        return BT_OK;   /* plaintext; bt_rpc_tls_cfg_plain_check decides */
    }
    if (cfg->insecure) {
        snprintf(err, err_size, "--insecure contradicts the --tls-* options "
                 "(give one or the other)");
        return BT_ERR_INVALID_ARG;
    }
    if (bt_set(cfg->cert_file) != bt_set(cfg->key_file)) {
        snprintf(err, err_size, "--tls-cert and --tls-key go together (%s "
                 "is missing)", cfg->cert_file == NULL ? "--tls-cert"
                                                       : "--tls-key");
        return BT_ERR_INVALID_ARG;
    }
    if (serves && !bt_set(cfg->cert_file)) {
        snprintf(err, err_size, "tls needs --tls-cert and --tls-key: the "
                 "certificate this daemon's gRPC listener presents");
        return BT_ERR_INVALID_ARG;
    }
    if (bt_set(cfg->client_cert_file) != bt_set(cfg->client_key_file)) {
        snprintf(err, err_size, "--tls-client-cert and --tls-client-key go "
                 "together (%s is missing)",
                 cfg->client_cert_file == NULL ? "--tls-client-cert"
                                               : "--tls-client-key");
        return BT_ERR_INVALID_ARG;
    }
    if (cfg->server_name != NULL && cfg->server_name[0] == '\0') {
        snprintf(err, err_size, "--tls-server-name is empty");
        return BT_ERR_INVALID_ARG;
    }
    if ((cfg->cert_file != NULL &&
         ((s = bt_rpc_tls_cfg_file("tls-cert", cfg->cert_file, BT_PEM_CERT,
                                   err, err_size)) != BT_OK ||
          (s = bt_rpc_tls_cfg_file("tls-key", cfg->key_file, BT_PEM_KEY,
                                   err, err_size)) != BT_OK)) ||
        (cfg->ca_file != NULL &&
         (s = bt_rpc_tls_cfg_file("tls-ca", cfg->ca_file, BT_PEM_CERT, err,
                                  err_size)) != BT_OK) ||
        (cfg->client_cert_file != NULL &&
         ((s = bt_rpc_tls_cfg_file("tls-client-cert", cfg->client_cert_file,
                                   BT_PEM_CERT, err, err_size)) != BT_OK ||
          (s = bt_rpc_tls_cfg_file("tls-client-key", cfg->client_key_file,
                                   BT_PEM_KEY, err, err_size)) != BT_OK))) {
        return s;
    }
    ccert = cfg->client_cert_file != NULL ? cfg->client_cert_file
                                          : cfg->cert_file;
    ckey = cfg->client_cert_file != NULL ? cfg->client_key_file
                                         : cfg->key_file;
    if (serves) {
        cfg->server = (bt_rpc_tls_t){ cfg->cert_file, cfg->key_file,
                                      cfg->ca_file, NULL };
    }
    cfg->client = (bt_rpc_tls_t){ ccert, ckey, cfg->ca_file, cfg->server_name };
    cfg->enabled = true;
    return BT_OK;
}

const bt_rpc_tls_t *bt_rpc_tls_cfg_server(const bt_rpc_tls_cfg_t *cfg)
{
    return cfg->enabled ? &cfg->server : NULL;
}

const bt_rpc_tls_t *bt_rpc_tls_cfg_client(const bt_rpc_tls_cfg_t *cfg)
{
    return cfg->enabled ? &cfg->client : NULL;
}

bt_status_t bt_rpc_tls_cfg_plain_check(const bt_rpc_tls_cfg_t *cfg,
                                       const char *addr, const char *flag,
                                       char *err, size_t err_size)
{
    if (cfg->enabled || cfg->insecure || bt_rpc_addr_is_loopback(addr)) {
        return BT_OK;
    }
    snprintf(err, err_size, "--%s %s is not a loopback address: plaintext "
             "gRPC there needs --insecure (or turn on TLS with the --tls-* "
             "options)", flag, addr);
    return BT_ERR_PERMISSION;
}

static bool bt_rpc_host_is_loopback(const char *host, size_t len)
{
    struct in_addr a4;
    struct in6_addr a6;
    char buf[64];

    if (len == 0 || len >= sizeof(buf)) {
        return false;
    }
    memcpy(buf, host, len);
    buf[len] = '\0';
    if (strcasecmp(buf, "localhost") == 0) {
        return true;
    }
    if (inet_pton(AF_INET, buf, &a4) == 1) {
        return (ntohl(a4.s_addr) >> 24) == 127;
    }
    if (inet_pton(AF_INET6, buf, &a6) == 1) {
        return IN6_IS_ADDR_LOOPBACK(&a6);
    }
    return false;
}

bool bt_rpc_addr_is_loopback(const char *addr)
{
    const char *p = addr, *end;
    size_t colons = 0;

    if (addr == NULL) {
        return false;
    }
    if (strncmp(p, "unix:", 5) == 0 || strncmp(p, "unix-abstract:", 14) == 0) {
        return true;
    }
    if (strncmp(p, "ipv4:", 5) == 0 || strncmp(p, "ipv6:", 5) == 0) {
        p += 5;
    } else if (strncmp(p, "dns:", 4) == 0) {
        p += 4;
        if (strncmp(p, "//", 2) == 0) {   /* dns://[authority]/host:port */
            p = strchr(p + 2, '/');
            if (p == NULL) {
                return false;
            }
            p++;
        }
    }
    if (*p == '[') {
        end = strchr(p, ']');
        return end != NULL && bt_rpc_host_is_loopback(p + 1, (size_t)(end - p - 1));
    }
    for (end = p; *end != '\0'; end++) {
        colons += *end == ':';
    }
    if (colons == 1) {
        end = strchr(p, ':');   /* host:port */
    }
    /* no colon: a bare host; two or more: a bare IPv6 address */
    return bt_rpc_host_is_loopback(p, (size_t)(end - p));
}
