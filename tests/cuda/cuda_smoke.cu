// CUDA build check: a tiny kernel, plus cuBLAS and NCCL linked and called.
// Compiled whenever nvcc is found (-Dcuda=auto); run where a GPU is
// present. Without a device it prints a TAP skip plan.
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <nccl.h>

#include <cmath>
#include <cstdio>

__global__ void bt_axpy_kernel(int n, float a, const float *x, float *y)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        y[i] = a * x[i] + y[i];
    }
}

#define CHECK_CUDA(_x) do { cudaError_t e_ = (_x); if (e_ != cudaSuccess) { \
    std::printf("not ok 1 - %s: %s\n", #_x, cudaGetErrorString(e_)); return 1; } } while (0)

int main()
{
    const int n = 1 << 16;
    float *x, *y, *hy;
    int devices = 0;
    int nccl_version = 0;
    cublasHandle_t blas;
    float alpha = 2.0f;

    if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
        std::printf("1..0 # SKIP no CUDA device here: compiled and linked, not run\n");
        return 0;
    }
    std::printf("1..3\n");
    CHECK_CUDA(cudaMalloc(&x, n * sizeof(float)));
    CHECK_CUDA(cudaMalloc(&y, n * sizeof(float)));
    hy = new float[n];
    for (int i = 0; i < n; i++) {
        hy[i] = (float)i;
    }
    CHECK_CUDA(cudaMemcpy(x, hy, n * sizeof(float), cudaMemcpyHostToDevice));
    CHECK_CUDA(cudaMemcpy(y, hy, n * sizeof(float), cudaMemcpyHostToDevice));
    bt_axpy_kernel<<<(n + 255) / 256, 256>>>(n, 1.0f, x, y); // y = 2i
    CHECK_CUDA(cudaGetLastError());
    if (cublasCreate(&blas) != CUBLAS_STATUS_SUCCESS ||
        cublasSaxpy(blas, n, &alpha, x, 1, y, 1) != CUBLAS_STATUS_SUCCESS) { // y = 4i
        std::printf("not ok 2 - cublas\n");
        return 1;
    }
    CHECK_CUDA(cudaMemcpy(hy, y, n * sizeof(float), cudaMemcpyDeviceToHost));
    int bad = 0;
    for (int i = 0; i < n; i++) {
        bad += std::fabs(hy[i] - 4.0f * (float)i) > 0.0f;
    }
    std::printf("%s 1 - kernel + cublas saxpy (%d wrong)\n", bad ? "not ok" : "ok", bad);
    std::printf("ok 2 - %d device(s)\n", devices);
    ncclGetVersion(&nccl_version);
    std::printf("%s 3 - nccl version %d\n", nccl_version > 0 ? "ok" : "not ok", nccl_version);
    cublasDestroy(blas);
    cudaFree(x);
    cudaFree(y);
    delete[] hy;
    return bad || nccl_version <= 0;
}
