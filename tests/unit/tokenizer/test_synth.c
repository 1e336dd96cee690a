/* A small SentencePiece-style tokenizer written here (Prepend/Replace
 * normalizers, byte fallback, unk, Metaspace, the Llama-2 decoder chain,
 * TemplateProcessing) and added-token options, with ids worked out by hand
 * from the Hugging Face algorithms. */
#include "engine/tokenizer/tokenizer.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SP "\xe2\x96\x81" /* U+2581 */

/* %s slots: extra added tokens, normalizer, pre_tokenizer, decoder,
 * byte_fallback */
static const char json_fmt[] =
    "{\"version\": \"1.0\", \"added_tokens\": ["
    "{\"id\": 0, \"content\": \"<unk>\", \"special\": true},"
    "{\"id\": 1, \"content\": \"<s>\", \"special\": true},"
    "{\"id\": 2, \"content\": \"</s>\", \"special\": true},"
    "{\"id\": 273, \"content\": \"<mask>\", \"lstrip\": true, "
    "\"special\": true, \"normalized\": false},"
    "{\"id\": 274, \"content\": \"xyz\", \"single_word\": true, "
    "\"special\": false, \"normalized\": false},"
    "{\"id\": 275, \"content\": \"[rs]\", \"rstrip\": true, "
    "\"special\": false, \"normalized\": false}%s],"
    "\"normalizer\": %s, \"pre_tokenizer\": %s,"
    "\"post_processor\": {\"type\": \"TemplateProcessing\", \"single\": ["
    "{\"SpecialToken\": {\"id\": \"<s>\", \"type_id\": 0}},"
    "{\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}], \"pair\": [],"
    "\"special_tokens\": {\"<s>\": {\"id\": \"<s>\", \"ids\": [1], "
    "\"tokens\": [\"<s>\"]}}},"
    "\"decoder\": %s,"
    "\"model\": {\"type\": \"BPE\", \"dropout\": null, \"unk_token\": "
    "\"<unk>\", \"fuse_unk\": true, \"byte_fallback\": %s, \"vocab\": {%s},"
    "\"merges\": [\"" SP " h\", [\"l\", \"l\"], \"" SP "h e\", \"" SP
    "he ll\", \"" SP "hell o\", \"" SP " w\"]}}";

static const char norm_llama2[] =
    "{\"type\": \"Sequence\", \"normalizers\": ["
    "{\"type\": \"Prepend\", \"prepend\": \"" SP "\"},"
    "{\"type\": \"Replace\", \"pattern\": {\"String\": \" \"}, "
    "\"content\": \"" SP "\"}]}";
static const char dec_llama2[] =
    "{\"type\": \"Sequence\", \"decoders\": ["
    "{\"type\": \"Replace\", \"pattern\": {\"String\": \"" SP "\"}, "
    "\"content\": \" \"}, {\"type\": \"ByteFallback\"}, {\"type\": \"Fuse\"},"
    "{\"type\": \"Strip\", \"content\": \" \", \"start\": 1, \"stop\": 0}]}";
static const char pre_meta[] =
    "{\"type\": \"Metaspace\", \"replacement\": \"" SP "\", "
    "\"prepend_scheme\": \"first\", \"split\": true}";
static const char dec_meta[] =
    "{\"type\": \"Sequence\", \"decoders\": [{\"type\": \"ByteFallback\"}, "
    "{\"type\": \"Metaspace\", \"replacement\": \"" SP "\", "
    "\"prepend_scheme\": \"first\"}]}";

static char *vocab_text(void)
{
    static const char *const words[] = {
        SP, "h", "e", "l", "o", SP "h", "ll", SP "he", SP "hell", SP "hello",
        "w", "r", "d", SP "w",
    };
    char *v = malloc(16384);
    size_t n = 0;

    n += (size_t)sprintf(v + n, "\"<unk>\": 0, \"<s>\": 1, \"</s>\": 2");
    for (int b = 0; b < 256; b++)
        n += (size_t)sprintf(v + n, ", \"<0x%02X>\": %d", b, 3 + b);
    for (size_t i = 0; i < sizeof(words) / sizeof(*words); i++)
        n += (size_t)sprintf(v + n, ", \"%s\": %zu", words[i], 259 + i);
    return v;
}

