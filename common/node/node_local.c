/* --role both: the prefill role reaches the decode role of the same
 * process only through this hook, which the decode role sets when it
 * starts. A reservation naming this node then needs no UCX: the prefill
 * role copies inside the pool while the lease is live and hands the
 * kv-complete (or its fence) over directly. */
#include "node.h"

#include <string.h>

void bt_node_local_set(bt_node_t *node, const bt_node_local_t *local)
{
    node->local = *local;
}

bool bt_node_local_is(const bt_node_t *node, const char *decode_node_id)
{
    return node->local.kv_complete != NULL && decode_node_id != NULL &&
           strcmp(decode_node_id, node->node_id) == 0;
}

bool bt_node_local_lease_live(bt_node_t *node, uint64_t lease_id)
{
    return node->local.lease_live != NULL &&
           node->local.lease_live(node->local.self, lease_id);
}

void bt_node_local_kv_complete(bt_node_t *node, uint64_t lease_id,
                               int32_t status, const void *user,
                               size_t user_len)
{
    if (node->local.kv_complete != NULL) {
        node->local.kv_complete(node->local.self, lease_id, status, user,
                                user_len);
    }
}
