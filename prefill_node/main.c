/* baton-prefill: a prefill node (DESIGN §2; docs/internals/node.md). */
#include "node.h"

int main(int argc, char **argv)
{
    return bt_node_main(argc, argv, BT_NODE_PREFILL, "baton-prefill");
}
