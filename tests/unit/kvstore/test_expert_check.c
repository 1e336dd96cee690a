/* ExpertStatsReport checks (kvstore/expert_check.c): a good report turns
 * into the plan book's dense loads and sparse transitions; each kind of
 * bad field is refused with a message naming it. */
#include "expert_check.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <string.h>

#define NL 3
#define NE 4

typedef struct {
    Baton__V1__ExpertStatsReport  rep;
    Baton__V1__LayerExpertStats   layers[NL];
    Baton__V1__LayerExpertStats  *layer_ptrs[NL];
    uint64_t                      counts[NL][NE];
    Baton__V1__ExpertTransition   tr;
    Baton__V1__ExpertTransition  *tr_ptr;
} fx_t;

static void fx_init(fx_t *f)
{
    memset(f, 0, sizeof(*f));
    baton__v1__expert_stats_report__init(&f->rep);
    f->rep.model = "moe";
    f->rep.role = BATON__V1__NODE_ROLE__NODE_ROLE_DECODE;
    f->rep.n_devices = 2;
    for (int l = 0; l < NL; l++) {
        baton__v1__layer_expert_stats__init(&f->layers[l]);
        f->layers[l].layer = (uint32_t)l;
        for (int e = 0; e < NE; e++) {
            f->counts[l][e] = (uint64_t)(10 * l + e);
        }
        f->layers[l].counts = f->counts[l];
        f->layers[l].n_counts = NE;
        f->layer_ptrs[l] = &f->layers[l];
    }
    baton__v1__expert_transition__init(&f->tr);
    f->tr.from = 1;
    f->tr.to = 3;
    f->tr.count = 7;
    f->tr_ptr = &f->tr;
    f->layers[0].transitions = &f->tr_ptr;
    f->layers[0].n_transitions = 1;
    f->rep.layers = f->layer_ptrs;
    f->rep.n_layers = NL;
}

static void expect_bad(fx_t *f, const char *needle)
{
    bt_kvsd_expert_report_t out;
    char err[256] = "";

    assert_int_equal(bt_kvsd_expert_report(&f->rep, &out, err, sizeof(err)),
                     BT_ERR_INVALID_ARG);
    if (strstr(err, needle) == NULL) {
        fail_msg("'%s' does not say '%s'", err, needle);
    }
    assert_null(out.loads);
    assert_null(out.trans);
}

static void test_good_report(void **state)
{
    bt_kvsd_expert_report_t out;
    fx_t f;
    char err[256];

    (void)state;
    fx_init(&f);
    /* layers in any order */
    f.layer_ptrs[0] = &f.layers[2];
    f.layer_ptrs[2] = &f.layers[0];
    assert_int_equal(bt_kvsd_expert_report(&f.rep, &out, err, sizeof(err)), BT_OK);
    assert_int_equal(out.r.n_layers, NL);
    assert_int_equal(out.r.n_experts, NE);
    assert_int_equal(out.r.n_devices, 2);
    assert_int_equal(out.r.slots, 2);   /* ceil(4 / 2) */
    assert_true(out.r.loads[2 * NE + 3] == 23);
    assert_int_equal(out.r.n_trans, 1);
    assert_int_equal(out.r.trans[0].layer, 0);
    assert_int_equal(out.r.trans[0].from, 1);
    assert_int_equal(out.r.trans[0].to, 3);
    bt_kvsd_expert_report_free(&out);
}

static void test_bad_reports(void **state)
{
    fx_t f;

    (void)state;
    fx_init(&f);
    f.rep.model = "";
    expect_bad(&f, "model");
    fx_init(&f);
    f.rep.role = BATON__V1__NODE_ROLE__NODE_ROLE_KVSTORE;
    expect_bad(&f, "role 4");
    fx_init(&f);
    f.rep.n_layers = 0;
    expect_bad(&f, "0 layers");
    fx_init(&f);
    f.layers[1].layer = 0;
    expect_bad(&f, "layer 0 listed twice");
    fx_init(&f);
    f.layers[1].layer = 5000;
    expect_bad(&f, "layer 5000");
    fx_init(&f);
    f.layers[2].n_counts = NE - 1;
    expect_bad(&f, "the same in every layer");
    fx_init(&f);
    f.layers[1].layer = 999;   /* 1000 layers x 4 experts is fine, ... */
    f.layers[0].n_transitions = 0;
    f.rep.n_devices = 5000;    /* ... 5000 devices are not */
    expect_bad(&f, "n_devices 5000");
    fx_init(&f);
    f.rep.n_devices = 2;
    f.rep.slots_per_device = 1;
    expect_bad(&f, "cannot hold 4 experts");
    fx_init(&f);
    f.rep.balancedness = NAN;
    expect_bad(&f, "balancedness");
    fx_init(&f);
    f.rep.balancedness = 1.5;
    expect_bad(&f, "balancedness");
    fx_init(&f);
    f.counts[1][2] = UINT64_MAX;
    expect_bad(&f, "layer 1 expert 2");
    fx_init(&f);
    f.tr.to = NE;
    expect_bad(&f, "transition 1 -> 4");
    fx_init(&f);
    f.layers[2].transitions = &f.tr_ptr;
    f.layers[2].n_transitions = 1;
    expect_bad(&f, "past the last");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_report),
        cmocka_unit_test(test_bad_reports),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
