/* batonctl's protobuf -> JSON conversion (cli/ctl_json.c): every field
 * kind the .proto files use, with exact expected text. No processes: this
 * one runs in suite 'unit' (also under ASan+UBSan). */
#include "ctl.h"

#include "admin.pb-c.h"
#include "generate.pb-c.h"
#include "kvstore.pb-c.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

static void expect_json(const ProtobufCMessage *msg, const char *want)
{
    json_t *obj = ctl_json_from_msg(msg);
    char *text;

    assert_non_null(obj);
    text = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
    assert_non_null(text);
    assert_string_equal(text, want);
    free(text);
    json_decref(obj);
}

static void test_empty_list_is_present(void **state)
{
    Baton__V1__ListNodesResponse r = BATON__V1__LIST_NODES_RESPONSE__INIT;

    (void)state;
    expect_json(&r.base, "{\"nodes\":[],\"now_unix_ms\":0}");
}

static void test_node_enums_by_name(void **state)
{
    Baton__V1__ListNodesResponse r = BATON__V1__LIST_NODES_RESPONSE__INIT;
    Baton__V1__NodeInfo n = BATON__V1__NODE_INFO__INIT;
    Baton__V1__NodeInfo *list[1] = { &n };

    (void)state;
    n.node_id = (char *)"d0";
    n.role = BATON__V1__NODE_ROLE__NODE_ROLE_DECODE;
    n.model = (char *)"m";
    n.grpc_address = (char *)"ipv4:10.0.0.1:50061";
    n.state = BATON__V1__NODE_STATE__NODE_STATE_DRAINING;
    n.total_blocks = 4096;
    n.free_blocks = 17;
    n.running_sequences = 3;
    n.queued_prefill_tokens = 5000000000ull;
    n.version = (char *)"0.1.0";
    n.http_address = (char *)"10.0.0.1:9100";
    n.prefill_tokens_per_ms = 12.5;
    n.decode_step_ms = 1.25;
    r.n_nodes = 1;
    r.nodes = list;
    expect_json(&r.base,
                "{\"nodes\":[{\"node_id\":\"d0\",\"role\":\"NODE_ROLE_DECODE\","
                "\"model\":\"m\",\"grpc_address\":\"ipv4:10.0.0.1:50061\","
                "\"state\":\"NODE_STATE_DRAINING\",\"total_blocks\":4096,"
                "\"free_blocks\":17,\"running_sequences\":3,"
                "\"queued_prefill_tokens\":5000000000,\"registered_unix_ms\":0,"
                "\"last_heartbeat_unix_ms\":0,\"version\":\"0.1.0\","
                "\"http_address\":\"10.0.0.1:9100\","
                "\"target_role\":\"NODE_ROLE_UNSPECIFIED\",\"flexible\":false,"
                "\"role_since_unix_ms\":0,\"numerics\":\"\","
                "\"prefill_tokens_per_ms\":12.5,\"decode_step_ms\":1.25}],"
                "\"now_unix_ms\":0}");
}

static void test_unknown_enum_value_is_a_number(void **state)
{
    Baton__V1__DrainResponse r = BATON__V1__DRAIN_RESPONSE__INIT;

    (void)state;
    r.state = (Baton__V1__NodeState)42; /* a newer router's state */
    expect_json(&r.base, "{\"state\":42}");
}

static void test_nested_repeated_scalars_and_huge_u64(void **state)
{
    Baton__V1__RebalanceResponse r = BATON__V1__REBALANCE_RESPONSE__INIT;
    Baton__V1__PlacementPlan plan = BATON__V1__PLACEMENT_PLAN__INIT;
    Baton__V1__LayerPlacement layer = BATON__V1__LAYER_PLACEMENT__INIT;
    Baton__V1__ExpertReplica rep = BATON__V1__EXPERT_REPLICA__INIT;
    Baton__V1__LayerPlacement *layers[1] = { &layer };
    Baton__V1__ExpertReplica *reps[1] = { &rep };
    uint32_t device[3] = { 0, 1, 1 };
    uint32_t devices[2] = { 0, 2 };

    (void)state;
    rep.expert = 1;
    rep.n_devices = 2;
    rep.devices = devices;
    layer.layer = 7;
    layer.n_device = 3;
    layer.device = device;
    layer.n_replicas = 1;
    layer.replicas = reps;
    plan.model = (char *)"moe";
    plan.role = BATON__V1__NODE_ROLE__NODE_ROLE_PREFILL;
    plan.version = UINT64_MAX;
    plan.n_devices = 3;
    plan.n_layers = 1;
    plan.layers = layers;
    r.plan = &plan;
    r.imbalance_before = 1.5;
    r.imbalance_after = 1.125;
    expect_json(&r.base,
                "{\"plan\":{\"model\":\"moe\",\"role\":\"NODE_ROLE_PREFILL\","
                "\"version\":\"18446744073709551615\",\"created_unix_ms\":0,"
                "\"n_devices\":3,\"layers\":[{\"layer\":7,\"device\":[0,1,1],"
                "\"replicas\":[{\"expert\":1,\"devices\":[0,2]}]}],"
                "\"slots_per_device\":0,\"balancedness\":0.0,"
                "\"planned_balancedness\":0.0,\"moved_experts\":0},"
                "\"imbalance_before\":1.5,\"imbalance_after\":1.125,"
                "\"plans\":[]}");
}

static void test_absent_message_is_null(void **state)
{
    Baton__V1__AdminGetPlacementResponse r = BATON__V1__ADMIN_GET_PLACEMENT_RESPONSE__INIT;

    (void)state;
    expect_json(&r.base, "{\"plan\":null,\"predicted_imbalance\":0.0,"
                         "\"plans\":[]}");
}

