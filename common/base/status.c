#include "status.h"

#include <stddef.h>

typedef struct {
    bt_status_t code;
    const char *name;
    const char *text;
} bt_status_entry_t;

static const bt_status_entry_t bt_status_table[] = {
    { BT_OK,                   "BT_OK",                   "success" },
    { BT_IN_PROGRESS,          "BT_IN_PROGRESS",          "operation in progress" },
    { BT_ERR_INVALID_ARG,      "BT_ERR_INVALID_ARG",      "invalid argument" },
    { BT_ERR_NOT_FOUND,        "BT_ERR_NOT_FOUND",        "not found" },
    { BT_ERR_TOO_LARGE,        "BT_ERR_TOO_LARGE",        "too large" },
    { BT_ERR_TIMED_OUT,        "BT_ERR_TIMED_OUT",        "timed out" },
    { BT_ERR_CANCELLED,        "BT_ERR_CANCELLED",        "cancelled" },
    { BT_ERR_UNSUPPORTED,      "BT_ERR_UNSUPPORTED",      "unsupported" },
    { BT_ERR_EXHAUSTED,        "BT_ERR_EXHAUSTED",        "resource exhausted" },
    { BT_ERR_CORRUPT,          "BT_ERR_CORRUPT",          "corrupt data" },
    { BT_ERR_PERMISSION,       "BT_ERR_PERMISSION",       "permission denied" },
    { BT_ERR_EXISTS,           "BT_ERR_EXISTS",           "already exists" },
    { BT_ERR_TRUNCATED,        "BT_ERR_TRUNCATED",        "truncated input" },
    { BT_ERR_PEER_UNREACHABLE, "BT_ERR_PEER_UNREACHABLE", "peer unreachable" },
    { BT_ERR_PEER_DIED,        "BT_ERR_PEER_DIED",        "peer died" },
    { BT_ERR_PEER_PROTOCOL,    "BT_ERR_PEER_PROTOCOL",    "peer protocol error" },
    { BT_ERR_PEER_REJECTED,    "BT_ERR_PEER_REJECTED",    "peer rejected the request" },
    { BT_ERR_NO_MEMORY,        "BT_ERR_NO_MEMORY",        "out of memory" },
    { BT_ERR_IO,               "BT_ERR_IO",               "input/output error" },
    { BT_ERR_INTERNAL,         "BT_ERR_INTERNAL",         "internal error" },
    { BT_ERR_SHUTDOWN,         "BT_ERR_SHUTDOWN",         "shutting down" },
};

static const bt_status_entry_t *bt_status_find(bt_status_t status)
{
    size_t i;

    for (i = 0; i < sizeof(bt_status_table) / sizeof(bt_status_table[0]); i++) {
        if (bt_status_table[i].code == status) {
            return &bt_status_table[i];
        }
    }
    return NULL;
}

const char *bt_status_str(bt_status_t status)
{
    const bt_status_entry_t *e = bt_status_find(status);

    if (e != NULL) {
        return e->text;
    }
    if (bt_status_is_request_err(status)) {
        return "unknown request error";
    }
    if (bt_status_is_peer_err(status)) {
        return "unknown peer error";
    }
    if (bt_status_is_node_err(status)) {
        return "unknown node error";
    }
    return "unknown status";
}

const char *bt_status_name(bt_status_t status)
{
    const bt_status_entry_t *e = bt_status_find(status);

    return e != NULL ? e->name : "BT_STATUS_UNKNOWN";
}
