/* Is a CUDA GPU usable here (backend_select.h)? The driver API is looked
 * up at run time so that nothing links libcuda: its absence is an answer,
 * not a loader error. */
#include "backend_select.h"

#include "bt_config.h"

#include <dlfcn.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* CUresult cuInit(unsigned), cuDeviceGetCount(int *): 0 is CUDA_SUCCESS,
 * 100 CUDA_ERROR_NO_DEVICE (cuda.h), stable across driver versions. */
typedef int (*bt_cu_init_fn)(unsigned flags);
typedef int (*bt_cu_count_fn)(int *count);
#define BT_CU_ERROR_NO_DEVICE 100

bt_status_t bt_cuda_probe(char *err, size_t err_size)
{
#if !BT_HAVE_CUDA
    snprintf(err, err_size, "--backend cuda: this build has no CUDA support "
             "(nvcc was not found when it was configured)");
    return BT_ERR_UNSUPPORTED;
#else
    bt_cu_init_fn cu_init;
    bt_cu_count_fn cu_count;
    void *lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    int rc, n = 0;

    if (lib == NULL) {
        snprintf(err, err_size, "--backend cuda: no NVIDIA driver here "
                 "(libcuda.so.1 cannot be loaded)");
        return BT_ERR_UNSUPPORTED;
    }
    /* POSIX's way to take a function from dlsym without a cast ISO C
     * forbids between object and function pointers */
    *(void **)&cu_init = dlsym(lib, "cuInit");
    *(void **)&cu_count = dlsym(lib, "cuDeviceGetCount");
    if (cu_init == NULL || cu_count == NULL) {
        snprintf(err, err_size, "--backend cuda: libcuda.so.1 lacks cuInit or "
                 "cuDeviceGetCount (not an NVIDIA driver library?)");
        dlclose(lib);
        return BT_ERR_UNSUPPORTED;
    }
    rc = cu_init(0);
    if (rc == 0) {
        rc = cu_count(&n);
    }
    dlclose(lib);
    if (rc == BT_CU_ERROR_NO_DEVICE || (rc == 0 && n == 0)) {
        snprintf(err, err_size, "--backend cuda: the NVIDIA driver sees no GPU");
        return BT_ERR_UNSUPPORTED;
    }
    if (rc != 0) {
        snprintf(err, err_size, "--backend cuda: the NVIDIA driver does not "
                 "start (cuInit error %d)", rc);
        return BT_ERR_UNSUPPORTED;
    }
    return BT_OK;
#endif
}

/* dlopen of the first plugin path that exists. */
static void *bt_cuda_plugin_open(char *tried, size_t tried_size)
{
    static char build[PATH_MAX + 64], inst[PATH_MAX + 64];
    char exe[PATH_MAX], dir[PATH_MAX];
    const char *env = getenv("BATON_CUDA_PLUGIN");
    const char *cands[4];
    size_t n = 0;
    ssize_t len = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

    tried[0] = '\0';
    if (env != NULL && env[0] != '\0') {
        cands[n++] = env;
    }
#ifdef BT_CUDA_PLUGIN_BUILD
    cands[n++] = BT_CUDA_PLUGIN_BUILD;
#endif
    if (len > 0) {
        exe[len] = '\0';
        snprintf(dir, sizeof(dir), "%s", dirname(exe));
        /* the build tree (BUILD/tools/, BUILD/prefill_node/, ...) */
        snprintf(build, sizeof(build),
                 "%s/../common/engine/cuda/libbaton-cuda.so", dir);
        cands[n++] = build;
        /* installed: PREFIX/bin beside PREFIX/lib/baton */
        snprintf(inst, sizeof(inst), "%s/../lib/baton/libbaton-cuda.so", dir);
        cands[n++] = inst;
    }
    for (size_t i = 0; i < n; i++) {
        void *lib = access(cands[i], R_OK) == 0
                    ? dlopen(cands[i], RTLD_NOW | RTLD_LOCAL) : NULL;

        if (lib != NULL) {
            return lib;
        }
        if (access(cands[i], R_OK) == 0) {
            snprintf(tried, tried_size, "%s: %s", cands[i], dlerror());
            return NULL;
        }
    }
    snprintf(tried, tried_size, "no libbaton-cuda.so beside the binaries "
             "(BATON_CUDA_PLUGIN names one)");
    return NULL;
}

bt_status_t bt_cuda_plugin(const bt_device_ops_t **ops_p, char *err,
                           size_t err_size)
{
    static const bt_device_ops_t *loaded;
    bt_device_plugin_fn fn;
    char why[PATH_MAX + 128];
    void *lib;

    if (loaded != NULL) {
        *ops_p = loaded;
        return BT_OK;
    }
    lib = bt_cuda_plugin_open(why, sizeof(why));
    if (lib == NULL) {
        snprintf(err, err_size, "--backend cuda: the CUDA plugin does not load "
                 "(%s)", why);
        return BT_ERR_UNSUPPORTED;
    }
    *(void **)&fn = dlsym(lib, BT_DEVICE_PLUGIN_SYMBOL);
    if (fn == NULL || fn() == NULL || fn()->abi != BT_DEVICE_ABI) {
        snprintf(err, err_size, "--backend cuda: the CUDA plugin is of another "
                 "Baton version (device ABI %d wanted)", BT_DEVICE_ABI);
        dlclose(lib);
        return BT_ERR_UNSUPPORTED;
    }
    loaded = fn();   /* kept loaded for the life of the process */
    *ops_p = loaded;
    return BT_OK;
}
