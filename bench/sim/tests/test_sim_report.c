/* The shared benchmark library (bench/workload): the goodput report
 * (percentiles, SLO attainment, goodput, JSON, Markdown and CDF files) and
 * the seeded workloads baton-bench and baton-sim both replay. */
#include "report.h"
#include "workload.h"

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

static void recs10(bt_rep_rec_t *r)
{
    memset(r, 0, 10 * sizeof(*r));
    for (int i = 0; i < 10; i++) {
        r[i].ok = i != 9;                /* the last one failed */
        r[i].ttft_ms = 10.0 * (i + 1);   /* 10 .. 90 */
        r[i].tpot_ms = i < 5 ? 2 : 8;
        r[i].itl1_ms = i == 0 ? 0 : 1.0 * i;   /* 1 .. 8 with two tokens */
        r[i].e2e_ms = 100;
        r[i].out_tokens = i == 0 ? 1 : 10;
        r[i].prompt_tokens = 100;
        r[i].cached_tokens = 25;
    }
}

static void test_slo_and_goodput(void **state)
{
    bt_rep_rec_t r[10];
    bt_rep_slo_t slo = {50, 4};
    bt_rep_t rep;

    (void)state;
    recs10(r);
    bt_rep_compute(r, 10, 2.0, &slo, NULL, 0, &rep);
    assert_int_equal(rep.ok, 9);
    assert_int_equal(rep.errors, 1);
    /* ttft <= 50: requests 0..4; tpot <= 4: 0..4 and request 0 has one
     * token (no tpot) anyway; the failed one meets nothing */
    assert_true(fabs(rep.frac_ttft - 0.5) < 1e-12);
    assert_true(fabs(rep.frac_tpot - 0.5) < 1e-12);
    assert_true(fabs(rep.frac_both - 0.5) < 1e-12);
    assert_true(fabs(rep.goodput - 2.5) < 1e-12);
    assert_true(fabs(rep.req_s - 4.5) < 1e-12);
    assert_int_equal(rep.out_tokens, 1 + 8 * 10);
    /* nearest rank over the 9 that succeeded */
    assert_true(rep.ttft.p50 == 50 && rep.ttft.p90 == 90 && rep.ttft.n == 9);
    /* tpot only of requests with 2+ tokens: 1..8 */
    assert_int_equal(rep.tpot.n, 8);
    assert_true(rep.tpot.p50 == 2);
    /* the first gap likewise: 1..8 */
    assert_int_equal(rep.itl1.n, 8);
    assert_true(rep.itl1.p50 == 4 && rep.itl1.p90 == 8);
    /* no SLO: everything that succeeded meets it */
    slo = (bt_rep_slo_t){0, 0};
    bt_rep_compute(r, 10, 2.0, &slo, NULL, 0, &rep);
    assert_true(fabs(rep.frac_both - 0.9) < 1e-12);
}

