// kernels/cuda/group_norm_slab.cu: GroupNorm (+ AdaGN, + SiLU) forward and backward for the
// UNet's shapes, one DRAM pass, fully coalesced. Equations: kernels/cpu/group_norm.h.
//
// Byte budget (what bench-kernels counts): the forward reads x once and writes y once
// (8 bytes per element); the backward reads x and dy once and writes dx once (12 bytes per
// element). Everything else (gamma, beta, scale, shift, mean, rstd, the [N, C] channel
// sums) is under 0.1% of that.
//
// Tiling. In NHWC one group (n, g) is Cg contiguous channels at each of the HW pixels, C
// floats apart: at Cg = 4 or 8 a group touches 16 or 32 bytes of every 128-byte line. A block
// that owns one group therefore reads scattered 32-byte sectors, and the four blocks sharing
// a line fetch it at different times. Here a block owns a 32-channel span instead (one full
// 128-byte line per pixel, 32 / Cg whole groups) and a range of `pix` pixels:
//   * 256 threads = 32 pixel rows x 8 float4 vectors; a warp loads 4 pixels x 128 bytes, 4
//     whole lines per instruction; thread t keeps vector cv = t % 8 (4 channels, one group)
//     for all its ITEMS pixels p = row + k * 32, so gamma, beta, scale, shift are loaded once.
//   * pix = 32 * ITEMS pixels per block; the HW pixels of a sample are split over K =
//     ceil(HW / pix) blocks that form one thread-block cluster (sm_90, K <= 8). The cluster
//     combines the blocks' partial statistics through distributed shared memory: each block
//     reads the K partials in rank order, so every block gets bit-identical totals and the
//     result does not depend on scheduling (no atomics).
//   * The slice stays on chip between the reductions and the output, so x (and dy) are read
//     from DRAM once: in registers, or in shared memory filled by cp.async (RegSlice,
//     SmemSlice below). 32x32 images take ITEMS = 8, K = 4. In registers the forward holds 32
//     floats per thread (80 registers, 3 blocks = 24 warps per SM) and the backward 64 (128
//     registers, 2 blocks); in shared memory 32 KiB (forward, 48 registers, 5 blocks) or
//     64 KiB (backward, 72 registers, 3 blocks) per block (ptxas, sm_90). Several resident
//     blocks let one block's reductions overlap the loads of the others, which is why the
//     shared-memory slices win wherever a cluster barrier stalls each block (see plan()).
//
// Statistics (forward), exact and without E[x^2] - E[x]^2 cancellation:
//   block b: mean_b = sum x / n_b, then M2_b = sum (x - mean_b)^2 from the registers;
//   cluster: mean = sum_b n_b mean_b / n,  M2 = sum_b [M2_b + n_b (mean_b - mean)^2]
//   (Chan, Golub and LeVeque's pairwise update, applied to K parts at once), var = M2 / n.
// Backward: per channel c of the span, S1_c = sum_hw dz and S2_c = sum_hw dz * xhat (block
// partials summed over the cluster); with w_c = (1 + scale_c) gamma_c the group means are
//   m1 = sum_{c in g} w_c S1_c / (HW Cg),  m2 = sum_{c in g} w_c S2_c / (HW Cg),
//   dx = rstd (w dz - m1 - xhat m2),
// and block rank 0 writes S1, S2 for the parameter gradients (reduced over n in group_norm.cu).
#include "kernels/cuda/group_norm_slab.h"

#include <algorithm>
#include <cstddef>
#include <type_traits>

#include <cooperative_groups.h>

#include "engine/error.h"
#include "kernels/common/elementwise_ops.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/context.h"

