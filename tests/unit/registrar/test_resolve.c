/* The --router list: syntax errors named precisely; literals passed as
 * they are; a name resolved into one router per address (IPv4 first);
 * two entries naming one router counted once; the entry walk the
 * daemons' checks share. */
#include "base/loop.h"
#include "registrar/resolve.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

typedef struct {
    struct event_base *base;
    char               got[8][128];
    char               tls[8][128];
    size_t             n;
    int                calls;
} seen_t;

static void on_resolved(void *arg, const bt_router_addr_t *a, size_t n)
{
    seen_t *s = arg;

    s->n = n < 8 ? n : 8;
    for (size_t i = 0; i < s->n; i++) {
        snprintf(s->got[i], sizeof(s->got[i]), "%s", a[i].target);
        snprintf(s->tls[i], sizeof(s->tls[i]), "%s",
                 a[i].tls_name != NULL ? a[i].tls_name : "-");
    }
    s->calls++;
    event_base_loopbreak(s->base);
}

static void resolve(const char *list, seen_t *s)
{
    bt_resolver_t *r;
    struct timeval limit = { 10, 0 };

    memset(s, 0, sizeof(*s));
    s->base = bt_loop_create();   /* thread-safe: results come from a thread */
    assert_non_null(s->base);
    r = bt_resolver_create(s->base, list, 60000, on_resolved, s);
    assert_non_null(r);
    event_base_loopexit(s->base, &limit);
    event_base_dispatch(s->base);
    bt_resolver_destroy(r);
    event_base_free(s->base);
}

static void test_syntax(void **state)
{
    char err[256];
    static const char *const good[] = {
        "ipv4:127.0.0.1:7000", "127.0.0.1:7000", "[::1]:7000",
        "unix:/run/baton.sock", "localhost:7000", "dns:///router:50051",
        "ipv4:127.0.0.1:1, 127.0.0.1:2 ,router-peers.baton.svc:50051",
    };
    static const struct {
        const char *list, *want;
    } bad[] = {
        {"", "no router target"},
        {"127.0.0.1:1,,127.0.0.1:2", "empty entry"},
        {"127.0.0.1", "want host:port"},
        {"router:0", "want host:port"},
        {"router:65536", "want host:port"},
        {"router:http", "want host:port"},
        {"::1:7000", "in brackets"},
        {"[::1]7000", "want [ipv6]:port"},
        {"[nothost]:7000", "is not an IPv6 address"},
        {"ipv4:", "names no address"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        err[0] = '\0';
        if (bt_router_list_check(good[i], err, sizeof(err)) != BT_OK) {
            fail_msg("'%s' refused: %s", good[i], err);
        }
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        assert_int_not_equal(bt_router_list_check(bad[i].list, err, sizeof(err)),
                             BT_OK);
        if (strstr(err, bad[i].want) == NULL) {
            fail_msg("'%s': error '%s' does not say '%s'", bad[i].list, err,
                     bad[i].want);
        }
    }
}

static void test_literals(void **state)
{
    seen_t s;

    (void)state;
    resolve("127.0.0.1:7001,ipv4:127.0.0.1:7000,[::1]:7002,ipv4:127.0.0.1:7001",
            &s);
    assert_int_equal(s.calls, 1);
    assert_int_equal(s.n, 3);   /* sorted, the duplicate once */
    assert_string_equal(s.got[0], "ipv4:127.0.0.1:7000");
    assert_string_equal(s.got[1], "ipv4:127.0.0.1:7001");
    assert_string_equal(s.got[2], "ipv6:[::1]:7002");
    assert_string_equal(s.tls[0], "-");
}

static void test_name(void **state)
{
    seen_t s;

    (void)state;
    /* localhost has an IPv4 address here, often an IPv6 one too: one
     * router, not two; its certificate is checked against the name */
    resolve("localhost:7003", &s);
    assert_int_equal(s.calls, 1);
    assert_int_equal(s.n, 1);
    assert_string_equal(s.got[0], "ipv4:127.0.0.1:7003");
    assert_string_equal(s.tls[0], "localhost");
    /* the same router by name and by address: once */
    resolve("dns:///localhost:7003,ipv4:127.0.0.1:7003", &s);
    assert_int_equal(s.n, 1);
}

static void test_unresolvable(void **state)
{
    seen_t s;

    (void)state;
    /* .invalid never resolves (RFC 6761): the literal still registers */
    resolve("no-such-router.invalid:7000,127.0.0.1:7004", &s);
    assert_int_equal(s.calls, 1);
    assert_int_equal(s.n, 1);
    assert_string_equal(s.got[0], "ipv4:127.0.0.1:7004");
}

/* The walk every --router check shares: entries trimmed, in order; the
 * first refusal stops it with its message. */
typedef struct {
    char   got[4][64];
    size_t n;
} walk_t;

static bt_status_t walk_one(const char *one, void *arg, char *err,
                            size_t err_size)
{
    walk_t *w = arg;

    if (strcmp(one, "stop:1") == 0) {
        snprintf(err, err_size, "refused %s", one);
        return BT_ERR_INVALID_ARG;
    }
    snprintf(w->got[w->n++], sizeof(w->got[0]), "%s", one);
    return BT_OK;
}

static void test_each(void **state)
{
    walk_t w = { .n = 0 };
    char err[128] = "";

    (void)state;
    assert_int_equal(bt_router_list_each(" a:1 ,b:2,  c:3", walk_one, &w, err,
                                         sizeof(err)), BT_OK);
    assert_int_equal(w.n, 3);
    assert_string_equal(w.got[0], "a:1");
    assert_string_equal(w.got[1], "b:2");
    assert_string_equal(w.got[2], "c:3");
    w.n = 0;
    assert_int_equal(bt_router_list_each("a:1, stop:1 ,c:3", walk_one, &w, err,
                                         sizeof(err)), BT_ERR_INVALID_ARG);
    assert_int_equal(w.n, 1);
    assert_string_equal(err, "refused stop:1");
    w.n = 0;
    assert_int_equal(bt_router_list_each("a:1,,c:3", walk_one, &w, err,
                                         sizeof(err)), BT_ERR_INVALID_ARG);
    assert_non_null(strstr(err, "empty entry"));
    assert_int_equal(w.n, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_syntax),
        cmocka_unit_test(test_literals),
        cmocka_unit_test(test_name),
        cmocka_unit_test(test_unresolvable),
        cmocka_unit_test(test_each),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
