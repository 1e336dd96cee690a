#include "base/log.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

/* Captures what the logger writes through a pipe. */
static int pipe_fds[2];

static int setup(void **state)
{
    (void)state;
    if (pipe(pipe_fds) != 0) {
        return -1;
    }
    bt_log_set_fd(pipe_fds[1]);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    bt_log_set_fd(2);
    close(pipe_fds[0]);
    close(pipe_fds[1]);
    return 0;
}

static size_t drain(char *out, size_t size)
{
    ssize_t n;

    close(pipe_fds[1]);
    n = read(pipe_fds[0], out, size - 1);
    out[n > 0 ? n : 0] = '\0';
    close(pipe_fds[0]);
    assert_int_equal(pipe(pipe_fds), 0);
    bt_log_set_fd(pipe_fds[1]);
    return n > 0 ? (size_t)n : 0;
}

static int calls;

static const char *counted(void)
{
    calls++;
    return "x";
}

static void test_level_filter_skips_arguments(void **state)
{
    char out[8192];

    (void)state;
    bt_log_init("test", BT_LOG_LEVEL_WARN, BT_LOG_FORMAT_TEXT);
    calls = 0;
    bt_info("not shown %s", counted());
    bt_debug("not shown %s", counted());
    assert_int_equal(calls, 0); /* disabled level: arguments not evaluated */
    bt_warn("shown %s", counted());
    assert_int_equal(calls, 1);
    drain(out, sizeof(out));
    assert_non_null(strstr(out, "warn"));
    assert_non_null(strstr(out, "shown x"));
    assert_null(strstr(out, "not shown"));
}

static void test_text_line_has_request_id(void **state)
{
    char out[8192];

    (void)state;
    bt_log_init("router", BT_LOG_LEVEL_INFO, BT_LOG_FORMAT_TEXT);
    BT_LOG_REQ(INFO, "req-42", "admitted tokens %d", 17);
    drain(out, sizeof(out));
    assert_non_null(strstr(out, " info  router req=req-42 admitted tokens 17\n"));
    assert_int_equal(strchr(out, '\n') - out + 1, (long)strlen(out)); /* one line */
}

static void test_errno_text(void **state)
{
    char out[8192];

    (void)state;
    bt_log_init("t", BT_LOG_LEVEL_INFO, BT_LOG_FORMAT_TEXT);
    errno = ENOENT;
    bt_error("open %s: %s (100%% sure)", "/nope", bt_strerror(errno));
    assert_int_equal(errno, ENOENT); /* logging preserves errno */
    drain(out, sizeof(out));
    assert_non_null(strstr(out, "open /nope: No such file or directory (100% sure)"));
}

static void test_json_lines_parse(void **state)
{
    char out[8192];
    json_t *root;
    json_error_t jerr;

    (void)state;
    bt_log_init("decode", BT_LOG_LEVEL_INFO, BT_LOG_FORMAT_JSON);
    BT_LOG_REQ(WARN, "r\"1", "quote \" backslash \\ newline \n tab \t ctl \x01 end");
    drain(out, sizeof(out));
    assert_int_equal(out[strlen(out) - 1], '\n');
    root = json_loads(out, 0, &jerr);
    assert_non_null(root);
    assert_string_equal(json_string_value(json_object_get(root, "level")), "warn");
    assert_string_equal(json_string_value(json_object_get(root, "component")), "decode");
    assert_string_equal(json_string_value(json_object_get(root, "req")), "r\"1");
    assert_string_equal(json_string_value(json_object_get(root, "msg")),
                        "quote \" backslash \\ newline \n tab \t ctl \x01 end");
    json_decref(root);
    bt_log_init("t", BT_LOG_LEVEL_INFO, BT_LOG_FORMAT_TEXT);
}

static void test_long_line_is_cut_not_overflowed(void **state)
{
    char big[20000];
    char out[16384];
    json_t *root;

    (void)state;
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    bt_log_init("t", BT_LOG_LEVEL_INFO, BT_LOG_FORMAT_JSON);
    bt_info("%s", big);
    drain(out, sizeof(out));
    assert_true(strlen(out) < 8192);
    root = json_loads(out, 0, NULL); /* still one valid JSON object */
    assert_non_null(root);
    json_decref(root);
    bt_log_init("t", BT_LOG_LEVEL_INFO, BT_LOG_FORMAT_TEXT);
}

static void test_level_names(void **state)
{
    bt_log_level_t level;

    (void)state;
    assert_true(bt_log_level_parse("debug", &level));
    assert_int_equal(level, BT_LOG_LEVEL_DEBUG);
    assert_false(bt_log_level_parse("loud", &level));
    assert_string_equal(bt_log_level_name(BT_LOG_LEVEL_ERROR), "error");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_level_filter_skips_arguments),
        cmocka_unit_test(test_text_line_has_request_id),
        cmocka_unit_test(test_errno_text),
        cmocka_unit_test(test_json_lines_parse),
        cmocka_unit_test(test_long_line_is_cut_not_overflowed),
        cmocka_unit_test(test_level_names),
    };

    return cmocka_run_group_tests_name("log", tests, setup, teardown);
}
