// The VDM objective (models/diffusion/vdm.h) and LoRA adapters (models/nn/lora.h) on CUDA
// against the CPU reference. Both are compositions of engine ops plus host-side math, so
// these tests check that the composition runs on the device and that its gradients reach the
// same places:
//   - vdm_diffusion_loss with a learned schedule: the per-sample nats, the gradient of the
//     network's input (the path through z_t) and of every schedule weight (the custom node
//     that scales by 2 L_i, the variance-minimising gradient);
//   - learned endpoints: the prior + reconstruction op and the endpoints' plain gradient;
//   - a UNet with Fourier features of its input (host-computed, copied to the device): the
//     output and the gradient of the input;
//   - a UNet with self- and cross-attention, its base frozen (requires_grad false) and LoRA
//     adapters on every attention projection: the output and every adapter's gradient, with
//     no gradient formed for the frozen base on either device.
// The same Philox seeds draw the same weights and noise on both devices. (Written on a
// machine without a GPU: compiled in the CUDA build, skipped here.)
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "engine/autograd.h"
#include "engine/math_mode.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/reduce.h"
#include "models/diffusion/vdm.h"
#include "models/nn/lora.h"
#include "models/unet/unet.h"
#include "support/gradcheck.h"
#include "support/tiny_unet.h"

