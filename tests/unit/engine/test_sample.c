/* Sampling: greedy ties, counter-based determinism, the temperature
 * distribution, truncation (top-k, top-p, min-p), penalties, logprobs,
 * stop ids, parameter checks, Philox known answers, exp/log accuracy. */
#include "engine/sample/sample.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

static bt_sample_seq_t at(uint64_t position)
{
    bt_sample_seq_t s;

    memset(&s, 0, sizeof(s));
    s.position = position;
    return s;
}

static int32_t draw(bt_sampler_t *s, const bt_sample_params_t *p,
                    const float *logits, uint64_t position)
{
    bt_sample_seq_t seq = at(position);
    bt_sample_result_t r;

    assert_int_equal(bt_sampler_sample(s, p, logits, &seq, &r), BT_OK);
    return r.token;
}

static void test_philox_known_answers(void **state)
{
    /* Random123 kat_vectors, philox4x32 with 10 rounds */
    static const uint32_t ctr[3][4] = {
        {0, 0, 0, 0},
        {0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu},
        {0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u},
    };
    static const uint32_t key[3][2] = {
        {0, 0}, {0xffffffffu, 0xffffffffu}, {0xa4093822u, 0x299f31d0u},
    };
    static const uint32_t want[3][4] = {
        {0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u},
        {0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu},
        {0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u},
    };
    uint32_t out[4];
    int i;

    (void)state;
    for (i = 0; i < 3; i++) {
        bt_philox4x32(ctr[i], key[i], out);
        assert_memory_equal(out, want[i], sizeof(out));
    }
    assert_true(bt_sample_uniform(1, 2) >= 0.0);
    assert_true(bt_sample_uniform(1, 2) < 1.0);
    assert_true(bt_sample_uniform(1, 2) == bt_sample_uniform(1, 2));
    assert_true(bt_sample_uniform(1, 2) != bt_sample_uniform(1, 3));
    assert_true(bt_sample_uniform(1, 2) != bt_sample_uniform(2, 2));
}

static void test_exp_log_accuracy(void **state)
{
    double x;

    (void)state;
    for (x = -700.0; x <= 700.0; x += 0.37) {
        double ref = exp(x), got = bt_sample_exp(x);
        assert_true(fabs(got - ref) <= 4e-16 * ref);
    }
    for (x = 700.0; x < 709.78; x += 0.013) { /* 2^1024 scaling path */
        double ref = exp(x), got = bt_sample_exp(x);
        assert_true(fabs(got - ref) <= 4e-16 * ref);
    }
    for (x = -745.0; x < -700.0; x += 0.05) { /* subnormal results */
        double ref = exp(x), got = bt_sample_exp(x);
        assert_true(fabs(got - ref) <= 4e-16 * ref + 5e-324);
    }
    for (x = 1e-300; x < 1e300; x *= 1.7) {
        double ref = log(x), got = bt_sample_log(x);
        assert_true(fabs(got - ref) <= 4e-16 * fabs(ref) + 1e-300);
    }
    assert_true(bt_sample_exp(0.0) == 1.0);
    assert_true(bt_sample_log(1.0) == 0.0);
    assert_true(bt_sample_exp(-1000.0) == 0.0);
    assert_true(isinf(bt_sample_exp(1000.0)));
    assert_true(isinf(bt_sample_log(0.0)) && bt_sample_log(0.0) < 0);
    assert_true(isnan(bt_sample_log(-1.0)));
}

static void test_greedy_lowest_index_tie(void **state)
{
    const float logits[6] = {1.0f, 3.0f, -2.0f, 3.0f, NAN, 2.9f};
    bt_sample_params_t p;
    bt_sampler_t *s;
    uint64_t pos;

    (void)state;
    assert_int_equal(bt_sampler_create(6, &s), BT_OK);
    bt_sample_params_default(&p);
    p.temperature = 0.0f;
    for (pos = 0; pos < 20; pos++) {
        p.seed = pos * 7919;
        assert_int_equal(draw(s, &p, logits, pos), 1);
    }
    bt_sampler_destroy(s);
}

