/* The echo service (common/rpc/echo/echo_service.h) as a process, for
 * clients we did not write. Prints "PORT <n>" once serving; SIGTERM shuts
 * it down gracefully and it exits 0.
 *   rpc_echo_server [--listen ADDR] [--max-message BYTES] [--grace-ms MS] */
#include "echo_service.h"

#include "base/log.h"
#include "base/loop.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    struct event_base *base;
    bt_rpc_server_t   *srv;
    uint64_t           grace_ms;
} bt_echo_main_t;

static void on_drained(bt_rpc_server_t *srv, void *arg)
{
    bt_echo_main_t *m = arg;

    event_base_loopexit(m->base, NULL);
}

static void on_signal(void *arg, int signo)
{
    bt_echo_main_t *m = arg;

    bt_info("signal %d: shutting down", signo);
    bt_rpc_server_shutdown(m->srv, m->grace_ms, on_drained, m);
}

int main(int argc, char **argv)
{
    const char *listen = "ipv4:127.0.0.1:0";
    bt_rpc_server_opts_t opts = { 0 };
    bt_echo_main_t m = { .grace_ms = 2000 };
    bt_loop_signals_t *sigs;
    bt_tpool_t *pool;
    bt_echo_t echo;
    int port = 0;

    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--listen") == 0) {
            listen = argv[i + 1];
        } else if (strcmp(argv[i], "--max-message") == 0) {
            opts.max_message_bytes = (uint32_t)strtoul(argv[i + 1], NULL, 10);
        } else if (strcmp(argv[i], "--grace-ms") == 0) {
            m.grace_ms = strtoull(argv[i + 1], NULL, 10);
        } else {
            fprintf(stderr, "usage: %s [--listen ADDR] [--max-message N] "
                    "[--grace-ms MS]\n", argv[0]);
            return 2;
        }
    }
    bt_log_init("rpc-echo", BT_LOG_LEVEL_INFO, BT_LOG_FORMAT_TEXT);
    m.base = bt_loop_create();
    pool = bt_tpool_create(m.base, 1, 1024);
    m.srv = bt_rpc_server_create(m.base, &opts);
    if (m.base == NULL || pool == NULL || m.srv == NULL ||
        bt_echo_register(&echo, m.srv, m.base, pool) != BT_OK ||
        bt_rpc_server_listen(m.srv, listen, NULL, &port) != BT_OK ||
        bt_rpc_server_start(m.srv) != BT_OK) {
        return 1;
    }
    bt_rpc_server_set_serving(m.srv, "baton.v1.Generate", true);
    sigs = bt_loop_signals_install(m.base, on_signal, &m);
    printf("PORT %d\n", port);
    fflush(stdout);
    event_base_dispatch(m.base);
    bt_info("stopped: %lu cancels seen by handlers", (unsigned long)echo.cancels_seen);
    bt_loop_signals_remove(sigs);
    bt_rpc_server_destroy(m.srv);
    bt_tpool_destroy(pool);
    event_base_free(m.base);
    return 0;
}