namespace ddpm {
namespace {

using testing::within_scale;

// Gradients are sums over the batch and (for the UNet) over pixels and tokens in f32.
constexpr double kRel = 1e-3, kNmse = 1e-7;

TEST(VdmGpu, DiffusionLossAndScheduleGradientsMatchCpu) {
  DDPM_REQUIRE_CUDA();
  for (std::int64_t steps : {std::int64_t{0}, std::int64_t{10}}) {
    SCOPED_TRACE("T = " + std::to_string(steps));
    diffusion::VdmConfig c;
    c.schedule = diffusion::VdmScheduleKind::learned;
    c.steps = steps;
    c.features = 16;
    Generator g_cpu(3), g_gpu(3);
    const diffusion::VdmSchedule s_cpu(c, g_cpu, Device::cpu()), s_gpu(c, g_gpu, Device::cuda());
    const Tensor x = testing::random_tensor({4, 4, 4, 2}, 60, DType::f32, 0.5);
    const Tensor eps = testing::random_tensor({4, 4, 4, 2}, 61, DType::f32);
    const std::vector<double> t = {0.1, 0.35, 0.6, 0.95};
    // A smooth "network" of z from engine ops, so the loss depends on z_t and on the schedule.
    const diffusion::DenoiseFn net = [](const Tensor& z, const std::vector<double>&,
                                        const std::vector<std::int64_t>&) { return tanh(scale(z, 0.7)); };
    const Tensor x_gpu = x.to(Device::cuda()).detach();
    const diffusion::VdmDiffusionLoss a = diffusion::vdm_diffusion_loss(net, s_cpu, x, t, eps, {});
    const diffusion::VdmDiffusionLoss b =
        diffusion::vdm_diffusion_loss(net, s_gpu, x_gpu, t, eps.to(Device::cuda()), {});
    EXPECT_TRUE(within_scale(b.nats.to(Device::cpu()), a.nats, 1e-4, 1e-9));
    ASSERT_EQ(a.gamma.size(), b.gamma.size());
    for (std::size_t i = 0; i < a.gamma.size(); ++i) EXPECT_NEAR(b.gamma[i], a.gamma[i], 1e-5 * std::abs(a.gamma[i]));
    sum(a.nats).backward();
    sum(b.nats).backward();
    const std::vector<Tensor> wa = s_cpu.weights(), wb = s_gpu.weights();
    ASSERT_EQ(wa.size(), wb.size());
    for (std::size_t k = 0; k < wa.size(); ++k) {
      SCOPED_TRACE("schedule weight " + std::to_string(k));
      ASSERT_TRUE(wa[k].grad().defined() && wb[k].grad().defined());
      EXPECT_TRUE(within_scale(wb[k].grad().to(Device::cpu()), wa[k].grad(), kRel, kNmse));
    }
  }
}

TEST(VdmGpu, LearnedEndpointGradientsMatchCpu) {
  DDPM_REQUIRE_CUDA();
  diffusion::VdmConfig c;
  c.schedule = diffusion::VdmScheduleKind::learned;
  c.features = 16;
  c.gamma_min = -6.0;
  c.learn_endpoints = true;
  Generator g_cpu(4), g_gpu(4);
  const diffusion::VdmSchedule s_cpu(c, g_cpu, Device::cpu()), s_gpu(c, g_gpu, Device::cuda());
  const Tensor x = testing::random_tensor({4, 4, 4, 2}, 62, DType::f32, 0.5);
  const Tensor eps = testing::random_tensor({4, 4, 4, 2}, 63, DType::f32);
  const Tensor eps0 = testing::random_tensor({4, 4, 4, 2}, 64, DType::f32);
  const std::vector<double> t = {0.1, 0.35, 0.6, 0.95};
  const diffusion::DenoiseFn net = [](const Tensor& z, const std::vector<double>&,
                                      const std::vector<std::int64_t>&) { return tanh(scale(z, 0.7)); };
  const Tensor la = add(diffusion::vdm_diffusion_loss(net, s_cpu, x, t, eps, {}).nats,
                        diffusion::vdm_prior_reconstruction_nats(s_cpu, x, eps0));
  const Tensor x_gpu = x.to(Device::cuda()).detach();
  const Tensor lb = add(diffusion::vdm_diffusion_loss(net, s_gpu, x_gpu, t, eps.to(Device::cuda()), {}).nats,
                        diffusion::vdm_prior_reconstruction_nats(s_gpu, x_gpu, eps0.to(Device::cuda())));
  EXPECT_TRUE(within_scale(lb.to(Device::cpu()), la, 1e-4, 1e-9));
  sum(la).backward();
  sum(lb).backward();
  const std::vector<Tensor> ea = s_cpu.endpoints(), eb = s_gpu.endpoints();
  ASSERT_EQ(ea.size(), 2u);
  for (std::size_t k = 0; k < 2; ++k) {
    SCOPED_TRACE("endpoint " + std::to_string(k));
    ASSERT_TRUE(ea[k].grad().defined() && eb[k].grad().defined());
    EXPECT_TRUE(within_scale(eb[k].grad().to(Device::cpu()), ea[k].grad(), kRel, kNmse));
  }
}

// A tiny UNet with self-attention at 4x4 and spatial transformers over a 6-wide context.
unet::UNetConfig attention_config() {
  unet::UNetConfig c = testing::tiny_unet_config(8, 1);
  c.attention_resolutions = {4};
  c.num_heads = 2;
  c.context_dim = 6;
  return c;
}

// N(0, s^2) values for every parameter of m whose name contains `part` (all when empty),
// drawn on the CPU and copied to the module's device: the same values on both devices.
void fill(const nn::Module& m, const std::string& part, std::uint64_t seed, double s) {
  std::uint64_t k = seed;
  for (const auto& [name, p] : m.named_parameters()) {
    if (!part.empty() && name.find(part) == std::string::npos) continue;
    Tensor dst = p;
    dst.copy_from(testing::random_tensor(p.shape(), k++, DType::f32, s).to(p.device()));
  }
}

TEST(VdmGpu, FourierFeatureUNetMatchesCpu) {
  DDPM_REQUIRE_CUDA();
  MathModeScope restore;
  set_allow_tf32(false);
  unet::UNetConfig c = testing::tiny_unet_config(8, 2);
  c.fourier_features = {6, 7};
  Generator g_cpu(7), g_gpu(7);
  unet::UNet cpu(c, g_cpu, Device::cpu()), gpu(c, g_gpu, Device::cuda());
  fill(cpu, "", 90, 0.1);  // conv_out nonzero, so the output and the input's gradient are not zero
  fill(gpu, "", 90, 0.1);
  const Tensor x = testing::param(testing::random_tensor({2, 8, 8, 2}, 82, DType::f32, 0.5));
  const Tensor x_gpu = testing::param(x.to(Device::cuda()).detach());
  const Tensor ya = cpu.forward(x, {3, 40}, {}, nn::Context{});
  const Tensor yb = gpu.forward(x_gpu, {3, 40}, {}, nn::Context{});
  EXPECT_TRUE(within_scale(yb.to(Device::cpu()), ya, 1e-4, 1e-9));
  // The input's gradient crosses the features' host-side backward on both devices.
  sum(square(ya)).backward();
  sum(square(yb)).backward();
  ASSERT_TRUE(x.grad().defined() && x_gpu.grad().defined());
  EXPECT_TRUE(within_scale(x_gpu.grad().to(Device::cpu()), x.grad(), kRel, kNmse));
}

TEST(LoraGpu, AdaptedUNetOutputAndAdapterGradientsMatchCpu) {
  DDPM_REQUIRE_CUDA();
  MathModeScope restore;
  set_allow_tf32(false);
  Generator g_cpu(5), g_gpu(5);
  unet::UNet cpu(attention_config(), g_cpu, Device::cpu()), gpu(attention_config(), g_gpu, Device::cuda());
  fill(cpu, "", 50, 0.1);  // a "trained" base: no zero-initialised output projection hides a block
  fill(gpu, "", 50, 0.1);
  for (unet::UNet* net : {&cpu, &gpu})
    for (auto& [name, p] : net->named_parameters()) p.set_requires_grad(false);  // the frozen base
  Generator l_cpu(6), l_gpu(6);
  const nn::LoraSet a(cpu, 2, 4.0, l_cpu), b(gpu, 2, 4.0, l_gpu);
  fill(a, "lora_B", 70, 0.1);  // adapters that have trained a little (B = 0 would add nothing)
  fill(b, "lora_B", 70, 0.1);
  const Tensor x = testing::random_tensor({2, 8, 8, 1}, 80, DType::f32);
  const Tensor context = testing::random_tensor({2, 3, 6}, 81, DType::f32);
  const std::vector<double> t = {3, 40};
  const Tensor ya = cpu.forward(x, t, {}, context, nn::Context{});
  const Tensor yb = gpu.forward(x.to(Device::cuda()), t, {}, context.to(Device::cuda()), nn::Context{});
  EXPECT_TRUE(within_scale(yb.to(Device::cpu()), ya, 1e-4, 1e-9));
  sum(square(ya)).backward();
  sum(square(yb)).backward();
  std::map<std::string, Tensor> grads_gpu;
  for (const auto& [name, p] : b.named_parameters()) grads_gpu[name] = p.grad();
  int checked = 0;
  for (const auto& [name, p] : a.named_parameters()) {
    SCOPED_TRACE(name);
    ASSERT_TRUE(p.grad().defined() && grads_gpu[name].defined());
    EXPECT_TRUE(within_scale(grads_gpu[name].to(Device::cpu()), p.grad(), kRel, kNmse));
    ++checked;
  }
  EXPECT_EQ(checked, static_cast<int>(a.named_parameters().size()));
  for (const unet::UNet* net : {&cpu, &gpu})
    for (const auto& [name, p] : net->named_parameters()) EXPECT_FALSE(p.grad().defined()) << name;
}

}  // namespace
}  // namespace ddpm
