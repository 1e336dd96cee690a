/* gRPC addresses from a host and a port: IPv6 literals need brackets in
 * both the listen form and the target form, IPv4 and names do not. */
#ifndef BT_RPC_ADDR_H
#define BT_RPC_ADDR_H

#include <stddef.h>

/* "HOST:PORT" to listen on ("[::1]:50051" for an IPv6 literal; a host
 * already in brackets is kept). */
void bt_rpc_hostport(char *out, size_t size, const char *host, int port);

/* The target peers dial to reach it: "ipv4:HOST:PORT" for an IPv4 literal
 * or a name, "ipv6:[HOST]:PORT" for an IPv6 literal. */
void bt_rpc_target(char *out, size_t size, const char *host, int port);

#endif
