/* The forward pass against an independent PyTorch reference.
 *
 * Fixtures (tests/reference/fixtures/NAME.json, made by hand with
 * tests/reference/ref_forward.py) hold the baton-mkmodel flags of a small
 * model, a prompt, the reference logits at some prompt positions and 32
 * greedy tokens. Here the model is regenerated with baton-mkmodel (same
 * flags -> same bytes), run with F32 KV, and compared:
 *   F32 weights:  max |logit diff| <= 1e-4
 *   BF16 weights: max |logit diff| <= 1e-4 too (weights are widened
 *                 exactly, compute is f32 on both sides; only summation
 *                 order differs)
 *   greedy tokens identical for 32 steps. */
#include "eng_test_util.h"

#include "base/json.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#define TOL_F32  1e-4f
#define TOL_BF16 1e-4f

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                                                : -1;
}

static void decode_row(const char *hex, float *out, int n)
{
    assert_int_equal(strlen(hex), (size_t)n * 8);
    for (int i = 0; i < n; i++) {
        uint8_t b[4];
        uint32_t u;

        for (int j = 0; j < 4; j++) {
            b[j] = (uint8_t)(hexval(hex[(i * 4 + j) * 2]) * 16 +
                             hexval(hex[(i * 4 + j) * 2 + 1]));
        }
        u = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
            (uint32_t)b[3] << 24;
        memcpy(&out[i], &u, 4);
    }
}

static void check_fixture(const char *name, float tol)
{
    const char *src = getenv("BATON_SOURCE_ROOT");
    const char *bld = getenv("BATON_BUILD_ROOT");
    char path[PATH_MAX], mk[PATH_MAX], err[BT_JSON_ERR_SIZE];
    char *argv[64];
    int argc = 0;
    json_t *fx, *args, *prompt, *rows, *greedy, *v;
    const char *key;
    size_t i;
    char *dir;
    bt_model_t *m;
    bt_fwd_t *f;
    eng_kv_t kv;
    int32_t toks[256];
    int n, vocab;
    float *logits, *ref;
    double maxdiff = 0;

    assert_non_null(src);
    assert_non_null(bld);
    snprintf(path, sizeof(path), "%s/tests/reference/fixtures/%s.json", src,
             name);
    assert_int_equal(bt_json_load_file(path, 1 << 20, &fx, err, sizeof(err)),
                     BT_OK);
    args = json_object_get(fx, "mkmodel_args");
    prompt = json_object_get(fx, "prompt");
    rows = json_object_get(fx, "logits_f32le_hex");
    greedy = json_object_get(fx, "greedy");
    assert_true(json_is_array(args) && json_is_array(prompt) &&
                json_is_object(rows) && json_is_array(greedy));

    dir = eng_tmpdir();
    assert_non_null(dir);
    snprintf(mk, sizeof(mk), "%s/tools/baton-mkmodel", bld);
    argv[argc++] = mk;
    json_array_foreach(args, i, v) {
        assert_true(argc < 60);
        argv[argc++] = (char *)json_string_value(v);
    }
    argv[argc++] = (char *)"--out";
    argv[argc++] = dir;
    argv[argc] = NULL;
    assert_int_equal(eng_spawn(argv), 0);

    assert_int_equal(bt_model_load(dir, &m), BT_OK);
    vocab = m->cfg.vocab;
    assert_int_equal(vocab, (int)json_integer_value(json_object_get(fx,
                                                                     "vocab")));
    assert_int_equal(bt_fwd_create(m, NULL, 2, &f), BT_OK);
    assert_int_equal(eng_kv_init(&kv, m, BT_DTYPE_F32, 16, 8), 0);
    n = (int)json_array_size(prompt);
    json_array_foreach(prompt, i, v) {
        toks[i] = (int32_t)json_integer_value(v);
    }
    logits = malloc((size_t)(n + 1) * (size_t)vocab * sizeof(float));
    ref = malloc((size_t)vocab * sizeof(float));
    assert_non_null(logits);
    assert_non_null(ref);
    {
        bt_step_seq_t s = {toks, n, 0, kv.table, 16, n, logits};

        assert_int_equal(bt_fwd_step(f, &kv.view, &s, 1, NULL), BT_OK);
    }
    json_object_foreach(rows, key, v) {
        int p = atoi(key);

        assert_true(p >= 0 && p < n);
        decode_row(json_string_value(v), ref, vocab);
        for (int j = 0; j < vocab; j++) {
            double d = fabs((double)logits[(size_t)p * vocab + j] - ref[j]);

            maxdiff = d > maxdiff ? d : maxdiff;
        }
    }
    print_message("# %s: max |logit diff| %.3g (bound %.0e)\n", name,
                  maxdiff, (double)tol);
    assert_true(maxdiff <= tol);

    /* greedy continuation, one decode step per token */
    {
        float *last = logits + (size_t)(n - 1) * vocab;

        json_array_foreach(greedy, i, v) {
            int tok = eng_argmax(last, vocab);
            bt_step_seq_t s;

            assert_int_equal(tok, (int)json_integer_value(v));
            toks[n] = tok;
            s = (bt_step_seq_t){&toks[n], 1, n, kv.table, 16, 1, last};
            n++;
            assert_int_equal(bt_fwd_step(f, &kv.view, &s, 1, NULL), BT_OK);
        }
    }
    free(logits);
    free(ref);
    eng_kv_cleanup(&kv);
    bt_fwd_destroy(f);
    bt_model_destroy(m);
    eng_rmdir(dir);
    json_decref(fx);
}

#define CASE(n, tol) \
    static void test_##n(void **state) { (void)state; check_fixture(#n, tol); }
CASE(llama_f32, TOL_F32)
CASE(llama_bf16, TOL_BF16)
CASE(qwen2_f32, TOL_F32)
CASE(qwen2_bf16, TOL_BF16)
CASE(mistral_f32, TOL_F32)
CASE(mistral_bf16, TOL_BF16)
CASE(mixtral_f32, TOL_F32)
CASE(mixtral_bf16, TOL_BF16)
CASE(qwen3_moe_f32, TOL_F32)
CASE(qwen3_moe_bf16, TOL_BF16)
CASE(qwen2_moe_f32, TOL_F32)
CASE(qwen2_moe_bf16, TOL_BF16)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llama_f32),
        cmocka_unit_test(test_llama_bf16),
        cmocka_unit_test(test_qwen2_f32),
        cmocka_unit_test(test_qwen2_bf16),
        cmocka_unit_test(test_mistral_f32),
        cmocka_unit_test(test_mistral_bf16),
        cmocka_unit_test(test_mixtral_f32),
        cmocka_unit_test(test_mixtral_bf16),
        cmocka_unit_test(test_qwen3_moe_f32),
        cmocka_unit_test(test_qwen3_moe_bf16),
        cmocka_unit_test(test_qwen2_moe_f32),
        cmocka_unit_test(test_qwen2_moe_bf16),
    };

    bt_log_init("test", BT_LOG_LEVEL_WARN, BT_LOG_FORMAT_TEXT);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
