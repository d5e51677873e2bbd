#include "kernels/cuda/random.h"

#include <algorithm>

#include "kernels/common/philox.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/launch.h"

namespace ddpm::cuda {

namespace {

constexpr int kThreads = 256;

template <bool kNormal>
__global__ void philox_kernel(float* out, std::int64_t n, std::uint64_t seed, std::uint64_t offset) {
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < n;
       i += std::int64_t(gridDim.x) * blockDim.x) {
    std::uint64_t g = offset + static_cast<std::uint64_t>(i);
    out[i] = kNormal ? philox::normal_at(seed, g) : philox::uniform_at(seed, g);
  }
}

template <bool kNormal>
void launch(float* out, std::int64_t n, std::uint64_t seed, std::uint64_t offset, cudaStream_t stream) {
  if (n == 0) return;
  philox_kernel<kNormal><<<grid_for(n, kThreads), kThreads, 0, stream>>>(out, n, seed, offset);
  DDPM_LAUNCH_CHECK(kNormal ? "philox_normal" : "philox_uniform");
}

}  // namespace

void philox_uniform(float* out, std::int64_t n, std::uint64_t seed, std::uint64_t offset, cudaStream_t stream) {
  launch<false>(out, n, seed, offset, stream);
}

void philox_normal(float* out, std::int64_t n, std::uint64_t seed, std::uint64_t offset, cudaStream_t stream) {
  launch<true>(out, n, seed, offset, stream);
}

}  // namespace ddpm::cuda
