/* Cost functions: least squares, the prefill and decode fits, the cost
 * file's round trip and its errors, the optional noise and router part,
 * and the node cache's LRU order. */
#include "cost.h"
#include "fit.h"
#include "lru.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

static void test_lsq_exact_and_nonnegative(void **state)
{
    double x[20 * 3], y[20], beta[3];

    (void)state;
    for (int i = 0; i < 20; i++) {
        x[i * 3] = 1;
        x[i * 3 + 1] = i;
        x[i * 3 + 2] = (i * 7) % 5;
        y[i] = 2.0 + 0.5 * i + 3.0 * ((i * 7) % 5);
    }
    assert_true(bt_sim_lsq(x, y, 20, 3, beta) < 1e-9);
    assert_true(fabs(beta[0] - 2.0) < 1e-9);
    assert_true(fabs(beta[1] - 0.5) < 1e-9);
    assert_true(fabs(beta[2] - 3.0) < 1e-9);
    /* a negative truth is clamped to 0 and the rest refitted */
    for (int i = 0; i < 20; i++) {
        y[i] = 1.0 + 0.5 * i - 0.01 * ((i * 7) % 5);
    }
    assert_true(bt_sim_lsq(x, y, 20, 3, beta) >= 0);
    assert_true(beta[2] == 0);
    assert_true(beta[0] >= 0 && beta[1] > 0.45 && beta[1] < 0.55);
    assert_true(bt_sim_lsq(x, y, 20, 0, beta) < 0);
}

static bt_sim_cost_t shape(void)
{
    bt_sim_cost_t c;

    memset(&c, 0, sizeof(c));
    c.block_size = 16;
    c.max_prefill_tokens = 512;
    c.total_blocks = 1000;
    c.max_batch = 64;
    c.kv_bytes_per_token = 4096;
    return c;
}

static void test_prefill_fit_recovers(void **state)
{
    bt_sim_cost_t truth = shape(), fit = shape();
    bt_fit_prefill_t s[12];
    const uint32_t p[] = {32, 256, 1024, 2048, 600, 1500};
    size_t n = 0;

    (void)state;
    truth.ttft_overhead_ms = 4;
    truth.p_base_ms = 0;     /* not fitted: one-chunk prompts hide it */
    truth.p_token_ms = 0.05;
    truth.p_ctx_us = 0.8;
    for (size_t i = 0; i < 6; i++) {
        for (uint32_t cached = 0; cached <= 1; cached++) {
            uint32_t c = cached ? (p[i] - 1) / 16 * 16 : 0;

            /* the simulator's own chunking gives the truth */
            double ms = truth.ttft_overhead_ms;

            for (uint32_t pos = c; pos < p[i];) {
                uint32_t k = p[i] - pos < 512 ? p[i] - pos : 512;

                ms += bt_sim_prefill_ms(&truth, k, pos);
                pos += k;
            }
            s[n++] = (bt_fit_prefill_t){p[i], c, ms};
        }
    }
    assert_true(bt_fit_prefill(&fit, s, n) < 1e-6);
    assert_true(fabs(fit.ttft_overhead_ms - 4) < 1e-6);
    assert_true(fit.p_base_ms == 0);
    assert_true(fabs(fit.p_token_ms - 0.05) < 1e-9);
    assert_true(fabs(fit.p_ctx_us - 0.8) < 1e-6);
    assert_true(bt_fit_prefill(&fit, s, 3) < 0);
}

static void test_decode_fit_and_line(void **state)
{
    bt_sim_cost_t truth = shape(), fit = shape();
    bt_fit_decode_t s[8];
    double x[3] = {0.5, 1, 4}, y[3], a, b;
    size_t n = 0;

    (void)state;
    truth.d_base_ms = 3;
    truth.d_seq_ms = 0.25;
    truth.d_ctx_us = 2;
    for (uint32_t bt = 1; bt <= 16; bt *= 2) {
        double ctx = bt * 37.0 + 50;

        s[n++] = (bt_fit_decode_t){bt, ctx,
                                   bt_sim_decode_ms(&truth, bt, (uint64_t)(bt * ctx))};
    }
    assert_true(bt_fit_decode(&fit, s, n) < 1e-6);
    assert_true(fabs(fit.d_base_ms - 3) < 1e-6);
    assert_true(fabs(fit.d_seq_ms - 0.25) < 1e-6);
    assert_true(fabs(fit.d_ctx_us - 2) < 1e-6);
    for (int i = 0; i < 3; i++) {
        y[i] = 0.7 + 2.5 * x[i];
    }
    assert_true(bt_fit_line(x, y, 3, &a, &b) < 1e-9);
    assert_true(fabs(a - 0.7) < 1e-9 && fabs(b - 2.5) < 1e-9);
    assert_true(bt_fit_line(x, y, 1, &a, &b) < 0);
}

