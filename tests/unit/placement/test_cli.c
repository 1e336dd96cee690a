/* baton-placement as a program (path in argv[1]): synth, plan --json
 * shape, re-plan from its own output, and one-line errors with exit codes
 * on bad input. Files live in a temporary folder removed at the end. */
#include "base/json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

static const char *bin;
static char        dir[64];
static char        out[1 << 20];

/* Runs `args` after the binary, stdout and stderr together into `out`;
 * returns the exit status. */
static int run(const char *fmt, ...)
{
    char    args[2048], cmd[4096];
    va_list ap;
    FILE   *p;
    size_t  n = 0, got;
    int     status;

    va_start(ap, fmt);
    vsnprintf(args, sizeof(args), fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof(cmd), "cd %s && %s %s 2>&1", dir, bin, args);
    p = popen(cmd, "r");
    assert_non_null(p);
    while ((got = fread(out + n, 1, sizeof(out) - 1 - n, p)) > 0) {
        n += got;
    }
    out[n] = '\0';
    status = pclose(p);
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

static void write_file(const char *name, const char *text)
{
    char  path[128];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

static void expect_fail(int code, const char *needle, const char *args)
{
    int rc = run("%s", args);

    if (rc != code || strstr(out, needle) == NULL ||
        strchr(out, '\n') != out + strlen(out) - 1) {
        fail_msg("'%s': exit %d (want %d), output '%s' (want one line with "
                 "'%s')", args, rc, code, out, needle);
    }
}

static void test_synth_and_plan(void **state)
{
    char    err[256];
    json_t *root = NULL, *plan;

    (void)state;
    assert_int_equal(run("synth --layers 4 --experts 16 --tokens 2000 "
                         "--zipf 1 --correlation 0.7 --seed 5 "
                         "--out-counts c.json --out-transitions t.json"), 0);
    assert_int_equal(run("plan --counts c.json --transitions t.json "
                         "--devices 8 --slots-per-device 3 --json"), 0);
    assert_int_equal(bt_json_parse(out, strlen(out), sizeof(out), &root, err,
                                   sizeof(err)), BT_OK);
    assert_true(json_is_number(json_object_get(root, "balancedness_mean")));
    assert_true(json_is_number(json_object_get(root, "balancedness_min")));
    assert_true(json_is_number(json_object_get(root, "cross_device")));
    assert_true(json_is_integer(json_object_get(root, "moved")));
    plan = json_object_get(root, "plan");
    assert_int_equal(json_array_size(plan), 4);
    for (size_t l = 0; l < 4; l++) {
        json_t *layer = json_array_get(plan, l);

        assert_int_equal(json_array_size(layer), 16);
        for (size_t e = 0; e < 16; e++) {
            assert_true(json_array_size(json_array_get(layer, e)) >= 1);
        }
    }
    assert_true(json_real_value(json_object_get(root, "balancedness_mean")) > 0.9);
    json_decref(root);

    /* Its own output is a valid current plan; same loads move nothing. */
    assert_int_equal(run("plan --counts c.json --devices 8 "
                         "--slots-per-device 3 --json > p.json"), 0);
    assert_int_equal(run("plan --counts c.json --current p.json --devices 8 "
                         "--slots-per-device 3"), 0);
    assert_non_null(strstr(out, "plan version 2"));
    assert_non_null(strstr(out, "moved 0 of 96 copies"));
    assert_non_null(strstr(out, "  device 7:"));

    /* Dense (all-zero) layers are empty lists; node-aware adds homes. */
    write_file("d.json", "{\"logical_count\": [[0,0,0,0], [4,3,2,1]]}");
    assert_int_equal(run("plan --counts d.json --devices 4 --nodes 2 "
                         "--groups 2 --slots-per-device 2 --json"), 0);
    assert_int_equal(bt_json_parse(out, strlen(out), sizeof(out), &root, err,
                                   sizeof(err)), BT_OK);
    plan = json_object_get(root, "plan");
    assert_int_equal(json_array_size(json_array_get(plan, 0)), 0);
    assert_int_equal(json_array_size(json_array_get(plan, 1)), 4);
    assert_int_equal(json_array_size(json_object_get(root, "home")), 2);
    json_decref(root);
    assert_int_equal(run("plan --help"), 0);
    assert_non_null(strstr(out, "--slots-per-device"));
}

static void test_bad_input(void **state)
{
    (void)state;
    write_file("ok.json", "{\"logical_count\": [[4,3,2,1], [1,1,1,1]]}");
    write_file("bad.json", "{\"logical_count\": [[4,3,2,1], [1,1,1,1]");
    write_file("rag.json", "{\"logical_count\": [[4,3,2,1], [1,1,1]]}");
    write_file("neg.json", "{\"logical_count\": [[4,3,-2,1]]}");
    write_file("tr.json", "{\"transitions\": [[[1,0,0,0]]]}");
    write_file("cur.json", "{\"plan\": [[[0]]]}");

    expect_fail(2, "required", "plan --devices 2 --slots-per-device 2");
    expect_fail(2, "devices", "plan --counts ok.json --devices abc "
                              "--slots-per-device 2");
    expect_fail(2, "unknown option", "plan --counts ok.json --bogus");
    expect_fail(2, "cannot hold 4 experts",
                "plan --counts ok.json --devices 1 --slots-per-device 3");
    expect_fail(2, "slots per device 5",
                "plan --counts ok.json --devices 1 --slots-per-device 5");
    expect_fail(2, "nodes 3 must divide",
                "plan --counts ok.json --devices 4 --nodes 3 --groups 2 "
                "--slots-per-device 2");
    expect_fail(1, "cannot open", "plan --counts nope.json --devices 2 "
                                  "--slots-per-device 2");
    expect_fail(1, "counts:", "plan --counts bad.json --devices 2 "
                              "--slots-per-device 2");
    expect_fail(1, "ragged", "plan --counts rag.json --devices 2 "
                             "--slots-per-device 2");
    expect_fail(1, "is -2", "plan --counts neg.json --devices 2 "
                            "--slots-per-device 2");
    expect_fail(1, "transitions[0]", "plan --counts ok.json --transitions "
                                     "tr.json --devices 2 "
                                     "--slots-per-device 2");
    expect_fail(1, "current: plan has 1 layers, expected 2",
                "plan --counts ok.json --current cur.json --devices 2 "
                "--slots-per-device 2");
    expect_fail(1, "over the limit", "plan --counts ok.json --transitions "
                                     "tr.json --max-transitions-size 8 "
                                     "--devices 2 --slots-per-device 2");
    expect_fail(2, "out-counts", "synth --layers 2");
    expect_fail(2, "correlation", "synth --correlation 2 --out-counts x.json");
    expect_fail(2, "unknown command", "frobnicate");
}

static int teardown(void **state)
{
    char cmd[128];

    (void)state;
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_synth_and_plan),
        cmocka_unit_test(test_bad_input),
    };

    if (argc < 2) {
        fprintf(stderr, "usage: %s PATH-TO-baton-placement\n", argv[0]);
        return 2;
    }
    bin = argv[1];
    snprintf(dir, sizeof(dir), "/tmp/bt-placement-cli-XXXXXX");
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    return cmocka_run_group_tests(tests, NULL, teardown);
}
