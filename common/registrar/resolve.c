#include "registrar/resolve.h"

#include "base/log.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netdb.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define BT_HOST_MAX 256

typedef struct {
    char              host[BT_HOST_MAX];   /* a name, for names only */
    char              port[8];
    char             *literal;             /* the target, for literals */
    bt_router_addr_t *last;                /* a name's addresses last seen */
    size_t            n_last;
} bt_rentry_t;

/* One resolution on its thread. Owned by the thread while `running`;
 * then by the loop (its event delivers it), or freed by the thread when
 * the resolver went away meanwhile. */
typedef struct {
    pthread_mutex_t   mu;
    bool              running;
    bool              abandoned;
    struct event     *done_ev;
    size_t            n;            /* name entries, in entry order */
    char            (*host)[BT_HOST_MAX];
    char            (*port)[8];
    bt_router_addr_t **got;         /* per name: its addresses, or NULL */
    size_t           *n_got;
} bt_round_t;

struct bt_resolver {
    struct event_base *base;
    bt_rentry_t       *e;
    size_t             n;
    size_t             n_names;
    uint32_t           interval_ms;
    bt_resolve_cb      cb;
    void              *arg;
    struct event      *tick_ev;
    struct event      *done_ev;
    bt_round_t        *round;       /* the one in flight, or NULL */
};

static void bt_addrs_free(bt_router_addr_t *a, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(a[i].target);
        free(a[i].tls_name);
    }
    free(a);
}

static bool bt_port_ok(const char *p)
{
    size_t n = strlen(p);
    long v;

    if (n == 0 || n > 5) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)p[i])) {
            return false;
        }
    }
    v = strtol(p, NULL, 10);
    return v >= 1 && v <= 65535;
}

/* Parses one entry (already trimmed) into `e`. */
static bt_status_t bt_rentry_parse(const char *s, bt_rentry_t *e, char *err,
                                   size_t err_size)
{
    static const char *const schemes[] = {"ipv4:", "ipv6:", "unix:",
                                          "unix-abstract:"};
    char buf[BT_HOST_MAX + 16];
    const char *colon;
    struct in_addr a4;
    struct in6_addr a6;

    memset(e, 0, sizeof(*e));
    for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++) {
        if (strncmp(s, schemes[i], strlen(schemes[i])) == 0) {
            if (s[strlen(schemes[i])] == '\0') {
                snprintf(err, err_size, "router target '%s' names no address", s);
                return BT_ERR_INVALID_ARG;
            }
            e->literal = strdup(s);
            return e->literal != NULL ? BT_OK : BT_ERR_NO_MEMORY;
        }
    }
    if (strncmp(s, "dns:///", 7) == 0) {
        s += 7;
    } else if (strncmp(s, "dns:", 4) == 0) {
        s += 4;
    }
    if (strlen(s) >= sizeof(buf)) {
        snprintf(err, err_size, "router target '%.40s...' is too long", s);
        return BT_ERR_INVALID_ARG;
    }
    if (s[0] == '[') {
        const char *close = strchr(s, ']');

        if (close == NULL || close[1] != ':' || !bt_port_ok(close + 2) ||
            (size_t)(close - s - 1) >= sizeof(buf)) {
            snprintf(err, err_size, "router target '%s': want [ipv6]:port", s);
            return BT_ERR_INVALID_ARG;
        }
        memcpy(buf, s + 1, (size_t)(close - s - 1));
        buf[close - s - 1] = '\0';
        if (inet_pton(AF_INET6, buf, &a6) != 1) {
            snprintf(err, err_size, "router target '%s': '%s' is not an IPv6 "
                     "address", s, buf);
            return BT_ERR_INVALID_ARG;
        }
        e->literal = malloc(strlen(s) + 6);
        if (e->literal == NULL) {
            return BT_ERR_NO_MEMORY;
        }
        sprintf(e->literal, "ipv6:%s", s);
        return BT_OK;
    }
    colon = strrchr(s, ':');
    if (colon == NULL || colon == s || !bt_port_ok(colon + 1)) {
        snprintf(err, err_size, "router target '%s': want host:port (a port "
                 "from 1 to 65535)", s);
        return BT_ERR_INVALID_ARG;
    }
    if ((size_t)(colon - s) >= BT_HOST_MAX) {
        snprintf(err, err_size, "router target '%.40s...': the host name is "
                 "too long", s);
        return BT_ERR_INVALID_ARG;
    }
    memcpy(e->host, s, (size_t)(colon - s));
    e->host[colon - s] = '\0';
    snprintf(e->port, sizeof(e->port), "%s", colon + 1);
    if (strchr(e->host, ':') != NULL) {
        snprintf(err, err_size, "router target '%s': write an IPv6 address "
                 "in brackets, [addr]:port", s);
        return BT_ERR_INVALID_ARG;
    }
    if (inet_pton(AF_INET, e->host, &a4) == 1) {
        e->literal = malloc(strlen(s) + 6);
        if (e->literal == NULL) {
            return BT_ERR_NO_MEMORY;
        }
        sprintf(e->literal, "ipv4:%s", s);
        e->host[0] = '\0';
    }
    return BT_OK;
}

