/* The time scale of test harness bounds for the C test clients and cmocka
 * tests: BATON_TEST_TIME_SCALE (a number > 0, default 1) multiplies how
 * long a test waits (a call's deadline, a wait for a child's line), never
 * a bound that a check asserts about the code under test. `make asan` and
 * `make tsan` set it for their slower builds; tests/integration/
 * node_cluster.py's scaled() reads the same variable for the scripts. */
#ifndef BT_TEST_TIME_H
#define BT_TEST_TIME_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* The scale, 1 when unset; anything that is not a finite number > 0 ends
 * the test (exit 2): a typo must not pass as 1. */
static inline double bt_test_time_scale(void)
{
    const char *text = getenv("BATON_TEST_TIME_SCALE");
    char *end;
    double v;

    if (text == NULL || *text == '\0') {
        return 1.0;
    }
    v = strtod(text, &end);
    if (*end != '\0' || !isfinite(v) || v <= 0) {
        fprintf(stderr, "BATON_TEST_TIME_SCALE=%s: want a number > 0\n",
                text);
        exit(2);
    }
    return v;
}

/* A harness wait of `ms` milliseconds at the scale. */
static inline uint64_t bt_test_scaled_ms(uint64_t ms)
{
    return (uint64_t)((double)ms * bt_test_time_scale());
}

#endif
