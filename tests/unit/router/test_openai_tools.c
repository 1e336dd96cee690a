/* Tool calling in the chat API: tools/tool_choice validation, messages'
 * tool fields, the tool-call grammar (every byte checked by the grammar
 * engine), the streaming splitter of a forced call, the `auto` parsers of
 * each family, and the response shapes. */
#include "openai.h"
#include "openai_tools.h"

#include "engine/grammar/grammar.h"

#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

static bt_arena_t *arena;
static bt_openai_req_t req;
static char err[512];
static char param[64];

static int setup(void **state)
{
    (void)state;
    arena = bt_arena_create(4096, 1 << 20);
    return arena ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    bt_arena_destroy(arena);
    return 0;
}

static bt_status_t parse(const char *body)
{
    bt_arena_reset(arena);
    return bt_openai_parse(BT_OPENAI_CHAT, body, strlen(body), 1 << 16, arena,
                           &req, err, sizeof(err), param, sizeof(param));
}

#define MSGS "\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]"
#define WEATHER "{\"type\":\"function\",\"function\":{\"name\":\"get_weather\"," \
    "\"description\":\"Weather in a city\",\"parameters\":{\"type\":\"object\"," \
    "\"properties\":{\"city\":{\"type\":\"string\",\"maxLength\":20}," \
    "\"unit\":{\"enum\":[\"C\",\"F\"]}},\"required\":[\"city\",\"unit\"]," \
    "\"additionalProperties\":false}}}"
#define TIME "{\"type\":\"function\",\"function\":{\"name\":\"get_time\"}}"

/* A byte-level vocabulary: token i < 256 is byte i; 256 is EOS. */
static bt_gvocab_t *byte_vocab(void)
{
    static uint8_t bytes[256];
    const uint8_t *ptrs[257];
    uint32_t lens[257];
    bt_gvocab_t *v = NULL;

    for (int i = 0; i < 256; i++) {
        bytes[i] = (uint8_t)i;
        ptrs[i] = &bytes[i];
        lens[i] = 1;
    }
    ptrs[256] = NULL;
    lens[256] = 0;
    assert_int_equal(bt_gvocab_create(257, ptrs, lens, 256, &v), BT_OK);
    return v;
}

/* Feeds `doc` to a matcher of the request's tool-call grammar: BT_OK and
 * complete, or the first refusal. */
static bt_status_t grammar_takes(const char *doc, bool *complete_p)
{
    const Baton__V1__ResponseFormat *rf = req.sampling.response_format;
    bt_grammar_t *g = NULL;
    bt_gvocab_t *v = byte_vocab();
    bt_gmasker_t *mk = NULL;
    bt_gmatcher_t *m = NULL;
    char gerr[BT_GRAMMAR_ERR_SIZE];
    bt_status_t s;

    assert_non_null(rf);
    assert_int_equal(bt_grammar_compile(BT_GRAMMAR_JSON_SCHEMA, rf->schema,
                                        strlen(rf->schema), &g, gerr,
                                        sizeof(gerr)), BT_OK);
    assert_int_equal(bt_gmasker_create(g, v, 0, &mk), BT_OK);
    assert_int_equal(bt_gmatcher_create(mk, &m), BT_OK);
    s = bt_gmatcher_feed(m, (const uint8_t *)doc, strlen(doc));
    *complete_p = s == BT_OK && bt_gmatcher_complete(m);
    bt_gmatcher_destroy(m);
    bt_gmasker_destroy(mk);
    bt_gvocab_destroy(v);
    bt_grammar_destroy(g);
    return s;
}

