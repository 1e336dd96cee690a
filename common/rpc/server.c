/* Server lifecycle: listening ports, methods, accepting calls, graceful
 * shutdown (TOOLCHAIN: shutdown_and_notify -> its tag -> cq shutdown ->
 * drain -> server destroy -> cq destroy -> grpc_shutdown). */
#include "server_int.h"

#include "base/log.h"

#include <grpc/grpc_security.h>

#include <stdlib.h>
#include <string.h>

static void bt_rpc_server_on_new(bt_rpc_tag_t *tag, bool ok);

bt_rpc_server_t *bt_rpc_server_create(struct event_base *base,
                                      const bt_rpc_server_opts_t *opts)
{
    bt_rpc_server_t *srv;
    grpc_arg args[3];
    grpc_channel_args chargs;

    srv = calloc(1, sizeof(*srv));
    if (srv == NULL) {
        return NULL;
    }
    srv->base = base;
    bt_list_init(&srv->calls);
    srv->max_message = opts != NULL && opts->max_message_bytes != 0
                           ? opts->max_message_bytes
                           : BT_RPC_DEFAULT_MAX_MESSAGE;
    if (srv->max_message > BT_RPC_MAX_MESSAGE_LIMIT) {
        srv->max_message = BT_RPC_MAX_MESSAGE_LIMIT;
    }
    srv->send_queue_max = opts != NULL && opts->send_queue_max != 0
                              ? opts->send_queue_max
                              : BT_RPC_DEFAULT_SEND_QUEUE;
    srv->accept_slots = opts != NULL && opts->accept_slots != 0
                            ? opts->accept_slots : 4;
    srv->generic.srv = srv;
    srv->generic.kind = BT_RPC_KIND_GENERIC;
    srv->tag_shutdown.cb = NULL;
    grpc_init();

    /* gRPC enforces the receive limit itself (RESOURCE_EXHAUSTED); port
     * reuse is off so a second server cannot silently share a port. */
    args[0].type = GRPC_ARG_INTEGER;
    args[0].key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
    args[0].value.integer = (int)srv->max_message;
    args[1].type = GRPC_ARG_INTEGER;
    args[1].key = (char *)GRPC_ARG_MAX_SEND_MESSAGE_LENGTH;
    args[1].value.integer = (int)srv->max_message;
    args[2].type = GRPC_ARG_INTEGER;
    args[2].key = (char *)GRPC_ARG_ALLOW_REUSEPORT;
    args[2].value.integer = 0;
    chargs.num_args = 3;
    chargs.args = args;
    srv->server = grpc_server_create(&chargs, NULL);
    if (srv->server == NULL) {
        bt_error("rpc server: grpc_server_create failed");
        goto err_init;
    }
    if (bt_rpc_bridge_init(&srv->bridge, base) != BT_OK) {
        goto err_server;
    }
    grpc_server_register_completion_queue(srv->server, srv->bridge.cq, NULL);
    if (bt_rpc_health_install(srv, &srv->health) != BT_OK) {
        goto err_bridge;
    }
    return srv;

err_bridge:
    bt_rpc_bridge_cleanup(&srv->bridge);
err_server:
    grpc_server_destroy(srv->server);
err_init:
    grpc_shutdown();
    free(srv);
    return NULL;
}

bt_status_t bt_rpc_server_listen(bt_rpc_server_t *srv, const char *addr,
                                 const bt_rpc_tls_t *tls, int *port_p)
{
    grpc_server_credentials *creds;
    const char *bind_addr = addr;
    int port;

    if (srv->started) {
        bt_error("rpc listen %s: server already started", addr);
        return BT_ERR_INVALID_ARG;
    }
    /* The server side takes "host:port"; accept the client's URI forms. */
    if (strncmp(addr, "ipv4:", 5) == 0 || strncmp(addr, "ipv6:", 5) == 0) {
        bind_addr = addr + 5;
    }
    creds = tls != NULL ? bt_rpc_server_creds_create(tls)
                        : grpc_insecure_server_credentials_create();
    if (creds == NULL) {
        return BT_ERR_INVALID_ARG;
    }
    port = grpc_server_add_http2_port(srv->server, bind_addr, creds);
    grpc_server_credentials_release(creds);
    if (port == 0) {
        bt_error("rpc listen %s: cannot bind (in use, bad address or no "
                 "permission%s)", addr,
                 tls != NULL ? ", or a tls key that does not match its "
                               "certificate" : "");
        return BT_ERR_IO;
    }
    if (port_p != NULL) {
        *port_p = strncmp(bind_addr, "unix:", 5) == 0 ? 0 : port;
    }
    if (strncmp(bind_addr, "unix:", 5) == 0 || strrchr(addr, ':') == NULL) {
        bt_info("rpc listening on %s%s", addr, tls != NULL ? " (tls)" : "");
    } else {
        /* the bound port, not the asked one (port 0 picks a free one) */
        bt_info("rpc listening on %.*s:%d%s", (int)(strrchr(addr, ':') - addr),
                addr, port, tls != NULL ? " (tls)" : "");
    }
    return BT_OK;
}

