/* The list calls and the --role parse that several commands share (get,
 * describe, --watch, drain --wait, role --wait): below the command files,
 * so none of them needs another. */
#include "ctl.h"

#include "admin.pb-c.h"

#include <stdio.h>
#include <string.h>

#define ADMIN "/baton.v1.Admin/"

int ctl_role_parse(ctl_t *ctl, bool kvstore_ok, int *role_p)
{
    const char *r = ctl->cfg.role;

    if (r == NULL || r[0] == '\0') {
        *role_p = BATON__V1__NODE_ROLE__NODE_ROLE_UNSPECIFIED;
    } else if (strcmp(r, "prefill") == 0) {
        *role_p = BATON__V1__NODE_ROLE__NODE_ROLE_PREFILL;
    } else if (strcmp(r, "decode") == 0) {
        *role_p = BATON__V1__NODE_ROLE__NODE_ROLE_DECODE;
    } else if (strcmp(r, "kvstore") == 0 && kvstore_ok) {
        *role_p = BATON__V1__NODE_ROLE__NODE_ROLE_KVSTORE;
    } else {
        fprintf(stderr, "batonctl: %s: --role must be prefill or decode%s, not '%s'\n",
                ctl->cmd, kvstore_ok ? " or kvstore" : "", r);
        return CTL_EXIT_USAGE;
    }
    return CTL_EXIT_OK;
}

int ctl_list_nodes(ctl_t *ctl, int role, json_t **resp_p)
{
    Baton__V1__ListNodesRequest req = BATON__V1__LIST_NODES_REQUEST__INIT;
    bt_rpc_code_t code;

    req.role = (Baton__V1__NodeRole)role;
    code = ctl_call(ctl, ADMIN "ListNodes", &req.base,
                    &baton__v1__list_nodes_response__descriptor, resp_p);
    return ctl_exit_for(code);
}

int ctl_find_node(ctl_t *ctl, const char *id, json_t **nodes_p, json_t **node_p)
{
    int rc;

    *node_p = NULL;
    if ((rc = ctl_list_nodes(ctl, 0, nodes_p)) != CTL_EXIT_OK) {
        return rc;
    }
    *node_p = ctl_find_in(*nodes_p, "nodes", "node_id", id);
    return CTL_EXIT_OK;
}

int ctl_list_requests(ctl_t *ctl, const char *node, json_t **resp_p)
{
    Baton__V1__ListRequestsRequest req = BATON__V1__LIST_REQUESTS_REQUEST__INIT;
    bt_rpc_code_t code;

    req.node_id = node != NULL ? (char *)node : (char *)"";
    req.limit = (uint32_t)ctl->cfg.limit;
    code = ctl_call(ctl, ADMIN "ListRequests", &req.base,
                    &baton__v1__list_requests_response__descriptor, resp_p);
    return ctl_exit_for(code);
}
