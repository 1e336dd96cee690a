/* HTTPS on the HTTP server: the certificate, and the first byte of each
 * new connection, which tells a TLS ClientHello (record type 0x16) from a
 * client speaking plain HTTP to the TLS port; that one gets a plain 400
 * saying to use https, then the connection closes. The TLS itself is
 * libevent's OpenSSL bufferevent (http_conn.c). */
#include "http_int.h"

#include "base/log.h"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define BT_HTTP_TLS_HANDSHAKE 0x16   /* TLS record type of a ClientHello */

/* A connection whose first byte has not arrived yet. */
struct bt_http_sniff {
    bt_http_server_t *srv;
    bt_http_sniff_t  *prev, *next;
    evutil_socket_t   fd;
    struct event     *ev;
};

/* A server context for the files, or NULL with one line in `err`. */
static SSL_CTX *bt_http_tls_ctx_new(const char *cert_file, const char *key_file,
                                    char *err, size_t err_size)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    unsigned long e;

    if (ctx == NULL) {
        snprintf(err, err_size, "https: out of memory");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    /* the private key stays in OpenSSL's memory only */
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        e = ERR_peek_last_error();
        snprintf(err, err_size, "certificate %s with key %s: %s", cert_file,
                 key_file, e != 0 ? ERR_reason_error_string(e) : "rejected");
        ERR_clear_error();
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

bt_status_t bt_http_tls_check(const char *cert_file, const char *key_file,
                              char *err, size_t err_size)
{
    SSL_CTX *ctx = bt_http_tls_ctx_new(cert_file, key_file, err, err_size);

    SSL_CTX_free(ctx);
    return ctx != NULL ? BT_OK : BT_ERR_INVALID_ARG;
}

bt_status_t bt_http_server_set_tls(bt_http_server_t *srv, const char *cert_file,
                                   const char *key_file, char *err,
                                   size_t err_size)
{
    SSL_CTX *ctx = bt_http_tls_ctx_new(cert_file, key_file, err, err_size);

    if (ctx == NULL) {
        return BT_ERR_INVALID_ARG;
    }
    SSL_CTX_free(srv->ssl_ctx);
    srv->ssl_ctx = ctx;
    return BT_OK;
}

bool bt_http_server_is_tls(const bt_http_server_t *srv)
{
    return srv->ssl_ctx != NULL;
}

static void bt_http_sniff_free(bt_http_sniff_t *s, bool close_fd)
{
    bt_http_server_t *srv = s->srv;

    if (s->prev != NULL) {
        s->prev->next = s->next;
    } else {
        srv->sniffs = s->next;
    }
    if (s->next != NULL) {
        s->next->prev = s->prev;
    }
    srv->n_sniffs--;
    event_free(s->ev);
    if (close_fd) {
        evutil_closesocket(s->fd);
    }
    free(s);
}

/* Plain HTTP on the TLS port: one 400 in the error shape, then close. */
static void bt_http_tls_refuse_plain(evutil_socket_t fd)
{
    char *body = bt_http_error_body("invalid_request_error",
                                    "this port speaks https: use https://",
                                    NULL, "https_required");

    bt_http_answer_close(fd, "400 Bad Request", "", body);
    free(body);
}

static void bt_http_sniff_cb(evutil_socket_t fd, short what, void *arg)
{
    bt_http_sniff_t *s = arg;
    bt_http_server_t *srv = s->srv;
    unsigned char b;
    ssize_t n;
    SSL *ssl;

    if (what & EV_TIMEOUT) {
        bt_http_sniff_free(s, true);   /* sent nothing at all */
        return;
    }
    n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        return;   /* persistent event: wait for the byte */
    }
    if (n <= 0) {
        bt_http_sniff_free(s, true);
        return;
    }
    if (b != BT_HTTP_TLS_HANDSHAKE) {
        bt_debug("http: plain http on the https port; refused");
        bt_http_sniff_free(s, false);
        bt_http_tls_refuse_plain(fd);   /* closes it */
        return;
    }
    bt_http_sniff_free(s, false);
    ssl = SSL_new(srv->ssl_ctx);
    if (ssl == NULL) {
        bt_warn("http: out of memory for a tls connection");
        evutil_closesocket(fd);
        return;
    }
    bt_http_conn_open(srv, fd, ssl);
}

void bt_http_tls_accept(bt_http_server_t *srv, evutil_socket_t fd)
{
    bt_http_sniff_t *s = calloc(1, sizeof(*s));
    struct timeval tv = { srv->limits.header_timeout_ms / 1000,
                          (srv->limits.header_timeout_ms % 1000) * 1000 };

    if (s == NULL ||
        (s->ev = event_new(srv->base, fd, EV_READ | EV_PERSIST,
                           bt_http_sniff_cb, s)) == NULL) {
        free(s);
        evutil_closesocket(fd);
        return;
    }
    s->srv = srv;
    s->fd = fd;
    s->next = srv->sniffs;
    if (srv->sniffs != NULL) {
        srv->sniffs->prev = s;
    }
    srv->sniffs = s;
    srv->n_sniffs++;
    event_add(s->ev, srv->limits.header_timeout_ms > 0 ? &tv : NULL);
}

void bt_http_tls_cleanup(bt_http_server_t *srv)
{
    while (srv->sniffs != NULL) {
        bt_http_sniff_free(srv->sniffs, true);
    }
    SSL_CTX_free(srv->ssl_ctx);
    srv->ssl_ctx = NULL;
}
