/* Test hooks: numbers named by environment variables that integration
 * tests set (never set in production): delays that widen a race they
 * check, and a kernel revision (node_main.c) that makes a node report
 * another numerics id. */
#include "node.h"

#include <stdlib.h>
#include <time.h>

long bt_node_test_env_ms(const char *env)
{
    const char *v = getenv(env);
    long ms = v != NULL ? atol(v) : 0;

    return ms > 0 ? ms : 0;
}

void bt_node_test_sleep_ms(long ms)
{
    if (ms > 0) {
        struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

        nanosleep(&ts, NULL);
    }
}

void bt_node_test_pause(const char *env, long *ms_p)
{
    if (*ms_p < 0) {
        *ms_p = bt_node_test_env_ms(env);
    }
    bt_node_test_sleep_ms(*ms_p);
}
