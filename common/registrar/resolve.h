/* The routers a cluster member registers with, from its --router value: a
 * comma-separated list of gRPC targets, each of them
 *
 *   literal  "ipv4:10.0.0.7:50051", "ipv6:[fd00::7]:50051", "unix:/run/r.sock",
 *            "10.0.0.7:50051", "[fd00::7]:50051": one router;
 *   a name   "router-peers.baton.svc:50051", "dns:///router-0:50051": one
 *            router per address the name resolves to (its IPv4 addresses
 *            when it has any, else its IPv6 ones, so that a dual-stack name
 *            does not count one router twice), resolved again every
 *            interval, so that each pod behind a Kubernetes headless
 *            Service is a router of its own.
 *
 * Names are resolved on a short-lived thread (a slow DNS never stalls the
 * loop that decodes); the result comes back on the loop. A name that fails
 * to resolve keeps the addresses it last had. */
#ifndef BT_REGISTRAR_RESOLVE_H
#define BT_REGISTRAR_RESOLVE_H

#include "base/status.h"

#include <event2/event.h>
#include <stddef.h>
#include <stdint.h>

/* At most this many entries in a list, and routers in all. */
#define BT_ROUTERS_MAX 64

typedef struct {
    char *target;     /* a gRPC target that names one address */
    char *tls_name;   /* the name to check its certificate against, or NULL */
} bt_router_addr_t;

/* Every router known now, sorted by target, on each resolution that
 * changed nothing or something (the receiver compares). Borrowed. */
typedef void (*bt_resolve_cb)(void *arg, const bt_router_addr_t *addrs,
                              size_t n);

typedef struct bt_resolver bt_resolver_t;

/* Called on one entry of a list, trimmed; a status other than BT_OK (with
 * `err` written) stops the walk and is returned. */
typedef bt_status_t (*bt_router_entry_fn)(const char *one, void *arg,
                                          char *err, size_t err_size);

/* Walks the list's entries in order: no entry may be empty, longer than a
 * host and port, or past the BT_ROUTERS_MAX-th. */
bt_status_t bt_router_list_each(const char *list, bt_router_entry_fn fn,
                                void *arg, char *err, size_t err_size);

/* Checks the list's syntax (empty entries, ports, brackets). */
bt_status_t bt_router_list_check(const char *list, char *err, size_t err_size);

/* Calls `cb` once with the literal entries and the names resolved (at once
 * when the list holds no name), then after each re-resolution. NULL on a
 * bad list (logged) or no memory. */
bt_resolver_t *bt_resolver_create(struct event_base *base, const char *list,
                                  uint32_t interval_ms, bt_resolve_cb cb,
                                  void *arg);
/* A resolution still running finishes on its own and is discarded. */
void bt_resolver_destroy(bt_resolver_t *r);

#endif
