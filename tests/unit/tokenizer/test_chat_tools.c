/* Chat templates with tools: the exact prompt of each family's own tool
 * format (Qwen2.5/Hermes ChatML, Llama 3.1 JSON calls, Mistral v3) for a
 * conversation with tools, an assistant call and its result; the errors
 * (Llama-2 has no tool format); no tools at all renders as before. */
#include "engine/tokenizer/chat_template.h"

#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

static const bt_chat_tool_t tools[] = {
    {"get_weather", "Weather in a city",
     "{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}},"
     "\"required\":[\"city\"]}"},
};

static const bt_chat_tool_call_t call = {"call_1", "get_weather",
                                         "{\"city\":\"Paris\"}"};

static const bt_chat_msg_t conv[] = {
    {"system", "Be brief.", NULL, 0, NULL},
    {"user", "Weather in Paris?", NULL, 0, NULL},
    {"assistant", "", &call, 1, NULL},
    {"tool", "{\"temp\": 21}", NULL, 0, "call_1"},
    {"tool", "sunny", NULL, 0, "call_1"},
};

static void expect(bt_chat_family_t f, const bt_chat_msg_t *m, size_t n,
                   size_t n_tools, const char *want)
{
    bt_buf_t out;
    char err[256];

    bt_buf_init(&out, 1 << 20);
    if (bt_chat_render_tools(NULL, f, tools, n_tools, m, n, true, &out, err,
                             sizeof(err)) != BT_OK)
        fail_msg("render %s: %s", bt_chat_family_name(f), err);
    assert_string_equal(out.data ? out.data : "", want);
    bt_buf_cleanup(&out);
}

static void test_chatml(void **state)
{
    (void)state;
    expect(BT_CHAT_CHATML, conv, 5, 1,
           "<|im_start|>system\nBe brief.\n\n# Tools\n\nYou may call one or more "
           "functions to assist with the user query.\n\nYou are provided with "
           "function signatures within <tools></tools> XML tags:\n<tools>\n"
           "{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", "
           "\"description\": \"Weather in a city\", \"parameters\": {\"type\": "
           "\"object\", \"properties\": {\"city\": {\"type\": \"string\"}}, "
           "\"required\": [\"city\"]}}}\n</tools>\n\nFor each function call, "
           "return a json object with function name and arguments within "
           "<tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": "
           "<function-name>, \"arguments\": <args-json-object>}\n</tool_call>"
           "<|im_end|>\n"
           "<|im_start|>user\nWeather in Paris?<|im_end|>\n"
           "<|im_start|>assistant\n<tool_call>\n{\"name\": \"get_weather\", "
           "\"arguments\": {\"city\": \"Paris\"}}\n</tool_call><|im_end|>\n"
           "<|im_start|>user\n<tool_response>\n{\"temp\": 21}\n</tool_response>\n"
           "<tool_response>\nsunny\n</tool_response><|im_end|>\n"
           "<|im_start|>assistant\n");
    /* no system message: the tools block is the system turn */
    expect(BT_CHAT_CHATML, conv + 1, 1, 1,
           "<|im_start|>system\n# Tools\n\nYou may call one or more "
           "functions to assist with the user query.\n\nYou are provided with "
           "function signatures within <tools></tools> XML tags:\n<tools>\n"
           "{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", "
           "\"description\": \"Weather in a city\", \"parameters\": {\"type\": "
           "\"object\", \"properties\": {\"city\": {\"type\": \"string\"}}, "
           "\"required\": [\"city\"]}}}\n</tools>\n\nFor each function call, "
           "return a json object with function name and arguments within "
           "<tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": "
           "<function-name>, \"arguments\": <args-json-object>}\n</tool_call>"
           "<|im_end|>\n<|im_start|>user\nWeather in Paris?<|im_end|>\n"
           "<|im_start|>assistant\n");
}

