/* BPE trainer: deterministic, fast, complete HF-format output that the
 * loader accepts and round-trips. */
#include "engine/tokenizer/tokenizer.h"

#include "base/clock.h"
#include "base/json.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

static const char *const specials[] = {
    "<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
    "<|end_header_id|>", "<|eot_id|>",
};

/* A deterministic corpus of about `size` bytes: English-like words from a
 * small generator, some code and some non-Latin text. */
static char *make_corpus(size_t size, size_t *len_p)
{
    static const char *const words[] = {
        "the", "model", "token", "server", "request", "decode", "prefill",
        "cluster", "cache", "block", "layer", "attention", "weights",
        "int", "return", "for", "while", "struct", "void", "если",
        "данные", "模型", "缓存", "über", "naïve", "café", "😀",
        "(x)", "{}", "==", "42", "3.14", "\n", "\t", "  ",
    };
    char *s = malloc(size + 64);
    size_t n = 0;
    uint32_t x = 12345;

    assert_non_null(s);
    static const char *const syl[] = {
        "ka", "ro", "mi", "te", "su", "lan", "der", "qu", "ix", "ob", "ne",
        "ста", "ри", "中", "文", "é", "ü",
    };
    while (n < size) {
        x = x * 1103515245u + 12345u;
        if ((x >> 12) % 3 == 0) {
            /* an invented word of 1-4 syllables */
            int k = 1 + (int)((x >> 20) % 4);
            for (int i = 0; i < k; i++) {
                x = x * 1103515245u + 12345u;
                const char *y = syl[(x >> 16) % (sizeof(syl) / sizeof(*syl))];
                memcpy(s + n, y, strlen(y));
                n += strlen(y);
            }
        } else {
            const char *w =
                words[(x >> 16) % (sizeof(words) / sizeof(*words))];
            memcpy(s + n, w, strlen(w));
            n += strlen(w);
        }
        s[n++] = (x >> 8) % 7 == 0 ? '.' : ' ';
    }
    s[n] = 0;
    *len_p = n;
    return s;
}

