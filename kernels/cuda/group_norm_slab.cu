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
// a line fetch it at different times. Here a block owns a SPAN-channel span instead (SPAN =
// 32: one full 128-byte line per pixel; the production plan) holding SPAN / Cg whole groups,
// and a range of `pix` pixels:
//   * 256 threads = kRows pixel rows x kVecs = SPAN / 4 float4 vectors (32 x 8 at span 32);
//     a warp loads 32 / kVecs pixels x SPAN * 4 bytes (4 whole lines per instruction at span
//     32); thread t keeps vector cv = t % kVecs (4 channels, one group) for all its ITEMS
//     pixels p = row + k * kRows, so gamma, beta, scale, shift are loaded once.
//   * pix = kRows * ITEMS pixels per block; the HW pixels of a sample are split over K =
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
//     shared-memory slices win wherever a cluster barrier stalls each block (the plan:
//     group_norm_slab_plan.cpp).
//   * Span 16 (a variant for bench-kernels --gn-variants, never chosen by plan(); tests reach
//     it through set_tiling): 256 threads = 64 rows x 4 vectors, a warp loads 8 pixels x 64
//     bytes (two full 32-byte sectors each), and the two halves of a 128-byte line belong to
//     the blocks of adjacent work items (n, s) and (n, s + 1), launched one after the other.
//     At the same pixels per block it launches twice the blocks, each with half the bytes
//     (4 items: 256 pixels, 16 KiB of x; 48 registers, ptxas sm_90): a finer last wave, the
//     lever docs/PERFORMANCE.md proposes for 32x32 C=128, unmeasured so far. Needs C % 16 == 0
//     and Cg in {4, 8, 16}.
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

constexpr int kWarps = kThreads / 32;

// The lane layout of a block owning a SPAN-channel span (SPAN = 32, or the 16 variant).
template <int SPAN>
struct Layout {
  static_assert(SPAN == 16 || SPAN == 32, "group_norm_slab: span 16 or 32");
  static constexpr int kVecs = SPAN / 4;            // float4 vectors per pixel span (8 or 4)
  static constexpr int kRows = kThreads / kVecs;    // pixel rows per pass of the block (32 or 64)
  static constexpr int kMaxGroups = SPAN / 4;       // groups per span at Cg = 4
};


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

