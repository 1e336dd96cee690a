/* Internals of the plan book: one entry per (model, role), shared by the
 * book (plan_book.c), its history (plan_history.c) and its file
 * (plan_store.c). */
#ifndef BT_PLAN_BOOK_INT_H
#define BT_PLAN_BOOK_INT_H

#include "plan_book.h"

typedef struct {
    char     model[BT_PBOOK_MODEL_MAX + 1];
    int      role;
    int32_t  n_layers, n_experts;   /* fixed by the first report or the file */
    int32_t  n_devices, slots;      /* the latest report's */
    /* decayed history; NULL until the first report (not persisted) */
    double  *loads;                 /* [n_layers][n_experts] */
    double  *trans;                 /* [n_layers-1][E][E]; NULL: too large */
    uint64_t decayed_ms;            /* when the history was last decayed */
    /* the plan in force */
    bt_placement_plan_t *plan;
    uint64_t version;
    uint64_t created_unix_ms;
    double   planned_balancedness;
    int64_t  moved;
    double   measured;              /* 0: no report under this version yet */
    uint64_t tried_ms;              /* last automatic attempt; 0: none */
    bool     replan_due;            /* the rule fired; its job not finished */
    bool     planning;              /* a job begun and not finished */
} bt_pbook_entry_t;

struct bt_pbook {
    bt_pbook_cfg_t   cfg;
    char            *dir;
    bt_pbook_entry_t entries[BT_PBOOK_MAX_ENTRIES];
    size_t           n;
};

/* plan_history.c */
bt_status_t bt_pbook_history_init(bt_pbook_entry_t *e, int32_t n_layers,
                                  int32_t n_experts);
void bt_pbook_history_add(bt_pbook_entry_t *e, const bt_pbook_report_t *r,
                          uint64_t now_ms, double half_life_ms);
/* Tokens per layer in the history (the mean over layers with load). */
double bt_pbook_history_tokens(const bt_pbook_entry_t *e);
void bt_pbook_entry_clear(bt_pbook_entry_t *e);

/* plan_book.c: the entry of (model, role), NULL when none. */
bt_pbook_entry_t *bt_pbook_lookup(const bt_pbook_t *book, const char *model,
                                  int role);
void bt_pbook_view_of(const bt_pbook_entry_t *e, bt_pbook_view_t *v);

/* plan_store.c: the file <dir>/plans.json, every entry's plan in force
 * (written to a temporary file, synced, renamed over it). */
bt_status_t bt_pbook_store_save(const bt_pbook_t *book, char *err,
                                size_t err_size);
bt_status_t bt_pbook_store_load(bt_pbook_t *book, char *err, size_t err_size);

#endif
