/* batonctl role (move a flexible node to another role) and batonctl events
 * (the router's log of role moves). */
#include "ctl.h"

#include "admin.pb-c.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#define ADMIN "/baton.v1.Admin/"

static int ctl_role_word(const char *w)
{
    return strcmp(w, "prefill") == 0 ? BATON__V1__NODE_ROLE__NODE_ROLE_PREFILL
           : strcmp(w, "decode") == 0 ? BATON__V1__NODE_ROLE__NODE_ROLE_DECODE
           : strcmp(w, "both") == 0 ? BATON__V1__NODE_ROLE__NODE_ROLE_BOTH : 0;
}

static int64_t ctl_role_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Polls ListNodes until `node` serves `want` and moves no more. */
static int ctl_role_wait(ctl_t *ctl, const char *node, const char *want)
{
    int64_t start = ctl_role_now_ms(), wait_ms = ctl->cfg.timeout_ms;

    ctl_signals_install();
    for (;;) {
        json_t *nodes, *n;
        char role[16], to[16];
        int rc;

        if ((rc = ctl_find_node(ctl, node, &nodes, &n)) != CTL_EXIT_OK) {
            return rc;
        }
        if (n == NULL) {
            fprintf(stderr, "batonctl: role: %s left the router while moving\n",
                    node);
            json_decref(nodes);
            return CTL_EXIT_FAIL;
        }
        ctl_enum(n, "role", "NODE_ROLE_", role, sizeof(role));
        ctl_enum(n, "target_role", "NODE_ROLE_", to, sizeof(to));
        json_decref(nodes);
        if (strcmp(role, want) == 0 && (to[0] == '\0' || strcmp(to, "unspecified") == 0)) {
            return CTL_EXIT_OK;
        }
        if (to[0] == '\0' || strcmp(to, "unspecified") == 0) {
            fprintf(stderr, "batonctl: role: %s stopped moving and serves as %s "
                    "(see batonctl events)\n", node, role);
            return CTL_EXIT_FAIL;
        }
        if (wait_ms >= 0 && ctl_role_now_ms() - start > wait_ms) {
            fprintf(stderr, "batonctl: role: timed out after %lld ms: %s still "
                    "moves from %s to %s\n", (long long)wait_ms, node, role, to);
            return CTL_EXIT_TIMEOUT;
        }
        if (!ctl_sleep(ctl->cfg.interval_ms < 200 ? ctl->cfg.interval_ms : 200)) {
            return CTL_EXIT_TIMEOUT;
        }
    }
}

static const char *ctl_role_node;

static void ctl_print_role(const ctl_t *ctl, const json_t *resp)
{
    char role[16], to[16];

    (void)ctl;
    ctl_enum(resp, "role", "NODE_ROLE_", role, sizeof(role));
    ctl_enum(resp, "target_role", "NODE_ROLE_", to, sizeof(to));
    if (to[0] == '\0' || strcmp(to, "unspecified") == 0) {
        printf("%s: serves as %s\n", ctl_role_node, role);
    } else {
        printf("%s: moving from %s to %s (finishing its %s work)\n",
               ctl_role_node, role, to, role);
    }
}

int ctl_cmd_role(ctl_t *ctl, int n_args, char **args)
{
    Baton__V1__SetRoleRequest req = BATON__V1__SET_ROLE_REQUEST__INIT;
    json_t *resp;
    bt_rpc_code_t code;
    int rc;

    (void)n_args;
    req.node_id = args[0];
    req.role = (Baton__V1__NodeRole)ctl_role_word(args[1]);
    if (req.role == 0) {
        fprintf(stderr, "batonctl: role: '%s' is not a role: prefill, decode "
                "or both\n", args[1]);
        return CTL_EXIT_USAGE;
    }
    ctl_role_node = args[0];
    if ((code = ctl_call(ctl, ADMIN "SetRole", &req.base,
                         &baton__v1__set_role_response__descriptor, &resp)) !=
        BT_RPC_OK) {
        return ctl_exit_for(code);
    }
    rc = ctl_finish(ctl, resp, ctl_print_role);
    if (rc == CTL_EXIT_OK && ctl->cfg.wait) {
        rc = ctl_role_wait(ctl, args[0], args[1]);
        if (rc == CTL_EXIT_OK && (ctl->out == CTL_OUT_TABLE || ctl->out == CTL_OUT_WIDE)) {
            printf("%s: serves as %s\n", args[0], args[1]);
        }
    }
    return rc;
}

static void ctl_print_events(const ctl_t *ctl, const json_t *resp)
{
    json_t *e;
    size_t i;

    (void)ctl;
    printf("%-24s %-16s %-13s %-8s %-8s %s\n", "TIME", "NODE", "EVENT", "FROM",
           "TO", "WHY");
    json_array_foreach(json_object_get(resp, "events"), i, e) {
        char when[64], from[16], to[16];

        printf("%-24s %-16s %-13s %-8s %-8s %s\n",
               ctl_time((uint64_t)ctl_int(e, "unix_ms"), when, sizeof(when)),
               ctl_str(e, "node_id"), ctl_str(e, "kind"),
               ctl_enum(e, "from_role", "NODE_ROLE_", from, sizeof(from)),
               ctl_enum(e, "to_role", "NODE_ROLE_", to, sizeof(to)),
               ctl_str(e, "reason"));
    }
}

int ctl_cmd_events(ctl_t *ctl, int n_args, char **args)
{
    Baton__V1__ListEventsRequest req = BATON__V1__LIST_EVENTS_REQUEST__INIT;
    json_t *resp;
    bt_rpc_code_t code;

    (void)n_args;
    (void)args;
    req.limit = ctl->cfg.limit > 0 ? (uint32_t)ctl->cfg.limit : 0;
    if ((code = ctl_call(ctl, ADMIN "ListEvents", &req.base,
                         &baton__v1__list_events_response__descriptor, &resp)) !=
        BT_RPC_OK) {
        return ctl_exit_for(code);
    }
    return ctl_finish(ctl, resp, ctl_print_events);
}
