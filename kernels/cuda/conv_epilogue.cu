// kernels/cuda/conv_epilogue.cu: the fused convolution epilogue and the per-sample bias
// reduction (equations and byte counts in conv_epilogue.h).
//
// Epilogue. A 2-D grid: blockIdx.y walks the samples (so the sample index comes for free and
// sample_bias's row is fixed per block), blockIdx.x/threadIdx.x a grid-stride loop over one
// sample's pixels*c values, channels fastest, so a warp reads 32 consecutive vectors of y
// and of the residual. When c is a multiple of 4 and every pointer is 16-byte aligned, each
// thread moves a float4 (four channels: 128-bit loads and stores, a quarter of the index
// math); otherwise the scalar kernel does the same per float. Offsets are 32-bit: a sample
// has at most 2^31 - 1 values (checked on the host), and the grid stride is below 2^28.
//
// Reduction gsb[n, c] = sum_p gy[n, p, c]. A block of 32 x 16 threads owns 32 channels of one
// sample: thread (tx, ty) sums the pixels p = ty, ty + 16, ... of channel c0 + tx, so each
// warp (one ty) reads 32 consecutive floats = one 128-byte line per pixel (coalesced over c).
// The 16 partial sums meet in shared memory and row 0 adds them in a fixed order: no atomics,
// the same bits on every run. For the UNet's 32x32 C=128 batch 128 that is 4 x 128 = 512
// blocks of 512 threads, each thread summing 64 values: one full wave on an H100 (132 SMs x
// 4 such blocks), so every SM has 64 warps streaming 128-byte lines. The bias
// gradient sum_n gsb[n, c] is a second, tiny kernel over the [n, c] array (n*c floats).
#include "kernels/cuda/conv_epilogue.h"

#include <algorithm>
#include <climits>

#include "engine/error.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/launch.h"

