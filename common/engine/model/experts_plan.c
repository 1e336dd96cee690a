/* Expert placement plans as the engine runs them (experts.h): shape,
 * the round-robin default and the checks a plan from outside must pass
 * before any expert is copied. */
#include "experts.h"
#include "experts_default.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bt_status_t bt_ep_plan_init(bt_ep_plan_t *p, int n_layers, int n_experts,
                            int n_devices)
{
    memset(p, 0, sizeof(*p));
    if (n_layers <= 0 || n_experts <= 0 || n_devices <= 0 ||
        n_layers > BT_MODEL_MAX_LAYERS || n_experts > BT_MODEL_MAX_EXPERTS ||
        n_devices > BT_EP_MAX_DEVICES) {
        return BT_ERR_INVALID_ARG;
    }
    p->where = calloc((size_t)n_layers * (size_t)n_experts, sizeof(uint32_t));
    if (p->where == NULL) {
        return BT_ERR_NO_MEMORY;
    }
    p->n_layers = n_layers;
    p->n_experts = n_experts;
    p->n_devices = n_devices;
    return BT_OK;
}

void bt_ep_plan_cleanup(bt_ep_plan_t *p)
{
    if (p == NULL) {
        return;
    }
    free(p->where);
    memset(p, 0, sizeof(*p));
}

void bt_ep_plan_round_robin(const bt_model_config_t *c, bt_ep_plan_t *p)
{
    for (int l = 0; l < p->n_layers; l++) {
        for (int e = 0; e < p->n_experts; e++) {
            p->where[(size_t)l * p->n_experts + e] =
                c->layer_is_moe[l] ? 1u << bt_ep_default_device(e, p->n_devices) : 0;
        }
    }
    p->version = 0;
}

int bt_ep_default_slots(int n_experts, int n_devices)
{
    return (n_experts + n_devices - 1) / n_devices + 1;
}

bt_status_t bt_ep_plan_check(const bt_model_config_t *c, int n_devices,
                             int slots, const bt_ep_plan_t *p, char *err,
                             size_t err_size)
{
    const uint32_t valid = n_devices >= 32 ? UINT32_MAX
                                           : (1u << n_devices) - 1;

    if (p->where == NULL || p->n_layers != c->n_layers ||
        p->n_experts != c->n_experts || p->n_devices != n_devices) {
        snprintf(err, err_size, "plan of %d layers, %d experts, %d devices "
                 "for a node of %d layers, %d experts, %d devices",
                 p->n_layers, p->n_experts, p->n_devices, c->n_layers,
                 c->n_experts, n_devices);
        return BT_ERR_INVALID_ARG;
    }
    for (int l = 0; l < p->n_layers; l++) {
        int per_dev[BT_EP_MAX_DEVICES] = {0};

        for (int e = 0; e < p->n_experts; e++) {
            const uint32_t w = p->where[(size_t)l * p->n_experts + e];

            if (!c->layer_is_moe[l] && w != 0) {
                snprintf(err, err_size, "layer %d is dense but the plan "
                         "places expert %d", l, e);
                return BT_ERR_INVALID_ARG;
            }
            if (c->layer_is_moe[l] && w == 0) {
                snprintf(err, err_size, "layer %d expert %d is on no device",
                         l, e);
                return BT_ERR_INVALID_ARG;
            }
            if ((w & ~valid) != 0) {
                snprintf(err, err_size, "layer %d expert %d is on a device "
                         "past the node's %d", l, e, n_devices);
                return BT_ERR_INVALID_ARG;
            }
            for (int d = 0; d < n_devices; d++) {
                if ((w >> d & 1u) != 0 && ++per_dev[d] > slots) {
                    snprintf(err, err_size, "layer %d device %d holds more "
                             "than its %d slots", l, d, slots);
                    return BT_ERR_INVALID_ARG;
                }
            }
        }
    }
    return BT_OK;
}
