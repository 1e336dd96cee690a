/* Model loading: every supported architecture loads; sharded and single
 * files give the same model; truncated, corrupt or mismatched files fail
 * with an error that names the file and the tensor, never a crash. */
#include "eng_test_util.h"

#include "base/json.h"

#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <sys/stat.h>

static char logbuf[8192];
static int logfd = -1;

/* Loads `dir` expecting failure `want`; the error log lands in logbuf. */
static void expect_load_error(const char *dir, bt_status_t want)
{
    char path[] = "/tmp/bt-engine-log-XXXXXX";
    bt_model_t *m = NULL;
    ssize_t n;

    logfd = mkstemp(path);
    assert_true(logfd >= 0);
    unlink(path);
    bt_log_set_fd(logfd);
    assert_int_equal(bt_model_load(dir, &m), want);
    assert_null(m);
    bt_log_set_fd(2);
    lseek(logfd, 0, SEEK_SET);
    n = read(logfd, logbuf, sizeof(logbuf) - 1);
    logbuf[n > 0 ? n : 0] = '\0';
    close(logfd);
    print_message("# %s", logbuf);
}

static void edit_config(const char *dir, const char *key, json_t *val)
{
    char path[PATH_MAX], err[256];
    json_t *c;

    snprintf(path, sizeof(path), "%s/config.json", dir);
    assert_int_equal(bt_json_load_file(path, 1 << 20, &c, err, sizeof(err)),
                     BT_OK);
    json_object_set_new(c, key, val);
    assert_int_equal(json_dump_file(c, path, 0), 0);
    json_decref(c);
}

static char *small_model(bt_arch_t arch)
{
    bt_synth_spec_t s;

    bt_synth_spec_default(&s, arch);
    return eng_make_model(&s);
}

static void test_all_archs_load(void **state)
{
    (void)state;
    for (int a = 0; a < BT_ARCH_COUNT; a++) {
        char *dir = small_model((bt_arch_t)a);
        bt_model_t *m;

        assert_non_null(dir);
        assert_int_equal(bt_model_load(dir, &m), BT_OK);
        assert_int_equal(m->cfg.arch, a);
        assert_int_equal(m->cfg.n_experts > 0, bt_arch_is_moe((bt_arch_t)a));
        bt_model_destroy(m);
        eng_rmdir(dir);
    }
}

static void test_sharded_equals_single(void **state)
{
    bt_synth_spec_t s;
    char *d1, *d2;
    bt_model_t *m1, *m2;

    (void)state;
    bt_synth_spec_default(&s, BT_ARCH_QWEN2);
    d1 = eng_make_model(&s);
    s.n_shards = 3;
    d2 = eng_make_model(&s);
    assert_int_equal(bt_model_load(d1, &m1), BT_OK);
    assert_int_equal(bt_model_load(d2, &m2), BT_OK);
    assert_int_equal(bt_st_set_count(m1->st), bt_st_set_count(m2->st));
    for (size_t i = 0; i < bt_st_set_count(m1->st); i++) {
        const bt_st_tensor_t *a = bt_st_set_at(m1->st, i);
        const bt_st_tensor_t *b = bt_st_set_at(m2->st, i);

        assert_string_equal(a->name, b->name);
        assert_int_equal(a->nbytes, b->nbytes);
        assert_memory_equal(a->data, b->data, a->nbytes);
    }
    bt_model_destroy(m1);
    bt_model_destroy(m2);
    eng_rmdir(d1);
    eng_rmdir(d2);
}

static void test_truncated(void **state)
{
    char *dir = small_model(BT_ARCH_LLAMA);
    char path[PATH_MAX];
    struct stat st;

    (void)state;
    snprintf(path, sizeof(path), "%s/model.safetensors", dir);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(truncate(path, st.st_size / 2), 0);
    expect_load_error(dir, BT_ERR_TRUNCATED);
    assert_non_null(strstr(logbuf, path));
    assert_non_null(strstr(logbuf, "tensor "));
    assert_non_null(strstr(logbuf, "truncated"));
    eng_rmdir(dir);
}

