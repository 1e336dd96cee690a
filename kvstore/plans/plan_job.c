/* Re-plans of the plan book as jobs: begun on the book's thread (a
 * snapshot of the history), run anywhere (the planner, pure), finished
 * on the book's thread (publish, versions). A plan is published only once
 * it is in the plans file, so a version the nodes saw is never handed out
 * again after a restart. */
#include "plan_book_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct bt_pbook_job {
    bt_pbook_job_kind_t    kind;
    char                   model[BT_PBOOK_MODEL_MAX + 1];
    int                    role;
    bt_placement_input_t   in;     /* loads, trans: the snapshots below */
    double                *loads;  /* [L][E] */
    double                *trans;  /* [L-1][E][E] or NULL */
    bt_placement_plan_t   *plan;   /* the result, until finished */
    bt_placement_figures_t fig;
    bt_status_t            status;
    char                   err[256];
};

static void bt_pbook_job_free(bt_pbook_job_t *job)
{
    bt_placement_plan_destroy(job->plan);
    free(job->loads);
    free(job->trans);
    free(job);
}

bt_status_t bt_pbook_job_begin(bt_pbook_t *book, const char *model, int role,
                               bt_pbook_job_kind_t kind, uint64_t now_ms,
                               bt_pbook_job_t **job_p, char *err,
                               size_t err_size)
{
    bt_pbook_entry_t *e = bt_pbook_lookup(book, model, role);
    size_t cells, tcells;
    bt_pbook_job_t *job;

    if (e != NULL && kind == BT_PBOOK_JOB_AUTO) {
        e->replan_due = false;   /* on again below while it runs */
    }
    if (e == NULL || e->loads == NULL || bt_pbook_history_tokens(e) <= 0) {
        snprintf(err, err_size, "no expert statistics for model %s role %d "
                 "since the kvstore started", model, role);
        return BT_ERR_NOT_FOUND;
    }
    if (e->planning) {
        snprintf(err, err_size, "a re-plan of model %s role %d is running",
                 model, role);
        return BT_ERR_EXISTS;
    }
    cells = (size_t)e->n_layers * (size_t)e->n_experts;
    tcells = (size_t)(e->n_layers - 1) * (size_t)e->n_experts *
             (size_t)e->n_experts;
    job = calloc(1, sizeof(*job));
    if (job == NULL || (job->loads = malloc(cells * sizeof(double))) == NULL ||
        (e->trans != NULL &&
         (job->trans = malloc(tcells * sizeof(double))) == NULL)) {
        if (job != NULL) {
            bt_pbook_job_free(job);
        }
        snprintf(err, err_size, "out of memory for a re-plan of model %s",
                 model);
        return BT_ERR_NO_MEMORY;
    }
    memcpy(job->loads, e->loads, cells * sizeof(double));
    if (e->trans != NULL) {
        memcpy(job->trans, e->trans, tcells * sizeof(double));
    }
    job->kind = kind;
    snprintf(job->model, sizeof(job->model), "%s", model);
    job->role = role;
    job->in = (bt_placement_input_t){
        .n_layers = e->n_layers, .n_experts = e->n_experts,
        .loads = job->loads, .transitions = job->trans,
        .n_devices = e->n_devices, .slots = e->slots, .n_nodes = 1,
        .n_groups = 0, .current = e->plan,
        .epsilon = book->cfg.epsilon > 0 ? book->cfg.epsilon : -1,
        .move_price = book->cfg.move_price,
    };
    e->planning = true;
    if (kind == BT_PBOOK_JOB_AUTO) {
        e->replan_due = true;
    } else {
        e->tried_ms = now_ms;
    }
    *job_p = job;
    return BT_OK;
}

void bt_pbook_job_run(bt_pbook_job_t *job)
{
    bt_status_t st = bt_placement_input_check(&job->in, job->err,
                                              sizeof(job->err));

    if (st == BT_OK && (st = bt_placement_plan_create(&job->in, &job->plan)) != BT_OK) {
        snprintf(job->err, sizeof(job->err), "the planner failed: %s",
                 bt_status_str(st));
    }
    if (st == BT_OK &&
        (st = bt_placement_plan_eval(job->plan, &job->in, &job->fig)) != BT_OK) {
        snprintf(job->err, sizeof(job->err), "cannot evaluate the plan: %s",
                 bt_status_str(st));
    }
    job->status = st;
}

