/* Expert devices (engine/model/experts.h): for the three MoE families,
 * logits and K/V with 1..4 expert devices under random plans (replicas
 * included), and with the plan changed between steps, are bit-identical
 * to the one-device path, also while another thread stages plans during
 * the steps; plans that do not fit are refused and leave the
 * plan in force; per-device loads add up and show imbalance. */
#include "eng_test_util.h"

#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#define NB      32   /* blocks */
#define BS      8    /* tokens per block */
#define STEPS   6    /* decode steps after the prompts */
#define N_SEQS  3

typedef eng_model_fx_t fx_t;

static int setup_arch(void **state, bt_arch_t arch)
{
    bt_synth_spec_t s;

    bt_synth_spec_default(&s, arch);
    s.seed = 11;
    s.n_experts = 8;
    s.n_layers = 3;
    return eng_model_fx_setup(state, &s);
}

static int setup_mixtral(void **state)
{
    return setup_arch(state, BT_ARCH_MIXTRAL);
}

static int setup_qwen2_moe(void **state)
{
    return setup_arch(state, BT_ARCH_QWEN2_MOE);
}

static int setup_qwen3_moe(void **state)
{
    return setup_arch(state, BT_ARCH_QWEN3_MOE);
}

static int teardown(void **state)
{
    return eng_model_fx_teardown(state);
}

static uint32_t rnd(uint64_t *x)
{
    *x = *x * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(*x >> 33);
}

/* Every expert of a MoE layer on a random device with room (a slot of
 * each device kept free), then a third of them replicated on another
 * device that still has a slot. */
static void random_plan(const bt_model_config_t *c, int N, int slots,
                        uint64_t *seed, uint64_t version, bt_ep_plan_t *p)
{
    assert_int_equal(bt_ep_plan_init(p, c->n_layers, c->n_experts, N), BT_OK);
    p->version = version;
    for (int l = 0; l < c->n_layers; l++) {
        uint32_t *w = p->where + (size_t)l * c->n_experts;
        int used[BT_EP_MAX_DEVICES] = {0};

        if (!c->layer_is_moe[l]) {
            continue;
        }
        for (int e = 0; e < c->n_experts; e++) {
            int d;

            do {
                d = (int)(rnd(seed) % (uint32_t)N);
            } while (used[d] >= slots - 1);
            w[e] = 1u << d;
            used[d]++;
        }
        for (int e = 0; e < c->n_experts && N > 1; e++) {
            const int d = (int)(rnd(seed) % (uint32_t)N);

            if (rnd(seed) % 3 == 0 && (w[e] >> d & 1u) == 0 &&
                used[d] < slots) {
                w[e] |= 1u << d;
                used[d]++;
            }
        }
    }
}

typedef void (*before_step_fn)(bt_fwd_t *f, int step, void *arg);

/* Three prompts in one batch, then STEPS greedy decode steps of all
 * three: every logit of every step into out (and K/V left in kv). */
static void scenario(const fx_t *fx, bt_fwd_t *f, eng_kv_t *kv, float *out,
                     before_step_fn before, void *arg)
{
    static const int lens[N_SEQS] = {13, 5, 21};
    const int V = fx->V;
    int32_t toks[N_SEQS][64];
    int n[N_SEQS];
    bt_step_seq_t seqs[N_SEQS];
    size_t at = 0;

    for (int i = 0; i < N_SEQS; i++) {
        for (int j = 0; j < lens[i]; j++) {
            toks[i][j] = (int32_t)((i * 131 + j * 17 + 3) % V);
        }
        n[i] = lens[i];
    }
    for (int step = 0; step <= STEPS; step++) {
        if (before != NULL) {
            before(f, step, arg);
        }
        for (int i = 0; i < N_SEQS; i++) {
            const int first = step == 0 ? 0 : n[i] - 1;

            seqs[i] = (bt_step_seq_t){ toks[i] + first, n[i] - first, first,
                                       kv->table + i * (NB / N_SEQS),
                                       NB / N_SEQS, 1, out + at };
            at += (size_t)V;
        }
        assert_int_equal(bt_fwd_step(f, &kv->view, seqs, N_SEQS, NULL),
                         BT_OK);
        for (int i = 0; i < N_SEQS; i++) {
            toks[i][n[i]] = eng_argmax(seqs[i].logits, V);
            n[i]++;
        }
    }
}

