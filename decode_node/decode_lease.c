/* Reservations and leases of the decode role: DecodeStream reserves the
 * request's blocks and answers the Reservation; the lease timer, RenewLease,
 * and kv-complete (the xfer notify, or the --role both hook) admitting the
 * request into the batch, or ending a dead lease's hold (its fence), as in
 * docs/architecture.md "The request protocol between router and nodes"
 * and docs/internals/node.md "Decode: lease lifecycle", "Lease fence". */
#include "decode_int.h"
#include "node_bias.h"
#include "node_lp.h"

#include "base/clock.h"
#include "base/log.h"
#include "kvspec/kv_proto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

static void bt_dreq_cancel_cb(bt_rpc_call_t *call, void *arg)
{
    bt_dreq_t *r = arg;

    (void)call;
    bt_dreq_fail(r, BT_RPC_CANCELLED, "cancelled");
}

static void bt_dreq_lease_cb(evutil_socket_t fd, short what, void *arg)
{
    bt_dreq_t *r = arg;

    (void)fd;
    (void)what;
    if (r->state == BT_DREQ_HELD) {
        if (!r->guard_wait) {
            BT_LOG_REQ(WARN, r->id, "no fence for lease %llu within %lld ms: "
                       "its blocks go back", (unsigned long long)r->lease_id,
                       (long long)r->node->cfg.lease_fence_ms);
            bt_counter_inc(r->node->c_fence_timeouts);
        }
        bt_dreq_hold_try_end(r);
        return;
    }
    if (r->state == BT_DREQ_LEASED) {
        BT_LOG_REQ(WARN, r->id, "lease %llu expired before kv-complete",
                   (unsigned long long)r->lease_id);
        bt_counter_inc(r->node->c_leases_expired);
        bt_dreq_fail(r, BT_RPC_DEADLINE_EXCEEDED,
                     "lease expired before the kv cache arrived");
    }
}

/* (Re)starts the lease timer: `ask_ms` from now (0: --lease-default),
 * at most BT_DREQ_LEASE_MAX_MS. Returns the lease's length. */
static uint64_t bt_dreq_lease_arm(bt_dreq_t *r, uint64_t ask_ms)
{
    uint64_t ms = ask_ms > 0 ? ask_ms : (uint64_t)r->node->cfg.lease_default_ms;

    if (ms > BT_DREQ_LEASE_MAX_MS) {
        ms = BT_DREQ_LEASE_MAX_MS;
    }
    bt_node_timer_arm(r->lease_ev, ms);
    r->expiry_ms = bt_wall_ms() + ms;
    return ms;
}

/* The request whose call is open or whose blocks are held for lease. */
static bt_dreq_t *bt_dreq_find_lease(bt_decode_t *dec, uint64_t lease)
{
    bt_list_t *it, *next;

    bt_list_foreach_safe(it, next, &dec->reqs) {
        bt_dreq_t *r = BT_CONTAINER_OF(it, bt_dreq_t, link);

        if (r->lease_id == lease &&
            (bt_dreq_open(r) || r->state == BT_DREQ_HELD)) {
            return r;
        }
    }
    return NULL;
}

bool bt_decode_lease_live(void *self, uint64_t lease_id)
{
    bt_dreq_t *r = bt_dreq_find_lease(self, lease_id);

    return r != NULL && r->state == BT_DREQ_LEASED;
}

bool bt_decode_cancel(void *self, const char *request_id)
{
    bt_decode_t *dec = self;
    bt_list_t *it, *next;

    bt_list_foreach_safe(it, next, &dec->reqs) {
        bt_dreq_t *r = BT_CONTAINER_OF(it, bt_dreq_t, link);

        if (bt_dreq_open(r) && strcmp(r->id, request_id) == 0) {
            bt_dreq_fail(r, BT_RPC_CANCELLED, "cancelled by the router");
            return true;
        }
    }
    return false;
}

