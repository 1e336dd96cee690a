/* baton-placement plan: reads counts, optional transitions and current
 * plan, prints the new plan and its figures (text or --json). */
#include "cmd.h"
#include "placement.h"

#include "base/json.h"
#include "base/opts.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

/* Counts and plans are small (DeepSeek-V3: ~150 KiB); transitions for
 * 61 x 256 x 256 are ~4M numbers, tens of MiB of text. */
#define COUNTS_MAX_BYTES (64u << 20)
#define PLAN_MAX_BYTES   (64u << 20)

typedef struct {
    const char *counts;
    const char *transitions;
    const char *current;
    int64_t     devices;
    int64_t     nodes;
    int64_t     groups;
    int64_t     slots;
    double      epsilon;
    double      move_price;
    uint64_t    max_transitions_size;
    bool        json;
} plan_cfg_t;

static const bt_opt_t plan_opts[] = {
    { "counts", 0, NULL, NULL, "expert loads: {\"logical_count\": [layer][expert]}",
      BT_OPT_STRING, 0, 0, NULL, offsetof(plan_cfg_t, counts) },
    { "transitions", 0, NULL, NULL,
      "optional {\"transitions\": [layer-1][expert][expert]}",
      BT_OPT_STRING, 0, 0, NULL, offsetof(plan_cfg_t, transitions) },
    { "current", 0, NULL, NULL, "optional plan in force (this tool's --json output)",
      BT_OPT_STRING, 0, 0, NULL, offsetof(plan_cfg_t, current) },
    { "devices", 0, NULL, "0", "devices in the cluster (required)",
      BT_OPT_INT, 0, BT_PLACEMENT_MAX_DEVICES, NULL,
      offsetof(plan_cfg_t, devices) },
    { "nodes", 0, NULL, "1", "nodes; devices are numbered node by node",
      BT_OPT_INT, 1, BT_PLACEMENT_MAX_DEVICES, NULL,
      offsetof(plan_cfg_t, nodes) },
    { "groups", 0, NULL, "0",
      "expert groups for the node-aware mode (0: flat)",
      BT_OPT_INT, 0, BT_PLACEMENT_MAX_EXPERTS, NULL,
      offsetof(plan_cfg_t, groups) },
    { "slots-per-device", 0, NULL, "0",
      "expert copies one device holds (required)",
      BT_OPT_INT, 0, BT_PLACEMENT_MAX_EXPERTS, NULL,
      offsetof(plan_cfg_t, slots) },
    { "epsilon", 0, NULL, "0.001",
      "max-load slack granted to fewer cross-device transitions and moves",
      BT_OPT_DOUBLE, 0, 1, NULL, offsetof(plan_cfg_t, epsilon) },
    { "move-price", 0, NULL, "0.1",
      "with transitions and --current: share of a layer's transition "
      "tokens that keeping all its copies is worth",
      BT_OPT_DOUBLE, 1e-9, 1e6, NULL, offsetof(plan_cfg_t, move_price) },
    { "max-transitions-size", 0, NULL, "512M",
      "largest transitions file read",
      BT_OPT_SIZE, 1, 4.0 * 1024 * 1024 * 1024, NULL,
      offsetof(plan_cfg_t, max_transitions_size) },
    { "json", 0, NULL, "false", "print the plan and figures as one JSON object",
      BT_OPT_BOOL, 0, 0, NULL, offsetof(plan_cfg_t, json) },
};

static const bt_opts_spec_t plan_spec = {
    "baton-placement plan", "[OPTIONS]",
    "Plans MoE expert placement: for every MoE layer, the devices holding "
    "each expert (replicas of hot experts included), balancing device load "
    "first, then keeping correlated experts of consecutive layers together, "
    "then moving few copies from the current plan. All-zero layers are dense "
    "and get no placement.",
    plan_opts, BT_OPTS_COUNT(plan_opts),
};

static json_t *load_json(const char *what, const char *path, size_t max,
                         char *err, size_t err_size)
{
    json_t *root = NULL;
    char    e[256];

    if (bt_json_load_file(path, max, &root, e, sizeof(e)) != BT_OK) {
        snprintf(err, err_size, "%s: %s", what, e);
        return NULL;
    }
    return root;
}

