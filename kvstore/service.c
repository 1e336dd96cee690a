/* baton.v1.KvStore over gRPC: input checks (every repeated field bounded,
 * every hash 32 bytes, geometry sane), the store calls, the answers. The
 * network is hostile: a bad request gets a precise INVALID_ARGUMENT or
 * RESOURCE_EXHAUSTED and changes nothing. */
#include "kvstore.h"

#include "base/clock.h"
#include "base/log.h"
#include "kvspec/kv_proto.h"
#include "kvstore.pb-c.h"
#include "request_check.h"

#include <stdlib.h>
#include <string.h>

struct bt_kvsd_commit {
    bt_kvsd_t                      *d;
    bt_rpc_call_t                  *call;
    const Baton__V1__CommitRequest *req;
    bt_kvs_commit_block_t          *blocks;
    uint64_t                        since_ms;
    bt_kvsd_commit_t               *next;
};

/* The store's error for a status, with the right gRPC code. */
static void bt_kvsd_fail(bt_kvsd_t *d, bt_rpc_call_t *call, bt_status_t st)
{
    const char *why = bt_kvs_last_error(d->store);

    bt_rpc_call_fail(call, st, "%s", why[0] != '\0' ? why : bt_status_str(st));
}

/* Copies `n` hashes into one buffer; fails the call on bad input. */
static bool bt_kvsd_hashes(bt_rpc_call_t *call, const ProtobufCBinaryData *h,
                           size_t n, const char *field, uint8_t **out_p)
{
    char err[160];
    bt_status_t st = bt_kvsd_copy_hashes(h, n, field, out_p, err, sizeof(err));

    if (st != BT_OK) {
        bt_rpc_call_fail(call, st, "%s", err);
        return false;
    }
    return true;
}

static bool bt_kvsd_name_ok(bt_rpc_call_t *call, const char *s, const char *field)
{
    char err[160];
    bt_status_t st = bt_kvsd_check_name(s, field, err, sizeof(err));

    if (st != BT_OK) {
        bt_rpc_call_fail(call, st, "%s", err);
        return false;
    }
    return true;
}

static uint64_t bt_kvsd_unix_ms(bt_kvsd_t *d, uint64_t store_ms)
{
    uint64_t now = bt_kvs_now_ms(d->store);

    return bt_wall_ms() + (store_ms > now ? store_ms - now : 0);
}

/* Locations for `n` blocks; `locs` and `ptrs` are caller arrays of n. */
static void bt_kvsd_locations(const bt_kvs_block_info_t *info, size_t n,
                              Baton__V1__BlockLocation *locs,
                              Baton__V1__BlockLocation **ptrs)
{
    for (size_t i = 0; i < n; i++) {
        Baton__V1__BlockLocation *l = &locs[i];

        baton__v1__block_location__init(l);
        l->block_hash.data = (uint8_t *)info[i].hash;
        l->block_hash.len = BT_KV_HASH_LEN;
        l->tier = info[i].tier == BT_KVS_TIER_DRAM
                  ? BATON__V1__KV_TIER__KV_TIER_DRAM
                  : BATON__V1__KV_TIER__KV_TIER_DISK;
        l->offset = info[i].offset;
        l->length = info[i].length;
        l->region = 0;
        l->n_token_ids = info[i].n_tokens;
        l->token_ids = (uint32_t *)info[i].tokens;
        l->parent_hash.data = (uint8_t *)info[i].parent;
        l->parent_hash.len = BT_KV_HASH_LEN;
        l->checksum.data = (uint8_t *)info[i].checksum;
        l->checksum.len = BT_KV_HASH_LEN;
        ptrs[i] = l;
    }
}

/* ---- Lookup ---- */