static void test_json_and_files(void **state)
{
    bt_rep_rec_t r[10];
    bt_rep_slo_t slo = {50, 4};
    bt_rep_t rep;
    char dir[] = "/tmp/test_sim_report.XXXXXX", path[512], line[256], err[256];
    json_t *o;
    FILE *f;
    int lines = 0;

    (void)state;
    recs10(r);
    bt_rep_compute(r, 10, 2.0, &slo, NULL, 0, &rep);
    o = bt_rep_json(&rep);
    assert_non_null(o);
    assert_true(fabs(json_real_value(json_object_get(o, "goodput_req_s")) - 2.5) < 1e-12);
    assert_true(json_real_value(json_object_get(json_object_get(o, "slo"),
                                                "ttft_ms")) == 50);
    assert_int_equal(json_integer_value(json_object_get(o, "cached_tokens")), 225);
    assert_true(json_real_value(json_object_get(json_object_get(o, "itl_first_ms"),
                                                "p50")) == 4);
    json_decref(o);
    assert_non_null(mkdtemp(dir));
    assert_int_equal(bt_rep_write_dir(dir, r, 10, &rep, "unit", err, sizeof(err)), 0);
    snprintf(path, sizeof(path), "%s/ttft_cdf.dat", dir);
    f = fopen(path, "r");
    assert_non_null(f);
    while (fgets(line, sizeof(line), f) != NULL) {
        lines++;
    }
    fclose(f);
    assert_int_equal(lines, 1 + 9);    /* a header, one point per ok */
    unlink(path);
    snprintf(path, sizeof(path), "%s/tpot_cdf.dat", dir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/report.json", dir);
    o = json_load_file(path, 0, NULL);
    assert_non_null(o);
    assert_int_equal(json_integer_value(json_object_get(o, "ok")), 9);
    json_decref(o);
    unlink(path);
    snprintf(path, sizeof(path), "%s/report.md", dir);
    f = fopen(path, "r");
    assert_non_null(f);
    assert_non_null(fgets(line, sizeof(line), f));
    assert_string_equal(line, "## unit\n");
    fclose(f);
    unlink(path);
    rmdir(dir);
    /* an unwritable folder is an error with a message */
    assert_int_equal(bt_rep_write_dir("/nonexistent/x", r, 10, &rep, "u", err,
                                      sizeof(err)), -1);
    assert_non_null(strstr(err, "cannot write"));
}

static void test_dist_parse(void **state)
{
    bt_wl_dist_t d;
    char err[128];
    uint64_t rng = 1;

    (void)state;
    assert_int_equal(bt_wl_dist_parse("128", &d, err, sizeof(err)), 0);
    assert_true(d.kind == BT_WL_FIXED && bt_wl_dist_draw(&d, &rng) == 128);
    assert_int_equal(bt_wl_dist_parse("uniform:10:20", &d, err, sizeof(err)), 0);
    for (int i = 0; i < 1000; i++) {
        uint32_t v = bt_wl_dist_draw(&d, &rng);

        assert_true(v >= 10 && v <= 20);
    }
    assert_int_equal(bt_wl_dist_parse("exp:100", &d, err, sizeof(err)), 0);
    assert_int_equal(d.b, 800);
    {
        double sum = 0;

        for (int i = 0; i < 20000; i++) {
            sum += bt_wl_dist_draw(&d, &rng);
        }
        assert_true(sum / 20000 > 90 && sum / 20000 < 112);
    }
    assert_int_equal(bt_wl_dist_parse("exp:100:150", &d, err, sizeof(err)), 0);
    assert_int_equal(d.b, 150);
    const char *bad[] = {"", "0", "x", "uniform:20:10", "uniform:5", "exp:",
                         "12:3", "uniform:1:2:3", "-5"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(bt_wl_dist_parse(bad[i], &d, err, sizeof(err)), -1);
        assert_non_null(strstr(err, "bad length"));
    }
}

static bt_wl_cfg_t wl_cfg(void)
{
    bt_wl_cfg_t c;

    memset(&c, 0, sizeof(c));
    c.requests = 2000;
    c.concurrency = 4;
    c.rate = 50;
    c.prompt_tokens = "uniform:16:64";
    c.output_tokens = "8";
    c.seed = 7;
    c.block_tokens = 32;
    c.max_output = 64;
    c.kv_block = 16;
    return c;
}

static void test_workload_seeded(void **state)
{
    bt_wl_cfg_t c = wl_cfg();
    bt_wl_t a, b;
    char err[128];
    int32_t pa[64], pb[64];
    uint8_t ka[4 * 32], kb[4 * 32];

    (void)state;
    assert_int_equal(bt_wl_build(&c, &a, err, sizeof(err)), 0);
    assert_int_equal(bt_wl_build(&c, &b, err, sizeof(err)), 0);
    assert_true(a.open);
    assert_int_equal(a.n, 2000);
    assert_memory_equal(a.reqs, b.reqs, a.n * sizeof(*a.reqs));
    /* Poisson at 50/s: 2000 arrivals take about 40 s */
    assert_true(a.reqs[1999].t_s > 36 && a.reqs[1999].t_s < 44);
    for (size_t i = 1; i < a.n; i++) {
        assert_true(a.reqs[i].t_s >= a.reqs[i - 1].t_s);
    }
    /* a prompt depends on its index only, not on what was made before */
    bt_wl_prompt(&b, 1500, pb);
    bt_wl_prompt(&a, 3, pa);
    bt_wl_prompt(&a, 1500, pa);
    assert_memory_equal(pa, pb, a.reqs[1500].n_prompt * sizeof(int32_t));
    /* keys: equal prefixes share keys, a change ends the sharing */
    memcpy(pb, pa, sizeof(pa));
    pb[40] += 1;
    assert_int_equal(bt_wl_block_keys(pa, 64, 16, ka, 4), 4);
    assert_int_equal(bt_wl_block_keys(pb, 64, 16, kb, 4), 4);
    assert_memory_equal(ka, kb, 2 * 32);
    assert_memory_not_equal(ka + 2 * 32, kb + 2 * 32, 32);
    assert_memory_not_equal(ka + 3 * 32, kb + 3 * 32, 32);
    assert_int_equal(bt_wl_block_keys(pa, 64, 16, ka, 2), 2);
    c.seed = 8;
    bt_wl_free(&b);
    assert_int_equal(bt_wl_build(&c, &b, err, sizeof(err)), 0);
    assert_memory_not_equal(a.reqs, b.reqs, 100 * sizeof(*a.reqs));
    bt_wl_free(&a);
    bt_wl_free(&b);
    c.prompt_tokens = "uniform:9";
    assert_int_equal(bt_wl_build(&c, &a, err, sizeof(err)), -1);
}

static void test_workload_trace(void **state)
{
    bt_wl_cfg_t c = wl_cfg();
    char path[] = "/tmp/test_sim_trace.XXXXXX", err[128];
    int fd = mkstemp(path);
    FILE *f = fdopen(fd, "w");
    bt_wl_t w;

    (void)state;
    assert_non_null(f);
    fprintf(f, "{\"timestamp\": 0, \"input_length\": 1000, \"output_length\": 100, \"hash_ids\": [1, 2]}\n");
    fprintf(f, "{\"timestamp\": 2000, \"input_length\": 1500, \"output_length\": 10, \"hash_ids\": [1, 2, 3]}\n");
    fclose(f);
    c.trace = path;
    c.trace_speed = 2;
    assert_int_equal(bt_wl_build(&c, &w, err, sizeof(err)), 0);
    assert_int_equal(w.n, 2);
    assert_true(w.open && w.has_trace);
    assert_true(w.reqs[1].t_s == 1.0);   /* 2000 ms at speed 2 */
    assert_int_equal(w.reqs[0].n_prompt, 32 + 31);
    assert_int_equal(w.reqs[1].ideal_cached, 64);
    bt_wl_free(&w);
    c.trace_speed = 0;
    assert_int_equal(bt_wl_build(&c, &w, err, sizeof(err)), 0);
    assert_false(w.open);
    bt_wl_free(&w);
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_slo_and_goodput),
        cmocka_unit_test(test_json_and_files),
        cmocka_unit_test(test_dist_parse),
        cmocka_unit_test(test_workload_seeded),
        cmocka_unit_test(test_workload_trace),
    };

    return cmocka_run_group_tests_name("sim_report", tests, NULL, NULL);
}
