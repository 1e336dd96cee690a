/* Balancedness of loads under a plan (or under the placement a node uses
 * before it has one): the figure the re-plan rule compares with its
 * threshold when a node does not measure it itself. */
#include "plan_book.h"

#include "engine/model/experts_default.h"

#include <stdlib.h>

double bt_pbook_balance(const bt_placement_plan_t *plan, const double *loads,
                        int32_t n_layers, int32_t n_experts, int32_t n_devices)
{
    double *dev = calloc((size_t)n_devices, sizeof(double));
    int32_t *copies = calloc((size_t)n_experts, sizeof(int32_t));
    double sum_b = 0;
    int32_t layers = 0;

    if (dev == NULL || copies == NULL || n_devices <= 0) {
        free(dev);
        free(copies);
        return 0;
    }
    for (int32_t l = 0; l < n_layers; l++) {
        const double *w = loads + (size_t)l * (size_t)n_experts;
        bool with_plan = plan != NULL && l < plan->n_layers && !plan->dense[l];
        double total = 0, max = 0;

        for (int32_t d = 0; d < n_devices; d++) {
            dev[d] = 0;
        }
        for (int32_t x = 0; x < n_experts; x++) {
            total += w[x];
            copies[x] = 0;
        }
        if (total <= 0) {
            continue;
        }
        if (with_plan) {
            const int32_t *row = plan->slot_expert +
                                 (size_t)l * (size_t)plan->n_devices * (size_t)plan->slots;

            for (int32_t i = 0; i < plan->n_devices * plan->slots; i++) {
                copies[row[i]]++;
            }
            for (int32_t i = 0; i < plan->n_devices * plan->slots; i++) {
                int32_t d = i / plan->slots;

                if (d < n_devices) {
                    dev[d] += w[row[i]] / copies[row[i]];
                }
            }
        } else {
            for (int32_t x = 0; x < n_experts; x++) {
                dev[bt_ep_default_device(x, n_devices)] += w[x];
            }
        }
        for (int32_t d = 0; d < n_devices; d++) {
            max = dev[d] > max ? dev[d] : max;
        }
        sum_b += total / n_devices / max;
        layers++;
    }
    free(dev);
    free(copies);
    return layers > 0 ? sum_b / layers : 1.0;
}
