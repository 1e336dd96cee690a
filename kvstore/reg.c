/* The kvstore's registration with the routers (--router): one Register
 * stream to each router through common/registrar with role
 * NODE_ROLE_KVSTORE, the store's events as KvEvents (docs/kv-spec.md
 * "Events", the rules for a kvstore), every servable block re-announced to
 * a router on each of its registrations, and
 * the router's commands: FLUSH_CACHE empties the store, DRAIN and UNDRAIN
 * are refused (a kvstore takes no requests from the router; SIGTERM
 * drains it). */
#include "kvstore.h"

#include "base/array.h"
#include "base/log.h"
#include "bt_config.h"
#include "kvspec/kv_proto.h"
#include "registrar/registrar.h"
#include "registry.pb-c.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Events queued between two loop turns; beyond it the queue is dropped
 * and the router's view rebuilt (cleared + the whole store). */
#define BT_KVSD_EV_QUEUE_MAX 65536u
/* Events per KvEvents message: at least this many, more for a big store
 * so that a re-announce stays within BT_KVSD_SEND_QUEUE messages. */
#define BT_KVSD_EV_BATCH 4096u
#define BT_KVSD_SEND_QUEUE 1024u
/* Router's gRPC message limit is 64 MiB; an event of one hash packs to
 * under 80 bytes. */
#define BT_KVSD_EV_BATCH_MAX (512u * 1024u)

struct bt_kvsd_reg {
    bt_kvsd_t           *d;
    bt_rpc_client_t     *rpc;
    bt_registrar_t      *registrar;
    struct event        *flush_ev;
    Baton__V1__KvEvent **q;         /* events of this loop turn */
    size_t               n, cap;
    bool                 resync;    /* queue overflowed: re-announce all */
};

static void bt_kvsd_reg_q_clear(bt_kvsd_reg_t *g)
{
    for (size_t i = 0; i < g->n; i++) {
        free(g->q[i]);
    }
    g->n = 0;
}

static Baton__V1__KvEvent *bt_kvsd_ev_new(Baton__V1__KvEvent__Kind kind,
                                          bt_kvs_tier_t tier,
                                          const uint8_t *hash,
                                          const uint8_t *parent)
{
    return bt_kv_event_msg_new(kind,
                               tier == BT_KVS_TIER_DISK
                                   ? BATON__V1__KV_TIER__KV_TIER_DISK
                                   : BATON__V1__KV_TIER__KV_TIER_DRAM,
                               hash, parent);
}

typedef struct {
    Baton__V1__KvEvent **ev;
    size_t               n, cap;
    bool                 failed;
} bt_kvsd_snap_t;

static void bt_kvsd_snap_cb(void *arg, const bt_kvs_block_info_t *b)
{
    bt_kvsd_snap_t *sn = arg;
    Baton__V1__KvEvent *m;

    if (sn->failed || sn->n == sn->cap) {
        sn->failed = true;
        return;
    }
    m = bt_kvsd_ev_new(BATON__V1__KV_EVENT__KIND__KIND_STORED, b->tier,
                       b->hash, b->parent);
    if (m == NULL) {
        sn->failed = true;
        return;
    }
    sn->ev[sn->n++] = m;
}

/* To `link`, or to every registered router when NULL. */
static void bt_kvsd_send_batched(bt_kvsd_reg_t *g, bt_registrar_link_t *link,
                                 Baton__V1__KvEvent **ev, size_t n)
{
    size_t per = n / (BT_KVSD_SEND_QUEUE / 2) + 1;

    per = per < BT_KVSD_EV_BATCH ? BT_KVSD_EV_BATCH
          : per > BT_KVSD_EV_BATCH_MAX ? BT_KVSD_EV_BATCH_MAX : per;
    bt_registrar_send_kv_batched(g->registrar, link, ev, n, per);
}

/* A router learns the whole store again: `link` on each of its
 * registrations (event numbering restarted), every router (NULL) after a
 * queue overflow (cleared first). */