static void test_cost_file_round_trip(void **state)
{
    char path[] = "/tmp/test_sim_cost.XXXXXX";
    int fd = mkstemp(path);
    bt_sim_cost_t c = shape(), d;
    char err[256];
    FILE *f;

    (void)state;
    assert_true(fd >= 0);
    close(fd);
    snprintf(c.name, sizeof(c.name), "unit");
    c.p_base_ms = 1;
    c.p_token_ms = 0.125;
    c.d_ctx_us = 3;
    c.d_join_ms = 1.25;
    c.d_join_ms_mb = 0.5;
    c.n_xfer = 2;
    c.xfer[0] = (bt_sim_xfer_cost_t){"shm", 0.5, 1.5};
    c.xfer[1] = (bt_sim_xfer_cost_t){"tcp", 1, 8};
    c.k_block_ms = 0.25;
    c.ttft_overhead_ms = 2;
    assert_int_equal(bt_sim_cost_save(path, &c, "unit test", err, sizeof(err)), 0);
    assert_int_equal(bt_sim_cost_load(path, &d, err, sizeof(err)), 0);
    assert_string_equal(d.name, "unit");
    assert_int_equal(d.block_size, 16);
    assert_int_equal(d.max_prefill_tokens, 512);
    assert_true(d.p_token_ms == 0.125 && d.d_ctx_us == 3);
    assert_true(d.d_join_ms == 1.25 && d.d_join_ms_mb == 0.5);
    assert_true(fabs(bt_sim_join_ms(&d, 1048576.0 * 2) - 2.25) < 1e-9);
    assert_int_equal(d.n_xfer, 2);
    assert_true(fabs(bt_sim_xfer_ms(&d, "tcp", 1048576.0 * 2) - 17) < 1e-9);
    assert_true(fabs(bt_sim_xfer_ms(&d, NULL, 0) - 0.5) < 1e-9);
    assert_true(bt_sim_kvstore_ms(&d, 0) == 0);
    assert_true(fabs(bt_sim_kvstore_ms(&d, 4) - 1) < 1e-9);

    /* a file from before the local hand-over loads with none; a
     * negative one is refused */
    for (int neg = 0; neg < 2; neg++) {
        f = fopen(path, "w");
        assert_non_null(f);
        fprintf(f, "{\"node\": {\"block_size\": 16, \"total_blocks\": 8, "
                "\"max_batch\": 4, \"max_prefill_tokens\": 64, "
                "\"kv_bytes_per_token\": 8}, \"prefill\": {\"base_ms\": 1, "
                "\"per_token_ms\": 0, \"per_token_ctx_us\": 0}, \"decode\": "
                "{\"base_ms\": 1, \"per_seq_ms\": 0, \"per_ctx_token_us\": 0%s}, "
                "\"transfer\": {\"shm\": {\"base_ms\": 0, \"ms_per_mb\": 0}}, "
                "\"kvstore\": {\"base_ms\": 0, \"per_block_ms\": 0}, "
                "\"overhead\": {\"ttft_ms\": 0}}\n",
                neg ? ", \"join_ms\": -1" : "");
        fclose(f);
        if (neg) {
            assert_int_equal(bt_sim_cost_load(path, &d, err, sizeof(err)), -1);
            assert_non_null(strstr(err, "decode.join_ms"));
        } else {
            assert_int_equal(bt_sim_cost_load(path, &d, err, sizeof(err)), 0);
            assert_true(d.d_join_ms == 0 && d.d_join_ms_mb == 0);
        }
    }

    /* a bad field is named */
    f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "{\"node\": {\"block_size\": 16}, \"prefill\": {}}\n");
    fclose(f);
    assert_int_equal(bt_sim_cost_load(path, &d, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "node.total_blocks"));
    unlink(path);
    assert_int_equal(bt_sim_cost_load(path, &d, err, sizeof(err)), -1);
}

static void write_file(const char *path, const char *overhead,
                       const char *extra)
{
    FILE *f = fopen(path, "w");

    assert_non_null(f);
    fprintf(f, "{\"node\": {\"block_size\": 16, \"total_blocks\": 8, "
            "\"max_batch\": 4, \"max_prefill_tokens\": 64, "
            "\"kv_bytes_per_token\": 8}, \"prefill\": {\"base_ms\": 1, "
            "\"per_token_ms\": 0.5, \"per_token_ctx_us\": 0}, \"decode\": "
            "{\"base_ms\": 1, \"per_seq_ms\": 0, \"per_ctx_token_us\": 0}, "
            "\"transfer\": {\"shm\": {\"base_ms\": 0, \"ms_per_mb\": 0}}, "
            "\"kvstore\": {\"base_ms\": 0, \"per_block_ms\": 0}, "
            "\"overhead\": {\"ttft_ms\": 1%s}%s}\n", overhead, extra);
    fclose(f);
}

