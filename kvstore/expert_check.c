/* ExpertStatsReport checks (expert_check.h). The network is hostile: a
 * report is read in full before anything is kept, and one bad field
 * refuses it whole. */
#include "expert_check.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bt_status_t bt_kvsd_xbad(char *err, size_t err_size, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(err, err_size, fmt, ap);
    va_end(ap);
    return BT_ERR_INVALID_ARG;
}

bt_status_t bt_kvsd_check_model_role(const char *model, int role,
                                     bool role_needed, char *err,
                                     size_t err_size)
{
    if (model == NULL || model[0] == '\0' || strlen(model) > BT_PBOOK_MODEL_MAX) {
        return bt_kvsd_xbad(err, err_size, "model must be 1 to %d bytes",
                            BT_PBOOK_MODEL_MAX);
    }
    if ((role_needed || role != 0) && (role < 1 || role > 3)) {
        return bt_kvsd_xbad(err, err_size, "role %d is not a serving role "
                            "(PREFILL, DECODE or BOTH)", role);
    }
    return BT_OK;
}

/* Layer count and expert count of the report, each layer named once. */
static bt_status_t bt_kvsd_report_shape(const Baton__V1__ExpertStatsReport *in,
                                        int32_t *layers_p, int32_t *experts_p,
                                        char *err, size_t err_size)
{
    uint32_t max_layer = 0;
    size_t experts = 0;
    uint8_t *seen;

    if (in->n_layers == 0 || in->n_layers > BT_PLACEMENT_MAX_LAYERS) {
        return bt_kvsd_xbad(err, err_size, "%zu layers (1 to %d)", in->n_layers,
                            BT_PLACEMENT_MAX_LAYERS);
    }
    for (size_t i = 0; i < in->n_layers; i++) {
        const Baton__V1__LayerExpertStats *l = in->layers[i];

        if (l->layer >= BT_PLACEMENT_MAX_LAYERS) {
            return bt_kvsd_xbad(err, err_size, "layer %u (at most %d)", l->layer,
                                BT_PLACEMENT_MAX_LAYERS - 1);
        }
        if (l->n_counts == 0 || l->n_counts > BT_PLACEMENT_MAX_EXPERTS ||
            (experts != 0 && l->n_counts != experts)) {
            return bt_kvsd_xbad(err, err_size, "layer %u: %zu expert counts "
                                "(1 to %d, the same in every layer)", l->layer,
                                l->n_counts, BT_PLACEMENT_MAX_EXPERTS);
        }
        experts = l->n_counts;
        max_layer = l->layer > max_layer ? l->layer : max_layer;
    }
    if ((size_t)(max_layer + 1) * experts > BT_PBOOK_MAX_CELLS) {
        return bt_kvsd_xbad(err, err_size, "%u layers x %zu experts (at most %d "
                            "cells)", max_layer + 1, experts, BT_PBOOK_MAX_CELLS);
    }
    seen = calloc(max_layer + 1, 1);
    if (seen == NULL) {
        snprintf(err, err_size, "out of memory");
        return BT_ERR_NO_MEMORY;
    }
    for (size_t i = 0; i < in->n_layers; i++) {
        if (seen[in->layers[i]->layer]++) {
            free(seen);
            return bt_kvsd_xbad(err, err_size, "layer %u listed twice",
                                in->layers[i]->layer);
        }
    }
    free(seen);
    *layers_p = (int32_t)max_layer + 1;
    *experts_p = (int32_t)experts;
    return BT_OK;
}

static bt_status_t bt_kvsd_report_devices(const Baton__V1__ExpertStatsReport *in,
                                          int32_t experts, int32_t *devices_p,
                                          int32_t *slots_p, char *err,
                                          size_t err_size)
{
    uint32_t d = in->n_devices != 0 ? in->n_devices : 1;
    uint32_t s = in->slots_per_device;

    if (d > BT_PLACEMENT_MAX_DEVICES) {
        return bt_kvsd_xbad(err, err_size, "n_devices %u (at most %d)", d,
                            BT_PLACEMENT_MAX_DEVICES);
    }
    if (s == 0) {
        s = ((uint32_t)experts + d - 1) / d;
    }
    if (s > (uint32_t)experts || (uint64_t)s * d < (uint64_t)experts) {
        return bt_kvsd_xbad(err, err_size, "%u device(s) x %u slot(s) cannot "
                            "hold %d experts once each", d, s, experts);
    }
    if (!(in->balancedness >= 0 && in->balancedness <= 1)) {
        return bt_kvsd_xbad(err, err_size, "balancedness %g (0 to 1)",
                            in->balancedness);
    }
    *devices_p = (int32_t)d;
    *slots_p = (int32_t)s;
    return BT_OK;
}

