// baton-cudaceilings: the GPU's own ceilings, measured in the same run as
// Baton's figures so that those are reported as fractions of them
// (tests/cuda/device-check.sh): HBM read bandwidth (a streaming kernel,
// 16-byte loads), device-to-device copy, pinned host<->device copy (the KV
// staging path) and the bf16 GEMM ceiling (cuBLAS, f32 accumulate, large
// square shapes). Buffers hold random bits, never zeros. Prints one
// "name value unit" line per figure.
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>

#define CK(_x) do { cudaError_t e_ = (_x); if (e_ != cudaSuccess) { \
    std::fprintf(stderr, "baton-cudaceilings: %s: %s\n", #_x, cudaGetErrorString(e_)); \
    std::exit(1); } } while (0)

__global__ void bt_fill_random(uint32_t *p, size_t n, uint32_t seed)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        uint32_t x = (uint32_t)i * 2654435761u ^ seed;

        x ^= x >> 15;
        x *= 2246822519u;
        x ^= x >> 13;
        // keep bf16 pairs finite and small: sign, exponent near 1, mantissa
        p[i] = (x & 0x807f807fu) | 0x3c003c00u;
    }
}

// Reads n uint4 and folds them so nothing is optimized away.
__global__ void bt_read_stream(const uint4 *p, size_t n, uint32_t *sink)
{
    uint32_t acc = 0;

    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        const uint4 v = p[i];

        acc ^= v.x ^ v.y ^ v.z ^ v.w;
    }
    if (acc == 0x12345678u) {
        *sink = acc;
    }
}

static float bt_time_ms(cudaEvent_t a, cudaEvent_t b)
{
    float ms = 0;

    CK(cudaEventSynchronize(b));
    CK(cudaEventElapsedTime(&ms, a, b));
    return ms;
}

int main()
{
    const size_t bytes = (size_t)2 << 30;   // 2 GiB: far past L2
    const size_t host_bytes = (size_t)256 << 20;
    const int reps = 10;
    cudaDeviceProp prop;
    cudaEvent_t a, b;
    void *d0, *d1, *h;
    uint32_t *sink;
    int sms = 0;

    CK(cudaGetDeviceProperties(&prop, 0));
    sms = prop.multiProcessorCount;
    std::printf("gpu %s sm_%d%d %d SMs %.1f GiB\n", prop.name, prop.major,
                prop.minor, sms, (double)prop.totalGlobalMem / (1 << 30));
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    CK(cudaMalloc(&d0, bytes));
    CK(cudaMalloc(&d1, bytes));
    CK(cudaMalloc(&sink, 4));
    bt_fill_random<<<sms * 8, 256>>>((uint32_t *)d0, bytes / 4, 1);
    bt_fill_random<<<sms * 8, 256>>>((uint32_t *)d1, bytes / 4, 2);
    CK(cudaGetLastError());
    CK(cudaDeviceSynchronize());

    bt_read_stream<<<sms * 8, 512>>>((const uint4 *)d0, bytes / 16, sink);  // warm
    CK(cudaEventRecord(a));
    for (int r = 0; r < reps; r++) {
        bt_read_stream<<<sms * 8, 512>>>((const uint4 *)d0, bytes / 16, sink);
    }
    CK(cudaEventRecord(b));
    std::printf("hbm_read %.1f GB/s\n", (double)bytes * reps / bt_time_ms(a, b) / 1e6);

    CK(cudaEventRecord(a));
    for (int r = 0; r < reps; r++) {
        CK(cudaMemcpyAsync(d1, d0, bytes, cudaMemcpyDeviceToDevice));
    }
    CK(cudaEventRecord(b));
    // a copy reads and writes every byte
    std::printf("d2d_copy %.1f GB/s (read+write)\n",
                2.0 * (double)bytes * reps / bt_time_ms(a, b) / 1e6);

    CK(cudaMallocHost(&h, host_bytes));
    CK(cudaMemcpy(h, d0, host_bytes, cudaMemcpyDeviceToHost));
    CK(cudaEventRecord(a));
    for (int r = 0; r < reps; r++) {
        CK(cudaMemcpyAsync(d1, h, host_bytes, cudaMemcpyHostToDevice));
    }
    CK(cudaEventRecord(b));
    std::printf("h2d_pinned %.1f GB/s\n", (double)host_bytes * reps / bt_time_ms(a, b) / 1e6);
    CK(cudaEventRecord(a));
    for (int r = 0; r < reps; r++) {
        CK(cudaMemcpyAsync(h, d0, host_bytes, cudaMemcpyDeviceToHost));
    }
    CK(cudaEventRecord(b));
    std::printf("d2h_pinned %.1f GB/s\n", (double)host_bytes * reps / bt_time_ms(a, b) / 1e6);
    CK(cudaFreeHost(h));

    {
        const int n = 8192;   // 3 x 128 MiB of bf16 inside d0 / d1
        cublasHandle_t blas;
        const float one = 1.0f, zero = 0.0f;
        const __nv_bfloat16 *A = (const __nv_bfloat16 *)d0;
        const __nv_bfloat16 *B = A + (size_t)n * n;
        float *C = (float *)d1;

        if (cublasCreate(&blas) != CUBLAS_STATUS_SUCCESS) {
            std::fprintf(stderr, "baton-cudaceilings: cublasCreate failed\n");
            return 1;
        }
        for (int r = 0; r < reps + 2; r++) {
            if (r == 2) {
                CK(cudaEventRecord(a));
            }
            if (cublasGemmEx(blas, CUBLAS_OP_T, CUBLAS_OP_N, n, n, n, &one, A,
                             CUDA_R_16BF, n, B, CUDA_R_16BF, n, &zero, C,
                             CUDA_R_32F, n, CUBLAS_COMPUTE_32F,
                             CUBLAS_GEMM_DEFAULT) != CUBLAS_STATUS_SUCCESS) {
                std::fprintf(stderr, "baton-cudaceilings: cublasGemmEx failed\n");
                return 1;
            }
        }
        CK(cudaEventRecord(b));
        std::printf("gemm_bf16 %.1f TFLOP/s (%d^3, f32 accumulate)\n",
                    2.0 * n * (double)n * n * reps / bt_time_ms(a, b) / 1e9, n);
        cublasDestroy(blas);
    }
    CK(cudaFree(d0));
    CK(cudaFree(d1));
    CK(cudaFree(sink));
    return 0;
}