static size_t out_floats(const fx_t *fx)
{
    return (size_t)(STEPS + 1) * N_SEQS * (size_t)fx->V;
}

static size_t kv_bytes(const fx_t *fx)
{
    const bt_model_config_t *c = &fx->m->cfg;

    return (size_t)c->n_layers * NB * 2 * BS * (size_t)c->n_kv_heads *
           (size_t)c->head_dim * sizeof(float);
}

/* The one-device path's logits and K/V. */
static void reference(const fx_t *fx, float *out, eng_kv_t *kv)
{
    bt_fwd_t *f;

    assert_int_equal(bt_fwd_create(fx->m, NULL, 2, &f), BT_OK);
    assert_int_equal(eng_kv_init(kv, fx->m, BT_DTYPE_F32, NB, BS), 0);
    scenario(fx, f, kv, out, NULL, NULL);
    bt_fwd_destroy(f);
}

static void test_random_plans(void **state)
{
    fx_t *fx = *state;
    float *ref = malloc(out_floats(fx) * sizeof(float));
    float *got = malloc(out_floats(fx) * sizeof(float));
    eng_kv_t kref;
    uint64_t seed = 7;

    reference(fx, ref, &kref);
    for (int N = 1; N <= 4; N++) {
        for (int trial = 0; trial < 3; trial++) {
            bt_fwd_t *f;
            bt_ep_plan_t plan;
            eng_kv_t kv;
            char err[160];
            int moved = -1;

            assert_int_equal(bt_fwd_create(fx->m, NULL, 2, &f), BT_OK);
            assert_int_equal(bt_fwd_experts_init(f, N, 0), BT_OK);
            /* trial 0 runs the round-robin plan the devices start with */
            if (trial > 0) {
                random_plan(&fx->m->cfg, N, bt_ep_slots(bt_fwd_experts(f)),
                            &seed, (uint64_t)trial, &plan);
                assert_int_equal(bt_ep_stage(bt_fwd_experts(f), &plan, &moved,
                                             err, sizeof(err)), BT_OK);
                assert_true(moved >= 0);
                bt_ep_plan_cleanup(&plan);
            }
            assert_int_equal(eng_kv_init(&kv, fx->m, BT_DTYPE_F32, NB, BS),
                             0);
            memset(got, 0xff, out_floats(fx) * sizeof(float));
            scenario(fx, f, &kv, got, NULL, NULL);
            assert_int_equal(bt_ep_version(bt_fwd_experts(f)),
                             (uint64_t)trial);
            assert_memory_equal(ref, got, out_floats(fx) * sizeof(float));
            assert_memory_equal(kref.view.base, kv.view.base, kv_bytes(fx));
            eng_kv_cleanup(&kv);
            bt_fwd_destroy(f);
        }
    }
    eng_kv_cleanup(&kref);
    free(ref);
    free(got);
}

typedef struct {
    const fx_t *fx;
    uint64_t    seed;
    int         applied;
} swap_t;

/* A new random plan staged before every step: each step runs under
 * another placement (and sequences cross plan changes mid-decode). */
static void swap_before(bt_fwd_t *f, int step, void *arg)
{
    swap_t *sw = arg;
    bt_ep_t *ep = bt_fwd_experts(f);
    bt_ep_plan_t plan;
    char err[160];
    int moved;

    random_plan(&sw->fx->m->cfg, bt_ep_devices(ep), bt_ep_slots(ep),
                &sw->seed, (uint64_t)step + 1, &plan);
    assert_int_equal(bt_ep_stage(ep, &plan, &moved, err, sizeof(err)),
                     BT_OK);
    /* staged, not yet in force: the next step switches */
    assert_int_equal(bt_ep_version(ep), (uint64_t)step);
    assert_int_equal(bt_ep_staged_version(ep), (uint64_t)step + 1);
    bt_ep_plan_cleanup(&plan);
    sw->applied++;
}

