/* Host + port to gRPC listen addresses and targets (addr.h). */
#include "addr.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* An IPv6 literal has a colon; names and IPv4 literals never do. */
static bool bt_rpc_is_v6(const char *host, bool *bracketed_p)
{
    *bracketed_p = host[0] == '[';
    return *bracketed_p || strchr(host, ':') != NULL;
}

void bt_rpc_hostport(char *out, size_t size, const char *host, int port)
{
    bool br;

    if (bt_rpc_is_v6(host, &br) && !br) {
        snprintf(out, size, "[%s]:%d", host, port);
    } else {
        snprintf(out, size, "%s:%d", host, port);
    }
}

void bt_rpc_target(char *out, size_t size, const char *host, int port)
{
    bool br;

    if (bt_rpc_is_v6(host, &br)) {
        snprintf(out, size, br ? "ipv6:%s:%d" : "ipv6:[%s]:%d", host, port);
    } else {
        snprintf(out, size, "ipv4:%s:%d", host, port);
    }
}
