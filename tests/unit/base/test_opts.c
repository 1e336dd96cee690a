#include "base/opts.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

typedef struct {
    int64_t     port;
    double      weight;
    const char *model;
    uint64_t    pool;
    int64_t     lease_ms;
    int         format;
    bool        colocated;
} cfg_t;

static const bt_opt_t table[] = {
    { "port", 'p', NULL, "8080", "port to listen on", BT_OPT_INT, 1, 65535,
      NULL, offsetof(cfg_t, port) },
    { "weight", 0, NULL, "0.5", "score weight", BT_OPT_DOUBLE, 0, 1, NULL,
      offsetof(cfg_t, weight) },
    { "model", 'm', "BATON_TEST_MODEL_DIR", NULL, "model folder", BT_OPT_STRING,
      0, 0, NULL, offsetof(cfg_t, model) },
    { "kv-pool", 0, NULL, "64M", "kv pool size", BT_OPT_SIZE, 0, 0, NULL,
      offsetof(cfg_t, pool) },
    { "lease", 0, NULL, "30s", "lease expiry", BT_OPT_DURATION, 1, 3600000,
      NULL, offsetof(cfg_t, lease_ms) },
    { "log-format", 0, NULL, "text", "log format", BT_OPT_ENUM, 0, 0,
      "text|json", offsetof(cfg_t, format) },
    { "colocated", 0, NULL, "false", "one process", BT_OPT_BOOL, 0, 0, NULL,
      offsetof(cfg_t, colocated) },
};

static const bt_opts_spec_t spec = {
    "baton-test", "[OPTIONS] [FILE...]", "a test program", table,
    BT_OPTS_COUNT(table),
};

static bt_status_t parse(cfg_t *cfg, int argc, const char **argv, int *first,
                         char *err)
{
    memset(cfg, 0, sizeof(*cfg));
    return bt_opts_parse(&spec, cfg, argc, (char **)argv, first, err, 256);
}

static int clear_env(void **state)
{
    (void)state;
    unsetenv("BATON_PORT");
    unsetenv("BATON_KV_POOL");
    unsetenv("BATON_TEST_MODEL_DIR");
    unsetenv("BATON_COLOCATED");
    unsetenv("BATON_LEASE");
    return 0;
}

static void test_defaults(void **state)
{
    const char *argv[] = { "prog" };
    char err[256];
    cfg_t cfg;
    int first;

    (void)state;
    assert_int_equal(parse(&cfg, 1, argv, &first, err), BT_OK);
    assert_int_equal(cfg.port, 8080);
    assert_true(cfg.weight == 0.5);
    assert_null(cfg.model);
    assert_int_equal(cfg.pool, 64ull << 20);
    assert_int_equal(cfg.lease_ms, 30000);
    assert_int_equal(cfg.format, 0);
    assert_false(cfg.colocated);
    assert_int_equal(first, 1);
}

static void test_env_then_flag_precedence(void **state)
{
    const char *argv1[] = { "prog" };
    const char *argv2[] = { "prog", "--port=9000", "-m", "/m2", "file1",
                            "--colocated", "--kv-pool", "1.5GiB", "file2" };
    char err[256];
    cfg_t cfg;
    int first;

    (void)state;
    setenv("BATON_PORT", "7000", 1);
    setenv("BATON_TEST_MODEL_DIR", "/m1", 1);
    setenv("BATON_COLOCATED", "yes", 1);
    assert_int_equal(parse(&cfg, 1, argv1, &first, err), BT_OK);
    assert_int_equal(cfg.port, 7000);
    assert_string_equal(cfg.model, "/m1");
    assert_true(cfg.colocated);

    assert_int_equal(parse(&cfg, 9, argv2, &first, err), BT_OK);
    assert_int_equal(cfg.port, 9000);
    assert_string_equal(cfg.model, "/m2");
    assert_int_equal(cfg.pool, 3ull << 29);
    /* positionals are moved to the end */
    assert_int_equal(first, 7);
    assert_string_equal(argv2[first], "file1");
    assert_string_equal(argv2[first + 1], "file2");
    clear_env(NULL);
}