static void bt_kvsd_lookup(bt_rpc_call_t *call, const ProtobufCMessage *msg,
                           void *arg)
{
    const Baton__V1__LookupRequest *req = (const void *)msg;
    Baton__V1__LookupResponse resp = BATON__V1__LOOKUP_RESPONSE__INIT;
    Baton__V1__BlockLocation *locs = NULL, **ptrs = NULL;
    bt_kvs_block_info_t *info = NULL;
    bt_kvsd_t *d = arg;
    uint8_t *hashes = NULL;
    size_t n = req->n_block_hashes, m = 0;
    bt_status_t st;

    if (!bt_kvsd_name_ok(call, req->model, "model") ||
        !bt_kvsd_hashes(call, req->block_hashes, n, "block_hashes", &hashes)) {
        return;
    }
    info = calloc(n + 1, sizeof(*info));
    locs = calloc(n + 1, sizeof(*locs));
    ptrs = calloc(n + 1, sizeof(*ptrs));
    if (info == NULL || locs == NULL || ptrs == NULL) {
        bt_rpc_call_fail(call, BT_ERR_NO_MEMORY, "out of memory");
        goto out;
    }
    st = bt_kvs_lookup(d->store, hashes, n, req->token_ids, req->n_token_ids,
                       info, &m);
    if (st != BT_OK) {
        bt_kvsd_fail(d, call, st);
        goto out;
    }
    bt_kvsd_locations(info, m, locs, ptrs);
    resp.matched_blocks = (uint32_t)m;
    resp.n_locations = m;
    resp.locations = ptrs;
    bt_rpc_call_reply(call, &resp.base);
out:
    free(info);
    free(locs);
    free(ptrs);
    free(hashes);
}

/* ---- Reserve ---- */

static void bt_kvsd_reserve(bt_rpc_call_t *call, const ProtobufCMessage *msg,
                            void *arg)
{
    const Baton__V1__ReserveRequest *req = (const void *)msg;
    Baton__V1__ReserveResponse resp = BATON__V1__RESERVE_RESPONSE__INIT;
    Baton__V1__StoreEndpoint ep = BATON__V1__STORE_ENDPOINT__INIT;
    Baton__V1__BlockLocation *locs = NULL, **ptrs = NULL;
    bt_kvs_slot_t *slots = NULL;
    bt_kvsd_t *d = arg;
    uint8_t *hashes = NULL;
    size_t n = req->n_block_hashes;
    uint64_t id, expiry, base;
    bt_kv_geom_t g;
    bt_status_t st;
    char err[256];

    if (d->draining) {
        bt_rpc_call_fail(call, BT_ERR_SHUTDOWN, "the kvstore is draining");
        return;
    }
    st = bt_kvsd_check_reserve(req, err, sizeof(err));
    if (st != BT_OK) {
        bt_rpc_call_fail(call, st, "%s", err);
        return;
    }
    if (!bt_kvsd_hashes(call, req->block_hashes, n, "block_hashes", &hashes)) {
        return;
    }
    bt_kv_geom_from_proto(req->geometry, &g);
    slots = calloc(n, sizeof(*slots));
    locs = calloc(n, sizeof(*locs));
    ptrs = calloc(n, sizeof(*ptrs));
    if (slots == NULL || locs == NULL || ptrs == NULL) {
        bt_rpc_call_fail(call, BT_ERR_NO_MEMORY, "out of memory");
        goto out;
    }
    st = bt_kvs_reserve(d->store, &g, req->block_bytes, req->parent_hash.data,
                        hashes, n, slots, &id, &expiry);
    if (st != BT_OK) {
        bt_kvsd_fail(d, call, st);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        baton__v1__block_location__init(&locs[i]);
        locs[i].block_hash = req->block_hashes[i];
        locs[i].tier = slots[i].stored ? BATON__V1__KV_TIER__KV_TIER_UNSPECIFIED
                                       : BATON__V1__KV_TIER__KV_TIER_DRAM;
        locs[i].offset = slots[i].offset;
        locs[i].length = slots[i].length;
        ptrs[i] = &locs[i];
    }
    base = (uint64_t)(uintptr_t)bt_xfer_region_base(d->region);
    ep.n_region_bases = 1;
    ep.region_bases = &base;
    resp.reservation_id = id;
    resp.n_slots = n;
    resp.slots = ptrs;
    resp.endpoint = &ep;
    resp.expiry_unix_ms = bt_kvsd_unix_ms(d, expiry);
    resp.region_descriptor.data = d->desc;
    resp.region_descriptor.len = d->desc_len;
    if (bt_rpc_call_reply(call, &resp.base) != BT_OK) {
        bt_kvs_abort(d->store, id);   /* nobody will write or commit it */
    }
out:
    free(slots);
    free(locs);
    free(ptrs);
    free(hashes);
}

