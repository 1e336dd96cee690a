#include "openai.h"

#include <stdlib.h>
#include <math.h>
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

static bt_status_t parse(bt_openai_kind_t kind, const char *body)
{
    bt_arena_reset(arena);
    return bt_openai_parse(kind, body, strlen(body), 1 << 16, arena, &req, err,
                           sizeof(err), param, sizeof(param));
}

static void test_completion_full(void **state)
{
    (void)state;
    assert_int_equal(parse(BT_OPENAI_COMPLETIONS,
        "{\"model\":\"builtin\",\"prompt\":\"Hello\",\"max_tokens\":7,"
        "\"temperature\":0,\"top_p\":0.9,\"top_k\":-1,\"min_p\":0.05,"
        "\"seed\":42,\"stop\":[\"\\n\",\"END\"],\"stop_token_ids\":[5,6],"
        "\"stream\":true,\"stream_options\":{\"include_usage\":true},"
        "\"logprobs\":3,\"n\":1,\"ignore_eos\":true,\"user\":\"u\"}"), BT_OK);
    assert_string_equal(req.gen.model, "builtin");
    assert_int_equal(req.gen.input_case, BATON__V1__GENERATE_REQUEST__INPUT_PROMPT);
    assert_string_equal(req.gen.prompt, "Hello");
    assert_int_equal(req.sampling.max_tokens, 7);
    assert_true(req.sampling.temperature == 0.0f);
    assert_true(req.sampling.top_p == 0.9f);
    assert_int_equal(req.sampling.top_k, 0);
    assert_int_equal(req.sampling.seed_opt_case, BATON__V1__SAMPLING_PARAMS__SEED_OPT_SEED);
    assert_int_equal(req.sampling.seed, 42);
    assert_int_equal(req.sampling.n_stop, 2);
    assert_string_equal(req.sampling.stop[1], "END");
    assert_int_equal(req.sampling.n_stop_token_ids, 2);
    assert_int_equal(req.sampling.stop_token_ids[1], 6);
    assert_int_equal(req.sampling.logprobs, 3);
    assert_true(req.sampling.logprobs_chosen);
    assert_true(req.logprobs);
    assert_true(req.sampling.ignore_eos);
    assert_true(req.stream);
    assert_true(req.include_usage);
}

static void test_defaults_and_token_prompt(void **state)
{
    (void)state;
    assert_int_equal(parse(BT_OPENAI_COMPLETIONS,
                           "{\"model\":\"m\",\"prompt\":[1,2,3]}"), BT_OK);
    assert_int_equal(req.gen.input_case, BATON__V1__GENERATE_REQUEST__INPUT_TOKENS);
    assert_int_equal(req.ids.n_ids, 3);
    assert_int_equal(req.ids.ids[2], 3);
    /* OpenAI defaults, not proto zero values */
    assert_true(req.sampling.temperature == 1.0f);
    assert_true(req.sampling.top_p == 1.0f);
    assert_int_equal(req.sampling.max_tokens, 0);
    assert_int_equal(req.sampling.seed_opt_case, BATON__V1__SAMPLING_PARAMS__SEED_OPT__NOT_SET);
    assert_false(req.stream);
    assert_false(req.logprobs);
    assert_false(req.sampling.logprobs_chosen);
    /* logprobs: 0 is the chosen token's logprob without alternatives */
    assert_int_equal(parse(BT_OPENAI_COMPLETIONS,
                           "{\"model\":\"m\",\"prompt\":\"x\",\"logprobs\":0}"), BT_OK);
    assert_true(req.logprobs);
    assert_int_equal(req.sampling.logprobs, 0);
    assert_true(req.sampling.logprobs_chosen);
    assert_int_equal(parse(BT_OPENAI_COMPLETIONS,
                           "{\"model\":\"m\",\"prompt\":\"x\",\"logprobs\":null}"), BT_OK);
    assert_false(req.sampling.logprobs_chosen);
    /* a single prompt in an array */
    assert_int_equal(parse(BT_OPENAI_COMPLETIONS,
                           "{\"model\":\"m\",\"prompt\":[\"hi\"],\"stop\":\"x\"}"), BT_OK);
    assert_string_equal(req.gen.prompt, "hi");
    assert_int_equal(req.sampling.n_stop, 1);
}

