// kernels/cuda/dropout.h: the CUDA twin of kernels/cpu/dropout.h (fp32): the same Philox
// element decides each mask bit, so CPU and CUDA drop the same elements for the same
// (seed, offset) and produce identical values.
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

namespace ddpm::cuda {

void dropout_apply(const float* x, float* y, std::int64_t n, std::uint64_t seed, std::uint64_t offset, double p,
                   float scale, cudaStream_t stream);

}  // namespace ddpm::cuda
