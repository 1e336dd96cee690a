/* Plans to and from JSON: [layer][expert] -> [devices]. */
#include "placement_int.h"

#include "base/json.h"
#include "base/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static json_t *layer_to_json(const bt_placement_plan_t *p, int32_t l)
{
    json_t *layer = json_array();

    if (layer == NULL || p->dense[l]) {
        return layer;
    }
    for (int32_t e = 0; e < p->n_experts; e++) {
        json_t *devs = json_array();

        if (devs == NULL || json_array_append_new(layer, devs) != 0) {
            json_decref(layer);
            return NULL;
        }
    }
    /* Devices ascend within each expert's list because d ascends here. */
    for (int32_t d = 0; d < p->n_devices; d++) {
        const int32_t *row = p->slot_expert +
            ((size_t)l * (size_t)p->n_devices + (size_t)d) * (size_t)p->slots;

        for (int32_t s = 0; s < p->slots; s++) {
            json_t *devs = json_array_get(layer, (size_t)row[s]);

            if (devs == NULL ||
                json_array_append_new(devs, json_integer(d)) != 0) {
                json_decref(layer);
                return NULL;
            }
        }
    }
    return layer;
}

json_t *bt_placement_plan_to_json(const bt_placement_plan_t *plan,
                                  const bt_placement_figures_t *figures)
{
    json_t *root = json_object(), *layers = json_array();
    int     rc = 0;

    if (root == NULL || layers == NULL) {
        goto err;
    }
    rc |= json_object_set_new(root, "version",
                              json_integer((json_int_t)plan->version));
    if (figures != NULL) {
        rc |= json_object_set_new(root, "balancedness_mean",
                                  json_real(figures->balancedness_mean));
        rc |= json_object_set_new(root, "balancedness_min",
                                  json_real(figures->balancedness_min));
        rc |= json_object_set_new(root, "cross_device",
                                  json_real(figures->cross_device));
        rc |= json_object_set_new(root, "moved",
                                  json_integer((json_int_t)figures->moved));
    }
    for (int32_t l = 0; l < plan->n_layers; l++) {
        json_t *layer = layer_to_json(plan, l);

        if (layer == NULL) {
            goto err;
        }
        rc |= json_array_append_new(layers, layer);
    }
    rc |= json_object_set(root, "plan", layers);
    if (plan->n_groups > 0) {
        json_t *homes = json_array();

        if (homes == NULL) {
            goto err;
        }
        for (int32_t l = 0; l < plan->n_layers; l++) {
            json_t *row = json_array();

            rc |= json_array_append_new(homes, row);
            for (int32_t g = 0; row != NULL && !plan->dense[l] &&
                                g < plan->n_groups; g++) {
                rc |= json_array_append_new(row, json_integer(
                    plan->home[(size_t)l * (size_t)plan->n_groups + (size_t)g]));
            }
        }
        rc |= json_object_set_new(root, "home", homes);
    }
    if (rc != 0) {
        goto err;
    }
    json_decref(layers);
    return root;

err:
    json_decref(layers);
    json_decref(root);
    bt_error("placement: out of memory writing a plan");
    return NULL;
}

/* Checks one layer's lists and reports the highest device named. */
static bt_status_t layer_scan(const json_t *layer, int32_t l,
                              int32_t n_experts, int32_t *max_dev_p,
                              int64_t *copies_p, char *err, size_t err_size)
{
    size_t n = json_array_size(layer);

    if (n == 0) {
        return BT_OK;
    }
    if (n != (size_t)n_experts) {
        snprintf(err, err_size, "plan layer %d: %zu experts, expected %d or 0",
                 l, n, n_experts);
        return BT_ERR_INVALID_ARG;
    }
    for (size_t e = 0; e < n; e++) {
        const json_t *devs = json_array_get(layer, e);

        if (!json_is_array(devs) || json_array_size(devs) == 0) {
            snprintf(err, err_size, "plan layer %d expert %zu: expected a "
                     "non-empty array of devices", l, e);
            return BT_ERR_INVALID_ARG;
        }
        for (size_t i = 0; i < json_array_size(devs); i++) {
            const json_t *v = json_array_get(devs, i);
            json_int_t    d;

            if (!json_is_integer(v) || (d = json_integer_value(v)) < 0 ||
                d >= BT_PLACEMENT_MAX_DEVICES) {
                snprintf(err, err_size, "plan layer %d expert %zu: device "
                         "must be an integer in 0..%d", l, e,
                         BT_PLACEMENT_MAX_DEVICES - 1);
                return BT_ERR_INVALID_ARG;
            }
            if ((int32_t)d > *max_dev_p) {
                *max_dev_p = (int32_t)d;
            }
            (*copies_p)++;
        }
    }
    return BT_OK;
}

