/* Cluster token files and the method policy (common/rpc/auth.c): the
 * formats, what each token grants, refusals of bad files, the policy
 * table. The servers' admission runs on real processes in
 * tests/integration/auth_cluster.py. */
#include "rpc/auth.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#define TOK_P "prefill-token-0123456789abcdef"
#define TOK_R "router-token-0123456789abcdef"
/* sha256("router-token-0123456789abcdef") */
static char router_hash[65];

static char path[64];

static void put(const char *text, mode_t mode)
{
    FILE *f = fopen(path, "w");

    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    assert_int_equal(chmod(path, mode), 0);
}

static bt_rpc_auth_t *load_ok(const char *text)
{
    bt_rpc_auth_t *a = NULL;
    char err[256] = "";

    put(text, 0600);
    assert_int_equal(bt_rpc_auth_load(path, &a, err, sizeof(err)), BT_OK);
    assert_non_null(a);
    return a;
}

static void load_bad(const char *text, mode_t mode, const char *want)
{
    bt_rpc_auth_t *a = NULL;
    char err[256] = "";

    put(text, mode);
    assert_int_equal(bt_rpc_auth_load(path, &a, err, sizeof(err)),
                     BT_ERR_INVALID_ARG);
    assert_null(a);
    if (strstr(err, want) == NULL || strstr(err, TOK_P) != NULL) {
        fail_msg("error '%s' lacks '%s' or shows the token", err, want);
    }
}

static int setup(void **state)
{
    FILE *p;

    (void)state;
    snprintf(path, sizeof(path), "/tmp/bt-auth-XXXXXX");
    int fd = mkstemp(path);
    if (fd < 0) {
        return -1;
    }
    close(fd);
    p = popen("printf %s '" TOK_R "' | sha256sum", "r");
    if (p == NULL || fgets(router_hash, sizeof(router_hash), p) == NULL) {
        return -1;
    }
    pclose(p);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    unlink(path);
    return 0;
}

static void test_self_and_accept(void **state)
{
    char text[512];
    bt_rpc_auth_t *a;

    (void)state;
    snprintf(text, sizeof(text), "# a prefill node\n\nself prefill " TOK_P
             "\naccept router sha256:%s  # by digest\naccept kvstore,decode "
             "clear-token-for-kv-and-dec\n", router_hash);
    a = load_ok(text);
    assert_string_equal(bt_rpc_auth_token(a), TOK_P);
    assert_int_equal(bt_rpc_auth_self_roles(a), BT_RPC_ROLE_PREFILL);
    assert_int_equal(bt_rpc_auth_token_roles(a, TOK_P), BT_RPC_ROLE_PREFILL);
    assert_int_equal(bt_rpc_auth_token_roles(a, TOK_R), BT_RPC_ROLE_ROUTER);
    assert_int_equal(bt_rpc_auth_token_roles(a, "clear-token-for-kv-and-dec"),
                     BT_RPC_ROLE_KVSTORE | BT_RPC_ROLE_DECODE);
    /* a prefix, a longer token, another one, nothing: no role */
    assert_int_equal(bt_rpc_auth_token_roles(a, "prefill-token-0123"), 0);
    assert_int_equal(bt_rpc_auth_token_roles(a, TOK_P "x"), 0);
    assert_int_equal(bt_rpc_auth_token_roles(a, router_hash), 0);
    assert_int_equal(bt_rpc_auth_token_roles(a, ""), 0);
    assert_int_equal(bt_rpc_auth_token_roles(a, NULL), 0);
    bt_rpc_auth_destroy(a);
}

static void test_bare_and_accept_only(void **state)
{
    bt_rpc_auth_t *a;

    (void)state;
    a = load_ok("  " TOK_P "  \n");
    assert_string_equal(bt_rpc_auth_token(a), TOK_P);
    assert_int_equal(bt_rpc_auth_token_roles(a, TOK_P), BT_RPC_ROLES_ALL);
    bt_rpc_auth_destroy(a);
    /* a verifier only: admits, sends nothing */
    a = load_ok("accept router " TOK_R "\n");
    assert_null(bt_rpc_auth_token(a));
    assert_int_equal(bt_rpc_auth_token_roles(a, TOK_R), BT_RPC_ROLE_ROUTER);
    bt_rpc_auth_destroy(a);
}

