/* The prefill role's ops table: its state and its gRPC method at start,
 * the turn it takes in the scheduler (one chunk of the head job per
 * step, with the layer hook), and teardown. */
#include "prefill_int.h"

#include <stdlib.h>

static bt_status_t bt_prefill_create(bt_node_t *node, void **self_p)
{
    bt_prefill_t *pf = calloc(1, sizeof(*pf));

    if (pf == NULL) {
        return BT_ERR_NO_MEMORY;
    }
    pf->node = node;
    bt_list_init(&pf->queue);
    bt_list_init(&pf->remotes);
    if (bt_prefill_rpc_register(pf) != BT_OK) {
        free(pf);
        return BT_ERR_NO_MEMORY;
    }
    *self_p = pf;
    return BT_OK;
}

static bool bt_prefill_has_work(void *self)
{
    const bt_prefill_t *pf = self;

    return !bt_list_empty(&pf->queue);
}

/* Ends every queued job (no fences: the process is going away; the
 * worker is gone, so no step holds a job) and drops the imported pools. */
static void bt_prefill_end_all(void *self)
{
    bt_prefill_t *pf = self;

    while (!bt_list_empty(&pf->queue)) {
        bt_pjob_t *j = BT_CONTAINER_OF(pf->queue.next, bt_pjob_t, link);

        j->in_step = false;
        bt_pjob_end(j, BT_RPC_UNAVAILABLE, "shutting down");
    }
    bt_prefill_remotes_destroy(pf);
}

static void bt_prefill_destroy(void *self)
{
    free(self);
}

const bt_node_role_ops_t bt_prefill_role_ops = {
    .name = "prefill",
    .create = bt_prefill_create,
    .has_work = bt_prefill_has_work,
    .next_step = bt_prefill_next_step,
    .layer_done = bt_prefill_layer_done,
    .layer_lost = bt_prefill_layer_lost,
    .step_done = bt_prefill_step_done,
    .end_all = bt_prefill_end_all,
    .destroy = bt_prefill_destroy,
};