static void test_plan_swapped_between_steps(void **state)
{
    fx_t *fx = *state;
    float *ref = malloc(out_floats(fx) * sizeof(float));
    float *got = malloc(out_floats(fx) * sizeof(float));
    eng_kv_t kref;

    reference(fx, ref, &kref);
    for (int N = 2; N <= 4; N++) {
        swap_t sw = { fx, 1000u + (uint64_t)N, 0 };
        bt_fwd_t *f;
        eng_kv_t kv;

        assert_int_equal(bt_fwd_create(fx->m, NULL, 2, &f), BT_OK);
        assert_int_equal(bt_fwd_experts_init(f, N, 0), BT_OK);
        assert_int_equal(eng_kv_init(&kv, fx->m, BT_DTYPE_F32, NB, BS), 0);
        scenario(fx, f, &kv, got, swap_before, &sw);
        assert_int_equal(sw.applied, STEPS + 1);
        assert_int_equal(bt_ep_version(bt_fwd_experts(f)), STEPS + 1);
        assert_memory_equal(ref, got, out_floats(fx) * sizeof(float));
        assert_memory_equal(kref.view.base, kv.view.base, kv_bytes(fx));
        eng_kv_cleanup(&kv);
        bt_fwd_destroy(f);
    }
    eng_kv_cleanup(&kref);
    free(ref);
    free(got);
}

typedef struct {
    const fx_t *fx;
    bt_ep_t    *ep;
    int         staged;
} stager_t;

/* Stages 20 random plans, each as soon as the last one is in force. */
static void *stager_main(void *arg)
{
    stager_t *st = arg;
    uint64_t seed = 99;

    for (int v = 1; v <= 20; v++) {
        bt_ep_plan_t plan;
        char err[160];
        bt_status_t s;

        random_plan(&st->fx->m->cfg, bt_ep_devices(st->ep),
                    bt_ep_slots(st->ep), &seed, (uint64_t)v, &plan);
        while ((s = bt_ep_stage(st->ep, &plan, NULL, err, sizeof(err))) ==
               BT_ERR_EXISTS) {
            sched_yield();
        }
        bt_ep_plan_cleanup(&plan);
        if (s != BT_OK) {
            break;
        }
        st->staged = v;
    }
    return NULL;
}

/* Plans copied on another thread while steps run: every step's results
 * are still the one-device path's. */
static void test_stage_during_steps(void **state)
{
    fx_t *fx = *state;
    float *ref = malloc(out_floats(fx) * sizeof(float));
    float *got = malloc(out_floats(fx) * sizeof(float));
    eng_kv_t kref;
    bt_fwd_t *f;
    stager_t st;
    pthread_t th;
    int runs = 0;

    reference(fx, ref, &kref);
    assert_int_equal(bt_fwd_create(fx->m, NULL, 2, &f), BT_OK);
    assert_int_equal(bt_fwd_experts_init(f, 3, 0), BT_OK);
    st = (stager_t){ fx, bt_fwd_experts(f), 0 };
    assert_int_equal(pthread_create(&th, NULL, stager_main, &st), 0);
    /* steps until the last plan is in force (bounded) */
    while (runs < 2000 && bt_ep_version(st.ep) < 20) {
        eng_kv_t kv;

        assert_int_equal(eng_kv_init(&kv, fx->m, BT_DTYPE_F32, NB, BS), 0);
        scenario(fx, f, &kv, got, NULL, NULL);
        assert_memory_equal(ref, got, out_floats(fx) * sizeof(float));
        assert_memory_equal(kref.view.base, kv.view.base, kv_bytes(fx));
        eng_kv_cleanup(&kv);
        runs++;
    }
    pthread_join(th, NULL);
    assert_int_equal(st.staged, 20);
    assert_int_equal(bt_ep_version(st.ep), 20);
    eng_kv_cleanup(&kref);
    bt_fwd_destroy(f);
    free(ref);
    free(got);
}

