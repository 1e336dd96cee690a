/* An EPLB-style baseline written from DeepSeek's published description
 * (not its code), for comparison figures in tests and the bench:
 *  - global: give each extra physical slot to the expert of highest load
 *    per replica, then pack the replicas onto devices heaviest first, each
 *    onto the lightest device that still has a free slot;
 *  - hierarchical: first pack expert groups onto nodes the same way (equal
 *    group counts per node), then replicate and pack within each node.
 * Like the original it does not keep two replicas of one expert apart. */
#ifndef BT_PLACEMENT_EPLB_REF_H
#define BT_PLACEMENT_EPLB_REF_H

#include <stdint.h>

typedef struct {
    double mean;  /* mean balancedness over layers with load */
    double min;   /* worst such layer */
} bt_eplb_ref_result_t;

/* n_groups == 0 or n_nodes == 1: global policy. Returns 0, or -1 on a
 * shape it cannot handle (groups not divisible by nodes) or no memory. */
int bt_eplb_ref_run(const double *loads, int32_t n_layers, int32_t n_experts,
                    int32_t n_devices, int32_t slots, int32_t n_nodes,
                    int32_t n_groups, bt_eplb_ref_result_t *res);

#endif
