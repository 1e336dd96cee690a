/* Forked choices (n > 1, best_of): the choices of one request share its
 * prompt's KV on one decode node instead of each prefilling it
 * (docs/internals/router.md "Choices"). The leader is an ordinary request
 * whose first DecodeStream says how many will fork it (fork_count); once
 * its reservation came, each other choice opens its own DecodeStream on
 * the same node naming the leader's lease (fork_lease_id), and decodes
 * with no prefill. From then on each choice is a request of its own: a
 * choice whose node cannot fork it is placed and prefilled alone, and a
 * decode failover of any choice re-prefills prompt ++ its own tokens. */
#include "request_priv.h"

#include "base/log.h"

#include <stdio.h>
#include <string.h>

void bt_rreq_fork_plan(bt_rreq_t *req, uint32_t n, bt_rreq_reserved_cb cb,
                       void *arg)
{
    req->fork_count = n;
    req->fork_cb = cb;
    req->fork_arg = arg;
}

void bt_rreq_fork_fill(bt_rreq_t *req, Baton__V1__DecodeRequest *dr)
{
    /* only a reservation a prefill of the bare prompt fills can be forked */
    if (req->fork_count > 0 && req->n_gen == 0) {
        dr->fork_count = req->fork_count;
    }
    dr->fork_lease_id = req->fork_lease;
}

bool bt_rreq_fork_reserved(bt_rreq_t *req)
{
    if (req->fork_lease != 0) {
        BT_RREQ_TRACE(req, "forked", "lease %llu on %s: no prefill",
                      (unsigned long long)req->fork_lease, req->d_id);
        bt_rreq_set_state(req, BT_RREQ_DECODING);
        return true;
    }
    if (req->fork_count > 0 && req->n_gen == 0) {
        /* told once: a later reservation (a failover) is not forked */
        req->fork_count = 0;
        if (req->fork_cb != NULL) {
            req->fork_cb(req, req->fork_arg);
        }
    }
    return false;
}

bool bt_rreq_fork_failed(bt_rreq_t *req, bt_rpc_code_t code, const char *why)
{
    if (req->fork_lease == 0) {
        return false;
    }
    req->fork_lease = 0;
    if (req->n_gen > 0 || (code != BT_RPC_FAILED_PRECONDITION &&
                           code != BT_RPC_RESOURCE_EXHAUSTED)) {
        return false;   /* the node failed: a failover as any request's */
    }
    /* nothing to fork there (the leader's KV never came or went), or no
     * room: no failure of the node, no failover attempt spent */
    BT_LOG_REQ(INFO, req->id, "%s: prefilled on its own instead", why);
    BT_RREQ_TRACE(req, "fork_refused", "%s", why);
    bt_rreq_release_nodes(req);
    if (req->resv != NULL) {
        baton__v1__reservation__free_unpacked(req->resv, NULL);
        req->resv = NULL;
    }
    bt_rreq_dispatch(req, why);
    return true;
}

bt_status_t bt_rreq_fork_admit(bt_rreq_t *req, const bt_rreq_t *from,
                               char *err, size_t err_size)
{
    bt_rreq_t *leader = (bt_rreq_t *)from;

    if (bt_rreq_ended(from) || from->resv == NULL || from->resv->lease_id == 0 ||
        bt_rreq_node(leader, from->d_slot, from->d_gen) == NULL) {
        return bt_rreq_admit(req, err, err_size);
    }
    req->d_slot = from->d_slot;
    req->d_gen = from->d_gen;
    snprintf(req->d_id, sizeof(req->d_id), "%s", from->d_id);
    memcpy(req->root, from->root, sizeof(req->root));
    memcpy(req->numerics, from->numerics, sizeof(req->numerics));
    req->root_known = from->root_known;
    req->fork_lease = from->resv->lease_id;
    BT_RREQ_TRACE(req, "pair", "decode %s: forks lease %llu of %s", req->d_id,
                  (unsigned long long)req->fork_lease, from->id);
    bt_rreq_set_state(req, BT_RREQ_RESERVING);
    event_active(req->go_ev, EV_TIMEOUT, 1);
    return BT_OK;
}