bt_status_t bt_router_list_each(const char *list, bt_router_entry_fn fn,
                                void *arg, char *err, size_t err_size)
{
    const char *p = list;
    size_t n = 0;

    if (list == NULL || list[0] == '\0') {
        snprintf(err, err_size, "no router target");
        return BT_ERR_INVALID_ARG;
    }
    for (;;) {
        const char *end = strchr(p, ',');
        size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
        char one[BT_HOST_MAX + 16];
        bt_status_t s;

        while (len > 0 && isspace((unsigned char)*p)) {
            p++;
            len--;
        }
        while (len > 0 && isspace((unsigned char)p[len - 1])) {
            len--;
        }
        if (len == 0) {
            snprintf(err, err_size, "router list '%s' has an empty entry", list);
            return BT_ERR_INVALID_ARG;
        }
        if (len >= sizeof(one)) {
            snprintf(err, err_size, "a router target in '%.40s...' is too long",
                     list);
            return BT_ERR_INVALID_ARG;
        }
        if (n == BT_ROUTERS_MAX) {
            snprintf(err, err_size, "more than %d router targets",
                     BT_ROUTERS_MAX);
            return BT_ERR_INVALID_ARG;
        }
        memcpy(one, p, len);
        one[len] = '\0';
        s = fn(one, arg, err, err_size);
        if (s != BT_OK) {
            return s;
        }
        n++;
        if (end == NULL) {
            return BT_OK;
        }
        p = end + 1;
    }
}

typedef struct {
    bt_rentry_t *e;
    size_t       n;
} bt_rentry_list_t;

static bt_status_t bt_rentry_add(const char *one, void *arg, char *err,
                                 size_t err_size)
{
    bt_rentry_list_t *l = arg;
    bt_status_t s = bt_rentry_parse(one, &l->e[l->n], err, err_size);

    if (s == BT_OK) {
        l->n++;
    }
    return s;
}

/* Splits the list into entries; `e_p` NULL only checks. */
static bt_status_t bt_router_list_parse(const char *list, bt_rentry_t **e_p,
                                        size_t *n_p, char *err, size_t err_size)
{
    bt_rentry_list_t l = { NULL, 0 };
    bt_status_t s;

    l.e = calloc(BT_ROUTERS_MAX, sizeof(*l.e));
    if (l.e == NULL) {
        return BT_ERR_NO_MEMORY;
    }
    s = bt_router_list_each(list, bt_rentry_add, &l, err, err_size);
    if (s != BT_OK || e_p == NULL) {
        for (size_t i = 0; i < l.n; i++) {
            free(l.e[i].literal);
        }
        free(l.e);
        return s;
    }
    *e_p = l.e;
    *n_p = l.n;
    return BT_OK;
}

bt_status_t bt_router_list_check(const char *list, char *err, size_t err_size)
{
    return bt_router_list_parse(list, NULL, NULL, err, err_size);
}

/* ---- the resolution thread ---- */

static int bt_addr_cmp(const void *a, const void *b)
{
    return strcmp(((const bt_router_addr_t *)a)->target,
                  ((const bt_router_addr_t *)b)->target);
}

