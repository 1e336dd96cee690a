/* The kvstore's planner thread (plan_lane.c): re-plans of the plan book
 * off the loop thread, one at a time, in the order asked. Every function
 * runs on the loop thread that owns `base`. */
#ifndef BT_KVSD_PLAN_LANE_H
#define BT_KVSD_PLAN_LANE_H

#include "plan_book.h"

#include "base/tpool.h"

#include <event2/event.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct bt_kvsd_lane bt_kvsd_lane_t;

/* The outcome of one request, on the loop thread: `st` and, when BT_OK,
 * the view after it (borrowed for the call: copy what is needed), else
 * `view` NULL or empty and `err` the reason. */
typedef void (*bt_kvsd_lane_done_cb)(void *arg, bt_status_t st,
                                     const bt_pbook_view_t *view,
                                     const char *err);

/* delay_ms: the planner thread waits this long after each plan (a test
 * knob standing in for a large model); 0 in production. */
bt_kvsd_lane_t *bt_kvsd_lane_create(struct event_base *base, bt_pbook_t *book,
                                    uint64_t delay_ms);
/* Queues a re-plan of (model, role); `cb` (may be NULL) runs exactly once,
 * later or from inside this call when the request cannot begin.
 * BT_ERR_SHUTDOWN once stopping (cb not called). */
bt_status_t bt_kvsd_lane_push(bt_kvsd_lane_t *ln, bt_pbook_job_kind_t kind,
                              const char *model, int role,
                              bt_kvsd_lane_done_cb cb, void *arg);
bool bt_kvsd_lane_idle(const bt_kvsd_lane_t *ln);
/* Waits for the running plan (it is finished and published), answers the
 * queued requests BT_ERR_SHUTDOWN, frees. NULL-safe. */
void bt_kvsd_lane_destroy(bt_kvsd_lane_t *ln);

#endif