namespace ddpm::cuda {

namespace {

constexpr int kThreads = 256;
constexpr unsigned kMaxSampleBlocks = 65535;  // gridDim.y limit; more samples: the y loop strides

__device__ __forceinline__ float plus(float a, float b) { return a + b; }
__device__ __forceinline__ float4 plus(float4 a, float4 b) {
  return make_float4(a.x + b.x, a.y + b.y, a.z + b.z, a.w + b.w);
}

// V is float or float4; per_sample = pixels * cv values of V, cv = channels in units of V.
template <class V>
__global__ void conv2d_epilogue_kernel(V* __restrict__ y, const V* __restrict__ bias,
                                       const V* __restrict__ sample_bias, const V* __restrict__ residual,
                                       unsigned n, unsigned per_sample, unsigned cv) {
  const unsigned stride = gridDim.x * blockDim.x;
  for (unsigned s = blockIdx.y; s < n; s += gridDim.y) {
    const std::size_t base = static_cast<std::size_t>(s) * per_sample;
    V* ys = y + base;
    const V* rs = residual ? residual + base : nullptr;
    const V* sbs = sample_bias ? sample_bias + static_cast<std::size_t>(s) * cv : nullptr;
    for (unsigned i = blockIdx.x * blockDim.x + threadIdx.x; i < per_sample; i += stride) {
      const unsigned c = i % cv;
      V v = ys[i];
      if (bias) v = plus(v, bias[c]);
      if (sbs) v = plus(v, sbs[c]);
      if (rs) v = plus(v, rs[i]);
      ys[i] = v;
    }
  }
}

constexpr int kRedX = 32;  // channels per block (one warp wide)
constexpr int kRedY = 16;  // pixel rows per block

// gsb [n, c] = sum_p gy [n, pixels, c]; grid (ceil(c / 32), min(n, 65535)), block (32, 16).
__global__ void sample_bias_grad_kernel(const float* __restrict__ gy, float* __restrict__ gsb, unsigned n,
                                        unsigned pixels, unsigned c) {
  __shared__ float part[kRedY][kRedX];
  const unsigned ch = blockIdx.x * kRedX + threadIdx.x;
  for (unsigned s = blockIdx.y; s < n; s += gridDim.y) {
    float acc = 0.f;
    if (ch < c) {
      const float* g = gy + static_cast<std::size_t>(s) * pixels * c + ch;
#pragma unroll 4
      for (unsigned p = threadIdx.y; p < pixels; p += kRedY) acc += g[static_cast<std::size_t>(p) * c];
    }
    part[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && ch < c) {
      float total = part[0][threadIdx.x];
#pragma unroll
      for (int r = 1; r < kRedY; ++r) total += part[r][threadIdx.x];
      gsb[static_cast<std::size_t>(s) * c + ch] = total;
    }
    __syncthreads();  // `part` is reused by the next sample of this block
  }
}

// gb [c] = sum_n gsb [n, c], one thread per channel, n in order.
__global__ void bias_from_sample_bias_kernel(const float* __restrict__ gsb, float* __restrict__ gb, unsigned n,
                                             unsigned c) {
  for (unsigned ch = blockIdx.x * blockDim.x + threadIdx.x; ch < c; ch += gridDim.x * blockDim.x) {
    float acc = 0.f;
    for (unsigned s = 0; s < n; ++s) acc += gsb[static_cast<std::size_t>(s) * c + ch];
    gb[ch] = acc;
  }
}

bool aligned16(const void* p) { return p == nullptr || reinterpret_cast<std::uintptr_t>(p) % 16 == 0; }

void check_sizes(const char* what, std::int64_t n, std::int64_t pixels, std::int64_t c) {
  DDPM_CHECK(n >= 0 && pixels >= 0 && c >= 0, what << ": negative size (n " << n << ", pixels " << pixels << ", c "
                                                   << c << ")");
  DDPM_CHECK(n <= UINT_MAX && pixels * c <= INT_MAX && n * pixels * c <= INT_MAX,
             what << ": [" << n << ", " << pixels << ", " << c << "] has more than 2^31-1 elements");
}

}  // namespace

void conv2d_epilogue(float* y, const float* bias, const float* sample_bias, const float* residual, std::int64_t n,
                     std::int64_t pixels, std::int64_t c, cudaStream_t stream) {
  check_sizes("conv2d_epilogue", n, pixels, c);
  if (n * pixels * c == 0 || (!bias && !sample_bias && !residual)) return;
  const bool vec4 = c % 4 == 0 && aligned16(y) && aligned16(bias) && aligned16(sample_bias) && aligned16(residual);
  const std::int64_t cv = vec4 ? c / 4 : c, per_sample = pixels * cv;
  dim3 grid(grid_for(per_sample, kThreads), static_cast<unsigned>(std::min<std::int64_t>(n, kMaxSampleBlocks)));
  // Cap the total blocks near kMaxGridStrideBlocks; the x loop strides over the rest.
  grid.x = std::max(1u, std::min<unsigned>(grid.x, static_cast<unsigned>(kMaxGridStrideBlocks / grid.y)));
  if (vec4) {
    conv2d_epilogue_kernel<float4><<<grid, kThreads, 0, stream>>>(
        reinterpret_cast<float4*>(y), reinterpret_cast<const float4*>(bias),
        reinterpret_cast<const float4*>(sample_bias), reinterpret_cast<const float4*>(residual),
        static_cast<unsigned>(n), static_cast<unsigned>(per_sample), static_cast<unsigned>(cv));
  } else {
    conv2d_epilogue_kernel<float><<<grid, kThreads, 0, stream>>>(y, bias, sample_bias, residual,
                                                                 static_cast<unsigned>(n),
                                                                 static_cast<unsigned>(per_sample),
                                                                 static_cast<unsigned>(cv));
  }
  DDPM_LAUNCH_CHECK("conv2d_epilogue");
}

void conv2d_backward_sample_bias(const float* gy, float* gsb, float* gb, std::int64_t n, std::int64_t pixels,
                                 std::int64_t c, cudaStream_t stream) {
  check_sizes("conv2d_backward_sample_bias", n, pixels, c);
  if (n * c == 0) return;
  if (pixels == 0) {  // empty sums
    DDPM_CUDA_CHECK(cudaMemsetAsync(gsb, 0, static_cast<std::size_t>(n * c) * sizeof(float), stream));
    if (gb) DDPM_CUDA_CHECK(cudaMemsetAsync(gb, 0, static_cast<std::size_t>(c) * sizeof(float), stream));
    return;
  }
  const dim3 block(kRedX, kRedY);
  const dim3 grid(static_cast<unsigned>((c + kRedX - 1) / kRedX),
                  static_cast<unsigned>(std::min<std::int64_t>(n, kMaxSampleBlocks)));
  sample_bias_grad_kernel<<<grid, block, 0, stream>>>(gy, gsb, static_cast<unsigned>(n),
                                                      static_cast<unsigned>(pixels), static_cast<unsigned>(c));
  DDPM_LAUNCH_CHECK("conv2d_backward_sample_bias");
  if (!gb) return;
  bias_from_sample_bias_kernel<<<grid_for(c, kThreads), kThreads, 0, stream>>>(gsb, gb, static_cast<unsigned>(n),
                                                                               static_cast<unsigned>(c));
  DDPM_LAUNCH_CHECK("conv2d_backward_sample_bias (bias)");
}

}  // namespace ddpm::cuda