/* noise and router_ms: kept through the file, optional, checked. */
static void test_noise_and_router(void **state)
{
    char path[] = "/tmp/test_sim_cost.XXXXXX";
    int fd = mkstemp(path);
    bt_sim_cost_t c = shape(), d;
    double v[1000], seen[3] = {0};
    char err[256];
    static const struct {
        const char *overhead, *extra, *why;
    } bad[] = {
        {"", ", \"noise\": {\"ttft_factors\": [1.2, 1.1]}", "ascending"},
        {"", ", \"noise\": {\"ttft_factors\": [0, 1.1]}", "ascending"},
        {"", ", \"noise\": {\"ttft_factors\": []}", "noise.ttft_factors"},
        {"", ", \"noise\": {\"ttft_factors\": \"x\"}", "noise.ttft_factors"},
        {", \"router_ms\": -1", "", "overhead.router_ms"},
    };

    (void)state;
    assert_true(fd >= 0);
    close(fd);
    /* without them: no noise, nothing one at a time */
    write_file(path, "", "");
    assert_int_equal(bt_sim_cost_load(path, &d, err, sizeof(err)), 0);
    assert_int_equal(d.n_noise, 0);
    assert_true(d.router_ms == 0);
    assert_true(bt_sim_noise(&d, 7) == 1.0);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        write_file(path, bad[i].overhead, bad[i].extra);
        assert_int_equal(bt_sim_cost_load(path, &d, err, sizeof(err)), -1);
        assert_non_null(strstr(err, bad[i].why));
    }

    /* a long list keeps its ends and its order, at most BT_SIM_MAX_NOISE */
    for (int i = 0; i < 1000; i++) {
        v[i] = 0.5 + (double)((i * 37) % 1000) / 1000;   /* 0.5 .. 1.499 */
    }
    bt_sim_noise_set(&c, v, 1000);
    assert_int_equal(c.n_noise, BT_SIM_MAX_NOISE);
    assert_true(c.noise[0] == 0.5f && fabsf(c.noise[BT_SIM_MAX_NOISE - 1] -
                                           1.499f) < 1e-6);
    for (size_t k = 1; k < c.n_noise; k++) {
        assert_true(c.noise[k] >= c.noise[k - 1]);
    }
    v[0] = 2;
    v[1] = 0.5;
    v[2] = 1;
    bt_sim_noise_set(&c, v, 3);
    assert_int_equal(c.n_noise, 3);
    assert_true(c.noise[0] == 0.5f && c.noise[1] == 1 && c.noise[2] == 2);
    /* a request's factor is one of the list, the same every time, and
     * requests spread over all of them */
    for (uint64_t i = 0; i < 300; i++) {
        double f = bt_sim_noise(&c, i);

        assert_true(f == bt_sim_noise(&c, i));
        assert_true(f == 0.5 || f == 1 || f == 2);
        seen[f == 0.5 ? 0 : f == 1 ? 1 : 2]++;
    }
    assert_true(seen[0] > 50 && seen[1] > 50 && seen[2] > 50);

    c.router_ms = 1.5;
    c.p_base_ms = 1;
    c.n_xfer = 1;
    c.xfer[0] = (bt_sim_xfer_cost_t){"shm", 0, 0};
    assert_int_equal(bt_sim_cost_save(path, &c, "unit test", err, sizeof(err)), 0);
    assert_int_equal(bt_sim_cost_load(path, &d, err, sizeof(err)), 0);
    assert_true(d.router_ms == 1.5);
    assert_int_equal(d.n_noise, 3);
    assert_true(d.noise[0] == 0.5f && d.noise[2] == 2.0f);
    unlink(path);
}

static void key(uint8_t *k, int i)
{
    memset(k, 0, BT_SIM_KEY_LEN);
    k[0] = (uint8_t)i;
    k[9] = (uint8_t)(i * 7);
}

static void test_lru_order(void **state)
{
    bt_sim_lru_t *c = bt_sim_lru_create(3);
    uint8_t k[5][BT_SIM_KEY_LEN], ev[BT_SIM_KEY_LEN];

    (void)state;
    assert_non_null(c);
    for (int i = 0; i < 5; i++) {
        key(k[i], i);
    }
    assert_false(bt_sim_lru_insert(c, k[0], ev));
    assert_false(bt_sim_lru_insert(c, k[1], ev));
    assert_false(bt_sim_lru_insert(c, k[2], ev));
    assert_int_equal(bt_sim_lru_size(c), 3);
    /* k0..k1 used again: k2 is now the oldest */
    assert_int_equal(bt_sim_lru_match(c, k[0], 2), 2);
    assert_true(bt_sim_lru_insert(c, k[3], ev));
    assert_memory_equal(ev, k[2], BT_SIM_KEY_LEN);
    assert_int_equal(bt_sim_lru_match(c, k[2], 1), 0);
    assert_true(bt_sim_lru_insert(c, k[4], ev));
    assert_memory_equal(ev, k[0], BT_SIM_KEY_LEN);
    assert_int_equal(bt_sim_lru_size(c), 3);
    bt_sim_lru_destroy(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lsq_exact_and_nonnegative),
        cmocka_unit_test(test_prefill_fit_recovers),
        cmocka_unit_test(test_decode_fit_and_line),
        cmocka_unit_test(test_cost_file_round_trip),
        cmocka_unit_test(test_noise_and_router),
        cmocka_unit_test(test_lru_order),
    };

    return cmocka_run_group_tests_name("sim_fit", tests, NULL, NULL);
}