static void test_counter_determinism(void **state)
{
    float logits[1000];
    bt_sample_params_t p;
    bt_sampler_t *s;
    int32_t first[100];
    int distinct = 0, i, j;

    (void)state;
    for (i = 0; i < 1000; i++) {
        logits[i] = (float)(i % 7) * 0.01f;
    }
    assert_int_equal(bt_sampler_create(1000, &s), BT_OK);
    bt_sample_params_default(&p);
    p.seed = 1234;
    for (i = 0; i < 100; i++) {
        first[i] = draw(s, &p, logits, (uint64_t)i);
    }
    /* again, in reverse order and interleaved with another request: the
     * same (seed, position) gives the same token */
    for (i = 99; i >= 0; i--) {
        bt_sample_params_t q = p;
        q.seed = 99;
        (void)draw(s, &q, logits, (uint64_t)i);
        assert_int_equal(draw(s, &p, logits, (uint64_t)i), first[i]);
    }
    for (i = 0; i < 100; i++) {
        for (j = 0; j < i && first[j] != first[i]; j++) {
        }
        distinct += j == i;
    }
    assert_true(distinct > 80); /* positions are independent draws */
    bt_sampler_destroy(s);
}

/* Pearson chi-square of N draws against softmax(logits / T); a fixed seed
 * set makes the statistic a fixed number, the bound (p ~ 1e-4 for 7 dof)
 * catches a wrong distribution. */
static void chi_square(float temperature)
{
    const float logits[8] = {0.0f, 1.0f, 2.0f, 0.5f, -1.0f, 1.5f, 0.2f, 3.0f};
    const int N = 20000;
    int counts[8] = {0};
    double z = 0.0, chi = 0.0, prob[8];
    bt_sample_params_t p;
    bt_sampler_t *s;
    int i;

    assert_int_equal(bt_sampler_create(8, &s), BT_OK);
    bt_sample_params_default(&p);
    p.temperature = temperature;
    for (i = 0; i < N; i++) {
        p.seed = (uint64_t)i * 0x9e3779b97f4a7c15ull;
        counts[draw(s, &p, logits, 5)]++;
    }
    for (i = 0; i < 8; i++) {
        prob[i] = exp(logits[i] / temperature);
        z += prob[i];
    }
    for (i = 0; i < 8; i++) {
        double e = prob[i] / z * N;
        chi += (counts[i] - e) * (counts[i] - e) / e;
    }
    assert_true(chi < 27.9);
    bt_sampler_destroy(s);
}

static void test_temperature_distribution(void **state)
{
    (void)state;
    chi_square(1.0f);
    chi_square(0.7f);
    chi_square(2.0f);
}

/* Which tokens a parameter set can produce over many draws. */
static unsigned reachable(bt_sampler_t *s, const bt_sample_params_t *p,
                          const float *logits)
{
    unsigned mask = 0;
    uint64_t pos;

    for (pos = 0; pos < 3000; pos++) {
        mask |= 1u << draw(s, p, logits, pos);
    }
    return mask;
}

static void test_truncation(void **state)
{
    /* probabilities 0.5, 0.3, 0.15, 0.05 (ids shuffled: 2, 0, 3, 1) */
    float logits[4];
    bt_sample_params_t p;
    bt_sampler_t *s;

    (void)state;
    logits[2] = logf(0.5f);
    logits[0] = logf(0.3f);
    logits[3] = logf(0.15f);
    logits[1] = logf(0.05f);
    assert_int_equal(bt_sampler_create(4, &s), BT_OK);
    bt_sample_params_default(&p);
    p.seed = 42;
    assert_int_equal(reachable(s, &p, logits), 0xfu);
    p.top_k = 2;
    assert_int_equal(reachable(s, &p, logits), (1u << 2) | (1u << 0));
    p.top_k = 1;
    assert_int_equal(reachable(s, &p, logits), 1u << 2);
    p.top_k = 0;
    p.top_p = 0.75f;
    assert_int_equal(reachable(s, &p, logits), (1u << 2) | (1u << 0));
    p.top_p = 0.9f;
    assert_int_equal(reachable(s, &p, logits), 0xdu);
    p.top_p = 0.1f; /* the most likely token always stays */
    assert_int_equal(reachable(s, &p, logits), 1u << 2);
    /* top-p applies to the top-k set renormalised: 0.5/0.8 = 0.625 */
    p.top_k = 2;
    p.top_p = 0.6f;
    assert_int_equal(reachable(s, &p, logits), 1u << 2);
    p.top_p = 0.7f;
    assert_int_equal(reachable(s, &p, logits), (1u << 2) | (1u << 0));
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.2f; /* keeps p >= 0.1 */
    assert_int_equal(reachable(s, &p, logits), 0xdu);
    p.min_p = 0.5f; /* keeps p >= 0.25 */
    assert_int_equal(reachable(s, &p, logits), (1u << 2) | (1u << 0));
    bt_sampler_destroy(s);
}