static bt_status_t bt_rpc_server_add(bt_rpc_server_t *srv, const char *path,
                                     bt_rpc_kind_t kind,
                                     const ProtobufCMessageDescriptor *desc,
                                     bt_rpc_handler_cb handler,
                                     bt_rpc_recv_cb recv, void *arg)
{
    bt_rpc_method_t *m;

    if (srv->started || path == NULL || path[0] != '/' || desc == NULL ||
        handler == NULL || (kind == BT_RPC_KIND_BIDI && recv == NULL)) {
        bt_error("rpc add method %s: bad arguments or server started",
                 path != NULL ? path : "(null)");
        return BT_ERR_INVALID_ARG;
    }
    for (m = srv->methods; m != NULL; m = m->next) {
        if (strcmp(m->path, path) == 0) {
            bt_error("rpc add method %s: registered twice", path);
            return BT_ERR_EXISTS;
        }
    }
    m = calloc(1, sizeof(*m));
    if (m == NULL || (m->path = strdup(path)) == NULL) {
        free(m);
        return BT_ERR_NO_MEMORY;
    }
    m->srv = srv;
    m->kind = kind;
    m->desc = desc;
    m->handler = handler;
    m->recv = recv;
    m->arg = arg;
    m->handle = grpc_server_register_method(
        srv->server, m->path, NULL,
        kind == BT_RPC_KIND_BIDI ? GRPC_SRM_PAYLOAD_NONE
                                 : GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER,
        0);
    if (m->handle == NULL) {
        bt_error("rpc add method %s: grpc refused it", path);
        free(m->path);
        free(m);
        return BT_ERR_INVALID_ARG;
    }
    m->next = srv->methods;
    srv->methods = m;
    return BT_OK;
}

bt_status_t bt_rpc_server_add_unary(bt_rpc_server_t *srv, const char *path,
                                    const ProtobufCMessageDescriptor *req_desc,
                                    bt_rpc_handler_cb handler, void *arg)
{
    return bt_rpc_server_add(srv, path, BT_RPC_KIND_UNARY, req_desc, handler,
                             NULL, arg);
}

bt_status_t bt_rpc_server_add_stream(bt_rpc_server_t *srv, const char *path,
                                     const ProtobufCMessageDescriptor *req_desc,
                                     bt_rpc_handler_cb handler, void *arg)
{
    return bt_rpc_server_add(srv, path, BT_RPC_KIND_STREAM, req_desc, handler,
                             NULL, arg);
}

bt_status_t bt_rpc_server_add_bidi(bt_rpc_server_t *srv, const char *path,
                                   const ProtobufCMessageDescriptor *req_desc,
                                   bt_rpc_handler_cb start, bt_rpc_recv_cb recv,
                                   void *arg)
{
    return bt_rpc_server_add(srv, path, BT_RPC_KIND_BIDI, req_desc, start,
                             recv, arg);
}

bt_status_t bt_rpc_server_method_limit(bt_rpc_server_t *srv, const char *path,
                                       size_t max_message_bytes)
{
    for (bt_rpc_method_t *m = srv->methods; m != NULL; m = m->next) {
        if (strcmp(m->path, path) == 0) {
            m->max_message = max_message_bytes;
            return BT_OK;
        }
    }
    return BT_ERR_NOT_FOUND;
}

/* Posts one accept slot for `m`: a call struct gRPC fills when a call to
 * the method arrives. */