namespace ddpm::cuda::gn_slab {

namespace {

namespace cg = cooperative_groups;

constexpr int kSpan = 32;                    // channels per block: one 128-byte line per pixel
constexpr int kVecs = kSpan / 4;             // float4 vectors per pixel span
constexpr int kThreads = 256;                //
constexpr int kRows = kThreads / kVecs;      // pixel rows per pass of the block (32)
constexpr int kWarps = kThreads / 32;        //
constexpr int kMaxGroups = kSpan / 4;        // groups per span at Cg = 4
constexpr int kMaxCluster = 8;               // portable cluster size limit
// Preferred pixels per thread. Measured on an H100 (bench-kernels --gn-variants, batch 128,
// 32 groups, 2026-11-23): 8 beats 4 everywhere it applies (32x32 C=128 forward 0.070 vs
// 0.077 ms, backward 0.105 vs 0.111; 32x32 C=256 0.134 vs 0.145 and 0.193 vs 0.208; 16x16
// C=256, where 8 means one block per sample and no cluster, 0.031 vs 0.039 and 0.050 vs
// 0.057), and 16 (clusters of 2) loses at 32x32 (0.094 ms forward at C=128).
constexpr int kFwdItems = 8, kFwdMaxItems = 16;
constexpr int kBwdItems = 8, kBwdMaxItems = 8;
// Where the plan keeps the slices. Measured on an H100 (bench-kernels --gn-variants, batch
// 128, 2026-11-23, three runs; docs/PERFORMANCE.md): shared memory wins the backward (32x32
// C=256: 0.166 vs 0.192 ms; 16x16 C=256: 0.046 vs 0.050; 8x8 C=512 a tie) and the clustered
// forward (32x32 C=128: 0.063 vs 0.069; C=256: 0.114 vs 0.129); the one-block forward (16x16
// C=256, no cluster barrier to hide) is a tie (0.0306 vs 0.0305 ms), and keeps registers.
bool staged_choice(bool backward, int blocks_k) { return backward || blocks_k > 1; }

Staging g_staging = Staging::automatic;  // set_staging (tests)

struct FwdArgs {
  const float *x, *gamma, *beta, *scale, *shift;  // scale, shift null without AdaGN
  float *y, *mean, *rstd;
  std::int64_t HW, C;
  int G, cg, K, pix;
  float eps;
  bool silu;
};

struct BwdArgs {
  const float *x, *gamma, *beta, *scale, *shift, *mean, *rstd, *dy;
  float *dx, *sum_dz, *sum_dz_xhat;
  std::int64_t HW, C;
  int G, cg, K, pix;
  bool silu;
};

// ---- cluster primitives (sm_90); a K > 1 launch is never made for older code (see plan).
__device__ __forceinline__ void cluster_sync() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  cg::this_cluster().sync();
#else
  __trap();
#endif
}
__device__ __forceinline__ void cluster_arrive() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  cg::this_cluster().barrier_arrive();
#endif
}
__device__ __forceinline__ void cluster_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  cg::this_cluster().barrier_wait();
#endif
}
// The address of *p in the shared memory of the cluster's block `rank`.
template <class T>
__device__ __forceinline__ const T* cluster_peer(const T* p, int rank) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  return cg::this_cluster().map_shared_rank(p, rank);
#else
  return p;
#endif
}

__device__ __forceinline__ float act(float z, bool silu) { return silu ? ew::Silu::f(z, 0.f) : z; }
__device__ __forceinline__ float act_grad(float z, bool silu) { return silu ? ew::Silu::df(z, 0.f, 0.f) : 1.f; }

__device__ __forceinline__ float get(const float4& v, int i) { return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w; }
__device__ __forceinline__ void set(float4& v, int i, float f) {
  if (i == 0) v.x = f;
  else if (i == 1) v.y = f;
  else if (i == 2) v.z = f;
  else v.w = f;
}

// Where a thread keeps its ITEMS float4 vectors of one tensor between the read and the write.
//   RegSlice: in registers. Simple, but 8 items of x (and of dy) cost 32 (64) registers, which
//     caps the blocks per SM (3 forward, 2 backward at 8 items; ptxas, sm_90).
//   SmemSlice: in dynamic shared memory, filled by cp.async (16 bytes per thread and item,
//     straight from L2 to shared memory, no register staging). The registers are freed, so
//     more blocks fit on an SM (6 forward at 8 items: 32 KiB each) and more reads are in
//     flight while other blocks reduce. Vector k of thread t sits at slab[k * kThreads + t]:
//     a warp's 32 consecutive float4 per access are conflict-free.
template <int ITEMS>
struct RegSlice {
  float4 v[ITEMS];
  __device__ explicit RegSlice(float4*) {}
  __device__ float4& operator[](int k) { return v[k]; }
  __device__ void fetch(int k, const float* src) { v[k] = __ldg(reinterpret_cast<const float4*>(src)); }
  __device__ static void wait() {}
};

