/* Plans, loads and transitions to and from JSON: round trip and precise
 * errors on malformed shapes and values. */
#include "pl_test.h"

#include "base/json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

static json_t *parse(const char *text)
{
    char    err[BT_JSON_ERR_SIZE];
    json_t *root = NULL;

    if (bt_json_parse(text, strlen(text), 1 << 20, &root, err,
                      sizeof(err)) != BT_OK) {
        fail_msg("parse: %s", err);
    }
    return root;
}

static void test_plan_round_trip(void **state)
{
    double loads[3 * 8] = { 0, 0, 0, 0, 0, 0, 0, 0,
                            9, 1, 1, 1, 2, 2, 3, 5,
                            1, 1, 1, 1, 1, 1, 1, 8 };
    bt_placement_input_t in = { .n_layers = 3, .n_experts = 8, .loads = loads,
                                .n_devices = 4, .slots = 3, .n_nodes = 2,
                                .n_groups = 2, .epsilon = -1.0 };
    bt_placement_plan_t *plan = pl_test_plan(&in), *back = NULL;
    bt_placement_figures_t f = pl_test_eval(plan, &in);
    json_t *j = bt_placement_plan_to_json(plan, &f), *layers;
    char    err[256];

    (void)state;
    assert_non_null(j);
    layers = json_object_get(j, "plan");
    assert_int_equal(json_array_size(layers), 3);
    assert_int_equal(json_array_size(json_array_get(layers, 0)), 0); /* dense */
    assert_int_equal(json_array_size(json_array_get(layers, 1)), 8);
    assert_non_null(json_object_get(j, "balancedness_mean"));
    assert_non_null(json_object_get(j, "balancedness_min"));
    assert_non_null(json_object_get(j, "cross_device"));
    assert_non_null(json_object_get(j, "moved"));
    assert_int_equal(json_array_size(json_object_get(j, "home")), 3);
    assert_int_equal(bt_placement_plan_from_json(j, 3, 8, &back, err,
                                                 sizeof(err)), BT_OK);
    assert_int_equal(back->n_devices, 4);
    assert_int_equal(back->slots, 3);
    assert_int_equal(back->version, 1);
    assert_memory_equal(back->dense, plan->dense, 3);
    assert_memory_equal(back->slot_expert + 12, plan->slot_expert + 12,
                        24 * sizeof(int32_t));
    assert_int_equal(bt_placement_plan_from_json(j, 4, 8, &back, err,
                                                 sizeof(err)),
                     BT_ERR_INVALID_ARG);
    assert_non_null(strstr(err, "3 layers, expected 4"));
    bt_placement_plan_destroy(back);
    bt_placement_plan_destroy(plan);
    json_decref(j);
}

static void expect_plan_error(const char *text, const char *needle)
{
    json_t *j = parse(text);
    bt_placement_plan_t *p = NULL;
    char    err[256] = "";

    assert_int_equal(bt_placement_plan_from_json(j, 2, 3, &p, err,
                                                 sizeof(err)),
                     BT_ERR_INVALID_ARG);
    assert_null(p);
    if (strstr(err, needle) == NULL) {
        fail_msg("error '%s' lacks '%s'", err, needle);
    }
    json_decref(j);
}

static void test_plan_errors(void **state)
{
    (void)state;
    expect_plan_error("[]", "expected a JSON object");
    expect_plan_error("{}", "plan");
    expect_plan_error("{\"plan\": [[], []]}", "no MoE layer");
    expect_plan_error("{\"plan\": [[], [[0], [1]]]}", "2 experts, expected 3");
    expect_plan_error("{\"plan\": [[], [[0], [], [1]]]}", "non-empty array");
    expect_plan_error("{\"plan\": [[], [[0], [\"a\"], [1]]]}", "integer");
    expect_plan_error("{\"plan\": [[], [[0], [-1], [1]]]}", "integer in 0..");
    expect_plan_error("{\"plan\": [[], [[0, 0], [1], [1]]]}", "twice");
    expect_plan_error("{\"plan\": [[], [[0, 1], [0], [0, 1]]]}", "do not fill");
    expect_plan_error("{\"plan\": [[], [[0, 1], [0], [0]]]}",
                      "device 0 holds more than 2");
    expect_plan_error("{\"plan\": [[], [[0], [1], [2]]], \"version\": -1}",
                      "version");
}

static void expect_loads_error(const char *text, const char *needle)
{
    json_t *j = parse(text);
    double *loads = NULL;
    int32_t L = -1, E = -1;
    char    err[256] = "";

    assert_int_not_equal(bt_placement_loads_from_json(j, &loads, &L, &E, err,
                                                      sizeof(err)), BT_OK);
    assert_null(loads);
    if (strstr(err, needle) == NULL) {
        fail_msg("error '%s' lacks '%s'", err, needle);
    }
    json_decref(j);
}

static void test_loads(void **state)
{
    json_t *j = parse("{\"logical_count\": [[0, 0], [1.5, 2]]}");
    double *loads = NULL, *trans = NULL;
    int32_t L, E;
    char    err[256] = "";

    (void)state;
    assert_int_equal(bt_placement_loads_from_json(j, &loads, &L, &E, err,
                                                  sizeof(err)), BT_OK);
    assert_int_equal(L, 2);
    assert_int_equal(E, 2);
    assert_true(loads[2] == 1.5 && loads[3] == 2.0);
    free(loads);
    json_decref(j);
    expect_loads_error("{\"counts\": []}", "logical_count");
    expect_loads_error("{\"logical_count\": []}", "0 layers");
    expect_loads_error("{\"logical_count\": [[1, 2], [3]]}", "ragged");
    expect_loads_error("{\"logical_count\": [[1, -2]]}", "is -2");
    expect_loads_error("{\"logical_count\": [[1, \"x\"]]}", "a string");
    expect_loads_error("{\"logical_count\": [[1, null]]}", "null");
    expect_loads_error("{\"logical_count\": [7]}", "expected an array");

    j = parse("{\"transitions\": [[[1, 0], [0, 2]]]}");
    assert_int_equal(bt_placement_transitions_from_json(j, 2, 2, &trans, err,
                                                        sizeof(err)), BT_OK);
    assert_true(trans[0] == 1.0 && trans[3] == 2.0);
    free(trans);
    trans = NULL;
    assert_int_equal(bt_placement_transitions_from_json(j, 3, 2, &trans, err,
                                                        sizeof(err)),
                     BT_ERR_INVALID_ARG);
    assert_non_null(strstr(err, "expected 2"));
    json_decref(j);
    j = parse("{\"transitions\": [[[1, 0], [0]]]}");
    assert_int_equal(bt_placement_transitions_from_json(j, 2, 2, &trans, err,
                                                        sizeof(err)),
                     BT_ERR_INVALID_ARG);
    assert_non_null(strstr(err, "ragged"));
    assert_null(trans);
    json_decref(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plan_round_trip),
        cmocka_unit_test(test_plan_errors),
        cmocka_unit_test(test_loads),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