#define CHAT_MSG "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]"

/* null means absent, for every optional field, in both APIs. */
static void test_nulls_mean_absent(void **state)
{
    static const char *const common_fields[] = {
        "max_tokens", "temperature", "top_p", "top_k", "min_p",
        "presence_penalty", "frequency_penalty", "repetition_penalty", "seed",
        "stop", "stop_token_ids", "stream", "stream_options", "logprobs", "n",
        "ignore_eos", "user", "logit_bias",
    };
    static const char *const completion_fields[] = { "echo", "best_of", "suffix" };
    static const char *const chat_fields[] = {
        "max_completion_tokens", "top_logprobs", "tools", "tool_choice",
        "response_format", "add_generation_prompt", "store", "metadata",
        "service_tier", "parallel_tool_calls", "modalities", "prediction",
        "audio", "functions", "function_call", "reasoning_effort",
    };
    char body[1024];

    (void)state;
    for (size_t i = 0; i < sizeof(common_fields) / sizeof(common_fields[0]); i++) {
        snprintf(body, sizeof(body), "{\"model\":\"m\",\"prompt\":\"x\",\"%s\":null}",
                 common_fields[i]);
        if (parse(BT_OPENAI_COMPLETIONS, body) != BT_OK) {
            fail_msg("completions %s: null refused: %s", common_fields[i], err);
        }
        snprintf(body, sizeof(body), CHAT_MSG ",\"%s\":null}", common_fields[i]);
        if (parse(BT_OPENAI_CHAT, body) != BT_OK) {
            fail_msg("chat %s: null refused: %s", common_fields[i], err);
        }
        assert_true(req.sampling.temperature == 1.0f);
        assert_true(req.sampling.top_p == 1.0f);
        assert_int_equal(req.sampling.max_tokens, 0);
    }
    for (size_t i = 0; i < sizeof(completion_fields) / sizeof(completion_fields[0]); i++) {
        snprintf(body, sizeof(body), "{\"model\":\"m\",\"prompt\":\"x\",\"%s\":null}",
                 completion_fields[i]);
        if (parse(BT_OPENAI_COMPLETIONS, body) != BT_OK) {
            fail_msg("completions %s: null refused: %s", completion_fields[i], err);
        }
    }
    for (size_t i = 0; i < sizeof(chat_fields) / sizeof(chat_fields[0]); i++) {
        snprintf(body, sizeof(body), CHAT_MSG ",\"%s\":null}", chat_fields[i]);
        if (parse(BT_OPENAI_CHAT, body) != BT_OK) {
            fail_msg("chat %s: null refused: %s", chat_fields[i], err);
        }
    }
    /* inside stream_options too; an assistant turn with null content */
    assert_int_equal(parse(BT_OPENAI_CHAT, CHAT_MSG ",\"stream\":true,"
                           "\"stream_options\":{\"include_usage\":null}}"), BT_OK);
    assert_false(req.include_usage);
    assert_int_equal(parse(BT_OPENAI_CHAT, "{\"model\":\"m\",\"messages\":["
                           "{\"role\":\"user\",\"content\":\"x\"},"
                           "{\"role\":\"assistant\",\"content\":null},"
                           "{\"role\":\"user\",\"content\":\"y\"}]}"), BT_OK);
    assert_string_equal(req.chat.messages[1]->content, "");
}