/* The addresses of host:port, IPv4 ones when there are any. */
static void bt_resolve_one(const char *host, const char *port,
                           bt_router_addr_t **got_p, size_t *n_p)
{
    struct addrinfo hints, *res = NULL;
    bt_router_addr_t *got;
    size_t n = 0, cap = 0;
    bool any4 = false;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    *got_p = NULL;
    *n_p = 0;
    if (getaddrinfo(host, port, &hints, &res) != 0) {
        return;
    }
    for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        any4 |= ai->ai_family == AF_INET;
        cap++;
    }
    got = calloc(cap ? cap : 1, sizeof(*got));
    for (struct addrinfo *ai = res; ai != NULL && got != NULL; ai = ai->ai_next) {
        char ip[INET6_ADDRSTRLEN], t[INET6_ADDRSTRLEN + 24];
        bool dup = false;

        if (ai->ai_family == AF_INET && any4) {
            inet_ntop(AF_INET, &((struct sockaddr_in *)ai->ai_addr)->sin_addr,
                      ip, sizeof(ip));
            snprintf(t, sizeof(t), "ipv4:%s:%s", ip, port);
        } else if (ai->ai_family == AF_INET6 && !any4) {
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr,
                      ip, sizeof(ip));
            snprintf(t, sizeof(t), "ipv6:[%s]:%s", ip, port);
        } else {
            continue;
        }
        for (size_t i = 0; i < n && !dup; i++) {
            dup = strcmp(got[i].target, t) == 0;
        }
        if (dup) {
            continue;
        }
        got[n].target = strdup(t);
        got[n].tls_name = strdup(host);
        if (got[n].target == NULL || got[n].tls_name == NULL) {
            free(got[n].target);
            free(got[n].tls_name);
            break;
        }
        n++;
    }
    freeaddrinfo(res);
    if (n == 0) {
        free(got);
        return;
    }
    *got_p = got;
    *n_p = n;
}

static void bt_round_free(bt_round_t *rd)
{
    for (size_t i = 0; i < rd->n; i++) {
        bt_addrs_free(rd->got[i], rd->n_got[i]);
    }
    free(rd->got);
    free(rd->n_got);
    free(rd->host);
    free(rd->port);
    pthread_mutex_destroy(&rd->mu);
    free(rd);
}

static void *bt_round_main(void *arg)
{
    bt_round_t *rd = arg;
    bool abandoned;

    for (size_t i = 0; i < rd->n; i++) {
        bt_resolve_one(rd->host[i], rd->port[i], &rd->got[i], &rd->n_got[i]);
    }
    pthread_mutex_lock(&rd->mu);
    rd->running = false;
    abandoned = rd->abandoned;
    if (!abandoned) {
        event_active(rd->done_ev, EV_TIMEOUT, 0);
    }
    pthread_mutex_unlock(&rd->mu);
    if (abandoned) {
        bt_round_free(rd);
    }
    return NULL;
}

/* ---- on the loop ---- */

static void bt_resolver_deliver(bt_resolver_t *r)
{
    bt_router_addr_t all[BT_ROUTERS_MAX];
    size_t n = 0, k = 0;

    for (size_t i = 0; i < r->n; i++) {
        if (r->e[i].literal != NULL && n < BT_ROUTERS_MAX) {
            all[n].target = r->e[i].literal;
            all[n++].tls_name = NULL;
        }
        for (size_t j = 0; j < r->e[i].n_last && n < BT_ROUTERS_MAX; j++) {
            all[n++] = r->e[i].last[j];
        }
    }
    qsort(all, n, sizeof(all[0]), bt_addr_cmp);
    for (size_t i = 0; i < n; i++) {   /* two entries naming one router */
        if (k == 0 || strcmp(all[k - 1].target, all[i].target) != 0) {
            all[k++] = all[i];
        }
    }
    r->cb(r->arg, all, k);
}

static void bt_resolver_done_cb(evutil_socket_t fd, short what, void *arg)
{
    bt_resolver_t *r = arg;
    bt_round_t *rd = r->round;
    size_t k = 0;

    (void)fd;
    (void)what;
    r->round = NULL;
    if (rd == NULL) {
        return;
    }
    for (size_t i = 0; i < r->n; i++) {
        bt_rentry_t *e = &r->e[i];

        if (e->literal != NULL) {
            continue;
        }
        if (rd->got[k] != NULL) {
            bt_addrs_free(e->last, e->n_last);
            e->last = rd->got[k];
            e->n_last = rd->n_got[k];
            rd->got[k] = NULL;
            rd->n_got[k] = 0;
        } else {
            bt_warn("router name %s:%s did not resolve; keeping its %zu "
                    "addresses", e->host, e->port, e->n_last);
        }
        k++;
    }
    bt_round_free(rd);
    bt_resolver_deliver(r);
}

