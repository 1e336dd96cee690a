#include "base/json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

static json_t *parse_ok(const char *text)
{
    char err[BT_JSON_ERR_SIZE];
    json_t *root = NULL;

    assert_int_equal(bt_json_parse(text, strlen(text), 1 << 20, &root, err,
                                   sizeof(err)), BT_OK);
    return root;
}

static void test_typed_getters(void **state)
{
    json_t *root = parse_ok("{\"model\":\"m\",\"max_tokens\":16,\"temperature\":0.7,"
                            "\"stream\":true,\"stop\":[\"a\"],\"meta\":{}}");
    char err[BT_JSON_ERR_SIZE];
    const char *s = NULL;
    int64_t i = -1;
    double d = -1;
    bool b = false;
    json_t *arr, *obj;

    (void)state;
    assert_int_equal(bt_json_get_string(root, "model", true, &s, err, sizeof(err)), BT_OK);
    assert_string_equal(s, "m");
    assert_int_equal(bt_json_get_int(root, "max_tokens", true, 1, 4096, &i, err, sizeof(err)), BT_OK);
    assert_int_equal(i, 16);
    assert_int_equal(bt_json_get_number(root, "temperature", true, 0, 2, &d, err, sizeof(err)), BT_OK);
    assert_true(d == 0.7);
    /* an integer is a number too */
    assert_int_equal(bt_json_get_number(root, "max_tokens", true, 0, 100, &d, err, sizeof(err)), BT_OK);
    assert_int_equal(bt_json_get_bool(root, "stream", true, &b, err, sizeof(err)), BT_OK);
    assert_true(b);
    assert_int_equal(bt_json_get_array(root, "stop", true, &arr, err, sizeof(err)), BT_OK);
    assert_int_equal(json_array_size(arr), 1);
    assert_int_equal(bt_json_get_object(root, "meta", true, &obj, err, sizeof(err)), BT_OK);
    json_decref(root);
}

static void test_precise_errors(void **state)
{
    json_t *root = parse_ok("{\"max_tokens\":\"16\",\"n\":0,\"t\":9.5}");
    char err[BT_JSON_ERR_SIZE];
    int64_t i = 77;
    double d;
    const char *s = "default";
    static const char *const allowed[] = { "max_tokens", "n", NULL };

    (void)state;
    assert_int_equal(bt_json_get_int(root, "max_tokens", true, 1, 10, &i, err, sizeof(err)),
                     BT_ERR_INVALID_ARG);
    assert_string_equal(err, "field 'max_tokens': expected an integer, got a string");
    assert_int_equal(bt_json_get_int(root, "n", true, 1, 10, &i, err, sizeof(err)),
                     BT_ERR_INVALID_ARG);
    assert_string_equal(err, "field 'n': 0 is out of range [1, 10]");
    assert_int_equal(i, 77); /* untouched on error */
    assert_int_equal(bt_json_get_number(root, "t", true, 0, 2, &d, err, sizeof(err)),
                     BT_ERR_INVALID_ARG);
    assert_int_equal(bt_json_get_string(root, "model", false, &s, err, sizeof(err)),
                     BT_ERR_NOT_FOUND);
    assert_string_equal(s, "default");
    assert_int_equal(bt_json_get_string(root, "model", true, &s, err, sizeof(err)),
                     BT_ERR_INVALID_ARG);
    assert_string_equal(err, "missing required field 'model'");
    assert_int_equal(bt_json_check_keys(root, allowed, err, sizeof(err)), BT_ERR_INVALID_ARG);
    assert_string_equal(err, "unknown field 't'");
    json_decref(root);
}

static void test_rejects_bad_input(void **state)
{
    static const char *const bad[] = {
        "{\"a\":1",             /* truncated */
        "{\"a\":1} x",          /* trailing garbage */
        "{\"a\":1,\"a\":2}",    /* duplicate key */
        "{\"a\":\"\xff\xfe\"}", /* invalid UTF-8 */
        "{\"a\":\"\\u0000\"}",  /* NUL inside a string */
        "",
    };
    char err[BT_JSON_ERR_SIZE];
    json_t *root = NULL;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(bt_json_parse(bad[i], strlen(bad[i]), 1024, &root, err,
                                       sizeof(err)), BT_ERR_INVALID_ARG);
        assert_non_null(strstr(err, "malformed json"));
    }
    assert_int_equal(bt_json_parse("[1,2,3]", 7, 6, &root, err, sizeof(err)),
                     BT_ERR_TOO_LARGE);
    /* embedded NUL byte in the buffer itself */
    assert_int_equal(bt_json_parse("{\"a\":1}\0{}", 10, 1024, &root, err, sizeof(err)),
                     BT_ERR_INVALID_ARG);
}

static void test_dump_and_file(void **state)
{
    json_t *root = parse_ok("{\"b\":1,\"a\":[true,null,\"x\"]}");
    char path[] = "/tmp/bt_json_testXXXXXX";
    char err[BT_JSON_ERR_SIZE];
    json_t *again = NULL;
    char *text;
    int fd;

    (void)state;
    text = bt_json_dump(root);
    assert_string_equal(text, "{\"b\":1,\"a\":[true,null,\"x\"]}");
    fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    assert_int_equal(bt_json_load_file(path, 1024, &again, err, sizeof(err)), BT_OK);
    assert_true(json_equal(root, again));
    json_decref(again);
    assert_int_equal(bt_json_load_file(path, 4, &again, err, sizeof(err)), BT_ERR_TOO_LARGE);
    unlink(path);
    assert_int_equal(bt_json_load_file(path, 1024, &again, err, sizeof(err)), BT_ERR_NOT_FOUND);
    assert_non_null(strstr(err, path));
    free(text);
    json_decref(root);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_typed_getters),
        cmocka_unit_test(test_precise_errors),
        cmocka_unit_test(test_rejects_bad_input),
        cmocka_unit_test(test_dump_and_file),
    };

    return cmocka_run_group_tests_name("json", tests, NULL, NULL);
}