/* OpenAI's fields that cannot change the output are accepted. */
static void test_ignored_fields(void **state)
{
    (void)state;
    assert_int_equal(parse(BT_OPENAI_CHAT, CHAT_MSG ",\"store\":false,"
        "\"metadata\":{\"a\":\"b\"},\"service_tier\":\"auto\","
        "\"parallel_tool_calls\":true,\"modalities\":[\"text\"],\"user\":\"u\","
        "\"prompt_cache_key\":\"k\",\"safety_identifier\":\"s\","
        "\"prediction\":{\"type\":\"content\",\"content\":\"x\"},"
        "\"response_format\":{\"type\":\"text\"},\"tool_choice\":\"none\","
        "\"logit_bias\":{}}"), BT_OK);
    assert_int_equal(parse(BT_OPENAI_COMPLETIONS,
        "{\"model\":\"m\",\"prompt\":\"x\",\"suffix\":\"\",\"echo\":false,"
        "\"best_of\":1,\"user\":\"u\",\"logit_bias\":{}}"), BT_OK);
    /* max_completion_tokens wins over max_tokens */
    assert_int_equal(parse(BT_OPENAI_CHAT, CHAT_MSG ",\"max_tokens\":5,"
                           "\"max_completion_tokens\":9}"), BT_OK);
    assert_int_equal(req.sampling.max_tokens, 9);
    assert_int_equal(parse(BT_OPENAI_CHAT, CHAT_MSG ",\"max_completion_tokens\":9,"
                           "\"max_tokens\":5}"), BT_OK);
    assert_int_equal(req.sampling.max_tokens, 9);
}

/* response_format: json_object and json_schema travel in the sampling
 * parameters (the schema as compact JSON text); text means none. */
static void test_response_format(void **state)
{
    (void)state;
    assert_int_equal(parse(BT_OPENAI_CHAT, CHAT_MSG ",\"response_format\":"
                           "{\"type\":\"text\"}}"), BT_OK);
    assert_null(req.sampling.response_format);
    assert_int_equal(parse(BT_OPENAI_CHAT, CHAT_MSG ",\"response_format\":"
                           "{\"type\":\"json_object\"}}"), BT_OK);
    assert_non_null(req.sampling.response_format);
    assert_int_equal(req.sampling.response_format->type,
                     BATON__V1__RESPONSE_FORMAT__TYPE__TYPE_JSON_OBJECT);
    assert_int_equal(parse(BT_OPENAI_COMPLETIONS, "{\"model\":\"m\",\"prompt\":\"x\","
                           "\"response_format\":{\"type\":\"json_schema\",\"json_schema\":"
                           "{\"name\":\"p\",\"strict\":true,\"schema\":{\"type\": \"object\","
                           "\"properties\":{\"a\":{\"type\":\"integer\"}}}}}}"), BT_OK);
    assert_int_equal(req.sampling.response_format->type,
                     BATON__V1__RESPONSE_FORMAT__TYPE__TYPE_JSON_SCHEMA);
    assert_string_equal(req.sampling.response_format->name, "p");
    assert_true(req.sampling.response_format->strict);
    assert_string_equal(req.sampling.response_format->schema,
                        "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"}}}");
}

/* n and best_of: absent = 1, best_of absent = n, n streamed. */
static void test_choices(void **state)
{
    (void)state;
    assert_int_equal(parse(BT_OPENAI_COMPLETIONS, "{\"model\":\"m\",\"prompt\":\"x\"}"),
                     BT_OK);
    assert_int_equal(req.n, 1);
    assert_int_equal(req.best_of, 1);
    assert_int_equal(parse(BT_OPENAI_COMPLETIONS, "{\"model\":\"m\",\"prompt\":\"x\","
                           "\"n\":4,\"stream\":true}"), BT_OK);
    assert_int_equal(req.n, 4);
    assert_int_equal(req.best_of, 4);
    assert_int_equal(parse(BT_OPENAI_COMPLETIONS, "{\"model\":\"m\",\"prompt\":\"x\","
                           "\"n\":2,\"best_of\":5}"), BT_OK);
    assert_int_equal(req.n, 2);
    assert_int_equal(req.best_of, 5);
    assert_int_equal(parse(BT_OPENAI_CHAT, CHAT_MSG ",\"n\":3}"), BT_OK);
    assert_int_equal(req.n, 3);
    assert_int_equal(req.best_of, 3);
}

