/* The checks of an ExpertStatsReport from the network and its conversion
 * into the plan book's report (plans/plan_book.h); apart from the RPC
 * handlers so that unit tests run them on hand-built messages. */
#ifndef BT_KVSD_EXPERT_CHECK_H
#define BT_KVSD_EXPERT_CHECK_H

#include "plan_book.h"

#include "base/status.h"
#include "kvstore.pb-c.h"

#include <stddef.h>

/* What a checked report owns (bt_kvsd_expert_report_free). */
typedef struct {
    bt_pbook_report_t r;
    double           *loads;
    bt_pbook_trans_t *trans;
} bt_kvsd_expert_report_t;

/* A model name of 1..BT_PBOOK_MODEL_MAX bytes and a serving role
 * (PREFILL, DECODE or BOTH). */
bt_status_t bt_kvsd_check_model_role(const char *model, int role,
                                     bool role_needed, char *err,
                                     size_t err_size);

/* Every bound: layers 1..BT_PLACEMENT_MAX_LAYERS, each named once, one
 * expert count 1..BT_PLACEMENT_MAX_EXPERTS for all, layers x experts <=
 * BT_PBOOK_MAX_CELLS, counts <= BT_PBOOK_MAX_COUNT, transitions within the
 * experts and to an existing next layer, devices 1..BT_PLACEMENT_MAX_DEVICES
 * with room for every expert, balancedness in [0, 1]. BT_ERR_INVALID_ARG
 * with the precise reason; BT_ERR_NO_MEMORY. */
bt_status_t bt_kvsd_expert_report(const Baton__V1__ExpertStatsReport *in,
                                  bt_kvsd_expert_report_t *out, char *err,
                                  size_t err_size);
void bt_kvsd_expert_report_free(bt_kvsd_expert_report_t *out);

#endif