// Sums v over the pixel rows a warp holds: lane l holds vector cv = l % kVecs of row
// l / kVecs, so the rows differ in the lane bits from log2(kVecs) up (xor 8, 16 at span 32:
// 4 rows; xor 4, 8, 16 at span 16: 8 rows). Butterfly: every lane ends with the same sum.
template <int SPAN>
__device__ __forceinline__ float warp_row_sum(float v) {
#pragma unroll
  for (int o = Layout<SPAN>::kVecs; o < 32; o <<= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Sums v over the lanes of the same group: the warp's rows, then the vpg = Cg / 4 adjacent
// vectors of the group (the low lane bits, vpg <= kVecs). Every lane ends with the same,
// order-fixed sum.
template <int SPAN>
__device__ __forceinline__ float group_lane_sum(float v, int vpg) {
  v = warp_row_sum<SPAN>(v);
  for (int o = 1; o < vpg; o <<= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Block-wide sum per group: warp sums to part[warp][group], then each thread adds the
// kWarps partials of its group in warp order. Ends with part free for reuse.
template <int SPAN>
__device__ __forceinline__ float block_group_sum(float v, int vpg, int gl, float (*part)[Layout<SPAN>::kMaxGroups]) {
  const int lane = threadIdx.x & 31;
  v = group_lane_sum<SPAN>(v, vpg);
  if (lane < Layout<SPAN>::kVecs && lane % vpg == 0) part[threadIdx.x >> 5][lane / vpg] = v;
  __syncthreads();
  float s = 0.f;
#pragma unroll
  for (int w = 0; w < kWarps; ++w) s += part[w][gl];
  __syncthreads();
  return s;
}

// ---------------------------------------------------------------------------------------
// Forward: block (n, span s, rank) normalizes pixels [rank * pix, rank * pix + pix) of the
// span's SPAN / Cg groups. Grid: N * (C / SPAN) * K blocks, clusters of K consecutive blocks.
// (A persistent variant, double-buffered so that the next slab's reads fly while this one is
// reduced and written, was measured slower at every benchmark shape: docs/PERFORMANCE.md.)
struct FwdItem {  // what block `rank` of the cluster for work item (n, span s) owns
  std::int64_t n, c, off;  // sample; first channel of the thread's vector; x/y offset of pixel 0
  int s, rank, npix;       // span; block rank; pixels this block owns (>= 1: K = ceil(HW / pix))
};

template <int SPAN>
__device__ __forceinline__ FwdItem fwd_item(const FwdArgs& a, std::int64_t w, int rank) {
  const int spans = static_cast<int>(a.C / SPAN);
  FwdItem it;
  it.n = w / spans;
  it.s = static_cast<int>(w - it.n * spans);
  it.rank = rank;
  it.c = static_cast<std::int64_t>(it.s) * SPAN + (threadIdx.x % Layout<SPAN>::kVecs) * 4;
  const std::int64_t p0 = static_cast<std::int64_t>(rank) * a.pix;
  it.npix = static_cast<int>(std::min<std::int64_t>(a.pix, a.HW - p0));
  it.off = (it.n * a.HW + p0) * a.C + it.c;
  return it;
}

template <int SPAN, int ITEMS, class S>
__device__ __forceinline__ void fetch_slab(const FwdArgs& a, const FwdItem& it, S& v) {
  const int row = threadIdx.x / Layout<SPAN>::kVecs;
#pragma unroll
  for (int k = 0; k < ITEMS; ++k) {
    const int p = row + k * Layout<SPAN>::kRows;
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
template <int SPAN, int ITEMS, class S>
__device__ __forceinline__ void normalize_slab(const FwdArgs& a, const FwdItem& it, S& v, float gs[4], float B[4],
                                               bool params_late, float2* xch, float2* stat,
                                               float (*part)[Layout<SPAN>::kMaxGroups]) {
  constexpr int kVecs = Layout<SPAN>::kVecs, kRows = Layout<SPAN>::kRows;
  const int t = threadIdx.x, cv = t % kVecs, row = t / kVecs;
  const int vpg = a.cg / 4, gpb = SPAN / a.cg, gl = cv / vpg;
  float sum = 0.f;
#pragma unroll
  for (int k = 0; k < ITEMS; ++k) {
    const float4 e = v[k];
    sum += (e.x + e.y) + (e.z + e.w);
  }
  const float cnt = static_cast<float>(it.npix) * static_cast<float>(a.cg);
  const float mean_b = block_group_sum<SPAN>(sum, vpg, gl, part) / cnt;
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
  const float m2_b = block_group_sum<SPAN>(sq, vpg, gl, part);

  // Threads 0..kVecs-1 with cv a group's first vector hold that group's block statistics.
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

template <int SPAN, int ITEMS, bool STAGED>
__global__ void __launch_bounds__(kThreads, min_blocks(ITEMS, false, STAGED)) gn_slab_forward(FwdArgs a) {
  constexpr int kMaxGroups = Layout<SPAN>::kMaxGroups;
  __shared__ float part[kWarps][kMaxGroups];
  __shared__ float2 xch[kMaxGroups];   // this block's (mean_b, M2_b), read by the cluster
  __shared__ float2 stat[kMaxGroups];  // the groups' (mean, rstd)
  const FwdItem it = fwd_item<SPAN>(a, blockIdx.x / a.K, static_cast<int>(blockIdx.x % a.K));
  Slice<ITEMS, STAGED> v(gn_slab_dynamic);  // [ITEMS pixels][4 channels] of x
  fetch_slab<SPAN, ITEMS>(a, it, v);
  // The register kernels fetch the parameters while the slab loads; the staged ones after
  // the reductions, to keep their register count down.
  float gs[4], B[4];
  if (!STAGED) fetch_parameters(a, it, gs, B);
  v.wait();
  normalize_slab<SPAN, ITEMS>(a, it, v, gs, B, STAGED, xch, stat, part);
  if (a.K > 1) cluster_wait();  // keep xch alive until every peer has read it
}

// ---------------------------------------------------------------------------------------
// Backward: same blocks and clusters as the forward; x (as xhat) and dz stay in registers.
template <int SPAN, int ITEMS, bool STAGED>
__global__ void __launch_bounds__(kThreads, min_blocks(ITEMS, true, STAGED)) gn_slab_backward(BwdArgs a) {
  constexpr int kVecs = Layout<SPAN>::kVecs, kRows = Layout<SPAN>::kRows;
  __shared__ float part[kWarps][2][SPAN];                // per-warp channel partials of dz, dz * xhat
  __shared__ float chan[2][SPAN];                        // this block's channel partials, read by the cluster
  __shared__ float grp[2][Layout<SPAN>::kMaxGroups];     // m1, m2 of each group
  const int t = threadIdx.x, lane = t & 31, warp = t >> 5, cv = t % kVecs, row = t / kVecs;
  const int spans = static_cast<int>(a.C / SPAN), gpb = SPAN / a.cg, gl = cv * 4 / a.cg;
  const std::int64_t blk = blockIdx.x / a.K;
  const int rank = static_cast<int>(blockIdx.x - blk * a.K);
  const std::int64_t n = blk / spans;
  const int s = static_cast<int>(blk - n * spans);
  const std::int64_t cspan = static_cast<std::int64_t>(s) * SPAN, c = cspan + cv * 4;
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
  // Warp 0 lane j < SPAN: w_j = (1 + scale_j) gamma_j of span channel j, for the group sums
  // below (lanes 16..31 at span 16 own no channel and carry zeros).
  const bool lane_channel = lane < SPAN;
  const float w_lane = warp == 0 && lane_channel
                           ? (a.scale ? 1.f + a.scale[n * a.C + cspan + lane] : 1.f) * a.gamma[cspan + lane]
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
  // Channel partials: sum over the warp's rows (warp_row_sum), then over warps.
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    sd[i] = warp_row_sum<SPAN>(sd[i]);
    sdx[i] = warp_row_sum<SPAN>(sdx[i]);
  }
  if (lane < kVecs) {
#pragma unroll
    for (int i = 0; i < 4; ++i) part[warp][0][lane * 4 + i] = sd[i], part[warp][1][lane * 4 + i] = sdx[i];
  }
  __syncthreads();
  if (t < 2 * SPAN) {  // threads 0..SPAN-1: dz sums, SPAN..2 SPAN-1: dz * xhat sums (warps 0, 1 at span 32)
    const int which = t / SPAN, ch = t % SPAN;
    float acc = 0.f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) acc += part[w][which][ch];
    chan[which][ch] = acc;
  }
  if (a.K > 1)
    cluster_sync();  // every block's chan is written
  else
    __syncthreads();
  if (warp == 0) {
    float S1 = 0.f, S2 = 0.f;  // sums over all HW pixels of channel cspan + lane, in rank order
    for (int q = 0; q < a.K && lane_channel; ++q) {
      const float* peer = a.K > 1 ? cluster_peer(&chan[0][0], q) : &chan[0][0];
      S1 += peer[lane];
      S2 += peer[SPAN + lane];
    }
    if (rank == 0 && lane_channel) {
      a.sum_dz[n * a.C + cspan + lane] = S1;
      a.sum_dz_xhat[n * a.C + cspan + lane] = S2;
    }
    float g1 = w_lane * S1, g2 = w_lane * S2;
    for (int o = 1; o < a.cg; o <<= 1) {  // butterfly over the Cg lanes of the group (all 32 lanes take part)
      g1 += __shfl_xor_sync(0xffffffffu, g1, o);
      g2 += __shfl_xor_sync(0xffffffffu, g2, o);
    }
    const float M = static_cast<float>(a.HW) * static_cast<float>(a.cg);
    if (lane_channel && lane % a.cg == 0) grp[0][lane / a.cg] = g1 / M, grp[1][lane / a.cg] = g2 / M;
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

}  // namespace

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
    DDPM_CUDA_CHECK(cudaFuncGetAttributes(&fa, gn_slab_forward<32, 8, false>));
    return fa.ptxVersion >= 90 && fa.binaryVersion >= 90;
  }();
  return ok;
}

namespace {

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

// The kernel instantiation for a plan: channels per block, pixels per thread and where the
// slice lives (null where none is compiled).
using ForwardKernel = void (*)(FwdArgs);
using BackwardKernel = void (*)(BwdArgs);
static_assert(kFwdMaxItems == 16 && kBwdMaxItems == 8, "the instances below cover 1..16 and 1..8 items");
template <int SPAN, bool STAGED>
ForwardKernel forward_instance(int items) {
  switch (items) {
    case 1: return gn_slab_forward<SPAN, 1, STAGED>;
    case 2: return gn_slab_forward<SPAN, 2, STAGED>;
    case 4: return gn_slab_forward<SPAN, 4, STAGED>;
    case 8: return gn_slab_forward<SPAN, 8, STAGED>;
    case 16: return gn_slab_forward<SPAN, 16, STAGED>;
    default: return nullptr;
  }
}
template <int SPAN, bool STAGED>
BackwardKernel backward_instance(int items) {
  switch (items) {
    case 1: return gn_slab_backward<SPAN, 1, STAGED>;
    case 2: return gn_slab_backward<SPAN, 2, STAGED>;
    case 4: return gn_slab_backward<SPAN, 4, STAGED>;
    case 8: return gn_slab_backward<SPAN, 8, STAGED>;
    default: return nullptr;
  }
}
ForwardKernel forward_kernel(const Plan& p) {
  const bool s16 = p.span == 16;
  const ForwardKernel k = p.staged ? (s16 ? forward_instance<16, true> : forward_instance<32, true>)(p.items)
                                   : (s16 ? forward_instance<16, false> : forward_instance<32, false>)(p.items);
  if (!k) DDPM_THROW(ValueError, "group_norm: no slab forward kernel for span " << p.span << ", items " << p.items);
  return k;
}
BackwardKernel backward_kernel(const Plan& p) {
  const bool s16 = p.span == 16;
  const BackwardKernel k = p.staged ? (s16 ? backward_instance<16, true> : backward_instance<32, true>)(p.items)
                                    : (s16 ? backward_instance<16, false> : backward_instance<32, false>)(p.items);
  if (!k) DDPM_THROW(ValueError, "group_norm: no slab backward kernel for span " << p.span << ", items " << p.items);
  return k;
}

// A caller's plan must fit the shape it is launched on (the sweep and the tests build plans
// for shapes of their own).
void check_fits(const Plan& p, std::int64_t HW, std::int64_t C, std::int64_t G, const char* op) {
  DDPM_CHECK(p.ok, "group_norm: slab " << op << " called with an ineligible plan");
  // The kernel's rows and items cover pix pixels, and each block of the cluster owns some.
  const std::int64_t pix = p.pix;
  DDPM_CHECK(G > 0 && C % p.span == 0 && C % G == 0 && p.span % (C / G) == 0 && pix == rows_for(p.span) * p.items &&
                 pix * p.blocks_k >= HW && pix * (p.blocks_k - 1) < HW,
             "group_norm: slab " << op << " plan (span " << p.span << ", " << p.pix << " pixels x " << p.blocks_k
                                 << " blocks) does not fit HW = " << HW << ", C = " << C << ", G = " << G);
}

}  // namespace

std::size_t Plan::smem_bytes(bool backward) const {
  return staged ? static_cast<std::size_t>(backward ? 2 : 1) * items * kThreads * sizeof(float4) : 0;
}

void forward(const Plan& p, const float* x, const float* gamma, const float* beta, const float* scale,
             const float* shift, float* y, float* mean, float* rstd, std::int64_t N, std::int64_t HW, std::int64_t C,
             std::int64_t G, float eps, bool silu, cudaStream_t stream) {
  check_fits(p, HW, C, G, "forward");
  const FwdArgs a{x,  gamma, beta, scale, shift, y, mean, rstd, HW, C, static_cast<int>(G), static_cast<int>(C / G),
                  p.blocks_k, p.pix, eps, silu};
  launch(forward_kernel(p), N * (C / p.span) * p.blocks_k, p.blocks_k, p.smem_bytes(false), a, stream,
         "group_norm_slab_forward");
}

void backward(const Plan& p, const float* x, const float* gamma, const float* beta, const float* scale,
              const float* shift, const float* mean, const float* rstd, const float* dy, float* dx, float* sum_dz,
              float* sum_dz_xhat, std::int64_t N, std::int64_t HW, std::int64_t C, std::int64_t G, bool silu,
              cudaStream_t stream) {
  check_fits(p, HW, C, G, "backward");
  const BwdArgs a{x,  gamma, beta, scale, shift, mean, rstd, dy, dx, sum_dz, sum_dz_xhat, HW, C, static_cast<int>(G),
                  static_cast<int>(C / G), p.blocks_k, p.pix, silu};
  launch(backward_kernel(p), N * (C / p.span) * p.blocks_k, p.blocks_k, p.smem_bytes(true), a, stream,
         "group_norm_slab_backward");
}

Residency residency(const Plan& p, bool backward, std::int64_t N, std::int64_t C) {
  DDPM_CHECK(p.ok, "group_norm: slab residency asked for an ineligible plan");
  Residency r;
  r.work_items = N * (C / p.span);
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