static void bt_resolver_start_round(bt_resolver_t *r)
{
    bt_round_t *rd;
    pthread_attr_t attr;
    pthread_t th;
    size_t k = 0;

    if (r->round != NULL) {
        return;   /* the last one is still resolving */
    }
    rd = calloc(1, sizeof(*rd));
    if (rd == NULL) {
        return;
    }
    pthread_mutex_init(&rd->mu, NULL);
    rd->n = r->n_names;
    rd->host = calloc(rd->n, sizeof(*rd->host));
    rd->port = calloc(rd->n, sizeof(*rd->port));
    rd->got = calloc(rd->n, sizeof(*rd->got));
    rd->n_got = calloc(rd->n, sizeof(*rd->n_got));
    if (rd->host == NULL || rd->port == NULL || rd->got == NULL ||
        rd->n_got == NULL) {
        bt_round_free(rd);
        return;
    }
    for (size_t i = 0; i < r->n; i++) {
        if (r->e[i].literal == NULL) {
            memcpy(rd->host[k], r->e[i].host, sizeof(rd->host[k]));
            memcpy(rd->port[k], r->e[i].port, sizeof(rd->port[k]));
            k++;
        }
    }
    rd->done_ev = r->done_ev;
    rd->running = true;
    r->round = rd;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&th, &attr, bt_round_main, rd) != 0) {
        bt_warn("cannot start a thread to resolve the router names");
        r->round = NULL;
        bt_round_free(rd);
    }
    pthread_attr_destroy(&attr);
}

static void bt_resolver_tick_cb(evutil_socket_t fd, short what, void *arg)
{
    bt_resolver_t *r = arg;
    struct timeval tv = { r->interval_ms / 1000, (r->interval_ms % 1000) * 1000 };

    (void)fd;
    (void)what;
    if (r->n_names == 0) {
        bt_resolver_deliver(r);   /* literals only: once */
        return;
    }
    bt_resolver_start_round(r);
    evtimer_add(r->tick_ev, &tv);
}

bt_resolver_t *bt_resolver_create(struct event_base *base, const char *list,
                                  uint32_t interval_ms, bt_resolve_cb cb,
                                  void *arg)
{
    bt_resolver_t *r = calloc(1, sizeof(*r));
    struct timeval now = { 0, 0 };
    char err[256];

    if (r == NULL) {
        return NULL;
    }
    if (bt_router_list_parse(list, &r->e, &r->n, err, sizeof(err)) != BT_OK) {
        bt_error("--router: %s", err);
        free(r);
        return NULL;
    }
    for (size_t i = 0; i < r->n; i++) {
        r->n_names += r->e[i].literal == NULL;
    }
    r->base = base;
    r->interval_ms = interval_ms ? interval_ms : 5000;
    r->cb = cb;
    r->arg = arg;
    r->tick_ev = evtimer_new(base, bt_resolver_tick_cb, r);
    r->done_ev = event_new(base, -1, 0, bt_resolver_done_cb, r);
    if (r->tick_ev == NULL || r->done_ev == NULL) {
        bt_resolver_destroy(r);
        return NULL;
    }
    evtimer_add(r->tick_ev, &now);
    return r;
}

void bt_resolver_destroy(bt_resolver_t *r)
{
    if (r == NULL) {
        return;
    }
    if (r->round != NULL) {
        bt_round_t *rd = r->round;
        bool running;

        pthread_mutex_lock(&rd->mu);
        running = rd->running;
        rd->abandoned = true;
        pthread_mutex_unlock(&rd->mu);
        if (!running) {
            bt_round_free(rd);   /* done, its event not yet run */
        }
    }
    if (r->tick_ev != NULL) {
        event_free(r->tick_ev);
    }
    if (r->done_ev != NULL) {
        event_free(r->done_ev);
    }
    for (size_t i = 0; i < r->n; i++) {
        free(r->e[i].literal);
        bt_addrs_free(r->e[i].last, r->e[i].n_last);
    }
    free(r->e);
    free(r);
}
