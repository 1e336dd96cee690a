/* TLS flags: loopback detection, combinations, file checks, the plaintext
 * policy (common/rpc/tls_cfg.c). No network, no openssl: the PEM files are
 * written by hand (only their headers are checked here). */
#include "rpc/tls_cfg.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

static char dir[64], cert[128], key[128], ca[128], empty[128];

static void put(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");

    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/bt-tls-cfg-XXXXXX");
    if (mkdtemp(dir) == NULL) {
        return -1;
    }
    snprintf(cert, sizeof(cert), "%s/c.pem", dir);
    snprintf(key, sizeof(key), "%s/k.pem", dir);
    snprintf(ca, sizeof(ca), "%s/ca.pem", dir);
    snprintf(empty, sizeof(empty), "%s/empty.pem", dir);
    put(cert, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
    put(ca, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
    put(key, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n");
    put(empty, "");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    unlink(cert);
    unlink(key);
    unlink(ca);
    unlink(empty);
    rmdir(dir);
    return 0;
}

static void test_loopback(void **state)
{
    static const char *const yes[] = {
        "127.0.0.1", "127.1.2.3", "localhost", "LOCALHOST", "::1", "[::1]:50051",
        "127.0.0.1:50051", "ipv4:127.0.0.1:50051", "ipv6:[::1]:7000",
        "dns:localhost:50051", "dns:///localhost:50051",
        "dns://8.8.8.8/localhost:1", "unix:/tmp/x.sock", "unix-abstract:x",
    };
    static const char *const no[] = {
        "0.0.0.0", "::", "[::]:50051", "10.0.0.1", "10.0.0.1:50051",
        "ipv4:192.168.1.2:1", "dns:baton-router-internal:50051",
        "dns:///router.example:443", "router:50051", "128.0.0.1", "",
        "ipv6:[::2]:1", "[::1", "dns://nohost", "localhost.evil.com:1",
    };

    (void)state;
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        if (!bt_rpc_addr_is_loopback(yes[i])) {
            fail_msg("%s should be loopback", yes[i]);
        }
    }
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
        if (bt_rpc_addr_is_loopback(no[i])) {
            fail_msg("%s should not be loopback", no[i]);
        }
    }
    assert_false(bt_rpc_addr_is_loopback(NULL));
}

/* Expects bt_rpc_tls_cfg_check to fail with `want` in the message. */
static void check_bad(bt_rpc_tls_cfg_t c, bool serves, const char *want)
{
    char err[512] = "";

    assert_int_equal(bt_rpc_tls_cfg_check(&c, serves, err, sizeof(err)),
                     BT_ERR_INVALID_ARG);
    if (strstr(err, want) == NULL) {
        fail_msg("error '%s' lacks '%s'", err, want);
    }
    assert_false(c.enabled);
    assert_null(bt_rpc_tls_cfg_client(&c));
    assert_null(strchr(err, '\n'));
}

static void test_combinations(void **state)
{
    bt_rpc_tls_cfg_t c;
    char err[512];

    (void)state;
    /* nothing: plaintext */
    memset(&c, 0, sizeof(c));
    assert_int_equal(bt_rpc_tls_cfg_check(&c, true, err, sizeof(err)), BT_OK);
    assert_false(c.enabled);
    assert_null(bt_rpc_tls_cfg_server(&c));

    check_bad((bt_rpc_tls_cfg_t){ .cert_file = cert }, true,
              "--tls-cert and --tls-key go together (--tls-key is missing)");
    check_bad((bt_rpc_tls_cfg_t){ .key_file = key }, false,
              "(--tls-cert is missing)");
    check_bad((bt_rpc_tls_cfg_t){ .ca_file = ca }, true,
              "tls needs --tls-cert and --tls-key");
    check_bad((bt_rpc_tls_cfg_t){ .cert_file = cert, .key_file = key,
                                  .insecure = true }, true,
              "--insecure contradicts");
    check_bad((bt_rpc_tls_cfg_t){ .cert_file = cert, .key_file = key,
                                  .client_key_file = key }, true,
              "--tls-client-cert and --tls-client-key go together");
    check_bad((bt_rpc_tls_cfg_t){ .cert_file = cert, .key_file = key,
                                  .server_name = "" }, true,
              "--tls-server-name is empty");
    check_bad((bt_rpc_tls_cfg_t){ .cert_file = "/nonexistent/c.pem",
                                  .key_file = key }, true,
              "--tls-cert /nonexistent/c.pem: No such file or directory");
    check_bad((bt_rpc_tls_cfg_t){ .cert_file = key, .key_file = key }, true,
              "no PEM certificate in it");
    check_bad((bt_rpc_tls_cfg_t){ .cert_file = cert, .key_file = cert }, true,
              "no PEM private key in it");
    check_bad((bt_rpc_tls_cfg_t){ .cert_file = cert, .key_file = key,
                                  .ca_file = empty }, true, ": empty");
    check_bad((bt_rpc_tls_cfg_t){ .cert_file = cert, .key_file = key,
                                  .ca_file = dir }, true, "not a regular file");

    /* daemon: one certificate both ways, the CA on both sides */
    c = (bt_rpc_tls_cfg_t){ .cert_file = cert, .key_file = key, .ca_file = ca,
                            .server_name = "baton-cluster" };
    assert_int_equal(bt_rpc_tls_cfg_check(&c, true, err, sizeof(err)), BT_OK);
    assert_true(c.enabled);
    assert_string_equal(bt_rpc_tls_cfg_server(&c)->cert_file, cert);
    assert_string_equal(bt_rpc_tls_cfg_server(&c)->ca_file, ca);
    assert_null(bt_rpc_tls_cfg_server(&c)->target_name);
    assert_string_equal(bt_rpc_tls_cfg_client(&c)->cert_file, cert);
    assert_string_equal(bt_rpc_tls_cfg_client(&c)->key_file, key);
    assert_string_equal(bt_rpc_tls_cfg_client(&c)->target_name, "baton-cluster");

    /* a separate client certificate */
    c = (bt_rpc_tls_cfg_t){ .cert_file = cert, .key_file = key,
                            .client_cert_file = ca, .client_key_file = key };
    assert_int_equal(bt_rpc_tls_cfg_check(&c, true, err, sizeof(err)), BT_OK);
    assert_string_equal(bt_rpc_tls_cfg_client(&c)->cert_file, ca);
    assert_null(bt_rpc_tls_cfg_client(&c)->ca_file);

    /* client only: a CA alone turns TLS on, no certificate needed */
    c = (bt_rpc_tls_cfg_t){ .ca_file = ca };
    assert_int_equal(bt_rpc_tls_cfg_check(&c, false, err, sizeof(err)), BT_OK);
    assert_true(c.enabled);
    assert_null(bt_rpc_tls_cfg_client(&c)->cert_file);
}

static void test_plain_policy(void **state)
{
    bt_rpc_tls_cfg_t c;
    char err[512] = "";

    (void)state;
    memset(&c, 0, sizeof(c));
    assert_int_equal(bt_rpc_tls_cfg_check(&c, true, err, sizeof(err)), BT_OK);
    assert_int_equal(bt_rpc_tls_cfg_plain_check(&c, "127.0.0.1", "listen", err,
                                                sizeof(err)), BT_OK);
    assert_int_equal(bt_rpc_tls_cfg_plain_check(&c, "0.0.0.0", "listen", err,
                                                sizeof(err)), BT_ERR_PERMISSION);
    assert_string_equal(err, "--listen 0.0.0.0 is not a loopback address: "
                        "plaintext gRPC there needs --insecure (or turn on "
                        "TLS with the --tls-* options)");
    c.insecure = true;
    assert_int_equal(bt_rpc_tls_cfg_plain_check(&c, "0.0.0.0", "listen", err,
                                                sizeof(err)), BT_OK);
    c = (bt_rpc_tls_cfg_t){ .cert_file = cert, .key_file = key };
    assert_int_equal(bt_rpc_tls_cfg_check(&c, true, err, sizeof(err)), BT_OK);
    assert_int_equal(bt_rpc_tls_cfg_plain_check(&c, "dns:router:50051", "router",
                                                err, sizeof(err)), BT_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_loopback),
        cmocka_unit_test(test_combinations),
        cmocka_unit_test(test_plain_policy),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
