/* Listen addresses and targets from host + port (rpc/addr.h). */
#include "rpc/addr.h"

#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

static void test_forms(void **state)
{
    char out[128];

    (void)state;
    bt_rpc_hostport(out, sizeof(out), "127.0.0.1", 50051);
    assert_string_equal(out, "127.0.0.1:50051");
    bt_rpc_hostport(out, sizeof(out), "::1", 0);
    assert_string_equal(out, "[::1]:0");
    bt_rpc_hostport(out, sizeof(out), "[fe80::1]", 7);
    assert_string_equal(out, "[fe80::1]:7");
    bt_rpc_hostport(out, sizeof(out), "router.baton", 80);
    assert_string_equal(out, "router.baton:80");
    bt_rpc_target(out, sizeof(out), "10.0.0.5", 7001);
    assert_string_equal(out, "ipv4:10.0.0.5:7001");
    bt_rpc_target(out, sizeof(out), "::1", 7001);
    assert_string_equal(out, "ipv6:[::1]:7001");
    bt_rpc_target(out, sizeof(out), "[::1]", 7001);
    assert_string_equal(out, "ipv6:[::1]:7001");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forms),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
