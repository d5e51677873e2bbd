// kernels/cuda/group_norm_slab_plan.cpp: which tiling the slab path of the CUDA GroupNorm
// takes for a shape (kernels/cuda/group_norm_slab.h; the kernels are in group_norm_slab.cu).
//
// A tiling is the channels per block (span: 32, one 128-byte line per pixel; or the 16
// variant), the float4 pixels per thread (items; pix = rows_for(span) * items pixels per
// block), the cluster size K = ceil(HW / pix) <= 8, and where the slices live (registers or
// shared memory). plan() picks the measured best with 32-channel spans; tiling() builds any
// other for the benchmark sweep, and set_staging / set_tiling force plan() for the tests.
#include "kernels/cuda/group_norm_slab.h"

#include "engine/error.h"

namespace ddpm::cuda::gn_slab {

namespace {

// Preferred pixels per thread. Measured on an H100 (bench-kernels --gn-variants, batch 128,
// 32 groups, 2026-11-23): 8 beats 4 everywhere it applies (32x32 C=128 forward 0.070 vs
// 0.077 ms, backward 0.105 vs 0.111; 32x32 C=256 0.134 vs 0.145 and 0.193 vs 0.208; 16x16
// C=256, where 8 means one block per sample and no cluster, 0.031 vs 0.039 and 0.050 vs
// 0.057), and 16 (clusters of 2) loses at 32x32 (0.094 ms forward at C=128).
constexpr int kFwdItems = 8, kBwdItems = 8;
// Where the plan keeps the slices. Measured on an H100 (bench-kernels --gn-variants, batch
// 128, 2026-11-23, three runs; docs/PERFORMANCE.md): shared memory wins the backward (32x32
// C=256: 0.166 vs 0.192 ms; 16x16 C=256: 0.046 vs 0.050; 8x8 C=512 a tie) and the clustered
// forward (32x32 C=128: 0.063 vs 0.069; C=256: 0.114 vs 0.129); the one-block forward (16x16
// C=256, no cluster barrier to hide) is a tie (0.0306 vs 0.0305 ms), and keeps registers.
bool staged_choice(bool backward, int blocks_k) { return backward || blocks_k > 1; }

Staging g_staging = Staging::automatic;  // set_staging (tests)
int g_span = 32, g_items = 0;             // set_tiling (tests): span 32, the preferred items

}  // namespace

Plan tiling(std::int64_t HW, std::int64_t C, std::int64_t G, bool backward, int span, int items, bool staged) {
  Plan p;
  if (span != 16 && span != 32) return p;
  if (HW <= 0 || G <= 0 || C % span != 0 || C % G != 0) return p;
  const std::int64_t cg = C / G;
  if (cg < 4 || span % cg != 0) return p;  // Cg in {4, 8, 16, 32} (span 32), {4, 8, 16} (span 16)
  const int most = backward ? kBwdMaxItems : kFwdMaxItems;
  if (items < 1 || items > most || (items & (items - 1)) != 0) return p;
  const int pix = rows_for(span) * items;
  const std::int64_t k = (HW + pix - 1) / pix;
  if (k > (clusters_available() ? kMaxCluster : 1)) return p;
  p.ok = true;
  p.staged = staged;
  p.span = span;
  p.items = items;
  p.blocks_k = static_cast<int>(k);
  p.pix = pix;
  return p;
}

Plan plan(std::int64_t HW, std::int64_t C, std::int64_t G, bool backward) {
  const int span = g_span, rows = rows_for(span);  // span 32 unless a test forced the tiling
  if (HW <= 0 || G <= 0 || C % span != 0 || C % G != 0) return Plan{};
  const int pref = backward ? kBwdItems : kFwdItems, most = backward ? kBwdMaxItems : kFwdMaxItems;
  const int max_k = clusters_available() ? kMaxCluster : 1;
  int items = g_items;
  if (items == 0) {  // the preferred items, more only where the cluster would exceed max_k blocks
    items = 1;
    while (items < pref && static_cast<std::int64_t>(rows) * items < HW) items *= 2;
    while ((HW + rows * items - 1) / (rows * items) > max_k && items < most) items *= 2;
  }
  Plan p = tiling(HW, C, G, backward, span, items, false);
  if (p.ok)
    p.staged = g_staging == Staging::automatic ? staged_choice(backward, p.blocks_k) : g_staging == Staging::shared;
  return p;
}

void set_staging(Staging s) { g_staging = s; }

void set_tiling(int span, int items) {
  DDPM_CHECK(span == 16 || span == 32, "group_norm: set_tiling takes a span of 16 or 32 channels, not " << span);
  DDPM_CHECK(items == 0 || (items >= 1 && items <= kFwdMaxItems && (items & (items - 1)) == 0),
             "group_norm: set_tiling takes 0 (the plan's choice) or a power of two up to " << kFwdMaxItems
                                                                                            << " items, not " << items);
  g_span = span;
  g_items = items;
}

}  // namespace ddpm::cuda::gn_slab