/* The specification written out naively (full sort of the vocabulary),
 * against which the sampler's windowed selection must agree exactly. */
static const float *ref_l;

static int ref_cmp(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

    if (ref_l[x] != ref_l[y]) {
        return ref_l[x] > ref_l[y] ? -1 : 1;
    }
    return x < y ? -1 : 1;
}

static int32_t ref_sample(const float *raw, uint32_t V,
                          const bt_sample_params_t *p, uint64_t position)
{
    static float l[4096];
    static double prob[4096];
    static uint32_t order[4096];
    static unsigned char keep[4096];
    float lmax = -INFINITY;
    double total = 0.0, acc = 0.0, target;
    uint32_t i, n = 0, n_keep;
    int32_t last = -1;

    for (i = 0; i < V; i++) {
        l[i] = raw[i] / p->temperature;
        lmax = l[i] > lmax ? l[i] : lmax;
    }
    for (i = 0; i < V; i++) {
        double d = (double)l[i] - lmax;
        prob[i] = d >= -80.0 ? bt_sample_exp(d) : 0.0;
        keep[i] = 0;
        if (prob[i] > 0.0) {
            order[n++] = i;
        }
    }
    ref_l = l;
    qsort(order, n, sizeof(order[0]), ref_cmp);
    n_keep = n;
    if (p->top_k > 0 || p->top_p < 1.0f) {
        if (p->top_k > 0 && (uint32_t)p->top_k < n) {
            n_keep = (uint32_t)p->top_k;
        }
        for (i = 0; i < (p->top_k > 0 ? n_keep : V); i++) {
            total += p->top_k > 0 ? prob[order[i]] : prob[i];
        }
        for (i = 0; i < n_keep && p->top_p < 1.0f; i++) {
            acc += prob[order[i]];
            if (acc >= (double)p->top_p * total) {
                n_keep = i + 1;
                break;
            }
        }
    }
    for (i = 0; i < n_keep; i++) {
        keep[order[i]] = prob[order[i]] >= (double)p->min_p;
    }
    total = acc = 0.0;
    for (i = 0; i < V; i++) {
        total += keep[i] ? prob[i] : 0.0;
    }
    target = bt_sample_uniform(p->seed, position) * total;
    for (i = 0; i < V; i++) {
        if (keep[i]) {
            last = (int32_t)i;
            acc += prob[i];
            if (target < acc) {
                break;
            }
        }
    }
    return last;
}

static void test_matches_naive_reference(void **state)
{
    static float logits[3000];
    static const float scales[3] = {0.5f, 4.0f, 40.0f};
    static const int32_t ks[4] = {0, 1, 40, 1000};
    static const float ps[3] = {1.0f, 0.9f, 0.3f};
    static const float mins[2] = {0.0f, 0.05f};
    bt_sample_params_t p;
    bt_sampler_t *s;
    uint64_t x = 88172645463325252ull, pos;
    int a, b, c, d;
    uint32_t i;

    (void)state;
    assert_int_equal(bt_sampler_create(3000, &s), BT_OK);
    bt_sample_params_default(&p);
    for (a = 0; a < 3; a++) {
        for (i = 0; i < 3000; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            /* ties on purpose: values on a coarse grid */
            logits[i] = (float)(x % 64) / 64.0f * scales[a];
        }
        for (b = 0; b < 4; b++) {
            for (c = 0; c < 3; c++) {
                for (d = 0; d < 2; d++) {
                    p.top_k = ks[b];
                    p.top_p = ps[c];
                    p.min_p = mins[d];
                    p.temperature = 0.8f;
                    p.seed = (uint64_t)(a * 100 + b * 10 + c);
                    for (pos = 0; pos < 12; pos++) {
                        assert_int_equal(draw(s, &p, logits, pos),
                                         ref_sample(logits, 3000, &p, pos));
                    }
                }
            }
        }
    }
    bt_sampler_destroy(s);
}

