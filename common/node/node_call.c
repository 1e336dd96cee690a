/* A call the node refuses before it becomes a request (draining, a bad
 * argument, no memory): its info line, with the request id as the log
 * field, and its answer. */
#include "node.h"

#include "base/log.h"

void bt_node_call_refuse(bt_rpc_call_t *call, const char *what,
                         const char *req_id, bt_rpc_code_t code,
                         const char *msg)
{
    BT_LOG_REQ(INFO, req_id != NULL && req_id[0] != '\0' ? req_id : NULL,
               "%s refused: %s (%s)", what, msg, bt_rpc_code_name(code));
    bt_rpc_call_fail_code(call, code, msg);
}
