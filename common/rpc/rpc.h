/* The control plane's gRPC layer: gRPC C core + protobuf-c behind a small
 * callback API driven by the process's libevent loop (DESIGN §8).
 *
 * Threading: every function here is called on the loop thread that owns
 * the server or client, and every callback runs on it. One thread per
 * completion queue blocks in grpc_completion_queue_next() and hands the
 * completed tags to the loop through a locked queue + eventfd; all
 * grpc_call_start_batch() calls happen on the loop thread, and nothing in
 * this layer blocks the loop (docs/internals/rpc.md).
 *
 * This header: what server and client share (codes, metadata, TLS). See
 * rpc/server.h and rpc/client.h. */
#ifndef BT_RPC_H
#define BT_RPC_H

#include "base/status.h"

#include <protobuf-c/protobuf-c.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* gRPC status codes, same values as grpc_status_code (the wire values), so
 * users need not include grpc.h. */
typedef enum {
    BT_RPC_OK                  = 0,
    BT_RPC_CANCELLED           = 1,
    BT_RPC_UNKNOWN             = 2,
    BT_RPC_INVALID_ARGUMENT    = 3,
    BT_RPC_DEADLINE_EXCEEDED   = 4,
    BT_RPC_NOT_FOUND           = 5,
    BT_RPC_ALREADY_EXISTS      = 6,
    BT_RPC_PERMISSION_DENIED   = 7,
    BT_RPC_RESOURCE_EXHAUSTED  = 8,
    BT_RPC_FAILED_PRECONDITION = 9,
    BT_RPC_ABORTED             = 10,
    BT_RPC_OUT_OF_RANGE        = 11,
    BT_RPC_UNIMPLEMENTED       = 12,
    BT_RPC_INTERNAL            = 13,
    BT_RPC_UNAVAILABLE         = 14,
    BT_RPC_DATA_LOSS           = 15,
    BT_RPC_UNAUTHENTICATED     = 16,
} bt_rpc_code_t;

/* The one table between bt_status_t and gRPC codes (status.c). Codes
 * outside the table map to BT_RPC_UNKNOWN / BT_ERR_PEER_REJECTED. */
bt_rpc_code_t bt_rpc_code_from_status(bt_status_t status);
bt_status_t bt_rpc_status_from_code(bt_rpc_code_t code);
/* "DEADLINE_EXCEEDED"; "UNKNOWN_CODE" outside the enum. */
const char *bt_rpc_code_name(bt_rpc_code_t code);

/* The outcome of a call as the client sees it. `message` is borrowed for
 * the callback's duration. */
typedef struct {
    bt_rpc_code_t code;
    bt_status_t   status;       /* bt_rpc_status_from_code(code) */
    const char   *message;      /* never NULL, may be "" */
} bt_rpc_result_t;

/* One metadata entry: lowercase ASCII key, printable value (keys ending in
 * "-bin" carry binary values, not supported here). */
typedef struct {
    const char *key;
    const char *value;
} bt_rpc_md_t;

/* PEM files for TLS. Server: cert + key required; with `ca_file` set the
 * server requires and verifies client certificates (mTLS). Client:
 * `ca_file` verifies the server (NULL = the system roots); cert + key,
 * when set, present a client certificate. `target_name` (client only)
 * overrides the name checked against the server's certificate. */
typedef struct {
    const char *cert_file;
    const char *key_file;
    const char *ca_file;
    const char *target_name;
} bt_rpc_tls_t;

/* Limits. */
#define BT_RPC_DEFAULT_MAX_MESSAGE  (4u * 1024u * 1024u) /* gRPC's default */
#define BT_RPC_MAX_MESSAGE_LIMIT    (1024u * 1024u * 1024u)
#define BT_RPC_DEFAULT_SEND_QUEUE   64u  /* messages queued per stream */
#define BT_RPC_MAX_METADATA_VALUE   8192u

#endif