static void bt_kvsd_reg_announce(bt_kvsd_reg_t *g, bt_registrar_link_t *link,
                                 bool clear_first)
{
    bt_kvsd_snap_t sn = { NULL, 0, 0, false };
    bt_kvs_stats_t st;

    bt_kvs_stats(g->d->store, &st);
    sn.cap = (size_t)(st.dram.blocks + st.disk.blocks) + 2;
    sn.ev = calloc(sn.cap, sizeof(*sn.ev));
    if (sn.ev == NULL) {
        bt_error("registration: out of memory announcing %zu blocks", sn.cap);
        return;
    }
    if (clear_first) {
        sn.ev[sn.n++] = bt_kvsd_ev_new(BATON__V1__KV_EVENT__KIND__KIND_CLEARED,
                                       BT_KVS_TIER_DRAM, NULL, NULL);
        sn.ev[sn.n++] = bt_kvsd_ev_new(BATON__V1__KV_EVENT__KIND__KIND_CLEARED,
                                       BT_KVS_TIER_DISK, NULL, NULL);
        sn.failed = sn.ev[0] == NULL || sn.ev[1] == NULL;
    }
    bt_kvs_foreach(g->d->store, bt_kvsd_snap_cb, &sn);
    if (sn.failed) {
        bt_error("registration: cannot list the store's blocks (out of memory)");
    } else {
        bt_kvsd_send_batched(g, link, sn.ev, sn.n);
        bt_info("announced %zu blocks to %s", sn.n - (clear_first ? 2 : 0),
                link != NULL ? bt_registrar_link_target(link) : "every router");
    }
    for (size_t i = 0; i < sn.n; i++) {
        free(sn.ev[i]);
    }
    free(sn.ev);
}

static void bt_kvsd_reg_flush_cb(evutil_socket_t fd, short what, void *arg)
{
    bt_kvsd_reg_t *g = arg;

    (void)fd;
    (void)what;
    if (!bt_registrar_is_registered(g->registrar)) {
        bt_kvsd_reg_q_clear(g);
        g->resync = false;
        return;
    }
    if (g->resync) {
        bt_kvsd_reg_q_clear(g);
        g->resync = false;
        bt_kvsd_reg_announce(g, NULL, true);
        return;
    }
    if (g->n > 0) {
        bt_kvsd_send_batched(g, NULL, g->q, g->n);
    }
    bt_kvsd_reg_q_clear(g);
}

void bt_kvsd_reg_event(void *arg, const bt_kvs_event_t *ev)
{
    bt_kvsd_t *d = arg;
    bt_kvsd_reg_t *g = d->reg;
    Baton__V1__KvEvent *m;
    Baton__V1__KvEvent__Kind kind;

    /* not registered: the next registration announces the whole store */
    if (g == NULL || !bt_registrar_is_registered(g->registrar) || g->resync) {
        return;
    }
    kind = ev->type == BT_KVS_EVENT_STORED ? BATON__V1__KV_EVENT__KIND__KIND_STORED
           : ev->type == BT_KVS_EVENT_REMOVED ? BATON__V1__KV_EVENT__KIND__KIND_REMOVED
           : BATON__V1__KV_EVENT__KIND__KIND_CLEARED;
    if (g->n >= BT_KVSD_EV_QUEUE_MAX ||
        BT_ARRAY_RESERVE(g->q, g->cap, g->n + 1, 256) != BT_OK) {
        bt_warn("registration: %zu kv events in one loop turn; the router "
                "gets the whole store again", g->n);
        g->resync = true;
        event_active(g->flush_ev, EV_TIMEOUT, 0);
        return;
    }
    m = bt_kvsd_ev_new(kind, ev->tier, ev->hash, ev->parent);
    if (m == NULL) {
        g->resync = true;
    } else {
        g->q[g->n++] = m;
    }
    event_active(g->flush_ev, EV_TIMEOUT, 0);
}

static void bt_kvsd_reg_status_cb(void *arg, Baton__V1__NodeStatus *st)
{
    bt_kvsd_t *d = arg;

    st->draining = d->draining;
    st->drained = d->draining && d->inflight == 0;
}