static bt_tok_t *make(const char *extra, const char *norm, const char *pre,
                      const char *dec, bool fallback)
{
    char *vocab = vocab_text();
    size_t size = strlen(json_fmt) + strlen(vocab) + 4096;
    char *json = malloc(size);
    char err[256];
    bt_tok_t *tok = NULL;

    snprintf(json, size, json_fmt, extra, norm, pre, dec,
             fallback ? "true" : "false", vocab);
    if (bt_tok_load_mem(json, strlen(json), NULL, 0, &tok, err,
                        sizeof(err)) != BT_OK)
        fail_msg("load: %s", err);
    free(json);
    free(vocab);
    return tok;
}

static void expect_ids(const bt_tok_t *tok, const char *text, unsigned flags,
                       const int32_t *want, size_t n_want)
{
    bt_tok_ids_t ids;
    char err[256];

    bt_tok_ids_init(&ids, 1 << 16);
    assert_int_equal(bt_tok_encode(tok, text, strlen(text), flags, &ids, err,
                                   sizeof(err)), BT_OK);
    if (ids.n != n_want || memcmp(ids.ids, want, n_want * 4) != 0) {
        printf("# '%s': got", text);
        for (size_t i = 0; i < ids.n; i++)
            printf(" %d", ids.ids[i]);
        printf("\n");
        fail();
    }
    bt_tok_ids_cleanup(&ids);
}

static void expect_text(const bt_tok_t *tok, const int32_t *ids, size_t n,
                        bool skip, const char *want)
{
    bt_buf_t out, streamed;
    bt_tok_stream_t *s;
    char err[256];

    bt_buf_init(&out, 1 << 16);
    bt_buf_init(&streamed, 1 << 16);
    assert_int_equal(bt_tok_decode(tok, ids, n, skip, &out, err, sizeof(err)),
                     BT_OK);
    assert_string_equal(out.data ? out.data : "", want);
    assert_int_equal(bt_tok_stream_create(tok, skip, &s), BT_OK);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(bt_tok_stream_feed(s, ids[i], &streamed), BT_OK);
    assert_int_equal(bt_tok_stream_finish(s, &streamed), BT_OK);
    assert_string_equal(streamed.data ? streamed.data : "", want);
    bt_tok_stream_destroy(s);
    bt_buf_cleanup(&out);
    bt_buf_cleanup(&streamed);
}

#define IDS(...) (const int32_t[]){__VA_ARGS__}, \
    sizeof((const int32_t[]){__VA_ARGS__}) / sizeof(int32_t)

static void test_llama2_style(void **state)
{
    bt_tok_t *tok = make("", norm_llama2, "null", dec_llama2, true);

    (void)state;
    /* ▁hello ▁w o r l d; BOS from the template */
    expect_ids(tok, "hello world", 0, IDS(268, 272, 263, 270, 262, 271));
    expect_ids(tok, "hello world", BT_TOK_ADD_SPECIAL,
               IDS(1, 268, 272, 263, 270, 262, 271));
    /* é is not in the vocab: its bytes C3 A9 */
    expect_ids(tok, "h\xc3\xa9", 0, IDS(264, 3 + 0xc3, 3 + 0xa9));
    expect_text(tok, IDS(1, 264, 3 + 0xc3, 3 + 0xa9), true, "h\xc3\xa9");
    /* as HF: Strip only looks at the fused text, which starts with <s> */
    expect_text(tok, IDS(1, 264, 3 + 0xc3, 3 + 0xa9), false, "<s> h\xc3\xa9");
    /* a broken byte sequence becomes one U+FFFD per byte token */
    expect_text(tok, IDS(264, 3 + 0xc3, 3 + 0xc3), false,
                "h\xef\xbf\xbd\xef\xbf\xbd");
    expect_text(tok, IDS(268, 272, 263, 270, 262, 271), false, "hello world");
    assert_int_equal(bt_tok_bos_id(tok), -1); /* no tokenizer_config */
    assert_int_equal(bt_tok_vocab_size(tok), 276);
    bt_tok_destroy(tok);
}

