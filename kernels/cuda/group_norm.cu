// kernels/cuda/group_norm.cu: GroupNorm (+ AdaGN, + SiLU) forward and backward in fp32.
// Equations: kernels/cpu/group_norm.h. Layout: x [N, HW, C], channels fastest.
//
// Design (the op is memory-bound: the goal is one DRAM read of x and one write of y).
//
// * Slab path (group_norm_slab.cu), tried first: the UNet's shapes (C % 32 == 0, Cg in
//   {4, 8, 16, 32}) with blocks owning whole 128-byte lines and a sample's pixels split over
//   a thread-block cluster. The fused and two-pass kernels below take every other shape.
// * Fused path, one thread block per (n, gpb adjacent groups). In NHWC a group is a run of
//   Cg = C/G contiguous channels repeated at every pixel, C floats apart. A block owns the
//   channel span [c0, c0 + CB), CB = gpb * Cg, of all HW pixels of one sample. When Cg < 8
//   a block takes gpb = 8/Cg groups, so each pixel's run is at least 8 floats = one 32-byte
//   DRAM sector and no sector is fetched by two blocks.
// * Thread t owns one vector position cv = t % CBV of the span (CBV = CB / VEC vectors of
//   VEC = 4, 2 or 1 floats: float4 loads when Cg allows) and ITEMS pixels
//   p = t / CBV + k * rows. A thread's channels never change, so it belongs to one group,
//   and gamma, beta, scale and shift are loaded once per thread, not per element.
// * The slice stays in registers (ITEMS * VEC floats per thread) between the statistics and
//   the normalization: x is read once, y written once. Statistics are fp32, exact two-level:
//   block sum -> mean, then block sum of (x - mean)^2 from the registers -> variance; no
//   E[x^2] - E[x]^2 cancellation and no Welford divisions on the fast path.
// * For the showcase shapes (32x32, C = 128 or 256, G = 32) a block spans 8 channels of
//   1024 pixels: 256 threads holding 8 float4 each (96 registers, no spills on sm_90),
//   N*G/gpb = 16 or 32 blocks per sample, two resident per SM.
// * The backward block holds x (as xhat) and dz in registers, reduces the per-channel sums
//   sum_hw dz and sum_hw dz*xhat (which give dshift, dscale, dgamma, dbeta and the two group
//   means of the dx formula), then writes dx: x and dy read once, dx written once. A small
//   kernel then reduces the per-(n, c) sums over n for dgamma and dbeta (deterministic,
//   no atomics).
// * Two-pass fallback when a slice does not fit in 512 threads' registers (big groups):
//   a Welford statistics kernel per (n, g) and an elementwise kernel; in the backward a
//   per-(n, c) reduction, a per-(n, g) reduction and an elementwise dx kernel.
#include "kernels/cuda/group_norm.h"

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <type_traits>

#include "engine/error.h"
#include "kernels/common/elementwise_ops.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/context.h"
#include "kernels/cuda/group_norm_slab.h"
#include "kernels/cuda/launch.h"

