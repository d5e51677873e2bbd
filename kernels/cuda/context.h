// kernels/cuda/context.h: the per-process CUDA state shared by every kernel.
//
// One process drives one device (multi-GPU is one process per GPU, over NCCL). All work is
// issued on one non-blocking stream, so the order of ops is the program order and a CUDA
// graph can capture a whole step. Memory comes from the device's stream-ordered pool
// (cudaMallocAsync) with its release threshold raised to "never", so freed blocks stay
// cached and steady-state training makes no cudaMalloc calls at all.
#pragma once

#include <cstddef>

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <cudnn.h>

namespace ddpm::cuda {

// Selects the device this process uses (default 0). Call before any other function here.
void set_device(int index);
int current_device();

cudaStream_t stream();
// Bound to stream(). Its math mode follows ddpm::allow_tf32() (engine/math_mode.h), applied
// when the handle is handed out: CUBLAS_DEFAULT_MATH (true fp32, the default) or
// CUBLAS_TF32_TENSOR_OP_MATH. Fetch it per call rather than keeping it across a change of
// that setting.
cublasHandle_t cublas();
cudnnHandle_t cudnn();    // bound to stream()

// Stream-ordered pool allocation on stream(). Throws OutOfMemoryError naming the bytes.
void* pool_alloc(std::size_t bytes);
void pool_free(void* ptr) noexcept;  // logs (never throws) on failure

// Bytes the pool currently holds from the driver, and the peak since start.
std::size_t pool_reserved_bytes();
std::size_t pool_used_bytes();

void synchronize();  // waits for stream()

}  // namespace ddpm::cuda
