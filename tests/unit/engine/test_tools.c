/* baton-mkmodel writes the same bytes for the same flags (pinned by a
 * SHA-256, so a change of the generator or of float rounding on another
 * machine shows up), and baton-run generate's --logits-out rows equal the
 * step API's logits bit for bit. */
#include "eng_test_util.h"

#include "base/sha256.h"

#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <sys/stat.h>

static void *read_all(const char *path, size_t *len_p)
{
    struct stat st;
    void *buf;
    int fd = open(path, O_RDONLY);

    assert_true(fd >= 0);
    assert_int_equal(fstat(fd, &st), 0);
    buf = malloc((size_t)st.st_size + 1);
    assert_non_null(buf);
    assert_int_equal(read(fd, buf, (size_t)st.st_size), st.st_size);
    close(fd);
    *len_p = (size_t)st.st_size;
    return buf;
}

static void tool_path(char *out, size_t n, const char *tool)
{
    const char *bld = getenv("BATON_BUILD_ROOT");

    assert_non_null(bld);
    snprintf(out, n, "%s/tools/%s", bld, tool);
}

/* The generator is pinned: these flags must give exactly these bytes. */
static void test_mkmodel_bytes_pinned(void **state)
{
    static const char *const pinned =
        "febf7b06f3feb4b4473cd80d67bdb57554ddf3b778a3b8589ca4a1e92d9525ad";
    char mk[PATH_MAX], path[PATH_MAX], hex[BT_SHA256_HEX_LEN + 1];
    char *dir = eng_tmpdir(), *dir2 = eng_tmpdir();
    uint8_t d[BT_SHA256_LEN];
    size_t len, len2;
    void *a, *b;

    (void)state;
    tool_path(mk, sizeof(mk), "baton-mkmodel");
    {
        char *argv[] = {mk, (char *)"--arch", (char *)"qwen2_moe",
                        (char *)"--no-tokenizer", (char *)"--out", dir, NULL};
        char *argv2[] = {mk, (char *)"--arch", (char *)"qwen2_moe",
                         (char *)"--no-tokenizer", (char *)"--out", dir2,
                         NULL};

        assert_int_equal(eng_spawn(argv), 0);
        assert_int_equal(eng_spawn(argv2), 0);
    }
    snprintf(path, sizeof(path), "%s/model.safetensors", dir);
    a = read_all(path, &len);
    snprintf(path, sizeof(path), "%s/model.safetensors", dir2);
    b = read_all(path, &len2);
    assert_int_equal(len, len2);
    assert_memory_equal(a, b, len);
    assert_int_equal(bt_sha256(a, len, d), BT_OK);
    bt_sha256_hex(d, hex);
    print_message("# model.safetensors sha256 %s\n", hex);
    assert_string_equal(hex, pinned);
    free(a);
    free(b);
    eng_rmdir(dir);
    eng_rmdir(dir2);
}

static void test_run_logits_out(void **state)
{
    char mk[PATH_MAX], run[PATH_MAX], lpath[PATH_MAX];
    char *dir = eng_tmpdir();
    bt_model_t *m;
    bt_fwd_t *f;
    eng_kv_t kv;
    int32_t toks[3] = {5, 9, 200};
    size_t len;
    float *rows, *want;
    int V;

    (void)state;
    tool_path(mk, sizeof(mk), "baton-mkmodel");
    tool_path(run, sizeof(run), "baton-run");
    snprintf(lpath, sizeof(lpath), "%s/logits.bin", dir);
    {
        char *argv[] = {mk, (char *)"--arch", (char *)"llama",
                        (char *)"--dtype", (char *)"f16",
                        (char *)"--no-tokenizer", (char *)"--out", dir, NULL};

        assert_int_equal(eng_spawn(argv), 0);
    }
    {
        /* 3 prompt tokens, 4 generated: 3 + 3 rows; f32 KV, chunk 2 */
        char *argv[] = {run, (char *)"--model", dir, (char *)"--prompt-ids",
                        (char *)"5,9,200", (char *)"--max-tokens", (char *)"4",
                        (char *)"--ignore-eos", (char *)"--kv-dtype",
                        (char *)"f32", (char *)"--chunk", (char *)"2",
                        (char *)"--threads", (char *)"1", (char *)"--logits-out",
                        lpath, NULL};

        assert_int_equal(eng_spawn(argv), 0);
    }
    assert_int_equal(bt_model_load(dir, &m), BT_OK);
    V = m->cfg.vocab;
    rows = read_all(lpath, &len);
    assert_int_equal(len, 6 * (size_t)V * sizeof(float));
    want = malloc(3 * (size_t)V * sizeof(float));
    assert_int_equal(bt_fwd_create(m, NULL, 2, &f), BT_OK);
    assert_int_equal(eng_kv_init(&kv, m, BT_DTYPE_F32, 4, 16), 0);
    {
        bt_step_seq_t s = {toks, 3, 0, kv.table, 4, 3, want};

        assert_int_equal(bt_fwd_step(f, &kv.view, &s, 1, NULL), BT_OK);
    }
    assert_memory_equal(rows, want, 3 * (size_t)V * sizeof(float));
    {
        /* the first decode row: the greedy token after the prompt */
        int32_t next = eng_argmax(want + 2 * (size_t)V, V);
        bt_step_seq_t s = {&next, 1, 3, kv.table, 4, 1, want};

        assert_int_equal(bt_fwd_step(f, &kv.view, &s, 1, NULL), BT_OK);
        assert_memory_equal(rows + 3 * (size_t)V, want,
                            (size_t)V * sizeof(float));
    }
    free(rows);
    free(want);
    eng_kv_cleanup(&kv);
    bt_fwd_destroy(f);
    bt_model_destroy(m);
    eng_rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mkmodel_bytes_pinned),
        cmocka_unit_test(test_run_logits_out),
    };

    bt_log_init("test", BT_LOG_LEVEL_WARN, BT_LOG_FORMAT_TEXT);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