namespace ddpm::cuda {

namespace {

constexpr int kMaxThreads = 512;     // fused block size limit (keeps up to 128 registers per thread)
constexpr int kTargetThreads = 256;  // preferred fused block size
constexpr int kFwdMaxFloats = 32;    // registers of x per thread, forward
constexpr int kBwdMaxFloats = 16;    // registers per thread for each of x and dy, backward
constexpr std::size_t kMaxSmem = 48 * 1024;

struct FwdArgs {
  const float* x;
  const float* gamma;
  const float* beta;
  const float* scale;  // null without AdaGN (then shift is null too)
  const float* shift;
  float* y;
  float* mean;
  float* rstd;
  std::int64_t N, HW, C, G;
  int cg, gpb, rows;
  float eps;
  bool silu;
};

struct BwdArgs {
  const float* x;
  const float* gamma;
  const float* beta;
  const float* scale;
  const float* shift;
  const float* mean;
  const float* rstd;
  const float* dy;
  float* dx;
  float* sum_dz;       // [N, C] workspace: sum_hw dz
  float* sum_dz_xhat;  // [N, C] workspace: sum_hw dz * xhat
  float* grp;          // [N, G, 2] workspace (fallback): sum_group dxhat, sum_group dxhat * xhat
  std::int64_t N, HW, C, G;
  int cg, gpb, rows;
  bool silu;
};

__device__ __forceinline__ float act(float z, bool silu) { return silu ? ew::Silu::f(z, 0.f) : z; }
__device__ __forceinline__ float act_grad(float z, bool silu) { return silu ? ew::Silu::df(z, 0.f, 0.f) : 1.f; }

template <int VEC>
__device__ __forceinline__ void load_vec(const float* p, float* v) {
  if constexpr (VEC == 4) {
    float4 t = *reinterpret_cast<const float4*>(p);
    v[0] = t.x, v[1] = t.y, v[2] = t.z, v[3] = t.w;
  } else if constexpr (VEC == 2) {
    float2 t = *reinterpret_cast<const float2*>(p);
    v[0] = t.x, v[1] = t.y;
  } else {
    v[0] = *p;
  }
}

template <int VEC>
__device__ __forceinline__ void store_vec(float* p, const float* v) {
  if constexpr (VEC == 4) {
    *reinterpret_cast<float4*>(p) = make_float4(v[0], v[1], v[2], v[3]);
  } else if constexpr (VEC == 2) {
    *reinterpret_cast<float2*>(p) = make_float2(v[0], v[1]);
  } else {
    *p = v[0];
  }
}

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Sums `val` over the threads of each of the block's gpb local groups into out[gl].
// Thread i belongs to local group ((i % cbv) * vec) / cg. red holds blockDim.x floats;
// blockDim.x is a multiple of 32 (idle threads pass 0).
__device__ void reduce_by_group(float val, float* red, float* out, int cbv, int vec, int cg, int gpb) {
  const int t = threadIdx.x, T = blockDim.x, warp = t >> 5, lane = t & 31, nwarps = T >> 5;
  red[t] = val;
  __syncthreads();
  for (int gl = warp; gl < gpb; gl += nwarps) {
    float acc = 0.f;
    for (int i = lane; i < T; i += 32)
      if (((i % cbv) * vec) / cg == gl) acc += red[i];
    acc = warp_sum(acc);
    if (lane == 0) out[gl] = acc;
  }
  __syncthreads();
}

// ---------------------------------------------------------------------------------------
// Fused forward: one block per (n, gpb groups); the slice lives in v[ITEMS][VEC].
template <int VEC, int ITEMS>
__global__ void __launch_bounds__(kMaxThreads) gn_forward_fused(FwdArgs a) {
  extern __shared__ float smem[];
  float* red = smem;                      // [blockDim.x]
  float* g_sum = red + blockDim.x;        // [gpb] sum_group x
  float* g_sq = g_sum + a.gpb;            // [gpb] sum_group (x - mu)^2
  const int cbv = a.gpb * a.cg / VEC;
  const std::int64_t blocks_per_n = a.G / a.gpb;
  const std::int64_t n = blockIdx.x / blocks_per_n;
  const std::int64_t g0 = (blockIdx.x % blocks_per_n) * a.gpb;  // first group of the block
  const int t = threadIdx.x;
  const bool active = t < a.rows * cbv;
  const int cv = t % cbv, row = t / cbv;
  const int gl = cv * VEC / a.cg;                                 // local group of this thread
  const std::int64_t c = g0 * a.cg + cv * VEC;                     // first channel of the vector
  const float* xb = a.x + n * a.HW * a.C + c;
  const float M = static_cast<float>(a.HW * a.cg);

  float v[ITEMS][VEC];
  float sum = 0.f;
#pragma unroll
  for (int k = 0; k < ITEMS; ++k) {
    const std::int64_t p = row + static_cast<std::int64_t>(k) * a.rows;
    if (active && p < a.HW) {
      load_vec<VEC>(xb + p * a.C, v[k]);
    } else {
#pragma unroll
      for (int i = 0; i < VEC; ++i) v[k][i] = 0.f;
    }
#pragma unroll
    for (int i = 0; i < VEC; ++i) sum += v[k][i];
  }
  reduce_by_group(sum, red, g_sum, cbv, VEC, a.cg, a.gpb);
  const float mu = g_sum[gl] / M;

  float sq = 0.f;
#pragma unroll
  for (int k = 0; k < ITEMS; ++k) {
    const std::int64_t p = row + static_cast<std::int64_t>(k) * a.rows;
    if (active && p < a.HW) {
#pragma unroll
      for (int i = 0; i < VEC; ++i) sq += (v[k][i] - mu) * (v[k][i] - mu);
    }
  }
  reduce_by_group(sq, red, g_sq, cbv, VEC, a.cg, a.gpb);
  const float r = 1.f / sqrtf(g_sq[gl] / M + a.eps);
  if (t < a.gpb) {
    a.mean[n * a.G + g0 + t] = g_sum[t] / M;
    a.rstd[n * a.G + g0 + t] = 1.f / sqrtf(g_sq[t] / M + a.eps);
  }
  if (!active) return;

  // z = (x - mu) * A + B with A = rstd * gamma * (1 + scale), B = beta * (1 + scale) + shift.
  float A[VEC], B[VEC];
#pragma unroll
  for (int i = 0; i < VEC; ++i) {
    const float s1 = a.scale ? 1.f + a.scale[n * a.C + c + i] : 1.f;
    const float sh = a.shift ? a.shift[n * a.C + c + i] : 0.f;
    A[i] = r * a.gamma[c + i] * s1;
    B[i] = a.beta[c + i] * s1 + sh;
  }
  float* yb = a.y + n * a.HW * a.C + c;
#pragma unroll
  for (int k = 0; k < ITEMS; ++k) {
    const std::int64_t p = row + static_cast<std::int64_t>(k) * a.rows;
    if (p < a.HW) {
      float o[VEC];
#pragma unroll
      for (int i = 0; i < VEC; ++i) o[i] = act((v[k][i] - mu) * A[i] + B[i], a.silu);
      store_vec<VEC>(yb + p * a.C, o);
    }
  }
}

// ---------------------------------------------------------------------------------------
// Fused backward: one block per (n, gpb groups); xhat and dz live in registers.
template <int VEC, int ITEMS>
__global__ void __launch_bounds__(kMaxThreads) gn_backward_fused(BwdArgs a) {
  extern __shared__ float smem[];
  const int T = blockDim.x;
  const int cb = a.gpb * a.cg, cbv = cb / VEC;
  float* red = smem;              // [2 * VEC * T] per-thread partial sums of dz and dz*xhat
  float* ch = red + 2 * VEC * T;  // [cb, 2] per-channel sums of dz and dz*xhat
  float* grp = ch + 2 * cb;       // [gpb, 2] group sums of dxhat and dxhat*xhat
  const std::int64_t blocks_per_n = a.G / a.gpb;
  const std::int64_t n = blockIdx.x / blocks_per_n;
  const std::int64_t g0 = (blockIdx.x % blocks_per_n) * a.gpb;
  const std::int64_t cfirst = g0 * a.cg;  // first channel of the block's span
  const int t = threadIdx.x, warp = t >> 5, lane = t & 31, nwarps = T >> 5;
  const bool active = t < a.rows * cbv;
  const int cv = t % cbv, row = t / cbv;
  const int gl = cv * VEC / a.cg;
  const std::int64_t c = cfirst + cv * VEC;
  const float mu = a.mean[n * a.G + g0 + gl];
  const float r = a.rstd[n * a.G + g0 + gl];
  const float M = static_cast<float>(a.HW * a.cg);

  float gam[VEC], bet[VEC], s1[VEC], sh[VEC];
#pragma unroll
  for (int i = 0; i < VEC; ++i) {
    gam[i] = a.gamma[c + i];
    bet[i] = a.beta[c + i];
    s1[i] = a.scale ? 1.f + a.scale[n * a.C + c + i] : 1.f;
    sh[i] = a.shift ? a.shift[n * a.C + c + i] : 0.f;
  }
  const std::int64_t off = n * a.HW * a.C + c;
  float xh[ITEMS][VEC], dz[ITEMS][VEC];  // xhat and dz of the thread's elements
  float sdz[VEC] = {}, sdzx[VEC] = {};
#pragma unroll
  for (int k = 0; k < ITEMS; ++k) {
    const std::int64_t p = row + static_cast<std::int64_t>(k) * a.rows;
    const bool valid = active && p < a.HW;
    if (valid) {
      load_vec<VEC>(a.x + off + p * a.C, xh[k]);
      load_vec<VEC>(a.dy + off + p * a.C, dz[k]);
    }
#pragma unroll
    for (int i = 0; i < VEC; ++i) {
      if (valid) {
        xh[k][i] = (xh[k][i] - mu) * r;
        const float z = (xh[k][i] * gam[i] + bet[i]) * s1[i] + sh[i];
        dz[k][i] *= act_grad(z, a.silu);
      } else {
        xh[k][i] = 0.f, dz[k][i] = 0.f;
      }
      sdz[i] += dz[k][i];
      sdzx[i] += dz[k][i] * xh[k][i];
    }
  }
  // Per-channel sums over the block's pixels: thread partials -> ch[2j] (dz), ch[2j+1] (dz*xhat).
#pragma unroll
  for (int i = 0; i < VEC; ++i) {
    red[(2 * i) * T + t] = sdz[i];
    red[(2 * i + 1) * T + t] = sdzx[i];
  }
  __syncthreads();
  for (int o = warp; o < 2 * cb; o += nwarps) {
    const int j = o >> 1, q = o & 1, i = j % VEC, cvj = j / VEC;
    float acc = 0.f;
    for (int rr = lane; rr < a.rows; rr += 32) acc += red[(2 * i + q) * T + rr * cbv + cvj];
    acc = warp_sum(acc);
    if (lane == 0) ch[o] = acc;
  }
  __syncthreads();
  for (int o = t; o < 2 * cb; o += T) (o & 1 ? a.sum_dz_xhat : a.sum_dz)[n * a.C + cfirst + (o >> 1)] = ch[o];
  // Group sums of dxhat = dz * s1 * gamma and of dxhat * xhat, from the channel sums.
  for (int g = warp; g < a.gpb; g += nwarps) {
    float acc1 = 0.f, acc2 = 0.f;
    for (int j = g * a.cg + lane; j < (g + 1) * a.cg; j += 32) {
      const std::int64_t cj = cfirst + j;
      const float w = (a.scale ? 1.f + a.scale[n * a.C + cj] : 1.f) * a.gamma[cj];
      acc1 += w * ch[2 * j];
      acc2 += w * ch[2 * j + 1];
    }
    acc1 = warp_sum(acc1);
    acc2 = warp_sum(acc2);
    if (lane == 0) grp[2 * g] = acc1, grp[2 * g + 1] = acc2;
  }
  __syncthreads();
  if (!active) return;
  // dx = rstd * (dxhat - mean_group(dxhat) - xhat * mean_group(dxhat * xhat))
  const float m1 = grp[2 * gl] / M, m2 = grp[2 * gl + 1] / M;
#pragma unroll
  for (int k = 0; k < ITEMS; ++k) {
    const std::int64_t p = row + static_cast<std::int64_t>(k) * a.rows;
    if (p < a.HW) {
      float o[VEC];
#pragma unroll
      for (int i = 0; i < VEC; ++i) o[i] = r * (dz[k][i] * s1[i] * gam[i] - m1 - xh[k][i] * m2);
      store_vec<VEC>(a.dx + off + p * a.C, o);
    }
  }
}

// ---------------------------------------------------------------------------------------
// Two-pass fallback, forward.

struct Welford {
  float n, mean, m2;
};

// Chan et al.'s pairwise combination of two partial (count, mean, M2) summaries.
__device__ __forceinline__ Welford welford_merge(Welford a, Welford b) {
  const float n = a.n + b.n;
  if (n == 0.f) return a;
  const float d = b.mean - a.mean, wb = b.n / n;
  return {n, a.mean + d * wb, a.m2 + b.m2 + d * d * a.n * wb};
}

constexpr int kStatsThreads = 512;

// One block per (n, g): Welford per thread over a strided share of the group, then merged.
__global__ void __launch_bounds__(kStatsThreads) gn_stats_kernel(FwdArgs a) {
  __shared__ Welford part[kStatsThreads / 32];
  const std::int64_t n = blockIdx.x / a.G, g = blockIdx.x % a.G;
  const std::int64_t M = a.HW * a.cg;
  const float* xb = a.x + n * a.HW * a.C + g * a.cg;
  Welford w{0.f, 0.f, 0.f};
  for (std::int64_t e = threadIdx.x; e < M; e += blockDim.x) {
    const std::int64_t p = e / a.cg, j = e - p * a.cg;
    const float v = xb[p * a.C + j];
    w.n += 1.f;
    const float d = v - w.mean;
    w.mean += d / w.n;
    w.m2 += d * (v - w.mean);
  }
  for (int o = 16; o > 0; o >>= 1) {
    Welford other{__shfl_xor_sync(0xffffffffu, w.n, o), __shfl_xor_sync(0xffffffffu, w.mean, o),
                  __shfl_xor_sync(0xffffffffu, w.m2, o)};
    w = welford_merge(w, other);
  }
  if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = w;
  __syncthreads();
  if (threadIdx.x == 0) {
    Welford total = part[0];
    for (int i = 1; i < static_cast<int>(blockDim.x >> 5); ++i) total = welford_merge(total, part[i]);
    a.mean[blockIdx.x] = total.mean;
    a.rstd[blockIdx.x] = 1.f / sqrtf(total.m2 / static_cast<float>(M) + a.eps);
  }
}

__global__ void gn_apply_kernel(FwdArgs a) {
  const std::int64_t total = a.N * a.HW * a.C;
  for (std::int64_t e = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; e < total;
       e += std::int64_t(gridDim.x) * blockDim.x) {
    const std::int64_t c = e % a.C, n = e / (a.HW * a.C), ng = n * a.G + c / a.cg;
    float z = (a.x[e] - a.mean[ng]) * a.rstd[ng] * a.gamma[c] + a.beta[c];
    if (a.scale) z = z * (1.f + a.scale[n * a.C + c]) + a.shift[n * a.C + c];
    a.y[e] = act(z, a.silu);
  }
}

// ---------------------------------------------------------------------------------------
// Two-pass fallback, backward.

// dz and xhat of element e (channel c, sample n); returns dz.
__device__ __forceinline__ float recompute_dz(const BwdArgs& a, std::int64_t e, std::int64_t n, std::int64_t c,
                                              float& xhat) {
  const std::int64_t ng = n * a.G + c / a.cg;
  xhat = (a.x[e] - a.mean[ng]) * a.rstd[ng];
  float z = xhat * a.gamma[c] + a.beta[c];
  if (a.scale) z = z * (1.f + a.scale[n * a.C + c]) + a.shift[n * a.C + c];
  return a.dy[e] * act_grad(z, a.silu);
}

// Block (32, 8) per (32 channels, n): sum_hw dz and sum_hw dz * xhat; a warp reads 32
// adjacent channels of one pixel (coalesced).
__global__ void gn_channel_sums_kernel(BwdArgs a) {
  __shared__ float s1[8][33], s2[8][33];
  const std::int64_t n = blockIdx.y, c = blockIdx.x * 32 + threadIdx.x;
  float acc1 = 0.f, acc2 = 0.f;
  if (c < a.C) {
    for (std::int64_t p = threadIdx.y; p < a.HW; p += 8) {
      float xhat;
      const float dz = recompute_dz(a, (n * a.HW + p) * a.C + c, n, c, xhat);
      acc1 += dz;
      acc2 += dz * xhat;
    }
  }
  s1[threadIdx.y][threadIdx.x] = acc1;
  s2[threadIdx.y][threadIdx.x] = acc2;
  __syncthreads();
  if (threadIdx.y == 0 && c < a.C) {
    for (int i = 1; i < 8; ++i) acc1 += s1[i][threadIdx.x], acc2 += s2[i][threadIdx.x];
    a.sum_dz[n * a.C + c] = acc1;
    a.sum_dz_xhat[n * a.C + c] = acc2;
  }
}

// One thread per (n, g): sum_group dxhat and sum_group dxhat * xhat from the channel sums.
__global__ void gn_group_sums_kernel(BwdArgs a) {
  const std::int64_t ng = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x;
  if (ng >= a.N * a.G) return;
  const std::int64_t n = ng / a.G, c0 = (ng % a.G) * a.cg;
  float acc1 = 0.f, acc2 = 0.f;
  for (std::int64_t c = c0; c < c0 + a.cg; ++c) {
    const float w = (a.scale ? 1.f + a.scale[n * a.C + c] : 1.f) * a.gamma[c];
    acc1 += w * a.sum_dz[n * a.C + c];
    acc2 += w * a.sum_dz_xhat[n * a.C + c];
  }
  a.grp[2 * ng] = acc1;
  a.grp[2 * ng + 1] = acc2;
}

__global__ void gn_dx_kernel(BwdArgs a) {
  const std::int64_t total = a.N * a.HW * a.C;
  const float M = static_cast<float>(a.HW * a.cg);
  for (std::int64_t e = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; e < total;
       e += std::int64_t(gridDim.x) * blockDim.x) {
    const std::int64_t c = e % a.C, n = e / (a.HW * a.C), ng = n * a.G + c / a.cg;
    float xhat;
    const float dz = recompute_dz(a, e, n, c, xhat);
    const float dxhat = dz * (a.scale ? 1.f + a.scale[n * a.C + c] : 1.f) * a.gamma[c];
    a.dx[e] = a.rstd[ng] * (dxhat - a.grp[2 * ng] / M - xhat * a.grp[2 * ng + 1] / M);
  }
}

// All paths: block (32, kParamRows) per 32 channels reduces the per-(n, c) sums over n
// (kParamRows rows of n at once, so a batch of 128 takes 4 dependent steps):
//   dbeta[c] = sum_n s1 * sum_dz,  dgamma[c] = sum_n s1 * sum_dz_xhat,
//   dshift[n,c] = sum_dz,  dscale[n,c] = gamma * sum_dz_xhat + beta * sum_dz.
constexpr int kParamRows = 32;

__global__ void gn_param_grads_kernel(BwdArgs a, float* dgamma, float* dbeta, float* dscale, float* dshift) {
  __shared__ float sg[kParamRows][33], sb[kParamRows][33];
  const std::int64_t c = blockIdx.x * 32 + threadIdx.x;
  float acc_g = 0.f, acc_b = 0.f;
  if (c < a.C) {
    for (std::int64_t n = threadIdx.y; n < a.N; n += kParamRows) {
      const std::int64_t i = n * a.C + c;
      const float sdz = a.sum_dz[i], sdzx = a.sum_dz_xhat[i];
      const float s1 = a.scale ? 1.f + a.scale[i] : 1.f;
      acc_b += s1 * sdz;
      acc_g += s1 * sdzx;
      if (dshift) dshift[i] = sdz;
      if (dscale) dscale[i] = a.gamma[c] * sdzx + a.beta[c] * sdz;
    }
  }
  sg[threadIdx.y][threadIdx.x] = acc_g;
  sb[threadIdx.y][threadIdx.x] = acc_b;
  __syncthreads();
  if (threadIdx.y == 0 && c < a.C) {
    for (int i = 1; i < kParamRows; ++i) acc_g += sg[i][threadIdx.x], acc_b += sb[i][threadIdx.x];
    dgamma[c] = acc_g;
    dbeta[c] = acc_b;
  }
}

// ---------------------------------------------------------------------------------------
// Launch planning.

struct FusedPlan {
  bool ok = false;
  int vec = 1, items = 1, rows = 1, threads = 32, gpb = 1;
  std::size_t smem = 0;
};

// max_floats: registers per thread per held tensor; align_floats: 4, 2 or 1, the vector
// width every pointer's alignment allows.
FusedPlan plan_fused(std::int64_t HW, std::int64_t C, std::int64_t G, int max_floats, int align_floats,
                     bool backward) {
  FusedPlan p;
  const std::int64_t cg = C / G;
  for (int v : {4, 2, 1})
    if (v <= align_floats && cg % v == 0) {
      p.vec = v;
      break;
    }
  if (cg < 8 && 8 % cg == 0 && G % (8 / cg) == 0) p.gpb = static_cast<int>(8 / cg);
  const std::int64_t cb = p.gpb * cg, cbv = cb / p.vec;
  if (cbv > kMaxThreads) return p;
  const std::int64_t max_items = max_floats / p.vec;
  const std::int64_t rows_target = std::max<std::int64_t>(1, kTargetThreads / cbv);
  const std::int64_t need = (HW + rows_target - 1) / rows_target;
  std::int64_t items = 1;
  while (items < need && items < max_items) items *= 2;
  const std::int64_t rows = (HW + items - 1) / items;
  const std::int64_t threads = (rows * cbv + 31) / 32 * 32;
  if (threads > kMaxThreads) return p;
  const std::int64_t smem_floats = backward ? 2 * p.vec * threads + 2 * cb + 2 * p.gpb : threads + 2 * p.gpb;
  if (static_cast<std::size_t>(smem_floats) * sizeof(float) > kMaxSmem) return p;
  p.items = static_cast<int>(items);
  p.rows = static_cast<int>(rows);
  p.threads = static_cast<int>(threads);
  p.smem = static_cast<std::size_t>(smem_floats) * sizeof(float);
  p.ok = true;
  return p;
}

int align_floats(std::initializer_list<const void*> ptrs) {
  std::uintptr_t bits = 0;
  for (const void* q : ptrs) bits |= reinterpret_cast<std::uintptr_t>(q);
  return bits % 16 == 0 ? 4 : bits % 8 == 0 ? 2 : 1;
}

// Finds the instantiation <VEC, ITEMS> with ITEMS == plan.items (ITEMS * VEC <= MAXF).
template <int VEC, int ITEMS, int MAXF, class Launch>
void dispatch_items(const FusedPlan& plan, Launch&& launch) {
  if constexpr (ITEMS * VEC <= MAXF) {
    if (plan.items == ITEMS) return launch(std::integral_constant<int, VEC>{}, std::integral_constant<int, ITEMS>{});
    dispatch_items<VEC, ITEMS * 2, MAXF>(plan, launch);
  } else {
    DDPM_THROW(ValueError, "group_norm: no kernel instance for vec " << VEC << ", items " << plan.items);
  }
}

template <int MAXF, class Launch>
void dispatch_fused(const FusedPlan& plan, Launch&& launch) {
  if (plan.vec == 4)
    dispatch_items<4, 1, MAXF>(plan, launch);
  else if (plan.vec == 2)
    dispatch_items<2, 1, MAXF>(plan, launch);
  else
    dispatch_items<1, 1, MAXF>(plan, launch);
}

}  // namespace

bool group_norm_forward_is_fused(std::int64_t HW, std::int64_t C, std::int64_t G) {
  return gn_slab::plan(HW, C, G, false).ok || plan_fused(HW, C, G, kFwdMaxFloats, 4, false).ok;
}

bool group_norm_backward_is_fused(std::int64_t HW, std::int64_t C, std::int64_t G) {
  return gn_slab::plan(HW, C, G, true).ok || plan_fused(HW, C, G, kBwdMaxFloats, 4, true).ok;
}

void group_norm_forward(const float* x, const float* gamma, const float* beta, const float* scale,
                        const float* shift, float* y, float* mean, float* rstd, std::int64_t N, std::int64_t HW,
                        std::int64_t C, std::int64_t G, float eps, bool fuse_silu, cudaStream_t stream) {
  if (N * HW * C == 0) return;
  if (align_floats({x, y}) == 4) {
    const gn_slab::Plan slab = gn_slab::plan(HW, C, G, false);
    if (slab.ok)
      return gn_slab::forward(slab, x, gamma, beta, scale, shift, y, mean, rstd, N, HW, C, G, eps, fuse_silu, stream);
  }
  FwdArgs a{x, gamma, beta, scale, shift, y, mean, rstd, N, HW, C, G, static_cast<int>(C / G), 1, 1, eps, fuse_silu};
  const FusedPlan plan = plan_fused(HW, C, G, kFwdMaxFloats, align_floats({x, y}), false);
  if (plan.ok) {
    a.gpb = plan.gpb;
    a.rows = plan.rows;
    const unsigned blocks = static_cast<unsigned>(N * (G / plan.gpb));
    dispatch_fused<kFwdMaxFloats>(plan, [&](auto vec, auto items) {
      gn_forward_fused<decltype(vec)::value, decltype(items)::value><<<blocks, plan.threads, plan.smem, stream>>>(a);
    });
    DDPM_LAUNCH_CHECK("group_norm_forward_fused");
    return;
  }
  gn_stats_kernel<<<static_cast<unsigned>(N * G), kStatsThreads, 0, stream>>>(a);
  DDPM_LAUNCH_CHECK("group_norm_stats");
  gn_apply_kernel<<<grid_for(N * HW * C, 256), 256, 0, stream>>>(a);
  DDPM_LAUNCH_CHECK("group_norm_apply");
}

void group_norm_backward(const float* x, const float* gamma, const float* beta, const float* scale,
                         const float* shift, const float* mean, const float* rstd, const float* dy, float* dx,
                         float* dgamma, float* dbeta, float* dscale, float* dshift, std::int64_t N, std::int64_t HW,
                         std::int64_t C, std::int64_t G, bool fuse_silu, cudaStream_t stream) {
  if (N * HW * C == 0) return;
  // Workspace: sum_dz [N, C], sum_dz_xhat [N, C], group sums [N, G, 2].
  const std::size_t ws_floats = static_cast<std::size_t>(2 * N * C + 2 * N * G);
  float* ws = static_cast<float*>(pool_alloc(ws_floats * sizeof(float)));
  BwdArgs a{x,       gamma,          beta, scale, shift, mean, rstd, dy, dx, ws, ws + N * C, ws + 2 * N * C,
            N,       HW,             C,    G,     static_cast<int>(C / G), 1, 1, fuse_silu};
  try {
    const FusedPlan plan = plan_fused(HW, C, G, kBwdMaxFloats, align_floats({x, dy, dx}), true);
    const gn_slab::Plan slab = gn_slab::plan(HW, C, G, true);
    if (slab.ok && align_floats({x, dy, dx}) == 4) {
      gn_slab::backward(slab, x, gamma, beta, scale, shift, mean, rstd, dy, dx, a.sum_dz, a.sum_dz_xhat, N, HW, C, G,
                        fuse_silu, stream);
    } else if (plan.ok) {
      a.gpb = plan.gpb;
      a.rows = plan.rows;
      const unsigned blocks = static_cast<unsigned>(N * (G / plan.gpb));
      dispatch_fused<kBwdMaxFloats>(plan, [&](auto vec, auto items) {
        gn_backward_fused<decltype(vec)::value, decltype(items)::value>
            <<<blocks, plan.threads, plan.smem, stream>>>(a);
      });
      DDPM_LAUNCH_CHECK("group_norm_backward_fused");
    } else {
      dim3 block(32, 8);
      gn_channel_sums_kernel<<<dim3(static_cast<unsigned>((C + 31) / 32), static_cast<unsigned>(N)), block, 0,
                               stream>>>(a);
      DDPM_LAUNCH_CHECK("group_norm_channel_sums");
      gn_group_sums_kernel<<<grid_for(N * G, 128), 128, 0, stream>>>(a);
      DDPM_LAUNCH_CHECK("group_norm_group_sums");
      gn_dx_kernel<<<grid_for(N * HW * C, 256), 256, 0, stream>>>(a);
      DDPM_LAUNCH_CHECK("group_norm_dx");
    }
    gn_param_grads_kernel<<<static_cast<unsigned>((C + 31) / 32), dim3(32, kParamRows), 0, stream>>>(
        a, dgamma, dbeta, dscale, dshift);
    DDPM_LAUNCH_CHECK("group_norm_param_grads");
  } catch (...) {
    pool_free(ws);
    throw;
  }
  pool_free(ws);  // stream-ordered: released after the kernels above have run
}

}  // namespace ddpm::cuda
