// kernels/cuda/resample.cu: nearest 2x upsampling and 2x2 average pooling, NHWC.
//
// One thread per element of the tensor being written, grid-stride. Channels are fastest,
// so neighbouring threads touch neighbouring addresses on both sides. When C is a multiple
// of 4 and the pointers are 16-byte aligned, each thread moves a float4 (four channels),
// which quarters the index arithmetic; the per-lane math is the same as the scalar path.
#include "kernels/cuda/resample.h"

#include <algorithm>

#include "kernels/cuda/check.h"
#include "kernels/cuda/launch.h"

namespace ddpm::cuda {

namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ float sum4(float a, float b, float c, float d) { return ((a + b) + c) + d; }
__device__ __forceinline__ float4 sum4(float4 a, float4 b, float4 c, float4 d) {
  return make_float4(sum4(a.x, b.x, c.x, d.x), sum4(a.y, b.y, c.y, d.y), sum4(a.z, b.z, c.z, d.z),
                     sum4(a.w, b.w, c.w, d.w));
}
__device__ __forceinline__ float times(float a, float s) { return a * s; }
__device__ __forceinline__ float4 times(float4 a, float s) { return make_float4(a.x * s, a.y * s, a.z * s, a.w * s); }

// In every kernel, C counts vectors V per pixel (C / 4 for float4) and i walks the output.

// y [N, 2H, 2W, C] from x [N, H, W, C]; also avg_pool backward (g/4 spread), with s = 1/4.
template <class V>
__global__ void spread_kernel(const V* src, V* dst, std::int64_t N, std::int64_t H, std::int64_t W, std::int64_t C,
                              float s, bool do_scale) {
  std::int64_t n_out = N * 4 * H * W * C;
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < n_out;
       i += std::int64_t(gridDim.x) * blockDim.x) {
    std::int64_t c = i % C, p = i / C;
    std::int64_t w2 = p % (2 * W);
    p /= 2 * W;
    std::int64_t h2 = p % (2 * H), n = p / (2 * H);
    V v = src[((n * H + h2 / 2) * W + w2 / 2) * C + c];
    dst[i] = do_scale ? times(v, s) : v;
  }
}

// y [N, H, W, C] = s * (sum of each 2x2 block of x [N, 2H, 2W, C]): upsample backward
// with s = 1 (skipped), avg_pool forward with s = 1/4.
template <class V>
__global__ void gather_kernel(const V* src, V* dst, std::int64_t N, std::int64_t H, std::int64_t W, std::int64_t C,
                              float s, bool do_scale) {
  std::int64_t n_out = N * H * W * C;
  std::int64_t row = 2 * W * C;  // one high-resolution row
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < n_out;
       i += std::int64_t(gridDim.x) * blockDim.x) {
    std::int64_t c = i % C, p = i / C;
    std::int64_t w = p % W;
    p /= W;
    std::int64_t h = p % H, n = p / H;
    const V* s00 = src + ((n * 2 * H + 2 * h) * 2 * W + 2 * w) * C + c;
    V v = sum4(s00[0], s00[C], s00[row], s00[row + C]);
    dst[i] = do_scale ? times(v, s) : v;
  }
}

bool vec4_ok(const float* a, const float* b, std::int64_t C) {
  return C % 4 == 0 && reinterpret_cast<std::uintptr_t>(a) % 16 == 0 && reinterpret_cast<std::uintptr_t>(b) % 16 == 0;
}

void spread(const float* src, float* dst, std::int64_t N, std::int64_t H, std::int64_t W, std::int64_t C, float s,
            bool do_scale, cudaStream_t stream, const char* name) {
  std::int64_t n_out = N * 4 * H * W * C;
  if (n_out == 0) return;
  if (vec4_ok(src, dst, C))
    spread_kernel<float4><<<grid_for(n_out / 4, kThreads), kThreads, 0, stream>>>(
        reinterpret_cast<const float4*>(src), reinterpret_cast<float4*>(dst), N, H, W, C / 4, s, do_scale);
  else
    spread_kernel<float><<<grid_for(n_out, kThreads), kThreads, 0, stream>>>(src, dst, N, H, W, C, s, do_scale);
  DDPM_LAUNCH_CHECK(name);
}

void gather(const float* src, float* dst, std::int64_t N, std::int64_t H, std::int64_t W, std::int64_t C, float s,
            bool do_scale, cudaStream_t stream, const char* name) {
  std::int64_t n_out = N * H * W * C;
  if (n_out == 0) return;
  if (vec4_ok(src, dst, C))
    gather_kernel<float4><<<grid_for(n_out / 4, kThreads), kThreads, 0, stream>>>(
        reinterpret_cast<const float4*>(src), reinterpret_cast<float4*>(dst), N, H, W, C / 4, s, do_scale);
  else
    gather_kernel<float><<<grid_for(n_out, kThreads), kThreads, 0, stream>>>(src, dst, N, H, W, C, s, do_scale);
  DDPM_LAUNCH_CHECK(name);
}

}  // namespace

void upsample_nearest2x_forward(const float* x, float* y, std::int64_t N, std::int64_t H, std::int64_t W,
                                std::int64_t C, cudaStream_t stream) {
  spread(x, y, N, H, W, C, 1.f, false, stream, "upsample_nearest2x_forward");
}

void upsample_nearest2x_backward(const float* g, float* gx, std::int64_t N, std::int64_t H, std::int64_t W,
                                 std::int64_t C, cudaStream_t stream) {
  gather(g, gx, N, H, W, C, 1.f, false, stream, "upsample_nearest2x_backward");
}

void avg_pool2x_forward(const float* x, float* y, std::int64_t N, std::int64_t H, std::int64_t W, std::int64_t C,
                        cudaStream_t stream) {
  gather(x, y, N, H, W, C, 0.25f, true, stream, "avg_pool2x_forward");
}

void avg_pool2x_backward(const float* g, float* gx, std::int64_t N, std::int64_t H, std::int64_t W, std::int64_t C,
                         cudaStream_t stream) {
  spread(g, gx, N, H, W, C, 0.25f, true, stream, "avg_pool2x_backward");
}

}  // namespace ddpm::cuda
