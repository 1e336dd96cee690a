/* Chat templates: exact prompts per family (from each family's reference
 * template), detection from real tokenizer files, override by name, and the
 * errors. */
#include "engine/tokenizer/chat_template.h"
#include "engine/tokenizer/tokenizer.h"

#include "tok_test_util.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

static char data_dir[1024];
static const char *data;

static const bt_chat_msg_t conv[] = {
    {.role = "system", .content = "You are terse."},
    {.role = "user", .content = "Hi!"},
    {.role = "assistant", .content = " Hello. "},
    {.role = "user", .content = "2+2?"},
};

static void expect(bt_chat_family_t f, const bt_chat_msg_t *m, size_t n,
                   bool gen, const char *want)
{
    bt_buf_t out;
    char err[256];

    bt_buf_init(&out, 1 << 20);
    if (bt_chat_render(NULL, f, m, n, gen, &out, err, sizeof(err)) != BT_OK)
        fail_msg("render %s: %s", bt_chat_family_name(f), err);
    assert_string_equal(out.data ? out.data : "", want);
    bt_buf_cleanup(&out);
}

static void test_llama3(void **state)
{
    (void)state;
    expect(BT_CHAT_LLAMA3, conv, 4, true,
           "<|begin_of_text|>"
           "<|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|>"
           "<|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>"
           "<|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|>"
           "<|start_header_id|>user<|end_header_id|>\n\n2+2?<|eot_id|>"
           "<|start_header_id|>assistant<|end_header_id|>\n\n");
    expect(BT_CHAT_LLAMA3, conv + 1, 1, false,
           "<|begin_of_text|>"
           "<|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>");
}

static void test_chatml(void **state)
{
    (void)state;
    expect(BT_CHAT_CHATML, conv, 4, true,
           "<|im_start|>system\nYou are terse.<|im_end|>\n"
           "<|im_start|>user\nHi!<|im_end|>\n"
           "<|im_start|>assistant\n Hello. <|im_end|>\n"
           "<|im_start|>user\n2+2?<|im_end|>\n"
           "<|im_start|>assistant\n");
    expect(BT_CHAT_CHATML, conv + 1, 1, false,
           "<|im_start|>user\nHi!<|im_end|>\n");
}

static void test_llama2(void **state)
{
    (void)state;
    expect(BT_CHAT_LLAMA2, conv, 4, true,
           "<s>[INST] <<SYS>>\nYou are terse.\n<</SYS>>\n\nHi! [/INST]"
           " Hello. </s>"
           "<s>[INST] 2+2? [/INST]");
    expect(BT_CHAT_LLAMA2, conv + 1, 1, true, "<s>[INST] Hi! [/INST]");
}

static void test_mistral(void **state)
{
    (void)state;
    expect(BT_CHAT_MISTRAL, conv + 1, 3, true,
           "<s>[INST] Hi! [/INST] Hello. </s>[INST] 2+2? [/INST]");
    expect(BT_CHAT_MISTRAL, conv, 2, false,
           "<s>[INST] You are terse.\n\nHi! [/INST]");
}

static void test_role_errors(void **state)
{
    bt_buf_t out;
    char err[256];
    const bt_chat_msg_t bad[] = {{.role = "user", .content = "a"},
                                 {.role = "user", .content = "b"}};
    const bt_chat_msg_t badrole[] = {{.role = "us<|er", .content = "a"}};

    (void)state;
    bt_buf_init(&out, 1 << 20);
    assert_int_equal(bt_chat_render(NULL, BT_CHAT_LLAMA2, bad, 2, true, &out,
                                    err, sizeof(err)), BT_ERR_INVALID_ARG);
    assert_non_null(strstr(err, "alternate"));
    assert_int_equal(bt_chat_render(NULL, BT_CHAT_MISTRAL, conv + 2, 1, true,
                                    &out, err, sizeof(err)),
                     BT_ERR_INVALID_ARG);
    assert_int_equal(bt_chat_render(NULL, BT_CHAT_CHATML, badrole, 1, true,
                                    &out, err, sizeof(err)),
                     BT_ERR_INVALID_ARG);
    assert_int_equal(out.len, 0);
    bt_buf_cleanup(&out);
}