static void test_tools_modes(void **state)
{
    bool done;

    (void)state;
    /* tools alone: auto, rendered, no constraint */
    assert_int_equal(parse("{" MSGS ",\"tools\":[" WEATHER "," TIME "]}"), BT_OK);
    assert_int_equal(req.tool_mode, BT_OPENAI_TOOLS_AUTO);
    assert_int_equal(req.chat.n_tools, 2);
    assert_string_equal(req.chat.tools[0]->name, "get_weather");
    assert_string_equal(req.chat.tools[0]->description, "Weather in a city");
    assert_non_null(strstr(req.chat.tools[0]->parameters, "\"maxLength\":20"));
    assert_string_equal(req.chat.tools[1]->parameters, "");
    assert_null(req.sampling.response_format);
    assert_int_equal(req.n_tool_names, 2);
    assert_string_equal(req.tool_names[1], "get_time");

    /* none: not rendered, not parsed */
    assert_int_equal(parse("{" MSGS ",\"tools\":[" WEATHER "],\"tool_choice\":"
                           "\"none\"}"), BT_OK);
    assert_int_equal(req.tool_mode, BT_OPENAI_TOOLS_NONE);
    assert_int_equal(req.chat.n_tools, 0);

    /* required: a call to either tool, arguments per its schema */
    assert_int_equal(parse("{" MSGS ",\"tools\":[" WEATHER "," TIME "],"
                           "\"tool_choice\":\"required\"}"), BT_OK);
    assert_int_equal(req.tool_mode, BT_OPENAI_TOOLS_FORCED);
    assert_int_equal(grammar_takes("{\"name\": \"get_weather\", \"arguments\": "
                                   "{\"city\": \"Paris\", \"unit\": \"C\"}}",
                                   &done), BT_OK);
    assert_true(done);
    assert_int_equal(grammar_takes("{\"name\":\"get_time\",\"arguments\":{}}",
                                   &done), BT_OK);
    assert_true(done);
    /* an unknown name, a missing argument, an argument off its schema */
    assert_int_equal(grammar_takes("{\"name\":\"get_date\"", &done),
                     BT_ERR_INVALID_ARG);
    assert_int_equal(grammar_takes("{\"name\":\"get_weather\",\"arguments\":"
                                   "{\"city\":\"Paris\"}", &done),
                     BT_ERR_INVALID_ARG);
    assert_int_equal(grammar_takes("{\"name\":\"get_weather\",\"arguments\":"
                                   "{\"city\":\"Paris\",\"unit\":\"K\"", &done),
                     BT_ERR_INVALID_ARG);
    /* get_time takes no arguments: an empty object only */
    assert_int_equal(grammar_takes("{\"name\":\"get_time\",\"arguments\":{\"a\"",
                                   &done), BT_ERR_INVALID_ARG);
    /* nothing but the call */
    assert_int_equal(grammar_takes("Sure! {", &done), BT_ERR_INVALID_ARG);

    /* a named function: only that one */
    assert_int_equal(parse("{" MSGS ",\"tools\":[" WEATHER "," TIME "],"
                           "\"tool_choice\":{\"type\":\"function\",\"function\":"
                           "{\"name\":\"get_time\"}}}"), BT_OK);
    assert_int_equal(req.tool_mode, BT_OPENAI_TOOLS_FORCED);
    assert_int_equal(grammar_takes("{\"name\":\"get_time\",\"arguments\":{}}",
                                   &done), BT_OK);
    assert_true(done);
    assert_int_equal(grammar_takes("{\"name\":\"get_w", &done),
                     BT_ERR_INVALID_ARG);
}

