// kernels/cuda/group_norm_slab.h: the cluster-slab path of the CUDA GroupNorm (internal to
// kernels/cuda/group_norm*.cu; callers use kernels/cuda/group_norm.h).
//
// Layouts as in group_norm.h: x, y, dy, dx [N, HW, C] channels fastest; gamma, beta [C];
// scale, shift [N, C] or null; mean, rstd [N, G]. The backward writes the per-(n, c) sums
// sum_dz [N, C] = sum_hw dz and sum_dz_xhat [N, C] = sum_hw dz * xhat that the parameter
// gradient kernel of group_norm.cu reduces over n.
//
// Eligible shapes: C % 32 == 0 and Cg = C / G in {4, 8, 16, 32} (whole groups inside each
// 32-channel span), pointers x, y, dy, dx 16-byte aligned (checked by the caller), and a
// sample's HW pixels split over at most 8 blocks of one thread-block cluster (sm_90+; one
// block on older GPUs). The 16-channel span variant (tiling(), set_tiling()) needs C % 16 == 0
// and Cg in {4, 8, 16}; plan() never picks it unmeasured. Design and byte counts:
// group_norm_slab.cu.
#pragma once

#include <cstddef>
#include <cstdint>

#include <cuda_runtime_api.h>

namespace ddpm::cuda::gn_slab {

constexpr int kThreads = 256;    // threads per block, both kernels
constexpr int kMaxCluster = 8;   // blocks per cluster: the portable cluster size limit
constexpr int kFwdMaxItems = 16;  // most pixels per thread a kernel is compiled for (forward)
constexpr int kBwdMaxItems = 8;   // (backward: it holds x and dy)
// Pixel rows a block covers per pass: 256 threads / (span / 4) float4 vectors per pixel span.
constexpr int rows_for(int span) { return kThreads / (span / 4); }

struct Plan {
  bool ok = false;
  bool staged = false;  // slices in shared memory through cp.async (else in registers)
  int span = 32;        // channels per block: 32 (one 128-byte line per pixel) or 16
  int items = 1;        // float4 pixels per thread (per held tensor)
  int blocks_k = 1;     // cluster size K: blocks sharing one (n, span)
  int pix = 0;          // pixels per block = items * (256 threads / (span / 4) vectors per pixel)
  // Dynamic shared memory per block: the staged slices (x; x and dy for the backward).
  std::size_t smem_bytes(bool backward) const;
};

// Where plan() keeps the slices: the measured choice (automatic), or forced, for tests that
// cover both kernels whatever the plan prefers. Not thread-safe; a test hook.
enum class Staging { automatic, registers, shared };
void set_staging(Staging s);

// Forces plan() to a tiling the measured plan does not take: span channels per block (16 or
// 32) and items pixels per thread (0: the plan's preference for that span); set_tiling(32, 0)
// restores the plan. Where the forced tiling does not fit a shape, plan() says not ok (the
// callers then take the fused path). Not thread-safe; a test hook.
void set_tiling(int span, int items);

// The slab plan for a shape; ok is false when the shape is not eligible (alignment apart).
Plan plan(std::int64_t HW, std::int64_t C, std::int64_t G, bool backward);

// One explicit tiling (bench-kernels --gn-variants times every one next to the plan's): span
// 16 or 32, items a power of two up to 16 (8 backward), K = ceil(HW / pix) <= 8 (1 without
// clusters), slices in shared memory if staged. ok is false where the shape excludes it.
Plan tiling(std::int64_t HW, std::int64_t C, std::int64_t G, bool backward, int span, int items, bool staged);

// Whether this device and build launch thread-block clusters (sm_90 code on an sm_90+ GPU);
// without them every plan has K = 1.
bool clusters_available();

// How the launch of a plan fills the device: work_items = N * C / span (one (sample, span)
// per cluster of K blocks) and how many clusters (blocks when K = 1) can be resident at
// once (cudaOccupancyMaxActiveClusters; registers, shared memory and GPC packing included).
// The last wave is work_items % resident clusters; a tuning aid (bench-kernels --gn-variants).
struct Residency {
  std::int64_t work_items = 0;
  int resident = 0;
};
Residency residency(const Plan& p, bool backward, std::int64_t N, std::int64_t C);

void forward(const Plan& p, const float* x, const float* gamma, const float* beta, const float* scale,
             const float* shift, float* y, float* mean, float* rstd, std::int64_t N, std::int64_t HW, std::int64_t C,
             std::int64_t G, float eps, bool silu, cudaStream_t stream);

void backward(const Plan& p, const float* x, const float* gamma, const float* beta, const float* scale,
              const float* shift, const float* mean, const float* rstd, const float* dy, float* dx, float* sum_dz,
              float* sum_dz_xhat, std::int64_t N, std::int64_t HW, std::int64_t C, std::int64_t G, bool silu,
              cudaStream_t stream);

}  // namespace ddpm::cuda::gn_slab
