/* Helpers shared by the rpc unit tests: a loop, an echo server on an
 * ephemeral loopback port and a client channel to it. */
#ifndef BT_TEST_RPC_TEST_H
#define BT_TEST_RPC_TEST_H

#include "echo_service.h"
#include "rpc/client.h"

#include <stdbool.h>

typedef struct {
    struct event_base *base;
    bt_tpool_t        *pool;
    bt_rpc_server_t   *srv;
    bt_echo_t          echo;
    int                port;
    char               target[64];
    bt_rpc_client_t   *cli;
    bt_rpc_channel_t  *ch;
} bt_rpc_fixture_t;

/* max_message 0 = default; tls NULL = insecure (client and server). */
void bt_rpc_fixture_up(bt_rpc_fixture_t *fx, uint32_t max_message,
                       const bt_rpc_tls_t *server_tls,
                       const bt_rpc_tls_t *client_tls);
void bt_rpc_fixture_down(bt_rpc_fixture_t *fx);

/* Runs the loop until *flag or `timeout_ms` (scaled by
 * BATON_TEST_TIME_SCALE, tests/test_time.h: a wait); returns *flag. */
bool bt_rpc_run_until(struct event_base *base, const bool *flag,
                      uint64_t timeout_ms);
/* Runs until *counter >= target or timeout (scaled as above). */
bool bt_rpc_run_until_count(struct event_base *base, const int *counter,
                            int target, uint64_t timeout_ms);

/* A unary call's outcome, filled by bt_rpc_test_unary_done. */
typedef struct {
    bool          done;
    bt_rpc_code_t code;
    bt_status_t   status;
    char          message[256];
    uint32_t      ids[64];
    size_t        n_ids;
    uint32_t      max_context;
} bt_rpc_unary_out_t;

void bt_rpc_test_unary_done(void *arg, const bt_rpc_result_t *res,
                            const ProtobufCMessage *resp);

/* Tokenize `prompt` on fx->ch and wait (up to 10 s). */
void bt_rpc_test_tokenize(bt_rpc_fixture_t *fx, const char *prompt,
                          uint64_t timeout_ms, const bt_rpc_md_t *md,
                          size_t n_md, bt_rpc_unary_out_t *out);

#endif