void bt_decode_kv_complete(void *self, uint64_t lease_id, int32_t status,
                           const void *user, size_t user_len)
{
    bt_decode_t *dec = self;
    bt_node_t *node = dec->node;
    bt_dreq_t *r = bt_dreq_find_lease(dec, lease_id);
    const uint8_t *u = user;
    uint32_t first, written, n_fill, n_kv;
    int32_t pst;
    bt_sample_result_t lp;
    uint32_t *ids32;
    bt_status_t s;

    if (r != NULL && r->state == BT_DREQ_HELD) {
        BT_LOG_REQ(DEBUG, r->id, "the writer of lease %llu is done: its blocks "
                   "go back", (unsigned long long)lease_id);
        bt_dreq_hold_try_end(r);   /* the writer is done: the blocks can go */
        return;
    }
    if (r != NULL && r->state == BT_DREQ_LEASED && status == BT_OK &&
        user_len == BT_NODE_DONE_PAYLOAD) {
        bt_node_done_get(u, &first, &written, &pst);
        if (first == BT_NODE_FENCE_FIRST && pst != BT_OK) {
            /* a prefill attempt gave up; the router may retry another
             * with the same lease, which stays */
            BT_LOG_REQ(DEBUG, r->id, "a writer of lease %llu stopped",
                       (unsigned long long)lease_id);
            return;
        }
    }
    if (r == NULL || r->state != BT_DREQ_LEASED) {
        BT_LOG_REQ(DEBUG, r != NULL ? r->id : NULL,
                   "kv-complete for %s lease %llu",
                   r != NULL ? "an ended" : "an unknown",
                   (unsigned long long)lease_id);
        return;
    }
    if (status != BT_OK || user_len < BT_NODE_DONE_PAYLOAD) {
        bt_dreq_fail(r, BT_RPC_ABORTED, "the kv transfer failed");
        return;
    }
    bt_node_done_get(u, &first, &written, &pst);
    n_kv = r->n_prompt + r->n_given;
    if (pst != BT_OK || written != n_kv || first >= node->vocab) {
        bt_dreq_fail(r, BT_RPC_ABORTED, "the prefill node reported a failure");
        return;
    }
    /* the first token's logprobs follow when the request asked for them */
    if (r->sp.logprobs >= 0
        ? bt_node_lp_unpack(u + BT_NODE_DONE_PAYLOAD,
                            user_len - BT_NODE_DONE_PAYLOAD, (int32_t)first,
                            r->sp.logprobs, node->vocab, &lp) != BT_OK
        : user_len != BT_NODE_DONE_PAYLOAD) {
        BT_LOG_REQ(WARN, r->id, "kv-complete of %zu bytes does not match the "
                   "request's logprobs", user_len);
        bt_dreq_fail(r, BT_RPC_ABORTED, "the prefill node sent a malformed "
                     "kv-complete");
        return;
    }
    n_fill = (n_kv + (uint32_t)node->cfg.block_size - 1) /
             (uint32_t)node->cfg.block_size;
    ids32 = malloc(n_kv * sizeof(*ids32));
    if (ids32 == NULL) {
        bt_dreq_fail(r, BT_RPC_INTERNAL, "out of memory");
        return;
    }
    for (uint32_t i = 0; i < r->n_prompt; i++) {
        ids32[i] = (uint32_t)r->prompt[i];
    }
    for (uint32_t i = 0; i < r->n_given; i++) {
        ids32[r->n_prompt + i] = (uint32_t)r->out[i];
    }
    s = bt_kvseq_create(node->pool, r->root, &r->seq);
    if (s == BT_OK) {
        s = bt_kvseq_commit_reserved(r->seq, r->resv, n_fill, ids32, n_kv);
    }
    free(ids32);
    if (s != BT_OK) {
        bt_dreq_fail(r, BT_RPC_INTERNAL, "cannot take the reserved blocks");
        return;
    }
    r->resv_next = n_fill;
    event_del(r->lease_ev);
    bt_dreq_to(r, BT_DREQ_RUNNING);
    if (bt_dreq_token(r, (int32_t)first, &lp) != BT_OK) {
        bt_dreq_fail(r, BT_RPC_INTERNAL, "out of memory");
        return;
    }
    /* the choices forking r's prompt start before any step writes into
     * its blocks (its first token is not in them yet) */
    if (r->stem != NULL) {
        bt_dstem_ready(r);
    }
    bt_dreq_flush(r);
    bt_node_metrics_update(node);
    bt_node_sched_kick(node);
}

