/* logit_bias in the sampler: the checks (count, vocabulary, duplicates,
 * range), +100 forcing a token and -100 banning it under greedy and
 * random sampling, a bias changing only its own token's logit and
 * logprob, and the result being the same as biasing the logits by hand. */
#include "engine/sample/sample.h"

#include <math.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#define V 64

static void logits_ramp(float *l)
{
    for (int i = 0; i < V; i++) {
        l[i] = (float)((i * 37) % V) / 16.0f;  /* best: the id with 63 */
    }
}

static bt_sample_result_t sample(bt_sampler_t *s, const bt_sample_params_t *p,
                                 const float *l, uint64_t pos)
{
    bt_sample_seq_t seq;
    bt_sample_result_t r;

    memset(&seq, 0, sizeof(seq));
    seq.position = pos;
    assert_int_equal(bt_sampler_sample(s, p, l, &seq, &r), BT_OK);
    return r;
}

static void test_check(void **state)
{
    bt_sample_params_t p;
    char err[128];

    (void)state;
    bt_sample_params_default(&p);
    assert_int_equal(bt_sample_bias_check(&p, V, err, sizeof(err)), BT_OK);
    p.n_bias = 2;
    p.bias_ids[0] = 3;
    p.bias_values[0] = 100.0f;
    p.bias_ids[1] = V - 1;
    p.bias_values[1] = -100.0f;
    assert_int_equal(bt_sample_bias_check(&p, V, err, sizeof(err)), BT_OK);
    p.bias_ids[1] = V;
    assert_int_equal(bt_sample_bias_check(&p, V, err, sizeof(err)),
                     BT_ERR_INVALID_ARG);
    assert_non_null(strstr(err, "token id 64 is outside"));
    p.bias_ids[1] = -1;
    assert_int_equal(bt_sample_bias_check(&p, V, err, sizeof(err)),
                     BT_ERR_INVALID_ARG);
    p.bias_ids[1] = 3;
    assert_int_equal(bt_sample_bias_check(&p, V, err, sizeof(err)),
                     BT_ERR_INVALID_ARG);
    assert_non_null(strstr(err, "given twice"));
    p.bias_ids[1] = 4;
    p.bias_values[1] = 100.5f;
    assert_int_equal(bt_sample_bias_check(&p, V, err, sizeof(err)),
                     BT_ERR_INVALID_ARG);
    assert_non_null(strstr(err, "[-100, 100]"));
    p.bias_values[1] = NAN;
    assert_int_equal(bt_sample_bias_check(&p, V, err, sizeof(err)),
                     BT_ERR_INVALID_ARG);
    p.bias_values[1] = 0.0f;
    p.n_bias = BT_SAMPLE_MAX_BIAS + 1;
    assert_int_equal(bt_sample_bias_check(&p, V, err, sizeof(err)),
                     BT_ERR_INVALID_ARG);
    /* the sampler refuses what the check refuses */
    {
        bt_sampler_t *s;
        bt_sample_seq_t seq;
        bt_sample_result_t r;
        float l[V];

        logits_ramp(l);
        memset(&seq, 0, sizeof(seq));
        assert_int_equal(bt_sampler_create(V, &s), BT_OK);
        p.n_bias = 1;
        p.bias_ids[0] = V + 5;
        assert_int_equal(bt_sampler_sample(s, &p, l, &seq, &r),
                         BT_ERR_INVALID_ARG);
        bt_sampler_destroy(s);
    }
}

static void test_force_and_ban(void **state)
{
    bt_sampler_t *s;
    bt_sample_params_t p;
    float l[V];
    int best = -1;

    (void)state;
    logits_ramp(l);
    for (int i = 0; i < V; i++) {
        if (best < 0 || l[i] > l[best]) {
            best = i;
        }
    }
    assert_int_equal(bt_sampler_create(V, &s), BT_OK);
    bt_sample_params_default(&p);
    p.temperature = 0.0f;
    assert_int_equal(sample(s, &p, l, 0).token, best);
    /* -100 bans the arg max: greedy takes the next best */
    p.n_bias = 1;
    p.bias_ids[0] = best;
    p.bias_values[0] = -100.0f;
    assert_int_not_equal(sample(s, &p, l, 0).token, best);
    /* +100 forces the worst token, greedy and at temperature 1, at every
     * position (the draw never reaches the others' e^-96 weight) */
    p.bias_ids[0] = 0;
    assert_true(l[0] < l[best]);
    p.bias_values[0] = 100.0f;
    assert_int_equal(sample(s, &p, l, 0).token, 0);
    p.temperature = 1.0f;
    for (uint64_t pos = 0; pos < 200; pos++) {
        p.seed = pos * 7919u;
        assert_int_equal(sample(s, &p, l, pos).token, 0);
    }
    /* -100 on the best under temperature 1: never drawn */
    p.bias_ids[0] = best;
    p.bias_values[0] = -100.0f;
    for (uint64_t pos = 0; pos < 200; pos++) {
        p.seed = pos;
        assert_int_not_equal(sample(s, &p, l, pos).token, best);
    }
    bt_sampler_destroy(s);
}

/* A biased request samples exactly what unbiased sampling of hand-biased
 * logits gives: token, logprob and top-n, at many positions. */
static void test_same_as_biased_logits(void **state)
{
    bt_sampler_t *s;
    bt_sample_params_t pb, pu;
    float l[V], lb[V];

    (void)state;
    logits_ramp(l);
    memcpy(lb, l, sizeof(l));
    assert_int_equal(bt_sampler_create(V, &s), BT_OK);
    bt_sample_params_default(&pb);
    pb.logprobs = 5;
    pb.seed = 42;
    pb.n_bias = 3;
    pb.bias_ids[0] = 5;
    pb.bias_values[0] = 2.5f;
    pb.bias_ids[1] = 9;
    pb.bias_values[1] = -1.25f;
    pb.bias_ids[2] = 40;
    pb.bias_values[2] = 3.0f;
    for (uint32_t i = 0; i < pb.n_bias; i++) {
        lb[pb.bias_ids[i]] += pb.bias_values[i];
    }
    pu = pb;
    pu.n_bias = 0;
    for (uint64_t pos = 0; pos < 100; pos++) {
        bt_sample_result_t a = sample(s, &pb, l, pos);
        bt_sample_result_t b = sample(s, &pu, lb, pos);

        assert_int_equal(a.token, b.token);
        assert_memory_equal(&a.logprob, &b.logprob, sizeof(float));
        assert_int_equal(a.n_top, b.n_top);
        assert_memory_equal(a.top_ids, b.top_ids, a.n_top * sizeof(int32_t));
        assert_memory_equal(a.top_logprobs, b.top_logprobs,
                            a.n_top * sizeof(float));
    }
    /* the caller's logits are not modified */
    logits_ramp(lb);
    assert_memory_equal(l, lb, sizeof(l));
    bt_sampler_destroy(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_check),
        cmocka_unit_test(test_force_and_ban),
        cmocka_unit_test(test_same_as_biased_logits),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
