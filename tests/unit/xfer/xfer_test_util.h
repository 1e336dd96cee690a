/* Helpers shared by the xfer unit tests: run a loop until a flag is set,
 * bounded in time, waking every few ms so no wait can hang. */
#ifndef XFER_TEST_UTIL_H
#define XFER_TEST_UTIL_H

#include "base/clock.h"

#include <event2/event.h>
#include <stdbool.h>

static void xt_tick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

/* Runs `base` until *flag is true or `ms` passed; returns *flag. */
static inline bool xt_run_until(struct event_base *base, const bool *flag,
                                uint64_t ms)
{
    struct timeval tv = {0, 5000};
    struct event *tick = event_new(base, -1, EV_PERSIST, xt_tick_cb, NULL);
    bt_deadline_t end = bt_deadline_in_ms(ms);

    event_add(tick, &tv);
    while (!*flag && !bt_deadline_passed(end)) {
        event_base_loop(base, EVLOOP_ONCE);
    }
    event_free(tick);
    return *flag;
}

#endif
