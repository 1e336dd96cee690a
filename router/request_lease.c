/* Lease renewal. The decode node frees a reservation whose KV has not
 * arrived when its lease ends. A prefill node with a backlog may start
 * the request later than that, so while the request waits for its
 * prefill (PREFILLING) the router renews the lease every lease/3
 * (Decode/RenewLease); the timer itself is request_state.c's. */
#include "request_priv.h"

#include "base/log.h"

#include <stdio.h>
#include <stdlib.h>

static void bt_rreq_renew_done(void *arg, const bt_rpc_result_t *result,
                               const ProtobufCMessage *resp)
{
    bt_rreq_t *req = ((bt_rreq_cb_t *)arg)->req;

    if (!bt_rreq_call_done(arg, req->renew_seq, &req->renew_call)) {
        return;
    }
    switch (result->code) {
    case BT_RPC_OK:
        /* for ListRequests; 0: the KV arrived, the lease no longer ends */
        if (resp != NULL && req->resv != NULL) {
            req->resv->expiry_unix_ms =
                ((const Baton__V1__RenewLeaseResponse *)resp)->expiry_unix_ms;
        }
        BT_RREQ_TRACE(req, "lease_renewed", "lease %llu on %s",
                      (unsigned long long)req->resv->lease_id, req->d_id);
        BT_LOG_REQ(DEBUG, req->id, "lease %llu on %s renewed",
                   (unsigned long long)req->resv->lease_id, req->d_id);
        return;
    case BT_RPC_NOT_FOUND:
        /* the lease is gone, or the KV arrived a moment ago and D admitted
         * the sequence (its first token is on its way): the next tick
         * decides, if neither the first token nor the stream's end came */
        req->lease_gone = true;
        BT_LOG_REQ(DEBUG, req->id, "lease %llu on %s not found: %s",
                   (unsigned long long)req->resv->lease_id, req->d_id,
                   result->message);
        return;
    case BT_RPC_UNIMPLEMENTED:
        /* an older node: its lease runs its course, as before */
        bt_rreq_renew_stop(req);
        req->renew_off = true;
        BT_LOG_REQ(INFO, req->id, "decode node %s cannot renew leases: the "
                   "lease is not renewed", req->d_id);
        return;
    default:
        /* a slow or restarting node: the decode stream says if it died */
        BT_LOG_REQ(WARN, req->id, "renewing lease on %s: %s: %s", req->d_id,
                   bt_rpc_code_name(result->code), result->message);
        return;
    }
}

void bt_rreq_renew_cb(evutil_socket_t fd, short what, void *arg)
{
    bt_rreq_t *req = arg;
    bt_router_t *r = req->r;
    Baton__V1__RenewLeaseRequest rq = BATON__V1__RENEW_LEASE_REQUEST__INIT;
    bt_rreq_cb_t *cb;

    (void)fd;
    (void)what;
    if (bt_rreq_ended(req) || req->state != BT_RREQ_PREFILLING || req->resv == NULL ||
        req->renew_off) {
        bt_rreq_renew_stop(req);
        return;
    }
    if (req->renew_call != NULL) {
        return; /* the last one is still out */
    }
    if (req->lease_gone) {
        /* D freed the blocks: the prefill has nowhere to go */
        char why[256];

        snprintf(why, sizeof(why), "decode node %s: lease %llu is gone "
                 "(RenewLease: NOT_FOUND)", req->d_id,
                 (unsigned long long)req->resv->lease_id);
        bt_rreq_renew_stop(req);
        bt_counter_inc(r->m.leases_lost);
        bt_rreq_failover(req, why);
        return;
    }
    if ((cb = malloc(sizeof(*cb))) == NULL) {
        return;
    }
    rq.lease_id = req->resv->lease_id;
    rq.request_id = req->id;
    rq.lease_ms = (uint32_t)r->cfg.lease_ms;
    cb->req = req;
    cb->seq = ++req->renew_seq;
    /* a node that left (BT_ERR_NOT_FOUND): the decode stream's end says so */
    if (r->node_ops->renew_lease(r, bt_rreq_node(req, req->d_slot, req->d_gen), &rq,
                                 (uint64_t)r->cfg.lease_ms / 3 > 0 ?
                                 (uint64_t)r->cfg.lease_ms / 3 : 1,
                                 bt_rreq_renew_done, cb, &req->renew_call) == BT_OK) {
        req->pending_cbs++;
    } else {
        free(cb);
        req->renew_call = NULL;
    }
}

