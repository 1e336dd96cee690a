/* The device-step interface of bt_fwd (engine/model/device.h), on the CPU:
 * a forward context made with bt_fwd_create_device hands every checked
 * step to its device, and keeps on the host what the interface promises
 * (the input checks before the device sees anything, the layer hooks the
 * device calls, the MoE statistics counted through bt_fwd_count_routes,
 * the refusal of expert devices, one destroy). The device here is a test
 * double that runs the step with a CPU context of its own, so its logits
 * must equal a plain CPU context's; the CUDA device is checked on a GPU by
 * tests/cuda/fast_check.c and exact_forward.sh. */
#include "eng_test_util.h"

#include "engine/model/backend_select.h"
#include "engine/model/device.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#define NB 32
#define BS 8

typedef struct {
    bt_fwd_t *cpu;        /* does the work */
    int       steps, destroyed, routes;
    const bt_model_t *m;
} twin_t;

static int n_destroyed;

static bt_status_t twin_create(const bt_model_t *m, bool fast, void **dev_p,
                              char *err, size_t err_size)
{
    twin_t *d = calloc(1, sizeof(*d));

    (void)fast;
    (void)err;
    (void)err_size;
    d->m = m;
    if (bt_fwd_create(m, NULL, 1, &d->cpu) != BT_OK) {
        free(d);
        return BT_ERR_NO_MEMORY;
    }
    *dev_p = d;
    return BT_OK;
}

static void twin_destroy(void *dev)
{
    twin_t *d = dev;

    n_destroyed++;
    bt_fwd_destroy(d->cpu);
    free(d);
}

static bt_status_t twin_step(void *dev, bt_fwd_t *fwd, const bt_kv_view_t *kv,
                            bt_step_seq_t *seqs, int n_seqs, int T, int max_ctx,
                            const bt_step_hooks_t *hooks)
{
    twin_t *d = dev;
    bt_moe_stats_t st;
    bt_status_t s;

    (void)max_ctx;
    d->steps++;
    assert_true(T >= n_seqs);
    s = bt_fwd_step(d->cpu, kv, seqs, n_seqs, hooks);
    /* a device counts its routes through the context it was given */
    if (s == BT_OK && d->m->cfg.n_experts > 0 &&
        bt_fwd_moe_stats(d->cpu, true, &st) == BT_OK) {
        const int K = d->m->cfg.n_experts_used;
        int *sel = calloc((size_t)T * K, sizeof(int));

        for (int l = 0; l < st.n_layers; l++) {
            int n = 0;

            /* T tokens x K slots, spread as the counters say */
            for (int e = 0; e < st.n_experts && n < T * K; e++) {
                for (uint64_t c = 0; c < st.tokens[(size_t)l * st.n_experts + e] &&
                                     n < T * K; c++) {
                    sel[n++] = e;
                }
            }
            if (n == T * K) {
                bt_fwd_count_routes(fwd, l, T, sel, NULL);
                d->routes++;
            }
        }
        free(sel);
        bt_moe_stats_cleanup(&st);
    }
    return s;
}

static char log_component[32];
static int log_level = -1, log_format = -1;

static void twin_log_init(const char *component, int level, int format)
{
    snprintf(log_component, sizeof(log_component), "%s", component);
    log_level = level;
    log_format = format;
}

static const bt_device_ops_t twin_ops = {
    .abi = BT_DEVICE_ABI, .name = "twin", .kernel_rev = 1,
    .create = twin_create, .destroy = twin_destroy, .log_init = twin_log_init,
    .step = twin_step,
};

static int n_hooks;

static void on_layer(void *ctx, int layer)
{
    (void)ctx;
    (void)layer;
    n_hooks++;
}

static int setup(void **state, bt_arch_t arch)
{
    bt_synth_spec_t s;

    bt_synth_spec_default(&s, arch);
    s.seed = 11;
    return eng_model_fx_setup(state, &s);
}

static int setup_llama(void **state)
{
    return setup(state, BT_ARCH_LLAMA);
}

static int setup_moe(void **state)
{
    return setup(state, BT_ARCH_QWEN3_MOE);
}

static int teardown(void **state)
{
    return eng_model_fx_teardown(state);
}

static void run(bt_fwd_t *f, const eng_kv_t *kv, const int32_t *toks, int n,
                float *logits, const bt_step_hooks_t *hooks)
{
    bt_step_seq_t s = { .tokens = toks, .n_tokens = n, .pos = 0,
                        .block_table = kv->table, .n_blocks = NB,
                        .n_logits = n, .logits = logits };

    assert_int_equal(bt_fwd_step(f, &kv->view, &s, 1, hooks), BT_OK);
}

