// kernels/cuda/dropout.cu: grid-stride inverted dropout; y_i = (u_i < p) ? 0 : x_i * scale
// with u_i element (offset + i) of the Philox uniform stream for `seed`.
#include "kernels/cuda/dropout.h"

#include <algorithm>

#include "kernels/common/philox.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/launch.h"

namespace ddpm::cuda {

namespace {

constexpr int kThreads = 256;

__global__ void dropout_kernel(const float* x, float* y, std::int64_t n, std::uint64_t seed, std::uint64_t offset,
                               double p, float scale) {
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < n;
       i += std::int64_t(gridDim.x) * blockDim.x) {
    double u = static_cast<double>(philox::uniform_at(seed, offset + static_cast<std::uint64_t>(i)));
    y[i] = u < p ? 0.f : x[i] * scale;
  }
}

}  // namespace

void dropout_apply(const float* x, float* y, std::int64_t n, std::uint64_t seed, std::uint64_t offset, double p,
                   float scale, cudaStream_t stream) {
  if (n == 0) return;
  dropout_kernel<<<grid_for(n, kThreads), kThreads, 0, stream>>>(x, y, n, seed, offset, p, scale);
  DDPM_LAUNCH_CHECK("dropout");
}

}  // namespace ddpm::cuda