static void test_penalties(void **state)
{
    float logits[4] = {2.0f, 1.9f, -1.0f, -1.1f};
    const int32_t prompt[] = {0, 0, 2, 77, -5}; /* out of range ignored */
    const int32_t gen3[] = {1, 1, 1};
    bt_sample_params_t p;
    bt_sample_seq_t seq;
    bt_sample_result_t r;
    bt_sampler_t *s;

    (void)state;
    assert_int_equal(bt_sampler_create(4, &s), BT_OK);
    bt_sample_params_default(&p);
    p.temperature = 0.0f;
    memset(&seq, 0, sizeof(seq));
    seq.prompt = prompt;
    seq.n_prompt = 5;
    assert_int_equal(bt_sampler_sample(s, &p, logits, &seq, &r), BT_OK);
    assert_int_equal(r.token, 0);
    /* repetition over the prompt: 2 / 1.2 < 1.9 */
    p.repetition_penalty = 1.2f;
    assert_int_equal(bt_sampler_sample(s, &p, logits, &seq, &r), BT_OK);
    assert_int_equal(r.token, 1);
    /* a negative logit is multiplied: -1 * 1.2 < -1.1 */
    logits[0] = logits[1] = -5.0f;
    assert_int_equal(bt_sampler_sample(s, &p, logits, &seq, &r), BT_OK);
    assert_int_equal(r.token, 3);
    logits[0] = 2.0f;
    logits[1] = 1.9f;
    /* presence and frequency count generated tokens only */
    p.repetition_penalty = 1.0f;
    p.presence_penalty = 2.0f;
    assert_int_equal(bt_sampler_sample(s, &p, logits, &seq, &r), BT_OK);
    assert_int_equal(r.token, 0);
    p.presence_penalty = 0.0f;
    seq.generated = gen3;
    seq.n_generated = 3;
    p.frequency_penalty = -0.1f; /* 1.9 + 0.3 > 2.0 */
    assert_int_equal(bt_sampler_sample(s, &p, logits, &seq, &r), BT_OK);
    assert_int_equal(r.token, 1);
    p.frequency_penalty = -0.03f; /* 1.9 + 0.09 < 2.0 */
    assert_int_equal(bt_sampler_sample(s, &p, logits, &seq, &r), BT_OK);
    assert_int_equal(r.token, 0);
    p.frequency_penalty = 0.0f;
    p.presence_penalty = -0.2f; /* once, not per occurrence: 2.1 > 2.0 */
    assert_int_equal(bt_sampler_sample(s, &p, logits, &seq, &r), BT_OK);
    assert_int_equal(r.token, 1);
    /* the scratch counts were reset: without penalties, token 0 again */
    bt_sample_params_default(&p);
    p.temperature = 0.0f;
    assert_int_equal(bt_sampler_sample(s, &p, logits, &seq, &r), BT_OK);
    assert_int_equal(r.token, 0);
    bt_sampler_destroy(s);
}

static void test_logprobs(void **state)
{
    const float logits[5] = {0.3f, -1.0f, 2.0f, 2.0f, 0.0f};
    bt_sample_params_t p;
    bt_sample_seq_t seq = at(3);
    bt_sample_result_t r;
    bt_sampler_t *s;
    double sum = 0.0, z = 0.0;
    uint32_t i;

    (void)state;
    assert_int_equal(bt_sampler_create(5, &s), BT_OK);
    bt_sample_params_default(&p);
    p.temperature = 0.5f;
    p.logprobs = 5;
    p.seed = 17;
    assert_int_equal(bt_sampler_sample(s, &p, logits, &seq, &r), BT_OK);
    assert_int_equal(r.n_top, 5);
    /* descending, ties by the lower id */
    assert_int_equal(r.top_ids[0], 2);
    assert_int_equal(r.top_ids[1], 3);
    assert_int_equal(r.top_ids[2], 0);
    assert_int_equal(r.top_ids[3], 4);
    assert_int_equal(r.top_ids[4], 1);
    for (i = 0; i < 5; i++) {
        z += exp(logits[i] / 0.5);
    }
    for (i = 0; i < 5; i++) {
        double ref = logits[r.top_ids[i]] / 0.5 - log(z);
        assert_true(fabs(r.top_logprobs[i] - ref) < 1e-6);
        sum += exp(r.top_logprobs[i]);
        if (r.top_ids[i] == r.token) {
            assert_true(r.logprob == r.top_logprobs[i]);
        }
    }
    assert_true(fabs(sum - 1.0) < 1e-6);
    p.logprobs = 2;
    assert_int_equal(bt_sampler_sample(s, &p, logits, &seq, &r), BT_OK);
    assert_int_equal(r.n_top, 2);
    p.logprobs = -1;
    assert_int_equal(bt_sampler_sample(s, &p, logits, &seq, &r), BT_OK);
    assert_int_equal(r.n_top, 0);
    assert_true(r.logprob == 0.0f);
    bt_sampler_destroy(s);
}

