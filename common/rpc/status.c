#include "rpc.h"

#include <stddef.h>

/* The one table between bt_status_t and gRPC codes. bt -> gRPC takes the
 * first row with the status; gRPC -> bt the first row with the code, so
 * the row that reads best in reverse comes first. */
static const struct {
    bt_status_t   status;
    bt_rpc_code_t code;
} bt_rpc_status_table[] = {
    { BT_OK,                   BT_RPC_OK },
    { BT_ERR_INVALID_ARG,      BT_RPC_INVALID_ARGUMENT },
    { BT_ERR_NOT_FOUND,        BT_RPC_NOT_FOUND },
    { BT_ERR_TOO_LARGE,        BT_RPC_RESOURCE_EXHAUSTED },
    { BT_ERR_TIMED_OUT,        BT_RPC_DEADLINE_EXCEEDED },
    { BT_ERR_CANCELLED,        BT_RPC_CANCELLED },
    { BT_ERR_UNSUPPORTED,      BT_RPC_UNIMPLEMENTED },
    { BT_ERR_EXHAUSTED,        BT_RPC_RESOURCE_EXHAUSTED },
    { BT_ERR_CORRUPT,          BT_RPC_DATA_LOSS },
    { BT_ERR_PERMISSION,       BT_RPC_UNAUTHENTICATED },
    { BT_ERR_PERMISSION,       BT_RPC_PERMISSION_DENIED },
    { BT_ERR_EXISTS,           BT_RPC_ALREADY_EXISTS },
    { BT_ERR_TRUNCATED,        BT_RPC_INVALID_ARGUMENT },
    { BT_ERR_INVALID_ARG,      BT_RPC_OUT_OF_RANGE },
    { BT_ERR_INVALID_ARG,      BT_RPC_FAILED_PRECONDITION },
    { BT_ERR_PEER_UNREACHABLE, BT_RPC_UNAVAILABLE },
    { BT_ERR_PEER_DIED,        BT_RPC_UNAVAILABLE },
    { BT_ERR_PEER_PROTOCOL,    BT_RPC_INTERNAL },
    { BT_ERR_PEER_REJECTED,    BT_RPC_UNKNOWN },
    { BT_ERR_PEER_REJECTED,    BT_RPC_ABORTED },
    { BT_ERR_NO_MEMORY,        BT_RPC_RESOURCE_EXHAUSTED },
    { BT_ERR_IO,               BT_RPC_INTERNAL },
    { BT_ERR_INTERNAL,         BT_RPC_INTERNAL },
    { BT_ERR_SHUTDOWN,         BT_RPC_UNAVAILABLE },
};

#define BT_RPC_N_ROWS (sizeof(bt_rpc_status_table) / sizeof(bt_rpc_status_table[0]))

bt_rpc_code_t bt_rpc_code_from_status(bt_status_t status)
{
    for (size_t i = 0; i < BT_RPC_N_ROWS; i++) {
        if (bt_rpc_status_table[i].status == status) {
            return bt_rpc_status_table[i].code;
        }
    }
    return status == BT_IN_PROGRESS ? BT_RPC_INTERNAL : BT_RPC_UNKNOWN;
}

bt_status_t bt_rpc_status_from_code(bt_rpc_code_t code)
{
    for (size_t i = 0; i < BT_RPC_N_ROWS; i++) {
        if (bt_rpc_status_table[i].code == code) {
            return bt_rpc_status_table[i].status;
        }
    }
    return BT_ERR_PEER_REJECTED;
}

const char *bt_rpc_code_name(bt_rpc_code_t code)
{
    static const char *const names[] = {
        "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
        "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED",
        "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE",
        "DATA_LOSS", "UNAUTHENTICATED",
    };

    if ((int)code < 0 || (size_t)code >= sizeof(names) / sizeof(names[0])) {
        return "UNKNOWN_CODE";
    }
    return names[code];
}
