/* The prefill role of a serving node (docs/internals/node.md "Prefill"):
 * Prefill calls (validation, the prefix from the own pool and the
 * kvstore, prefill_rpc.c), the job's lifecycle and its fence
 * (prefill_job.c), chunked compute and the per-layer KV transfer
 * (prefill_step.c). The node core (common/node) runs it through this ops
 * table. */
#ifndef BT_PREFILL_H
#define BT_PREFILL_H

#include "node_role.h"

extern const bt_node_role_ops_t bt_prefill_role_ops;

#endif
