/* Where an expert runs on a node that has no placement plan yet:
 * round-robin over the node's expert devices. One definition for the
 * node (experts_plan.c, bt_ep_plan_round_robin) and for the kvstore's
 * estimate of a node's balancedness before any plan
 * (kvstore/plans/plan_measure.c), so the two agree. Header only: the
 * kvstore does not link the engine. */
#ifndef BT_EXPERTS_DEFAULT_H
#define BT_EXPERTS_DEFAULT_H

static inline int bt_ep_default_device(int expert, int n_devices)
{
    return expert % n_devices;
}

#endif
