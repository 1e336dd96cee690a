/* The Register stream to one router: hello, then heartbeats at the
 * router's interval, commands answered with Acks, and a reconnect with
 * backoff whenever the stream ends. */
#include "registrar_int.h"

#include "base/clock.h"
#include "base/log.h"

#include <stdlib.h>
#include <string.h>

static void bt_registrar_link_connect(bt_registrar_link_t *link);

static void bt_registrar_link_free(bt_registrar_link_t *link)
{
    if (link->heartbeat_ev != NULL) {
        event_free(link->heartbeat_ev);
    }
    if (link->reconnect_ev != NULL) {
        event_free(link->reconnect_ev);
    }
    bt_rpc_channel_destroy(link->ch);
    free(link->target);
    free(link->tls_name);
    free(link);
}

static void bt_registrar_link_send(bt_registrar_link_t *link,
                                   const Baton__V1__NodeMessage *msg)
{
    bt_status_t s;

    if (link->call == NULL) {
        return;
    }
    s = bt_rpc_client_call_send(link->call, &msg->base);
    if (s != BT_OK) {
        bt_warn("registrar: send to the router %s failed: %s", link->target,
                bt_status_str(s));
    }
}

void bt_registrar_link_send_status(bt_registrar_link_t *link)
{
    Baton__V1__NodeMessage msg = BATON__V1__NODE_MESSAGE__INIT;
    Baton__V1__NodeStatus st = BATON__V1__NODE_STATUS__INIT;
    bt_registrar_t *reg = link->reg;

    if (!link->registered) {
        return;
    }
    if (reg->cbs.status_cb != NULL) {
        reg->cbs.status_cb(reg->cbs.arg, &st);
    }
    st.unix_ms = bt_wall_ms();
    msg.kind_case = BATON__V1__NODE_MESSAGE__KIND_STATUS;
    msg.status = &st;
    bt_registrar_link_send(link, &msg);
}

void bt_registrar_link_send_kv_events(bt_registrar_link_t *link,
                                      Baton__V1__KvEvent **events, size_t n)
{
    Baton__V1__NodeMessage msg = BATON__V1__NODE_MESSAGE__INIT;
    Baton__V1__KvEvents kv = BATON__V1__KV_EVENTS__INIT;

    if (!link->registered) {
        return;
    }
    kv.seq = ++link->kv_seq;
    kv.n_events = n;
    kv.events = events;
    msg.kind_case = BATON__V1__NODE_MESSAGE__KIND_KV_EVENTS;
    msg.kv_events = &kv;
    bt_registrar_link_send(link, &msg);
}

static void bt_registrar_link_heartbeat_cb(evutil_socket_t fd, short what,
                                           void *arg)
{
    bt_registrar_link_t *link = arg;
    struct timeval tv = { link->heartbeat_ms / 1000,
                          (link->heartbeat_ms % 1000) * 1000 };

    (void)fd;
    (void)what;
    bt_registrar_link_send_status(link);
    if (link->registered) {
        evtimer_add(link->heartbeat_ev, &tv);
    }
}

static void bt_registrar_link_ack(bt_registrar_link_t *link, uint64_t command_id,
                                  bt_status_t status, const char *err)
{
    Baton__V1__NodeMessage msg = BATON__V1__NODE_MESSAGE__INIT;
    Baton__V1__Ack ack = BATON__V1__ACK__INIT;

    ack.command_id = command_id;
    ack.ok = status == BT_OK;
    ack.error = (char *)(status == BT_OK ? "" : err);
    msg.kind_case = BATON__V1__NODE_MESSAGE__KIND_ACK;
    msg.ack = &ack;
    bt_registrar_link_send(link, &msg);
}

static void bt_registrar_link_on_msg(void *arg, const ProtobufCMessage *m)
{
    bt_registrar_link_t *link = arg;
    bt_registrar_t *reg = link->reg;
    const Baton__V1__RouterMessage *msg = (const Baton__V1__RouterMessage *)m;

    if (msg->kind_case == BATON__V1__ROUTER_MESSAGE__KIND_ACK) {
        struct timeval tv;

        if (!msg->ack->ok) {
            bt_error("registrar: the router %s refused node %s: %s",
                     link->target, reg->node_id,
                     msg->ack->error ? msg->ack->error : "");
            bt_rpc_client_call_cancel(link->call);
            return;
        }
        if (link->registered) {
            return;
        }
        link->registered = true;
        link->kv_seq = 0;
        link->backoff_ms = 0;
        link->refusal_logged = false;
        if (msg->heartbeat_interval_ms >= 10 &&
            msg->heartbeat_interval_ms <= 60000) {
            link->heartbeat_ms = msg->heartbeat_interval_ms;
        }
        bt_info("registered node %s with the router %s (heartbeat %u ms)",
                reg->node_id, link->target, link->heartbeat_ms);
        if (reg->cbs.registered_cb != NULL) {
            reg->cbs.registered_cb(reg->cbs.arg, link, true);
        }
        bt_registrar_link_send_status(link);
        tv.tv_sec = link->heartbeat_ms / 1000;
        tv.tv_usec = (link->heartbeat_ms % 1000) * 1000;
        evtimer_add(link->heartbeat_ev, &tv);
        return;
    }
    if (msg->kind_case == BATON__V1__ROUTER_MESSAGE__KIND_COMMAND) {
        char err[256] = "";
        bt_status_t s = BT_ERR_UNSUPPORTED;

        if (reg->cbs.command_cb != NULL) {
            s = reg->cbs.command_cb(reg->cbs.arg, msg->command, err, sizeof(err));
        } else {
            snprintf(err, sizeof(err), "commands are not handled here");
        }
        bt_registrar_link_ack(link, msg->command->command_id, s, err);
    }
}

