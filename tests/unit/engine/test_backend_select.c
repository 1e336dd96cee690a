/* --backend and --numerics: the CPU backend's numerics id, and a one-line
 * refusal (never a crash) for what cannot run here. */
#include "engine/model/backend_select.h"

#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

static void test_cpu_exact(void **state)
{
    bt_backend_choice_t c;
    char err[256] = "";

    (void)state;
    assert_int_equal(bt_backend_choose(BT_BACKEND_CPU, BT_NUMERICS_EXACT, 1, &c,
                                       err, sizeof(err)), BT_OK);
    assert_ptr_equal(c.ops, &bt_backend_cpu);
    assert_string_equal(c.id, "cpu/exact/tp1/k1");
    assert_true(bt_kv_numerics_valid(c.id));
    assert_string_equal(bt_backend_name(BT_BACKEND_CUDA), "cuda");
    assert_string_equal(bt_numerics_name(BT_NUMERICS_FAST), "fast");
}

static void test_refusals(void **state)
{
    bt_backend_choice_t c;
    char err[256];

    (void)state;
    memset(&c, 0x5a, sizeof(c));
    assert_int_equal(bt_backend_choose(BT_BACKEND_CPU, BT_NUMERICS_FAST, 1, &c,
                                       err, sizeof(err)), BT_ERR_UNSUPPORTED);
    assert_non_null(strstr(err, "--numerics fast needs --backend cuda"));
    assert_int_equal(bt_backend_choose(BT_BACKEND_CPU, BT_NUMERICS_EXACT, 2, &c,
                                       err, sizeof(err)), BT_ERR_UNSUPPORTED);
    assert_non_null(strstr(err, "tensor parallelism"));
    /* fast on cuda: its own id where a GPU is, else the same refusal */
    err[0] = '\0';
    if (bt_backend_choose(BT_BACKEND_CUDA, BT_NUMERICS_FAST, 1, &c, err,
                          sizeof(err)) == BT_OK) {
        assert_string_equal(c.id, "cuda/fast/tp1/k1");
    } else {
        assert_memory_equal(err, "--backend cuda: ", 16);
    }
    /* without a GPU (here) a driver, a GPU, the plugin or the build is
     * named as missing, in one line; with one, the device step and its id */
    err[0] = '\0';
    if (bt_backend_choose(BT_BACKEND_CUDA, BT_NUMERICS_EXACT, 1, &c, err,
                          sizeof(err)) == BT_OK) {
        assert_non_null(c.device);
        assert_string_equal(c.id, "cuda/exact/tp1/k1");
        return;
    }
    assert_memory_equal(err, "--backend cuda: ", 16);
    assert_null(strchr(err, '\n'));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cpu_exact),
        cmocka_unit_test(test_refusals),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