static void test_names(void **state)
{
    bt_chat_family_t f;
    char err[256];

    (void)state;
    assert_int_equal(bt_chat_family_parse("qwen2", &f, err, sizeof(err)),
                     BT_OK);
    assert_int_equal(f, BT_CHAT_CHATML);
    assert_int_equal(bt_chat_family_parse("llama2", &f, err, sizeof(err)),
                     BT_OK);
    assert_int_equal(f, BT_CHAT_LLAMA2);
    assert_int_equal(bt_chat_family_parse("vicuna", &f, err, sizeof(err)),
                     BT_ERR_NOT_FOUND);
    assert_non_null(strstr(err, "unknown chat template 'vicuna'"));
}

/* The trained tokenizer's config is recognised as llama3 */
static void test_detect_trained(void **state)
{
    const char *json =
        "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, "
        "\"merges\": []}, \"added_tokens\": [{\"id\": 1, \"content\": "
        "\"<|begin_of_text|>\", \"special\": true}]}";
    bt_buf_t cfg;
    bt_tok_t *tok;
    bt_chat_family_t f;
    char err[256];

    (void)state;
    bt_buf_init(&cfg, 1 << 20);
    assert_int_equal(bt_tok_write_config_json("<|begin_of_text|>",
                                              "<|begin_of_text|>", &cfg),
                     BT_OK);
    assert_int_equal(bt_tok_load_mem(json, strlen(json), cfg.data, cfg.len,
                                     &tok, err, sizeof(err)), BT_OK);
    assert_int_equal(bt_chat_family_detect(tok, &f, err, sizeof(err)), BT_OK);
    assert_int_equal(f, BT_CHAT_LLAMA3);
    bt_tok_destroy(tok);
    /* no template and no telling tokens: unknown family */
    assert_int_equal(bt_tok_load_mem(json, strlen(json), NULL, 0, &tok, err,
                                     sizeof(err)), BT_OK);
    assert_int_equal(bt_chat_family_detect(tok, &f, err, sizeof(err)),
                     BT_ERR_NOT_FOUND);
    assert_non_null(strstr(err, "cannot tell the chat template family"));
    /* ... and a name overrides */
    assert_int_equal(bt_chat_family_select(tok, "mistral", &f, err,
                                           sizeof(err)), BT_OK);
    assert_int_equal(f, BT_CHAT_MISTRAL);
    bt_tok_destroy(tok);
    bt_buf_cleanup(&cfg);
}

static void detect_dir(const char *name, bt_status_t want_st,
                       bt_chat_family_t want)
{
    char path[1200], err[256];
    bt_tok_t *tok;
    bt_chat_family_t f;

    snprintf(path, sizeof(path), "%s/%s", data, name);
    if (bt_tok_load_dir(path, &tok, err, sizeof(err)) != BT_OK)
        fail_msg("load %s: %s", name, err);
    assert_int_equal(bt_chat_family_detect(tok, &f, err, sizeof(err)),
                     want_st);
    if (want_st == BT_OK)
        assert_int_equal(f, want);
    /* a rendered Llama-3/ChatML prompt encodes its control tokens as ids */
    if (want_st == BT_OK) {
        bt_buf_t out;
        bt_tok_ids_t ids;
        bt_buf_init(&out, 1 << 20);
        bt_tok_ids_init(&ids, 1 << 20);
        assert_int_equal(bt_chat_render(tok, f, conv, 2, true, &out, err,
                                        sizeof(err)), BT_OK);
        assert_int_equal(bt_tok_encode(tok, out.data, out.len,
                                       BT_TOK_PARSE_SPECIAL, &ids, err,
                                       sizeof(err)), BT_OK);
        if (f == BT_CHAT_LLAMA3) {
            assert_int_equal(ids.ids[0], 128000);
            assert_int_equal(ids.ids[1], 128006);
        } else {
            assert_int_equal(ids.ids[0], 151644);
        }
        bt_tok_ids_cleanup(&ids);
        bt_buf_cleanup(&out);
    }
    bt_tok_destroy(tok);
}

static void test_detect_real(void **state)
{
    (void)state;
    if (data == NULL) {
        skip();
        return;
    }
    detect_dir("llama3", BT_OK, BT_CHAT_LLAMA3);
    detect_dir("qwen2", BT_OK, BT_CHAT_CHATML);
    detect_dir("gpt2", BT_ERR_NOT_FOUND, BT_CHAT_LLAMA3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llama3),
        cmocka_unit_test(test_chatml),
        cmocka_unit_test(test_llama2),
        cmocka_unit_test(test_mistral),
        cmocka_unit_test(test_role_errors),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_detect_trained),
        cmocka_unit_test(test_detect_real),
    };
    data = tok_test_data_dir(data_dir, sizeof(data_dir));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
