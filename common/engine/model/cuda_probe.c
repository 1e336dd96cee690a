/* Is a CUDA GPU usable here (backend_select.h)? The driver API is looked
 * up at run time so that nothing links libcuda: its absence is an answer,
 * not a loader error. */
#include "backend_select.h"

#include "bt_config.h"

#include <dlfcn.h>
#include <stdio.h>

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
