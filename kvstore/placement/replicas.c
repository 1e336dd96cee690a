/* Replica counts per expert and home nodes per expert group. */
#include "placement_int.h"

#include "base/log.h"

#include <stdbool.h>
#include <stdlib.h>

void bt_pl_replicas(const double *loads, int32_t n_experts, int32_t n_devices,
                    int32_t slots, int32_t n_nodes, const int32_t *home_of,
                    int32_t *r)
{
    int64_t extra = (int64_t)n_devices * slots - n_experts;
    int32_t dpn = n_devices / n_nodes;
    double  node_home[BT_PLACEMENT_MAX_DEVICES];
    int32_t cap[BT_PLACEMENT_MAX_EXPERTS];

    for (int32_t e = 0; e < n_experts; e++) {
        r[e] = 1;
        cap[e] = n_devices;
    }
    if (home_of != NULL) {
        /* Copies of e fit on at most min(devices, spare slots) of each
         * node, its home copy aside: more could not be packed. */
        int32_t spare[BT_PLACEMENT_MAX_DEVICES];
        int32_t other = 0;

        for (int32_t n = 0; n < n_nodes; n++) {
            node_home[n] = 0.0;
            spare[n] = dpn * slots;
        }
        for (int32_t e = 0; e < n_experts; e++) {
            node_home[home_of[e]] += loads[e];
            spare[home_of[e]]--;
        }
        for (int32_t n = 0; n < n_nodes; n++) {
            other += spare[n] < dpn ? spare[n] : dpn;
        }
        for (int32_t e = 0; e < n_experts; e++) {
            int32_t h = home_of[e];
            int32_t at_home = 1 + spare[h] < dpn ? 1 + spare[h] : dpn;

            cap[e] = other - (spare[h] < dpn ? spare[h] : dpn) + at_home;
        }
    }
    for (; extra > 0; extra--) {
        int32_t best = -1;
        double  cmax = 0.0, best_v = -1.0;

        for (int32_t e = 0; e < n_experts; e++) {
            double v = loads[e] / r[e];

            if (v > cmax) {
                cmax = v;
            }
        }
        if (home_of != NULL) {
            /* The home copies of a node weigh on its devices wherever the
             * other copies go: relieve the worst node while it binds. */
            int32_t nmax = 0;

            for (int32_t n = 1; n < n_nodes; n++) {
                if (node_home[n] > node_home[nmax]) {
                    nmax = n;
                }
            }
            if (node_home[nmax] / dpn > cmax) {
                for (int32_t e = 0; e < n_experts; e++) {
                    double v;

                    if (home_of[e] != nmax || r[e] >= cap[e]) {
                        continue;
                    }
                    v = loads[e] / ((double)r[e] * (r[e] + 1));
                    if (v > best_v) {
                        best_v = v;
                        best = e;
                    }
                }
                if (best >= 0 && best_v <= 0.0) {
                    best = -1;
                }
            }
        }
        if (best < 0) {
            best_v = -1.0;
            for (int32_t e = 0; e < n_experts; e++) {
                double v;

                if (r[e] >= cap[e]) {
                    continue;
                }
                v = loads[e] / r[e];
                if (v > best_v) {
                    best_v = v;
                    best = e;
                }
            }
        }
        if (best < 0) {
            /* The node caps are a heuristic bound; never leave a slot
             * empty for them. */
            bool relaxed = false;

            for (int32_t e = 0; e < n_experts; e++) {
                relaxed |= cap[e] < n_devices;
                cap[e] = n_devices;
            }
            if (!relaxed) {
                break; /* slots <= n_experts rules this out */
            }
            extra++;
            continue;
        }
        if (home_of != NULL) {
            node_home[home_of[best]] -= loads[best] / r[best] -
                                        loads[best] / (r[best] + 1);
        }
        r[best]++;
    }
}

bt_status_t bt_pl_group_homes(const double *loads, int32_t n_experts,
                              int32_t n_groups, int32_t n_nodes,
                              int32_t node_slots, int32_t *home)
{
    int32_t gsize = n_experts / n_groups;
    double  gload[BT_PLACEMENT_MAX_EXPERTS];
    double  nload[BT_PLACEMENT_MAX_DEVICES];
    int32_t nused[BT_PLACEMENT_MAX_DEVICES];
    uint8_t done[BT_PLACEMENT_MAX_EXPERTS];

    for (int32_t g = 0; g < n_groups; g++) {
        gload[g] = 0.0;
        done[g] = 0;
        for (int32_t i = 0; i < gsize; i++) {
            gload[g] += loads[g * gsize + i];
        }
    }
    for (int32_t n = 0; n < n_nodes; n++) {
        nload[n] = 0.0;
        nused[n] = 0;
    }
    for (int32_t k = 0; k < n_groups; k++) {
        int32_t g = -1, best = -1;

        for (int32_t i = 0; i < n_groups; i++) {
            if (!done[i] && (g < 0 || gload[i] > gload[g])) {
                g = i;
            }
        }
        for (int32_t n = 0; n < n_nodes; n++) {
            if (nused[n] + gsize <= node_slots &&
                (best < 0 || nload[n] < nload[best])) {
                best = n;
            }
        }
        if (best < 0) {
            bt_error("placement: %d groups of %d experts do not fit on %d "
                     "nodes of %d slots", n_groups, gsize, n_nodes,
                     node_slots);
            return BT_ERR_INVALID_ARG;
        }
        done[g] = 1;
        home[g] = best;
        nload[best] += gload[g];
        nused[best] += gsize;
    }
    return BT_OK;
}