static bt_status_t bt_rpc_server_post(bt_rpc_server_t *srv, bt_rpc_method_t *m)
{
    bt_rpc_call_t *call = bt_rpc_call_new(srv, m);
    grpc_call_error err;

    if (call == NULL) {
        bt_error("rpc: out of memory posting an accept slot for %s",
                 m->path != NULL ? m->path : "(generic)");
        return BT_ERR_NO_MEMORY;
    }
    call->tag_new.cb = bt_rpc_server_on_new;
    if (m->kind == BT_RPC_KIND_GENERIC) {
        err = grpc_server_request_call(srv->server, &call->call,
                                       &call->details, &call->md,
                                       srv->bridge.cq, srv->bridge.cq,
                                       &call->tag_new);
    } else {
        err = grpc_server_request_registered_call(
            srv->server, m->handle, &call->call, &call->deadline, &call->md,
            m->kind == BT_RPC_KIND_BIDI ? NULL : &call->payload,
            srv->bridge.cq, srv->bridge.cq, &call->tag_new);
    }
    if (err != GRPC_CALL_OK) {
        bt_error("rpc: request_call failed with %d", (int)err);
        bt_rpc_call_free(call);
        return BT_ERR_INTERNAL;
    }
    srv->ops++;
    return BT_OK;
}

static void bt_rpc_server_on_new(bt_rpc_tag_t *tag, bool ok)
{
    bt_rpc_call_t *call = BT_RPC_CONTAINER_OF(tag, bt_rpc_call_t, tag_new);
    bt_rpc_server_t *srv = call->srv;

    srv->ops--;
    if (!ok) {
        /* Shutting down: the slot comes back unused. */
        bt_rpc_call_free(call);
        return;
    }
    if (!srv->shutdown_started) {
        bt_rpc_server_post(srv, call->method);
    }
    if (call->method->kind == BT_RPC_KIND_GENERIC) {
        call->deadline = call->details.deadline;
    }
    call->accepted = true;
    bt_list_add_head(&srv->calls, &call->link);
    srv->stats.calls_started++;
    srv->stats.calls_live++;
    bt_rpc_call_begin(call);
}

bt_status_t bt_rpc_server_start(bt_rpc_server_t *srv)
{
    bt_rpc_method_t *m;

    if (srv->started) {
        return BT_ERR_INVALID_ARG;
    }
    grpc_server_start(srv->server);
    srv->started = true;
    for (m = srv->methods; m != NULL; m = m->next) {
        for (uint32_t i = 0; i < srv->accept_slots; i++) {
            if (bt_rpc_server_post(srv, m) != BT_OK) {
                return BT_ERR_INTERNAL;
            }
        }
    }
    for (uint32_t i = 0; i < srv->accept_slots; i++) {
        if (bt_rpc_server_post(srv, &srv->generic) != BT_OK) {
            return BT_ERR_INTERNAL;
        }
    }
    return BT_OK;
}

void bt_rpc_server_set_serving(bt_rpc_server_t *srv, const char *service,
                               bool serving)
{
    bt_rpc_health_set(srv->health, service != NULL ? service : "", serving);
}

static void bt_rpc_server_on_done_event(evutil_socket_t fd, short what,
                                        void *arg)
{
    bt_rpc_server_t *srv = arg;

    if (srv->done_cb != NULL) {
        srv->done_cb(srv, srv->done_arg);
    }
}

/* Once gRPC has confirmed the shutdown and every call is gone, tell the
 * owner, from a fresh loop callback so it may destroy the server. */
static void bt_rpc_server_check_done(bt_rpc_server_t *srv)
{
    if (!srv->shutdown_notified || !bt_list_empty(&srv->calls) || srv->done_called) {
        return;
    }
    srv->done_called = true;
    if (srv->grace_timer != NULL) {
        evtimer_del(srv->grace_timer);
    }
    if (srv->done_event != NULL && !srv->destroying) {
        event_active(srv->done_event, EV_TIMEOUT, 0);
    }
}

void bt_rpc_server_call_gone(bt_rpc_server_t *srv, bt_rpc_call_t *call)
{
    if (!call->accepted) {
        return;
    }
    bt_list_del(&call->link);
    srv->stats.calls_live--;
    bt_rpc_server_check_done(srv);
}

