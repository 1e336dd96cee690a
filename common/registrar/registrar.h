/* A cluster member's registration with the routers (DESIGN §2,
 * registry.proto): serving nodes (common/node) and kvstore replicas
 * (kvstore/reg.c) alike keep one Register stream to every router for their
 * whole life (docs/architecture.md "Router replicas"). The routers come
 * from the --router list (registrar/resolve.h: literal addresses, or names
 * that resolve to one router per address, re-resolved so that routers
 * come and go). On each stream: hello first; once the router acknowledges,
 * status heartbeats at the interval it asks for, KV events as they happen,
 * and commands (drain, undrain, flush, cancel) coming down, each answered
 * with an Ack. When a stream breaks (router restarted, network) its link
 * reconnects with backoff and `registered_cb` tells the owner, which
 * re-announces its cached blocks to that router alone (KV event numbering
 * restarts at 1 on every registration). Routers are independent: losing
 * one changes nothing for the others.
 *
 * Loop thread only, like common/rpc. */
#ifndef BT_REGISTRAR_H
#define BT_REGISTRAR_H

#include "base/status.h"
#include "registrar/resolve.h"
#include "rpc/client.h"
#include "registry.pb-c.h"

#include <event2/event.h>
#include <stdbool.h>

typedef struct bt_registrar bt_registrar_t;
/* The stream to one router. */
typedef struct bt_registrar_link bt_registrar_link_t;

typedef struct {
    /* Fill the load fields of `status` (unix_ms is set by the registrar). */
    void (*status_cb)(void *arg, Baton__V1__NodeStatus *status);
    /* Carry out a command; return BT_OK or an error with `err` filled
     * (sent back in the Ack). */
    bt_status_t (*command_cb)(void *arg, const Baton__V1__RouterCommand *cmd,
                              char *err, size_t err_size);
    /* A router accepted the hello (`up`) or its stream broke (!up). On
     * `up`, what the router must learn again goes to `link` alone. */
    void (*registered_cb)(void *arg, bt_registrar_link_t *link, bool up);
    void *arg;
} bt_registrar_cbs_t;

typedef struct {
    bt_rpc_client_t           *client;          /* makes a channel per router */
    const char                *routers;         /* the --router list */
    const bt_rpc_tls_t        *tls;             /* NULL: plaintext; copied */
    const Baton__V1__NodeHello *hello;           /* packed at create: may be freed after */
    uint32_t                   heartbeat_ms;     /* until the router says; 0 = 1000 */
    uint32_t                   reconnect_max_ms; /* backoff cap; 0 = 2000 */
    uint32_t                   resolve_ms;       /* names re-resolved; 0 = 5000 */
    bt_registrar_cbs_t         cbs;
} bt_registrar_params_t;

/* Starts resolving and connecting at once. NULL on a bad router list or
 * no memory (logged). */
bt_registrar_t *bt_registrar_create(struct event_base *base,
                                    const bt_registrar_params_t *params);
/* Ends every stream (each router drops the node) and frees. NULL-safe. */
void bt_registrar_destroy(bt_registrar_t *reg);

/* Registered with at least one router. */
bool bt_registrar_is_registered(const bt_registrar_t *reg);
/* Routers known (`n_routers`) and registered with, now. */
size_t bt_registrar_n_registered(const bt_registrar_t *reg, size_t *n_routers);

/* Sends a status message to every router now (e.g. right after draining
 * finished). */
void bt_registrar_send_status(bt_registrar_t *reg);

/* Sends KV events as one KvEvents message (each router's next sequence
 * number) to `link`, or to every registered router when `link` is NULL.
 * BT_ERR_SHUTDOWN when none of them is registered: each router learns the
 * whole cache again when it registers. */
bt_status_t bt_registrar_send_kv_events(bt_registrar_t *reg,
                                        bt_registrar_link_t *link,
                                        Baton__V1__KvEvent **events, size_t n);

/* Sends `n` events in messages of at most `per` events each, in order, to
 * `link` or to every registered router; stops at the first refusal and
 * returns it. */
bt_status_t bt_registrar_send_kv_batched(bt_registrar_t *reg,
                                         bt_registrar_link_t *link,
                                         Baton__V1__KvEvent **events, size_t n,
                                         size_t per);

/* A flexible node moved: the hello of every later registration carries
 * `role` (a baton.v1.NodeRole). */
void bt_registrar_set_role(bt_registrar_t *reg, int role);

/* The router's gRPC target, for logs. */
const char *bt_registrar_link_target(const bt_registrar_link_t *link);

#endif