static void test_tools_errors(void **state)
{
    static const struct {
        const char *body, *param, *msg;
    } cases[] = {
        { "{" MSGS ",\"tools\":[" WEATHER "],\"tool_choice\":{\"type\":\"function\","
          "\"function\":{\"name\":\"nope\"}}}", "tool_choice",
          "no tool named 'nope'" },
        { "{" MSGS ",\"tools\":[" WEATHER "],\"tool_choice\":\"always\"}",
          "tool_choice", "expected none, auto, required" },
        { "{" MSGS ",\"tool_choice\":\"required\"}", "tool_choice",
          "no 'tools' to choose from" },
        { "{" MSGS ",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":"
          "\"f\",\"parameters\":{\"type\":\"object\",\"properties\":{\"u\":"
          "{\"type\":\"string\",\"format\":\"uri\"}}}}}]}", "tools",
          "tools[0].function.parameters': unsupported schema keyword 'format' "
          "at /properties/u" },
        { "{" MSGS ",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":"
          "\"f\",\"parameters\":{\"oneOf\":[]}}}]}", "tools", "'oneOf'" },
        { "{" MSGS ",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":"
          "\"bad name\"}}]}", "tools", "tools[0].function.name" },
        { "{" MSGS ",\"tools\":[" TIME "," TIME "]}", "tools", "defined twice" },
        { "{" MSGS ",\"tools\":[{\"type\":\"retrieval\"}]}", "tools",
          "only 'function'" },
        { "{" MSGS ",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":"
          "\"f\",\"x\":1}}]}", "tools", "unknown field 'x'" },
        { "{" MSGS ",\"tools\":[" WEATHER "],\"tool_choice\":\"required\","
          "\"response_format\":{\"type\":\"json_object\"}}", "response_format",
          "cannot be combined with tools" },
        { "{" MSGS ",\"tools\":[" WEATHER "],\"tool_choice\":\"required\","
          "\"ignore_eos\":true}", "tools", "ignore_eos" },
        { "{\"model\":\"m\",\"messages\":[{\"role\":\"tool\",\"content\":\"1\"}]}",
          "messages", "tool_call_id" },
        { "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\","
          "\"tool_calls\":[]}]}", "messages", "on assistant messages only" },
        { "{\"model\":\"m\",\"messages\":[{\"role\":\"assistant\",\"content\":null,"
          "\"tool_calls\":[{\"id\":\"c\",\"type\":\"function\",\"function\":"
          "{\"name\":\"f\",\"arguments\":\"{oops\"}}]}]}", "messages",
          "arguments': not a JSON object" },
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        bt_status_t s = parse(cases[i].body);

        if (s != BT_ERR_INVALID_ARG || strcmp(param, cases[i].param) != 0 ||
            strstr(err, cases[i].msg) == NULL) {
            fail_msg("case %zu: status %d param '%s' err '%s'", i, s, param, err);
        }
    }
}

static void test_tool_messages(void **state)
{
    (void)state;
    assert_int_equal(parse("{\"model\":\"m\",\"messages\":["
        "{\"role\":\"user\",\"content\":\"weather?\"},"
        "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"call_1\","
        "\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":"
        "\"{\\\"city\\\":\\\"Paris\\\"}\"}}]},"
        "{\"role\":\"tool\",\"tool_call_id\":\"call_1\",\"content\":\"21 C\"}],"
        "\"tools\":[" WEATHER "]}"), BT_OK);
    assert_int_equal(req.chat.n_messages, 3);
    assert_string_equal(req.chat.messages[1]->content, "");
    assert_int_equal(req.chat.messages[1]->n_tool_calls, 1);
    assert_string_equal(req.chat.messages[1]->tool_calls[0]->id, "call_1");
    assert_string_equal(req.chat.messages[1]->tool_calls[0]->name, "get_weather");
    assert_string_equal(req.chat.messages[1]->tool_calls[0]->arguments,
                        "{\"city\":\"Paris\"}");
    assert_string_equal(req.chat.messages[2]->role, "tool");
    assert_string_equal(req.chat.messages[2]->tool_call_id, "call_1");
    assert_string_equal(req.chat.messages[2]->content, "21 C");
}

/* The forced call split as it streams: the name once, then the arguments
 * in pieces whose concatenation is the arguments, the closing brace never. */
