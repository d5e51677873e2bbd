// ControlNet (models/unet/controlnet.h) on CUDA against the same networks on the CPU (f32,
// TF32 off): a "trained" base UNet and a ControlNet whose every weight, the zero convs
// included, is perturbed (zero convs would make the residuals exactly 0 and hide the paths
// that add them to the base's skips and middle block). The CUDA networks get the CPU
// networks' weights through the state-dict round trip the checkpoints use. Checked: the
// controlled output, and the gradient of a weighted sum of it with respect to every
// ControlNet parameter (the base is frozen: it must get none on either device).
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "engine/autograd.h"
#include "engine/math_mode.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/reduce.h"
#include "models/unet/controlnet.h"
#include "models/unet/model_io.h"
#include "support/gradcheck.h"
#include "support/tiny_unet.h"

namespace ddpm::unet {
namespace {

using testing::within_scale;

// Every parameter += 0.1 N(0, 1) from gen (on the CPU networks), so no weight is zero.
void perturb(nn::Module& net, Generator& gen) {
  for (const auto& [name, t] : net.named_parameters()) {
    const std::vector<float> noise = randn(t.shape(), gen).to_vector();
    float* p = t.data<float>();
    for (std::int64_t i = 0; i < t.numel(); ++i) p[i] += 0.1f * noise[static_cast<std::size_t>(i)];
  }
}

void freeze(const nn::Module& net) {
  for (const auto& [name, t] : net.named_parameters()) Tensor(t).set_requires_grad(false);
}

TEST(ControlNetGpu, ControlledForwardAndGradientsMatchCpu) {
  DDPM_REQUIRE_CUDA();
  MathModeScope restore;
  set_allow_tf32(false);
  UNetConfig bc = testing::tiny_unet_config(16, 1);
  bc.model_channels = 32;
  bc.norm_groups = 8;
  bc.num_classes = 3;
  bc.attention_resolutions = {8};
  ControlNetConfig cc;
  cc.base = bc;
  cc.conditioning_channels = 1;

  Generator g_base(7), g_cn(11), g_noise(13);
  UNet base_cpu(bc, g_base, Device::cpu());
  perturb(base_cpu, g_noise);
  ControlNet cn_cpu(cc, g_cn, Device::cpu());
  cn_cpu.copy_encoder_from(base_cpu);
  perturb(cn_cpu, g_noise);
  freeze(base_cpu);

  Generator g0(0);
  UNet base_gpu(bc, g0, Device::cuda());
  ControlNet cn_gpu(cc, g0, Device::cuda());
  load_state_dict(base_gpu, export_state_dict(base_cpu), "base (CPU weights)");
  load_state_dict(cn_gpu, export_state_dict(cn_cpu), "ControlNet (CPU weights)");
  freeze(base_gpu);

  const Tensor x = testing::random_tensor({3, 16, 16, 1}, 1, DType::f32);
  const Tensor hint = testing::random_tensor({3, 16, 16, 1}, 2, DType::f32);
  const Tensor w = testing::random_tensor({3, 16, 16, 1}, 3, DType::f32);
  const std::vector<double> t = {0, 17.5, 99};
  const std::vector<std::int64_t> y = {0, 2, 3};  // 3 is the null label
  const double scale = 0.8;

  const Tensor out_cpu = controlled_forward(base_cpu, cn_cpu, x, t, y, hint, nn::Context{}, scale);
  const Tensor out_gpu = controlled_forward(base_gpu, cn_gpu, x.to(Device::cuda()), t, y, hint.to(Device::cuda()),
                                            nn::Context{}, scale);
  EXPECT_TRUE(within_scale(out_gpu.to(Device::cpu()), out_cpu, 1e-4, 1e-9));

  sum(mul(out_cpu, w)).backward();
  sum(mul(out_gpu, w.to(Device::cuda()))).backward();
  std::map<std::string, Tensor> grads_gpu;
  for (const auto& [name, p] : cn_gpu.named_parameters()) grads_gpu[name] = p.grad();
  int checked = 0;
  for (const auto& [name, p] : cn_cpu.named_parameters()) {
    SCOPED_TRACE(name);
    ASSERT_TRUE(p.grad().defined());
    ASSERT_TRUE(grads_gpu[name].defined());
    EXPECT_TRUE(within_scale(grads_gpu[name].to(Device::cpu()), p.grad(), 1e-3, 1e-7));
    ++checked;
  }
  EXPECT_GT(checked, 20);
  for (const auto& [name, p] : base_gpu.named_parameters()) EXPECT_FALSE(p.grad().defined()) << name;
}

}  // namespace
}  // namespace ddpm::unet
