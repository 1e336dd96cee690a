/* The kvstore's placement plans (DESIGN §6, docs/internals/placement.md):
 * per (model, role) a decayed history of the nodes' expert statistics,
 * the plan in force with its version, and the rule that decides when to
 * re-plan. Pure bookkeeping on the caller's thread (a re-plan may run on
 * another, see bt_pbook_job_t): no gRPC; the only I/O is the plans file
 * (plan_store.c), written atomically before a new version is published,
 * read back on start. */
#ifndef BT_PLAN_BOOK_H
#define BT_PLAN_BOOK_H

#include "placement.h"

#include "base/status.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Bounds on what one (model, role) may hold: a report over them is
 * refused, so a hostile node cannot make the store allocate much. */
#define BT_PBOOK_MAX_ENTRIES     32          /* (model, role) pairs */
#define BT_PBOOK_MAX_CELLS       (1 << 20)   /* layers x experts */
#define BT_PBOOK_MAX_TRANS_CELLS (1 << 22)   /* (layers-1) x experts^2 kept */
#define BT_PBOOK_MAX_TRANS       65536       /* transition entries per report */
#define BT_PBOOK_MAX_COUNT       1e15        /* one count in a report */
#define BT_PBOOK_MODEL_MAX       128

typedef struct {
    double      half_life_ms;    /* the history halves every this long (> 0) */
    double      threshold;       /* re-plan when the measured balancedness
                                  * is under it; 0: only on Rebalance */
    uint64_t    min_interval_ms; /* between two automatic re-plans */
    double      min_gain;        /* an automatic plan is published only when
                                  * it beats the measured balancedness by this */
    double      min_tokens;      /* history tokens per layer before planning */
    double      move_price;      /* the planner's move cost; <= 0: its default */
    double      epsilon;         /* the planner's max-load slack for
                                  * transitions and moves; <= 0: its default */
    const char *dir;             /* the plans file's folder; NULL: memory only */
} bt_pbook_cfg_t;

/* One transition of a report: `count` tokens on expert `from` at `layer`
 * and `to` at layer + 1. */
typedef struct {
    int32_t layer, from, to;
    double  count;
} bt_pbook_trans_t;

/* One window of one node, already checked (plan_report.c). */
typedef struct {
    int32_t                 n_layers;     /* rows of loads */
    int32_t                 n_experts;
    int32_t                 n_devices;
    int32_t                 slots;
    const double           *loads;        /* [n_layers][n_experts] */
    const bt_pbook_trans_t *trans;
    size_t                  n_trans;
    double                  balancedness; /* the node's; 0: not measured */
    uint64_t                plan_version; /* the plan it ran under */
} bt_pbook_report_t;

/* What the book holds for one (model, role). `plan` is borrowed from the
 * book (valid until its next change) unless `owned` (a dry run's). */
typedef struct {
    const char          *model;
    int                  role;            /* baton.v1.NodeRole 1..3 */
    uint64_t             version;         /* 0: no plan yet */
    uint64_t             created_unix_ms;
    int32_t              n_layers, n_experts, n_devices, slots;
    double               balancedness;    /* measured; 0: no report under it */
    double               planned_balancedness;
    int64_t              moved;
    bool                 has_history;
    const bt_placement_plan_t *plan;      /* NULL: no plan yet */
    bool                 owned;
} bt_pbook_view_t;

typedef struct bt_pbook bt_pbook_t;

/* Reads the plans file of cfg->dir when there is one. A file that cannot
 * be read back is an error (the versions the nodes know would restart). */
bt_status_t bt_pbook_create(const bt_pbook_cfg_t *cfg, bt_pbook_t **book_p,
                            char *err, size_t err_size);
void bt_pbook_destroy(bt_pbook_t *book);

/* Adds a report at monotonic `now_ms`. *latest_p: the version in force.
 * *replan_p: the re-plan rule fired (the attempt is counted; the rule
 * does not fire again for (model, role) until an AUTO job of it is
 * finished). BT_ERR_INVALID_ARG when its shape contradicts the history
 * of (model, role), BT_ERR_EXHAUSTED when the book is full; nothing
 * changes then. */