static void test_bad_plans_refused(void **state)
{
    fx_t *fx = *state;
    const bt_model_config_t *c = &fx->m->cfg;
    bt_fwd_t *f;
    bt_ep_t *ep;
    bt_ep_plan_t plan, good;
    char err[160];
    int moe = -1;

    for (int l = 0; l < c->n_layers && moe < 0; l++) {
        moe = c->layer_is_moe[l] ? l : -1;
    }
    assert_true(moe >= 0);
    assert_int_equal(bt_fwd_create(fx->m, NULL, 2, &f), BT_OK);
    assert_int_equal(bt_fwd_experts_init(f, 2, 0), BT_OK);
    assert_int_equal(bt_fwd_experts_init(f, 2, 0), BT_ERR_EXISTS);
    ep = bt_fwd_experts(f);
    assert_int_equal(bt_ep_plan_get(ep, &good), BT_OK);
    good.version = 5;

    /* an expert on no device */
    assert_int_equal(bt_ep_plan_get(ep, &plan), BT_OK);
    plan.where[(size_t)moe * c->n_experts + 3] = 0;
    assert_int_equal(bt_ep_stage(ep, &plan, NULL, err, sizeof(err)),
                     BT_ERR_INVALID_ARG);
    assert_non_null(strstr(err, "expert 3 is on no device"));
    /* a device the node does not have */
    plan.where[(size_t)moe * c->n_experts + 3] = 1u << 2;
    assert_int_equal(bt_ep_stage(ep, &plan, NULL, err, sizeof(err)),
                     BT_ERR_INVALID_ARG);
    assert_non_null(strstr(err, "past the node's 2"));
    /* every expert on device 0: over its slots */
    for (int e = 0; e < c->n_experts; e++) {
        plan.where[(size_t)moe * c->n_experts + e] = 1u;
    }
    assert_int_equal(bt_ep_stage(ep, &plan, NULL, err, sizeof(err)),
                     BT_ERR_INVALID_ARG);
    assert_non_null(strstr(err, "slots"));
    bt_ep_plan_cleanup(&plan);
    /* a plan for another device count */
    assert_int_equal(bt_ep_plan_init(&plan, c->n_layers, c->n_experts, 3),
                     BT_OK);
    bt_ep_plan_round_robin(c, &plan);
    assert_int_equal(bt_ep_stage(ep, &plan, NULL, err, sizeof(err)),
                     BT_ERR_INVALID_ARG);
    bt_ep_plan_cleanup(&plan);
    assert_int_equal(bt_ep_version(ep), 0);
    assert_int_equal(bt_ep_staged_version(ep), 0);
    /* one plan staged at a time */
    assert_int_equal(bt_ep_stage(ep, &good, NULL, err, sizeof(err)), BT_OK);
    assert_int_equal(bt_ep_stage(ep, &good, NULL, err, sizeof(err)),
                     BT_ERR_EXISTS);
    assert_true(bt_ep_commit(ep));
    assert_false(bt_ep_commit(ep));
    assert_int_equal(bt_ep_version(ep), 5);
    bt_ep_plan_cleanup(&good);
    bt_fwd_destroy(f);
}

/* Loads add up to the rows routed, and a plan that puts the experts most
 * used on one device measures less balanced than round robin. */
static void test_loads(void **state)
{
    fx_t *fx = *state;
    const bt_model_config_t *c = &fx->m->cfg;
    float *out = malloc(out_floats(fx) * sizeof(float));
    bt_moe_stats_t st;
    bt_ep_load_t ld, skew;
    bt_ep_plan_t plan;
    uint64_t total = 0, rows = 0;
    eng_kv_t kv;
    bt_fwd_t *f;
    char err[160];

    assert_int_equal(bt_fwd_create(fx->m, NULL, 2, &f), BT_OK);
    assert_int_equal(bt_fwd_experts_init(f, 2, 0), BT_OK);
    assert_int_equal(eng_kv_init(&kv, fx->m, BT_DTYPE_F32, NB, BS), 0);
    scenario(fx, f, &kv, out, NULL, NULL);
    bt_ep_load(bt_fwd_experts(f), true, &ld);
    assert_int_equal(bt_fwd_moe_stats(f, true, &st), BT_OK);
    for (size_t i = 0; i < (size_t)c->n_layers * c->n_experts; i++) {
        total += st.tokens[i];
    }
    for (int d = 0; d < ld.n_devices; d++) {
        rows += ld.rows[d];
    }
    assert_int_equal(ld.n_devices, 2);
    assert_true(total > 0);
    assert_int_equal(rows, total);
    assert_true(ld.balancedness > 0.0 && ld.balancedness <= 1.0);
    /* the busiest half of each layer's experts on device 0 */
    assert_int_equal(bt_ep_plan_init(&plan, c->n_layers, c->n_experts, 2),
                     BT_OK);
    plan.version = 1;
    for (int l = 0; l < c->n_layers; l++) {
        for (int k = 0; k < c->n_experts && c->layer_is_moe[l]; k++) {
            int rank = 0;
            const uint64_t *t = st.tokens + (size_t)l * c->n_experts;

            for (int e = 0; e < c->n_experts; e++) {
                rank += t[e] > t[k] || (t[e] == t[k] && e < k);
            }
            plan.where[(size_t)l * c->n_experts + k] =
                rank < c->n_experts / 2 ? 1u : 2u;
        }
    }
    assert_int_equal(bt_ep_stage(bt_fwd_experts(f), &plan, NULL, err,
                                 sizeof(err)), BT_OK);
    bt_ep_plan_cleanup(&plan);
    eng_kv_cleanup(&kv);
    assert_int_equal(eng_kv_init(&kv, fx->m, BT_DTYPE_F32, NB, BS), 0);
    scenario(fx, f, &kv, out, NULL, NULL);
    bt_ep_load(bt_fwd_experts(f), false, &skew);
    assert_true(skew.rows[0] > skew.rows[1]);
    assert_true(skew.balancedness < 1.0);
    bt_moe_stats_cleanup(&st);
    eng_kv_cleanup(&kv);
    bt_fwd_destroy(f);
    free(out);
}

