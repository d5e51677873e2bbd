// kernels/cuda/transpose.h: CUDA version of kernels/cpu/transpose.h (fp32).
// x [outer, d0, mid, d1, inner] -> y [outer, d1, mid, d0, inner]; a pure copy, so the result
// matches the CPU reference bit for bit.
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

namespace ddpm::cuda {

void transpose_axes(const float* x, float* y, std::int64_t outer, std::int64_t d0, std::int64_t mid, std::int64_t d1,
                    std::int64_t inner, cudaStream_t stream);

}  // namespace ddpm::cuda
