/* grpc.health.v1.Health on every server: Check (unary) and Watch (server
 * streaming), with the status the daemon sets per service name. */
#include "server_int.h"

#include "base/log.h"
#include "grpc/health/v1/health.pb-c.h"

#include <stdlib.h>
#include <string.h>

#define BT_RPC_HEALTH_MAX_SERVICES 64
#define BT_RPC_HEALTH_MAX_WATCHERS 256
#define BT_RPC_HEALTH_NAME_MAX     200

typedef Grpc__Health__V1__HealthCheckResponse__ServingStatus bt_rpc_serving_t;

typedef struct {
    char            *name;
    bt_rpc_serving_t status;
} bt_rpc_health_entry_t;

typedef struct bt_rpc_watcher {
    struct bt_rpc_watcher *next;
    bt_rpc_health_t       *health;
    bt_rpc_call_t         *call;
    char                  *service;
    bt_rpc_serving_t       last;     /* last status sent */
} bt_rpc_watcher_t;

struct bt_rpc_health {
    bt_rpc_health_entry_t entries[BT_RPC_HEALTH_MAX_SERVICES];
    size_t                n_entries;
    bt_rpc_watcher_t     *watchers;
    size_t                n_watchers;
    bool                  shut;
};

static bt_rpc_health_entry_t *bt_rpc_health_find(bt_rpc_health_t *h,
                                                 const char *name)
{
    for (size_t i = 0; i < h->n_entries; i++) {
        if (strcmp(h->entries[i].name, name) == 0) {
            return &h->entries[i];
        }
    }
    return NULL;
}

static bt_rpc_serving_t bt_rpc_health_status(bt_rpc_health_t *h,
                                             const char *name, bool *known_p)
{
    bt_rpc_health_entry_t *e = bt_rpc_health_find(h, name);

    *known_p = e != NULL;
    return e != NULL ? e->status
                     : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN;
}

static void bt_rpc_health_check(bt_rpc_call_t *call, const ProtobufCMessage *req,
                                void *arg)
{
    bt_rpc_health_t *h = arg;
    const Grpc__Health__V1__HealthCheckRequest *r = (const void *)req;
    Grpc__Health__V1__HealthCheckResponse resp =
        GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    bool known;

    resp.status = bt_rpc_health_status(h, r->service, &known);
    if (!known) {
        bt_rpc_call_fail_code(call, BT_RPC_NOT_FOUND, "unknown service");
        return;
    }
    bt_rpc_call_reply(call, &resp.base);
}

static void bt_rpc_watcher_remove(bt_rpc_watcher_t *w)
{
    bt_rpc_health_t *h = w->health;
    bt_rpc_watcher_t **pp;

    for (pp = &h->watchers; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == w) {
            *pp = w->next;
            h->n_watchers--;
            break;
        }
    }
    free(w->service);
    free(w);
}

static void bt_rpc_watcher_on_cancel(bt_rpc_call_t *call, void *arg)
{
    bt_rpc_watcher_t *w = arg;

    bt_rpc_call_fail(call, BT_ERR_CANCELLED, NULL);
    bt_rpc_watcher_remove(w);
}

static void bt_rpc_watcher_send(bt_rpc_watcher_t *w, bt_rpc_serving_t status)
{
    Grpc__Health__V1__HealthCheckResponse resp =
        GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;

    resp.status = status;
    /* A full queue means a stalled watcher: it gets the next change. */
    if (bt_rpc_call_send(w->call, &resp.base, NULL, NULL) == BT_OK) {
        w->last = status;
    }
}

