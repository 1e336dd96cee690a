/* Loads and transitions from JSON documents (already parsed and size
 * bounded by the caller): every shape and value is checked. */
#include "placement_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* Reads a [rows][cols] array of finite non-negative numbers into dst;
 * cols < 0 means "take it from the first row". */
static bt_status_t matrix_read(const json_t *arr, const char *what,
                               int32_t rows, int32_t *cols_p, double *dst,
                               char *err, size_t err_size)
{
    for (int32_t i = 0; i < rows; i++) {
        const json_t *row = json_array_get(arr, (size_t)i);
        size_t n;

        if (!json_is_array(row)) {
            snprintf(err, err_size, "%s row %d: expected an array", what, i);
            return BT_ERR_INVALID_ARG;
        }
        n = json_array_size(row);
        if (*cols_p < 0) {
            if (n < 1 || n > BT_PLACEMENT_MAX_EXPERTS) {
                snprintf(err, err_size, "%s row 0: %zu experts, expected "
                         "1..%d", what, n, BT_PLACEMENT_MAX_EXPERTS);
                return BT_ERR_INVALID_ARG;
            }
            *cols_p = (int32_t)n;
        }
        if (n != (size_t)*cols_p) {
            snprintf(err, err_size, "%s row %d: %zu entries, expected %d "
                     "(ragged array)", what, i, n, *cols_p);
            return BT_ERR_INVALID_ARG;
        }
        if (dst == NULL) {
            continue;
        }
        for (size_t j = 0; j < n; j++) {
            const json_t *v = json_array_get(row, j);
            double x;

            if (!json_is_number(v)) {
                snprintf(err, err_size, "%s[%d][%zu]: expected a number, got "
                         "%s", what, i, j, json_is_string(v) ? "a string" :
                         json_is_null(v) ? "null" : "a non-number");
                return BT_ERR_INVALID_ARG;
            }
            x = json_number_value(v);
            if (!isfinite(x) || x < 0.0) {
                snprintf(err, err_size, "%s[%d][%zu] is %g (must be >= 0)",
                         what, i, j, x);
                return BT_ERR_INVALID_ARG;
            }
            dst[(size_t)i * (size_t)*cols_p + j] = x;
        }
    }
    return BT_OK;
}

bt_status_t bt_placement_loads_from_json(const json_t *root, double **loads_p,
                                         int32_t *n_layers_p,
                                         int32_t *n_experts_p, char *err,
                                         size_t err_size)
{
    const json_t *arr = json_is_object(root) ?
                        json_object_get(root, "logical_count") : NULL;
    int32_t rows, cols = -1;
    double *loads;
    bt_status_t status;

    if (!json_is_array(arr)) {
        snprintf(err, err_size, "counts: expected an object with array "
                 "'logical_count'");
        return BT_ERR_INVALID_ARG;
    }
    if (json_array_size(arr) < 1 ||
        json_array_size(arr) > BT_PLACEMENT_MAX_LAYERS) {
        snprintf(err, err_size, "logical_count: %zu layers, expected 1..%d",
                 json_array_size(arr), BT_PLACEMENT_MAX_LAYERS);
        return BT_ERR_INVALID_ARG;
    }
    rows = (int32_t)json_array_size(arr);
    status = matrix_read(arr, "logical_count", rows, &cols, NULL, err,
                         err_size);
    if (status != BT_OK) {
        return status;
    }
    loads = malloc((size_t)rows * (size_t)cols * sizeof(*loads));
    if (loads == NULL) {
        snprintf(err, err_size, "out of memory for %d x %d loads", rows, cols);
        return BT_ERR_NO_MEMORY;
    }
    status = matrix_read(arr, "logical_count", rows, &cols, loads, err,
                         err_size);
    if (status != BT_OK) {
        free(loads);
        return status;
    }
    *loads_p = loads;
    *n_layers_p = rows;
    *n_experts_p = cols;
    return BT_OK;
}

bt_status_t bt_placement_transitions_from_json(const json_t *root,
                                               int32_t n_layers,
                                               int32_t n_experts,
                                               double **trans_p, char *err,
                                               size_t err_size)
{
    const json_t *arr = json_is_object(root) ?
                        json_object_get(root, "transitions") : NULL;
    size_t  ee = (size_t)n_experts * (size_t)n_experts;
    double *trans;

    if (!json_is_array(arr)) {
        snprintf(err, err_size, "transitions: expected an object with array "
                 "'transitions'");
        return BT_ERR_INVALID_ARG;
    }
    if (json_array_size(arr) != (size_t)(n_layers - 1)) {
        snprintf(err, err_size, "transitions: %zu layer pairs, expected %d "
                 "(layers - 1)", json_array_size(arr), n_layers - 1);
        return BT_ERR_INVALID_ARG;
    }
    trans = malloc((n_layers > 1 ? (size_t)(n_layers - 1) : 1) * ee *
                   sizeof(*trans));
    if (trans == NULL) {
        snprintf(err, err_size, "out of memory for transitions");
        return BT_ERR_NO_MEMORY;
    }
    for (int32_t l = 0; l + 1 < n_layers; l++) {
        const json_t *mat = json_array_get(arr, (size_t)l);
        int32_t cols = n_experts;
        char    what[48];
        bt_status_t status;

        snprintf(what, sizeof(what), "transitions[%d]", l);
        if (!json_is_array(mat) || json_array_size(mat) != (size_t)n_experts) {
            snprintf(err, err_size, "%s: expected %d rows", what, n_experts);
            free(trans);
            return BT_ERR_INVALID_ARG;
        }
        status = matrix_read(mat, what, n_experts, &cols,
                             trans + (size_t)l * ee, err, err_size);
        if (status != BT_OK) {
            free(trans);
            return status;
        }
    }
    *trans_p = trans;
    return BT_OK;
}