/* logit_bias: decimal ids to biases, in order, bounds included. */
static void test_logit_bias(void **state)
{
    (void)state;
    assert_int_equal(parse(BT_OPENAI_COMPLETIONS,
        "{\"model\":\"m\",\"prompt\":\"x\",\"logit_bias\":"
        "{\"7\":-100,\"0\":100,\"4095\":0.5}}"), BT_OK);
    assert_int_equal(req.sampling.n_logit_bias, 3);
    assert_int_equal(req.sampling.logit_bias[0]->token_id, 7);
    assert_true(req.sampling.logit_bias[0]->bias == -100.0f);
    assert_int_equal(req.sampling.logit_bias[1]->token_id, 0);
    assert_true(req.sampling.logit_bias[1]->bias == 100.0f);
    assert_int_equal(req.sampling.logit_bias[2]->token_id, 4095);
    assert_true(req.sampling.logit_bias[2]->bias == 0.5f);
    assert_ptr_equal(req.gen.sampling, &req.sampling);
    assert_int_equal(parse(BT_OPENAI_CHAT, CHAT_MSG ",\"logit_bias\":{\"1\":2}}"),
                     BT_OK);
    assert_int_equal(req.sampling.n_logit_bias, 1);
}

static void test_chat(void **state)
{
    (void)state;
    assert_int_equal(parse(BT_OPENAI_CHAT,
        "{\"model\":\"m\",\"messages\":[{\"role\":\"developer\",\"content\":\"be brief\"},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},"
        "{\"type\":\"text\",\"text\":\"b\"}]}],\"max_completion_tokens\":9,"
        "\"logprobs\":true,\"top_logprobs\":2}"), BT_OK);
    assert_int_equal(req.gen.input_case, BATON__V1__GENERATE_REQUEST__INPUT_CHAT);
    assert_int_equal(req.chat.n_messages, 2);
    assert_string_equal(req.chat.messages[0]->role, "system");
    assert_string_equal(req.chat.messages[1]->content, "ab");
    assert_true(req.chat.add_generation_prompt);
    assert_int_equal(req.sampling.max_tokens, 9);
    assert_int_equal(req.sampling.logprobs, 2);
    assert_true(req.sampling.logprobs_chosen);
    /* logprobs: true alone: the chosen token's, no alternatives */
    assert_int_equal(parse(BT_OPENAI_CHAT,
        "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],"
        "\"logprobs\":true}"), BT_OK);
    assert_int_equal(req.sampling.logprobs, 0);
    assert_true(req.sampling.logprobs_chosen);
    assert_int_equal(parse(BT_OPENAI_CHAT,
        "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],"
        "\"logprobs\":false}"), BT_OK);
    assert_int_equal(req.sampling.logprobs, 0);
    assert_false(req.sampling.logprobs_chosen);
}

typedef struct {
    bt_openai_kind_t kind;
    const char      *body;
    bt_status_t      status;
    const char      *param;
    const char      *message;  /* substring */
} bad_case_t;

