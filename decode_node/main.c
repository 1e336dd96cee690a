/* baton-decode: a decode node (DESIGN §2; docs/internals/node.md). */
#include "node.h"

int main(int argc, char **argv)
{
    return bt_node_main(argc, argv, BT_NODE_DECODE, "baton-decode");
}
