// kernels/cuda/optim.cu: grid-stride kernels over the parameter slab, and a two-level
// double-precision reduction for the gradient norm. The per-element formulas are those of
// kernels/cpu/optim.cpp, line for line.
#include "kernels/cuda/optim.h"

#include <algorithm>

#include "kernels/cuda/check.h"
#include "kernels/cuda/launch.h"
#include "kernels/cuda/context.h"

namespace ddpm::cuda {

namespace {

constexpr int kThreads = 256;
// Partials of the first reduction level; also the block size of the second level.
constexpr int kMaxReduceBlocks = 1024;

__global__ void adamw_kernel(float* __restrict__ p, const float* __restrict__ g, float* __restrict__ m,
                             float* __restrict__ v, std::int64_t n, AdamWScalars s) {
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < n;
       i += std::int64_t(gridDim.x) * blockDim.x) {
    // Explicitly rounded operations (no fused multiply-add contraction), so every value is
    // the same IEEE result as the CPU loop's: CPU and CUDA runs can be compared step by step.
    const float gi = g[i];
    // m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g^2
    const float mi = __fadd_rn(__fmul_rn(s.beta1, m[i]), __fmul_rn(s.one_minus_beta1, gi));
    const float vi = __fadd_rn(__fmul_rn(s.beta2, v[i]), __fmul_rn(__fmul_rn(s.one_minus_beta2, gi), gi));
    m[i] = mi;
    v[i] = vi;
    const float denom = __fadd_rn(__fmul_rn(__fsqrt_rn(vi), s.inv_sqrt_bc2), s.eps);  // sqrt(v_hat) + eps
    p[i] = __fsub_rn(__fmul_rn(s.decay, p[i]), __fdiv_rn(__fmul_rn(s.step_size, mi), denom));
  }
}

// Sum of `value` over the block, valid in thread 0. blockDim.x must be a multiple of 32
// and at most 1024. Warp shuffles first, then the first warp sums the warp totals.
__device__ double block_sum(double value) {
  __shared__ double warp_totals[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int offset = 16; offset > 0; offset >>= 1) value += __shfl_down_sync(0xffffffffu, value, offset);
  if (lane == 0) warp_totals[warp] = value;
  __syncthreads();
  if (warp == 0) {
    const int n_warps = blockDim.x >> 5;
    value = lane < n_warps ? warp_totals[lane] : 0.0;
    for (int offset = 16; offset > 0; offset >>= 1) value += __shfl_down_sync(0xffffffffu, value, offset);
  }
  return value;
}

// Level 1: partial[b] = sum of x[i]^2 over block b's grid-stride share, in double.
__global__ void sum_squares_partial_kernel(const float* __restrict__ x, std::int64_t n, double* partial) {
  double acc = 0.0;
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < n;
       i += std::int64_t(gridDim.x) * blockDim.x) {
    const double xi = x[i];
    acc += xi * xi;
  }
  acc = block_sum(acc);
  if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

// Level 2: one block sums the partials into *out.
__global__ void sum_partials_kernel(const double* partial, int n_partial, double* out) {
  double acc = 0.0;
  for (int i = threadIdx.x; i < n_partial; i += blockDim.x) acc += partial[i];
  acc = block_sum(acc);
  if (threadIdx.x == 0) *out = acc;
}

__global__ void scale_kernel(float* x, std::int64_t n, float alpha) {
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < n;
       i += std::int64_t(gridDim.x) * blockDim.x)
    x[i] *= alpha;
}

__global__ void ema_kernel(float* __restrict__ ema, const float* __restrict__ p, std::int64_t n, float decay,
                           float one_minus_decay) {
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < n;
       i += std::int64_t(gridDim.x) * blockDim.x)
    ema[i] = __fadd_rn(__fmul_rn(decay, ema[i]), __fmul_rn(one_minus_decay, p[i]));  // as on the CPU, unfused
}

// Pool scratch returned on every path, including a failed launch check.
struct Scratch {
  void* ptr;
  explicit Scratch(std::size_t bytes) : ptr(pool_alloc(bytes)) {}
  ~Scratch() { pool_free(ptr); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
};

}  // namespace

void adamw_step(float* p, const float* g, float* m, float* v, std::int64_t n, const AdamWScalars& s,
                cudaStream_t stream) {
  if (n == 0) return;
  adamw_kernel<<<grid_for(n, kThreads), kThreads, 0, stream>>>(p, g, m, v, n, s);
  DDPM_LAUNCH_CHECK("adamw_step");
}

double sum_squares(const float* x, std::int64_t n, cudaStream_t stream) {
  if (n == 0) return 0.0;
  const int blocks = static_cast<int>(std::min<std::int64_t>((n + kThreads - 1) / kThreads, kMaxReduceBlocks));
  Scratch scratch(sizeof(double) * static_cast<std::size_t>(blocks + 1));
  double* partial = static_cast<double*>(scratch.ptr);
  double* total = partial + blocks;
  sum_squares_partial_kernel<<<blocks, kThreads, 0, stream>>>(x, n, partial);
  DDPM_LAUNCH_CHECK("sum_squares (partials)");
  sum_partials_kernel<<<1, kMaxReduceBlocks, 0, stream>>>(partial, blocks, total);
  DDPM_LAUNCH_CHECK("sum_squares (total)");
  double host = 0.0;
  DDPM_CUDA_CHECK(cudaMemcpyAsync(&host, total, sizeof(double), cudaMemcpyDeviceToHost, stream));
  DDPM_CUDA_CHECK(cudaStreamSynchronize(stream));
  return host;
}

void scale_inplace(float* x, std::int64_t n, float alpha, cudaStream_t stream) {
  if (n == 0) return;
  scale_kernel<<<grid_for(n, kThreads), kThreads, 0, stream>>>(x, n, alpha);
  DDPM_LAUNCH_CHECK("scale_inplace");
}

void ema_update(float* ema, const float* p, std::int64_t n, float decay, float one_minus_decay,
                cudaStream_t stream) {
  if (n == 0) return;
  ema_kernel<<<grid_for(n, kThreads), kThreads, 0, stream>>>(ema, p, n, decay, one_minus_decay);
  DDPM_LAUNCH_CHECK("ema_update");
}

}  // namespace ddpm::cuda