/* ---- Commit ---- */

static void bt_kvsd_commit_cb(void *arg, bt_status_t status,
                              const bt_kvs_commit_result_t *r)
{
    bt_kvsd_commit_t *c = arg;
    Baton__V1__CommitResponse resp = BATON__V1__COMMIT_RESPONSE__INIT;

    if (status != BT_OK) {
        bt_rpc_call_fail(c->call, status, "commit failed: %s",
                         bt_status_str(status));
    } else {
        resp.committed = r->committed;
        resp.rejected = r->rejected;
        resp.durable = r->durable;
        bt_rpc_call_reply(c->call, &resp.base);
    }
    c->d->inflight--;
    free(c->blocks);
    free(c);
}

static void bt_kvsd_commit_start(bt_kvsd_commit_t *c)
{
    bt_kvsd_t *d = c->d;
    bt_status_t st;

    st = bt_kvs_commit(d->store, c->req->reservation_id, c->blocks,
                       c->req->n_blocks, bt_kvsd_commit_cb, c);
    if (st != BT_IN_PROGRESS) {
        bt_kvsd_fail(d, c->call, st);
        d->inflight--;
        free(c->blocks);
        free(c);
    }
}

static void bt_kvsd_commit(bt_rpc_call_t *call, const ProtobufCMessage *msg,
                           void *arg)
{
    const Baton__V1__CommitRequest *req = (const void *)msg;
    bt_kvsd_t *d = arg;
    bt_kvsd_commit_t *c;
    size_t n = req->n_blocks;
    bt_status_t st;
    char err[256];

    if (req->abort) {
        Baton__V1__CommitResponse resp = BATON__V1__COMMIT_RESPONSE__INIT;

        st = bt_kvs_abort(d->store, req->reservation_id);
        if (st != BT_OK) {
            bt_kvsd_fail(d, call, st);
        } else {
            bt_rpc_call_reply(call, &resp.base);
        }
        return;
    }
    if (n > BT_KV_MAX_HASHES) {
        bt_rpc_call_fail(call, BT_ERR_INVALID_ARG, "%zu blocks (at most %u per "
                         "call)", n, BT_KV_MAX_HASHES);
        return;
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL || (c->blocks = calloc(n + 1, sizeof(*c->blocks))) == NULL) {
        free(c);
        bt_rpc_call_fail(call, BT_ERR_NO_MEMORY, "out of memory");
        return;
    }
    st = bt_kvsd_commit_blocks(req, c->blocks, err, sizeof(err));
    if (st != BT_OK) {
        bt_rpc_call_fail(call, st, "%s", err);
        free(c->blocks);
        free(c);
        return;
    }
    c->d = d;
    c->call = call;
    c->req = req;
    c->since_ms = bt_now_ms();
    d->inflight++;
    /* the writer's completion message says its bytes landed; a commit
     * that overtook it waits (bounded) so the checksum sees them */
    if (n > 0 && !bt_kvs_reservation_is_landed(d->store, req->reservation_id) &&
        d->cfg.land_wait_ms > 0) {
        c->next = d->waiting;
        d->waiting = c;
        return;
    }
    bt_kvsd_commit_start(c);
}

void bt_kvsd_landed(void *arg, const bt_xfer_notify_t *n)
{
    bt_kvsd_t *d = arg;
    bt_kvsd_commit_t **pp = &d->waiting;

    if (n->status < 0 || bt_kvs_reservation_landed(d->store, n->lease_id) != BT_OK) {
        return;
    }
    while (*pp != NULL) {
        bt_kvsd_commit_t *c = *pp;

        if (c->req->reservation_id == n->lease_id) {
            *pp = c->next;
            bt_kvsd_commit_start(c);
            return;
        }
        pp = &c->next;
    }
}

void bt_kvsd_service_tick(bt_kvsd_t *d)
{
    bt_kvsd_commit_t **pp = &d->waiting;
    uint64_t now = bt_now_ms();

    while (*pp != NULL) {
        bt_kvsd_commit_t *c = *pp;

        if (bt_rpc_call_is_cancelled(c->call) ||
            now - c->since_ms >= (uint64_t)d->cfg.land_wait_ms) {
            *pp = c->next;
            bt_debug("reservation %llu: no completion message after %llu ms, "
                     "checking the slots anyway",
                     (unsigned long long)c->req->reservation_id,
                     (unsigned long long)(now - c->since_ms));
            bt_kvsd_commit_start(c);
            continue;
        }
        pp = &c->next;
    }
}