template <int ITEMS>
struct SmemSlice {
  float4* base;  // this thread's vector 0
  __device__ explicit SmemSlice(float4* slab) : base(slab + threadIdx.x) {}
  __device__ float4& operator[](int k) { return base[k * kThreads]; }
  __device__ void fetch(int k, const float* src) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(base + k * kThreads));
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(dst), "l"(src) : "memory");
#else
    base[k * kThreads] = __ldg(reinterpret_cast<const float4*>(src));
#endif
  }
  __device__ static void wait() {  // this thread's copies have landed (each thread reads only its own)
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile("cp.async.wait_all;\n" ::: "memory");
#endif
  }
};

template <int ITEMS, bool STAGED>
using Slice = typename std::conditional<STAGED, SmemSlice<ITEMS>, RegSlice<ITEMS>>::type;

// Blocks per SM each kernel is compiled for (__launch_bounds__'s minimum, which caps the
// registers at 65536 / (256 * blocks)). Register slices: what the held floats allow (16 of x
// per thread fit 4 blocks, 32 fit 3, 64 fit 2). Shared-memory slices: 5 blocks (48
// registers) where the slices take at most 32 KiB, else what the shared memory allows.
// (Measured on an H100, 2026-11-23: 6 blocks at 40 registers spill and run 15% slower.)
constexpr int min_blocks(int items, bool backward, bool staged) {
  const int floats = (backward ? 2 : 1) * 4 * items;  // slice floats per thread
  if (staged) return floats <= 32 ? 5 : floats <= 64 ? 3 : 1;
  return floats <= 16 ? 4 : floats <= 32 ? 3 : floats <= 64 ? 2 : 1;
}

extern __shared__ float4 gn_slab_dynamic[];  // the SmemSlice storage (none for RegSlice)