static void bt_registrar_link_reconnect_cb(evutil_socket_t fd, short what,
                                           void *arg)
{
    (void)fd;
    (void)what;
    bt_registrar_link_connect(arg);
}

static void bt_registrar_link_on_done(void *arg, const bt_rpc_result_t *result)
{
    bt_registrar_link_t *link = arg;
    bt_registrar_t *reg = link->reg;
    bool was = link->registered;
    struct timeval tv;

    link->call = NULL;
    link->registered = false;
    if (link->closing) {   /* close was waiting for this callback */
        bt_registrar_link_free(link);
        return;
    }
    evtimer_del(link->heartbeat_ev);
    if (was) {
        bt_warn("registrar: stream to the router %s ended (%s: %s); "
                "reconnecting", link->target, bt_rpc_code_name(result->code),
                result->message);
        if (reg->cbs.registered_cb != NULL) {
            reg->cbs.registered_cb(reg->cbs.arg, link, false);
        }
    } else if ((result->code == BT_RPC_UNAUTHENTICATED ||
                result->code == BT_RPC_PERMISSION_DENIED) &&
               !link->refusal_logged) {
        /* the credential (docs/security.md): say it once, retries go on */
        link->refusal_logged = true;
        bt_warn("registrar: the router refuses this node (%s: %s) at %s; "
                "retrying", bt_rpc_code_name(result->code), result->message,
                link->target);
    } else {
        bt_debug("registrar: cannot register with %s yet (%s: %s)",
                 link->target, bt_rpc_code_name(result->code), result->message);
    }
    link->backoff_ms = link->backoff_ms == 0 ? 100 : link->backoff_ms * 2;
    if (link->backoff_ms > reg->reconnect_max_ms) {
        link->backoff_ms = reg->reconnect_max_ms;
    }
    tv.tv_sec = link->backoff_ms / 1000;
    tv.tv_usec = (link->backoff_ms % 1000) * 1000;
    evtimer_add(link->reconnect_ev, &tv);
}

static void bt_registrar_link_connect(bt_registrar_link_t *link)
{
    bt_registrar_t *reg = link->reg;
    Baton__V1__NodeMessage *hello;
    bt_status_t s;

    s = bt_rpc_client_bidi(link->ch, "/baton.v1.Registry/Register",
                           &baton__v1__router_message__descriptor, NULL,
                           bt_registrar_link_on_msg, bt_registrar_link_on_done,
                           link, &link->call);
    if (s != BT_OK) {
        bt_rpc_result_t r = { BT_RPC_UNAVAILABLE, s, "cannot start the call" };

        link->call = NULL;
        bt_registrar_link_on_done(link, &r);
        return;
    }
    hello = baton__v1__node_message__unpack(NULL, reg->hello_len, reg->hello_buf);
    if (hello == NULL) {
        bt_error("registrar: cannot unpack the hello");
        bt_rpc_client_call_cancel(link->call);
        return;
    }
    bt_registrar_link_send(link, hello);
    baton__v1__node_message__free_unpacked(hello, NULL);
}

bt_registrar_link_t *bt_registrar_link_create(bt_registrar_t *reg,
                                              const bt_router_addr_t *addr)
{
    bt_registrar_link_t *link = calloc(1, sizeof(*link));
    bt_rpc_tls_t tls = reg->tls;

    if (link == NULL) {
        return NULL;
    }
    bt_list_init(&link->node);
    link->reg = reg;
    link->heartbeat_ms = reg->default_heartbeat_ms;
    link->target = strdup(addr->target);
    link->tls_name = addr->tls_name != NULL ? strdup(addr->tls_name) : NULL;
    link->heartbeat_ev = evtimer_new(reg->base, bt_registrar_link_heartbeat_cb,
                                     link);
    link->reconnect_ev = evtimer_new(reg->base, bt_registrar_link_reconnect_cb,
                                     link);
    if (link->target == NULL || (addr->tls_name != NULL && link->tls_name == NULL) ||
        link->heartbeat_ev == NULL || link->reconnect_ev == NULL) {
        bt_registrar_link_free(link);
        return NULL;
    }
    /* a router found through a name shows the name's certificate, unless
     * --tls-server-name says otherwise */
    if (tls.target_name == NULL) {
        tls.target_name = link->tls_name;
    }
    link->ch = bt_rpc_channel_create(reg->client, link->target,
                                     reg->tls_on ? &tls : NULL);
    if (link->ch == NULL) {
        bt_error("registrar: cannot create a channel to the router %s",
                 link->target);
        bt_registrar_link_free(link);
        return NULL;
    }
    bt_list_add_tail(&reg->links, &link->node);
    bt_registrar_link_connect(link);
    return link;
}

void bt_registrar_link_close(bt_registrar_link_t *link)
{
    bt_list_del(&link->node);
    link->closing = true;
    if (link->call != NULL) {
        /* the call's done callback follows (after the cancel, or from
         * bt_rpc_client_destroy) and frees the link then */
        evtimer_del(link->heartbeat_ev);
        evtimer_del(link->reconnect_ev);
        bt_rpc_client_call_cancel(link->call);
        return;
    }
    bt_registrar_link_free(link);
}

const char *bt_registrar_link_target(const bt_registrar_link_t *link)
{
    return link->target;
}
