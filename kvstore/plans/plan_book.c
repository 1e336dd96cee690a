/* The plan book: entries per (model, role), reports and the re-plan rule
 * (the re-plans themselves and the versions: plan_job.c). */
#include "plan_book_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bt_status_t bt_pbook_create(const bt_pbook_cfg_t *cfg, bt_pbook_t **book_p,
                            char *err, size_t err_size)
{
    bt_pbook_t *b = calloc(1, sizeof(*b));
    bt_status_t st;

    if (b == NULL) {
        return BT_ERR_NO_MEMORY;
    }
    b->cfg = *cfg;
    if (b->cfg.half_life_ms <= 0) {
        b->cfg.half_life_ms = 60000;
    }
    if (cfg->dir != NULL && (b->dir = strdup(cfg->dir)) == NULL) {
        free(b);
        return BT_ERR_NO_MEMORY;
    }
    b->cfg.dir = b->dir;
    st = b->dir != NULL ? bt_pbook_store_load(b, err, err_size) : BT_OK;
    if (st != BT_OK) {
        bt_pbook_destroy(b);
        return st;
    }
    *book_p = b;
    return BT_OK;
}

void bt_pbook_destroy(bt_pbook_t *book)
{
    if (book == NULL) {
        return;
    }
    for (size_t i = 0; i < book->n; i++) {
        bt_pbook_entry_clear(&book->entries[i]);
    }
    free(book->dir);
    free(book);
}

void bt_pbook_view_of(const bt_pbook_entry_t *e, bt_pbook_view_t *v)
{
    memset(v, 0, sizeof(*v));
    v->model = e->model;
    v->role = e->role;
    v->version = e->version;
    v->created_unix_ms = e->created_unix_ms;
    v->n_layers = e->n_layers;
    v->n_experts = e->n_experts;
    v->n_devices = e->n_devices;
    v->slots = e->slots;
    v->balancedness = e->measured;
    v->planned_balancedness = e->planned_balancedness;
    v->moved = e->moved;
    v->has_history = e->loads != NULL;
    v->plan = e->plan;
}

bt_pbook_entry_t *bt_pbook_lookup(const bt_pbook_t *book, const char *model,
                                  int role)
{
    for (size_t i = 0; i < book->n; i++) {
        const bt_pbook_entry_t *e = &book->entries[i];

        if (e->role == role && strcmp(e->model, model) == 0) {
            return (bt_pbook_entry_t *)e;
        }
    }
    return NULL;
}

bool bt_pbook_at(const bt_pbook_t *book, size_t i, bt_pbook_view_t *view_p)
{
    if (i >= book->n) {
        return false;
    }
    bt_pbook_view_of(&book->entries[i], view_p);
    return true;
}

bool bt_pbook_find(const bt_pbook_t *book, const char *model, int role,
                   bt_pbook_view_t *view_p)
{
    const bt_pbook_entry_t *e = bt_pbook_lookup(book, model, role);

    if (e != NULL) {
        bt_pbook_view_of(e, view_p);
    }
    return e != NULL;
}

void bt_pbook_view_release(bt_pbook_view_t *view)
{
    if (view->owned) {
        bt_placement_plan_destroy((bt_placement_plan_t *)view->plan);
    }
    view->plan = NULL;
    view->owned = false;
}

/* The rule: the measured balancedness is under the threshold, the history
 * holds enough tokens, the last try is old enough and no re-plan it asked
 * for is still running. The plan must then beat the measured figure by
 * min_gain (plan_job.c): moves cost the nodes copies, and the planner's
 * move price already keeps what is good enough. */
static bool bt_pbook_rule_fires(const bt_pbook_t *book,
                                const bt_pbook_entry_t *e, uint64_t now_ms)
{
    const bt_pbook_cfg_t *c = &book->cfg;

    return c->threshold > 0 && e->measured > 0 && e->measured < c->threshold &&
           !e->replan_due && bt_pbook_history_tokens(e) >= c->min_tokens &&
           (e->tried_ms == 0 || now_ms - e->tried_ms >= c->min_interval_ms);
}

static bt_status_t bt_pbook_entry_for(bt_pbook_t *book, const char *model,
                                      int role, const bt_pbook_report_t *r,
                                      bt_pbook_entry_t **e_p, char *err,
                                      size_t err_size)
{
    bt_pbook_entry_t *e = bt_pbook_lookup(book, model, role);
    bt_status_t st;

    if (e == NULL) {
        if (book->n == BT_PBOOK_MAX_ENTRIES) {
            snprintf(err, err_size, "the kvstore keeps plans for at most %d "
                     "(model, role) pairs", BT_PBOOK_MAX_ENTRIES);
            return BT_ERR_EXHAUSTED;
        }
        e = &book->entries[book->n];
        memset(e, 0, sizeof(*e));
        snprintf(e->model, sizeof(e->model), "%s", model);
        e->role = role;
        e->n_layers = r->n_layers;
        e->n_experts = r->n_experts;
    } else if (r->n_experts != e->n_experts || r->n_layers > e->n_layers) {
        snprintf(err, err_size, "%d layer(s) x %d expert(s) do not match the "
                 "%d x %d of model %s", r->n_layers, r->n_experts,
                 e->n_layers, e->n_experts, model);
        return BT_ERR_INVALID_ARG;
    }
    if (e->loads == NULL &&
        (st = bt_pbook_history_init(e, e->n_layers, e->n_experts)) != BT_OK) {
        return st;
    }
    if (e == &book->entries[book->n]) {
        book->n++;
    }
    *e_p = e;
    return BT_OK;
}

bt_status_t bt_pbook_add_report(bt_pbook_t *book, const char *model, int role,
                                const bt_pbook_report_t *r, uint64_t now_ms,
                                uint64_t *latest_p, bool *replan_p, char *err,
                                size_t err_size)
{
    bt_pbook_entry_t *e;
    bt_status_t st = bt_pbook_entry_for(book, model, role, r, &e, err, err_size);

    if (st != BT_OK) {
        return st;
    }
    bt_pbook_history_add(e, r, now_ms, book->cfg.half_life_ms);
    e->n_devices = r->n_devices;
    e->slots = r->slots;
    /* a window under an older plan says nothing of the one in force */
    if (e->plan == NULL || r->plan_version == e->version) {
        bool fits = e->plan != NULL && e->plan->n_devices == r->n_devices;

        e->measured = r->balancedness > 0
            ? r->balancedness
            : bt_pbook_balance(fits ? e->plan : NULL, r->loads, r->n_layers,
                               r->n_experts, r->n_devices);
    }
    *replan_p = bt_pbook_rule_fires(book, e, now_ms);
    if (*replan_p) {
        e->tried_ms = now_ms;
        e->replan_due = true;
    }
    *latest_p = e->version;
    return BT_OK;
}
