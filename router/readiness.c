/* The router's readiness ("send me work"): /readyz and the gRPC health of
 * baton.v1.Generate answer the same question. Ready needs a router that
 * does not drain and, for the served model, a live prefill-capable node
 * and a live decode-capable node that neither drain nor drained. A timer
 * keeps the gRPC health in step with the registry (nodes join, leave,
 * drain); admin drain and undrain sync at once. Liveness (/livez) is
 * elsewhere and never depends on this. */
#include "router.h"
#include "model.h"

#include "base/log.h"

#include <stdio.h>

#define BT_READINESS_PERIOD_MS 250

/* true when ready; otherwise r->ready_why says why */
static bool bt_router_ready_now(bt_router_t *r)
{
    const char *model = bt_router_model_name(r);
    size_t n;

    if (r->draining) {
        snprintf(r->ready_why, sizeof(r->ready_why), "draining");
        return false;
    }
    if (bt_registry_count_usable(r->registry, BT_NODE_ROLE_PREFILL, model) == 0) {
        n = bt_registry_count(r->registry, BT_NODE_ROLE_PREFILL, model);
        if (n == 0) {
            snprintf(r->ready_why, sizeof(r->ready_why),
                     "no prefill node serves model '%s'", model);
        } else {
            snprintf(r->ready_why, sizeof(r->ready_why),
                     "all %zu prefill nodes of model '%s' drain", n, model);
        }
        return false;
    }
    if (bt_registry_count_usable(r->registry, BT_NODE_ROLE_DECODE, model) == 0) {
        n = bt_registry_count(r->registry, BT_NODE_ROLE_DECODE, model);
        if (n == 0) {
            snprintf(r->ready_why, sizeof(r->ready_why),
                     "no decode node serves model '%s'", model);
        } else {
            snprintf(r->ready_why, sizeof(r->ready_why),
                     "all %zu decode nodes of model '%s' drain", n, model);
        }
        return false;
    }
    r->ready_why[0] = '\0';
    return true;
}

bool bt_router_ready(void *arg, const char **why_p)
{
    bt_router_t *r = arg;

    bt_router_readiness_sync(r);
    if (!r->ready) {
        *why_p = r->ready_why;
    }
    return r->ready;
}

void bt_router_readiness_sync(bt_router_t *r)
{
    bool ready = bt_router_ready_now(r);

    if (ready == r->ready) {
        return;
    }
    r->ready = ready;
    if (ready) {
        bt_info("ready: prefill and decode nodes serve model '%s'",
                bt_router_model_name(r));
    } else {
        bt_info("not ready: %s", r->ready_why);
    }
    if (r->grpc != NULL) {
        bt_rpc_server_set_serving(r->grpc, "baton.v1.Generate", ready);
    }
}

static void bt_router_readiness_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    bt_router_readiness_sync(arg);
}

bt_status_t bt_router_readiness_start(bt_router_t *r)
{
    struct timeval tv = { 0, BT_READINESS_PERIOD_MS * 1000 };

    /* not ready until nodes come: the health says so from the start */
    r->ready = false;
    snprintf(r->ready_why, sizeof(r->ready_why), "no node registered yet");
    bt_rpc_server_set_serving(r->grpc, "baton.v1.Generate", false);
    r->ready_ev = event_new(r->base, -1, EV_PERSIST, bt_router_readiness_tick, r);
    if (r->ready_ev == NULL || event_add(r->ready_ev, &tv) != 0) {
        return BT_ERR_NO_MEMORY;
    }
    bt_router_readiness_sync(r);
    return BT_OK;
}

void bt_router_readiness_stop(bt_router_t *r)
{
    if (r->ready_ev != NULL) {
        event_free(r->ready_ev);
        r->ready_ev = NULL;
    }
}
