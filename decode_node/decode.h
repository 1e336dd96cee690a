/* The decode role of a serving node (docs/internals/node.md "Decode"):
 * DecodeStream and RenewLease (reservations and leases, decode_lease.c),
 * the continuous batch (decode_batch.c), the token stream
 * (decode_stream.c), each request's lifecycle (decode_req.c). The node
 * core (common/node) runs it through this ops table. */
#ifndef BT_DECODE_H
#define BT_DECODE_H

#include "node_role.h"

extern const bt_node_role_ops_t bt_decode_role_ops;

#endif