/* An expert with a copy on each device and one row per step (a decode
 * step): its rows alternate between the copies from step to step, as the
 * planner assumes when it splits an expert's load over its copies. */
static void test_replicas_take_turns(void **state)
{
    fx_t *fx = *state;
    const bt_model_config_t *c = &fx->m->cfg;
    const int E = c->n_experts, hot = E - 1;
    float *xn = calloc((size_t)c->hidden, sizeof(float));
    float *out = calloc((size_t)c->hidden, sizeof(float));
    bt_ep_load_t ld;
    bt_ep_plan_t plan;
    bt_fwd_t *f;
    bt_ep_t *ep;
    char err[160];
    int moe = -1;

    for (int l = 0; l < c->n_layers && moe < 0; l++) {
        moe = c->layer_is_moe[l] ? l : -1;
    }
    assert_true(moe >= 0 && xn != NULL && out != NULL);
    assert_int_equal(bt_fwd_create(fx->m, NULL, 2, &f), BT_OK);
    assert_int_equal(bt_fwd_experts_init(f, 2, 0), BT_OK);
    ep = bt_fwd_experts(f);
    assert_int_equal(bt_ep_plan_get(ep, &plan), BT_OK);
    plan.version = 1;
    plan.where[(size_t)moe * E + hot] = 3u;  /* on devices 0 and 1 */
    assert_int_equal(bt_ep_stage(ep, &plan, NULL, err, sizeof(err)), BT_OK);
    assert_true(bt_ep_commit(ep));
    bt_ep_load(ep, true, &ld);
    assert_int_equal(bt_ep_reserve(ep, 1), BT_OK);
    for (int step = 0; step < 10; step++) {
        bt_ep_layer(ep, moe, 1, 1, &hot, xn, out);
    }
    bt_ep_load(ep, true, &ld);
    assert_int_equal(ld.rows[0], 5);
    assert_int_equal(ld.rows[1], 5);
    assert_true(ld.balancedness == 1.0);
    bt_ep_plan_cleanup(&plan);
    bt_fwd_destroy(f);
    free(xn);
    free(out);
}

#define ARCH_TESTS(setup)                                                   \
    cmocka_unit_test_setup_teardown(test_random_plans, setup, teardown),    \
    cmocka_unit_test_setup_teardown(test_plan_swapped_between_steps, setup, \
                                    teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        ARCH_TESTS(setup_mixtral),
        ARCH_TESTS(setup_qwen2_moe),
        ARCH_TESTS(setup_qwen3_moe),
        cmocka_unit_test_setup_teardown(test_stage_during_steps,
                                        setup_qwen2_moe, teardown),
        cmocka_unit_test_setup_teardown(test_bad_plans_refused, setup_mixtral,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_loads, setup_qwen3_moe,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_replicas_take_turns,
                                        setup_qwen3_moe, teardown),
    };

    bt_log_set_level(BT_LOG_LEVEL_WARN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
