/* Monotonic time and deadlines. Everything that measures or times out uses
 * CLOCK_MONOTONIC; wall time is only for logs and wire timestamps. */
#ifndef BT_CLOCK_H
#define BT_CLOCK_H

#include <stdbool.h>
#include <stdint.h>

uint64_t bt_now_ns(void);   /* monotonic */
uint64_t bt_now_us(void);
uint64_t bt_now_ms(void);
uint64_t bt_wall_ms(void);  /* Unix epoch, milliseconds */

/* A deadline is an absolute monotonic time in ns; 0 means none. */
typedef uint64_t bt_deadline_t;

#define BT_DEADLINE_NONE ((bt_deadline_t)0)

bt_deadline_t bt_deadline_in_ms(uint64_t ms);
bool bt_deadline_passed(bt_deadline_t deadline);
/* Milliseconds left, 0 when passed, UINT64_MAX when none. */
uint64_t bt_deadline_left_ms(bt_deadline_t deadline);

/* Seconds as a double between two bt_now_ns() readings. */
static inline double bt_elapsed_s(uint64_t start_ns, uint64_t end_ns)
{
    return (double)(end_ns - start_ns) / 1e9;
}

void bt_sleep_ms(uint64_t ms);

#endif