static void test_stop_ids_and_length(void **state)
{
    const float logits[3] = {0.0f, 5.0f, 0.0f};
    const int32_t gen[4] = {0, 0, 0, 0};
    bt_sample_params_t p;
    bt_sample_seq_t seq = at(9);
    bt_sample_result_t r;
    bt_sampler_t *s;

    (void)state;
    assert_int_equal(bt_sampler_create(3, &s), BT_OK);
    bt_sample_params_default(&p);
    p.temperature = 0.0f;
    p.max_tokens = 5;
    seq.generated = gen;
    seq.n_generated = 3;
    assert_int_equal(bt_sampler_sample(s, &p, logits, &seq, &r), BT_OK);
    assert_int_equal(r.finish, BT_FINISH_NONE);
    seq.n_generated = 4; /* this token is the fifth */
    assert_int_equal(bt_sampler_sample(s, &p, logits, &seq, &r), BT_OK);
    assert_int_equal(r.finish, BT_FINISH_LENGTH);
    p.n_stop_ids = 2;
    p.stop_ids[0] = 7;
    p.stop_ids[1] = 1;
    seq.n_generated = 0;
    assert_int_equal(bt_sampler_sample(s, &p, logits, &seq, &r), BT_OK);
    assert_int_equal(r.finish, BT_FINISH_STOP);
    assert_int_equal(bt_sample_finish(&p, 2, 1), BT_FINISH_NONE);
    assert_int_equal(bt_sample_finish(&p, 7, 1), BT_FINISH_STOP);
    bt_sampler_destroy(s);
}

static void test_bad_input(void **state)
{
    const float all_neg_inf[3] = {-INFINITY, NAN, -INFINITY};
    const float pos_inf[3] = {0.0f, INFINITY, INFINITY};
    bt_sample_params_t p;
    bt_sample_seq_t seq = at(0);
    bt_sample_result_t r;
    bt_sampler_t *s = NULL;

    (void)state;
    assert_int_equal(bt_sampler_create(0, &s), BT_ERR_INVALID_ARG);
    assert_int_equal(bt_sampler_create(3, &s), BT_OK);
    bt_sample_params_default(&p);
    assert_int_equal(bt_sample_params_check(&p), BT_OK);
    assert_int_equal(bt_sampler_sample(s, &p, all_neg_inf, &seq, &r),
                     BT_ERR_INVALID_ARG);
    /* +inf logits: only they can be drawn */
    assert_int_equal(bt_sampler_sample(s, &p, pos_inf, &seq, &r), BT_OK);
    assert_true(r.token == 1 || r.token == 2);
    p.temperature = -1.0f;
    assert_int_equal(bt_sample_params_check(&p), BT_ERR_INVALID_ARG);
    p.temperature = NAN;
    assert_int_equal(bt_sampler_sample(s, &p, pos_inf, &seq, &r),
                     BT_ERR_INVALID_ARG);
    bt_sample_params_default(&p);
    p.top_p = 0.0f;
    assert_int_equal(bt_sample_params_check(&p), BT_ERR_INVALID_ARG);
    bt_sample_params_default(&p);
    p.min_p = 1.5f;
    assert_int_equal(bt_sample_params_check(&p), BT_ERR_INVALID_ARG);
    bt_sample_params_default(&p);
    p.max_tokens = 0;
    assert_int_equal(bt_sample_params_check(&p), BT_ERR_INVALID_ARG);
    bt_sample_params_default(&p);
    p.logprobs = BT_SAMPLE_MAX_LOGPROBS + 1;
    assert_int_equal(bt_sample_params_check(&p), BT_ERR_INVALID_ARG);
    bt_sample_params_default(&p);
    p.n_stop_ids = BT_SAMPLE_MAX_STOP_IDS + 1;
    assert_int_equal(bt_sample_params_check(&p), BT_ERR_INVALID_ARG);
    bt_sample_params_default(&p);
    p.repetition_penalty = 0.0f;
    assert_int_equal(bt_sample_params_check(&p), BT_ERR_INVALID_ARG);
    bt_sampler_destroy(s);
    bt_sampler_destroy(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_philox_known_answers),
        cmocka_unit_test(test_exp_log_accuracy),
        cmocka_unit_test(test_greedy_lowest_index_tie),
        cmocka_unit_test(test_counter_determinism),
        cmocka_unit_test(test_temperature_distribution),
        cmocka_unit_test(test_truncation),
        cmocka_unit_test(test_matches_naive_reference),
        cmocka_unit_test(test_penalties),
        cmocka_unit_test(test_logprobs),
        cmocka_unit_test(test_stop_ids_and_length),
        cmocka_unit_test(test_bad_input),
    };

    return cmocka_run_group_tests_name("sample", tests, NULL, NULL);
}
