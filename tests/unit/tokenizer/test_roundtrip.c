/* decode(encode(x)) == x on seeded random valid UTF-8, for the real
 * byte-level tokenizers (when the shared data is there) and a trained one;
 * the streaming detokenizer gives the same text and never splits a
 * character between two appends. */
#include "engine/tokenizer/tokenizer.h"

#include "tok_test_util.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdbool.h>
#include <stdint.h>

static char data_dir[1024];
static const char *data;

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint32_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 11);
}

static size_t put_utf8(uint32_t cp, char *o)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xc0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* Strict UTF-8 (no overlongs, surrogates or code points past U+10FFFF). */
static bool utf8_valid(const char *p, size_t len)
{
    const unsigned char *s = (const unsigned char *)p;

    for (size_t k = 0; k < len;) {
        unsigned c = s[k];
        size_t cl = c < 0x80 ? 1 : c >= 0xc2 && c < 0xe0 ? 2
                  : c >= 0xe0 && c < 0xf0 ? 3 : c >= 0xf0 && c < 0xf5 ? 4 : 0;
        uint32_t cp;

        if (cl == 0 || k + cl > len)
            return false;
        cp = cl == 1 ? c : c & (0x7f >> cl);
        for (size_t i = 1; i < cl; i++) {
            if ((s[k + i] & 0xc0) != 0x80)
                return false;
            cp = cp << 6 | (s[k + i] & 0x3f);
        }
        if ((cl == 3 && cp < 0x800) || (cl == 4 && cp < 0x10000) ||
            cp > 0x10ffff || (cp >= 0xd800 && cp < 0xe000))
            return false;
        k += cl;
    }
    return true;
}

/* A random code point from a mix of scripts, spaces and symbols. */
static uint32_t random_cp(void)
{
    static const char ascii[] = "abcdefghijklmnopqrstuvwxyzABCXYZ0123456789 "
                                "  \n\t.,;:!?'\"()[]{}<>|_-+=*/\\#@$%^&~`";
    uint32_t r = next_rand() % 100;
    uint32_t cp;

    if (r < 55)
        return (uint8_t)ascii[next_rand() % (sizeof(ascii) - 1)];
    if (r < 65)
        return 0xa0 + next_rand() % 0x160;          /* Latin-1, ext-A */
    if (r < 72)
        return 0x400 + next_rand() % 0x100;         /* Cyrillic */
    if (r < 78)
        return 0x4e00 + next_rand() % 0x5000;       /* CJK */
    if (r < 83)
        return 0x1f300 + next_rand() % 0x300;       /* emoji */
    if (r < 86)
        return 0x300 + next_rand() % 0x70;          /* combining marks */
    if (r < 88)
        return next_rand() % 0x20;                   /* controls */
    do
        cp = next_rand() % 0x110000;
    while (cp >= 0xd800 && cp <= 0xdfff);
    return cp;
}