/* "--flag false" sets false (it used to set true and leave "false" as a
 * positional argument that daemons ignored) */
static void test_bool_word_after_flag(void **state)
{
    const char *argv1[] = { "prog", "--colocated", "false", "file1" };
    const char *argv2[] = { "prog", "--colocated", "file1" };
    const char *argv3[] = { "prog", "--colocated=no", "true" };
    char err[256];
    cfg_t cfg;
    int first;

    (void)state;
    setenv("BATON_COLOCATED", "yes", 1);
    assert_int_equal(parse(&cfg, 4, argv1, &first, err), BT_OK);
    assert_false(cfg.colocated);
    assert_int_equal(first, 3);
    assert_string_equal(argv1[first], "file1");
    assert_int_equal(parse(&cfg, 3, argv2, &first, err), BT_OK);
    assert_true(cfg.colocated);
    assert_string_equal(argv2[first], "file1");
    /* with '=' the next word stays a positional argument */
    assert_int_equal(parse(&cfg, 3, argv3, &first, err), BT_OK);
    assert_false(cfg.colocated);
    assert_int_equal(first, 2);
    clear_env(NULL);
}

static void test_bad_values_have_precise_errors(void **state)
{
    char err[256];
    cfg_t cfg;
    int first;
    const char *a1[] = { "prog", "--port", "abc" };
    const char *a2[] = { "prog", "--port", "70000" };
    const char *a3[] = { "prog", "--log-format", "xml" };
    const char *a4[] = { "prog", "--bogus" };
    const char *a5[] = { "prog", "--port" };
    const char *a6[] = { "prog", "--kv-pool", "12Q" };
    const char *a7[] = { "prog", "--lease", "0" };
    const char *a8[] = { "prog", "--colocated=maybe" };

    (void)state;
    assert_int_equal(parse(&cfg, 3, a1, &first, err), BT_ERR_INVALID_ARG);
    assert_string_equal(err, "invalid value 'abc' for --port: expected INT in [1, 65535]");
    assert_int_equal(parse(&cfg, 3, a2, &first, err), BT_ERR_INVALID_ARG);
    assert_string_equal(err, "value '70000' for --port is out of range: expected INT in [1, 65535]");
    assert_int_equal(parse(&cfg, 3, a3, &first, err), BT_ERR_INVALID_ARG);
    assert_string_equal(err, "invalid value 'xml' for --log-format: expected one of text|json");
    assert_int_equal(parse(&cfg, 2, a4, &first, err), BT_ERR_INVALID_ARG);
    assert_string_equal(err, "unknown option '--bogus' (see --help)");
    assert_int_equal(parse(&cfg, 2, a5, &first, err), BT_ERR_INVALID_ARG);
    assert_string_equal(err, "option '--port' requires a value");
    assert_int_equal(parse(&cfg, 3, a6, &first, err), BT_ERR_INVALID_ARG);
    assert_non_null(strstr(err, "invalid value '12Q' for --kv-pool"));
    assert_int_equal(parse(&cfg, 3, a7, &first, err), BT_ERR_INVALID_ARG);
    assert_non_null(strstr(err, "out of range"));
    assert_int_equal(parse(&cfg, 2, a8, &first, err), BT_ERR_INVALID_ARG);
    assert_non_null(strstr(err, "'maybe' for --colocated"));

    setenv("BATON_PORT", "-1", 1);
    {
        const char *a[] = { "prog" };

        assert_int_equal(parse(&cfg, 1, a, &first, err), BT_ERR_INVALID_ARG);
        assert_non_null(strstr(err, "for BATON_PORT is out of range"));
    }
    /* BATON_LEASE=30 meant 30 ms once; a duration now says its unit */
    unsetenv("BATON_PORT");
    setenv("BATON_LEASE", "30", 1);
    {
        const char *a[] = { "prog" };

        assert_int_equal(parse(&cfg, 1, a, &first, err), BT_ERR_INVALID_ARG);
        assert_string_equal(err, "invalid value '30' for BATON_LEASE: expected "
                            "DURATION with a unit (e.g. 500ms, 30s, 5m) in [1ms, 1h]");
    }
    clear_env(NULL);
}

