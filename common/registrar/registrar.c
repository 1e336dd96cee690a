#include "registrar/registrar.h"

#include "base/clock.h"
#include "base/log.h"

#include <stdlib.h>
#include <string.h>

#define BT_REGISTRAR_MAX_HELLO (1u << 20)

struct bt_registrar {
    struct event_base     *base;
    bt_rpc_channel_t      *router;
    uint8_t               *hello_buf;     /* the packed hello */
    size_t                 hello_len;
    char                   node_id[65];
    bt_registrar_cbs_t     cbs;
    uint32_t               heartbeat_ms;
    uint32_t               default_heartbeat_ms;
    uint32_t               backoff_ms;
    bool                   refusal_logged; /* since the last registration */
    uint32_t               reconnect_max_ms;
    bt_rpc_client_call_t  *call;          /* the live stream, or NULL */
    bool                   registered;
    bool                   closing;
    uint64_t               kv_seq;
    struct event          *heartbeat_ev;
    struct event          *reconnect_ev;
};

static void bt_registrar_connect(bt_registrar_t *reg);

static void bt_registrar_free(bt_registrar_t *reg)
{
    if (reg->heartbeat_ev != NULL) {
        event_free(reg->heartbeat_ev);
    }
    if (reg->reconnect_ev != NULL) {
        event_free(reg->reconnect_ev);
    }
    free(reg->hello_buf);
    free(reg);
}

static void bt_registrar_send(bt_registrar_t *reg, const Baton__V1__NodeMessage *msg)
{
    bt_status_t s;

    if (reg->call == NULL) {
        return;
    }
    s = bt_rpc_client_call_send(reg->call, &msg->base);
    if (s != BT_OK) {
        bt_warn("registrar: send to the router failed: %s", bt_status_str(s));
    }
}

void bt_registrar_send_status(bt_registrar_t *reg)
{
    Baton__V1__NodeMessage msg = BATON__V1__NODE_MESSAGE__INIT;
    Baton__V1__NodeStatus st = BATON__V1__NODE_STATUS__INIT;

    if (!reg->registered) {
        return;
    }
    if (reg->cbs.status_cb != NULL) {
        reg->cbs.status_cb(reg->cbs.arg, &st);
    }
    st.unix_ms = bt_wall_ms();
    msg.kind_case = BATON__V1__NODE_MESSAGE__KIND_STATUS;
    msg.status = &st;
    bt_registrar_send(reg, &msg);
}

static void bt_registrar_heartbeat_cb(evutil_socket_t fd, short what, void *arg)
{
    bt_registrar_t *reg = arg;
    struct timeval tv = { reg->heartbeat_ms / 1000,
                          (reg->heartbeat_ms % 1000) * 1000 };

    (void)fd;
    (void)what;
    bt_registrar_send_status(reg);
    if (reg->registered) {
        evtimer_add(reg->heartbeat_ev, &tv);
    }
}

static void bt_registrar_ack(bt_registrar_t *reg, uint64_t command_id,
                             bt_status_t status, const char *err)
{
    Baton__V1__NodeMessage msg = BATON__V1__NODE_MESSAGE__INIT;
    Baton__V1__Ack ack = BATON__V1__ACK__INIT;

    ack.command_id = command_id;
    ack.ok = status == BT_OK;
    ack.error = (char *)(status == BT_OK ? "" : err);
    msg.kind_case = BATON__V1__NODE_MESSAGE__KIND_ACK;
    msg.ack = &ack;
    bt_registrar_send(reg, &msg);
}

static void bt_registrar_on_msg(void *arg, const ProtobufCMessage *m)
{
    bt_registrar_t *reg = arg;
    const Baton__V1__RouterMessage *msg = (const Baton__V1__RouterMessage *)m;

    if (msg->kind_case == BATON__V1__ROUTER_MESSAGE__KIND_ACK) {
        struct timeval tv;

        if (!msg->ack->ok) {
            bt_error("registrar: the router refused node %s: %s", reg->node_id,
                     msg->ack->error ? msg->ack->error : "");
            bt_rpc_client_call_cancel(reg->call);
            return;
        }
        if (reg->registered) {
            return;
        }
        reg->registered = true;
        reg->kv_seq = 0;
        reg->backoff_ms = 0;
        reg->refusal_logged = false;
        if (msg->heartbeat_interval_ms >= 10 && msg->heartbeat_interval_ms <= 60000) {
            reg->heartbeat_ms = msg->heartbeat_interval_ms;
        }
        bt_info("registered node %s with the router (heartbeat %u ms)",
                reg->node_id, reg->heartbeat_ms);
        if (reg->cbs.registered_cb != NULL) {
            reg->cbs.registered_cb(reg->cbs.arg, true);
        }
        bt_registrar_send_status(reg);
        tv.tv_sec = reg->heartbeat_ms / 1000;
        tv.tv_usec = (reg->heartbeat_ms % 1000) * 1000;
        evtimer_add(reg->heartbeat_ev, &tv);
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
        bt_registrar_ack(reg, msg->command->command_id, s, err);
    }
}

static void bt_registrar_reconnect_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    bt_registrar_connect(arg);
}

