/* baton-placement synth: writes a synthetic routing trace (counts and
 * transitions) for tests and benchmarks; deterministic from the seed. */
#include "cmd.h"
#include "placement.h"

#include "base/opts.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int64_t     layers;
    int64_t     experts;
    int64_t     tokens;
    double      zipf;
    double      correlation;
    int64_t     seed;
    const char *out_counts;
    const char *out_transitions;
} synth_cfg_t;

static const bt_opt_t synth_opts[] = {
    { "layers", 0, NULL, "61", "MoE layers", BT_OPT_INT, 1,
      BT_PLACEMENT_MAX_LAYERS, NULL, offsetof(synth_cfg_t, layers) },
    { "experts", 0, NULL, "256", "experts per layer", BT_OPT_INT, 1,
      BT_PLACEMENT_MAX_EXPERTS, NULL, offsetof(synth_cfg_t, experts) },
    { "tokens", 0, NULL, "100000", "tokens routed (one expert per layer each)",
      BT_OPT_INT, 1, 1e9, NULL, offsetof(synth_cfg_t, tokens) },
    { "zipf", 0, NULL, "1.0", "zipf exponent of expert popularity (0: uniform)",
      BT_OPT_DOUBLE, 0, 10, NULL, offsetof(synth_cfg_t, zipf) },
    { "correlation", 0, NULL, "0.5",
      "chance a token follows its expert's partner at the next layer",
      BT_OPT_DOUBLE, 0, 1, NULL, offsetof(synth_cfg_t, correlation) },
    { "seed", 0, NULL, "1", "random seed", BT_OPT_INT, 0, 9.0e18, NULL,
      offsetof(synth_cfg_t, seed) },
    { "out-counts", 0, NULL, NULL, "counts file to write (required)",
      BT_OPT_STRING, 0, 0, NULL, offsetof(synth_cfg_t, out_counts) },
    { "out-transitions", 0, NULL, NULL, "transitions file to write",
      BT_OPT_STRING, 0, 0, NULL, offsetof(synth_cfg_t, out_transitions) },
};

static const bt_opts_spec_t synth_spec = {
    "baton-placement synth", "[OPTIONS]",
    "Writes a synthetic MoE routing trace: Zipf-skewed expert popularity "
    "(a random ranking per layer) and, with probability --correlation, a "
    "token at layer l+1 goes to the fixed partner of its layer-l expert.",
    synth_opts, BT_OPTS_COUNT(synth_opts),
};

/* Writes rows x cols numbers as nested JSON arrays. */
static void write_matrix(FILE *f, const double *v, int64_t rows, int64_t cols)
{
    fputc('[', f);
    for (int64_t i = 0; i < rows; i++) {
        fputs(i > 0 ? ",[" : "[", f);
        for (int64_t j = 0; j < cols; j++) {
            fprintf(f, j > 0 ? ",%.0f" : "%.0f", v[i * cols + j]);
        }
        fputc(']', f);
    }
    fputc(']', f);
}

static int write_file(const char *path, const char *key, const double *v,
                      int64_t mats, int64_t rows, int64_t cols)
{
    FILE *f = fopen(path, "w");

    if (f == NULL) {
        fprintf(stderr, "%s: cannot create %s: %s\n", synth_spec.prog, path,
                strerror(errno));
        return 1;
    }
    fprintf(f, "{\"%s\": ", key);
    if (mats < 0) {
        write_matrix(f, v, rows, cols);
    } else {
        fputc('[', f);
        for (int64_t m = 0; m < mats; m++) {
            if (m > 0) {
                fputc(',', f);
            }
            write_matrix(f, v + m * rows * cols, rows, cols);
        }
        fputc(']', f);
    }
    fputs("}\n", f);
    if (ferror(f) || fclose(f) != 0) {
        fprintf(stderr, "%s: writing %s failed: %s\n", synth_spec.prog, path,
                strerror(errno));
        return 1;
    }
    return 0;
}

int bt_placement_cmd_synth(int argc, char **argv)
{
    synth_cfg_t cfg = { 0 };
    bt_placement_synth_t sy;
    double *loads, *trans = NULL;
    size_t  le, ee;
    int     rc = 1;

    bt_opts_parse_or_exit(&synth_spec, &cfg, argc, argv);
    if (cfg.out_counts == NULL) {
        fprintf(stderr, "%s: --out-counts is required\n", synth_spec.prog);
        return 2;
    }
    le = (size_t)cfg.layers * (size_t)cfg.experts;
    ee = (size_t)cfg.experts * (size_t)cfg.experts;
    if (cfg.out_transitions != NULL &&
        (size_t)(cfg.layers - 1) * ee > ((size_t)1 << 28)) {
        fprintf(stderr, "%s: transitions of %lld layers x %lld experts are "
                "over 2^28 numbers\n", synth_spec.prog,
                (long long)cfg.layers, (long long)cfg.experts);
        return 2;
    }
    loads = malloc(le * sizeof(*loads));
    if (cfg.out_transitions != NULL) {
        trans = malloc((cfg.layers > 1 ? (size_t)(cfg.layers - 1) : 1) * ee *
                       sizeof(*trans));
    }
    if (loads == NULL || (cfg.out_transitions != NULL && trans == NULL)) {
        fprintf(stderr, "%s: out of memory\n", synth_spec.prog);
        goto out;
    }
    sy.n_layers = (int32_t)cfg.layers;
    sy.n_experts = (int32_t)cfg.experts;
    sy.tokens = cfg.tokens;
    sy.zipf_s = cfg.zipf;
    sy.correlation = cfg.correlation;
    sy.seed = (uint64_t)cfg.seed;
    if (bt_placement_synth_run(&sy, loads, trans) != BT_OK) {
        fprintf(stderr, "%s: generation failed\n", synth_spec.prog);
        goto out;
    }
    rc = write_file(cfg.out_counts, "logical_count", loads, -1, cfg.layers,
                    cfg.experts);
    if (rc == 0 && trans != NULL) {
        rc = write_file(cfg.out_transitions, "transitions", trans,
                        cfg.layers - 1, cfg.experts, cfg.experts);
    }
out:
    free(loads);
    free(trans);
    return rc;
}
