/* The decode role's ops table: its state, its gRPC methods and the
 * --role both hook at start, the turn it takes in the scheduler, cancel
 * by id, and teardown. */
#include "decode_int.h"

#include <stdlib.h>

static bt_status_t bt_decode_create(bt_node_t *node, void **self_p)
{
    bt_decode_t *dec = calloc(1, sizeof(*dec));

    if (dec == NULL) {
        return BT_ERR_NO_MEMORY;
    }
    dec->node = node;
    bt_list_init(&dec->reqs);
    bt_list_init(&dec->stems);
    if (bt_decode_lease_register(dec) != BT_OK) {
        free(dec);
        return BT_ERR_NO_MEMORY;
    }
    *self_p = dec;
    return BT_OK;
}

static bool bt_decode_has_work(void *self)
{
    const bt_decode_t *dec = self;

    return dec->node->running > 0;
}

/* Ends every call and gives every block back (before the gRPC server is
 * destroyed; the worker is gone, so no step holds a request). */
static void bt_decode_end_all(void *self)
{
    bt_decode_t *dec = self;
    bt_list_t *it, *next;

    bt_list_foreach_safe(it, next, &dec->reqs) {
        bt_dreq_t *r = BT_CONTAINER_OF(it, bt_dreq_t, link);

        r->in_step = false;
        if (r->state == BT_DREQ_HELD) {
            bt_dreq_hold_end(r);
            continue;
        }
        if (bt_dreq_open(r)) {
            bt_rpc_call_fail_code(r->call, BT_RPC_UNAVAILABLE, "shutting down");
            bt_dreq_to(r, BT_DREQ_ENDED);
        }
        bt_dreq_put(r);
    }
    bt_dstem_free_all(dec);
}

/* Frees what the sent callbacks of the destroyed server left. */
static void bt_decode_destroy(void *self)
{
    bt_decode_t *dec = self;

    while (!bt_list_empty(&dec->reqs)) {
        bt_dreq_t *r = BT_CONTAINER_OF(dec->reqs.next, bt_dreq_t, link);

        r->sends_out = 0;
        bt_dreq_put(r);
    }
    if (dec->node->xfer != NULL) {
        bt_xfer_ctx_set_notify_cb(dec->node->xfer, NULL, NULL);
        bt_xfer_ctx_set_admit_cb(dec->node->xfer, NULL, NULL);
    }
    free(dec);
}

const bt_node_role_ops_t bt_decode_role_ops = {
    .name = "decode",
    .create = bt_decode_create,
    .has_work = bt_decode_has_work,
    .next_step = bt_decode_next_step,
    .step_done = bt_decode_step_done,
    .cancel = bt_decode_cancel,
    .end_all = bt_decode_end_all,
    .destroy = bt_decode_destroy,
};
