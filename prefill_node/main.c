/* baton-prefill: a prefill node (DESIGN §2; docs/internals/node.md). It
 * carries the decode role too, so --role decode|both work as well. */
#include "decode.h"
#include "node.h"
#include "prefill.h"

int main(int argc, char **argv)
{
    const bt_node_roles_t roles = { &bt_prefill_role_ops, &bt_decode_role_ops };

    return bt_node_main(argc, argv, BT_NODE_PREFILL, "baton-prefill", &roles);
}
