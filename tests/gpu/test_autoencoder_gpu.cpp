// The KL autoencoder (models/autoencoder/autoencoder.h) on CUDA against the same network on
// the CPU (f32, TF32 off): the moments, the decoded images and the loss terms, and after
// backward of the whole loss (l1 and l2 reconstruction + KL) the gradient of the input and
// of every parameter. Both devices get the same random parameters (the attention's zero
// output projection would otherwise hide its path) and the same reparameterisation noise.
// Differences are rounding: max |error| <= 1e-3 of the reference's largest value and
// NMSE <= 1e-8; a wrong op or a missing term gives O(0.1).
#include <cmath>

#include <gtest/gtest.h>

#include "engine/math_mode.h"
#include "engine/rng.h"
#include "models/autoencoder/autoencoder.h"
#include "support/gradcheck.h"

namespace ddpm {
namespace {

using testing::random_tensor;
using testing::within_scale;

TEST(AutoencoderGpu, LossAndGradientsMatchCpu) {
  DDPM_REQUIRE_CUDA();
  MathModeScope restore;
  set_allow_tf32(false);
  autoencoder::AutoencoderConfig c;
  c.in_channels = 3;
  c.base_channels = 16;
  c.channel_mult = {1, 2, 2};  // f = 4
  c.num_res_blocks = 1;
  c.z_channels = 4;
  c.norm_groups = 8;
  std::uint64_t seed = 7000;
  for (const auto rec : {autoencoder::ReconstructionLoss::l1, autoencoder::ReconstructionLoss::l2}) {
    SCOPED_TRACE(rec == autoencoder::ReconstructionLoss::l1 ? "l1" : "l2");
    Generator gen(1);
    autoencoder::Autoencoder cpu_ae(c, gen, Device::cpu());
    autoencoder::Autoencoder gpu_ae(c, gen, Device::cuda());
    auto cpu_params = cpu_ae.named_parameters(), gpu_params = gpu_ae.named_parameters();
    ASSERT_EQ(cpu_params.size(), gpu_params.size());
    for (std::size_t i = 0; i < cpu_params.size(); ++i) {
      const Tensor v = random_tensor(cpu_params[i].second.shape(), ++seed, DType::f32, 0.1);
      cpu_params[i].second.copy_from(v);
      gpu_params[i].second.copy_from(v);
    }
    const Tensor x32 = random_tensor({2, 16, 16, 3}, ++seed, DType::f32, 0.5);
    const Tensor eps = random_tensor({2, 4, 4, 4}, ++seed, DType::f32);
    Tensor xc = x32.clone().set_requires_grad(true);
    Tensor xg = x32.to(Device::cuda()).set_requires_grad(true);
    const auto lc = autoencoder::autoencoder_loss(cpu_ae, xc, eps, rec, 0.01);
    const auto lg = autoencoder::autoencoder_loss(gpu_ae, xg, eps.to(Device::cuda()), rec, 0.01);
    const double rel = 1e-3, nmse = 1e-8;
    EXPECT_TRUE(within_scale(gpu_ae.encode_moments(xg).cpu(), cpu_ae.encode_moments(xc), rel, nmse)) << "moments";
    EXPECT_TRUE(within_scale(lg.reconstruction_image.cpu(), lc.reconstruction_image, rel, nmse)) << "decoded";
    EXPECT_NEAR(lg.reconstruction.item(), lc.reconstruction.item(), 1e-4 * std::abs(lc.reconstruction.item()));
    EXPECT_NEAR(lg.kl.item(), lc.kl.item(), 1e-4 * std::abs(lc.kl.item()) + 1e-6);
    lc.total.backward();
    lg.total.backward();
    EXPECT_TRUE(within_scale(xg.grad().cpu(), xc.grad(), rel, nmse)) << "gradient of x";
    for (std::size_t i = 0; i < cpu_params.size(); ++i) {
      const Tensor gc = cpu_params[i].second.grad(), gg = gpu_params[i].second.grad();
      ASSERT_TRUE(gc.defined() && gg.defined()) << cpu_params[i].first;
      EXPECT_TRUE(within_scale(gg.cpu(), gc, rel, nmse)) << "gradient of " << cpu_params[i].first;
    }
  }
}

}  // namespace
}  // namespace ddpm