static void print_text(const bt_placement_plan_t *plan,
                       const bt_placement_figures_t *f, bool have_trans,
                       bool have_cur)
{
    printf("plan version %llu: %d layers (%d MoE), %d experts, %d devices x "
           "%d slots, ", (unsigned long long)plan->version, plan->n_layers,
           f->moe_layers, plan->n_experts, plan->n_devices, plan->slots);
    if (plan->n_groups > 0) {
        printf("node-aware (%d nodes, %d groups)\n", plan->n_nodes,
               plan->n_groups);
    } else {
        printf("flat\n");
    }
    printf("balancedness mean %.4f worst layer %.4f\n", f->balancedness_mean,
           f->balancedness_min);
    if (have_trans) {
        printf("cross-device transitions %.0f of %.0f (%.1f%%)\n",
               f->cross_device, f->transitions_total,
               f->transitions_total > 0 ?
               100.0 * f->cross_device / f->transitions_total : 0.0);
    } else {
        printf("cross-device transitions: not known (no --transitions)\n");
    }
    if (have_cur) {
        printf("moved %lld of %lld copies\n", (long long)f->moved,
               (long long)f->copies);
    } else {
        printf("moved: nothing to compare (no --current), %lld copies\n",
               (long long)f->copies);
    }
    for (int32_t l = 0; l < plan->n_layers; l++) {
        if (plan->dense[l]) {
            printf("layer %d: dense\n", l);
            continue;
        }
        printf("layer %d:\n", l);
        for (int32_t d = 0; d < plan->n_devices; d++) {
            const int32_t *row = plan->slot_expert +
                ((size_t)l * (size_t)plan->n_devices + (size_t)d) *
                (size_t)plan->slots;

            printf("  device %d:", d);
            for (int32_t s = 0; s < plan->slots; s++) {
                printf(" %d", row[s]);
            }
            printf("\n");
        }
    }
}

int bt_placement_cmd_plan(int argc, char **argv)
{
    plan_cfg_t cfg = { 0 };
    bt_placement_input_t in = { 0 };
    bt_placement_plan_t *cur = NULL, *plan = NULL;
    bt_placement_figures_t fig;
    double *loads = NULL, *trans = NULL;
    json_t *root = NULL;
    char    err[512];
    int     rc = 1;

    bt_opts_parse_or_exit(&plan_spec, &cfg, argc, argv);
    if (cfg.counts == NULL || cfg.devices == 0 || cfg.slots == 0) {
        fprintf(stderr, "%s: --counts, --devices and --slots-per-device are "
                "required\n", plan_spec.prog);
        return 2;
    }
    root = load_json("counts", cfg.counts, COUNTS_MAX_BYTES, err, sizeof(err));
    if (root == NULL ||
        bt_placement_loads_from_json(root, &loads, &in.n_layers,
                                     &in.n_experts, err, sizeof(err)) != BT_OK) {
        goto err_input;
    }
    json_decref(root);
    root = NULL;
    if (cfg.transitions != NULL) {
        root = load_json("transitions", cfg.transitions,
                         (size_t)cfg.max_transitions_size, err, sizeof(err));
        if (root == NULL ||
            bt_placement_transitions_from_json(root, in.n_layers,
                                               in.n_experts, &trans, err,
                                               sizeof(err)) != BT_OK) {
            goto err_input;
        }
        json_decref(root);
        root = NULL;
    }
    if (cfg.current != NULL) {
        char e[400];

        root = load_json("current", cfg.current, PLAN_MAX_BYTES, err,
                         sizeof(err));
        if (root == NULL) {
            goto err_input;
        }
        if (bt_placement_plan_from_json(root, in.n_layers, in.n_experts, &cur,
                                        e, sizeof(e)) != BT_OK) {
            snprintf(err, sizeof(err), "current: %s", e);
            goto err_input;
        }
        json_decref(root);
        root = NULL;
    }
    in.loads = loads;
    in.transitions = trans;
    in.n_devices = (int32_t)cfg.devices;
    in.slots = (int32_t)cfg.slots;
    in.n_nodes = (int32_t)cfg.nodes;
    in.n_groups = (int32_t)cfg.groups;
    in.current = cur;
    in.epsilon = cfg.epsilon;
    in.move_price = cfg.move_price;
    if (bt_placement_input_check(&in, err, sizeof(err)) != BT_OK) {
        fprintf(stderr, "%s: %s\n", plan_spec.prog, err);
        rc = 2;
        goto out;
    }
    if (bt_placement_plan_create(&in, &plan) != BT_OK ||
        bt_placement_plan_eval(plan, &in, &fig) != BT_OK) {
        fprintf(stderr, "%s: planning failed\n", plan_spec.prog);
        goto out;
    }
    if (bt_placement_plan_verify(plan, &in, err, sizeof(err)) != BT_OK) {
        fprintf(stderr, "%s: internal error, plan broke an invariant: %s\n",
                plan_spec.prog, err);
        goto out;
    }
    if (cfg.json) {
        json_t *out = bt_placement_plan_to_json(plan, &fig);
        char   *text = out != NULL ? bt_json_dump(out) : NULL;

        json_decref(out);
        if (text == NULL) {
            fprintf(stderr, "%s: out of memory\n", plan_spec.prog);
            goto out;
        }
        printf("%s\n", text);
        free(text);
    } else {
        print_text(plan, &fig, trans != NULL, cur != NULL);
    }
    if (fflush(stdout) != 0) {
        fprintf(stderr, "%s: writing the plan failed\n", plan_spec.prog);
        goto out;
    }
    rc = 0;
    goto out;

err_input:
    fprintf(stderr, "%s: %s\n", plan_spec.prog, err);
    rc = 1;
out:
    json_decref(root);
    bt_placement_plan_destroy(plan);
    bt_placement_plan_destroy(cur);
    free(loads);
    free(trans);
    return rc;
}
