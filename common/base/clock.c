#include "clock.h"

#include <errno.h>
#include <time.h>

static uint64_t bt_clock_ns(clockid_t id)
{
    struct timespec ts;

    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t bt_now_ns(void)
{
    return bt_clock_ns(CLOCK_MONOTONIC);
}

uint64_t bt_now_us(void)
{
    return bt_now_ns() / 1000u;
}

uint64_t bt_now_ms(void)
{
    return bt_now_ns() / 1000000u;
}

uint64_t bt_wall_ms(void)
{
    return bt_clock_ns(CLOCK_REALTIME) / 1000000u;
}

bt_deadline_t bt_deadline_in_ms(uint64_t ms)
{
    return bt_now_ns() + ms * 1000000u;
}

bool bt_deadline_passed(bt_deadline_t deadline)
{
    return deadline != BT_DEADLINE_NONE && bt_now_ns() >= deadline;
}

uint64_t bt_deadline_left_ms(bt_deadline_t deadline)
{
    uint64_t now;

    if (deadline == BT_DEADLINE_NONE) {
        return UINT64_MAX;
    }
    now = bt_now_ns();
    return now >= deadline ? 0 : (deadline - now) / 1000000u;
}

void bt_sleep_ms(uint64_t ms)
{
    struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000L };

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}