static void roundtrip(const bt_tok_t *tok, int n_texts, int max_chars)
{
    char *text = malloc((size_t)max_chars * 4 + 1);
    bt_tok_ids_t ids;
    bt_buf_t dec, streamed, piece;
    char err[256];

    bt_tok_ids_init(&ids, 1 << 20);
    bt_buf_init(&dec, 1 << 20);
    bt_buf_init(&streamed, 1 << 20);
    bt_buf_init(&piece, 1 << 20);
    for (int t = 0; t < n_texts; t++) {
        size_t len = 0;
        int chars = (int)(next_rand() % (uint32_t)max_chars);
        bt_tok_stream_t *s;

        for (int i = 0; i < chars; i++)
            len += put_utf8(random_cp(), text + len);
        ids.n = 0;
        bt_buf_reset(&dec);
        bt_buf_reset(&streamed);
        assert_int_equal(bt_tok_encode(tok, text, len, 0, &ids, err,
                                       sizeof(err)), BT_OK);
        assert_int_equal(bt_tok_decode(tok, ids.ids, ids.n, false, &dec, err,
                                       sizeof(err)), BT_OK);
        assert_int_equal(dec.len, len);
        if (len > 0)
            assert_memory_equal(dec.data, text, len);
        assert_int_equal(bt_tok_stream_create(tok, false, &s), BT_OK);
        for (size_t i = 0; i <= ids.n; i++) {
            bt_buf_reset(&piece);
            if (i < ids.n)
                assert_int_equal(bt_tok_stream_feed(s, ids.ids[i], &piece),
                                 BT_OK);
            else
                assert_int_equal(bt_tok_stream_finish(s, &piece), BT_OK);
            /* every piece is whole characters */
            for (size_t k = 0; k < piece.len;) {
                unsigned char c = (unsigned char)piece.data[k];
                size_t cl = c < 0x80 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
                assert_true(c < 0x80 || c >= 0xc2);
                assert_true(k + cl <= piece.len);
                k += cl;
            }
            assert_int_equal(bt_buf_append(&streamed, piece.data ? piece.data
                                                                 : "",
                                           piece.len), BT_OK);
        }
        bt_tok_stream_destroy(s);
        assert_int_equal(streamed.len, len);
        if (len > 0)
            assert_memory_equal(streamed.data, text, len);
        /* each token's raw bytes (logprobs' `bytes`), concatenated, are
         * the text; the lossy text of one token is valid UTF-8 */
        bt_buf_reset(&streamed);
        for (size_t i = 0; i < ids.n; i++) {
            bt_buf_reset(&piece);
            assert_int_equal(bt_tok_token_text(tok, ids.ids[i], false, &piece),
                             BT_OK);
            assert_true(piece.len == 0 || utf8_valid(piece.data, piece.len));
            assert_int_equal(bt_tok_token_text(tok, ids.ids[i], true,
                                               &streamed), BT_OK);
        }
        assert_int_equal(streamed.len, len);
        if (len > 0)
            assert_memory_equal(streamed.data, text, len);
    }
    bt_tok_ids_cleanup(&ids);
    bt_buf_cleanup(&dec);
    bt_buf_cleanup(&streamed);
    bt_buf_cleanup(&piece);
    free(text);
}

static void real(const char *name)
{
    char path[1200], err[256];
    bt_tok_t *tok;

    if (data == NULL) {
        skip();
        return;
    }
    snprintf(path, sizeof(path), "%s/%s", data, name);
    if (bt_tok_load_dir(path, &tok, err, sizeof(err)) != BT_OK)
        fail_msg("load %s: %s", name, err);
    roundtrip(tok, 150, 200);
    roundtrip(tok, 3, 20000); /* long: goes through the per-call memo */
    bt_tok_destroy(tok);
}

static void test_llama3(void **state)
{
    (void)state;
    real("llama3");
}

static void test_gpt2(void **state)
{
    (void)state;
    real("gpt2");
}

static void test_trained(void **state)
{
    static const char corpus_seed[] =
        "The quick brown fox jumps over the lazy dog. int main(void) { "
        "return 0; } Съешь же ещё этих мягких французских булок. "
        "我能吞下玻璃而不伤身体。 ";
    const char *specials[] = {"<|begin_of_text|>", "<|eot_id|>"};
    bt_buf_t corpus, json;
    bt_tok_t *tok;
    char err[256];

    (void)state;
    bt_buf_init(&corpus, 1 << 20);
    bt_buf_init(&json, 16 << 20);
    for (int i = 0; i < 200; i++)
        assert_int_equal(bt_buf_append_str(&corpus, corpus_seed), BT_OK);
    assert_int_equal(bt_tok_train_bytelevel_bpe(corpus.data, corpus.len, 300,
                                                specials, 2, &json), BT_OK);
    assert_int_equal(bt_tok_load_mem(json.data, json.len, NULL, 0, &tok, err,
                                     sizeof(err)), BT_OK);
    roundtrip(tok, 150, 200);
    roundtrip(tok, 3, 20000);
    bt_tok_destroy(tok);
    bt_buf_cleanup(&corpus);
    bt_buf_cleanup(&json);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llama3),
        cmocka_unit_test(test_gpt2),
        cmocka_unit_test(test_trained),
    };
    data = tok_test_data_dir(data_dir, sizeof(data_dir));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