static void test_device_runs_the_steps(void **state)
{
    eng_model_fx_t *fx = *state;
    const int n = 13;
    int32_t toks[13], bad[2] = {1, 1 << 30};
    float *a = malloc((size_t)n * fx->V * sizeof(float));
    float *b = malloc((size_t)n * fx->V * sizeof(float));
    bt_step_hooks_t hooks = { on_layer, NULL };
    bt_step_seq_t s = { .tokens = bad, .n_tokens = 2, .pos = 0, .n_blocks = NB,
                        .n_logits = 1, .logits = a };
    eng_kv_t kva, kvb;
    bt_fwd_t *cpu, *dev;
    void *d = NULL;
    char err[64];

    for (int i = 0; i < n; i++) {
        toks[i] = (int32_t)((i * 37 + 5) % fx->V);
    }
    assert_int_equal(eng_kv_init(&kva, fx->m, BT_DTYPE_F32, NB, BS), 0);
    assert_int_equal(eng_kv_init(&kvb, fx->m, BT_DTYPE_F32, NB, BS), 0);
    assert_int_equal(bt_fwd_create(fx->m, NULL, 2, &cpu), BT_OK);
    assert_int_equal(twin_ops.create(fx->m, false, &d, err, sizeof(err)), BT_OK);
    assert_int_equal(bt_fwd_create_device(fx->m, &twin_ops, d, &dev), BT_OK);
    run(cpu, &kva, toks, n, a, NULL);
    n_hooks = 0;
    run(dev, &kvb, toks, n, b, &hooks);
    assert_int_equal(((twin_t *)d)->steps, 1);
    assert_int_equal(n_hooks, fx->m->cfg.n_layers);   /* the device's hooks */
    assert_memory_equal(a, b, (size_t)n * fx->V * sizeof(float));
    /* a bad token is refused on the host: the device never sees it */
    s.block_table = kvb.table;
    assert_int_equal(bt_fwd_step(dev, &kvb.view, &s, 1, NULL), BT_ERR_INVALID_ARG);
    assert_int_equal(((twin_t *)d)->steps, 1);
    /* expert devices stay on the CPU backend */
    assert_int_equal(bt_fwd_experts_init(dev, 2, 0), BT_ERR_UNSUPPORTED);
    n_destroyed = 0;
    bt_fwd_destroy(dev);
    assert_int_equal(n_destroyed, 1);
    bt_fwd_destroy(cpu);
    eng_kv_cleanup(&kva);
    eng_kv_cleanup(&kvb);
    free(a);
    free(b);
}

/* Routes a device counts reach the context's statistics. */
static void test_device_counts_routes(void **state)
{
    eng_model_fx_t *fx = *state;
    const int n = 9;
    int32_t toks[9];
    float *a = malloc((size_t)n * fx->V * sizeof(float));
    bt_moe_stats_t st;
    eng_kv_t kv;
    bt_fwd_t *dev;
    void *d = NULL;
    char err[64];
    uint64_t total = 0;

    for (int i = 0; i < n; i++) {
        toks[i] = (int32_t)((i * 11 + 2) % fx->V);
    }
    assert_int_equal(eng_kv_init(&kv, fx->m, BT_DTYPE_F32, NB, BS), 0);
    assert_int_equal(twin_ops.create(fx->m, false, &d, err, sizeof(err)), BT_OK);
    assert_int_equal(bt_fwd_create_device(fx->m, &twin_ops, d, &dev), BT_OK);
    run(dev, &kv, toks, n, a, NULL);
    assert_true(((twin_t *)d)->routes > 0);
    assert_int_equal(bt_fwd_moe_stats(dev, false, &st), BT_OK);
    for (size_t i = 0; i < (size_t)st.n_layers * st.n_experts; i++) {
        total += st.tokens[i];
    }
    /* every MoE layer: n tokens x k slots */
    assert_int_equal(total, (uint64_t)((twin_t *)d)->routes * n *
                                fx->m->cfg.n_experts_used);
    bt_moe_stats_cleanup(&st);
    bt_fwd_destroy(dev);
    eng_kv_cleanup(&kv);
    free(a);
}

/* bt_backend_fwd_create hands a device the host's log settings before it
 * creates it (a plugin keeps its own copy of the log module). */
static void test_device_logs_as_host(void **state)
{
    eng_model_fx_t *fx = *state;
    bt_backend_choice_t ch = { .kind = BT_BACKEND_CUDA, .mode = BT_NUMERICS_FAST,
                               .tp = 1, .device = &twin_ops };
    bt_fwd_t *f = NULL;
    char err[64];

    bt_log_init("host-daemon", BT_LOG_LEVEL_WARN, BT_LOG_FORMAT_JSON);
    assert_int_equal(bt_backend_fwd_create(&ch, fx->m, 1, &f, err, sizeof(err)),
                     BT_OK);
    assert_string_equal(log_component, "host-daemon");
    assert_int_equal(log_level, BT_LOG_LEVEL_WARN);
    assert_int_equal(log_format, BT_LOG_FORMAT_JSON);
    bt_fwd_destroy(f);
    bt_log_init("test", BT_LOG_LEVEL_ERROR, BT_LOG_FORMAT_TEXT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_device_runs_the_steps, setup_llama,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_device_counts_routes, setup_moe,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_device_logs_as_host, setup_llama,
                                        teardown),
    };

    bt_log_init("test", BT_LOG_LEVEL_ERROR, BT_LOG_FORMAT_TEXT);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
