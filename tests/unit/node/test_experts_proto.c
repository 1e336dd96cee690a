/* A kvstore's PlacementPlan turned into the engine's plan on a node
 * (bt_node_experts_from_proto): replicas become device masks, and every
 * malformed plan from the network is refused with a reason naming what is
 * wrong, leaving nothing allocated. */
#include "node_experts.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#define E 4

static bool moe[3] = { true, false, true };

static void cfg_init(bt_model_config_t *c)
{
    memset(c, 0, sizeof(*c));
    c->n_layers = 3;
    c->n_experts = E;
    c->n_experts_used = 2;
    c->layer_is_moe = moe;
}

typedef struct {
    Baton__V1__PlacementPlan  pb;
    Baton__V1__LayerPlacement lp[3];
    Baton__V1__LayerPlacement *lpp[3];
    uint32_t                  dev[3][E];
    Baton__V1__ExpertReplica  rep;
    Baton__V1__ExpertReplica  *repp;
    uint32_t                  rep_dev[1];
} plan_msg_t;

/* Layers 0 and 2 placed, expert e on device e % 2, expert 1 of layer 2
 * also on device 0. */
static void msg_init(plan_msg_t *m)
{
    memset(m, 0, sizeof(*m));
    baton__v1__placement_plan__init(&m->pb);
    m->pb.model = "tiny";
    m->pb.version = 9;
    m->pb.n_devices = 2;
    for (int i = 0; i < 2; i++) {
        Baton__V1__LayerPlacement *lp = &m->lp[i];

        baton__v1__layer_placement__init(lp);
        lp->layer = (uint32_t)(i * 2);
        lp->n_device = E;
        lp->device = m->dev[i];
        for (int e = 0; e < E; e++) {
            m->dev[i][e] = (uint32_t)(e % 2);
        }
        m->lpp[i] = lp;
    }
    baton__v1__expert_replica__init(&m->rep);
    m->rep.expert = 1;
    m->rep.n_devices = 1;
    m->rep.devices = m->rep_dev;
    m->rep_dev[0] = 0;
    m->repp = &m->rep;
    m->lp[1].n_replicas = 1;
    m->lp[1].replicas = &m->repp;
    m->pb.n_layers = 2;
    m->pb.layers = m->lpp;
}

static void expect_refused(plan_msg_t *m, int n_devices, const char *why)
{
    bt_model_config_t c;
    bt_ep_plan_t plan;
    char err[256] = "";

    cfg_init(&c);
    assert_int_equal(bt_node_experts_from_proto(&m->pb, &c, n_devices, &plan,
                                                err, sizeof(err)),
                     BT_ERR_INVALID_ARG);
    if (strstr(err, why) == NULL) {
        fail_msg("error \"%s\" does not say \"%s\"", err, why);
    }
    assert_null(plan.where);
}

static void test_good_plan(void **state)
{
    bt_model_config_t c;
    plan_msg_t m;
    bt_ep_plan_t plan;
    char err[256];

    (void)state;
    cfg_init(&c);
    msg_init(&m);
    assert_int_equal(bt_node_experts_from_proto(&m.pb, &c, 2, &plan, err,
                                                sizeof(err)), BT_OK);
    assert_int_equal(plan.version, 9);
    assert_int_equal(plan.n_devices, 2);
    for (int e = 0; e < E; e++) {
        assert_int_equal(plan.where[0 * E + e], 1u << (e % 2));
        assert_int_equal(plan.where[1 * E + e], 0);   /* dense */
        assert_int_equal(plan.where[2 * E + e],
                         e == 1 ? 3u : 1u << (e % 2));
    }
    /* and the engine accepts it */
    assert_int_equal(bt_ep_plan_check(&c, 2, bt_ep_default_slots(E, 2), &plan,
                                      err, sizeof(err)), BT_OK);
    bt_ep_plan_cleanup(&plan);
}

static void test_malformed_refused(void **state)
{
    plan_msg_t m;

    (void)state;
    msg_init(&m);
    expect_refused(&m, 3, "plan for 2 devices, the node has 3");
    msg_init(&m);
    m.lp[0].layer = 7;
    expect_refused(&m, 2, "layer 7 is not a MoE layer");
    msg_init(&m);
    m.lp[0].layer = 1;
    expect_refused(&m, 2, "layer 1 is not a MoE layer");
    msg_init(&m);
    m.lp[1].layer = 0;
    expect_refused(&m, 2, "layer 0 placed twice");
    msg_init(&m);
    m.lp[1].n_device = E - 1;
    expect_refused(&m, 2, "layer 2 places 3 experts of 4");
    msg_init(&m);
    m.dev[0][3] = 2;
    expect_refused(&m, 2, "layer 0 expert 3 on device 2 of 2");
    msg_init(&m);
    m.rep.expert = E;
    expect_refused(&m, 2, "layer 2 replica of expert 4 of 4");
    msg_init(&m);
    m.rep_dev[0] = 5;
    expect_refused(&m, 2, "layer 2 expert 1 replica on device 5 of 2");
    msg_init(&m);
    m.pb.n_layers = 1;
    expect_refused(&m, 2, "MoE layer 2 has no placement");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_plan),
        cmocka_unit_test(test_malformed_refused),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