static void test_bad_files(void **state)
{
    bt_rpc_auth_t *a = NULL;
    char err[256];

    (void)state;
    load_bad(TOK_P "\n", 0604, "readable by every user");
    load_bad("", 0600, "not a regular file of 1 byte");
    load_bad("# only a comment\n", 0600, "no token in it");
    load_bad("self prefill short\n", 0600, ":1: the token must be 16");
    load_bad("self prefill " TOK_P " extra\n", 0600, ":1: expected");
    load_bad("self prefill,,decode " TOK_P "\n", 0600, ":1: roles must be");
    load_bad("self prefill, " TOK_P "\n", 0600, ":1: roles must be");
    load_bad("grant prefill " TOK_P "\n", 0600, ":1: expected");
    load_bad("\nself prefill " TOK_P "\nself decode " TOK_P "\n", 0600,
             ":3: a second \"self\" line");
    load_bad("accept router sha256:00ff\n", 0600, "sha256: needs 64 hex");
    load_bad(TOK_P "\n" TOK_R "\n", 0600, "a bare token must be alone");
    load_bad("self prefill prefill-token-with-\x01-control\n", 0600,
             "printable");
    assert_int_equal(bt_rpc_auth_load("/nonexistent/t", &a, err, sizeof(err)),
                     BT_ERR_INVALID_ARG);
    assert_non_null(strstr(err, "No such file"));
}

static void test_policy(void **state)
{
    char buf[64];

    (void)state;
    assert_int_equal(bt_rpc_auth_method_roles("/baton.v1.Decode/DecodeStream"),
                     BT_RPC_ROLE_ROUTER);
    assert_int_equal(bt_rpc_auth_method_roles("/baton.v1.Prefill/Prefill"),
                     BT_RPC_ROLE_ROUTER);
    assert_int_equal(bt_rpc_auth_method_roles("/baton.v1.Registry/Register"),
                     BT_RPC_ROLE_PREFILL | BT_RPC_ROLE_DECODE |
                     BT_RPC_ROLE_KVSTORE);
    assert_int_equal(bt_rpc_auth_method_roles("/baton.v1.KvStore/Commit") &
                     BT_RPC_ROLE_KVSTORE, 0);
    /* a node reports statistics and reads plans, only the router re-plans */
    assert_int_equal(bt_rpc_auth_method_roles("/baton.v1.KvStore/ReportExpertStats") &
                     BT_RPC_ROLE_DECODE, BT_RPC_ROLE_DECODE);
    assert_int_equal(bt_rpc_auth_method_roles("/baton.v1.KvStore/Rebalance"),
                     BT_RPC_ROLE_ROUTER);
    /* client-facing and probes: not the control plane */
    assert_int_equal(bt_rpc_auth_method_roles("/baton.v1.Generate/Generate"), 0);
    assert_int_equal(bt_rpc_auth_method_roles("/baton.v1.Admin/Drain"), 0);
    assert_int_equal(bt_rpc_auth_method_roles("/grpc.health.v1.Health/Check"), 0);
    assert_string_equal(bt_rpc_roles_str(BT_RPC_ROLE_PREFILL | BT_RPC_ROLE_DECODE,
                                         buf, sizeof(buf)), "prefill,decode");
    assert_string_equal(bt_rpc_roles_str(0, buf, sizeof(buf)), "none");
    assert_int_equal(bt_rpc_role_parse("kvstore", 7), BT_RPC_ROLE_KVSTORE);
    assert_int_equal(bt_rpc_role_parse("kvstor", 6), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_self_and_accept),
        cmocka_unit_test(test_bare_and_accept_only),
        cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_policy),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