static void test_header_past_end(void **state)
{
    char *dir = small_model(BT_ARCH_LLAMA);
    char path[PATH_MAX];
    const uint8_t big[8] = {0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0};
    int fd;

    (void)state;
    snprintf(path, sizeof(path), "%s/model.safetensors", dir);
    fd = open(path, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, big, 8, 0), 8);
    close(fd);
    expect_load_error(dir, BT_ERR_TRUNCATED);
    assert_non_null(strstr(logbuf, path));
    assert_non_null(strstr(logbuf, "header length"));
    /* a file shorter than the length field itself */
    assert_int_equal(truncate(path, 5), 0);
    expect_load_error(dir, BT_ERR_TRUNCATED);
    assert_non_null(strstr(logbuf, "too short"));
    eng_rmdir(dir);
}

static void test_corrupt_header(void **state)
{
    char *dir = small_model(BT_ARCH_LLAMA);
    char path[PATH_MAX];
    int fd;

    (void)state;
    snprintf(path, sizeof(path), "%s/model.safetensors", dir);
    fd = open(path, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, "}", 1, 8), 1);  /* first JSON byte */
    close(fd);
    expect_load_error(dir, BT_ERR_CORRUPT);
    assert_non_null(strstr(logbuf, path));
    assert_non_null(strstr(logbuf, "malformed json"));
    eng_rmdir(dir);
}

static void test_shape_mismatch(void **state)
{
    char *dir = small_model(BT_ARCH_LLAMA);

    (void)state;
    edit_config(dir, "intermediate_size", json_integer(100));
    expect_load_error(dir, BT_ERR_CORRUPT);
    assert_non_null(strstr(logbuf, "model.safetensors"));
    assert_non_null(strstr(logbuf, "model.layers.0.mlp.gate_proj.weight"));
    assert_non_null(strstr(logbuf, "expected [100,64]"));
    eng_rmdir(dir);
}

static void test_missing_tensor(void **state)
{
    bt_synth_spec_t s;
    char *dir;

    (void)state;
    bt_synth_spec_default(&s, BT_ARCH_LLAMA);
    s.tie_embeddings = true;   /* no lm_head.weight in the file */
    dir = eng_make_model(&s);
    assert_non_null(dir);
    edit_config(dir, "tie_word_embeddings", json_false());
    expect_load_error(dir, BT_ERR_NOT_FOUND);
    assert_non_null(strstr(logbuf, "lm_head.weight"));
    assert_non_null(strstr(logbuf, "missing"));
    assert_non_null(strstr(logbuf, dir));
    eng_rmdir(dir);
}

static void test_unknown_arch_and_bad_config(void **state)
{
    char *dir = small_model(BT_ARCH_LLAMA);
    json_t *a = json_array();

    (void)state;
    json_array_append_new(a, json_string("GPT2LMHeadModel"));
    edit_config(dir, "architectures", a);
    expect_load_error(dir, BT_ERR_UNSUPPORTED);
    assert_non_null(strstr(logbuf, "GPT2LMHeadModel"));
    assert_non_null(strstr(logbuf, "config.json"));

    a = json_array();
    json_array_append_new(a, json_string("LlamaForCausalLM"));
    edit_config(dir, "architectures", a);
    edit_config(dir, "num_key_value_heads", json_integer(3));
    expect_load_error(dir, BT_ERR_INVALID_ARG);
    assert_non_null(strstr(logbuf, "num_key_value_heads"));
    edit_config(dir, "num_key_value_heads", json_string("two"));
    expect_load_error(dir, BT_ERR_INVALID_ARG);
    assert_non_null(strstr(logbuf, "num_key_value_heads"));
    eng_rmdir(dir);
}

static void test_missing_shard(void **state)
{
    bt_synth_spec_t s;
    char *dir, path[PATH_MAX];

    (void)state;
    bt_synth_spec_default(&s, BT_ARCH_MIXTRAL);
    s.n_shards = 2;
    dir = eng_make_model(&s);
    assert_non_null(dir);
    snprintf(path, sizeof(path), "%s/model-00002-of-00002.safetensors", dir);
    assert_int_equal(unlink(path), 0);
    expect_load_error(dir, BT_ERR_NOT_FOUND);
    assert_non_null(strstr(logbuf, "model-00002-of-00002.safetensors"));
    eng_rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_all_archs_load),
        cmocka_unit_test(test_sharded_equals_single),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_header_past_end),
        cmocka_unit_test(test_corrupt_header),
        cmocka_unit_test(test_shape_mismatch),
        cmocka_unit_test(test_missing_tensor),
        cmocka_unit_test(test_unknown_arch_and_bad_config),
        cmocka_unit_test(test_missing_shard),
    };

    bt_log_init("test", BT_LOG_LEVEL_WARN, BT_LOG_FORMAT_TEXT);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
