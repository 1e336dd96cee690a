/* What only common/http uses: the parsed request head, the connection
 * and the server. */
#ifndef BT_HTTP_INT_H
#define BT_HTTP_INT_H

#include "http.h"

#include "base/list.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/listener.h>

#define BT_HTTP_MAX_ROUTES   64
#define BT_HTTP_MAX_HEAD     (64 * 1024)   /* request line + headers */
#define BT_HTTP_MAX_HDRS     100
#define BT_HTTP_MAX_CHUNK_LINE 1024

typedef struct {
    const char *name;
    const char *value;
} bt_http_hdr_t;

/* A request head tokenized in place in its own copy (`text`). */
typedef struct {
    char         *text;
    int           method;        /* BT_HTTP_*; 0: a method we do not serve */
    char         *path;          /* the target up to '?' */
    int           minor;         /* HTTP/1.<minor>: 0 or 1 */
    bt_http_hdr_t hdr[BT_HTTP_MAX_HDRS];
    size_t        n_hdr;
    bool          keep_alive;
    bool          chunked;       /* Transfer-Encoding: chunked */
    bool          expect_continue;
    uint64_t      content_length;
} bt_http_head_t;

/* Parses a whole head (`len` bytes, ending with its empty line) copied
 * into `text` (which `head` then owns: free it with free()). On error
 * returns the HTTP status to answer (400, 501, 505) and a message. */
int bt_http_head_parse(char *text, size_t len, bt_http_head_t *head,
                       const char **why_p);

const char *bt_http_reason(int code);

typedef enum {
    BT_HTTP_CONN_IDLE,      /* waiting for a request's first byte */
    BT_HTTP_CONN_HEAD,      /* reading a request head */
    BT_HTTP_CONN_BODY,      /* reading its body */
    BT_HTTP_CONN_BUSY,      /* a handler has the request */
    BT_HTTP_CONN_CLOSING,   /* flushing the last reply, then close */
} bt_http_conn_state_t;

typedef struct bt_http_conn bt_http_conn_t;

#define BT_HTTP_RID_MAX 64   /* an X-Request-Id we echo or log */

struct bt_http_req {
    bt_http_conn_t    *conn;
    bt_http_head_t     head;
    struct evbuffer   *body;
    struct evbuffer   *out_hdrs;     /* extra reply headers */
    bool               started;      /* status line sent */
    bool               streaming;    /* sse_start'ed */
    void             (*close_cb)(void *arg);
    void              *close_arg;
    /* the access log line (http_conn.c) */
    uint64_t           t0_ns;        /* the head arrived */
    int                status;       /* sent in the status line */
    uint64_t           bytes;        /* body bytes queued for the client */
    bool               rid_sent;     /* the reply carries X-Request-Id */
    bool               logged;
    char               rid[BT_HTTP_RID_MAX + 1];
};

struct bt_http_conn {
    bt_http_server_t     *srv;
    bt_list_t             link;      /* srv->conns */
    struct bufferevent   *bev;
    struct event         *timer;     /* header / idle / body timeout */
    struct event         *kick;      /* parse pipelined input later */
    bt_http_conn_state_t  state;
    bool                  head_clock; /* the header timer runs */
    bool                  processing; /* inside bt_http_conn_process */
    bool                  freeing;
    size_t                scanned;    /* head bytes searched for its end */
    /* body */
    uint64_t              body_left;  /* Content-Length bytes, or of the
                                         chunk being read */
    int                   chunk_state;
    bt_http_req_t         req;
};

typedef struct {
    char              *path;
    bool               prefix;       /* a "/x/" + "*" route: all under /x/ */
    int                methods;
    bt_http_handler_cb cb;
    void              *arg;
} bt_http_route_t;

typedef struct bt_http_sniff bt_http_sniff_t;
struct ssl_st;
struct ssl_ctx_st;

struct bt_http_server {
    struct event_base     *base;
    struct evconnlistener *listener;
    bt_list_t              conns;    /* bt_http_conn_t.link */
    size_t                 n_conns;
    size_t                 max_body;
    bt_http_limits_t       limits;
    int64_t                last_full_log_ms;
    bt_http_route_t        routes[BT_HTTP_MAX_ROUTES];
    int                    n_routes;
    bool                   access_log;  /* a line per request (default on) */
    bt_http_ready_cb       ready;
    void                  *ready_arg;
    bt_metrics_t          *metrics;
    bt_gauge_t            *m_open;      /* NULL until add_standard */
    bt_counter_t          *m_refused;
    bt_counter_t          *m_timeouts;
    /* https (http_tls.c): NULL for plain http */
    struct ssl_ctx_st     *ssl_ctx;
    bt_http_sniff_t       *sniffs;      /* first byte not seen yet */
    size_t                 n_sniffs;
};

/* Called with a whole request: routes it (http.c). */
void bt_http_dispatch(bt_http_server_t *srv, bt_http_req_t *req);

/* Accepts on `srv->listener` (http_conn.c). */
void bt_http_accept_cb(struct evconnlistener *l, evutil_socket_t fd,
                       struct sockaddr *sa, int socklen, void *arg);
void bt_http_conn_free(bt_http_conn_t *conn);
/* A connection accepted (and for https sniffed): `ssl` NULL for plain
 * http, else an SSL the connection then owns (http_conn.c). */
void bt_http_conn_open(bt_http_server_t *srv, evutil_socket_t fd,
                       struct ssl_st *ssl);

/* A whole reply on a socket without a connection object (`body` JSON,
 * NULL: none; `headers` "" or lines ending in CRLF), then a lingering
 * close: what the client sent is read (bounded) so the close is no reset. */
void bt_http_answer_close(evutil_socket_t fd, const char *status,
                          const char *headers, const char *body);

/* http_tls.c: an accepted socket of an https server waits for its first
 * byte there; cleanup closes those and frees the context. */
void bt_http_tls_accept(bt_http_server_t *srv, evutil_socket_t fd);
void bt_http_tls_cleanup(bt_http_server_t *srv);

#endif
