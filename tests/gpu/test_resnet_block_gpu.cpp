// The UNet's ResnetBlock on CUDA against the same block on the CPU (f32), forward and every
// gradient (input, embedding, each parameter). The block adds its timestep embedding in
// conv1's epilogue and its skip connection in conv2's (engine/ops/conv.h), so this checks
// the fused path end to end at the DDPM CIFAR-10 shapes: plain, channel change with the 1x1
// shortcut and downsampling, upsampling, and scale-shift (AdaGN, which keeps conv1 unfused).
//
// All parameters are overwritten with the same random values on both devices (conv2 is
// zero-initialized otherwise and would hide its epilogue). Both sides are fp32 (TF32 off):
// the differences are rounding, NMSE ~1e-12; the checks allow max |error| <= 1e-3 of the
// reference's largest value and NMSE <= 1e-8, while a missing or doubled addend gives O(0.1).
#include <cmath>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "engine/math_mode.h"
#include "engine/rng.h"
#include "models/unet/blocks.h"
#include "support/gradcheck.h"

namespace ddpm {
namespace {

using testing::random_tensor;
using testing::within_scale;

struct BlockCase {
  const char* name;
  std::int64_t n, h, w, in, out;
  unet::Resample resample;
  bool scale_shift;
};

const BlockCase kBlockCases[] = {
    {"32x32_c128", 4, 32, 32, 128, 128, unet::Resample::none, false},
    {"16x16_c128_to_256_shortcut", 2, 16, 16, 128, 256, unet::Resample::none, false},
    {"down_16x16_c64", 2, 16, 16, 64, 64, unet::Resample::down, false},
    {"up_8x8_c64_to_32", 2, 8, 8, 64, 32, unet::Resample::up, false},
    {"odd_channels_c6_to_10", 3, 5, 7, 6, 10, unet::Resample::none, false},
    {"scale_shift_16x16_c64", 2, 16, 16, 64, 64, unet::Resample::none, true},
};

TEST(ResnetBlockGpu, FusedEpiloguesMatchCpu) {
  DDPM_REQUIRE_CUDA();
  MathModeScope restore;
  set_allow_tf32(false);
  const std::int64_t emb_dim = 64;
  std::uint64_t seed = 4000;
  for (const auto& c : kBlockCases) {
    SCOPED_TRACE(c.name);
    unet::BlockOptions opt;
    opt.norm_groups = 2;  // divides every channel count above
    opt.scale_shift = c.scale_shift;
    Generator gen(1);
    unet::ResnetBlock cpu_block(c.in, c.out, emb_dim, opt, c.resample, gen, Device::cpu());
    unet::ResnetBlock gpu_block(c.in, c.out, emb_dim, opt, c.resample, gen, Device::cuda());
    auto cpu_params = cpu_block.named_parameters(), gpu_params = gpu_block.named_parameters();
    ASSERT_EQ(cpu_params.size(), gpu_params.size());
    for (std::size_t i = 0; i < cpu_params.size(); ++i) {
      Tensor v = random_tensor(cpu_params[i].second.shape(), ++seed, DType::f32, 0.1);
      cpu_params[i].second.copy_from(v);
      gpu_params[i].second.copy_from(v);
    }
    Tensor x32 = random_tensor({c.n, c.h, c.w, c.in}, ++seed, DType::f32);
    Tensor e32 = random_tensor({c.n, emb_dim}, ++seed, DType::f32);
    Tensor xc = x32.clone().set_requires_grad(true), ec = e32.clone().set_requires_grad(true);
    Tensor xg = x32.to(Device::cuda()).set_requires_grad(true), eg = e32.to(Device::cuda()).set_requires_grad(true);
    nn::Context ctx;
    Tensor yc = cpu_block.forward(xc, ec, ctx), yg = gpu_block.forward(xg, eg, ctx);
    ASSERT_EQ(yc.shape(), yg.shape());
    Tensor gy = random_tensor(yc.shape(), ++seed, DType::f32);
    yc.backward(gy);
    yg.backward(gy.to(Device::cuda()));
    const double rel = 1e-3, nmse = 1e-8;
    EXPECT_TRUE(within_scale(yg.cpu(), yc, rel, nmse)) << "output";
    EXPECT_TRUE(within_scale(xg.grad().cpu(), xc.grad(), rel, nmse)) << "gradient of x";
    EXPECT_TRUE(within_scale(eg.grad().cpu(), ec.grad(), rel, nmse)) << "gradient of emb";
    for (std::size_t i = 0; i < cpu_params.size(); ++i) {
      const Tensor gc = cpu_params[i].second.grad(), gg = gpu_params[i].second.grad();
      ASSERT_TRUE(gc.defined() && gg.defined()) << cpu_params[i].first;
      EXPECT_TRUE(within_scale(gg.cpu(), gc, rel, nmse)) << "gradient of " << cpu_params[i].first;
    }
  }
}

}  // namespace
}  // namespace ddpm