void bt_kvsd_service_cleanup(bt_kvsd_t *d)
{
    while (d->waiting != NULL) {
        bt_kvsd_commit_t *c = d->waiting;

        d->waiting = c->next;
        bt_rpc_call_fail(c->call, BT_ERR_SHUTDOWN, "the kvstore is stopping");
        free(c->blocks);
        free(c);
    }
}

/* ---- Pin / Unpin ---- */

typedef struct {
    bt_kvsd_t     *d;
    bt_rpc_call_t *call;
} bt_kvsd_pin_t;

static void bt_kvsd_pin_cb(void *arg, bt_status_t status,
                           const bt_kvs_pin_result_t *r)
{
    bt_kvsd_pin_t *p = arg;
    bt_kvsd_t *d = p->d;
    Baton__V1__PinResponse resp = BATON__V1__PIN_RESPONSE__INIT;
    Baton__V1__StoreEndpoint ep = BATON__V1__STORE_ENDPOINT__INIT;
    Baton__V1__BlockLocation *locs = NULL, **ptrs = NULL;
    uint64_t base = (uint64_t)(uintptr_t)bt_xfer_region_base(d->region);

    d->inflight--;
    if (status != BT_OK) {
        bt_rpc_call_fail(p->call, status, "pin failed");
        free(p);
        return;
    }
    if (bt_rpc_call_is_cancelled(p->call)) {
        /* nobody will read or unpin them */
        if (r->pin_id != 0) {
            bt_kvs_unpin(d->store, r->pin_id);
        }
        bt_rpc_call_fail(p->call, BT_ERR_CANCELLED, NULL);
        free(p);
        return;
    }
    locs = calloc(r->n_pinned + 1, sizeof(*locs));
    ptrs = calloc(r->n_pinned + 1, sizeof(*ptrs));
    if (locs == NULL || ptrs == NULL) {
        if (r->pin_id != 0) {
            bt_kvs_unpin(d->store, r->pin_id);
        }
        bt_rpc_call_fail(p->call, BT_ERR_NO_MEMORY, "out of memory");
        goto out;
    }
    bt_kvsd_locations(r->blocks, r->n_pinned, locs, ptrs);
    ep.n_region_bases = 1;
    ep.region_bases = &base;
    resp.pin_id = r->pin_id;
    resp.pinned_blocks = (uint32_t)r->n_pinned;
    resp.n_locations = r->n_pinned;
    resp.locations = ptrs;
    resp.endpoint = &ep;
    resp.expiry_unix_ms = r->pin_id != 0 ? bt_kvsd_unix_ms(d, r->expiry_ms) : 0;
    resp.region_descriptor.data = d->desc;
    resp.region_descriptor.len = d->desc_len;
    if (bt_rpc_call_reply(p->call, &resp.base) != BT_OK && r->pin_id != 0) {
        bt_kvs_unpin(d->store, r->pin_id);
    }
out:
    free(locs);
    free(ptrs);
    free(p);
}

static void bt_kvsd_pin(bt_rpc_call_t *call, const ProtobufCMessage *msg,
                        void *arg)
{
    const Baton__V1__PinRequest *req = (const void *)msg;
    bt_kvsd_t *d = arg;
    bt_kvsd_pin_t *p;
    uint8_t *hashes = NULL;
    bt_status_t st;

    if (d->draining) {
        bt_rpc_call_fail(call, BT_ERR_SHUTDOWN, "the kvstore is draining");
        return;
    }
    if (!bt_kvsd_name_ok(call, req->model, "model") ||
        !bt_kvsd_name_ok(call, req->node_id, "node_id") ||
        !bt_kvsd_hashes(call, req->block_hashes, req->n_block_hashes,
                        "block_hashes", &hashes)) {
        return;
    }
    p = calloc(1, sizeof(*p));
    if (p == NULL) {
        free(hashes);
        bt_rpc_call_fail(call, BT_ERR_NO_MEMORY, "out of memory");
        return;
    }
    p->d = d;
    p->call = call;
    st = bt_kvs_pin(d->store, hashes, req->n_block_hashes, req->token_ids,
                    req->n_token_ids, req->pin_ms, bt_kvsd_pin_cb, p);
    free(hashes);
    if (st != BT_IN_PROGRESS) {
        bt_kvsd_fail(d, call, st);
        free(p);
        return;
    }
    d->inflight++;
}