static void test_train_output(void **state)
{
    size_t len;
    char *corpus = make_corpus(300 * 1024, &len);
    bt_buf_t a, b;
    json_t *root, *model, *vocab, *merges, *added;
    char err[256];
    uint64_t t0;

    (void)state;
    bt_buf_init(&a, 64u << 20);
    bt_buf_init(&b, 64u << 20);
    t0 = bt_now_ns();
    assert_int_equal(bt_tok_train_bytelevel_bpe(corpus, len, 1000, specials,
                                                5, &a), BT_OK);
    printf("# trained 1000 tokens on %zu bytes in %.3f s\n", len,
           (double)(bt_now_ns() - t0) / 1e9);
    assert_int_equal(bt_tok_train_bytelevel_bpe(corpus, len, 1000, specials,
                                                5, &b), BT_OK);
    assert_int_equal(a.len, b.len);
    assert_memory_equal(a.data, b.data, a.len);

    assert_int_equal(bt_json_parse(a.data, a.len, a.len, &root, err,
                                   sizeof(err)), BT_OK);
    model = json_object_get(root, "model");
    vocab = json_object_get(model, "vocab");
    merges = json_object_get(model, "merges");
    added = json_object_get(root, "added_tokens");
    assert_int_equal(json_object_size(vocab), 995);
    assert_true(json_array_size(merges) >= 995 - 256);
    assert_int_equal(json_array_size(added), 5);
    assert_int_equal(json_integer_value(json_object_get(
                         json_array_get(added, 4), "id")), 999);
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(added, 4), "content")),
                        "<|eot_id|>");
    /* the byte alphabet: 'Ġ' is the space byte */
    assert_int_equal(json_integer_value(json_object_get(vocab, "\xc4\xa0")),
                     32);
    json_decref(root);

    /* the loader takes it, and it round-trips the corpus exactly */
    {
        bt_buf_t cfg, dec;
        bt_tok_t *tok;
        bt_tok_ids_t ids;
        const char *chat = "<|start_header_id|>user<|end_header_id|>\n\nhi";

        bt_buf_init(&cfg, 1 << 20);
        bt_buf_init(&dec, 64u << 20);
        assert_int_equal(bt_tok_write_config_json("<|begin_of_text|>",
                                                  "<|eot_id|>", &cfg), BT_OK);
        if (bt_tok_load_mem(a.data, a.len, cfg.data, cfg.len, &tok, err,
                            sizeof(err)) != BT_OK)
            fail_msg("load trained tokenizer: %s", err);
        assert_int_equal(bt_tok_vocab_size(tok), 1000);
        assert_int_equal(bt_tok_bos_id(tok), 995);
        assert_int_equal(bt_tok_eos_id(tok), 999);
        bt_tok_ids_init(&ids, 1 << 24);
        assert_int_equal(bt_tok_encode(tok, corpus, len, BT_TOK_ADD_SPECIAL,
                                       &ids, err, sizeof(err)), BT_OK);
        assert_int_equal(ids.ids[0], 995);
        printf("# corpus: %zu bytes -> %zu tokens\n", len, ids.n);
        assert_true(ids.n < len / 2);
        assert_int_equal(bt_tok_decode(tok, ids.ids, ids.n, true, &dec, err,
                                       sizeof(err)), BT_OK);
        assert_int_equal(dec.len, len);
        assert_memory_equal(dec.data, corpus, len);
        /* special tokens are single ids when parsed */
        ids.n = 0;
        assert_int_equal(bt_tok_encode(tok, chat, strlen(chat),
                                       BT_TOK_PARSE_SPECIAL, &ids, err,
                                       sizeof(err)), BT_OK);
        assert_int_equal(ids.ids[0], 997);
        {
            bool found = false;
            for (size_t i = 1; i < ids.n; i++)
                found |= ids.ids[i] == 998;
            assert_true(found);
        }
        bt_tok_ids_cleanup(&ids);
        bt_tok_destroy(tok);
        bt_buf_cleanup(&cfg);
        bt_buf_cleanup(&dec);
    }
    bt_buf_cleanup(&a);
    bt_buf_cleanup(&b);
    free(corpus);
}

static void test_train_errors(void **state)
{
    bt_buf_t out;
    const char *dup[] = {"<a>", "<a>"};

    (void)state;
    bt_buf_init(&out, 1 << 20);
    /* too small a corpus for the vocab */
    assert_int_equal(bt_tok_train_bytelevel_bpe("ab ab", 5, 4000, NULL, 0,
                                                &out), BT_ERR_INVALID_ARG);
    /* fewer ids than the byte alphabet */
    assert_int_equal(bt_tok_train_bytelevel_bpe("ab", 2, 100, NULL, 0, &out),
                     BT_ERR_INVALID_ARG);
    /* invalid utf-8 */
    assert_int_equal(bt_tok_train_bytelevel_bpe("a\xff", 2, 256, NULL, 0,
                                                &out), BT_ERR_INVALID_ARG);
    assert_int_equal(bt_tok_train_bytelevel_bpe("ab ab", 5, 258, dup, 2,
                                                &out), BT_ERR_INVALID_ARG);
    assert_int_equal(out.len, 0);
    bt_buf_cleanup(&out);
}

static void test_config_json(void **state)
{
    bt_buf_t out;
    json_t *root;
    char err[256];

    (void)state;
    bt_buf_init(&out, 1 << 20);
    assert_int_equal(bt_tok_write_config_json("<|begin_of_text|>",
                                              "<|eot_id|>", &out), BT_OK);
    assert_int_equal(bt_json_parse(out.data, out.len, out.len, &root, err,
                                   sizeof(err)), BT_OK);
    assert_string_equal(json_string_value(json_object_get(root, "bos_token")),
                        "<|begin_of_text|>");
    assert_true(json_is_true(json_object_get(root, "add_bos_token")));
    assert_non_null(strstr(json_string_value(json_object_get(
                               root, "chat_template")),
                           "<|start_header_id|>"));
    json_decref(root);
    bt_buf_cleanup(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_train_output),
        cmocka_unit_test(test_train_errors),
        cmocka_unit_test(test_config_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
