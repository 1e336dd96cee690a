/* Process and build-info metrics (process_* from /proc, baton_build_info),
 * registered by bt_metrics_create() (defined here) in every daemon's
 * registry and read again at each render. */
#ifndef BT_PROCESS_METRICS_H
#define BT_PROCESS_METRICS_H

#include "metrics.h"

typedef struct bt_process_metrics bt_process_metrics_t;

/* NULL when a series cannot be registered. */
bt_process_metrics_t *bt_process_metrics_register(bt_metrics_t *reg);
void bt_process_metrics_update(bt_process_metrics_t *p);
void bt_process_metrics_free(bt_process_metrics_t *p);

#endif