static bt_status_t bt_kvsd_reg_command_cb(void *arg,
                                          const Baton__V1__RouterCommand *cmd,
                                          char *err, size_t err_size)
{
    bt_kvsd_t *d = arg;
    size_t n;

    switch (cmd->kind) {
    case BATON__V1__ROUTER_COMMAND__KIND__KIND_FLUSH_CACHE:
        n = bt_kvs_flush(d->store);
        bt_info("flush (router command %llu): %zu blocks dropped",
                (unsigned long long)cmd->command_id, n);
        return BT_OK;
    case BATON__V1__ROUTER_COMMAND__KIND__KIND_DRAIN:
    case BATON__V1__ROUTER_COMMAND__KIND__KIND_UNDRAIN:
        snprintf(err, err_size, "a kvstore takes no requests from the router, "
                 "so it does not drain on command: stop it with SIGTERM");
        return BT_ERR_UNSUPPORTED;
    default:
        snprintf(err, err_size, "command %d is not supported by a kvstore",
                 (int)cmd->kind);
        return BT_ERR_UNSUPPORTED;
    }
}

static void bt_kvsd_reg_registered_cb(void *arg, bt_registrar_link_t *link,
                                      bool up)
{
    bt_kvsd_t *d = arg;
    bt_kvsd_reg_t *g = d->reg;

    /* events are renumbered on each registration: the router learns every
     * servable block, in batches; the events queued this loop turn still
     * go to every router (the store already holds their outcome, so the
     * new router sees them twice, which changes nothing) */
    if (up) {
        bt_kvsd_reg_announce(g, link, false);
    }
}

bt_status_t bt_kvsd_reg_start(bt_kvsd_t *d)
{
    Baton__V1__NodeHello hello = BATON__V1__NODE_HELLO__INIT;
    bt_registrar_params_t p;
    bt_kvsd_reg_t *g;

    if (d->cfg.router == NULL || d->cfg.router[0] == '\0') {
        bt_info("no --router: serving without registration");
        return BT_OK;
    }
    g = calloc(1, sizeof(*g));
    if (g == NULL) {
        return BT_ERR_NO_MEMORY;
    }
    g->d = d;
    d->reg = g;
    g->rpc = bt_rpc_client_create(d->base, &(bt_rpc_client_opts_t){
                                      64u << 20, BT_KVSD_SEND_QUEUE });
    g->flush_ev = event_new(d->base, -1, 0, bt_kvsd_reg_flush_cb, g);
    if (g->rpc == NULL || g->flush_ev == NULL) {
        return BT_ERR_NO_MEMORY;
    }
    bt_rpc_client_set_token(g->rpc, bt_rpc_auth_token(d->cfg.tls.auth));
    hello.node_id = d->node_id;
    hello.role = BATON__V1__NODE_ROLE__NODE_ROLE_KVSTORE;
    hello.model = (char *)"";
    hello.grpc_address = d->advertise;
    hello.http_address = d->http_addr;
    hello.version = (char *)BT_VERSION;
    memset(&p, 0, sizeof(p));
    p.client = g->rpc;
    p.routers = d->cfg.router;
    p.tls = bt_rpc_tls_cfg_client(&d->cfg.tls);
    p.hello = &hello;
    p.cbs.status_cb = bt_kvsd_reg_status_cb;
    p.cbs.command_cb = bt_kvsd_reg_command_cb;
    p.cbs.registered_cb = bt_kvsd_reg_registered_cb;
    p.cbs.arg = d;
    g->registrar = bt_registrar_create(d->base, &p);
    return g->registrar != NULL ? BT_OK : BT_ERR_INTERNAL;
}

void bt_kvsd_reg_send_status(bt_kvsd_t *d)
{
    if (d->reg != NULL && d->reg->registrar != NULL) {
        bt_registrar_send_status(d->reg->registrar);
    }
}

void bt_kvsd_reg_stop(bt_kvsd_t *d)
{
    bt_kvsd_reg_t *g = d->reg;

    if (g == NULL) {
        return;
    }
    /* the stream's end is the router's signal that the store left */
    bt_registrar_destroy(g->registrar);
    bt_rpc_client_destroy(g->rpc);   /* runs the registrar's last callback */
    if (g->flush_ev != NULL) {
        event_free(g->flush_ev);
    }
    bt_kvsd_reg_q_clear(g);
    free(g->q);
    free(g);
    d->reg = NULL;
}