static bt_status_t bt_kvsd_report_counts(const Baton__V1__ExpertStatsReport *in,
                                         bt_kvsd_expert_report_t *out,
                                         char *err, size_t err_size)
{
    int32_t E = out->r.n_experts;
    size_t n_trans = 0, k = 0;

    for (size_t i = 0; i < in->n_layers; i++) {
        const Baton__V1__LayerExpertStats *l = in->layers[i];

        for (size_t x = 0; x < l->n_counts; x++) {
            if ((double)l->counts[x] > BT_PBOOK_MAX_COUNT) {
                return bt_kvsd_xbad(err, err_size, "layer %u expert %zu: count "
                                    "%llu (at most %g)", l->layer, x,
                                    (unsigned long long)l->counts[x],
                                    BT_PBOOK_MAX_COUNT);
            }
            out->loads[(size_t)l->layer * (size_t)E + x] = (double)l->counts[x];
        }
        if (l->n_transitions > 0 && (int32_t)l->layer + 1 >= out->r.n_layers) {
            return bt_kvsd_xbad(err, err_size, "layer %u: transitions to a "
                                "layer past the last", l->layer);
        }
        n_trans += l->n_transitions;
        if (n_trans > BT_PBOOK_MAX_TRANS) {
            return bt_kvsd_xbad(err, err_size, "more than %d transitions",
                                BT_PBOOK_MAX_TRANS);
        }
    }
    out->trans = calloc(n_trans + 1, sizeof(*out->trans));
    if (out->trans == NULL) {
        snprintf(err, err_size, "out of memory");
        return BT_ERR_NO_MEMORY;
    }
    for (size_t i = 0; i < in->n_layers; i++) {
        const Baton__V1__LayerExpertStats *l = in->layers[i];

        for (size_t t = 0; t < l->n_transitions; t++) {
            const Baton__V1__ExpertTransition *x = l->transitions[t];

            if (x->from >= (uint32_t)E || x->to >= (uint32_t)E ||
                (double)x->count > BT_PBOOK_MAX_COUNT) {
                return bt_kvsd_xbad(err, err_size, "layer %u: transition %u -> "
                                    "%u of %llu (experts 0 to %d, count at "
                                    "most %g)", l->layer, x->from, x->to,
                                    (unsigned long long)x->count, E - 1,
                                    BT_PBOOK_MAX_COUNT);
            }
            out->trans[k++] = (bt_pbook_trans_t){ (int32_t)l->layer,
                (int32_t)x->from, (int32_t)x->to, (double)x->count };
        }
    }
    out->r.trans = out->trans;
    out->r.n_trans = k;
    return BT_OK;
}

bt_status_t bt_kvsd_expert_report(const Baton__V1__ExpertStatsReport *in,
                                  bt_kvsd_expert_report_t *out, char *err,
                                  size_t err_size)
{
    bt_pbook_report_t *r = &out->r;
    bt_status_t st;

    memset(out, 0, sizeof(*out));
    if ((st = bt_kvsd_check_model_role(in->model, (int)in->role, true, err,
                                       err_size)) != BT_OK ||
        (st = bt_kvsd_report_shape(in, &r->n_layers, &r->n_experts, err,
                                   err_size)) != BT_OK ||
        (st = bt_kvsd_report_devices(in, r->n_experts, &r->n_devices, &r->slots,
                                     err, err_size)) != BT_OK) {
        return st;
    }
    out->loads = calloc((size_t)r->n_layers * (size_t)r->n_experts, sizeof(double));
    if (out->loads == NULL) {
        snprintf(err, err_size, "out of memory");
        return BT_ERR_NO_MEMORY;
    }
    r->loads = out->loads;
    r->balancedness = in->balancedness;
    r->plan_version = in->placement_version;
    st = bt_kvsd_report_counts(in, out, err, err_size);
    if (st != BT_OK) {
        bt_kvsd_expert_report_free(out);
    }
    return st;
}

void bt_kvsd_expert_report_free(bt_kvsd_expert_report_t *out)
{
    free(out->loads);
    free(out->trans);
    memset(out, 0, sizeof(*out));
}