static void test_tool_stream(void **state)
{
    static const char doc[] = "{\"name\": \"get_weather\", \"arguments\": "
                              "{\"city\": \"Par}is\", \"unit\": \"C\"}}";
    bt_tool_stream_t ts;
    char args[128] = "";
    int names = 0;

    (void)state;
    for (size_t cut = 1; cut <= 7; cut += 3) {   /* pieces of 1, 4, 7 bytes */
        bt_tool_stream_init(&ts);
        args[0] = '\0';
        names = 0;
        for (size_t at = 0; at < sizeof(doc) - 1; at += cut) {
            size_t n = sizeof(doc) - 1 - at < cut ? sizeof(doc) - 1 - at : cut;
            const char *name, *a;
            size_t alen;

            assert_int_equal(bt_tool_stream_feed(&ts, doc + at, n,
                                                 at + n == sizeof(doc) - 1,
                                                 &name, &a, &alen), BT_OK);
            if (name != NULL) {
                assert_string_equal(name, "get_weather");
                assert_int_equal(names, 0);
                assert_string_equal(args, "");
                names++;
            }
            strncat(args, a ? a : "", alen);
        }
        assert_int_equal(names, 1);
        assert_string_equal(args, "{\"city\": \"Par}is\", \"unit\": \"C\"}");
        bt_tool_stream_cleanup(&ts);
    }
    /* pieces of whole characters when the text comes in whole characters
     * (a piece of a UTF-8 character is no JSON string: its chunk would be
     * lost) */
    {
        static const char *const parts[] = {
            "{\"name\": \"get_time\", \"arguments\": {\"tz\": \"P\xc3\xa9",
            "\xe5\x8a\xbb", "\xc3\xa9", "\"}", "}",
        };
        const char *name, *a;
        size_t alen;

        bt_tool_stream_init(&ts);
        args[0] = '\0';
        for (size_t i = 0; i < 5; i++) {
            assert_int_equal(bt_tool_stream_feed(&ts, parts[i], strlen(parts[i]),
                                                 i == 4, &name, &a, &alen), BT_OK);
            if (alen > 0) {
                json_t *piece = json_stringn(a, alen);   /* NULL: not UTF-8 */

                assert_non_null(piece);
                json_decref(piece);
            }
            strncat(args, a ? a : "", alen);
        }
        assert_string_equal(args, "{\"tz\": \"P\xc3\xa9\xe5\x8a\xbb\xc3\xa9\"}");
        bt_tool_stream_cleanup(&ts);
    }
    /* not a call */
    {
        const char *name, *a;
        size_t alen;

        bt_tool_stream_init(&ts);
        assert_int_equal(bt_tool_stream_feed(&ts, "{\"nam", 5, false, &name, &a,
                                             &alen), BT_OK);
        assert_null(name);
        assert_int_equal(bt_tool_stream_feed(&ts, "e!", 2, false, &name, &a,
                                             &alen), BT_ERR_INVALID_ARG);
        bt_tool_stream_cleanup(&ts);
    }
}

static const char *const names[] = { "get_weather", "get_time" };

static json_t *auto_parse(bt_chat_family_t f, const char *text, size_t *content)
{
    return bt_tool_calls_parse(f, text, strlen(text), names, 2, content);
}

static void expect_call(const json_t *calls, size_t i, const char *name,
                        const char *args)
{
    const json_t *c = json_array_get(calls, i);

    assert_non_null(c);
    assert_string_equal(json_string_value(json_object_get(c, "name")), name);
    assert_string_equal(json_string_value(json_object_get(c, "arguments")), args);
}

