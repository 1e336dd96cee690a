/* batonctl placement / rebalance: the MoE expert placement plans the
 * kvstore keeps per (model, role), through the router's Admin service.
 * -o json prints one object per (model, role): model, role, version,
 * devices, balancedness (measured on the nodes), planned_balancedness,
 * moved_experts. */
#include "ctl.h"

#include "admin.pb-c.h"

#include <stdio.h>
#include <string.h>

#define ADMIN "/baton.v1.Admin/"

/* The model from MODEL or --model (the same if both). */
static int ctl_model_arg(const ctl_t *ctl, int n_args, char **args,
                         const char **model_p)
{
    const char *pos = n_args > 0 ? args[0] : NULL, *opt = ctl->cfg.model;

    if (pos != NULL && opt != NULL && strcmp(pos, opt) != 0) {
        fprintf(stderr, "batonctl: %s: MODEL '%s' and --model '%s' differ\n",
                ctl->cmd, pos, opt);
        return CTL_EXIT_USAGE;
    }
    *model_p = pos != NULL ? pos : opt != NULL ? opt : "";
    return CTL_EXIT_OK;
}

/* The operator's view of the plans: one object per (model, role). */
static json_t *ctl_plans_summary(const json_t *resp)
{
    const json_t *plans = json_object_get(resp, "plans"), *p;
    json_t *out = json_array();
    size_t i;

    json_array_foreach(plans, i, p) {
        char role[16];

        json_array_append_new(out, json_pack(
            "{s:s, s:s, s:I, s:I, s:f, s:f, s:I}",
            "model", ctl_str(p, "model"),
            "role", ctl_enum(p, "role", "NODE_ROLE_", role, sizeof(role)),
            "version", (json_int_t)ctl_int(p, "version"),
            "devices", (json_int_t)ctl_int(p, "n_devices"),
            "balancedness", ctl_real(p, "balancedness"),
            "planned_balancedness", ctl_real(p, "planned_balancedness"),
            "moved_experts", (json_int_t)ctl_int(p, "moved_experts")));
    }
    return out;
}

static int ctl_print_plans(const ctl_t *ctl, json_t *resp, const char *empty)
{
    json_t *sum = ctl_plans_summary(resp);
    const json_t *p;
    size_t i;
    int rc = CTL_EXIT_OK;

    if (ctl->out == CTL_OUT_JSON || ctl->out == CTL_OUT_YAML) {
        rc = ctl_emit(ctl, sum);
    } else if (json_array_size(sum) == 0) {
        printf("%s\n", empty);
    } else {
        printf("%-24s %-8s %8s %8s %13s %8s %6s\n", "MODEL", "ROLE", "VERSION",
               "DEVICES", "BALANCEDNESS", "PLANNED", "MOVED");
        json_array_foreach(sum, i, p) {
            char measured[16];

            /* 0: no node reported under this version yet */
            snprintf(measured, sizeof(measured), "%.3f", ctl_real(p, "balancedness"));
            printf("%-24s %-8s %8lld %8lld %13s %8.3f %6lld\n", ctl_str(p, "model"),
                   ctl_str(p, "role"), ctl_int(p, "version"), ctl_int(p, "devices"),
                   ctl_real(p, "balancedness") > 0 ? measured : "-",
                   ctl_real(p, "planned_balancedness"), ctl_int(p, "moved_experts"));
        }
    }
    json_decref(sum);
    json_decref(resp);
    return rc;
}

/* The (--model, --role) both commands take. */
static int ctl_plan_filter(ctl_t *ctl, int n_args, char **args,
                           const char **model_p, int *role_p)
{
    int rc = ctl_role_parse(ctl, false, role_p);

    return rc != CTL_EXIT_OK ? rc : ctl_model_arg(ctl, n_args, args, model_p);
}

int ctl_cmd_placement(ctl_t *ctl, int n_args, char **args)
{
    Baton__V1__AdminGetPlacementRequest req = BATON__V1__ADMIN_GET_PLACEMENT_REQUEST__INIT;
    const char *model;
    json_t *resp;
    bt_rpc_code_t code;
    int role = 0;
    int rc = ctl_plan_filter(ctl, n_args, args, &model, &role);

    if (rc != CTL_EXIT_OK) {
        return rc;
    }
    req.role = (Baton__V1__NodeRole)role;
    req.model = (char *)model;
    if ((code = ctl_call(ctl, ADMIN "GetPlacement", &req.base,
                 &baton__v1__admin_get_placement_response__descriptor,
                 &resp)) != BT_RPC_OK) {
        return ctl_exit_for(code);
    }
    return ctl_print_plans(ctl, resp, "no MoE placement plan yet");
}

int ctl_cmd_rebalance(ctl_t *ctl, int n_args, char **args)
{
    Baton__V1__RebalanceRequest req = BATON__V1__REBALANCE_REQUEST__INIT;
    const char *model;
    json_t *resp;
    bt_rpc_code_t code;
    int role = 0;
    int rc = ctl_plan_filter(ctl, n_args, args, &model, &role);

    if (rc != CTL_EXIT_OK) {
        return rc;
    }
    req.role = (Baton__V1__NodeRole)role;
    req.model = (char *)model;
    req.dry_run = ctl->cfg.dry_run;
    if ((code = ctl_call(ctl, ADMIN "Rebalance", &req.base,
                 &baton__v1__rebalance_response__descriptor, &resp)) != BT_RPC_OK) {
        return ctl_exit_for(code);
    }
    if (ctl->out != CTL_OUT_JSON && ctl->out != CTL_OUT_YAML && ctl->cfg.dry_run) {
        printf("dry run: nothing below was published (VERSION is the one it "
               "would get)\n");
    }
    return ctl_print_plans(ctl, resp, "nothing to re-plan");
}
