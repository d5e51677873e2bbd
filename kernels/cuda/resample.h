// kernels/cuda/resample.h: CUDA versions of kernels/cpu/resample.h (fp32, NHWC).
// (N, H, W, C) are the low-resolution sizes, as on the CPU; the sums run in the same
// order, so results match the CPU reference bit for bit.
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

namespace ddpm::cuda {

void upsample_nearest2x_forward(const float* x, float* y, std::int64_t N, std::int64_t H, std::int64_t W,
                                std::int64_t C, cudaStream_t stream);
void upsample_nearest2x_backward(const float* g, float* gx, std::int64_t N, std::int64_t H, std::int64_t W,
                                 std::int64_t C, cudaStream_t stream);
void avg_pool2x_forward(const float* x, float* y, std::int64_t N, std::int64_t H, std::int64_t W, std::int64_t C,
                        cudaStream_t stream);
void avg_pool2x_backward(const float* g, float* gx, std::int64_t N, std::int64_t H, std::int64_t W, std::int64_t C,
                         cudaStream_t stream);

}  // namespace ddpm::cuda
