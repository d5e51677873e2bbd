// kernels/cuda/layer_norm.cu: LayerNorm forward and backward kernels (contract and design in
// layer_norm.h, equations in kernels/cpu/layer_norm.h).
#include "kernels/cuda/layer_norm.h"

#include <algorithm>

#include "kernels/cuda/check.h"
#include "kernels/cuda/context.h"
#include "kernels/cuda/launch.h"

namespace ddpm::cuda {

namespace {

constexpr int kWarp = 32;
constexpr int kRowsPerBlock = 8;  // one warp per row, 8 warps (256 threads) per block
constexpr int kThreads = kWarp * kRowsPerBlock;
constexpr unsigned kFullMask = 0xffffffffu;
// Parameter-gradient partials: a block covers 32 columns with 8 row lanes; each row part
// should hold at least kMinRowsPerPart rows, and there are at most kMaxParts parts.
constexpr int kParamRows = 8;
constexpr std::int64_t kMinRowsPerPart = 64;
constexpr std::int64_t kMaxParts = 256;

__device__ __forceinline__ float warp_sum(float x) {
  for (int o = kWarp / 2; o > 0; o >>= 1) x += __shfl_xor_sync(kFullMask, x, o);
  return x;
}

// y = (x - mu) * rstd * gamma + beta per row; mean[row], rstd[row] saved.
__global__ void __launch_bounds__(kThreads)
    layer_norm_forward_kernel(const float* x, const float* gamma, const float* beta, float* y, float* mean,
                              float* rstd, std::int64_t R, std::int64_t C, float eps) {
  const std::int64_t row = std::int64_t(blockIdx.x) * kRowsPerBlock + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (row >= R) return;  // whole warps leave together: rows map to warps
  const float* xr = x + row * C;
  float* yr = y + row * C;
  const float inv_c = 1.f / static_cast<float>(C);
  float s = 0.f;
  for (std::int64_t j = lane; j < C; j += kWarp) s += xr[j];
  const float mu = warp_sum(s) * inv_c;
  float sq = 0.f;
  for (std::int64_t j = lane; j < C; j += kWarp) {
    const float d = xr[j] - mu;
    sq += d * d;
  }
  const float rs = rsqrtf(warp_sum(sq) * inv_c + eps);
  for (std::int64_t j = lane; j < C; j += kWarp) yr[j] = (xr[j] - mu) * rs * gamma[j] + beta[j];
  if (lane == 0) {
    mean[row] = mu;
    rstd[row] = rs;
  }
}

// dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)), dxhat = g * gamma.
__global__ void __launch_bounds__(kThreads)
    layer_norm_backward_dx_kernel(const float* x, const float* gamma, const float* mean, const float* rstd,
                                  const float* dy, float* dx, std::int64_t R, std::int64_t C) {
  const std::int64_t row = std::int64_t(blockIdx.x) * kRowsPerBlock + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (row >= R) return;
  const float* xr = x + row * C;
  const float* gr = dy + row * C;
  float* dxr = dx + row * C;
  const float mu = mean[row], rs = rstd[row], inv_c = 1.f / static_cast<float>(C);
  float sum_dxhat = 0.f, sum_dxhat_xhat = 0.f;
  for (std::int64_t j = lane; j < C; j += kWarp) {
    const float xhat = (xr[j] - mu) * rs;
    const float dxhat = gr[j] * gamma[j];
    sum_dxhat += dxhat;
    sum_dxhat_xhat += dxhat * xhat;
  }
  const float a = warp_sum(sum_dxhat) * inv_c, b = warp_sum(sum_dxhat_xhat) * inv_c;
  for (std::int64_t j = lane; j < C; j += kWarp) {
    const float xhat = (xr[j] - mu) * rs;
    dxr[j] = rs * (gr[j] * gamma[j] - a - xhat * b);
  }
}

// Block (32, kParamRows) at (column tile blockIdx.x, row part blockIdx.y): thread (tx, ty)
// sums column c = tile*32 + tx over rows ty + kParamRows*(part + parts*i); warps read 32
// consecutive floats of a row (coalesced). The kParamRows sums per column meet in shared
// memory and one partial per (part, column) is written.
__global__ void layer_norm_param_partials_kernel(const float* x, const float* mean, const float* rstd,
                                                 const float* dy, float* part_dgamma, float* part_dbeta,
                                                 std::int64_t R, std::int64_t C) {
  __shared__ float sg[kParamRows][kWarp + 1];  // +1: no bank conflicts on the column reads
  __shared__ float sb[kParamRows][kWarp + 1];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const std::int64_t c = std::int64_t(blockIdx.x) * kWarp + tx;
  const std::int64_t part = blockIdx.y, parts = gridDim.y;
  float dg = 0.f, db = 0.f;
  if (c < C) {
    for (std::int64_t r = part * kParamRows + ty; r < R; r += parts * kParamRows) {
      const float g = dy[r * C + c];
      dg += g * (x[r * C + c] - mean[r]) * rstd[r];
      db += g;
    }
  }
  sg[ty][tx] = dg;
  sb[ty][tx] = db;
  __syncthreads();
  if (ty == 0 && c < C) {
    for (int i = 1; i < kParamRows; ++i) {
      dg += sg[i][tx];
      db += sb[i][tx];
    }
    part_dgamma[part * C + c] = dg;
    part_dbeta[part * C + c] = db;
  }
}

// dgamma[c] = sum_p part_dgamma[p, c] (same for dbeta); consecutive threads, consecutive c.
__global__ void layer_norm_param_sum_kernel(const float* part_dgamma, const float* part_dbeta, float* dgamma,
                                            float* dbeta, std::int64_t parts, std::int64_t C) {
  for (std::int64_t c = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; c < C;
       c += std::int64_t(gridDim.x) * blockDim.x) {
    float g = 0.f, b = 0.f;
    for (std::int64_t p = 0; p < parts; ++p) {
      g += part_dgamma[p * C + c];
      b += part_dbeta[p * C + c];
    }
    dgamma[c] = g;
    dbeta[c] = b;
  }
}

// Pool scratch of n floats, released when the scope ends (also on a throw); the pool is
// stream-ordered, so kernels queued before the free still see valid memory.
struct PoolFloats {
  explicit PoolFloats(std::int64_t n) : ptr(static_cast<float*>(pool_alloc(static_cast<std::size_t>(n) * sizeof(float)))) {}
  ~PoolFloats() { pool_free(ptr); }
  PoolFloats(const PoolFloats&) = delete;
  PoolFloats& operator=(const PoolFloats&) = delete;
  float* ptr;
};

unsigned row_blocks(std::int64_t rows) { return static_cast<unsigned>((rows + kRowsPerBlock - 1) / kRowsPerBlock); }

}  // namespace

void layer_norm_forward(const float* x, const float* gamma, const float* beta, float* y, float* mean, float* rstd,
                        std::int64_t R, std::int64_t C, float eps, cudaStream_t stream) {
  if (R == 0 || C == 0) return;
  layer_norm_forward_kernel<<<row_blocks(R), kThreads, 0, stream>>>(x, gamma, beta, y, mean, rstd, R, C, eps);
  DDPM_LAUNCH_CHECK("layer_norm_forward");
}

void layer_norm_backward(const float* x, const float* gamma, const float* mean, const float* rstd, const float* dy,
                         float* dx, float* dgamma, float* dbeta, std::int64_t R, std::int64_t C,
                         cudaStream_t stream) {
  if (R == 0 || C == 0) return;
  layer_norm_backward_dx_kernel<<<row_blocks(R), kThreads, 0, stream>>>(x, gamma, mean, rstd, dy, dx, R, C);
  DDPM_LAUNCH_CHECK("layer_norm_backward_dx");

  const std::int64_t parts = std::clamp<std::int64_t>((R + kMinRowsPerPart - 1) / kMinRowsPerPart, 1, kMaxParts);
  const PoolFloats partials(2 * parts * C);
  float* part_dgamma = partials.ptr;          // [parts, C]
  float* part_dbeta = partials.ptr + parts * C;  // [parts, C]
  const dim3 grid(static_cast<unsigned>((C + kWarp - 1) / kWarp), static_cast<unsigned>(parts));
  layer_norm_param_partials_kernel<<<grid, dim3(kWarp, kParamRows), 0, stream>>>(x, mean, rstd, dy, part_dgamma,
                                                                                 part_dbeta, R, C);
  DDPM_LAUNCH_CHECK("layer_norm_param_partials");
  constexpr int kSumThreads = 256;
  layer_norm_param_sum_kernel<<<grid_for(C, kSumThreads), kSumThreads, 0, stream>>>(part_dgamma, part_dbeta, dgamma,
                                                                                    dbeta, parts, C);
  DDPM_LAUNCH_CHECK("layer_norm_param_sum");
}

}  // namespace ddpm::cuda
