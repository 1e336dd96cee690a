/* --backend and --numerics (backend_select.h). */
#include "backend_select.h"

#include "base/log.h"

#include <stdio.h>

static const char *const bt_backend_names[] = { "cpu", "cuda" };
static const char *const bt_numerics_names[] = { "exact", "fast" };

const char *bt_backend_name(bt_backend_kind_t kind)
{
    return (unsigned)kind < 2 ? bt_backend_names[kind] : "?";
}

const char *bt_numerics_name(bt_numerics_mode_t mode)
{
    return (unsigned)mode < 2 ? bt_numerics_names[mode] : "?";
}

bt_status_t bt_backend_choose(bt_backend_kind_t kind, bt_numerics_mode_t mode,
                              int tp, bt_backend_choice_t *choice_p, char *err,
                              size_t err_size)
{
    bt_backend_choice_t c = { .kind = kind, .mode = mode, .tp = tp };
    bt_status_t s;

    if (tp != 1) {
        snprintf(err, err_size, "tensor parallelism over %d devices is not "
                 "available: one device per process", tp);
        return BT_ERR_UNSUPPORTED;
    }
    switch (kind) {
    case BT_BACKEND_CPU:
        if (mode != BT_NUMERICS_EXACT) {
            snprintf(err, err_size, "--numerics fast needs --backend cuda: the "
                     "CPU backend computes exact only");
            return BT_ERR_UNSUPPORTED;
        }
        c.ops = &bt_backend_cpu;
        break;
    case BT_BACKEND_CUDA:
        s = bt_cuda_probe(err, err_size);
        if (s == BT_OK) {
            s = bt_cuda_plugin(&c.device, err, err_size);
        }
        if (s != BT_OK) {
            return s;
        }
        break;
    default:
        snprintf(err, err_size, "unknown backend %d", (int)kind);
        return BT_ERR_INVALID_ARG;
    }
    if (!bt_kv_numerics_format(c.id, sizeof(c.id), bt_backend_name(kind),
                               bt_numerics_name(mode), (uint32_t)tp,
                               c.device != NULL ? c.device->kernel_rev
                                                : BT_CPU_KERNEL_REV)) {
        snprintf(err, err_size, "cannot form the numerics id");
        return BT_ERR_INVALID_ARG;
    }
    *choice_p = c;
    return BT_OK;
}

bt_status_t bt_backend_fwd_create(const bt_backend_choice_t *choice,
                                  const bt_model_t *model, int n_threads,
                                  bt_fwd_t **fwd_p, char *err, size_t err_size)
{
    void *dev = NULL;
    bt_status_t s;

    if (choice->device == NULL) {
        s = bt_fwd_create(model, choice->ops, n_threads, fwd_p);
        if (s != BT_OK) {
            snprintf(err, err_size, "cannot start the %s backend",
                     bt_backend_name(choice->kind));
        }
        return s;
    }
    if (choice->device->log_init != NULL) {
        const char *component;
        bt_log_level_t level;
        bt_log_format_t format;

        bt_log_settings(&component, &level, &format);
        choice->device->log_init(component, (int)level, (int)format);
    }
    s = choice->device->create(model, choice->mode == BT_NUMERICS_FAST, &dev,
                               err, err_size);
    if (s != BT_OK) {
        return s;
    }
    s = bt_fwd_create_device(model, choice->device, dev, fwd_p);
    if (s != BT_OK) {
        snprintf(err, err_size, "out of memory for the forward context");
    }
    return s;
}
