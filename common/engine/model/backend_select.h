/* Which compute backend a process runs and with which numerics (--backend
 * cpu|cuda, --numerics exact|fast), and the numerics id it reports: the id
 * names the arithmetic that makes its KV, so KV is only ever shared
 * between processes whose ids are equal (kv-spec v2, docs/kv-spec.md
 * "Numerics id"). Checked before anything else starts: a backend that
 * cannot run here is a one-line error, never a crash. */
#ifndef BT_ENGINE_BACKEND_SELECT_H
#define BT_ENGINE_BACKEND_SELECT_H

#include "backend.h"
#include "device.h"
#include "kvspec/kv_spec.h"

/* The CPU kernels' revision in the numerics id: raised whenever a change
 * alters any kernel's result bits (a reduction order, exp, rsqrt), so KV
 * made before and after never mixes. */
#define BT_CPU_KERNEL_REV 1

typedef enum { BT_BACKEND_CPU = 0, BT_BACKEND_CUDA = 1 } bt_backend_kind_t;
typedef enum { BT_NUMERICS_EXACT = 0, BT_NUMERICS_FAST = 1 } bt_numerics_mode_t;

/* Option values, in the enum order (BT_OPT_ENUM lists). */
#define BT_BACKEND_CHOICES "cpu|cuda"
#define BT_NUMERICS_CHOICES "exact|fast"

typedef struct {
    bt_backend_kind_t       kind;
    bt_numerics_mode_t      mode;
    int                     tp;        /* tensor-parallel degree */
    const bt_backend_ops_t *ops;       /* the CPU's per-operation kernels */
    const bt_device_ops_t  *device;    /* a device step (cuda); NULL: ops */
    char                    id[BT_KV_NUMERICS_MAX + 1];
} bt_backend_choice_t;

/* "cpu", "cuda"; "exact", "fast" (the option values, as in the id). */
const char *bt_backend_name(bt_backend_kind_t kind);
const char *bt_numerics_name(bt_numerics_mode_t mode);

/* Checks that the backend runs here with that mode and fills *choice_p.
 * BT_ERR_UNSUPPORTED with err = one line naming what is missing (no CUDA
 * in this build, no NVIDIA driver, no GPU, a mode the backend lacks). */
bt_status_t bt_backend_choose(bt_backend_kind_t kind, bt_numerics_mode_t mode,
                              int tp, bt_backend_choice_t *choice_p, char *err,
                              size_t err_size);

/* The forward context of the choice: the CPU's, or one whose steps run on
 * the device (its weights copied there). One line into err on failure. */
bt_status_t bt_backend_fwd_create(const bt_backend_choice_t *choice,
                                  const bt_model_t *model, int n_threads,
                                  bt_fwd_t **fwd_p, char *err, size_t err_size);

/* Whether a CUDA device can be used here: BT_OK, or BT_ERR_UNSUPPORTED
 * with err naming what is missing. The driver is loaded at run time
 * (libcuda.so.1), so a binary built here starts on machines without it. */
bt_status_t bt_cuda_probe(char *err, size_t err_size);

/* The CUDA device step, from the plugin libbaton-cuda.so: $BATON_CUDA_PLUGIN,
 * else beside the build tree's binaries, else lib/baton/ beside the
 * installed ones. */
bt_status_t bt_cuda_plugin(const bt_device_ops_t **ops_p, char *err,
                           size_t err_size);

#endif