const char *bt_pbook_job_model(const bt_pbook_job_t *job)
{
    return job->model;
}

int bt_pbook_job_role(const bt_pbook_job_t *job)
{
    return job->role;
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

bt_status_t bt_pbook_job_finish(bt_pbook_t *book, bt_pbook_job_t *job,
                                bool ran, uint64_t wall_ms,
                                bt_pbook_view_t *view_p, char *err,
                                size_t err_size)
{
    bt_pbook_entry_t *e = bt_pbook_lookup(book, job->model, job->role);
    bt_placement_plan_t *plan = job->plan;
    double before = e->measured;
    bt_status_t st = ran ? job->status : BT_ERR_SHUTDOWN;

    e->planning = false;
    if (job->kind == BT_PBOOK_JOB_AUTO) {
        e->replan_due = false;
    }
    if (st != BT_OK) {
        snprintf(err, err_size, "%s", ran ? job->err : "the kvstore is stopping");
        bt_pbook_job_free(job);
        return st;
    }
    job->plan = NULL;
    if (job->kind == BT_PBOOK_JOB_DRY_RUN) {
        bt_pbook_view_of(e, view_p);
        view_p->version = e->version + (bt_pbook_differs(e, plan, &job->fig) ? 1 : 0);
        view_p->planned_balancedness = job->fig.balancedness_mean;
        view_p->moved = e->plan != NULL ? job->fig.moved : job->fig.copies;
        view_p->n_devices = plan->n_devices;
        view_p->plan = plan;
        view_p->owned = true;
        bt_pbook_job_free(job);
        return BT_OK;
    }
    /* an automatic plan must beat what the nodes measure now */
    if (!bt_pbook_differs(e, plan, &job->fig) ||
        (job->kind == BT_PBOOK_JOB_AUTO &&
         job->fig.balancedness_mean < e->measured + book->cfg.min_gain)) {
        bt_placement_plan_destroy(plan);
    } else if ((st = bt_pbook_publish(book, e, plan, &job->fig, wall_ms, err,
                                      err_size)) != BT_OK) {
        bt_pbook_job_free(job);
        return st;
    }
    bt_pbook_job_free(job);
    if (view_p != NULL) {
        bt_pbook_view_of(e, view_p);
        view_p->balancedness = before;   /* what the nodes measured before */
    }
    return BT_OK;
}

bt_status_t bt_pbook_report(bt_pbook_t *book, const char *model, int role,
                            const bt_pbook_report_t *r, uint64_t now_ms,
                            uint64_t wall_ms, uint64_t *latest_p, char *err,
                            size_t err_size)
{
    bt_pbook_job_t *job;
    bool replan = false;
    bt_status_t st = bt_pbook_add_report(book, model, role, r, now_ms, latest_p,
                                         &replan, err, err_size);
    char ignored[256];

    if (st != BT_OK || !replan) {
        return st;
    }
    /* a re-plan that fails leaves the plan in force: not the report's fault */
    if (bt_pbook_job_begin(book, model, role, BT_PBOOK_JOB_AUTO, now_ms, &job,
                           ignored, sizeof(ignored)) == BT_OK) {
        bt_pbook_job_run(job);
        (void)bt_pbook_job_finish(book, job, true, wall_ms, NULL, ignored,
                                  sizeof(ignored));
    }
    *latest_p = bt_pbook_lookup(book, model, role)->version;
    return BT_OK;
}

bt_status_t bt_pbook_rebalance(bt_pbook_t *book, const char *model, int role,
                               bool dry_run, uint64_t now_ms, uint64_t wall_ms,
                               bt_pbook_view_t *view_p, char *err,
                               size_t err_size)
{
    bt_pbook_job_t *job;
    bt_status_t st = bt_pbook_job_begin(book, model, role,
                                        dry_run ? BT_PBOOK_JOB_DRY_RUN :
                                                  BT_PBOOK_JOB_REBALANCE,
                                        now_ms, &job, err, err_size);

    if (st != BT_OK) {
        return st;
    }
    bt_pbook_job_run(job);
    return bt_pbook_job_finish(book, job, true, wall_ms, view_p, err, err_size);
}
