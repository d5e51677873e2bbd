// GroupNorm (+ AdaGN, + SiLU) on CUDA against the CPU reference (f32), forward and every
// gradient, at the UNet's shapes (C 64..512 with G = 32 at 32x32 down to 4x4), odd shapes,
// the slab path's cluster shapes and its 16-channel span variant, and big groups that take
// the two-pass fallback.
#include <cstdint>
#include <string>
#include <utility>

#include <gtest/gtest.h>

#include "engine/autograd.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/group_norm.h"
#include "support/gradcheck.h"
#if DDPM_HAVE_CUDA
#include "kernels/cuda/group_norm.h"
#include "kernels/cuda/group_norm_slab.h"
#endif

namespace ddpm {
namespace {

using testing::all_close;
using testing::check_against_cpu;
using testing::CudaCheck;
using testing::random_tensor;

struct Case {
  Shape x;
  int groups;
};

// Runs group_norm on the CPU (f32) and on CUDA with the same inputs and output gradient;
// compares y and the gradients of x, gamma, beta, scale and shift.
void check_group_norm(const Case& c, bool silu, bool adagn) {
  const std::int64_t N = c.x[0], C = c.x.back();
  std::vector<Tensor> host{random_tensor(c.x, 1, DType::f32, 2.0), random_tensor({C}, 2, DType::f32),
                           random_tensor({C}, 3, DType::f32)};
  if (adagn) {
    host.push_back(random_tensor({N, C}, 4, DType::f32, 0.5));
    host.push_back(random_tensor({N, C}, 5, DType::f32));
  }
  // x gets a per-channel offset so that the group means are away from 0.
  host[0] = add(host[0], random_tensor({C}, 6, DType::f32, 3.0));
  auto run = [&](const std::vector<Tensor>& in) {
    return group_norm(in[0], c.groups, in[1], in[2], 1e-5, silu, adagn ? in[3] : Tensor(), adagn ? in[4] : Tensor());
  };
  // Forward: fp32 normalization of O(1) values; the statistics differ only in summation order.
  CudaCheck check{{1e-5, 1e-4}};
  // dx: O(1); dgamma, dbeta sum N*H*W terms and dscale, dshift H*W terms of O(1): the
  // tolerance grows with the number of summed terms (fp32 summation order).
  const double hw = static_cast<double>(shape_numel(c.x) / (N * C));
  const double atol[] = {2e-5, 2e-6 * hw * N + 1e-4, 2e-6 * hw * N + 1e-4, 2e-6 * hw + 1e-4, 2e-6 * hw + 1e-4};
  const char* names[] = {"x", "gamma", "beta", "scale", "shift"};
  for (std::size_t i = 0; i < host.size(); ++i) {
    check.grad.push_back({atol[i], 1e-4});
    check.names.push_back(names[i]);
  }
  check_against_cpu(run, host, check);
}

void check_all_variants(const Case& c) {
  for (bool adagn : {false, true})
    for (bool silu : {false, true}) {
      SCOPED_TRACE(shape_str(c.x) + " G=" + std::to_string(c.groups) + (silu ? " silu" : "") +
                   (adagn ? " adagn" : ""));
      check_group_norm(c, silu, adagn);
    }
}

TEST(GroupNormGpu, UNetShapesAllVariants) {
  DDPM_REQUIRE_CUDA();
  const Case cases[] = {
      {{2, 32, 32, 64}, 32},  {{4, 32, 32, 128}, 32}, {{2, 32, 32, 256}, 32}, {{8, 16, 16, 128}, 32},
      {{4, 16, 16, 256}, 32}, {{4, 8, 8, 256}, 32},   {{8, 8, 8, 512}, 32},   {{2, 4, 4, 512}, 32},
      {{2, 16, 16, 384}, 32}, {{3, 32, 32, 512}, 32},
  };
  for (const Case& c : cases) check_all_variants(c);
}

TEST(GroupNormGpu, OddShapes) {
  DDPM_REQUIRE_CUDA();
  const Case cases[] = {
      {{2, 7, 5, 96}, 3},    // Cg = 32, HW not a power of two
      {{3, 9, 9, 96}, 32},   // Cg = 3: scalar loads
      {{2, 5, 3, 6}, 3},     // Cg = 2, G not a multiple of 4: one group per block
      {{2, 6, 6, 24}, 24},   // Cg = 1 (instance norm), 8 groups per block
      {{2, 3, 3, 10}, 5},    // Cg = 2 with float2 loads
      {{2, 49, 40}, 4},      // [N, S, C] tokens
      {{1, 1, 1, 8}, 2},     // one pixel
  };
  for (const Case& c : cases) check_all_variants(c);
}

TEST(GroupNormGpu, LargeGroupsUseTheFallback) {
  DDPM_REQUIRE_CUDA();
#if DDPM_HAVE_CUDA
  const Case cases[] = {{{2, 64, 64, 64}, 1}, {{2, 32, 32, 128}, 2}, {{2, 64, 64, 128}, 32}};
  EXPECT_FALSE(cuda::group_norm_forward_is_fused(64 * 64, 64, 1));
  EXPECT_FALSE(cuda::group_norm_forward_is_fused(32 * 32, 128, 2));
  EXPECT_FALSE(cuda::group_norm_backward_is_fused(64 * 64, 128, 32));  // forward slab (16 items, K = 8), backward two-pass
  EXPECT_TRUE(cuda::group_norm_forward_is_fused(32 * 32, 512, 32));
  EXPECT_TRUE(cuda::group_norm_forward_is_fused(32 * 32, 256, 32));
  EXPECT_TRUE(cuda::group_norm_backward_is_fused(32 * 32, 256, 32));
  for (const Case& c : cases) check_all_variants(c);
#endif
}

// The slab path (group_norm_slab.cu): clusters of K blocks over a sample's pixels, with a
// partly filled last block (HW not a multiple of the block's pixels), each Cg it supports,
// and a batch larger than one wave of clusters.
TEST(GroupNormGpu, SlabPathClusterShapes) {
  DDPM_REQUIRE_CUDA();
  const Case cases[] = {
      {{2, 23, 23, 64}, 16},   // Cg = 4, HW = 529: forward K = 5, backward K = 5 (last block 17 pixels)
      {{2, 23, 23, 256}, 8},   // Cg = 32, one group per span
      {{2, 7, 9, 128}, 32},    // HW = 63: one block, half its rows empty
      {{2, 32, 32, 512}, 32},  // Cg = 16 at 32x32: the backward is on-chip too
      {{2, 40, 40, 128}, 32},  // HW = 1600: forward and backward take 8 items per thread
      {{300, 4, 4, 32}, 8},    // many small blocks
  };
  for (const Case& c : cases) check_all_variants(c);
}

// The slab kernels keep their slices in registers or in shared memory (cp.async); the plan
// picks by direction and cluster size, so this runs the UNet's slab shapes and the cluster
// shapes under both.
TEST(GroupNormGpu, SlabSlicesInRegistersAndSharedMemory) {
  DDPM_REQUIRE_CUDA();
#if DDPM_HAVE_CUDA
  struct Restore {
    ~Restore() { cuda::gn_slab::set_staging(cuda::gn_slab::Staging::automatic); }
  } restore;
  const Case cases[] = {
      {{2, 32, 32, 128}, 32}, {{2, 16, 16, 256}, 32}, {{3, 8, 8, 512}, 32}, {{2, 23, 23, 64}, 16},
      {{2, 7, 9, 128}, 32},   {{2, 40, 40, 128}, 32}, {{2, 32, 32, 512}, 32}, {{300, 4, 4, 32}, 8},
  };
  using cuda::gn_slab::Staging;
  for (Staging staging : {Staging::registers, Staging::shared}) {
    cuda::gn_slab::set_staging(staging);
    SCOPED_TRACE(staging == Staging::shared ? "shared-memory slices" : "register slices");
    for (const Case& c : cases) {
      EXPECT_EQ(cuda::gn_slab::plan(c.x[1] * c.x[2], c.x[3], c.groups, false).staged, staging == Staging::shared);
      EXPECT_EQ(cuda::gn_slab::plan(c.x[1] * c.x[2], c.x[3], c.groups, true).staged, staging == Staging::shared);
      check_all_variants(c);
    }
  }
#endif
}

// The 16-channel span variant (group_norm_slab.cu; bench-kernels --gn-variants times it, the
// plan never takes it), forced through set_tiling at every pixels-per-thread count: the UNet's
// 32x32 slab shapes (K = 4, 2, 1 at 4, 8, 16 items), pixel counts that leave the last block
// partly filled (7x7, 23x23), K up to 7 (40x40), Cg = 4, 8 and 16, register and shared-memory
// slices, AdaGN and SiLU on and off, forward and every gradient against the CPU reference.
TEST(GroupNormGpu, SlabSpan16Variant) {
  DDPM_REQUIRE_CUDA();
#if DDPM_HAVE_CUDA
  using cuda::gn_slab::Staging;
  struct Restore {
    ~Restore() {
      cuda::gn_slab::set_tiling(32, 0);
      cuda::gn_slab::set_staging(Staging::automatic);
    }
  } restore;
  const Case cases[] = {
      {{2, 32, 32, 128}, 32},  // Cg = 4
      {{2, 32, 32, 256}, 32},  // Cg = 8
      {{2, 7, 7, 64}, 16},     // HW = 49: one block, partly filled
      {{2, 23, 23, 64}, 16},   // HW = 529: last block 17 pixels at 4 and 8 items
      {{2, 40, 40, 128}, 32},  // HW = 1600: K = 7 at 4 items
      {{2, 16, 16, 512}, 32},  // Cg = 16: one group per span
      {{300, 4, 4, 32}, 8},    // many small blocks
  };
  // 256 threads hold 4 float4 vectors of a 16-channel span each: 64 pixel rows per pass.
  constexpr std::int64_t kRows = 64;
  for (Staging staging : {Staging::registers, Staging::shared}) {
    cuda::gn_slab::set_staging(staging);
    for (int items : {1, 2, 4, 8, 16}) {
      cuda::gn_slab::set_tiling(16, items);
      for (const Case& c : cases) {
        const std::int64_t hw = c.x[1] * c.x[2], C = c.x[3], K = (hw + kRows * items - 1) / (kRows * items);
        SCOPED_TRACE(shape_str(c.x) + " span 16, " + std::to_string(items) + " items, " +
                     (staging == Staging::shared ? "shared" : "registers"));
        if (K > 8) continue;
        bool ran_slab = false;
        for (bool backward : {false, true}) {
          const cuda::gn_slab::Plan p = cuda::gn_slab::plan(hw, C, c.groups, backward);
          if (backward && items > 8) {  // no backward kernel holds 16 items: the fused path runs
            EXPECT_FALSE(p.ok);
            continue;
          }
          ASSERT_TRUE(p.ok) << (backward ? "backward" : "forward");
          EXPECT_EQ(p.span, 16);
          EXPECT_EQ(p.items, items);
          EXPECT_EQ(p.pix, kRows * items);
          EXPECT_EQ(p.blocks_k, K);
          EXPECT_EQ(p.staged, staging == Staging::shared);
          ran_slab = true;
        }
        if (ran_slab) check_all_variants(c);
      }
    }
  }
  // A 32-channel group does not fit a 16-channel span.
  cuda::gn_slab::set_tiling(16, 0);
  EXPECT_FALSE(cuda::gn_slab::plan(1024, 256, 8, false).ok);
  EXPECT_FALSE(cuda::gn_slab::tiling(1024, 256, 8, false, 16, 4, true).ok);
  EXPECT_TRUE(cuda::gn_slab::tiling(1024, 256, 8, false, 32, 8, true).ok);
#endif
}

// The occupancy query behind bench-kernels' wave counts: one work item per (sample,
// 32-channel span), and at least one resident cluster for every plan the UNet takes (a
// cluster that could never be resident would make the launch itself fail).
TEST(GroupNormGpu, SlabResidencyCountsWorkItemsAndResidentClusters) {
  DDPM_REQUIRE_CUDA();
#if DDPM_HAVE_CUDA
  for (bool backward : {false, true}) {
    for (const auto& [hw, c] : {std::pair<std::int64_t, std::int64_t>{1024, 128}, {1024, 256}, {256, 256}, {64, 512}}) {
      const cuda::gn_slab::Plan p = cuda::gn_slab::plan(hw, c, 32, backward);
      ASSERT_TRUE(p.ok) << "hw " << hw << " c " << c;
      const cuda::gn_slab::Residency r = cuda::gn_slab::residency(p, backward, 128, c);
      EXPECT_EQ(r.work_items, 128 * c / 32);
      EXPECT_GE(r.resident, 1) << "hw " << hw << " c " << c << (backward ? " backward" : " forward");
    }
  }
#endif
}

TEST(GroupNormGpu, UnalignedViewsTakeScalarLoads) {
  DDPM_REQUIRE_CUDA();
  // x is a view starting one float into its storage: the fused kernel must not use float4.
  const Shape xs{2, 8, 8, 64};
  Tensor big = random_tensor({1 + shape_numel(xs)}, 9, DType::f32).to(Device::cuda());
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = big.impl()->storage;
  impl->offset_bytes = sizeof(float);
  impl->shape = xs;
  impl->dtype = DType::f32;
  Tensor xg(impl);
  Tensor xc = xg.cpu();
  xg.set_requires_grad(true);
  xc.set_requires_grad(true);
  Tensor gamma = random_tensor({64}, 10, DType::f32), beta = random_tensor({64}, 11, DType::f32);
  Tensor yg = group_norm(xg, 32, gamma.to(Device::cuda()), beta.to(Device::cuda()), 1e-5, true);
  Tensor yc = group_norm(xc, 32, gamma, beta, 1e-5, true);
  EXPECT_TRUE(all_close(yg, yc, 1e-5, 1e-4));
  Tensor w = random_tensor(xs, 12, DType::f32);
  yg.backward(w.to(Device::cuda()));
  yc.backward(w);
  EXPECT_TRUE(all_close(xg.grad(), xc.grad(), 2e-5, 1e-4));
}

}  // namespace
}  // namespace ddpm