static void bt_registrar_on_done(void *arg, const bt_rpc_result_t *result)
{
    bt_registrar_t *reg = arg;
    bool was = reg->registered;
    struct timeval tv;

    reg->call = NULL;
    reg->registered = false;
    if (reg->closing) { /* destroy was waiting for this callback */
        bt_registrar_free(reg);
        return;
    }
    evtimer_del(reg->heartbeat_ev);
    if (was) {
        bt_warn("registrar: stream to the router ended (%s: %s); reconnecting",
                bt_rpc_code_name(result->code), result->message);
        if (reg->cbs.registered_cb != NULL) {
            reg->cbs.registered_cb(reg->cbs.arg, false);
        }
    } else if ((result->code == BT_RPC_UNAUTHENTICATED ||
                result->code == BT_RPC_PERMISSION_DENIED) &&
               !reg->refusal_logged) {
        /* the credential (docs/security.md): say it once, retries go on */
        reg->refusal_logged = true;
        bt_warn("registrar: the router refuses this node (%s: %s); retrying",
                bt_rpc_code_name(result->code), result->message);
    } else {
        bt_debug("registrar: cannot register yet (%s: %s)",
                 bt_rpc_code_name(result->code), result->message);
    }
    reg->backoff_ms = reg->backoff_ms == 0 ? 100 : reg->backoff_ms * 2;
    if (reg->backoff_ms > reg->reconnect_max_ms) {
        reg->backoff_ms = reg->reconnect_max_ms;
    }
    tv.tv_sec = reg->backoff_ms / 1000;
    tv.tv_usec = (reg->backoff_ms % 1000) * 1000;
    evtimer_add(reg->reconnect_ev, &tv);
}

static void bt_registrar_connect(bt_registrar_t *reg)
{
    Baton__V1__NodeMessage *hello;
    bt_status_t s;

    s = bt_rpc_client_bidi(reg->router, "/baton.v1.Registry/Register",
                           &baton__v1__router_message__descriptor, NULL,
                           bt_registrar_on_msg, bt_registrar_on_done, reg,
                           &reg->call);
    if (s != BT_OK) {
        bt_rpc_result_t r = { BT_RPC_UNAVAILABLE, s, "cannot start the call" };

        reg->call = NULL;
        bt_registrar_on_done(reg, &r);
        return;
    }
    hello = baton__v1__node_message__unpack(NULL, reg->hello_len, reg->hello_buf);
    if (hello == NULL) {
        bt_error("registrar: cannot unpack the hello");
        bt_rpc_client_call_cancel(reg->call);
        return;
    }
    bt_registrar_send(reg, hello);
    baton__v1__node_message__free_unpacked(hello, NULL);
}

bt_registrar_t *bt_registrar_create(struct event_base *base,
                                    const bt_registrar_params_t *params)
{
    Baton__V1__NodeMessage msg = BATON__V1__NODE_MESSAGE__INIT;
    bt_registrar_t *reg = calloc(1, sizeof(*reg));

    if (reg == NULL) {
        return NULL;
    }
    reg->base = base;
    reg->router = params->router;
    reg->cbs = params->cbs;
    reg->default_heartbeat_ms = params->heartbeat_ms ? params->heartbeat_ms : 1000;
    reg->heartbeat_ms = reg->default_heartbeat_ms;
    reg->reconnect_max_ms = params->reconnect_max_ms ? params->reconnect_max_ms
                                                     : 2000;
    snprintf(reg->node_id, sizeof(reg->node_id), "%s",
             params->hello->node_id ? params->hello->node_id : "");
    msg.kind_case = BATON__V1__NODE_MESSAGE__KIND_HELLO;
    msg.hello = (Baton__V1__NodeHello *)params->hello;
    reg->hello_len = baton__v1__node_message__get_packed_size(&msg);
    if (reg->hello_len > BT_REGISTRAR_MAX_HELLO) {
        bt_error("registrar: hello of %zu bytes is too large", reg->hello_len);
        free(reg);
        return NULL;
    }
    reg->hello_buf = malloc(reg->hello_len ? reg->hello_len : 1);
    reg->heartbeat_ev = evtimer_new(base, bt_registrar_heartbeat_cb, reg);
    reg->reconnect_ev = evtimer_new(base, bt_registrar_reconnect_cb, reg);
    if (reg->hello_buf == NULL || reg->heartbeat_ev == NULL ||
        reg->reconnect_ev == NULL) {
        bt_registrar_destroy(reg);
        return NULL;
    }
    baton__v1__node_message__pack(&msg, reg->hello_buf);
    bt_registrar_connect(reg);
    return reg;
}

void bt_registrar_destroy(bt_registrar_t *reg)
{
    if (reg == NULL) {
        return;
    }
    reg->closing = true;
    if (reg->call != NULL) {
        /* the call's done callback follows (after the cancel, or from
         * bt_rpc_client_destroy) and frees the registrar then */
        evtimer_del(reg->heartbeat_ev);
        evtimer_del(reg->reconnect_ev);
        bt_rpc_client_call_cancel(reg->call);
        return;
    }
    bt_registrar_free(reg);
}

bool bt_registrar_is_registered(const bt_registrar_t *reg)
{
    return reg->registered;
}

bt_status_t bt_registrar_send_kv_events(bt_registrar_t *reg,
                                        Baton__V1__KvEvent **events, size_t n)
{
    Baton__V1__NodeMessage msg = BATON__V1__NODE_MESSAGE__INIT;
    Baton__V1__KvEvents kv = BATON__V1__KV_EVENTS__INIT;

    if (!reg->registered) {
        return BT_ERR_SHUTDOWN;
    }
    kv.seq = ++reg->kv_seq;
    kv.n_events = n;
    kv.events = events;
    msg.kind_case = BATON__V1__NODE_MESSAGE__KIND_KV_EVENTS;
    msg.kv_events = &kv;
    bt_registrar_send(reg, &msg);
    return BT_OK;
}
