/* The role interface of a serving node (docs/internals/node.md "Roles"):
 * the core (common/node: options, engine hosting, registration, the
 * scheduler loop, drain, teardown) knows a role only through this ops
 * table. The prefill role lives in prefill_node/ (bt_prefill), the decode
 * role in decode_node/ (bt_decode); a binary hands both tables to
 * bt_node_main and --role picks which run. Every op runs on the loop
 * thread; `self` is what the role's create op returned. */
#ifndef BT_NODE_ROLE_H
#define BT_NODE_ROLE_H

#include "base/status.h"
#include "engine/model/forward.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct bt_node;

/* One forward step: built by one role's next_step, run on the worker,
 * handed back to the same role's step_done. Its buffers are the node's,
 * allocated once for --max-batch sequences (one step at a time). */
typedef struct bt_node_step {
    int            n;          /* sequences in the step */
    bt_step_seq_t *seqs;       /* [max_batch]; logits set by the core */
    int32_t       *toks;       /* [max_batch], storage for 1-token steps */
    void         **who;        /* [max_batch], the role's request of seq i */
    float         *logits;     /* [max_batch][vocab] */
} bt_node_step_t;

typedef struct bt_node_role_ops {
    const char *name;
    /* Allocates the role's state and adds its gRPC methods (and xfer
     * callbacks) before the server starts. */
    bt_status_t (*create)(struct bt_node *node, void **self_p);
    /* True when the role has work for the worker. */
    bool (*has_work)(void *self);
    /* Fills step->seqs/who[0..n) (at most `max`) and returns n; 0: none.
     * Every request in the step stays untouched until step_done. */
    int (*next_step)(void *self, bt_node_step_t *step, int max);
    /* Optional: a layer of the step is done (loop thread, while the worker
     * computes the next one); a role without it gets no layer hook. */
    void (*layer_done)(void *self, bt_node_step_t *step, int layer);
    /* Optional: a layer of the step was lost (the layer queue was full):
     * the step's requests must fail. */
    void (*layer_lost)(void *self, bt_node_step_t *step);
    /* The step is done (status of the forward pass); every layer was
     * handed to layer_done first. */
    void (*step_done)(void *self, bt_node_step_t *step, bt_status_t st);
    /* Optional: cancels the request with that id (router command). */
    bool (*cancel)(void *self, const char *request_id);
    /* Ends every request (before the gRPC server goes away). */
    void (*end_all)(void *self);
    /* Frees what is left and the state (after the gRPC server). */
    void (*destroy)(void *self);
} bt_node_role_ops_t;

/* The roles a binary is built with; --role picks which run. */
typedef struct {
    const bt_node_role_ops_t *prefill;
    const bt_node_role_ops_t *decode;
} bt_node_roles_t;

/* The in-process shortcut of --role both: the decode role offers it, the
 * prefill role uses it for a reservation of this very node (no UCX). */
typedef struct {
    /* True while the lease waits for its KV (copies go in only then). */
    bool (*lease_live)(void *self, uint64_t lease_id);
    /* The kv-complete message (payload as docs/internals/node.md). */
    void (*kv_complete)(void *self, uint64_t lease_id, int32_t status,
                        const void *user, size_t user_len);
    void *self;
} bt_node_local_t;

#endif