// Lane l of a warp holds vector cv = l % 8 of pixel row l / 8. Sums v over the lanes of the
// same group: the 4 rows (lane bits 3 and 4), then the vpg = Cg / 4 adjacent vectors of the
// group (the low lane bits). Butterfly: every lane ends with the same, order-fixed sum.
__device__ __forceinline__ float group_lane_sum(float v, int vpg) {
  v += __shfl_xor_sync(0xffffffffu, v, 8);
  v += __shfl_xor_sync(0xffffffffu, v, 16);
  for (int o = 1; o < vpg; o <<= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Block-wide sum per group: warp sums to part[warp][group], then each thread adds the
// kWarps partials of its group in warp order. Ends with part free for reuse.
__device__ __forceinline__ float block_group_sum(float v, int vpg, int gl, float (*part)[kMaxGroups]) {
  const int lane = threadIdx.x & 31;
  v = group_lane_sum(v, vpg);
  if (lane < kVecs && lane % vpg == 0) part[threadIdx.x >> 5][lane / vpg] = v;
  __syncthreads();
  float s = 0.f;
#pragma unroll
  for (int w = 0; w < kWarps; ++w) s += part[w][gl];
  __syncthreads();
  return s;
}

// ---------------------------------------------------------------------------------------
// Forward: block (n, span s, rank) normalizes pixels [rank * pix, rank * pix + pix) of the
// span's 32 / Cg groups. Grid: N * (C / 32) * K blocks, clusters of K consecutive blocks.
// (A persistent variant, double-buffered so that the next slab's reads fly while this one is
// reduced and written, was measured slower at every benchmark shape: docs/PERFORMANCE.md.)
struct FwdItem {  // what block `rank` of the cluster for work item (n, span s) owns
  std::int64_t n, c, off;  // sample; first channel of the thread's vector; x/y offset of pixel 0
  int s, rank, npix;       // span; block rank; pixels this block owns (>= 1: K = ceil(HW / pix))
};

__device__ __forceinline__ FwdItem fwd_item(const FwdArgs& a, std::int64_t w, int rank) {
  const int spans = static_cast<int>(a.C / kSpan);
  FwdItem it;
  it.n = w / spans;
  it.s = static_cast<int>(w - it.n * spans);
  it.rank = rank;
  it.c = static_cast<std::int64_t>(it.s) * kSpan + (threadIdx.x % kVecs) * 4;
  const std::int64_t p0 = static_cast<std::int64_t>(rank) * a.pix;
  it.npix = static_cast<int>(std::min<std::int64_t>(a.pix, a.HW - p0));
  it.off = (it.n * a.HW + p0) * a.C + it.c;
  return it;
}

template <int ITEMS, class S>
__device__ __forceinline__ void fetch_slab(const FwdArgs& a, const FwdItem& it, S& v) {
  const int row = threadIdx.x / kVecs;
#pragma unroll
  for (int k = 0; k < ITEMS; ++k) {
    const int p = row + k * kRows;
    if (p < it.npix)
      v.fetch(k, a.x + it.off + static_cast<std::int64_t>(p) * a.C);
    else
      v[k] = make_float4(0.f, 0.f, 0.f, 0.f);
  }
}

// z = (x - mu) * A + B with A = rstd * gamma * (1 + scale), B = beta * (1 + scale) + shift;
// gs = gamma * (1 + scale).
__device__ __forceinline__ void fetch_parameters(const FwdArgs& a, const FwdItem& it, float gs[4], float B[4]) {
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float s1 = a.scale ? 1.f + a.scale[it.n * a.C + it.c + i] : 1.f;
    gs[i] = a.gamma[it.c + i] * s1;
    B[i] = a.beta[it.c + i] * s1 + (a.shift ? a.shift[it.n * a.C + it.c + i] : 0.f);
  }
}

// Statistics of the slab in v (landed), merged over the cluster through xch, then y.
// params_late: fetch gamma, beta, scale, shift after the reductions (fewer live registers).
template <int ITEMS, class S>
__device__ __forceinline__ void normalize_slab(const FwdArgs& a, const FwdItem& it, S& v, float gs[4], float B[4],
                                               bool params_late, float2* xch, float2* stat,
                                               float (*part)[kMaxGroups]) {
  const int t = threadIdx.x, cv = t % kVecs, row = t / kVecs;
  const int vpg = a.cg / 4, gpb = kSpan / a.cg, gl = cv / vpg;
  float sum = 0.f;
#pragma unroll
  for (int k = 0; k < ITEMS; ++k) {
    const float4 e = v[k];
    sum += (e.x + e.y) + (e.z + e.w);
  }
  const float cnt = static_cast<float>(it.npix) * static_cast<float>(a.cg);
  const float mean_b = block_group_sum(sum, vpg, gl, part) / cnt;
  float sq = 0.f;
#pragma unroll
  for (int k = 0; k < ITEMS; ++k) {
    if (row + k * kRows < it.npix) {
      const float4 e = v[k];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const float d = get(e, i) - mean_b;
        sq += d * d;
      }
    }
  }
  const float m2_b = block_group_sum(sq, vpg, gl, part);

  // Threads 0..7 with cv a group's first vector hold that group's block statistics.
  const bool group_head = t < kVecs && cv % vpg == 0;
  if (a.K == 1) {
    if (group_head) stat[gl] = make_float2(mean_b, 1.f / sqrtf(m2_b / cnt + a.eps));
  } else {
    if (group_head) xch[gl] = make_float2(mean_b, m2_b);
    cluster_sync();  // every block's xch is written
    if (t < gpb) {  // merge group t over the ranks: two sweeps over the peers (few registers)
      auto count = [&](int q) {
        return static_cast<float>(std::min<std::int64_t>(a.pix, a.HW - static_cast<std::int64_t>(q) * a.pix)) *
               static_cast<float>(a.cg);
      };
      float ntot = 0.f, wsum = 0.f;
      for (int q = 0; q < a.K; ++q) {
        const float nq = count(q);
        ntot += nq;
        wsum += nq * cluster_peer(&xch[t], q)->x;
      }
      const float mu = wsum / ntot;
      float m2 = 0.f;
      for (int q = 0; q < a.K; ++q) {
        const float2 e = *cluster_peer(&xch[t], q);
        const float d = e.x - mu;
        m2 += e.y + count(q) * d * d;
      }
      stat[t] = make_float2(mu, 1.f / sqrtf(m2 / ntot + a.eps));
    }
    cluster_arrive();  // done reading the peers' xch; they may exit once all have arrived
  }
  if (params_late) fetch_parameters(a, it, gs, B);
  __syncthreads();
  if (it.rank == 0 && t < gpb) {
    a.mean[it.n * a.G + it.s * gpb + t] = stat[t].x;
    a.rstd[it.n * a.G + it.s * gpb + t] = stat[t].y;
  }
  const float mu = stat[gl].x, r = stat[gl].y;
  float A[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) A[i] = r * gs[i];
#pragma unroll
  for (int k = 0; k < ITEMS; ++k) {
    const int p = row + k * kRows;
    if (p < it.npix) {
      const float4 e = v[k];
      float4 o;
#pragma unroll
      for (int i = 0; i < 4; ++i) set(o, i, act((get(e, i) - mu) * A[i] + B[i], a.silu));
      *reinterpret_cast<float4*>(a.y + it.off + static_cast<std::int64_t>(p) * a.C) = o;
    }
  }
}

