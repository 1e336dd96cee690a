/* The routers as a set: the resolver's answer turned into one link per
 * router (links for routers that went away are closed, new ones opened),
 * and status and KV events fanned out to every registered link. */
#include "registrar_int.h"

#include "base/log.h"

#include <stdlib.h>
#include <string.h>

#define BT_REGISTRAR_MAX_HELLO (1u << 20)

static bt_registrar_link_t *bt_registrar_find(bt_registrar_t *reg,
                                              const char *target)
{
    bt_list_t *it, *next;

    bt_list_foreach_safe(it, next, &reg->links) {
        bt_registrar_link_t *l = BT_CONTAINER_OF(it, bt_registrar_link_t, node);

        if (strcmp(l->target, target) == 0) {
            return l;
        }
    }
    return NULL;
}

static void bt_registrar_resolved(void *arg, const bt_router_addr_t *addrs,
                                  size_t n)
{
    bt_registrar_t *reg = arg;
    bt_list_t *it, *next;

    bt_list_foreach_safe(it, next, &reg->links) {
        bt_registrar_link_t *l = BT_CONTAINER_OF(it, bt_registrar_link_t, node);
        bool kept = false;

        for (size_t i = 0; i < n && !kept; i++) {
            kept = strcmp(addrs[i].target, l->target) == 0;
        }
        if (!kept) {
            bt_info("router %s is gone from the router list: leaving it",
                    l->target);
            bt_registrar_link_close(l);
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (bt_registrar_find(reg, addrs[i].target) != NULL) {
            continue;
        }
        if (!bt_list_empty(&reg->links) || i > 0) {
            bt_info("router %s found: registering with it", addrs[i].target);
        }
        if (bt_registrar_link_create(reg, &addrs[i]) == NULL) {
            bt_warn("cannot register with the router %s now; trying again "
                    "on the next resolution", addrs[i].target);
        }
    }
}

bt_registrar_t *bt_registrar_create(struct event_base *base,
                                    const bt_registrar_params_t *params)
{
    Baton__V1__NodeMessage msg = BATON__V1__NODE_MESSAGE__INIT;
    bt_registrar_t *reg = calloc(1, sizeof(*reg));

    if (reg == NULL) {
        return NULL;
    }
    bt_list_init(&reg->links);
    reg->base = base;
    reg->client = params->client;
    if (params->tls != NULL) {
        reg->tls = *params->tls;
        reg->tls_on = true;
    }
    reg->cbs = params->cbs;
    reg->default_heartbeat_ms = params->heartbeat_ms ? params->heartbeat_ms : 1000;
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
    if (reg->hello_buf == NULL) {
        free(reg);
        return NULL;
    }
    baton__v1__node_message__pack(&msg, reg->hello_buf);
    reg->resolver = bt_resolver_create(base, params->routers, params->resolve_ms,
                                       bt_registrar_resolved, reg);
    if (reg->resolver == NULL) {
        free(reg->hello_buf);
        free(reg);
        return NULL;
    }
    return reg;
}

void bt_registrar_destroy(bt_registrar_t *reg)
{
    bt_list_t *it, *next;

    if (reg == NULL) {
        return;
    }
    bt_resolver_destroy(reg->resolver);
    /* each link frees itself once its call ended; none calls back into
     * the registrar after close */
    bt_list_foreach_safe(it, next, &reg->links) {
        bt_registrar_link_close(BT_CONTAINER_OF(it, bt_registrar_link_t, node));
    }
    free(reg->hello_buf);
    free(reg);
}

void bt_registrar_set_role(bt_registrar_t *reg, int role)
{
    Baton__V1__NodeMessage *msg =
        baton__v1__node_message__unpack(NULL, reg->hello_len, reg->hello_buf);
    uint8_t *buf;
    size_t len;

    if (msg == NULL || msg->hello == NULL) {
        bt_error("registrar: cannot unpack the hello to set its role");
        baton__v1__node_message__free_unpacked(msg, NULL);
        return;
    }
    msg->hello->role = (Baton__V1__NodeRole)role;
    len = baton__v1__node_message__get_packed_size(msg);
    if ((buf = malloc(len ? len : 1)) != NULL) {
        baton__v1__node_message__pack(msg, buf);
        free(reg->hello_buf);
        reg->hello_buf = buf;
        reg->hello_len = len;
    }
    baton__v1__node_message__free_unpacked(msg, NULL);
}

size_t bt_registrar_n_registered(const bt_registrar_t *reg, size_t *n_routers)
{
    const bt_list_t *it;
    size_t n = 0, all = 0;

    for (it = reg->links.next; it != &reg->links; it = it->next) {
        all++;
        n += BT_CONTAINER_OF(it, bt_registrar_link_t, node)->registered;
    }
    if (n_routers != NULL) {
        *n_routers = all;
    }
    return n;
}

bool bt_registrar_is_registered(const bt_registrar_t *reg)
{
    return bt_registrar_n_registered(reg, NULL) > 0;
}

void bt_registrar_send_status(bt_registrar_t *reg)
{
    bt_list_t *it, *next;

    bt_list_foreach_safe(it, next, &reg->links) {
        bt_registrar_link_send_status(
            BT_CONTAINER_OF(it, bt_registrar_link_t, node));
    }
}

bt_status_t bt_registrar_send_kv_events(bt_registrar_t *reg,
                                        bt_registrar_link_t *link,
                                        Baton__V1__KvEvent **events, size_t n)
{
    bt_list_t *it, *next;
    bool sent = false;

    if (link != NULL) {
        if (!link->registered) {
            return BT_ERR_SHUTDOWN;
        }
        bt_registrar_link_send_kv_events(link, events, n);
        return BT_OK;
    }
    bt_list_foreach_safe(it, next, &reg->links) {
        bt_registrar_link_t *l = BT_CONTAINER_OF(it, bt_registrar_link_t, node);

        if (l->registered) {
            bt_registrar_link_send_kv_events(l, events, n);
            sent = true;
        }
    }
    return sent ? BT_OK : BT_ERR_SHUTDOWN;
}

bt_status_t bt_registrar_send_kv_batched(bt_registrar_t *reg,
                                         bt_registrar_link_t *link,
                                         Baton__V1__KvEvent **events, size_t n,
                                         size_t per)
{
    bt_status_t s = BT_OK;

    for (size_t i = 0; i < n && s == BT_OK; i += per) {
        s = bt_registrar_send_kv_events(reg, link, events + i,
                                        n - i < per ? n - i : per);
    }
    return s;
}