static void bt_kvsd_unpin(bt_rpc_call_t *call, const ProtobufCMessage *msg,
                          void *arg)
{
    const Baton__V1__UnpinRequest *req = (const void *)msg;
    Baton__V1__UnpinResponse resp = BATON__V1__UNPIN_RESPONSE__INIT;
    bt_kvsd_t *d = arg;
    bt_status_t st = bt_kvs_unpin(d->store, req->pin_id);

    if (st != BT_OK) {
        bt_kvsd_fail(d, call, st);
        return;
    }
    bt_rpc_call_reply(call, &resp.base);
}

/* ---- Stats ---- */

static void bt_kvsd_stats(bt_rpc_call_t *call, const ProtobufCMessage *msg,
                          void *arg)
{
    Baton__V1__StatsResponse resp = BATON__V1__STATS_RESPONSE__INIT;
    Baton__V1__TierStats t[2], *tp[2] = { &t[0], &t[1] };
    const bt_kvs_tier_stats_t *ts[2];
    bt_kvsd_t *d = arg;
    bt_kvs_stats_t s;

    (void)msg;
    bt_kvs_stats(d->store, &s);
    ts[0] = &s.dram;
    ts[1] = &s.disk;
    for (int i = 0; i < 2; i++) {
        baton__v1__tier_stats__init(&t[i]);
        t[i].tier = i == 0 ? BATON__V1__KV_TIER__KV_TIER_DRAM
                           : BATON__V1__KV_TIER__KV_TIER_DISK;
        t[i].capacity_bytes = ts[i]->capacity_bytes;
        t[i].used_bytes = ts[i]->used_bytes;
        t[i].blocks = ts[i]->blocks;
        t[i].evictions = ts[i]->evictions;
    }
    resp.n_tiers = 2;
    resp.tiers = tp;
    resp.lookups = s.lookups;
    resp.lookup_hit_blocks = s.lookup_hit_blocks;
    resp.lookup_miss_blocks = s.lookup_miss_blocks;
    resp.puts = s.puts;
    resp.gets = s.gets;
    resp.active_pins = s.active_pins;
    resp.active_reservations = s.active_reservations;
    resp.commit_rejected = s.commit_rejected;
    resp.token_mismatches = s.token_mismatches;
    resp.corrupt_files = s.corrupt_files;
    resp.disk_errors = s.disk_errors;
    bt_rpc_call_reply(call, &resp.base);
}

bt_status_t bt_kvsd_service_register(bt_kvsd_t *d)
{
    static const struct {
        const char                       *path;
        const ProtobufCMessageDescriptor *desc;
        bt_rpc_handler_cb                 cb;
    } methods[] = {
        { "/baton.v1.KvStore/Lookup", &baton__v1__lookup_request__descriptor,
          bt_kvsd_lookup },
        { "/baton.v1.KvStore/Reserve", &baton__v1__reserve_request__descriptor,
          bt_kvsd_reserve },
        { "/baton.v1.KvStore/Commit", &baton__v1__commit_request__descriptor,
          bt_kvsd_commit },
        { "/baton.v1.KvStore/Pin", &baton__v1__pin_request__descriptor,
          bt_kvsd_pin },
        { "/baton.v1.KvStore/Unpin", &baton__v1__unpin_request__descriptor,
          bt_kvsd_unpin },
        { "/baton.v1.KvStore/Stats", &baton__v1__stats_request__descriptor,
          bt_kvsd_stats },
    };

    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        bt_status_t st = bt_rpc_server_add_unary(d->grpc, methods[i].path,
                                                 methods[i].desc,
                                                 methods[i].cb, d);

        if (st != BT_OK) {
            return st;
        }
    }
    return bt_kvsd_expert_register(d);
}
