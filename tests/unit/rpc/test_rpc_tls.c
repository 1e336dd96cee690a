/* TLS and mTLS with certificates made at test time by the openssl CLI. */
#include "rpc_test.h"

#include "base/loop.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

static char g_dir[64];

static char *path_of(const char *name)
{
    static char bufs[32][128];
    static int next;
    char *p = bufs[next++ % 32];

    snprintf(p, 128, "%s/%s", g_dir, name);
    return p;
}

static int sh(const char *fmt, ...)
{
    char cmd[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    return system(cmd);
}

/* A CA, a server certificate for 127.0.0.1 and a client certificate signed
 * by it, and a second CA nobody trusts. */
static int setup(void **state)
{
    const char *key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";

    (void)state;
    if (sh("command -v openssl >/dev/null 2>&1") != 0) {
        return -1;
    }
    snprintf(g_dir, sizeof(g_dir), "/tmp/bt-rpc-tls-XXXXXX");
    if (mkdtemp(g_dir) == NULL) {
        return -1;
    }
    if (sh("cd %s && printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' > san.ext"
           " && openssl req -x509 %s -keyout ca.key -out ca.pem -days 2 "
           "-subj /CN=baton-test-ca 2>/dev/null"
           " && openssl req %s -keyout srv.key -out srv.csr -subj /CN=localhost 2>/dev/null"
           " && openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key "
           "-CAcreateserial -out srv.pem -days 2 -extfile san.ext 2>/dev/null"
           " && openssl req %s -keyout cli.key -out cli.csr -subj /CN=baton-client 2>/dev/null"
           " && openssl x509 -req -in cli.csr -CA ca.pem -CAkey ca.key "
           "-CAcreateserial -out cli.pem -days 2 2>/dev/null"
           " && openssl req -x509 %s -keyout other.key -out other.pem -days 2 "
           "-subj /CN=other-ca 2>/dev/null",
           g_dir, key, key, key, key) != 0) {
        fprintf(stderr, "# openssl failed\n");
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    if (g_dir[0] != '\0') {
        sh("rm -rf %s", g_dir);
    }
    return 0;
}

static bt_rpc_code_t call_once(bt_rpc_fixture_t *fx)
{
    bt_rpc_unary_out_t out;

    bt_rpc_test_tokenize(fx, "tls", 3000, NULL, 0, &out);
    if (out.code == BT_RPC_OK) {
        assert_int_equal(out.n_ids, 3);
    }
    return out.code;
}

static void test_tls(void **state)
{
    bt_rpc_tls_t srv = { path_of("srv.pem"), path_of("srv.key"), NULL, NULL };
    bt_rpc_tls_t cli = { NULL, NULL, path_of("ca.pem"), NULL };
    bt_rpc_tls_t wrong = { NULL, NULL, path_of("other.pem"), NULL };
    bt_rpc_fixture_t fx;
    bt_rpc_channel_t *ch;

    (void)state;
    bt_rpc_fixture_up(&fx, 0, &srv, &cli);
    assert_int_equal(call_once(&fx), BT_RPC_OK);

    /* A client that trusts another CA, and a plaintext client, fail. */
    ch = fx.ch;
    fx.ch = bt_rpc_channel_create(fx.cli, fx.target, &wrong);
    assert_non_null(fx.ch);
    assert_int_equal(call_once(&fx), BT_RPC_UNAVAILABLE);
    bt_rpc_channel_destroy(fx.ch);
    fx.ch = bt_rpc_channel_create(fx.cli, fx.target, NULL);
    assert_int_not_equal(call_once(&fx), BT_RPC_OK);
    bt_rpc_channel_destroy(fx.ch);
    fx.ch = ch;
    bt_rpc_fixture_down(&fx);
}

static void test_mtls(void **state)
{
    bt_rpc_tls_t srv = { path_of("srv.pem"), path_of("srv.key"),
                         path_of("ca.pem"), NULL };
    bt_rpc_tls_t cli = { path_of("cli.pem"), path_of("cli.key"),
                         path_of("ca.pem"), NULL };
    bt_rpc_tls_t nocert = { NULL, NULL, path_of("ca.pem"), NULL };
    bt_rpc_tls_t selfsigned = { path_of("other.pem"), path_of("other.key"),
                                path_of("ca.pem"), NULL };
    bt_rpc_fixture_t fx;
    bt_rpc_channel_t *ch;

    (void)state;
    bt_rpc_fixture_up(&fx, 0, &srv, &cli);
    assert_int_equal(call_once(&fx), BT_RPC_OK);
    ch = fx.ch;
    fx.ch = bt_rpc_channel_create(fx.cli, fx.target, &nocert);
    assert_int_equal(call_once(&fx), BT_RPC_UNAVAILABLE);
    bt_rpc_channel_destroy(fx.ch);
    fx.ch = bt_rpc_channel_create(fx.cli, fx.target, &selfsigned);
    assert_int_equal(call_once(&fx), BT_RPC_UNAVAILABLE);
    bt_rpc_channel_destroy(fx.ch);
    fx.ch = ch;
    bt_rpc_fixture_down(&fx);
}

static void test_bad_files(void **state)
{
    struct event_base *base = bt_loop_create();
    bt_rpc_server_t *srv = bt_rpc_server_create(base, NULL);
    bt_rpc_client_t *cli = bt_rpc_client_create(base, NULL);
    bt_rpc_tls_t missing = { path_of("nope.pem"), path_of("srv.key"), NULL,
                             NULL };
    bt_rpc_tls_t nokey = { path_of("srv.pem"), NULL, NULL, NULL };
    bt_rpc_tls_t halfpair = { path_of("cli.pem"), NULL, path_of("ca.pem"),
                              NULL };

    (void)state;
    assert_int_not_equal(bt_rpc_server_listen(srv, "ipv4:127.0.0.1:0",
                                              &missing, NULL), BT_OK);
    assert_int_not_equal(bt_rpc_server_listen(srv, "ipv4:127.0.0.1:0", &nokey,
                                              NULL), BT_OK);
    assert_null(bt_rpc_channel_create(cli, "ipv4:127.0.0.1:1", &missing));
    assert_null(bt_rpc_channel_create(cli, "ipv4:127.0.0.1:1", &halfpair));
    bt_rpc_client_destroy(cli);
    bt_rpc_server_destroy(srv);
    event_base_free(base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tls),
        cmocka_unit_test(test_mtls),
        cmocka_unit_test(test_bad_files),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
