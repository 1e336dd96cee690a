/* A cluster member's registration with the router (DESIGN §2,
 * registry.proto): serving nodes (common/node) and kvstore replicas
 * (kvstore/reg.c) alike keep one Register stream for their whole life. Hello first; once the router
 * acknowledges, status heartbeats at the interval it asks for, KV events
 * as they happen, and commands (drain, undrain, flush, cancel) coming
 * down, each answered with an Ack. When the stream breaks (router
 * restarted, network) the registrar reconnects with backoff and calls
 * `registered_cb` again, so the node can re-announce its cached blocks
 * (KV event numbering restarts at 1 on every registration).
 *
 * Loop thread only, like common/rpc. */
#ifndef BT_REGISTRAR_H
#define BT_REGISTRAR_H

#include "base/status.h"
#include "rpc/client.h"
#include "registry.pb-c.h"

#include <event2/event.h>
#include <stdbool.h>

typedef struct bt_registrar bt_registrar_t;

typedef struct {
    /* Fill the load fields of `status` (unix_ms is set by the registrar). */
    void (*status_cb)(void *arg, Baton__V1__NodeStatus *status);
    /* Carry out a command; return BT_OK or an error with `err` filled
     * (sent back in the Ack). */
    bt_status_t (*command_cb)(void *arg, const Baton__V1__RouterCommand *cmd,
                              char *err, size_t err_size);
    /* The router accepted the hello (`up`) or the stream broke (!up). */
    void (*registered_cb)(void *arg, bool up);
    void *arg;
} bt_registrar_cbs_t;

typedef struct {
    bt_rpc_channel_t          *router;          /* channel to the router */
    const Baton__V1__NodeHello *hello;           /* packed at create: may be freed after */
    uint32_t                   heartbeat_ms;     /* until the router says; 0 = 1000 */
    uint32_t                   reconnect_max_ms; /* backoff cap; 0 = 2000 */
    bt_registrar_cbs_t         cbs;
} bt_registrar_params_t;

/* Starts connecting at once. NULL on failure (logged). */
bt_registrar_t *bt_registrar_create(struct event_base *base,
                                    const bt_registrar_params_t *params);
/* Ends the stream (the router drops the node) and frees. NULL-safe. */
void bt_registrar_destroy(bt_registrar_t *reg);

bool bt_registrar_is_registered(const bt_registrar_t *reg);

/* Sends a status message now (e.g. right after draining finished). */
void bt_registrar_send_status(bt_registrar_t *reg);

/* Sends KV events (one KvEvents message, the next sequence number).
 * Dropped while not registered: the node re-announces on registration. */
bt_status_t bt_registrar_send_kv_events(bt_registrar_t *reg,
                                        Baton__V1__KvEvent **events, size_t n);

#endif