template <int ITEMS, bool STAGED>
__global__ void __launch_bounds__(kThreads, min_blocks(ITEMS, false, STAGED)) gn_slab_forward(FwdArgs a) {
  __shared__ float part[kWarps][kMaxGroups];
  __shared__ float2 xch[kMaxGroups];   // this block's (mean_b, M2_b), read by the cluster
  __shared__ float2 stat[kMaxGroups];  // the groups' (mean, rstd)
  const FwdItem it = fwd_item(a, blockIdx.x / a.K, static_cast<int>(blockIdx.x % a.K));
  Slice<ITEMS, STAGED> v(gn_slab_dynamic);  // [ITEMS pixels][4 channels] of x
  fetch_slab<ITEMS>(a, it, v);
  // The register kernels fetch the parameters while the slab loads; the staged ones after
  // the reductions, to keep their register count down.
  float gs[4], B[4];
  if (!STAGED) fetch_parameters(a, it, gs, B);
  v.wait();
  normalize_slab<ITEMS>(a, it, v, gs, B, STAGED, xch, stat, part);
  if (a.K > 1) cluster_wait();  // keep xch alive until every peer has read it
}

// ---------------------------------------------------------------------------------------
// Backward: same blocks and clusters as the forward; x (as xhat) and dz stay in registers.
template <int ITEMS, bool STAGED>
__global__ void __launch_bounds__(kThreads, min_blocks(ITEMS, true, STAGED)) gn_slab_backward(BwdArgs a) {
  __shared__ float part[kWarps][2][kSpan];  // per-warp channel partials of dz, dz * xhat
  __shared__ float chan[2][kSpan];          // this block's channel partials, read by the cluster
  __shared__ float grp[2][kMaxGroups];      // m1, m2 of each group
  const int t = threadIdx.x, lane = t & 31, warp = t >> 5, cv = t % kVecs, row = t / kVecs;
  const int spans = static_cast<int>(a.C / kSpan), gpb = kSpan / a.cg, gl = cv * 4 / a.cg;
  const std::int64_t blk = blockIdx.x / a.K;
  const int rank = static_cast<int>(blockIdx.x - blk * a.K);
  const std::int64_t n = blk / spans;
  const int s = static_cast<int>(blk - n * spans);
  const std::int64_t cspan = static_cast<std::int64_t>(s) * kSpan, c = cspan + cv * 4;
  const std::int64_t p0 = static_cast<std::int64_t>(rank) * a.pix;
  const int npix = static_cast<int>(std::min<std::int64_t>(a.pix, a.HW - p0));
  const std::int64_t off = (n * a.HW + p0) * a.C + c;
  const float mu = a.mean[n * a.G + s * gpb + gl], r = a.rstd[n * a.G + s * gpb + gl];

  // z = xhat * w + b with w = (1 + scale) gamma, b = (1 + scale) beta + shift; w also
  // scales dz into dxhat.
  float w[4], b[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float s1 = a.scale ? 1.f + a.scale[n * a.C + c + i] : 1.f;
    w[i] = s1 * a.gamma[c + i];
    b[i] = s1 * a.beta[c + i] + (a.shift ? a.shift[n * a.C + c + i] : 0.f);
  }
  // Warp 0 lane j: w_j = (1 + scale_j) gamma_j of span channel j, for the group sums below.
  const float w_lane = warp == 0 ? (a.scale ? 1.f + a.scale[n * a.C + cspan + lane] : 1.f) * a.gamma[cspan + lane]
                                 : 0.f;

  // xhat and dz = dy * act'(z) of the thread's elements (read as x and dy).
  using S = Slice<ITEMS, STAGED>;
  S xh(gn_slab_dynamic), dz(gn_slab_dynamic + (STAGED ? ITEMS * kThreads : 0));
#pragma unroll
  for (int k = 0; k < ITEMS; ++k) {
    const int p = row + k * kRows;
    if (p < npix) {
      xh.fetch(k, a.x + off + static_cast<std::int64_t>(p) * a.C);
      dz.fetch(k, a.dy + off + static_cast<std::int64_t>(p) * a.C);
    } else {
      xh[k] = dz[k] = make_float4(0.f, 0.f, 0.f, 0.f);
    }
  }
  S::wait();
  float sd[4] = {}, sdx[4] = {};
#pragma unroll
  for (int k = 0; k < ITEMS; ++k) {
    const bool valid = row + k * kRows < npix;
    float4 xk = xh[k], dk = dz[k];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const float xhat = valid ? (get(xk, i) - mu) * r : 0.f;
      const float z = xhat * w[i] + b[i];
      const float d = valid ? get(dk, i) * act_grad(z, a.silu) : 0.f;
      set(xk, i, xhat);
      set(dk, i, d);
      sd[i] += d;
      sdx[i] += d * xhat;
    }
    xh[k] = xk;
    dz[k] = dk;
  }
  // Channel partials: sum over the warp's 4 rows (lane bits 3, 4), then over warps.
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    sd[i] += __shfl_xor_sync(0xffffffffu, sd[i], 8);
    sd[i] += __shfl_xor_sync(0xffffffffu, sd[i], 16);
    sdx[i] += __shfl_xor_sync(0xffffffffu, sdx[i], 8);
    sdx[i] += __shfl_xor_sync(0xffffffffu, sdx[i], 16);
  }
  if (lane < kVecs) {
#pragma unroll
    for (int i = 0; i < 4; ++i) part[warp][0][lane * 4 + i] = sd[i], part[warp][1][lane * 4 + i] = sdx[i];
  }
  __syncthreads();
  if (t < 2 * kSpan) {  // warp 0: dz sums, warp 1: dz * xhat sums, channel = lane
    float acc = 0.f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) acc += part[w][warp][lane];
    chan[warp][lane] = acc;
  }
  if (a.K > 1)
    cluster_sync();  // every block's chan is written
  else
    __syncthreads();
  if (warp == 0) {
    float S1 = 0.f, S2 = 0.f;  // sums over all HW pixels of channel cspan + lane, in rank order
    for (int q = 0; q < a.K; ++q) {
      const float* peer = a.K > 1 ? cluster_peer(&chan[0][0], q) : &chan[0][0];
      S1 += peer[lane];
      S2 += peer[kSpan + lane];
    }
    if (rank == 0) {
      a.sum_dz[n * a.C + cspan + lane] = S1;
      a.sum_dz_xhat[n * a.C + cspan + lane] = S2;
    }
    float g1 = w_lane * S1, g2 = w_lane * S2;
    for (int o = 1; o < a.cg; o <<= 1) {  // butterfly over the Cg lanes of the group
      g1 += __shfl_xor_sync(0xffffffffu, g1, o);
      g2 += __shfl_xor_sync(0xffffffffu, g2, o);
    }
    const float M = static_cast<float>(a.HW) * static_cast<float>(a.cg);
    if (lane % a.cg == 0) grp[0][lane / a.cg] = g1 / M, grp[1][lane / a.cg] = g2 / M;
  }
  if (a.K > 1) cluster_arrive();  // done reading the peers' chan
  __syncthreads();
  const float m1 = grp[0][gl], m2 = grp[1][gl];
