/* A test service on common/rpc that implements real baton.v1 methods with
 * echo-like behaviour; used by the unit tests, the interop server and the
 * benchmark.
 *
 * /baton.v1.Generate/Tokenize (unary), by prompt:
 *   "fail:N"    fails with gRPC code N
 *   "sleep:MS"  replies after MS milliseconds (a loop timer)
 *   "never"     never replies; ends when cancelled
 *   "pool"      replies from a thread-pool task's done callback
 *   "deadline"  max_context = milliseconds left before the client's deadline
 *               (UINT32_MAX when none)
 *   "stats"     token_ids = {calls_started, calls_cancelled, decode_errors,
 *               unimplemented, cancels_seen_by_handlers}
 *   otherwise   token_ids = the prompt's bytes; max_context = length of the
 *               `authorization` metadata value
 * /baton.v1.Generate/Generate (server streaming): sampling.max_tokens
 *   messages with token_ids {i} and text "t<i>", then a final message
 *   (usage.completion_tokens = n). prompt "forever": streams until
 *   cancelled. max_tokens is capped at 1,000,000.
 * /baton.v1.Generate/ListModels: one model, "echo".
 * /baton.v1.Registry/Register (bidi): hello -> ack{command_id = len(node_id)},
 *   status -> ack{command_id = running_sequences}; client close -> finish. */
#ifndef BT_TEST_ECHO_SERVICE_H
#define BT_TEST_ECHO_SERVICE_H

#include "base/tpool.h"
#include "rpc/server.h"

typedef struct {
    struct event_base *base;
    bt_rpc_server_t   *srv;
    bt_tpool_t        *pool;            /* may be NULL: "pool" replies at once */
    uint64_t           cancels_seen;    /* cancel callbacks that ran */
    uint64_t           streams_done;
    uint32_t           live;            /* handler-held calls */
} bt_echo_t;

bt_status_t bt_echo_register(bt_echo_t *echo, bt_rpc_server_t *srv,
                             struct event_base *base, bt_tpool_t *pool);

#endif