bt_status_t bt_placement_plan_from_json(const json_t *root, int32_t n_layers,
                                        int32_t n_experts,
                                        bt_placement_plan_t **plan_p,
                                        char *err, size_t err_size)
{
    bt_placement_plan_t *plan = NULL;
    json_t  *layers = NULL;
    int64_t  version = 1, copies = 0;
    int32_t  max_dev = -1, moe = 0, slots, n_devices;
    int32_t *fill = NULL;
    bt_status_t status;

    if (!json_is_object(root)) {
        snprintf(err, err_size, "plan: expected a JSON object");
        return BT_ERR_INVALID_ARG;
    }
    status = bt_json_get_array(root, "plan", true, &layers, err, err_size);
    if (status != BT_OK) {
        return status;
    }
    status = bt_json_get_int(root, "version", false, 0, INT64_MAX, &version,
                             err, err_size);
    if (status != BT_OK && status != BT_ERR_NOT_FOUND) {
        return status;
    }
    if (json_array_size(layers) != (size_t)n_layers) {
        snprintf(err, err_size, "plan has %zu layers, expected %d",
                 json_array_size(layers), n_layers);
        return BT_ERR_INVALID_ARG;
    }
    for (int32_t l = 0; l < n_layers; l++) {
        const json_t *layer = json_array_get(layers, (size_t)l);

        if (!json_is_array(layer)) {
            snprintf(err, err_size, "plan layer %d: expected an array", l);
            return BT_ERR_INVALID_ARG;
        }
        status = layer_scan(layer, l, n_experts, &max_dev, &copies, err,
                            err_size);
        if (status != BT_OK) {
            return status;
        }
        moe += json_array_size(layer) > 0;
    }
    if (moe == 0) {
        snprintf(err, err_size, "plan has no MoE layer");
        return BT_ERR_INVALID_ARG;
    }
    n_devices = max_dev + 1;
    if (copies % ((int64_t)moe * n_devices) != 0) {
        snprintf(err, err_size, "plan: %lld copies do not fill %d devices "
                 "evenly over %d layers", (long long)copies, n_devices, moe);
        return BT_ERR_INVALID_ARG;
    }
    slots = (int32_t)(copies / ((int64_t)moe * n_devices));
    if (slots < 1 || slots > n_experts) {
        snprintf(err, err_size, "plan: %d copies per device out of range",
                 slots);
        return BT_ERR_INVALID_ARG;
    }
    status = bt_placement_plan_alloc(n_layers, n_experts, n_devices, slots, 0,
                                     &plan);
    if (status != BT_OK) {
        return status;
    }
    plan->version = (uint64_t)version;
    fill = calloc((size_t)n_devices, sizeof(*fill));
    if (fill == NULL) {
        status = BT_ERR_NO_MEMORY;
        snprintf(err, err_size, "out of memory");
        goto err_plan;
    }
    for (int32_t l = 0; l < n_layers; l++) {
        const json_t *layer = json_array_get(layers, (size_t)l);
        int32_t *cells = plan->slot_expert +
                         (size_t)l * (size_t)n_devices * (size_t)slots;

        if (json_array_size(layer) == 0) {
            continue;
        }
        plan->dense[l] = 0;
        memset(fill, 0, (size_t)n_devices * sizeof(*fill));
        /* Experts ascend, so each device's slots come out sorted. */
        for (int32_t e = 0; e < n_experts; e++) {
            const json_t *devs = json_array_get(layer, (size_t)e);

            for (size_t i = 0; i < json_array_size(devs); i++) {
                int32_t d = (int32_t)json_integer_value(json_array_get(devs, i));
                int32_t *row = cells + (size_t)d * (size_t)slots;

                if (fill[d] >= slots) {
                    snprintf(err, err_size, "plan layer %d: device %d holds "
                             "more than %d copies", l, d, slots);
                    status = BT_ERR_INVALID_ARG;
                    goto err_fill;
                }
                if (fill[d] > 0 && row[fill[d] - 1] == e) {
                    snprintf(err, err_size, "plan layer %d: device %d holds "
                             "expert %d twice", l, d, e);
                    status = BT_ERR_INVALID_ARG;
                    goto err_fill;
                }
                row[fill[d]++] = e;
            }
        }
        for (int32_t d = 0; d < n_devices; d++) {
            if (fill[d] != slots) {
                snprintf(err, err_size, "plan layer %d: device %d holds %d "
                         "copies, others %d", l, d, fill[d], slots);
                status = BT_ERR_INVALID_ARG;
                goto err_fill;
            }
        }
    }
    free(fill);
    *plan_p = plan;
    return BT_OK;

err_fill:
    free(fill);
err_plan:
    bt_placement_plan_destroy(plan);
    return status;
}
