/* The plan book: entries per (model, role), the re-plan rule and the
 * versions. A plan is published only once it is in the plans file, so a
 * version the nodes saw is never handed out again after a restart. */
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

static void bt_pbook_view_of(const bt_pbook_entry_t *e, bt_pbook_view_t *v)
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

static bt_pbook_entry_t *bt_pbook_lookup(const bt_pbook_t *book,
                                         const char *model, int role)
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

/* A plan from the history, charging the moves from the plan in force. */
static bt_status_t bt_pbook_plan(const bt_pbook_t *book,
                                 const bt_pbook_entry_t *e,
                                 bt_placement_plan_t **plan_p,
                                 bt_placement_figures_t *fig, char *err,
                                 size_t err_size)
{
    bt_placement_input_t in = {
        .n_layers = e->n_layers, .n_experts = e->n_experts, .loads = e->loads,
        .transitions = e->trans, .n_devices = e->n_devices, .slots = e->slots,
        .n_nodes = 1, .n_groups = 0, .current = e->plan,
        .epsilon = book->cfg.epsilon > 0 ? book->cfg.epsilon : -1,
        .move_price = book->cfg.move_price,
    };
    bt_status_t st = bt_placement_input_check(&in, err, err_size);

    if (st == BT_OK) {
        st = bt_placement_plan_create(&in, plan_p);
        if (st != BT_OK) {
            snprintf(err, err_size, "the planner failed: %s", bt_status_str(st));
        }
    }
    if (st == BT_OK && (st = bt_placement_plan_eval(*plan_p, &in, fig)) != BT_OK) {
        snprintf(err, err_size, "cannot evaluate the plan: %s", bt_status_str(st));
        bt_placement_plan_destroy(*plan_p);
        *plan_p = NULL;
    }
    return st;
}

/* Puts `plan` in force as the next version, once it is on disk. */
static bt_status_t bt_pbook_publish(bt_pbook_t *book, bt_pbook_entry_t *e,
                                    bt_placement_plan_t *plan,
                                    const bt_placement_figures_t *fig,
                                    uint64_t wall_ms, char *err, size_t err_size)
{
    bt_pbook_entry_t old = *e;
    bt_status_t st;

    plan->version = e->version + 1;
    e->plan = plan;
    e->version = plan->version;
    e->created_unix_ms = wall_ms;
    e->planned_balancedness = fig->balancedness_mean;
    e->moved = old.plan != NULL ? fig->moved : fig->copies;
    e->measured = 0;
    st = book->dir != NULL ? bt_pbook_store_save(book, err, err_size) : BT_OK;
    if (st != BT_OK) {
        *e = old;
        bt_placement_plan_destroy(plan);
        return st;
    }
    bt_placement_plan_destroy(old.plan);
    return BT_OK;
}

/* Whether a new plan differs from the one in force. */
static bool bt_pbook_differs(const bt_pbook_entry_t *e,
                             const bt_placement_plan_t *p,
                             const bt_placement_figures_t *fig)
{
    return e->plan == NULL || fig->moved > 0 ||
           e->plan->n_devices != p->n_devices || e->plan->slots != p->slots;
}

/* The rule: the measured balancedness is under the threshold, the history
 * holds enough tokens, and the last try is old enough; the new plan must
 * then beat the measured figure by min_gain (moves cost the nodes copies,
 * and the planner's move price already keeps what is good enough). */
static void bt_pbook_maybe_replan(bt_pbook_t *book, bt_pbook_entry_t *e,
                                  uint64_t now_ms, uint64_t wall_ms)
{
    const bt_pbook_cfg_t *c = &book->cfg;
    bt_placement_figures_t fig;
    bt_placement_plan_t *plan = NULL;
    char err[256];

    if (c->threshold <= 0 || e->measured <= 0 || e->measured >= c->threshold ||
        bt_pbook_history_tokens(e) < c->min_tokens ||
        (e->tried_ms != 0 && now_ms - e->tried_ms < c->min_interval_ms)) {
        return;
    }
    e->tried_ms = now_ms;
    if (bt_pbook_plan(book, e, &plan, &fig, err, sizeof(err)) != BT_OK) {
        return;
    }
    if (!bt_pbook_differs(e, plan, &fig) ||
        fig.balancedness_mean < e->measured + c->min_gain) {
        bt_placement_plan_destroy(plan);
        return;
    }
    (void)bt_pbook_publish(book, e, plan, &fig, wall_ms, err, sizeof(err));
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

bt_status_t bt_pbook_report(bt_pbook_t *book, const char *model, int role,
                            const bt_pbook_report_t *r, uint64_t now_ms,
                            uint64_t wall_ms, uint64_t *latest_p, char *err,
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
    bt_pbook_maybe_replan(book, e, now_ms, wall_ms);
    *latest_p = e->version;
    return BT_OK;
}

bt_status_t bt_pbook_rebalance(bt_pbook_t *book, const char *model, int role,
                               bool dry_run, uint64_t now_ms, uint64_t wall_ms,
                               bt_pbook_view_t *view_p, char *err,
                               size_t err_size)
{
    bt_pbook_entry_t *e = bt_pbook_lookup(book, model, role);
    bt_placement_figures_t fig;
    bt_placement_plan_t *plan = NULL;
    double before;
    bt_status_t st;

    if (e == NULL || e->loads == NULL || bt_pbook_history_tokens(e) <= 0) {
        snprintf(err, err_size, "no expert statistics for model %s role %d "
                 "since the kvstore started", model, role);
        return BT_ERR_NOT_FOUND;
    }
    st = bt_pbook_plan(book, e, &plan, &fig, err, err_size);
    if (st != BT_OK) {
        return st;
    }
    e->tried_ms = now_ms;
    before = e->measured;
    if (dry_run) {
        bt_pbook_view_of(e, view_p);
        view_p->version = e->version + (bt_pbook_differs(e, plan, &fig) ? 1 : 0);
        view_p->planned_balancedness = fig.balancedness_mean;
        view_p->moved = e->plan != NULL ? fig.moved : fig.copies;
        view_p->n_devices = plan->n_devices;
        view_p->plan = plan;
        view_p->owned = true;
        return BT_OK;
    }
    if (!bt_pbook_differs(e, plan, &fig)) {
        bt_placement_plan_destroy(plan);
    } else if ((st = bt_pbook_publish(book, e, plan, &fig, wall_ms, err,
                                      err_size)) != BT_OK) {
        return st;
    }
    bt_pbook_view_of(e, view_p);
    view_p->balancedness = before;   /* what the nodes measured before */
    return BT_OK;
}