#pragma unroll
  for (int k = 0; k < ITEMS; ++k) {
    const int p = row + k * kRows;
    if (p < npix) {
      const float4 xk = xh[k], dk = dz[k];
      float4 o;
#pragma unroll
      for (int i = 0; i < 4; ++i) set(o, i, r * (get(dk, i) * w[i] - m1 - get(xk, i) * m2));
      *reinterpret_cast<float4*>(a.dx + off + static_cast<std::int64_t>(p) * a.C) = o;
    }
  }
  if (a.K > 1) cluster_wait();  // keep chan alive until every peer has read it
}

// ---------------------------------------------------------------------------------------
// Host side.

// Cluster launches need a device that supports them and kernels compiled for sm_90 or newer
// (a binary built only for older architectures runs them from older PTX, without clusters).
bool clusters_available() {
  static const bool ok = [] {
    int supported = 0;
    DDPM_CUDA_CHECK(cudaDeviceGetAttribute(&supported, cudaDevAttrClusterLaunch, current_device()));
    if (!supported) return false;
    cudaFuncAttributes fa{};
    DDPM_CUDA_CHECK(cudaFuncGetAttributes(&fa, gn_slab_forward<kFwdItems, false>));
    return fa.ptxVersion >= 90 && fa.binaryVersion >= 90;
  }();
  return ok;
}