bt_status_t bt_pbook_add_report(bt_pbook_t *book, const char *model, int role,
                                const bt_pbook_report_t *r, uint64_t now_ms,
                                uint64_t *latest_p, bool *replan_p, char *err,
                                size_t err_size);

/* Planning off the book's thread (plan_job.c). A job snapshots the
 * history; the plan in force is borrowed, which is safe because only
 * finishing a job of that (model, role) replaces it and at most one job
 * per (model, role) is begun and not finished. begin and finish run on
 * the book's thread, run on any thread (it touches only the job). */
typedef enum {
    BT_PBOOK_JOB_AUTO,      /* the rule: published when it gains min_gain */
    BT_PBOOK_JOB_REBALANCE, /* published when it differs */
    BT_PBOOK_JOB_DRY_RUN,   /* never published */
} bt_pbook_job_kind_t;

typedef struct bt_pbook_job bt_pbook_job_t;

/* BT_ERR_NOT_FOUND without statistics, BT_ERR_EXISTS when a job of
 * (model, role) is not finished; an AUTO job that cannot begin lets the
 * rule fire again. */
bt_status_t bt_pbook_job_begin(bt_pbook_t *book, const char *model, int role,
                               bt_pbook_job_kind_t kind, uint64_t now_ms,
                               bt_pbook_job_t **job_p, char *err,
                               size_t err_size);
void bt_pbook_job_run(bt_pbook_job_t *job);
/* Publishes as the kind says (a new version, persisted first) and frees
 * the job. *view_p (may be NULL for AUTO): the plan in force afterwards,
 * with `balancedness` the one measured before; a dry run's view owns its
 * plan (bt_pbook_view_release). The job's error (planner, plans file)
 * comes back with its message; a job that never ran (`ran` false: the
 * pool refused it) fails with BT_ERR_SHUTDOWN. */
bt_status_t bt_pbook_job_finish(bt_pbook_t *book, bt_pbook_job_t *job,
                                bool ran, uint64_t wall_ms,
                                bt_pbook_view_t *view_p, char *err,
                                size_t err_size);
const char *bt_pbook_job_model(const bt_pbook_job_t *job);
int bt_pbook_job_role(const bt_pbook_job_t *job);

/* bt_pbook_add_report, then the re-plan it asks for, on this thread
 * (tests and tools; the daemon runs the job on its planner thread). */
bt_status_t bt_pbook_report(bt_pbook_t *book, const char *model, int role,
                            const bt_pbook_report_t *r, uint64_t now_ms,
                            uint64_t wall_ms, uint64_t *latest_p, char *err,
                            size_t err_size);

/* A REBALANCE (or DRY_RUN) job of (model, role) on this thread: plans
 * from its history, charging the moves from the plan in force;
 * publishes when the plan differs, else *view_p is the plan in force.
 * BT_ERR_NOT_FOUND without statistics. */
bt_status_t bt_pbook_rebalance(bt_pbook_t *book, const char *model, int role,
                               bool dry_run, uint64_t now_ms, uint64_t wall_ms,
                               bt_pbook_view_t *view_p, char *err,
                               size_t err_size);
void bt_pbook_view_release(bt_pbook_view_t *view);

/* The i-th (model, role), in the order first seen; false past the end. */
bool bt_pbook_at(const bt_pbook_t *book, size_t i, bt_pbook_view_t *view_p);
bool bt_pbook_find(const bt_pbook_t *book, const char *model, int role,
                   bt_pbook_view_t *view_p);

/* plan_measure.c: mean over layers with load of mean/max device load, an
 * expert's load split evenly over its copies; `plan` NULL: the placement
 * a node uses without a plan (bt_ep_default_device: e mod devices). */
double bt_pbook_balance(const bt_placement_plan_t *plan, const double *loads,
                        int32_t n_layers, int32_t n_experts, int32_t n_devices);

#endif
