#include "base/status.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

static void test_every_code_has_text_and_name(void **state)
{
    static const bt_status_t codes[] = {
        BT_OK, BT_IN_PROGRESS, BT_ERR_INVALID_ARG, BT_ERR_NOT_FOUND,
        BT_ERR_TOO_LARGE, BT_ERR_TIMED_OUT, BT_ERR_CANCELLED,
        BT_ERR_UNSUPPORTED, BT_ERR_EXHAUSTED, BT_ERR_CORRUPT,
        BT_ERR_PERMISSION, BT_ERR_EXISTS, BT_ERR_TRUNCATED,
        BT_ERR_PEER_UNREACHABLE, BT_ERR_PEER_DIED, BT_ERR_PEER_PROTOCOL,
        BT_ERR_PEER_REJECTED, BT_ERR_NO_MEMORY, BT_ERR_IO, BT_ERR_INTERNAL,
        BT_ERR_SHUTDOWN,
    };
    size_t i, j;

    (void)state;
    for (i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        assert_non_null(bt_status_str(codes[i]));
        assert_string_not_equal(bt_status_name(codes[i]), "BT_STATUS_UNKNOWN");
        for (j = 0; j < i; j++) { /* texts are distinct */
            assert_string_not_equal(bt_status_str(codes[i]),
                                    bt_status_str(codes[j]));
        }
    }
    assert_string_equal(bt_status_str(BT_ERR_NOT_FOUND), "not found");
    assert_string_equal(bt_status_name(BT_ERR_PEER_DIED), "BT_ERR_PEER_DIED");
}

static void test_groups(void **state)
{
    (void)state;
    assert_true(bt_status_is_request_err(BT_ERR_TIMED_OUT));
    assert_false(bt_status_is_peer_err(BT_ERR_TIMED_OUT));
    assert_true(bt_status_is_peer_err(BT_ERR_PEER_DIED));
    assert_false(bt_status_is_node_err(BT_ERR_PEER_DIED));
    assert_true(bt_status_is_node_err(BT_ERR_NO_MEMORY));
    assert_false(bt_status_is_request_err(BT_OK));
    assert_false(bt_status_is_request_err(BT_IN_PROGRESS));
}

static void test_unknown_codes(void **state)
{
    (void)state;
    assert_string_equal(bt_status_str((bt_status_t)-50), "unknown request error");
    assert_string_equal(bt_status_str((bt_status_t)-150), "unknown peer error");
    assert_string_equal(bt_status_str((bt_status_t)-250), "unknown node error");
    assert_string_equal(bt_status_str((bt_status_t)-9999), "unknown status");
    assert_string_equal(bt_status_name((bt_status_t)-9999), "BT_STATUS_UNKNOWN");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_code_has_text_and_name),
        cmocka_unit_test(test_groups),
        cmocka_unit_test(test_unknown_codes),
    };

    return cmocka_run_group_tests_name("status", tests, NULL, NULL);
}
