/* A device step: a backend that keeps the weights, the activations and a
 * copy of the paged KV pool in its own memory runs whole steps (only token
 * ids, positions and block tables go in, logits come out), behind the same
 * bt_fwd_step as the CPU's per-operation path (forward.h).
 *
 * The host pool stays the one the rest of Baton reads and writes (KV
 * transfers, the kvstore, the prefix cache): before a step the device
 * copies in every block it reads whose pool generation moved since it
 * last held it (bt_kv_view_t.gen), and after each layer it writes that
 * layer's new K/V rows back to the host pool before the layer hook runs,
 * so a transfer posted from the hook sends what the device computed.
 *
 * A device backend is a plugin (libbaton-cuda.so) loaded at run time by
 * bt_backend_choose, so no binary links a GPU runtime. */
#ifndef BT_ENGINE_DEVICE_H
#define BT_ENGINE_DEVICE_H

#include "forward.h"

#include <stdbool.h>
#include <stddef.h>

#define BT_DEVICE_ABI 1

/* Counts one MoE layer's routing in the forward context's statistics
 * (bt_fwd_moe_stats): sel[T][k], sel_prev the previous layer's when it
 * was MoE too (NULL otherwise). */
void bt_fwd_count_routes(bt_fwd_t *fwd, int layer, int T, const int *sel,
                         const int *sel_prev);

typedef struct {
    int         abi;              /* BT_DEVICE_ABI */
    const char *name;             /* "cuda" */
    unsigned    kernel_rev;       /* its kernels' revision (numerics id) */
    /* Copies the model's weights to the device, for `exact` (fast false)
     * or `fast` numerics; one line into err. */
    bt_status_t (*create)(const bt_model_t *m, bool fast, void **dev_p,
                          char *err, size_t err_size);
    void (*destroy)(void *dev);
    /* The host's log settings (bt_log_settings), before create: a plugin
     * links its own copy of the log module and logs as the host does. */
    void (*log_init)(const char *component, int level, int format);
    /* One step of T tokens (checked by the caller: bt_fwd_step), the
     * longest context max_ctx. MoE routings are counted through `fwd`. */
    bt_status_t (*step)(void *dev, bt_fwd_t *fwd, const bt_kv_view_t *kv,
                        bt_step_seq_t *seqs, int n_seqs, int T, int max_ctx,
                        const bt_step_hooks_t *hooks);
} bt_device_ops_t;

/* The symbol a plugin exports. */
typedef const bt_device_ops_t *(*bt_device_plugin_fn)(void);
#define BT_DEVICE_PLUGIN_SYMBOL "bt_device_plugin"

/* A forward context whose steps run on the device `dev` (made by
 * ops->create; owned by the context from here on). */
bt_status_t bt_fwd_create_device(const bt_model_t *model,
                                 const bt_device_ops_t *ops, void *dev,
                                 bt_fwd_t **fwd_p);

#endif