static void test_llama3(void **state)
{
    (void)state;
    expect(BT_CHAT_LLAMA3, conv, 4, 1,
           "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
           "Be brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n"
           "Given the following functions, please respond with a JSON for a "
           "function call with its proper arguments that best answers the "
           "given prompt.\n\nRespond in the format {\"name\": function name, "
           "\"parameters\": dictionary of argument name and its value}.Do not "
           "use variables.\n\n{\n    \"type\": \"function\",\n    \"function\": "
           "{\n        \"name\": \"get_weather\",\n        \"description\": "
           "\"Weather in a city\",\n        \"parameters\": {\n            "
           "\"type\": \"object\",\n            \"properties\": {\n"
           "                \"city\": {\n                    \"type\": "
           "\"string\"\n                }\n            },\n            "
           "\"required\": [\n                \"city\"\n            ]\n"
           "        }\n    }\n}\n\nWeather in Paris?<|eot_id|>"
           "<|start_header_id|>assistant<|end_header_id|>\n\n{\"name\": "
           "\"get_weather\", \"parameters\": {\"city\": \"Paris\"}}<|eot_id|>"
           "<|start_header_id|>ipython<|end_header_id|>\n\n{\"temp\": 21}"
           "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n");
}

static void test_mistral(void **state)
{
    (void)state;
    expect(BT_CHAT_MISTRAL, conv, 4, 1,
           "<s>[AVAILABLE_TOOLS] [{\"type\": \"function\", \"function\": "
           "{\"name\": \"get_weather\", \"description\": \"Weather in a city\", "
           "\"parameters\": {\"type\": \"object\", \"properties\": {\"city\": "
           "{\"type\": \"string\"}}, \"required\": [\"city\"]}}}]"
           "[/AVAILABLE_TOOLS][INST] Be brief.\n\nWeather in Paris?[/INST]"
           "[TOOL_CALLS] [{\"name\": \"get_weather\", \"arguments\": {\"city\": "
           "\"Paris\"}, \"id\": \"call_1\"}]</s>[TOOL_RESULTS] {\"content\": "
           "{\"temp\": 21}, \"call_id\": \"call_1\"}[/TOOL_RESULTS]");
}

static void test_errors_and_plain(void **state)
{
    bt_buf_t out, plain;
    char err[256];
    static const bt_chat_tool_call_t two[] = {
        {"a", "get_weather", "{}"}, {"b", "get_weather", "{}"},
    };
    const bt_chat_msg_t multi[] = {
        {"user", "x", NULL, 0, NULL}, {"assistant", "", two, 2, NULL},
    };
    const bt_chat_tool_call_t bad = {"a", "get_weather", "{nope"};
    const bt_chat_msg_t badm[] = {
        {"user", "x", NULL, 0, NULL}, {"assistant", "", &bad, 1, NULL},
    };

    (void)state;
    bt_buf_init(&out, 1 << 20);
    bt_buf_init(&plain, 1 << 20);
    assert_int_equal(bt_chat_render_tools(NULL, BT_CHAT_LLAMA2, tools, 1, conv,
                                          2, true, &out, err, sizeof(err)),
                     BT_ERR_INVALID_ARG);
    assert_non_null(strstr(err, "no tool format"));
    assert_int_equal(bt_chat_render_tools(NULL, BT_CHAT_LLAMA3, NULL, 0, multi,
                                          2, true, &out, err, sizeof(err)),
                     BT_ERR_INVALID_ARG);
    assert_non_null(strstr(err, "one tool call per message"));
    assert_int_equal(bt_chat_render_tools(NULL, BT_CHAT_CHATML, NULL, 0, badm,
                                          2, true, &out, err, sizeof(err)),
                     BT_ERR_INVALID_ARG);
    assert_non_null(strstr(err, "not valid JSON"));
    assert_int_equal(out.len, 0);
    /* without tools: exactly bt_chat_render */
    for (int f = BT_CHAT_LLAMA2; f <= BT_CHAT_CHATML; f++) {
        bt_buf_reset(&out);
        bt_buf_reset(&plain);
        assert_int_equal(bt_chat_render_tools(NULL, f, NULL, 0, conv, 2, true,
                                              &out, err, sizeof(err)), BT_OK);
        assert_int_equal(bt_chat_render(NULL, f, conv, 2, true, &plain, err,
                                        sizeof(err)), BT_OK);
        assert_string_equal(out.data, plain.data);
    }
    bt_buf_cleanup(&out);
    bt_buf_cleanup(&plain);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chatml),
        cmocka_unit_test(test_llama3),
        cmocka_unit_test(test_mistral),
        cmocka_unit_test(test_errors_and_plain),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
