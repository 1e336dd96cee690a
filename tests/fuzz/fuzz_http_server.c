/* libFuzzer: the byte stream a client sends the HTTP server of every
 * daemon (common/http), beyond the head: bodies by Content-Length and
 * chunked, trailers, Expect, pipelined requests, protocol errors and the
 * lingering close. Each input is one connection of a real server (over a
 * socketpair, through the accept path), fed in pieces of a size the first
 * byte picks so the incremental parsers see every split, then closed.
 * Every connection must end (a hang is a libFuzzer timeout), every reply
 * must start with a status line, and a handler must see exactly the body
 * the head announced. */
#include "http/http_int.h"

#include "base/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_MAX_BODY 4096u

static struct event_base *base;
static bt_http_server_t *srv;

/* POST /echo: the body back, after checking its length. */
static void echo_cb(bt_http_req_t *req, void *arg)
{
    const bt_http_head_t *h = &req->head;
    size_t len = evbuffer_get_length(req->body);
    bt_buf_t body;

    (void)arg;
    if (len > FUZZ_MAX_BODY || (!h->chunked && len != h->content_length)) {
        abort();
    }
    bt_buf_init(&body, FUZZ_MAX_BODY);
    if (bt_http_read_body(req, &body) != BT_OK || body.len != len) {
        abort();
    }
    bt_http_reply(req, 200, "application/octet-stream", body.data, body.len);
    bt_buf_cleanup(&body);
}

/* /sse: a short event stream. */
static void sse_cb(bt_http_req_t *req, void *arg)
{
    (void)arg;
    bt_http_add_header(req, "X-Fuzz", "1");
    bt_http_sse_start(req);
    bt_http_sse_send(req, "{}", 2);
    bt_http_sse_done(req);
}

static void setup(void)
{
    int port = 0;

    bt_log_init("fuzz", BT_LOG_LEVEL_OFF, BT_LOG_FORMAT_TEXT);
    base = event_base_new();
    srv = base ? bt_http_server_create(base, "127.0.0.1", 0, FUZZ_MAX_BODY, &port)
               : NULL;
    if (srv == NULL ||
        bt_http_route(srv, "/echo", BT_HTTP_POST | BT_HTTP_PUT, echo_cb, NULL) != BT_OK ||
        bt_http_route(srv, "/sse", BT_HTTP_GET | BT_HTTP_POST, sse_cb, NULL) != BT_OK ||
        bt_http_add_standard(srv, NULL, NULL, NULL) != BT_OK) {
        abort();
    }
}

/* What the server sent so far: only its first bytes are kept. */
typedef struct {
    char   first[16];
    size_t n;
    bool   eof;
} reply_t;

static void drain(int fd, reply_t *r)
{
    char buf[8192];
    ssize_t got;

    while ((got = recv(fd, buf, sizeof(buf), MSG_DONTWAIT)) > 0) {
        for (ssize_t i = 0; i < got && r->n < sizeof(r->first); i++) {
            r->first[r->n++] = buf[i];
        }
    }
    if (got == 0 || (got < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
        r->eof = true;
    }
}

/* The client's end is read when the loop sees it readable, not polled
 * after every piece: a recv per piece was a sixth of the syscalls. */
static struct event *client_ev;

static void client_cb(evutil_socket_t fd, short what, void *arg)
{
    reply_t *r = arg;

    (void)what;
    drain(fd, r);
    if (r->eof) {
        event_del(client_ev);   /* readable for good: no more wakeups */
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sockaddr_storage sa;
    reply_t reply;
    size_t step, off;
    int sv[2];

    if (srv == NULL) {
        setup();
    }
    if (size < 1 || size > 256 * 1024) {
        return 0;
    }
    /* 0: all at once; otherwise pieces of 1..255 bytes */
    step = data[0] == 0 ? size : data[0];
    data++;
    size--;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) != 0) {
        return 0;
    }
    memset(&sa, 0, sizeof(sa));
    sa.ss_family = AF_UNIX;
    bt_http_accept_cb(NULL, sv[0], (struct sockaddr *)&sa, sizeof(sa), srv);
    memset(&reply, 0, sizeof(reply));
    client_ev = event_new(base, sv[1], EV_READ | EV_PERSIST, client_cb, &reply);
    if (client_ev == NULL || event_add(client_ev, NULL) != 0) {
        abort();
    }
    for (off = 0; off < size && !reply.eof;) {
        size_t n = size - off < step ? size - off : step;
        ssize_t put = send(sv[1], data + off, n, MSG_NOSIGNAL);

        if (put > 0) {
            off += (size_t)put;
        } else if (put < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
            break;   /* the server closed: the rest is never read */
        }
        event_base_loop(base, put > 0 ? EVLOOP_NONBLOCK : EVLOOP_ONCE);
    }
    shutdown(sv[1], SHUT_WR);
    while (bt_http_server_connections(srv) > 0) {
        event_base_loop(base, EVLOOP_ONCE);
    }
    event_free(client_ev);
    drain(sv[1], &reply);
    close(sv[1]);
    if (reply.n > 0 && (reply.n < 9 || memcmp(reply.first, "HTTP/1.", 7) != 0)) {
        abort();
    }
    return 0;
}