static void bt_rpc_health_watch(bt_rpc_call_t *call, const ProtobufCMessage *req,
                                void *arg)
{
    bt_rpc_health_t *h = arg;
    const Grpc__Health__V1__HealthCheckRequest *r = (const void *)req;
    bt_rpc_watcher_t *w;
    bool known;

    if (h->shut) {
        bt_rpc_call_fail_code(call, BT_RPC_UNAVAILABLE, "server shutting down");
        return;
    }
    if (h->n_watchers >= BT_RPC_HEALTH_MAX_WATCHERS ||
        strlen(r->service) > BT_RPC_HEALTH_NAME_MAX) {
        bt_rpc_call_fail_code(call, BT_RPC_RESOURCE_EXHAUSTED,
                              "too many watchers or service name too long");
        return;
    }
    w = calloc(1, sizeof(*w));
    if (w == NULL || (w->service = strdup(r->service)) == NULL) {
        free(w);
        bt_rpc_call_fail(call, BT_ERR_NO_MEMORY, NULL);
        return;
    }
    w->health = h;
    w->call = call;
    w->next = h->watchers;
    h->watchers = w;
    h->n_watchers++;
    bt_rpc_call_set_cancel_cb(call, bt_rpc_watcher_on_cancel, w);
    bt_rpc_watcher_send(w, bt_rpc_health_status(h, w->service, &known));
}

bt_status_t bt_rpc_health_install(struct bt_rpc_server *srv,
                                  bt_rpc_health_t **health_p)
{
    bt_rpc_health_t *h = calloc(1, sizeof(*h));
    bt_status_t st;

    if (h == NULL) {
        return BT_ERR_NO_MEMORY;
    }
    st = bt_rpc_server_add_unary(srv, "/grpc.health.v1.Health/Check",
                                 &grpc__health__v1__health_check_request__descriptor,
                                 bt_rpc_health_check, h);
    if (st == BT_OK) {
        st = bt_rpc_server_add_stream(
            srv, "/grpc.health.v1.Health/Watch",
            &grpc__health__v1__health_check_request__descriptor,
            bt_rpc_health_watch, h);
    }
    if (st != BT_OK) {
        free(h);
        return st;
    }
    *health_p = h;
    bt_rpc_health_set(h, "", true);
    return BT_OK;
}

void bt_rpc_health_set(bt_rpc_health_t *h, const char *service, bool serving)
{
    bt_rpc_health_entry_t *e = bt_rpc_health_find(h, service);
    bt_rpc_serving_t status =
        serving ? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
                : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING;

    if (h->shut) {
        return;   /* NOT_SERVING for good */
    }
    if (e == NULL) {
        if (h->n_entries == BT_RPC_HEALTH_MAX_SERVICES ||
            strlen(service) > BT_RPC_HEALTH_NAME_MAX) {
            bt_error("rpc health: cannot track service %s", service);
            return;
        }
        e = &h->entries[h->n_entries];
        e->name = strdup(service);
        if (e->name == NULL) {
            return;
        }
        h->n_entries++;
    }
    e->status = status;
    for (bt_rpc_watcher_t *w = h->watchers; w != NULL; w = w->next) {
        if (strcmp(w->service, service) == 0 && w->last != status) {
            bt_rpc_watcher_send(w, status);
        }
    }
}

void bt_rpc_health_shutdown(bt_rpc_health_t *h)
{
    bt_rpc_watcher_t *w;

    if (h == NULL || h->shut) {
        return;
    }
    for (size_t i = 0; i < h->n_entries; i++) {
        bt_rpc_health_set(h, h->entries[i].name, false);
    }
    h->shut = true;
    /* Watches would hold a graceful shutdown for its whole grace. */
    while ((w = h->watchers) != NULL) {
        bt_rpc_call_t *call = w->call;

        bt_rpc_call_set_cancel_cb(call, NULL, NULL);
        bt_rpc_watcher_remove(w);
        bt_rpc_call_fail_code(call, BT_RPC_UNAVAILABLE, "server shutting down");
    }
}

void bt_rpc_health_destroy(bt_rpc_health_t *h)
{
    if (h == NULL) {
        return;
    }
    bt_rpc_health_shutdown(h);
    for (size_t i = 0; i < h->n_entries; i++) {
        free(h->entries[i].name);
    }
    free(h);
}
