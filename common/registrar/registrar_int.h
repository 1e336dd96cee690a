/* Internals shared by registrar.c (the routers as a set) and
 * registrar_link.c (the stream to one router). */
#ifndef BT_REGISTRAR_INT_H
#define BT_REGISTRAR_INT_H

#include "base/list.h"
#include "registrar/registrar.h"

struct bt_registrar_link {
    bt_list_t              node;          /* in reg->links */
    bt_registrar_t        *reg;
    char                  *target;
    char                  *tls_name;      /* certificate name, or NULL */
    bt_rpc_channel_t      *ch;
    bt_rpc_client_call_t  *call;          /* the live stream, or NULL */
    bool                   registered;
    bool                   closing;       /* freed when the call ends */
    uint64_t               kv_seq;
    uint32_t               heartbeat_ms;
    uint32_t               backoff_ms;
    bool                   refusal_logged; /* since the last registration */
    struct event          *heartbeat_ev;
    struct event          *reconnect_ev;
};

struct bt_registrar {
    struct event_base     *base;
    bt_rpc_client_t       *client;
    bt_rpc_tls_t           tls;
    bool                   tls_on;
    uint8_t               *hello_buf;     /* the packed hello */
    size_t                 hello_len;
    char                   node_id[65];
    bt_registrar_cbs_t     cbs;
    uint32_t               default_heartbeat_ms;
    uint32_t               reconnect_max_ms;
    bt_resolver_t         *resolver;
    bt_list_t              links;
};

/* registrar_link.c: a link starts connecting at create and reconnects
 * until closed; close ends its stream and frees it once the call ended. */
bt_registrar_link_t *bt_registrar_link_create(bt_registrar_t *reg,
                                              const bt_router_addr_t *addr);
void bt_registrar_link_close(bt_registrar_link_t *link);
void bt_registrar_link_send_status(bt_registrar_link_t *link);
void bt_registrar_link_send_kv_events(bt_registrar_link_t *link,
                                      Baton__V1__KvEvent **events, size_t n);

#endif
