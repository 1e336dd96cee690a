/* Unsupported or malformed tokenizer files fail with a precise message
 * naming the field; truncated files never crash. */
#include "engine/tokenizer/tokenizer.h"

#include "tok_test_util.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

static char data_dir[1024];
static const char *data;

/* slots: normalizer, pre_tokenizer, decoder, post_processor, model */
static const char fmt[] =
    "{\"normalizer\": %s, \"pre_tokenizer\": %s, \"decoder\": %s, "
    "\"post_processor\": %s, \"model\": %s}";
static const char model_ok[] =
    "{\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}, "
    "\"merges\": [\"a b\"]}";

static void expect_err(const char *norm, const char *pre, const char *dec,
                       const char *post, const char *model, bt_status_t want,
                       const char *want_msg)
{
    char json[4096], err[256];
    bt_tok_t *tok = NULL;

    snprintf(json, sizeof(json), fmt, norm, pre, dec, post, model);
    assert_int_equal(bt_tok_load_mem(json, strlen(json), NULL, 0, &tok, err,
                                     sizeof(err)), want);
    assert_null(tok);
    if (strstr(err, want_msg) == NULL)
        fail_msg("error '%s' lacks '%s'", err, want_msg);
}

static void test_ok_baseline(void **state)
{
    char json[4096], err[256];
    bt_tok_t *tok;
    bt_tok_ids_t ids;

    (void)state;
    snprintf(json, sizeof(json), fmt, "null", "null", "null", "null",
             model_ok);
    assert_int_equal(bt_tok_load_mem(json, strlen(json), NULL, 0, &tok, err,
                                     sizeof(err)), BT_OK);
    bt_tok_ids_init(&ids, 16);
    assert_int_equal(bt_tok_encode(tok, "ab", 2, 0, &ids, err, sizeof(err)),
                     BT_OK);
    assert_int_equal(ids.n, 1);
    assert_int_equal(ids.ids[0], 2);
    bt_tok_ids_cleanup(&ids);
    bt_tok_destroy(tok);
}

static void test_unsupported_types(void **state)
{
    (void)state;
    expect_err("{\"type\": \"NFKD\"}", "null", "null", "null", model_ok,
               BT_ERR_UNSUPPORTED,
               "tokenizer.json: normalizer type 'NFKD' is not supported");
    expect_err("{\"type\": \"Sequence\", \"normalizers\": [{\"type\": "
               "\"NFC\"}, {\"type\": \"Lowercase\"}]}",
               "null", "null", "null", model_ok, BT_ERR_UNSUPPORTED,
               "normalizer type 'Lowercase' is not supported");
    expect_err("null", "{\"type\": \"Whitespace\"}", "null", "null",
               model_ok, BT_ERR_UNSUPPORTED,
               "tokenizer.json: pre_tokenizer type 'Whitespace' is not "
               "supported");
    expect_err("null", "null", "{\"type\": \"WordPiece\"}", "null", model_ok,
               BT_ERR_UNSUPPORTED,
               "tokenizer.json: decoder type 'WordPiece' is not supported");
    expect_err("null", "null", "null", "{\"type\": \"BertProcessing\"}",
               model_ok, BT_ERR_UNSUPPORTED,
               "post_processor type 'BertProcessing' is not supported");
    expect_err("null", "null", "null", "null",
               "{\"type\": \"Unigram\", \"vocab\": []}", BT_ERR_UNSUPPORTED,
               "tokenizer.json: model type 'Unigram' is not supported");
    expect_err("null", "null", "null", "null",
               "{\"type\": \"BPE\", \"dropout\": 0.1, \"vocab\": {}, "
               "\"merges\": []}",
               BT_ERR_UNSUPPORTED, "model.dropout is not supported");
    expect_err("null", "null", "null", "null",
               "{\"type\": \"BPE\", \"continuing_subword_prefix\": \"##\", "
               "\"vocab\": {}, \"merges\": []}",
               BT_ERR_UNSUPPORTED,
               "model.continuing_subword_prefix is not supported");
    expect_err("null",
               "{\"type\": \"Split\", \"pattern\": {\"String\": \" \"}, "
               "\"behavior\": \"Sideways\"}",
               "null", "null", model_ok, BT_ERR_UNSUPPORTED,
               "behavior 'Sideways' is not supported");
}