/* Tests: BATON_TEST_RESERVE_DELAY_MS holds the loop that long after each
 * Reservation is sent, so that a prefill node copies into the pool before
 * this loop runs again (tests/integration/node_faults.py). */
static void bt_decode_test_reserve_delay(void)
{
    static long delay_ms = -1;

    bt_node_test_pause("BATON_TEST_RESERVE_DELAY_MS", &delay_ms);
}

static void bt_decode_stream(bt_rpc_call_t *call, const ProtobufCMessage *msg,
                             void *arg)
{
    bt_decode_t *dec = arg;
    bt_node_t *node = dec->node;
    const Baton__V1__DecodeRequest *q = (const Baton__V1__DecodeRequest *)msg;
    Baton__V1__DecodeResponse m = BATON__V1__DECODE_RESPONSE__INIT;
    Baton__V1__Reservation rv = BATON__V1__RESERVATION__INIT;
    Baton__V1__KvGeometry g = BATON__V1__KV_GEOMETRY__INIT;
    const bt_kv_geom_t *geom = bt_kvpool_geom(node->pool);
    const uint32_t bs = geom->block_size;
    bt_dreq_t *r;
    uint32_t max_out, n_total, n_blocks, n_fill;
    void *desc = NULL;
    size_t desc_len = 0;
    uint64_t lease_ms;
    char why[256];

    if (node->draining) {
        bt_node_call_refuse(call, "decode", q->request_id,
                            BT_RPC_UNAVAILABLE, "the node is draining");
        return;
    }
    bt_node_flex_call(node, BT_NODE_SERVES_DECODE);
    if (q->n_token_ids == 0 || q->n_token_ids > BT_DREQ_MAX_TOKENS ||
        q->n_generated_ids > BT_DREQ_MAX_TOKENS || q->sampling == NULL ||
        q->tenant == NULL || q->tenant->root_hash.len != BT_KV_HASH_LEN) {
        bt_node_call_refuse(call, "decode", q->request_id,
                            BT_RPC_INVALID_ARGUMENT,
                            "token_ids, sampling and a 32-byte "
                            "tenant.root_hash are required");
        return;
    }
    if (q->model != NULL && q->model[0] != '\0' &&
        strcmp(q->model, node->model_name) != 0) {
        snprintf(why, sizeof(why), "model %.100s is not served here (%.100s)",
                 q->model, node->model_name);
        bt_node_call_refuse(call, "decode", q->request_id,
                            BT_RPC_INVALID_ARGUMENT, why);
        return;
    }
    if (!bt_node_tokens_in_vocab(node, q->token_ids, q->n_token_ids)) {
        bt_node_call_refuse(call, "decode", q->request_id,
                            BT_RPC_INVALID_ARGUMENT,
                            "token id outside the vocabulary");
        return;
    }
    r = calloc(1, sizeof(*r));
    if (r == NULL) {
        bt_node_call_refuse(call, "decode", q->request_id,
                            BT_RPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    r->node = node;
    r->call = call;
    snprintf(r->id, sizeof(r->id), "%s", q->request_id ? q->request_id : "");
    bt_node_sampling_from_proto(node, q->sampling, &r->sp);
    if (bt_node_lp_param(q->sampling, &r->sp.logprobs) != BT_OK ||
        bt_sample_params_check(&r->sp) != BT_OK) {
        free(r);
        bt_node_call_refuse(call, "decode", q->request_id,
                            BT_RPC_INVALID_ARGUMENT,
                            "sampling parameters out of range");
        return;
    }
    if (bt_node_bias_from_proto(q->sampling, node->vocab, &r->sp, why,
                                sizeof(why)) != BT_OK) {
        free(r);
        bt_node_call_refuse(call, "decode", q->request_id,
                            BT_RPC_INVALID_ARGUMENT, why);
        return;
    }
    max_out = (uint32_t)r->sp.max_tokens;
    if ((q->fork_count > 0 || q->fork_lease_id != 0) &&
        (q->n_generated_ids > 0 || q->fork_count > BT_DREQ_MAX_FORKS ||
         (q->fork_count > 0 && q->fork_lease_id != 0))) {
        free(r);
        bt_node_call_refuse(call, "decode", q->request_id,
                            BT_RPC_INVALID_ARGUMENT,
                            "fork_count (at most 1024) or fork_lease_id, "
                            "not both, and without generated_ids");
        return;
    }
    if (q->n_generated_ids >= max_out) {
        free(r);
        bt_node_call_refuse(call, "decode", q->request_id,
                            BT_RPC_INVALID_ARGUMENT,
                            "generated_ids already reach max_tokens");
        return;
    }
    r->n_prompt = (uint32_t)q->n_token_ids;
    r->n_given = (uint32_t)q->n_generated_ids;
    r->max_out = max_out;
    memcpy(r->root, q->tenant->root_hash.data, BT_KV_HASH_LEN);
    n_total = r->n_prompt + max_out;
    n_blocks = (n_total + bs - 1) / bs;
    n_fill = (r->n_prompt + r->n_given + bs - 1) / bs;
    if (q->fork_lease_id != 0) {
        /* a forked choice holds the prompt's blocks before its last token
         * by reference: it reserves the rest, the block it copies on
         * write included, and none is written by a prefill */
        n_blocks -= (r->n_prompt - 1) / bs;
        n_fill = 0;
    }
    r->prompt = malloc(r->n_prompt * sizeof(int32_t));
    r->out = malloc(max_out * sizeof(int32_t));
    r->pending = malloc(max_out * sizeof(uint32_t));
    r->resv = malloc(n_blocks * sizeof(uint32_t));
    r->lease_ev = evtimer_new(node->base, bt_dreq_lease_cb, r);
    if (r->prompt == NULL || r->out == NULL || r->pending == NULL ||
        r->resv == NULL || r->lease_ev == NULL) {
        goto err_nomem;
    }
    for (uint32_t i = 0; i < r->n_prompt; i++) {
        r->prompt[i] = (int32_t)q->token_ids[i];
    }
    for (uint32_t i = 0; i < r->n_given; i++) {
        r->out[i] = (int32_t)q->generated_ids[i];
    }
    r->n_out = r->n_given;
    if (bt_node_gram_open(node, q->sampling, r->out, r->n_given, &r->gram, why,
                          sizeof(why)) != BT_OK) {
        bt_dreq_free(r);
        bt_node_call_refuse(call, "decode", q->request_id,
                            BT_RPC_INVALID_ARGUMENT, why);
        return;
    }
    if (bt_kvpool_reserve(node->pool, n_blocks, r->resv) != BT_OK) {
        snprintf(why, sizeof(why), "cannot reserve %u kv blocks (%u available "
                 "of %u)", n_blocks, bt_kvpool_available(node->pool),
                 bt_kvpool_n_blocks(node->pool));
        bt_dreq_free(r);
        bt_node_call_refuse(call, "decode", q->request_id,
                            BT_RPC_RESOURCE_EXHAUSTED, why);
        return;
    }
    r->n_resv = n_blocks;
    r->n_fill = n_fill;
    r->dec = dec;
    if (q->fork_lease_id != 0 &&
        bt_dstem_join(r, q->fork_lease_id, why, sizeof(why)) != BT_RPC_OK) {
        bt_kvpool_reserve_abort(node->pool, r->resv, n_blocks);
        bt_dreq_free(r);
        bt_node_call_refuse(call, "decode", q->request_id,
                            BT_RPC_FAILED_PRECONDITION, why);
        return;
    }
    if (getrandom(&r->lease_id, sizeof(r->lease_id), 0) !=
        (ssize_t)sizeof(r->lease_id) || r->lease_id == 0) {
        r->lease_id = bt_now_ns() | 1;
    }
    bt_dreq_enter(dec, r);
    bt_rpc_call_set_cancel_cb(call, bt_dreq_cancel_cb, r);
    /* a forked choice waits for its leader's KV within the leader's
     * lease: the stem fails it when that lease ends */
    lease_ms = r->fork_of == 0 ? bt_dreq_lease_arm(r, q->lease_ms) : 0;
    if (q->fork_count > 0 && bt_dstem_open(r, q->fork_count) != BT_OK) {
        bt_dreq_fail(r, BT_RPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }

    if (node->region != NULL &&
        bt_xfer_region_export(node->region, &desc, &desc_len) != BT_OK) {
        bt_dreq_fail(r, BT_RPC_INTERNAL, "cannot export the kv region");
        return;
    }
    g.n_layers = geom->n_layers;
    g.n_kv_heads = geom->n_kv_heads;
    g.head_dim = geom->head_dim;
    g.block_size = bs;
    g.dtype = bt_kv_dtype_to_proto(geom->dtype);
    rv.pool_descriptor.data = desc;
    rv.pool_descriptor.len = desc_len;
    rv.block_ids = r->resv;
    rv.n_block_ids = n_fill;
    rv.block_size = bs;
    rv.geometry = &g;
    rv.lease_id = r->lease_id;
    rv.expiry_unix_ms = r->expiry_ms;
    rv.decode_node_id = node->node_id;
    rv.pool_base = node->region != NULL
                   ? (uint64_t)(uintptr_t)bt_xfer_region_base(node->region) : 0;
    m.kind_case = BATON__V1__DECODE_RESPONSE__KIND_RESERVATION;
    m.reservation = &rv;
    /* the blocks take the lease's writes before the Reservation leaves:
     * gRPC sends it from its own thread, and a prefill node on this host
     * may copy into the pool (checking the guard) before this loop runs
     * again */
    bt_decode_writer_set(r, true);
    if (bt_rpc_call_send(call, &m.base, NULL, NULL) != BT_OK) {
        free(desc);
        bt_dreq_fail(r, BT_RPC_INTERNAL, "cannot send the reservation");
        return;
    }
    free(desc);
    bt_decode_test_reserve_delay();
    bt_dreq_to(r, BT_DREQ_LEASED);
    BT_LOG_REQ(INFO, r->id, "decode admitted: %u prompt tokens, reserved %u "
               "blocks (lease %llu, %llu ms)%s", r->n_prompt,
               n_blocks, (unsigned long long)r->lease_id,
               (unsigned long long)lease_ms,
               r->fork_of != 0 ? ", a choice forking another's kv cache" : "");
    if (r->fork_of != 0) {
        bt_dstem_try_attach(r);
    }
    bt_node_metrics_update(node);
    return;

err_nomem:
    bt_dreq_free(r);
    bt_node_call_refuse(call, "decode", q->request_id,
                        BT_RPC_RESOURCE_EXHAUSTED, "out of memory");
}

/* RenewLease: a lease still waiting for its KV gets lease_ms more from
 * now. Only the request that holds the lease may renew it, and every
 * other case answers NOT_FOUND alike, so lease ids cannot be probed. */
static void bt_renew_lease(bt_rpc_call_t *call, const ProtobufCMessage *msg,
                           void *arg)
{
    bt_decode_t *dec = arg;
    const Baton__V1__RenewLeaseRequest *q =
        (const Baton__V1__RenewLeaseRequest *)msg;
    Baton__V1__RenewLeaseResponse res = BATON__V1__RENEW_LEASE_RESPONSE__INIT;
    const char *rid = q->request_id != NULL ? q->request_id : "";
    bt_dreq_t *r = NULL;
    bt_list_t *it, *next;

    bt_list_foreach_safe(it, next, &dec->reqs) {
        bt_dreq_t *x = BT_CONTAINER_OF(it, bt_dreq_t, link);

        /* leased: the Reservation went out; the call still open */
        if (x->lease_id == q->lease_id && q->lease_id != 0 &&
            x->state >= BT_DREQ_LEASED && bt_dreq_open(x) &&
            strcmp(x->id, rid) == 0) {
            r = x;
            break;
        }
    }
    if (r == NULL) {
        bt_rpc_call_fail_code(call, BT_RPC_NOT_FOUND, "no live lease with "
                              "that id for that request");
        return;
    }
    if (r->state == BT_DREQ_LEASED) {
        uint64_t ms = bt_dreq_lease_arm(r, q->lease_ms);

        BT_LOG_REQ(DEBUG, r->id, "lease %llu renewed for %llu ms",
                   (unsigned long long)r->lease_id, (unsigned long long)ms);
        res.expiry_unix_ms = r->expiry_ms;
    }
    /* admitted: the KV is here and the lease no longer expires (0) */
    bt_rpc_call_reply(call, &res.base);
}

/* The node's admit check (xfer.h): a slice of the kv pool lands only
 * when every block it touches waits for this lease's writer, that is
 * the lease is LEASED and the block is one its prefill fills. So bytes
 * of a writer that was cut off (a partition, a stopped process) and
 * whose lease was fenced meanwhile never reach blocks handed to another
 * request. The pool region's guard holds each block's lease: the one
 * table for messages checked here and for writers on this host that
 * copy straight into the pool. Slices of other regions are not the
 * pool's: taken. */
static bool bt_decode_admit(void *arg, uint32_t region_id, uint64_t lease_id,
                            uint64_t offset, uint64_t len)
{
    bt_decode_t *dec = arg;
    bt_node_t *node = dec->node;

    if (node->region == NULL || region_id != bt_xfer_region_id(node->region)) {
        return true;
    }
    if (len == 0) {
        return true;
    }
    if (!bt_xfer_region_guard_admits(node->region, offset, len, lease_id)) {
        bt_counter_inc(node->c_kv_refused);
        return false;
    }
    return true;
}

void bt_decode_writer_set(bt_dreq_t *r, bool open)
{
    bt_xfer_region_t *region = r->node->region;

    if (region == NULL) {
        return;
    }
    for (uint32_t i = 0; i < r->n_fill && i < r->n_resv; i++) {
        uint32_t blk = r->resv[i];

        if (open) {
            bt_xfer_region_guard_set(region, blk, r->lease_id);
        } else if (bt_xfer_region_guard_owner(region, blk) == r->lease_id) {
            bt_xfer_region_guard_set(region, blk, 0);
        }
    }
}

static void bt_decode_notify(void *arg, const bt_xfer_notify_t *n)
{
    if (n->layer != UINT32_MAX) {
        return;
    }
    bt_decode_kv_complete(arg, n->lease_id, n->status, n->user, n->user_len);
}

bt_status_t bt_decode_lease_register(bt_decode_t *dec)
{
    bt_node_t *node = dec->node;
    const bt_node_local_t local = { bt_decode_lease_live,
                                    bt_decode_kv_complete, dec };

    if (node->xfer != NULL) {
        bt_xfer_ctx_set_notify_cb(node->xfer, bt_decode_notify, dec);
        bt_xfer_ctx_set_admit_cb(node->xfer, bt_decode_admit, dec);
    }
    /* --role both: the prefill role hands over its kv-complete directly */
    bt_node_local_set(node, &local);
    if (bt_rpc_server_add_unary(node->grpc, "/baton.v1.Decode/RenewLease",
                                &baton__v1__renew_lease_request__descriptor,
                                bt_renew_lease, dec) != BT_OK) {
        return BT_ERR_NO_MEMORY;
    }
    return bt_rpc_server_add_stream(node->grpc, "/baton.v1.Decode/DecodeStream",
                                    &baton__v1__decode_request__descriptor,
                                    bt_decode_stream, dec);
}

