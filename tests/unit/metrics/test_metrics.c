#include "metrics/metrics.h"

#include "bt_config.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

static char *render(bt_metrics_t *reg)
{
    bt_buf_t b;

    bt_buf_init(&b, 1 << 20);
    assert_int_equal(bt_metrics_render(reg, &b), BT_OK);
    return bt_buf_steal(&b, NULL);
}

static void test_exposition_format(void **state)
{
    bt_metrics_t *reg = bt_metrics_create_bare();
    char labels[128];
    bt_counter_t *c;
    bt_gauge_t *g;
    char *text;

    (void)state;
    c = bt_metrics_counter(reg, "baton_requests_total", "requests seen",
                           bt_metrics_labels(labels, sizeof(labels), "role",
                                             "prefill", "code", "ok", NULL));
    assert_non_null(c);
    bt_counter_inc(c);
    bt_counter_add(c, 2);
    bt_counter_add(c, -5); /* counters never go down */
    g = bt_metrics_gauge(reg, "baton_free_blocks", "free kv blocks", NULL);
    bt_gauge_set(g, 10);
    bt_gauge_add(g, -2.5);
    text = render(reg);
    assert_string_equal(text,
        "# HELP baton_requests_total requests seen\n"
        "# TYPE baton_requests_total counter\n"
        "baton_requests_total{role=\"prefill\",code=\"ok\"} 3\n"
        "# HELP baton_free_blocks free kv blocks\n"
        "# TYPE baton_free_blocks gauge\n"
        "baton_free_blocks 7.5\n");
    free(text);
    /* same name + labels → same series */
    assert_ptr_equal(c, bt_metrics_counter(reg, "baton_requests_total", "x", labels));
    bt_metrics_destroy(reg);
}

/* A daemon's registry carries build info and the standard process_*
 * series, read from /proc at each render. */
static void test_process_and_build_info(void **state)
{
    bt_metrics_t *reg = bt_metrics_create();
    char *text, *p;
    double v;

    (void)state;
    text = render(reg);
    assert_non_null(strstr(text, "# TYPE baton_build_info gauge\n"
                                 "baton_build_info{version=\"" BT_VERSION "\"} 1\n"));
    assert_non_null(strstr(text, "# TYPE process_cpu_seconds_total counter\n"));
    p = strstr(text, "\nprocess_resident_memory_bytes ");
    assert_non_null(p);
    assert_true(strtod(p + strlen("\nprocess_resident_memory_bytes "), NULL) > 0);
    p = strstr(text, "\nprocess_open_fds ");
    assert_non_null(p);
    assert_true(strtod(p + strlen("\nprocess_open_fds "), NULL) >= 3);
    p = strstr(text, "\nprocess_start_time_seconds ");
    assert_non_null(p);
    v = strtod(p + strlen("\nprocess_start_time_seconds "), NULL);
    assert_true(v > (double)time(NULL) - 3600 && v <= (double)time(NULL) + 1);
    assert_non_null(strstr(text, "\nprocess_max_fds "));
    assert_non_null(strstr(text, "\nprocess_virtual_memory_bytes "));
    free(text);
    bt_metrics_destroy(reg);
}

static void test_histogram(void **state)
{
    bt_metrics_t *reg = bt_metrics_create();
    const double bounds[] = { 0.1, 1 };
    bt_histogram_t *h;
    char *text;

    (void)state;
    h = bt_metrics_histogram(reg, "baton_ttft_seconds", "time to first token",
                             "model=\"m\"", bounds, 2);
    assert_non_null(h);
    bt_histogram_observe(h, 0.05);
    bt_histogram_observe(h, 0.1); /* le is inclusive */
    bt_histogram_observe(h, 0.5);
    bt_histogram_observe(h, 7);
    text = render(reg);
    assert_non_null(strstr(text, "baton_ttft_seconds_bucket{model=\"m\",le=\"0.1\"} 2\n"));
    assert_non_null(strstr(text, "baton_ttft_seconds_bucket{model=\"m\",le=\"1\"} 3\n"));
    assert_non_null(strstr(text, "baton_ttft_seconds_bucket{model=\"m\",le=\"+Inf\"} 4\n"));
    assert_non_null(strstr(text, "baton_ttft_seconds_sum{model=\"m\"} 7.65\n"));
    assert_non_null(strstr(text, "baton_ttft_seconds_count{model=\"m\"} 4\n"));
    free(text);
    {
        /* bounds print as written, as dashboards name them in le="..." */
        const double fine[] = { 0.005, 0.025, 0.3, 2.5 };
        bt_histogram_t *h3 = bt_metrics_histogram(reg, "baton_itl_seconds", "itl",
                                                  NULL, fine, 4);

        assert_non_null(h3);
        text = render(reg);
        assert_non_null(strstr(text, "baton_itl_seconds_bucket{le=\"0.005\"} 0\n"));
        assert_non_null(strstr(text, "baton_itl_seconds_bucket{le=\"0.025\"} 0\n"));
        assert_non_null(strstr(text, "baton_itl_seconds_bucket{le=\"0.3\"} 0\n"));
        assert_non_null(strstr(text, "baton_itl_seconds_bucket{le=\"2.5\"} 0\n"));
        free(text);
    }
    {
        const double bad[] = { 1, 0.5 };

        assert_null(bt_metrics_histogram(reg, "h2", "", NULL, bad, 2));
    }
    bt_metrics_destroy(reg);
}

