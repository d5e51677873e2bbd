// kernels/cuda/launch.h: launch-size helpers shared by the CUDA kernels.
//
// Most kernels here are grid-stride loops: thread i handles elements i, i + stride,
// i + 2 stride, ... with stride = gridDim.x * blockDim.x, so any grid size is correct and
// the grid only needs to be large enough to fill the device.
#pragma once

#include <algorithm>
#include <cstdint>

namespace ddpm::cuda {

// Most blocks a grid-stride launch uses: 8 x 65535, far more than enough resident blocks
// to fill any current GPU; a larger n is covered by the stride loop.
constexpr std::int64_t kMaxGridStrideBlocks = 65535 * 8;

// Blocks for a grid-stride loop over n elements with `threads` threads per block:
// ceil(n / threads), at least 1 and at most kMaxGridStrideBlocks.
inline unsigned grid_for(std::int64_t n, int threads) {
  const std::int64_t blocks = (n + threads - 1) / threads;
  return static_cast<unsigned>(std::min<std::int64_t>(std::max<std::int64_t>(blocks, 1), kMaxGridStrideBlocks));
}

}  // namespace ddpm::cuda