static void test_bytes_as_hex(void **state)
{
    Baton__V1__StoreEndpoint e = BATON__V1__STORE_ENDPOINT__INIT;
    uint8_t addr[3] = { 0x00, 0xab, 0xff };
    uint8_t k0[1] = { 0x10 };
    ProtobufCBinaryData keys[2] = { { 1, k0 }, { 0, NULL } };
    uint64_t bases[2] = { 1, 9223372036854775808ull };

    (void)state;
    e.ucx_worker_address.len = sizeof(addr);
    e.ucx_worker_address.data = addr;
    e.n_region_rkeys = 2;
    e.region_rkeys = keys;
    e.n_region_bases = 2;
    e.region_bases = bases;
    expect_json(&e.base, "{\"ucx_worker_address\":\"00abff\","
                         "\"region_rkeys\":[\"10\",\"\"],"
                         "\"region_bases\":[1,\"9223372036854775808\"]}");
}

static void test_oneof_only_the_chosen_member(void **state)
{
    Baton__V1__GenerateRequest g = BATON__V1__GENERATE_REQUEST__INIT;
    Baton__V1__SamplingParams sp = BATON__V1__SAMPLING_PARAMS__INIT;
    json_t *obj;

    (void)state;
    g.model = (char *)"m";
    g.input_case = BATON__V1__GENERATE_REQUEST__INPUT_PROMPT;
    g.prompt = (char *)"hi";
    g.sampling = &sp;
    g.request_id = (char *)"r1";
    obj = ctl_json_from_msg(&g.base);
    assert_non_null(obj);
    assert_string_equal(json_string_value(json_object_get(obj, "prompt")), "hi");
    assert_null(json_object_get(obj, "chat"));
    assert_null(json_object_get(obj, "tokens"));
    /* seed unset: absent; set: present */
    assert_null(json_object_get(json_object_get(obj, "sampling"), "seed"));
    json_decref(obj);

    sp.seed_opt_case = BATON__V1__SAMPLING_PARAMS__SEED_OPT_SEED;
    sp.seed = 7;
    sp.top_p = 0.5f;
    obj = ctl_json_from_msg(&sp.base);
    assert_non_null(obj);
    assert_int_equal(json_integer_value(json_object_get(obj, "seed")), 7);
    assert_true(json_real_value(json_object_get(obj, "top_p")) == 0.5);
    assert_true(json_is_array(json_object_get(obj, "stop")));
    json_decref(obj);
}

/* ---- YAML (cli/ctl_yaml.c) ---- */

static void expect_yaml(const char *json_text, const char *want)
{
    json_error_t jerr;
    json_t *v = json_loads(json_text, JSON_DECODE_ANY, &jerr);
    char *buf = NULL;
    size_t len = 0;
    FILE *f;

    assert_non_null(v);
    f = open_memstream(&buf, &len);
    assert_non_null(f);
    assert_int_equal(ctl_yaml_write(f, v), 0);
    fclose(f);
    assert_string_equal(buf, want);
    free(buf);
    json_decref(v);
}

static void test_yaml_block_style(void **state)
{
    (void)state;
    expect_yaml("{\"nodes\":[{\"node_id\":\"d0\",\"free\":17,\"ok\":true},"
                "{\"node_id\":\"d1\",\"tags\":[]}],\"hit_rate\":0.5,"
                "\"plan\":{\"layers\":[[1,2],[3]]},\"empty\":{},\"none\":null}",
                "nodes:\n"
                "  - node_id: \"d0\"\n"
                "    free: 17\n"
                "    ok: true\n"
                "  - node_id: \"d1\"\n"
                "    tags: []\n"
                "hit_rate: 0.5\n"
                "plan:\n"
                "  layers:\n"
                "    - - 1\n"
                "      - 2\n"
                "    - - 3\n"
                "empty: {}\n"
                "none: null\n");
}

/* Strings YAML would otherwise read as something else, or break on: all
 * double-quoted with JSON's escapes; an odd key is quoted too. */
static void test_yaml_strings_are_quoted(void **state)
{
    (void)state;
    expect_yaml("{\"a\":\"yes\",\"b\":\"null\",\"c\":\"1e3\",\"d\":\"key: value # x\","
                "\"e\":\"- item\",\"f\":\"line\\nbreak \\\"q\\\" \\\\\",\"g\":\"\","
                "\"h\":\"\\u0001\",\"odd key: x\":1}",
                "a: \"yes\"\n"
                "b: \"null\"\n"
                "c: \"1e3\"\n"
                "d: \"key: value # x\"\n"
                "e: \"- item\"\n"
                "f: \"line\\nbreak \\\"q\\\" \\\\\"\n"
                "g: \"\"\n"
                "h: \"\\u0001\"\n"
                "\"odd key: x\": 1\n");
}

static void test_yaml_scalars_alone(void **state)
{
    (void)state;
    expect_yaml("{}", "{}\n");
    expect_yaml("[]", "[]\n");
    expect_yaml("\"x\"", "\"x\"\n");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_list_is_present),
        cmocka_unit_test(test_node_enums_by_name),
        cmocka_unit_test(test_unknown_enum_value_is_a_number),
        cmocka_unit_test(test_nested_repeated_scalars_and_huge_u64),
        cmocka_unit_test(test_absent_message_is_null),
        cmocka_unit_test(test_bytes_as_hex),
        cmocka_unit_test(test_oneof_only_the_chosen_member),
        cmocka_unit_test(test_yaml_block_style),
        cmocka_unit_test(test_yaml_strings_are_quoted),
        cmocka_unit_test(test_yaml_scalars_alone),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