static void bt_rpc_server_on_shutdown(bt_rpc_tag_t *tag, bool ok)
{
    bt_rpc_server_t *srv = BT_RPC_CONTAINER_OF(tag, bt_rpc_server_t,
                                               tag_shutdown);

    srv->ops--;
    srv->shutdown_notified = true;
    bt_rpc_server_check_done(srv);
}

static void bt_rpc_server_on_grace(evutil_socket_t fd, short what, void *arg)
{
    bt_rpc_server_t *srv = arg;

    if (!bt_list_empty(&srv->calls)) {
        bt_info("rpc shutdown: grace over, cancelling %u calls",
                srv->stats.calls_live);
    }
    grpc_server_cancel_all_calls(srv->server);
}

void bt_rpc_server_shutdown(bt_rpc_server_t *srv, uint64_t grace_ms,
                            bt_rpc_server_done_cb done_cb, void *arg)
{
    struct timeval tv;

    if (srv->shutdown_started) {
        return;
    }
    srv->shutdown_started = true;
    srv->done_cb = done_cb;
    srv->done_arg = arg;
    bt_rpc_health_shutdown(srv->health);
    srv->done_event = event_new(srv->base, -1, 0, bt_rpc_server_on_done_event,
                                srv);
    srv->grace_timer = evtimer_new(srv->base, bt_rpc_server_on_grace, srv);
    /* Also for a server never started: grpc_server_destroy wants it. */
    srv->tag_shutdown.cb = bt_rpc_server_on_shutdown;
    srv->ops++;
    grpc_server_shutdown_and_notify(srv->server, srv->bridge.cq,
                                    &srv->tag_shutdown);
    tv.tv_sec = (time_t)(grace_ms / 1000);
    tv.tv_usec = (suseconds_t)(grace_ms % 1000) * 1000;
    if (srv->grace_timer != NULL) {
        evtimer_add(srv->grace_timer, &tv);
    }
}

void bt_rpc_server_destroy(bt_rpc_server_t *srv)
{
    bt_rpc_method_t *m, *next;
    bt_rpc_call_t *call;
    uint64_t waited_ms = 0;

    if (srv == NULL) {
        return;
    }
    srv->destroying = true;
    if (!srv->shutdown_started) {
        bt_rpc_server_shutdown(srv, 0, NULL, NULL);
    }
    if (srv->started) {
        grpc_server_cancel_all_calls(srv->server);
    }
    /* Every operation comes back once the calls are cancelled. */
    while (srv->ops > 0 && waited_ms < 30000) {
        if (bt_rpc_bridge_run(&srv->bridge, 100) == 0) {
            waited_ms += 100;
        }
    }
    if (srv->ops > 0) {
        bt_error("rpc server destroy: %d operations never came back", srv->ops);
    }
    /* Calls a handler still holds live on, detached, until it ends them. */
    while (!bt_list_empty(&srv->calls)) {
        call = BT_CONTAINER_OF(srv->calls.next, bt_rpc_call_t, link);
        bt_rpc_server_call_gone(srv, call);
        call->srv = NULL;
        call->cancelled = true;
        if (call->call != NULL) {
            grpc_call_unref(call->call);
            call->call = NULL;
        }
    }
    bt_rpc_health_destroy(srv->health);
    grpc_server_destroy(srv->server);
    bt_rpc_bridge_cleanup(&srv->bridge);
    for (m = srv->methods; m != NULL; m = next) {
        next = m->next;
        free(m->path);
        free(m);
    }
    if (srv->grace_timer != NULL) {
        event_free(srv->grace_timer);
    }
    if (srv->done_event != NULL) {
        event_free(srv->done_event);
    }
    grpc_shutdown();
    free(srv);
}

uint32_t bt_rpc_server_answers_pending(bt_rpc_server_t *srv)
{
    bt_list_t *it, *next;
    const bt_rpc_call_t *call;
    uint32_t n = 0;

    if (srv == NULL) {
        return 0;
    }
    bt_list_foreach_safe(it, next, &srv->calls) {
        call = BT_CONTAINER_OF(it, bt_rpc_call_t, link);
        /* an ended call leaves the list once gRPC closed its stream */
        if (call->ended && !call->cancelled && !call->broken) {
            n++;
        }
    }
    return n;
}

void bt_rpc_server_get_stats(const bt_rpc_server_t *srv,
                             bt_rpc_server_stats_t *stats_p)
{
    *stats_p = srv->stats;
}