static void test_missing_and_malformed(void **state)
{
    char err[256];
    bt_tok_t *tok = NULL;
    const char *no_model = "{\"normalizer\": null}";

    (void)state;
    assert_int_equal(bt_tok_load_mem(no_model, strlen(no_model), NULL, 0,
                                     &tok, err, sizeof(err)),
                     BT_ERR_INVALID_ARG);
    assert_string_equal(err, "tokenizer.json: missing required field "
                             "'model'");
    expect_err("null", "null", "null", "null",
               "{\"type\": \"BPE\", \"merges\": []}", BT_ERR_INVALID_ARG,
               "tokenizer.json: model: missing required field 'vocab'");
    expect_err("null", "null", "null", "null",
               "{\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": "
               "[\"a c\"]}",
               BT_ERR_INVALID_ARG,
               "model.merges[0]: token 'c' is not in the vocab");
    expect_err("null", "null", "null", "null",
               "{\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": "
               "[\"aa\"]}",
               BT_ERR_INVALID_ARG, "model.merges[0]: expected \"a b\"");
    expect_err("null", "null", "null", "null",
               "{\"type\": \"BPE\", \"vocab\": {\"a\": -4}, \"merges\": []}",
               BT_ERR_INVALID_ARG, "model.vocab['a']: expected an id");
    expect_err("null", "null", "null", "null",
               "{\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 0}, "
               "\"merges\": []}",
               BT_ERR_INVALID_ARG, "model.vocab: id 0 is used twice");
    expect_err("null", "null", "null", "null",
               "{\"type\": \"BPE\", \"unk_token\": \"<unk>\", \"vocab\": "
               "{\"a\": 0}, \"merges\": []}",
               BT_ERR_INVALID_ARG, "model.unk_token '<unk>' is not in");
    expect_err("null",
               "{\"type\": \"Split\", \"pattern\": {\"Regex\": \"(a\"}, "
               "\"behavior\": \"Isolated\"}",
               "null", "null", model_ok, BT_ERR_INVALID_ARG,
               "pre_tokenizer Split: regex error at offset 2");
    expect_err("{\"type\": 7}", "null", "null", "null", model_ok,
               BT_ERR_INVALID_ARG,
               "normalizer: field 'type' missing or not a string");
    expect_err("null", "null", "null",
               "{\"type\": \"TemplateProcessing\", \"single\": [{"
               "\"SpecialToken\": {\"id\": \"<s>\"}}], "
               "\"special_tokens\": {}}",
               model_ok, BT_ERR_INVALID_ARG,
               "single[0] names no known special token");
    /* added tokens */
    {
        const char *j = "{\"model\": {\"type\": \"BPE\", \"vocab\": {}, "
                        "\"merges\": []}, \"added_tokens\": [{\"id\": 3}]}";
        assert_int_equal(bt_tok_load_mem(j, strlen(j), NULL, 0, &tok, err,
                                         sizeof(err)), BT_ERR_INVALID_ARG);
        assert_string_equal(err, "tokenizer.json: added_tokens[0]: missing "
                                 "required field 'content'");
    }
    /* tokenizer_config.json naming a token that does not exist */
    {
        char json[1024];
        const char *cfg = "{\"bos_token\": \"<nope>\"}";
        snprintf(json, sizeof(json), fmt, "null", "null", "null", "null",
                 model_ok);
        assert_int_equal(bt_tok_load_mem(json, strlen(json), cfg,
                                         strlen(cfg), &tok, err,
                                         sizeof(err)), BT_ERR_INVALID_ARG);
        assert_string_equal(err, "tokenizer_config.json: bos_token '<nope>' "
                                 "is not a token");
    }
}

static void test_truncated(void **state)
{
    char json[4096], err[256];
    bt_tok_t *tok = NULL;
    size_t len;

    (void)state;
    snprintf(json, sizeof(json), fmt, "{\"type\": \"NFC\"}", "null", "null",
             "null", model_ok);
    len = strlen(json);
    for (size_t cut = 0; cut < len; cut++) {
        assert_int_not_equal(bt_tok_load_mem(json, cut, NULL, 0, &tok, err,
                                             sizeof(err)), BT_OK);
        assert_null(tok);
        assert_non_null(strstr(err, "tokenizer.json: "));
    }
    assert_int_equal(bt_tok_load_mem(json, 40, NULL, 0, &tok, err,
                                     sizeof(err)), BT_ERR_INVALID_ARG);
    assert_non_null(strstr(err, "tokenizer.json: malformed json at line 1"));
}