static void test_help_and_version(void **state)
{
    char err[256];
    cfg_t cfg;
    int first;
    const char *a1[] = { "prog", "--help" };
    const char *a2[] = { "prog", "--version" };
    char *text = NULL;
    size_t len = 0;
    FILE *f;

    (void)state;
    assert_int_equal(parse(&cfg, 2, a1, &first, err), BT_ERR_CANCELLED);
    assert_int_equal(first, -1);
    assert_int_equal(parse(&cfg, 2, a2, &first, err), BT_ERR_CANCELLED);
    assert_int_equal(first, -2);

    f = open_memstream(&text, &len);
    bt_opts_print_help(&spec, f);
    fclose(f);
    /* every option with its env variable and default */
    assert_non_null(strstr(text, "-p, --port=INT"));
    assert_non_null(strstr(text, "[env BATON_PORT; default 8080; in [1, 65535]]"));
    assert_non_null(strstr(text, "[env BATON_TEST_MODEL_DIR; default unset]"));
    assert_non_null(strstr(text, "--kv-pool=SIZE"));
    assert_non_null(strstr(text, "[env BATON_KV_POOL; default 64M]"));
    assert_non_null(strstr(text, "--log-format=text|json"));
    free(text);
}

static void test_value_parsers(void **state)
{
    uint64_t b;
    int64_t ms;
    bool v;

    (void)state;
    assert_int_equal(bt_opts_parse_size("4096", &b), BT_OK);
    assert_int_equal(b, 4096);
    assert_int_equal(bt_opts_parse_size("2k", &b), BT_OK);
    assert_int_equal(b, 2048);
    assert_int_equal(bt_opts_parse_size("1GB", &b), BT_OK);
    assert_int_equal(b, 1ull << 30);
    assert_int_equal(bt_opts_parse_size("-1", &b), BT_ERR_INVALID_ARG);
    assert_int_equal(bt_opts_parse_size("", &b), BT_ERR_INVALID_ARG);
    assert_int_equal(bt_opts_parse_size("1e30", &b), BT_ERR_INVALID_ARG);
    assert_int_equal(bt_opts_parse_duration("250ms", &ms), BT_OK);
    assert_int_equal(ms, 250);
    assert_int_equal(bt_opts_parse_duration("1.5s", &ms), BT_OK);
    assert_int_equal(ms, 1500);
    assert_int_equal(bt_opts_parse_duration("2m", &ms), BT_OK);
    assert_int_equal(ms, 120000);
    assert_int_equal(bt_opts_parse_duration("5 s", &ms), BT_ERR_INVALID_ARG);
    /* "30" is 30 ms to one reader and 30 s to another: refused */
    assert_int_equal(bt_opts_parse_duration("30", &ms), BT_ERR_INVALID_ARG);
    assert_int_equal(bt_opts_parse_duration("0", &ms), BT_OK);
    assert_int_equal(ms, 0);
    assert_int_equal(bt_opts_parse_bool("ON", &v), BT_OK);
    assert_true(v);
    assert_int_equal(bt_opts_parse_bool("nah", &v), BT_ERR_INVALID_ARG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_defaults, clear_env),
        cmocka_unit_test_setup(test_env_then_flag_precedence, clear_env),
        cmocka_unit_test_setup(test_bool_word_after_flag, clear_env),
        cmocka_unit_test_setup(test_bad_values_have_precise_errors, clear_env),
        cmocka_unit_test(test_help_and_version),
        cmocka_unit_test(test_value_parsers),
    };

    return cmocka_run_group_tests_name("opts", tests, NULL, NULL);
}
