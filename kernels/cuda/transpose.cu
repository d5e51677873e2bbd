// kernels/cuda/transpose.cu: swapping two axes, x [outer, d0, mid, d1, inner] ->
// y [outer, d1, mid, d0, inner].
//
// One thread per output element, grid-stride, so the writes are coalesced; the reads are
// coalesced along `inner` (the channels in the UNet's uses: [N, F, H*W, C] <-> [N, H*W, F, C]
// has inner = C). When inner is a multiple of 4 and both pointers are 16-byte aligned each
// thread moves a float4, which quarters the index arithmetic.
#include "kernels/cuda/transpose.h"

#include <cstdint>

#include "kernels/cuda/check.h"
#include "kernels/cuda/launch.h"

namespace ddpm::cuda {

namespace {

constexpr int kThreads = 256;

// `inner` counts vectors V (inner / 4 for float4); i walks y in order.
template <class V>
__global__ void transpose_kernel(const V* x, V* y, std::int64_t outer, std::int64_t d0, std::int64_t mid,
                                 std::int64_t d1, std::int64_t inner) {
  const std::int64_t n = outer * d0 * mid * d1 * inner;
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < n;
       i += std::int64_t(gridDim.x) * blockDim.x) {
    std::int64_t p = i;
    const std::int64_t r = p % inner;
    p /= inner;
    const std::int64_t a = p % d0;  // index along d0 (the output's fourth axis)
    p /= d0;
    const std::int64_t m = p % mid;
    p /= mid;
    const std::int64_t b = p % d1;  // index along d1 (the output's second axis)
    const std::int64_t o = p / d1;
    y[i] = x[(((o * d0 + a) * mid + m) * d1 + b) * inner + r];
  }
}

bool vec4_ok(const float* a, const float* b, std::int64_t inner) {
  return inner % 4 == 0 && reinterpret_cast<std::uintptr_t>(a) % 16 == 0 &&
         reinterpret_cast<std::uintptr_t>(b) % 16 == 0;
}

}  // namespace

void transpose_axes(const float* x, float* y, std::int64_t outer, std::int64_t d0, std::int64_t mid, std::int64_t d1,
                    std::int64_t inner, cudaStream_t stream) {
  const std::int64_t n = outer * d0 * mid * d1 * inner;
  if (n == 0) return;
  if (vec4_ok(x, y, inner))
    transpose_kernel<float4><<<grid_for(n / 4, kThreads), kThreads, 0, stream>>>(
        reinterpret_cast<const float4*>(x), reinterpret_cast<float4*>(y), outer, d0, mid, d1, inner / 4);
  else
    transpose_kernel<float><<<grid_for(n, kThreads), kThreads, 0, stream>>>(x, y, outer, d0, mid, d1, inner);
  DDPM_LAUNCH_CHECK("transpose_axes");
}

}  // namespace ddpm::cuda
