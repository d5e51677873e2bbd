// kernels/cuda/check.h: every CUDA runtime, cuBLAS and cuDNN call goes through one of
// these macros, and every kernel launch is followed by DDPM_LAUNCH_CHECK.
//
// Asynchronous faults (an illegal address inside a kernel) surface at some later call.
// Setting the environment variable DDPM_SYNC_KERNELS=1 makes DDPM_LAUNCH_CHECK
// synchronize after every launch, so the fault is reported at the kernel that caused it.
#pragma once

#include <cstdint>

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <cudnn.h>

#include "engine/error.h"

namespace ddpm::cuda {

// True when DDPM_SYNC_KERNELS is set to a non-empty value other than "0" (read once).
bool sync_after_every_kernel();
const char* cublas_status_name(cublasStatus_t s);

// Launch counters for the profiler (engine/profiler.h), process-wide and monotonic:
// kernels launched by the engine (one per DDPM_LAUNCH_CHECK) and cuBLAS/cuDNN calls that
// run work on the device (each one or more kernels; handle, descriptor and query calls are
// not counted: see is_library_compute_call).
void count_kernel_launch() noexcept;
void count_library_call() noexcept;
std::uint64_t kernel_launch_count() noexcept;
std::uint64_t library_call_count() noexcept;
// True when the checked expression text calls a cuBLAS/cuDNN function that computes
// (cublasSgemm, cudnnConvolutionForward, ...), false for Create/Destroy/Set/Get/Find calls.
bool is_library_compute_call(const char* expr) noexcept;

}  // namespace ddpm::cuda

#define DDPM_CUDA_CHECK(expr)                                                              \
  do {                                                                                     \
    cudaError_t ddpm_err_ = (expr);                                                        \
    if (ddpm_err_ != cudaSuccess) {                                                        \
      DDPM_THROW(::ddpm::CudaError, "CUDA call `" #expr "` failed: "                       \
                                        << cudaGetErrorName(ddpm_err_) << " ("              \
                                        << cudaGetErrorString(ddpm_err_) << ")");           \
    }                                                                                      \
  } while (0)

#define DDPM_CUBLAS_CHECK(expr)                                                            \
  do {                                                                                     \
    static const bool ddpm_counted_ = ::ddpm::cuda::is_library_compute_call(#expr);         \
    if (ddpm_counted_) ::ddpm::cuda::count_library_call();                                 \
    cublasStatus_t ddpm_st_ = (expr);                                                      \
    if (ddpm_st_ != CUBLAS_STATUS_SUCCESS) {                                               \
      DDPM_THROW(::ddpm::CudaError, "cuBLAS call `" #expr "` failed: "                     \
                                        << ::ddpm::cuda::cublas_status_name(ddpm_st_));     \
    }                                                                                      \
  } while (0)

#define DDPM_CUDNN_CHECK(expr)                                                             \
  do {                                                                                     \
    static const bool ddpm_counted_ = ::ddpm::cuda::is_library_compute_call(#expr);         \
    if (ddpm_counted_) ::ddpm::cuda::count_library_call();                                 \
    cudnnStatus_t ddpm_st_ = (expr);                                                       \
    if (ddpm_st_ != CUDNN_STATUS_SUCCESS) {                                                \
      DDPM_THROW(::ddpm::CudaError, "cuDNN call `" #expr "` failed: "                      \
                                        << cudnnGetErrorString(ddpm_st_));                  \
    }                                                                                      \
  } while (0)

// After every <<<...>>>: catches launch-configuration errors at once, and with
// DDPM_SYNC_KERNELS=1 also faults that happen while the kernel runs.
#define DDPM_LAUNCH_CHECK(kernel_name)                                                     \
  do {                                                                                     \
    ::ddpm::cuda::count_kernel_launch();                                                   \
    cudaError_t ddpm_err_ = cudaGetLastError();                                            \
    if (ddpm_err_ == cudaSuccess && ::ddpm::cuda::sync_after_every_kernel())               \
      ddpm_err_ = cudaDeviceSynchronize();                                                 \
    if (ddpm_err_ != cudaSuccess) {                                                        \
      DDPM_THROW(::ddpm::CudaError, "kernel " << (kernel_name) << " failed: "                \
                                        << cudaGetErrorName(ddpm_err_) << " ("              \
                                        << cudaGetErrorString(ddpm_err_) << ")");           \
    }                                                                                      \
  } while (0)