static void test_bad_requests(void **state)
{
    static const bad_case_t cases[] = {
        { BT_OPENAI_COMPLETIONS, "{\"model\":\"m\",\"prompt\":\"x\"", BT_ERR_INVALID_ARG,
          "", "malformed json" },
        { BT_OPENAI_COMPLETIONS, "[1]", BT_ERR_INVALID_ARG, "", "must be a JSON object" },
        { BT_OPENAI_COMPLETIONS, "{\"prompt\":\"x\"}", BT_ERR_INVALID_ARG, "model",
          "missing required field 'model'" },
        { BT_OPENAI_COMPLETIONS, "{\"model\":\"\",\"prompt\":\"x\"}", BT_ERR_INVALID_ARG,
          "model", "must not be empty" },
        { BT_OPENAI_COMPLETIONS, "{\"model\":\"m\",\"prompt\":\"\"}", BT_ERR_INVALID_ARG,
          "prompt", "must not be empty" },
        { BT_OPENAI_COMPLETIONS, "{\"model\":\"m\"}", BT_ERR_INVALID_ARG, "prompt",
          "missing required field 'prompt'" },
        { BT_OPENAI_COMPLETIONS, "{\"model\":\"m\",\"prompt\":\"x\",\"max_tokens\":0}",
          BT_ERR_INVALID_ARG, "max_tokens", "out of range" },
        { BT_OPENAI_COMPLETIONS, "{\"model\":\"m\",\"prompt\":\"x\",\"max_tokens\":-5}",
          BT_ERR_INVALID_ARG, "max_tokens", "out of range" },
        { BT_OPENAI_COMPLETIONS, "{\"model\":\"m\",\"prompt\":\"x\",\"max_tokens\":99999999999}",
          BT_ERR_INVALID_ARG, "max_tokens", "out of range" },
        { BT_OPENAI_COMPLETIONS, "{\"model\":\"m\",\"prompt\":\"x\",\"max_tokens\":\"5\"}",
          BT_ERR_INVALID_ARG, "max_tokens", "expected an integer, got a string" },
        { BT_OPENAI_COMPLETIONS, "{\"model\":\"m\",\"prompt\":\"x\",\"temperature\":3}",
          BT_ERR_INVALID_ARG, "temperature", "out of range" },
        { BT_OPENAI_COMPLETIONS, "{\"model\":\"m\",\"prompt\":\"x\",\"top_p\":0}",
          BT_ERR_INVALID_ARG, "top_p", "greater than 0" },
        { BT_OPENAI_COMPLETIONS, "{\"model\":\"m\",\"prompt\":\"x\",\"frobnicate\":1}",
          BT_ERR_INVALID_ARG, "frobnicate", "unknown field 'frobnicate'" },
        { BT_OPENAI_COMPLETIONS, "{\"model\":\"m\",\"prompt\":\"x\",\"n\":0}",
          BT_ERR_INVALID_ARG, "n", "out of range" },
        { BT_OPENAI_COMPLETIONS, "{\"model\":\"m\",\"prompt\":\"x\",\"n\":129}",
          BT_ERR_INVALID_ARG, "n", "out of range" },
        { BT_OPENAI_COMPLETIONS, "{\"model\":\"m\",\"prompt\":\"x\",\"n\":3,\"best_of\":2}",
          BT_ERR_INVALID_ARG, "best_of", "at least 'n'" },
        { BT_OPENAI_COMPLETIONS, "{\"model\":\"m\",\"prompt\":\"x\",\"best_of\":2,"
          "\"stream\":true}", BT_ERR_INVALID_ARG, "best_of", "cannot be streamed" },
        { BT_OPENAI_COMPLETIONS, "{\"model\":\"m\",\"prompt\":\"x\",\"n\":2,\"echo\":true}",
          BT_ERR_INVALID_ARG, "echo", "one choice only" },
        { BT_OPENAI_COMPLETIONS, "{\"model\":\"m\",\"prompt\":\"x\",\"logit_bias\":{\"5\":101}}",
          BT_ERR_INVALID_ARG, "logit_bias", "must be in [-100, 100]" },
        { BT_OPENAI_COMPLETIONS, "{\"model\":\"m\",\"prompt\":\"x\",\"logit_bias\":{\" 5\":1}}",
          BT_ERR_INVALID_ARG, "logit_bias", "key ' 5' is not a token id" },
        { BT_OPENAI_COMPLETIONS, "{\"model\":\"m\",\"prompt\":\"x\",\"logit_bias\":{\"5\":true}}",
          BT_ERR_INVALID_ARG, "logit_bias", "must be a number" },
        { BT_OPENAI_COMPLETIONS, "{\"model\":\"m\",\"prompt\":\"x\",\"logit_bias\":[5]}",
          BT_ERR_INVALID_ARG, "logit_bias", "must be an object" },
        { BT_OPENAI_COMPLETIONS, "{\"model\":\"m\",\"prompt\":\"x\",\"logit_bias\":{\"2147483648\":1}}",
          BT_ERR_INVALID_ARG, "logit_bias", "is not a token id" },
        { BT_OPENAI_COMPLETIONS, "{\"model\":\"m\",\"prompt\":\"x\",\"store\":true}",
          BT_ERR_INVALID_ARG, "store", "unknown field 'store'" },
        { BT_OPENAI_COMPLETIONS, "{\"model\":null,\"prompt\":\"x\"}",
          BT_ERR_INVALID_ARG, "model", "missing required field 'model'" },
        { BT_OPENAI_COMPLETIONS, "{\"model\":\"m\",\"prompt\":\"a\\u0000b\"}",
          BT_ERR_INVALID_ARG, "", "NUL character" },
        { BT_OPENAI_COMPLETIONS, "{\"model\":\"m\",\"prompt\":[\"a\",\"b\"]}",
          BT_ERR_INVALID_ARG, "prompt", "batched prompts" },
        { BT_OPENAI_COMPLETIONS, "{\"model\":\"m\",\"prompt\":[1,-2]}",
          BT_ERR_INVALID_ARG, "prompt", "'prompt[1]'" },
        { BT_OPENAI_COMPLETIONS, "{\"model\":\"m\",\"prompt\":\"x\",\"stop\":[\"\"]}",
          BT_ERR_INVALID_ARG, "stop", "1 to 256 bytes" },
        { BT_OPENAI_COMPLETIONS, "{\"model\":\"m\",\"prompt\":\"x\",\"stop\":5}",
          BT_ERR_INVALID_ARG, "stop", "expected a string or an array" },
        { BT_OPENAI_COMPLETIONS, "{\"model\":\"m\",\"prompt\":\"x\",\"stream_options\":{}}",
          BT_ERR_INVALID_ARG, "stream_options", "needs 'stream': true" },
        { BT_OPENAI_COMPLETIONS, "{\"model\":\"m\",\"prompt\":\"x\",\"logprobs\":21}",
          BT_ERR_INVALID_ARG, "logprobs", "out of range" },
        { BT_OPENAI_COMPLETIONS, "{\"model\":\"m\",\"prompt\":\"\\ud800\"}",
          BT_ERR_INVALID_ARG, "", "malformed json" },
        { BT_OPENAI_COMPLETIONS, "{\"model\":\"m\",\"prompt\":\"\xc3\x28\"}",
          BT_ERR_INVALID_ARG, "", "malformed json" },
        { BT_OPENAI_CHAT, "{\"model\":\"m\",\"messages\":[]}", BT_ERR_INVALID_ARG,
          "messages", "must not be empty" },
        { BT_OPENAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"wizard\",\"content\":\"x\"}]}",
          BT_ERR_INVALID_ARG, "messages", "messages[0].role" },
        { BT_OPENAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":5}]}",
          BT_ERR_INVALID_ARG, "messages", "messages[0].content" },
        { BT_OPENAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":"
          "[{\"type\":\"image_url\"}]}]}", BT_ERR_INVALID_ARG, "messages", "only parts of type 'text'" },
        { BT_OPENAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
          "\"tools\":[]}", BT_ERR_INVALID_ARG, "tools", "expected a non-empty array" },
        { BT_OPENAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
          "\"top_logprobs\":2}", BT_ERR_INVALID_ARG, "top_logprobs", "needs 'logprobs': true" },
        { BT_OPENAI_CHAT, "{\"model\":\"m\",\"prompt\":\"x\"}", BT_ERR_INVALID_ARG,
          "prompt", "unknown field 'prompt'" },
        { BT_OPENAI_CHAT, CHAT_MSG ",\"response_format\":{\"type\":\"xml\"}}",
          BT_ERR_INVALID_ARG, "response_format", "'type' must be text, json_object" },
        { BT_OPENAI_CHAT, CHAT_MSG ",\"response_format\":{\"type\":\"json_schema\","
          "\"json_schema\":{}}}", BT_ERR_INVALID_ARG, "response_format",
          "'json_schema.schema' must be" },
        { BT_OPENAI_CHAT, CHAT_MSG ",\"response_format\":{\"type\":\"json_schema\","
          "\"json_schema\":{\"name\":\"x\",\"schema\":{\"type\":\"object\","
          "\"properties\":{\"id\":{\"type\":\"string\",\"format\":\"uri\"}}}}}}",
          BT_ERR_INVALID_ARG, "response_format",
          "unsupported schema keyword 'format' at /properties/id" },
        { BT_OPENAI_CHAT, CHAT_MSG ",\"response_format\":{\"type\":\"json_object\","
          "\"schema\":{}}}", BT_ERR_INVALID_ARG, "response_format", "unknown field 'schema'" },
        { BT_OPENAI_COMPLETIONS, "{\"model\":\"m\",\"prompt\":\"x\",\"response_format\":"
          "{\"type\":\"json_schema\",\"json_schema\":{\"schema\":{\"oneOf\":[]}}}}",
          BT_ERR_INVALID_ARG, "response_format", "'oneOf'" },
        { BT_OPENAI_CHAT, CHAT_MSG ",\"modalities\":[\"text\",\"audio\"]}",
          BT_ERR_INVALID_ARG, "modalities", "only [\"text\"]" },
        { BT_OPENAI_CHAT, CHAT_MSG ",\"audio\":{}}", BT_ERR_INVALID_ARG, "audio",
          "not supported" },
        { BT_OPENAI_CHAT, CHAT_MSG ",\"functions\":[]}", BT_ERR_INVALID_ARG,
          "functions", "not supported" },
        { BT_OPENAI_CHAT, CHAT_MSG ",\"tool_choice\":\"auto\"}", BT_ERR_INVALID_ARG,
          "tool_choice", "no 'tools' to choose from" },
        { BT_OPENAI_CHAT, CHAT_MSG ",\"store\":\"yes\"}", BT_ERR_INVALID_ARG,
          "store", "expected a boolean" },
        { BT_OPENAI_CHAT, CHAT_MSG ",\"metadata\":[]}", BT_ERR_INVALID_ARG,
          "metadata", "expected an object" },
        { BT_OPENAI_CHAT, CHAT_MSG ",\"stream\":true,\"stream_options\":{\"x\":1}}",
          BT_ERR_INVALID_ARG, "x", "unknown field 'stream_options.x'" },
        { BT_OPENAI_CHAT, CHAT_MSG ",\"max_completion_tokens\":0,\"max_tokens\":5}",
          BT_ERR_INVALID_ARG, "max_completion_tokens", "out of range" },
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        bt_status_t s = parse(cases[i].kind, cases[i].body);

        if (s != cases[i].status || strcmp(param, cases[i].param) != 0 ||
            strstr(err, cases[i].message) == NULL) {
            print_error("case %zu: %s\n  got status %d param '%s' err '%s'\n", i,
                        cases[i].body, s, param, err);
            fail();
        }
    }
}