// Dynamic shared memory beyond the default 48 KiB per block must be opted into per kernel.
template <class Args>
void allow_smem(void (*kernel)(Args), std::size_t smem) {
  if (smem > 48 * 1024)
    DDPM_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
}

// A launch of `blocks` blocks in clusters of K consecutive blocks (attr must outlive cfg).
void cluster_config(cudaLaunchConfig_t& cfg, cudaLaunchAttribute (&attr)[1], std::int64_t blocks, int K,
                    std::size_t smem, cudaStream_t stream) {
  cfg = cudaLaunchConfig_t{};
  cfg.gridDim = dim3(static_cast<unsigned>(blocks));
  cfg.blockDim = dim3(kThreads);
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  attr[0].id = cudaLaunchAttributeClusterDimension;
  attr[0].val.clusterDim.x = static_cast<unsigned>(K);
  attr[0].val.clusterDim.y = 1;
  attr[0].val.clusterDim.z = 1;
  cfg.attrs = attr;
  cfg.numAttrs = 1;
}

// Launches kernel<<<blocks, kThreads, smem>>>(args) in clusters of K consecutive blocks.
template <class Args>
void launch(void (*kernel)(Args), std::int64_t blocks, int K, std::size_t smem, const Args& args,
            cudaStream_t stream, const char* name) {
  allow_smem(kernel, smem);
  if (K == 1) {
    kernel<<<static_cast<unsigned>(blocks), kThreads, smem, stream>>>(args);
  } else {
    cudaLaunchConfig_t cfg;
    cudaLaunchAttribute attr[1];
    cluster_config(cfg, attr, blocks, K, smem, stream);
    DDPM_CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, args));
  }
  DDPM_LAUNCH_CHECK(name);
}

// The kernel instantiation for a plan: pixels per thread and where the slice lives.
using ForwardKernel = void (*)(FwdArgs);
using BackwardKernel = void (*)(BwdArgs);
ForwardKernel forward_kernel(const Plan& p) {
  switch (p.items * 2 + (p.staged ? 1 : 0)) {
    case 2: return gn_slab_forward<1, false>;
    case 3: return gn_slab_forward<1, true>;
    case 4: return gn_slab_forward<2, false>;
    case 5: return gn_slab_forward<2, true>;
    case 8: return gn_slab_forward<4, false>;
    case 9: return gn_slab_forward<4, true>;
    case 16: return gn_slab_forward<8, false>;
    case 17: return gn_slab_forward<8, true>;
    case 32: return gn_slab_forward<16, false>;
    case 33: return gn_slab_forward<16, true>;
    default: DDPM_THROW(ValueError, "group_norm: no slab forward kernel for " << p.items << " items");
  }
}
BackwardKernel backward_kernel(const Plan& p) {
  switch (p.items * 2 + (p.staged ? 1 : 0)) {
    case 2: return gn_slab_backward<1, false>;
    case 3: return gn_slab_backward<1, true>;
    case 4: return gn_slab_backward<2, false>;
    case 5: return gn_slab_backward<2, true>;
    case 8: return gn_slab_backward<4, false>;
    case 9: return gn_slab_backward<4, true>;
    case 16: return gn_slab_backward<8, false>;
    case 17: return gn_slab_backward<8, true>;
    default: DDPM_THROW(ValueError, "group_norm: no slab backward kernel for " << p.items << " items");
  }
}

}  // namespace

