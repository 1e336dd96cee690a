#include "pl_test.h"

#include "base/json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

uint64_t pl_test_rand(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

double pl_test_unit(uint64_t *state)
{
    return (double)(pl_test_rand(state) >> 11) / 9007199254740992.0;
}

bt_placement_plan_t *pl_test_plan(const bt_placement_input_t *in)
{
    bt_placement_plan_t *a = NULL, *b = NULL;
    char   err[256];
    size_t cells = (size_t)in->n_layers * (size_t)in->n_devices *
                   (size_t)in->slots;

    assert_int_equal(bt_placement_plan_create(in, &a), BT_OK);
    if (bt_placement_plan_verify(a, in, err, sizeof(err)) != BT_OK) {
        fail_msg("invariant broken: %s", err);
    }
    assert_int_equal(bt_placement_plan_create(in, &b), BT_OK);
    assert_memory_equal(a->slot_expert, b->slot_expert,
                        cells * sizeof(*a->slot_expert));
    assert_memory_equal(a->dense, b->dense, (size_t)in->n_layers);
    if (in->n_groups > 0) {
        assert_memory_equal(a->home, b->home, (size_t)in->n_layers *
                            (size_t)in->n_groups * sizeof(*a->home));
    }
    bt_placement_plan_destroy(b);
    return a;
}

bt_placement_figures_t pl_test_eval(const bt_placement_plan_t *plan,
                                    const bt_placement_input_t *in)
{
    bt_placement_figures_t f;

    assert_int_equal(bt_placement_plan_eval(plan, in, &f), BT_OK);
    return f;
}

double *pl_test_load_counts(const char *name, int32_t *n_layers_p,
                            int32_t *n_experts_p)
{
    const char *dir = getenv("BATON_SHARED_DATA");
    const char *ci = getenv("CI");
    char    path[1024], err[256];
    json_t *root = NULL;
    double *loads = NULL;
    bt_status_t status;

    snprintf(path, sizeof(path), "%s/moe/%s", dir != NULL ? dir : ".", name);
    status = bt_json_load_file(path, 64u << 20, &root, err, sizeof(err));
    if (status == BT_ERR_NOT_FOUND) {
        if (ci != NULL && strcmp(ci, "true") == 0) {
            fail_msg("%s is absent under CI=true", path);
        }
        print_message("# skip: %s is absent\n", path);
        return NULL;
    }
    if (status != BT_OK) {
        fail_msg("%s: %s", path, err);
    }
    if (bt_placement_loads_from_json(root, &loads, n_layers_p, n_experts_p,
                                     err, sizeof(err)) != BT_OK) {
        fail_msg("%s: %s", path, err);
    }
    json_decref(root);
    return loads;
}