static void test_oversized_body(void **state)
{
    char *big = malloc(100000);
    bt_status_t s;

    (void)state;
    memset(big, ' ', 99999);
    big[99999] = '\0';
    memcpy(big, "{\"model\":\"m\",\"prompt\":\"x\"}", 26);
    bt_arena_reset(arena);
    s = bt_openai_parse(BT_OPENAI_COMPLETIONS, big, 99999, 1 << 16, arena, &req,
                        err, sizeof(err), param, sizeof(param));
    assert_int_equal(s, BT_ERR_TOO_LARGE);
    free(big);
}

static void test_response_shapes(void **state)
{
    Baton__V1__Usage usage = BATON__V1__USAGE__INIT;
    json_t *j;
    char *text;

    (void)state;
    usage.prompt_tokens = 5;
    usage.completion_tokens = 3;
    usage.cached_tokens = 2;
    j = bt_openai_response(BT_OPENAI_CHAT, "chatcmpl-1", "m", 1700000000, "hi", 2,
                           NULL, BATON__V1__FINISH_REASON__FINISH_REASON_LENGTH,
                           &usage);
    text = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
    assert_string_equal(text,
        "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\",\"created\":1700000000,"
        "\"model\":\"m\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
        "\"content\":\"hi\"},\"logprobs\":null,\"finish_reason\":\"length\"}],"
        "\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":3,\"total_tokens\":8,"
        "\"prompt_tokens_details\":{\"cached_tokens\":2}}}");
    free(text);
    json_decref(j);

    j = bt_openai_chunk(BT_OPENAI_CHAT, "c", "m", 1, "", 0, true, NULL,
                        BATON__V1__FINISH_REASON__FINISH_REASON_UNSPECIFIED);
    text = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
    assert_non_null(strstr(text, "\"delta\":{\"role\":\"assistant\",\"content\":\"\"}"));
    assert_non_null(strstr(text, "\"finish_reason\":null"));
    assert_non_null(strstr(text, "\"object\":\"chat.completion.chunk\""));
    free(text);
    json_decref(j);

    j = bt_openai_chunk(BT_OPENAI_COMPLETIONS, "c", "m", 1, "ab", 2, false, NULL,
                        BATON__V1__FINISH_REASON__FINISH_REASON_STOP);
    text = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
    assert_non_null(strstr(text, "\"object\":\"text_completion\""));
    assert_non_null(strstr(text, "\"text\":\"ab\""));
    assert_non_null(strstr(text, "\"finish_reason\":\"stop\""));
    free(text);
    json_decref(j);

    j = bt_openai_usage_chunk(BT_OPENAI_COMPLETIONS, "c", "m", 1, &usage);
    text = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
    assert_non_null(strstr(text, "\"choices\":[],\"usage\":{\"prompt_tokens\":5"));
    free(text);
    json_decref(j);
}