Plan plan(std::int64_t HW, std::int64_t C, std::int64_t G, bool backward) {
  Plan p;
  if (HW <= 0 || C % kSpan != 0 || C % G != 0) return p;
  const std::int64_t cg = C / G;
  if (cg < 4 || kSpan % cg != 0) return p;  // Cg in {4, 8, 16, 32}
  const int pref = backward ? kBwdItems : kFwdItems, most = backward ? kBwdMaxItems : kFwdMaxItems;
  const int max_k = clusters_available() ? kMaxCluster : 1;
  int items = 1;
  while (items < pref && static_cast<std::int64_t>(kRows) * items < HW) items *= 2;
  auto blocks_for = [&](int it) { return (HW + kRows * it - 1) / (kRows * it); };
  while (blocks_for(items) > max_k && items < most) items *= 2;
  if (blocks_for(items) > max_k) return p;
  p.ok = true;
  p.items = items;
  p.blocks_k = static_cast<int>(blocks_for(items));
  p.pix = kRows * items;
  p.staged = g_staging == Staging::automatic ? staged_choice(backward, p.blocks_k) : g_staging == Staging::shared;
  return p;
}

void set_staging(Staging s) { g_staging = s; }

std::size_t Plan::smem_bytes(bool backward) const {
  return staged ? static_cast<std::size_t>(backward ? 2 : 1) * items * kThreads * sizeof(float4) : 0;
}

void forward(const Plan& p, const float* x, const float* gamma, const float* beta, const float* scale,
             const float* shift, float* y, float* mean, float* rstd, std::int64_t N, std::int64_t HW, std::int64_t C,
             std::int64_t G, float eps, bool silu, cudaStream_t stream) {
  DDPM_CHECK(p.ok, "group_norm: slab forward called with an ineligible plan");
  const FwdArgs a{x,  gamma, beta, scale, shift, y, mean, rstd, HW, C, static_cast<int>(G), static_cast<int>(C / G),
                  p.blocks_k, p.pix, eps, silu};
  launch(forward_kernel(p), N * (C / kSpan) * p.blocks_k, p.blocks_k, p.smem_bytes(false), a, stream,
         "group_norm_slab_forward");
}

void backward(const Plan& p, const float* x, const float* gamma, const float* beta, const float* scale,
              const float* shift, const float* mean, const float* rstd, const float* dy, float* dx, float* sum_dz,
              float* sum_dz_xhat, std::int64_t N, std::int64_t HW, std::int64_t C, std::int64_t G, bool silu,
              cudaStream_t stream) {
  DDPM_CHECK(p.ok, "group_norm: slab backward called with an ineligible plan");
  const BwdArgs a{x,  gamma, beta, scale, shift, mean, rstd, dy, dx, sum_dz, sum_dz_xhat, HW, C, static_cast<int>(G),
                  static_cast<int>(C / G), p.blocks_k, p.pix, silu};
  launch(backward_kernel(p), N * (C / kSpan) * p.blocks_k, p.blocks_k, p.smem_bytes(true), a, stream,
         "group_norm_slab_backward");
}

Residency residency(const Plan& p, bool backward, std::int64_t N, std::int64_t C) {
  DDPM_CHECK(p.ok, "group_norm: slab residency asked for an ineligible plan");
  Residency r;
  r.work_items = N * (C / kSpan);
  const std::size_t smem = p.smem_bytes(backward);
  auto count = [&](auto kernel) {
    allow_smem(kernel, smem);
    if (p.blocks_k == 1) {
      int per_sm = 0, sms = 0;
      DDPM_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kThreads, smem));
      DDPM_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, current_device()));
      return per_sm * sms;
    }
    cudaLaunchConfig_t cfg{};
    cudaLaunchAttribute attr[1];
    cluster_config(cfg, attr, r.work_items * p.blocks_k, p.blocks_k, smem, nullptr);
    int clusters = 0;
    DDPM_CUDA_CHECK(cudaOccupancyMaxActiveClusters(&clusters, kernel, &cfg));
    return clusters;
  };
  r.resident = backward ? count(backward_kernel(p)) : count(forward_kernel(p));
  return r;
}

}  // namespace ddpm::cuda::gn_slab
