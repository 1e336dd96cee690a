/* Prompt-token logprobs (bt_sample_token_logprobs): bit-equal to the
 * sampler's logprobs for the token it chose at temperature 1, any token's
 * value the log-softmax (sums to 1), NaN as -inf, bad arguments refused. */
#include "engine/sample/sample.h"

#include <math.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#define V 300

static void fill(float *l, uint32_t salt)
{
    uint32_t x = 2463534242u ^ salt;

    for (int i = 0; i < V; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        l[i] = (float)(x % 2000) / 100.0f - 10.0f;
    }
    l[17] = l[18];   /* a tie: the lower id ranks first */
}

static void test_equals_sampler(void **state)
{
    bt_sampler_t *s;
    bt_sample_params_t p;
    float l[V];

    (void)state;
    assert_int_equal(bt_sampler_create(V, &s), BT_OK);
    bt_sample_params_default(&p);
    p.logprobs = 20;
    for (uint32_t k = 0; k < 50; k++) {
        bt_sample_seq_t seq;
        bt_sample_result_t a, b;

        fill(l, k);
        memset(&seq, 0, sizeof(seq));
        seq.position = k;
        p.seed = k;
        assert_int_equal(bt_sampler_sample(s, &p, l, &seq, &a), BT_OK);
        assert_int_equal(bt_sample_token_logprobs(l, V, a.token, 20, &b), BT_OK);
        assert_int_equal(b.token, a.token);
        assert_memory_equal(&a.logprob, &b.logprob, sizeof(float));
        assert_int_equal(a.n_top, b.n_top);
        assert_memory_equal(a.top_ids, b.top_ids, 20 * sizeof(int32_t));
        assert_memory_equal(a.top_logprobs, b.top_logprobs, 20 * sizeof(float));
    }
    bt_sampler_destroy(s);
}

static void test_softmax(void **state)
{
    bt_sample_result_t r;
    double total = 0.0;
    float l[V];

    (void)state;
    fill(l, 99);
    for (int32_t t = 0; t < V; t++) {
        assert_int_equal(bt_sample_token_logprobs(l, V, t, 0, &r), BT_OK);
        assert_int_equal(r.n_top, 0);
        assert_true(r.logprob <= 0.0f);
        total += exp((double)r.logprob);
    }
    assert_true(fabs(total - 1.0) < 1e-4);
    /* the top list is sorted and its head is the arg max */
    assert_int_equal(bt_sample_token_logprobs(l, V, 3, 5, &r), BT_OK);
    for (uint32_t i = 1; i < r.n_top; i++) {
        assert_true(r.top_logprobs[i] <= r.top_logprobs[i - 1]);
    }
    l[40] = NAN;
    l[41] = 50.0f;
    assert_int_equal(bt_sample_token_logprobs(l, V, 40, 2, &r), BT_OK);
    assert_true(isinf(r.logprob) && r.logprob < 0);
    assert_int_equal(r.top_ids[0], 41);
    assert_true(r.top_logprobs[0] > -1e-6f);
    assert_int_equal(bt_sample_token_logprobs(l, V, V, 2, &r), BT_ERR_INVALID_ARG);
    assert_int_equal(bt_sample_token_logprobs(l, V, -1, 2, &r), BT_ERR_INVALID_ARG);
    assert_int_equal(bt_sample_token_logprobs(l, V, 1, 21, &r), BT_ERR_INVALID_ARG);
    for (int i = 0; i < V; i++) {
        l[i] = -INFINITY;
    }
    assert_int_equal(bt_sample_token_logprobs(l, V, 1, 2, &r), BT_ERR_INVALID_ARG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_equals_sampler),
        cmocka_unit_test(test_softmax),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