static void test_auto_parse(void **state)
{
    size_t content;
    json_t *calls;

    (void)state;
    /* ChatML (Hermes): content, then calls in tags */
    calls = auto_parse(BT_CHAT_CHATML, "Let me check.\n<tool_call>\n{\"name\": "
                       "\"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n"
                       "</tool_call>\n<tool_call>\n{\"name\": \"get_time\", "
                       "\"arguments\": {}}\n</tool_call>", &content);
    assert_int_equal(json_array_size(calls), 2);
    expect_call(calls, 0, "get_weather", "{\"city\":\"Paris\"}");
    expect_call(calls, 1, "get_time", "{}");
    assert_int_equal(content, strlen("Let me check."));
    json_decref(calls);
    /* an unknown tool, broken JSON, text after the calls: plain text */
    assert_null(auto_parse(BT_CHAT_CHATML, "<tool_call>{\"name\": \"rm\", "
                           "\"arguments\": {}}</tool_call>", &content));
    assert_null(auto_parse(BT_CHAT_CHATML, "<tool_call>{\"name\": "
                           "\"get_time\", </tool_call>", &content));
    assert_null(auto_parse(BT_CHAT_CHATML, "<tool_call>{\"name\": \"get_time\", "
                           "\"arguments\": {}}</tool_call> and more", &content));
    assert_null(auto_parse(BT_CHAT_CHATML, "no calls here", &content));
    assert_int_equal(content, strlen("no calls here"));

    /* Llama 3.1: the whole output is {"name", "parameters"} */
    calls = auto_parse(BT_CHAT_LLAMA3, " {\"name\": \"get_weather\", "
                       "\"parameters\": {\"city\": \"Oslo\"}}", &content);
    expect_call(calls, 0, "get_weather", "{\"city\":\"Oslo\"}");
    assert_int_equal(content, 0);
    json_decref(calls);
    calls = auto_parse(BT_CHAT_LLAMA3, "<|python_tag|>{\"name\": \"get_time\", "
                       "\"parameters\": {}}", &content);
    expect_call(calls, 0, "get_time", "{}");
    json_decref(calls);
    assert_null(auto_parse(BT_CHAT_LLAMA3, "The weather is {\"name\": 1}",
                           &content));

    /* Mistral: [TOOL_CALLS] [..] */
    calls = auto_parse(BT_CHAT_MISTRAL, "[TOOL_CALLS] [{\"name\": \"get_time\", "
                       "\"arguments\": {}}, {\"name\": \"get_weather\", "
                       "\"arguments\": {\"city\": \"Rome\"}, \"id\": \"abc123XYZ\"}]",
                       &content);
    assert_int_equal(json_array_size(calls), 2);
    expect_call(calls, 1, "get_weather", "{\"city\":\"Rome\"}");
    json_decref(calls);
    assert_null(auto_parse(BT_CHAT_MISTRAL, "[TOOL_CALLS] []", &content));
}

/* What `auto` output may stream as content before it ends. */
static void test_text_safe(void **state)
{
    static const struct {
        bt_chat_family_t f;
        const char *text;
        size_t safe;
    } cases[] = {
        { BT_CHAT_CHATML, "Hello there", 11 },
        { BT_CHAT_CHATML, "Hello <tool", 5 },        /* maybe a call: held */
        { BT_CHAT_CHATML, "Hello <tool_call>\n{", 5 },
        { BT_CHAT_CHATML, "a < b", 5 },              /* no longer a marker */
        { BT_CHAT_CHATML, "Hi \n", 2 },              /* trailing space held */
        { BT_CHAT_MISTRAL, "Ok [TOOL_", 2 },
        { BT_CHAT_MISTRAL, "Ok [x]", 6 },
        { BT_CHAT_LLAMA3, "  ", 0 },
        { BT_CHAT_LLAMA3, " {\"name\"", 0 },           /* the whole may be a call */
        { BT_CHAT_LLAMA3, "<|python", 0 },
        { BT_CHAT_LLAMA3, "The answer", 10 },
        { BT_CHAT_LLAMA2, "<tool_call>", 11 },
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t got = bt_tool_text_safe(cases[i].f, cases[i].text,
                                       strlen(cases[i].text));

        if (got != cases[i].safe) {
            fail_msg("case %zu '%s': %zu, not %zu", i, cases[i].text, got,
                     cases[i].safe);
        }
    }
}

