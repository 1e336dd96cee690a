/* The decayed history of one (model, role): the sum of its reports'
 * counts, each weighted by 2^(-age / half-life), so that the plan follows
 * the current traffic and one odd window does not decide it. */
#include "plan_book_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

bt_status_t bt_pbook_history_init(bt_pbook_entry_t *e, int32_t n_layers,
                                  int32_t n_experts)
{
    size_t cells = (size_t)n_layers * (size_t)n_experts;
    size_t tcells = (size_t)(n_layers - 1) * (size_t)n_experts * (size_t)n_experts;

    e->loads = calloc(cells, sizeof(double));
    if (e->loads == NULL) {
        return BT_ERR_NO_MEMORY;
    }
    /* past the bound the planner runs on loads alone */
    if (n_layers > 1 && tcells <= BT_PBOOK_MAX_TRANS_CELLS) {
        e->trans = calloc(tcells, sizeof(double));
        if (e->trans == NULL) {
            free(e->loads);
            e->loads = NULL;
            return BT_ERR_NO_MEMORY;
        }
    }
    e->n_layers = n_layers;
    e->n_experts = n_experts;
    e->decayed_ms = 0;
    return BT_OK;
}

static void bt_pbook_scale(double *v, size_t n, double f)
{
    for (size_t i = 0; i < n; i++) {
        v[i] *= f;
    }
}

void bt_pbook_history_add(bt_pbook_entry_t *e, const bt_pbook_report_t *r,
                          uint64_t now_ms, double half_life_ms)
{
    size_t E = (size_t)e->n_experts;
    size_t cells = (size_t)e->n_layers * E;

    if (e->decayed_ms != 0 && now_ms > e->decayed_ms) {
        double f = exp2(-(double)(now_ms - e->decayed_ms) / half_life_ms);

        bt_pbook_scale(e->loads, cells, f);
        if (e->trans != NULL) {
            bt_pbook_scale(e->trans, (size_t)(e->n_layers - 1) * E * E, f);
        }
    }
    if (now_ms > e->decayed_ms) {
        e->decayed_ms = now_ms;
    }
    for (size_t i = 0; i < (size_t)r->n_layers * E; i++) {
        e->loads[i] += r->loads[i];
    }
    for (size_t i = 0; e->trans != NULL && i < r->n_trans; i++) {
        const bt_pbook_trans_t *t = &r->trans[i];

        e->trans[((size_t)t->layer * E + (size_t)t->from) * E + (size_t)t->to] +=
            t->count;
    }
}

double bt_pbook_history_tokens(const bt_pbook_entry_t *e)
{
    double sum = 0;
    int32_t layers = 0;

    for (int32_t l = 0; e->loads != NULL && l < e->n_layers; l++) {
        double s = 0;

        for (int32_t x = 0; x < e->n_experts; x++) {
            s += e->loads[(size_t)l * (size_t)e->n_experts + (size_t)x];
        }
        sum += s;
        layers += s > 0;
    }
    return layers > 0 ? sum / layers : 0;
}

void bt_pbook_entry_clear(bt_pbook_entry_t *e)
{
    free(e->loads);
    free(e->trans);
    bt_placement_plan_destroy(e->plan);
    memset(e, 0, sizeof(*e));
}
