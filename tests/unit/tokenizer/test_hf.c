/* Exact ids against Hugging Face `tokenizers` for real tokenizers
 * (BATON_SHARED_DATA/tokenizers/{llama3,qwen2,gpt2} and the expectation
 * files), plus decode and streaming round trips on the same texts. */
#include "engine/tokenizer/tokenizer.h"

#include "base/json.h"
#include "engine/tokenizer/tok_int.h"
#include "tok_test_util.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

static char data_dir[1024];
static const char *data;

static void check_family(const char *name)
{
    char path[1200], err[256];
    bt_tok_t *tok;
    FILE *f;
    char line[65536];
    int cases = 0, bad = 0;
    bt_buf_t all;

    if (data == NULL) {
        skip();
        return;
    }
    snprintf(path, sizeof(path), "%s/%s", data, name);
    if (bt_tok_load_dir(path, &tok, err, sizeof(err)) != BT_OK)
        fail_msg("load %s: %s", name, err);
    snprintf(path, sizeof(path), "%s/expectations/%s.jsonl", data, name);
    f = fopen(path, "r");
    assert_non_null(f);
    bt_buf_init(&all, 1 << 24);
    while (fgets(line, sizeof(line), f) != NULL) {
        json_t *row, *ids;
        const char *text;
        size_t text_len;
        bt_tok_ids_t got;
        bt_buf_t dec, streamed;
        bt_tok_stream_t *stream;

        if (bt_json_parse(line, strlen(line), sizeof(line), &row, err,
                          sizeof(err)) != BT_OK)
            fail_msg("%s: %s", path, err);
        text = json_string_value(json_object_get(row, "text"));
        text_len = json_string_length(json_object_get(row, "text"));
        ids = json_object_get(row, "ids");
        assert_non_null(text);
        bt_tok_ids_init(&got, 1 << 20);
        assert_int_equal(bt_tok_encode(tok, text, text_len, 0, &got, err,
                                       sizeof(err)), BT_OK);
        bool same = got.n == json_array_size(ids);
        for (size_t i = 0; same && i < got.n; i++)
            same = got.ids[i] == json_integer_value(json_array_get(ids, i));
        if (!same) {
            bad++;
            printf("# %s mismatch on %.60s: got", name, text);
            for (size_t i = 0; i < got.n && i < 24; i++)
                printf(" %d", got.ids[i]);
            printf("\n");
        }
        /* the per-call BPE memo gives the same ids */
        {
            bt_tok_ids_t memo;
            bt_tok_ids_init(&memo, 1 << 20);
            tok_cache_min_text = 0;
            assert_int_equal(bt_tok_encode(tok, text, text_len, 0, &memo, err,
                                           sizeof(err)), BT_OK);
            tok_cache_min_text = 8192;
            assert_int_equal(memo.n, got.n);
            if (got.n > 0)
                assert_memory_equal(memo.ids, got.ids, got.n * 4);
            bt_tok_ids_cleanup(&memo);
        }
        for (int k = 0; k < 20; k++)
            bt_buf_append(&all, text, text_len);
        /* decode(encode(x)) == x, and the stream says the same */
        bt_buf_init(&dec, 1 << 24);
        bt_buf_init(&streamed, 1 << 24);
        assert_int_equal(bt_tok_decode(tok, got.ids, got.n, false, &dec, err,
                                       sizeof(err)), BT_OK);
        if (dec.len != text_len || memcmp(dec.data, text, text_len) != 0) {
            bad++;
            printf("# %s decode differs on %.60s: %.60s\n", name, text,
                   dec.data ? dec.data : "");
        }
        assert_int_equal(bt_tok_stream_create(tok, false, &stream), BT_OK);
        for (size_t i = 0; i < got.n; i++)
            assert_int_equal(bt_tok_stream_feed(stream, got.ids[i],
                                                &streamed), BT_OK);
        assert_int_equal(bt_tok_stream_finish(stream, &streamed), BT_OK);
        bt_tok_stream_destroy(stream);
        assert_int_equal(streamed.len, dec.len);
        if (dec.len > 0)
            assert_memory_equal(streamed.data, dec.data, dec.len);
        bt_buf_cleanup(&dec);
        bt_buf_cleanup(&streamed);
        bt_tok_ids_cleanup(&got);
        json_decref(row);
        cases++;
    }
    fclose(f);
    /* all texts repeated (over the memo threshold): memo on and off agree */
    {
        bt_tok_ids_t a, b;
        bt_tok_ids_init(&a, 1 << 24);
        bt_tok_ids_init(&b, 1 << 24);
        assert_true(all.len >= 8192);
        assert_int_equal(bt_tok_encode(tok, all.data, all.len, 0, &a, err,
                                       sizeof(err)), BT_OK);
        tok_cache_min_text = SIZE_MAX;
        assert_int_equal(bt_tok_encode(tok, all.data, all.len, 0, &b, err,
                                       sizeof(err)), BT_OK);
        tok_cache_min_text = 8192;
        assert_int_equal(a.n, b.n);
        assert_memory_equal(a.ids, b.ids, a.n * 4);
        bt_tok_ids_cleanup(&a);
        bt_tok_ids_cleanup(&b);
    }
    bt_buf_cleanup(&all);
    bt_tok_destroy(tok);
    printf("# %s: %d cases, %d failures\n", name, cases, bad);
    assert_int_equal(bad, 0);
    assert_true(cases >= 46);
}

static void test_llama3(void **state)
{
    (void)state;
    check_family("llama3");
}

static void test_qwen2(void **state)
{
    (void)state;
    check_family("qwen2");
}

static void test_gpt2(void **state)
{
    (void)state;
    check_family("gpt2");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llama3),
        cmocka_unit_test(test_qwen2),
        cmocka_unit_test(test_gpt2),
    };
    data = tok_test_data_dir(data_dir, sizeof(data_dir));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
