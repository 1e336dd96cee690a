/* TLS and mTLS credentials from PEM files. */
#include "rpc_int.h"

#include "base/log.h"

#include <grpc/grpc_security.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#define BT_RPC_PEM_MAX (1024 * 1024)

/* Reads a whole PEM file as a NUL-terminated string; NULL on error. */
static char *bt_rpc_pem_read(const char *path)
{
    struct stat st;
    char *data = NULL;
    FILE *f;

    f = fopen(path, "rb");
    if (f == NULL) {
        bt_error("tls file %s: %s", path, bt_strerror(errno));
        return NULL;
    }
    if (fstat(fileno(f), &st) != 0 || st.st_size <= 0 ||
        st.st_size > BT_RPC_PEM_MAX) {
        bt_error("tls file %s: empty, unreadable or over %d bytes", path,
                 BT_RPC_PEM_MAX);
        goto out;
    }
    data = malloc((size_t)st.st_size + 1);
    if (data == NULL) {
        goto out;
    }
    if (fread(data, 1, (size_t)st.st_size, f) != (size_t)st.st_size) {
        bt_error("tls file %s: short read", path);
        free(data);
        data = NULL;
        goto out;
    }
    data[st.st_size] = '\0';
out:
    fclose(f);
    return data;
}

grpc_server_credentials *bt_rpc_server_creds_create(const bt_rpc_tls_t *tls)
{
    grpc_ssl_pem_key_cert_pair pair;
    grpc_server_credentials *creds = NULL;
    char *cert = NULL, *key = NULL, *ca = NULL;

    if (tls->cert_file == NULL || tls->key_file == NULL) {
        bt_error("tls server needs a certificate and a key");
        return NULL;
    }
    cert = bt_rpc_pem_read(tls->cert_file);
    key = bt_rpc_pem_read(tls->key_file);
    if (cert == NULL || key == NULL) {
        goto out;
    }
    if (tls->ca_file != NULL && (ca = bt_rpc_pem_read(tls->ca_file)) == NULL) {
        goto out;
    }
    pair.private_key = key;
    pair.cert_chain = cert;
    creds = grpc_ssl_server_credentials_create_ex(
        ca, &pair, 1,
        ca != NULL ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                   : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE,
        NULL);
    if (creds == NULL) {
        bt_error("tls server credentials from %s: rejected by grpc",
                 tls->cert_file);
    }
out:
    free(cert);
    free(key);
    free(ca);
    return creds;
}

grpc_channel_credentials *bt_rpc_channel_creds_create(const bt_rpc_tls_t *tls)
{
    grpc_ssl_pem_key_cert_pair pair;
    grpc_channel_credentials *creds = NULL;
    char *cert = NULL, *key = NULL, *ca = NULL;

    if ((tls->cert_file == NULL) != (tls->key_file == NULL)) {
        bt_error("tls client certificate and key go together");
        return NULL;
    }
    if (tls->ca_file != NULL && (ca = bt_rpc_pem_read(tls->ca_file)) == NULL) {
        goto out;
    }
    if (tls->cert_file != NULL) {
        cert = bt_rpc_pem_read(tls->cert_file);
        key = bt_rpc_pem_read(tls->key_file);
        if (cert == NULL || key == NULL) {
            goto out;
        }
        pair.private_key = key;
        pair.cert_chain = cert;
    }
    creds = grpc_ssl_credentials_create(ca, cert != NULL ? &pair : NULL, NULL,
                                        NULL);
    if (creds == NULL) {
        bt_error("tls channel credentials: rejected by grpc");
    }
out:
    free(cert);
    free(key);
    free(ca);
    return creds;
}