/* Two tokens: "He" (alternatives "He", "Hi") and a byte-level token
 * holding the first two bytes of U+2019, whose alternative has -inf. */
static json_t *two_tokens(bt_openai_kind_t kind)
{
    const bt_openai_tok_lp_t he = { "He", 2, -0.5f };
    const bt_openai_tok_lp_t tops1[2] = { { "He", 2, -0.5f }, { "Hi", 2, -1.25f } };
    const bt_openai_tok_lp_t part = { "\xe2\x80", 2, -2.0f };
    const bt_openai_tok_lp_t tops2[1] = { { "x", 1, -INFINITY } };
    json_t *lp = NULL;

    assert_int_equal(bt_openai_logprobs_add(kind, &lp, &he, tops1, 2, 0), BT_OK);
    assert_int_equal(bt_openai_logprobs_add(kind, &lp, &part, tops2, 1, 2), BT_OK);
    return lp;
}

static void test_logprobs_shapes(void **state)
{
    json_t *j;
    char *text;

    (void)state;
    j = two_tokens(BT_OPENAI_COMPLETIONS);
    text = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
    assert_string_equal(text,
        "{\"tokens\":[\"He\",\"bytes:\\\\xe2\\\\x80\"],"
        "\"token_logprobs\":[-0.5,-2.0],"
        "\"top_logprobs\":[{\"He\":-0.5,\"Hi\":-1.25},{\"x\":-9999.0}],"
        "\"text_offset\":[0,2]}");
    free(text);
    /* the response takes the object */
    j = bt_openai_response(BT_OPENAI_COMPLETIONS, "cmpl-1", "m", 1, "He", 2, j,
                           BATON__V1__FINISH_REASON__FINISH_REASON_LENGTH, NULL);
    text = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
    assert_non_null(strstr(text, "\"logprobs\":{\"tokens\":[\"He\","));
    free(text);
    json_decref(j);

    j = two_tokens(BT_OPENAI_CHAT);
    text = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
    assert_string_equal(text,
        "{\"content\":[{\"token\":\"He\",\"logprob\":-0.5,\"bytes\":[72,101],"
        "\"top_logprobs\":[{\"token\":\"He\",\"logprob\":-0.5,\"bytes\":[72,101]},"
        "{\"token\":\"Hi\",\"logprob\":-1.25,\"bytes\":[72,105]}]},"
        "{\"token\":\"bytes:\\\\xe2\\\\x80\",\"logprob\":-2.0,\"bytes\":[226,128],"
        "\"top_logprobs\":[{\"token\":\"x\",\"logprob\":-9999.0,\"bytes\":[120]}]}]}");
    free(text);
    j = bt_openai_chunk(BT_OPENAI_CHAT, "c", "m", 1, "", 0, false, j,
                        BATON__V1__FINISH_REASON__FINISH_REASON_UNSPECIFIED);
    text = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
    assert_non_null(strstr(text, "\"delta\":{},\"logprobs\":{\"content\":[{"));
    free(text);
    json_decref(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_completion_full),
        cmocka_unit_test(test_defaults_and_token_prompt),
        cmocka_unit_test(test_logit_bias),
        cmocka_unit_test(test_choices),
        cmocka_unit_test(test_chat),
        cmocka_unit_test(test_response_format),
        cmocka_unit_test(test_bad_requests),
        cmocka_unit_test(test_nulls_mean_absent),
        cmocka_unit_test(test_ignored_fields),
        cmocka_unit_test(test_oversized_body),
        cmocka_unit_test(test_response_shapes),
        cmocka_unit_test(test_logprobs_shapes),
    };

    return cmocka_run_group_tests_name("router_openai", tests, setup, teardown);
}