static void test_unk_fused(void **state)
{
    bt_tok_t *tok = make("", norm_llama2, "null", dec_llama2, false);

    (void)state;
    /* no byte fallback: é é -> one <unk> (fuse_unk) */
    expect_ids(tok, "h\xc3\xa9\xc3\xa9", 0, IDS(264, 0));
    expect_text(tok, IDS(264, 0), true, "h");
    bt_tok_destroy(tok);
}

static void test_metaspace(void **state)
{
    bt_tok_t *tok = make("", "null", pre_meta, dec_meta, true);

    (void)state;
    /* split at each ▁: "▁hello" "▁world"; only the first piece gets a
     * prefix ("first") */
    expect_ids(tok, "hello world", 0, IDS(268, 272, 263, 270, 262, 271));
    /* after an added token the text is not "first": no prefix */
    expect_ids(tok, "[rs]hello", 0, IDS(275, 260, 261, 265, 263));
    expect_text(tok, IDS(268, 272, 263, 270, 262, 271), false, "hello world");
    bt_tok_destroy(tok);
}

static void test_added_options(void **state)
{
    bt_tok_t *tok = make("", norm_llama2, "null", dec_llama2, true);

    (void)state;
    /* lstrip eats the space before <mask>; the rest gets its own ▁ */
    expect_ids(tok, "hello <mask> hello", BT_TOK_PARSE_SPECIAL,
               IDS(268, 273, 259, 268));
    /* special tokens are plain text unless parsing is asked for */
    {
        bt_tok_ids_t ids;
        char err[256];
        bt_tok_ids_init(&ids, 1 << 16);
        assert_int_equal(bt_tok_encode(tok, "<mask>", 6, 0, &ids, err,
                                       sizeof(err)), BT_OK);
        for (size_t i = 0; i < ids.n; i++)
            assert_int_not_equal(ids.ids[i], 273);
        assert_true(ids.n > 1);
        bt_tok_ids_cleanup(&ids);
    }
    /* single_word: only between non-word characters */
    expect_ids(tok, "hello xyz", 0, IDS(268, 259, 274));
    expect_ids(tok, "helloxyz", 0,
               IDS(268, 3 + 'x', 3 + 'y', 3 + 'z'));
    /* rstrip eats the spaces after [rs] */
    expect_ids(tok, "[rs]  hello", 0, IDS(275, 268));
    bt_tok_destroy(tok);
}

static void test_normalized_added(void **state)
{
    bt_tok_t *tok = make(",{\"id\": 276, \"content\": \"wor\", "
                         "\"normalized\": true, \"special\": false}",
                         norm_llama2, "null", dec_llama2, true);

    (void)state;
    /* matched in "▁hello▁world" after normalization */
    expect_ids(tok, "hello world", 0, IDS(268, 259, 276, 262, 271));
    bt_tok_destroy(tok);
}

static void test_invalid_utf8(void **state)
{
    bt_tok_t *tok = make("", norm_llama2, "null", dec_llama2, true);
    bt_tok_ids_t ids;
    char err[256];

    (void)state;
    bt_tok_ids_init(&ids, 1 << 16);
    assert_int_equal(bt_tok_encode(tok, "ab\xc3(", 4, 0, &ids, err,
                                   sizeof(err)), BT_ERR_INVALID_ARG);
    assert_string_equal(err, "text is not valid UTF-8 at byte 2");
    assert_int_equal(bt_tok_encode(tok, "a\xed\xa0\x80", 4, 0, &ids, err,
                                   sizeof(err)), BT_ERR_INVALID_ARG);
    assert_int_equal(ids.n, 0);
    /* the output bound is honoured */
    bt_tok_ids_cleanup(&ids);
    bt_tok_ids_init(&ids, 2);
    assert_int_equal(bt_tok_encode(tok, "hello world", 11, 0, &ids, err,
                                   sizeof(err)), BT_ERR_TOO_LARGE);
    assert_int_equal(ids.n, 0);
    bt_tok_ids_cleanup(&ids);
    bt_tok_destroy(tok);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llama2_style),
        cmocka_unit_test(test_unk_fused),
        cmocka_unit_test(test_metaspace),
        cmocka_unit_test(test_added_options),
        cmocka_unit_test(test_normalized_added),
        cmocka_unit_test(test_invalid_utf8),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
