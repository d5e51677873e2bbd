// kernels/cuda/random.h: the CUDA twin of kernels/cpu/random.h (same bits).
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

namespace ddpm::cuda {

void philox_uniform(float* out, std::int64_t n, std::uint64_t seed, std::uint64_t offset, cudaStream_t stream);
void philox_normal(float* out, std::int64_t n, std::uint64_t seed, std::uint64_t offset, cudaStream_t stream);

}  // namespace ddpm::cuda