static void test_bad_names_and_type_clash(void **state)
{
    bt_metrics_t *reg = bt_metrics_create();
    char labels[16];

    (void)state;
    assert_null(bt_metrics_counter(reg, "9lives", "", NULL));
    assert_null(bt_metrics_counter(reg, "has space", "", NULL));
    assert_null(bt_metrics_counter(reg, "", "", NULL));
    assert_non_null(bt_metrics_counter(reg, "a:b_c", "", NULL));
    assert_null(bt_metrics_gauge(reg, "a:b_c", "", NULL));
    /* escaping of label values; too long → empty, not truncated garbage */
    assert_string_equal(bt_metrics_labels(labels, sizeof(labels), "k", "a\"b\\c\n", NULL),
                        "k=\"a\\\"b\\\\c\\n\"");
    assert_string_equal(bt_metrics_labels(labels, 8, "k", "toolongvalue", NULL), "");
    bt_metrics_destroy(reg);
    bt_metrics_destroy(NULL);
}

static bt_counter_t *shared_counter;

static void *hammer(void *arg)
{
    int i;

    (void)arg;
    for (i = 0; i < 100000; i++) {
        bt_counter_inc(shared_counter);
    }
    return NULL;
}

static void test_concurrent_updates_are_not_lost(void **state)
{
    bt_metrics_t *reg = bt_metrics_create();
    pthread_t t[4];
    int i;

    (void)state;
    shared_counter = bt_metrics_counter(reg, "hits_total", "", NULL);
    for (i = 0; i < 4; i++) {
        pthread_create(&t[i], NULL, hammer, NULL);
    }
    for (i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
    }
    assert_true(bt_metric_value(shared_counter) == 400000.0);
    bt_metrics_destroy(reg);
}

/* A removed series leaves the exposition; the others, the family's
 * HELP/TYPE and a series created again with the same labels stay right. */
static void test_remove(void **state)
{
    bt_metrics_t *reg = bt_metrics_create_bare();
    bt_counter_t *a, *b, *c;
    bt_histogram_t *h;
    const double bounds[] = { 1, 2 };
    char *text;

    (void)state;
    a = bt_metrics_counter(reg, "x_total", "x", "peer=\"a\"");
    b = bt_metrics_counter(reg, "x_total", "x", "peer=\"b\"");
    c = bt_metrics_counter(reg, "x_total", "x", "peer=\"c\"");
    h = bt_metrics_histogram(reg, "x_seconds", "t", "peer=\"c\"", bounds, 2);
    bt_counter_inc(a);
    bt_counter_inc(b);
    bt_counter_inc(c);
    bt_histogram_observe(h, 1.5);
    bt_metrics_remove(reg, c);        /* the last of its family */
    bt_metrics_remove(reg, a);        /* the first */
    bt_metrics_remove(reg, h);        /* the only one */
    bt_metrics_remove(reg, NULL);
    text = render(reg);
    assert_null(strstr(text, "peer=\"a\""));
    assert_null(strstr(text, "peer=\"c\""));
    assert_non_null(strstr(text, "x_total{peer=\"b\"} 1\n"));
    assert_non_null(strstr(text, "# TYPE x_seconds histogram\n"));
    free(text);
    /* the family's tail is right: a new series goes after b */
    c = bt_metrics_counter(reg, "x_total", "x", "peer=\"c\"");
    assert_non_null(c);
    assert_true(bt_metric_value(c) == 0);
    text = render(reg);
    assert_non_null(strstr(text, "x_total{peer=\"b\"} 1\n"
                                 "x_total{peer=\"c\"} 0\n"));
    free(text);
    bt_metrics_remove(reg, b);
    bt_metrics_remove(reg, c);
    text = render(reg);
    assert_null(strstr(text, "x_total{"));
    free(text);
    bt_metrics_destroy(reg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exposition_format),
        cmocka_unit_test(test_process_and_build_info),
        cmocka_unit_test(test_histogram),
        cmocka_unit_test(test_bad_names_and_type_clash),
        cmocka_unit_test(test_concurrent_updates_are_not_lost),
        cmocka_unit_test(test_remove),
    };

    return cmocka_run_group_tests_name("metrics", tests, NULL, NULL);
}