/* The real Llama-3 file cut short at a few places. */
static void test_truncated_real(void **state)
{
    char path[1200], err[256];
    FILE *f;
    char *buf;
    long size;
    bt_tok_t *tok = NULL;

    (void)state;
    if (data == NULL) {
        skip();
        return;
    }
    snprintf(path, sizeof(path), "%s/gpt2/tokenizer.json", data);
    f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    size = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc((size_t)size);
    assert_int_equal(fread(buf, 1, (size_t)size, f), (size_t)size);
    fclose(f);
    for (int k = 1; k < 8; k++) {
        size_t cut = (size_t)size * (size_t)k / 8;
        assert_int_equal(bt_tok_load_mem(buf, cut, NULL, 0, &tok, err,
                                         sizeof(err)), BT_ERR_INVALID_ARG);
        assert_non_null(strstr(err, "malformed json"));
    }
    free(buf);
    /* missing directory */
    assert_int_equal(bt_tok_load_dir("/nonexistent-dir", &tok, err,
                                     sizeof(err)), BT_ERR_NOT_FOUND);
    assert_non_null(strstr(err, "cannot open /nonexistent-dir/tokenizer.json"));
}

static void test_decode_errors(void **state)
{
    char json[4096], err[256];
    bt_tok_t *tok;
    bt_buf_t out;
    bt_tok_stream_t *s;
    const int32_t bad[] = {0, 7};

    (void)state;
    snprintf(json, sizeof(json), fmt, "null", "null", "null", "null",
             model_ok);
    assert_int_equal(bt_tok_load_mem(json, strlen(json), NULL, 0, &tok, err,
                                     sizeof(err)), BT_OK);
    bt_buf_init(&out, 1024);
    assert_int_equal(bt_tok_decode(tok, bad, 2, false, &out, err,
                                   sizeof(err)), BT_ERR_INVALID_ARG);
    assert_string_equal(err, "token id 7 is not in the vocab");
    assert_int_equal(out.len, 0);
    assert_int_equal(bt_tok_stream_create(tok, false, &s), BT_OK);
    assert_int_equal(bt_tok_stream_feed(s, -1, &out), BT_ERR_INVALID_ARG);
    bt_tok_stream_destroy(s);
    /* no decoder: tokens joined by spaces, as HF */
    {
        const int32_t ids[] = {2, 0};
        assert_int_equal(bt_tok_decode(tok, ids, 2, false, &out, err,
                                       sizeof(err)), BT_OK);
        assert_string_equal(out.data, "ab a");
    }
    bt_buf_cleanup(&out);
    bt_tok_destroy(tok);
}

/* A token that decodes to nothing, fed many times, must not overflow the
 * stream's window (it rotates after 64 pending ids). */
static void test_stream_empty_tokens(void **state)
{
    char json[4096], err[256];
    bt_tok_t *tok;
    bt_tok_stream_t *s;
    bt_buf_t out;

    (void)state;
    snprintf(json, sizeof(json), fmt, "null", "null", "{\"type\": \"Fuse\"}",
             "null", "{\"type\": \"BPE\", \"vocab\": {\"\": 0, \"a\": 1}, "
             "\"merges\": []}");
    assert_int_equal(bt_tok_load_mem(json, strlen(json), NULL, 0, &tok, err,
                                     sizeof(err)), BT_OK);
    bt_buf_init(&out, 1024);
    assert_int_equal(bt_tok_stream_create(tok, false, &s), BT_OK);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(bt_tok_stream_feed(s, i % 100 == 99 ? 1 : 0, &out),
                         BT_OK);
    assert_int_equal(bt_tok_stream_finish(s, &out), BT_OK);
    assert_string_equal(out.data, "aaaaaaaaaa");
    bt_tok_stream_destroy(s);
    bt_buf_cleanup(&out);
    bt_tok_destroy(tok);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ok_baseline),
        cmocka_unit_test(test_unsupported_types),
        cmocka_unit_test(test_missing_and_malformed),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_truncated_real),
        cmocka_unit_test(test_decode_errors),
        cmocka_unit_test(test_stream_empty_tokens),
    };
    data = tok_test_data_dir(data_dir, sizeof(data_dir));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