static void test_shapes(void **state)
{
    json_t *resp = bt_openai_response(BT_OPENAI_CHAT, "chatcmpl-1", "m", 1,
                                      "x", 1, NULL,
                                      BATON__V1__FINISH_REASON__FINISH_REASON_STOP,
                                      NULL);
    json_t *calls = json_pack("[{s:s, s:s}]", "name", "get_time", "arguments", "{}");
    json_t *choice, *tc, *chunk;
    char id[32], id2[32];

    (void)state;
    assert_int_equal(bt_openai_tool_response(resp, calls, "x", 0, "chatcmpl-1"),
                     BT_OK);
    choice = json_array_get(json_object_get(resp, "choices"), 0);
    assert_string_equal(json_string_value(json_object_get(choice, "finish_reason")),
                        "tool_calls");
    assert_true(json_is_null(json_object_get(json_object_get(choice, "message"),
                                             "content")));
    tc = json_array_get(json_object_get(json_object_get(choice, "message"),
                                        "tool_calls"), 0);
    bt_tool_call_id("chatcmpl-1", 0, id);
    assert_string_equal(json_string_value(json_object_get(tc, "id")), id);
    assert_int_equal(strlen(id), 29);
    assert_memory_equal(id, "call_", 5);
    bt_tool_call_id("chatcmpl-1", 1, id2);
    assert_string_not_equal(id, id2);
    assert_string_equal(json_string_value(json_object_get(tc, "type")), "function");
    assert_string_equal(json_string_value(json_object_get(json_object_get(tc,
                        "function"), "arguments")), "{}");
    json_decref(resp);
    json_decref(calls);

    /* the first chunk: role, content null, the call's id, type and name */
    chunk = bt_openai_chunk(BT_OPENAI_CHAT, "chatcmpl-1", "m", 1, "", 0, true,
                            NULL, BATON__V1__FINISH_REASON__FINISH_REASON_UNSPECIFIED);
    assert_int_equal(bt_openai_tool_chunk(chunk, 0, "chatcmpl-1", "get_time",
                                          NULL, 0), BT_OK);
    choice = json_array_get(json_object_get(chunk, "choices"), 0);
    tc = json_object_get(choice, "delta");
    assert_true(json_is_null(json_object_get(tc, "content")));
    tc = json_array_get(json_object_get(tc, "tool_calls"), 0);
    assert_int_equal(json_integer_value(json_object_get(tc, "index")), 0);
    assert_string_equal(json_string_value(json_object_get(tc, "id")), id);
    assert_string_equal(json_string_value(json_object_get(json_object_get(tc,
                        "function"), "name")), "get_time");
    json_decref(chunk);
    /* a later chunk: the index and a piece of the arguments only */
    chunk = bt_openai_chunk(BT_OPENAI_CHAT, "chatcmpl-1", "m", 1, "", 0, false,
                            NULL, BATON__V1__FINISH_REASON__FINISH_REASON_UNSPECIFIED);
    assert_int_equal(bt_openai_tool_chunk(chunk, 0, "chatcmpl-1", NULL,
                                          "{\"a\"", 4), BT_OK);
    tc = json_object_get(json_array_get(json_object_get(chunk, "choices"), 0),
                         "delta");
    assert_null(json_object_get(tc, "content"));
    tc = json_array_get(json_object_get(tc, "tool_calls"), 0);
    assert_null(json_object_get(tc, "id"));
    assert_string_equal(json_string_value(json_object_get(json_object_get(tc,
                        "function"), "arguments")), "{\"a\"");
    json_decref(chunk);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tools_modes),
        cmocka_unit_test(test_tools_errors),
        cmocka_unit_test(test_tool_messages),
        cmocka_unit_test(test_tool_stream),
        cmocka_unit_test(test_auto_parse),
        cmocka_unit_test(test_text_safe),
        cmocka_unit_test(test_shapes),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
