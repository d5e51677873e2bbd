// Prompt-to-Prompt on CUDA against the CPU reference (f32, TF32 off):
//   - the explicit attention probabilities and their product with v (models/unet/
//     attention_control.h) against the CPU's, and against the fused CUDA op;
//   - one controlled, guided network call of a tiny text run (word swap with c = s = 1 and a
//     re-weighted token: every transformer block's maps edited) on both devices, the same
//     weights copied by name, and a whole 4-step DDIM Prompt-to-Prompt sample.
// Tolerances as test_text_gpu.cpp: max |error| <= rel * max |CPU| and an NMSE bound; an edit
// applied on one device only, or to the wrong rows, gives errors of O(0.1) of the scale.
// (Written on a machine without a GPU: compiled in the CUDA build, skipped here.)
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "engine/autograd.h"
#include "engine/math_mode.h"
#include "engine/ops/attention.h"
#include "engine/ops/concat.h"
#include "engine/rng.h"
#include "models/diffusion/prompt_to_prompt.h"
#include "models/run/model_source.h"
#include "models/run/train_run.h"
#include "models/unet/attention_control.h"
#include "support/gradcheck.h"
#include "support/tiny_model.h"
#include "support/tiny_run.h"

namespace ddpm {
namespace {

using testing::within_scale;

constexpr double kRel = 1e-4, kNmse = 1e-9;

void copy_weights(const nn::Module& from, const nn::Module& to) {
  const auto src = from.named_parameters(), dst = to.named_parameters();
  ASSERT_EQ(src.size(), dst.size());
  for (std::size_t i = 0; i < src.size(); ++i) {
    ASSERT_EQ(src[i].first, dst[i].first);
    Tensor(dst[i].second).copy_from(src[i].second);
  }
}

TEST(PromptToPromptGpu, ExplicitProbabilitiesMatchCpuAndTheFusedOp) {
  DDPM_REQUIRE_CUDA();
  MathModeScope restore;
  set_allow_tf32(false);
  Generator g(3);
  const Tensor q = randn({2, 37, 16}, g), k = randn({2, 9, 16}, g), v = randn({2, 9, 16}, g);
  const Device cuda = Device::cuda();
  const Tensor p_cpu = unet::attention_probabilities(q, k, 4);
  const Tensor p_gpu = unet::attention_probabilities(q.to(cuda), k.to(cuda), 4);
  EXPECT_TRUE(within_scale(p_gpu.to(Device::cpu()), p_cpu, kRel, kNmse));
  const Tensor out_gpu = unet::apply_attention_probabilities(p_gpu, v.to(cuda), 4);
  EXPECT_TRUE(within_scale(out_gpu.to(Device::cpu()), unet::apply_attention_probabilities(p_cpu, v, 4), kRel, kNmse));
  EXPECT_TRUE(within_scale(out_gpu.to(Device::cpu()), attention(q.to(cuda), k.to(cuda), v.to(cuda), 4).to(Device::cpu()),
                           kRel, kNmse));
}

TEST(PromptToPromptGpu, ControlledGuidedStepAndSampleMatchCpu) {
  DDPM_REQUIRE_CUDA();
  MathModeScope restore;
  set_allow_tf32(false);
  run::TrainOptions o = testing::tiny_text_run(testing::temp_run("p2p_gpu"), Device::cpu());
  o.steps = 1;
  o.save_every = 1;
  o.diffusion_steps = 40;
  run::train_run(o);
  run::ModelSource cpu = run::open_model(o.out, Device::cpu());
  run::ModelSource gpu = run::open_model(o.out, Device::cuda());
  Generator pg(5);
  testing::perturb_weights(*cpu.text, pg);
  copy_weights(*cpu.text, *gpu.text);
  const std::vector<std::string> prompts = {"a light square", "a dark disc"};
  const diffusion::DenoiseFn net_cpu = cpu.text->denoiser(prompts, "", {});
  const diffusion::DenoiseFn net_gpu = gpu.text->denoiser(prompts, "", {});
  diffusion::PromptToPromptConfig pc;
  pc.cross_replace = 1;
  pc.self_replace = 1;
  pc.reweight_token = 2;
  pc.reweight_scale = 2.0;

  // One guided call's batch: [source 2; edit 2; unconditional 4], step 0 (every edit on).
  Generator g(7);
  const auto& cfg = cpu.net->config();
  const Shape shape = {2, cfg.image_size, cfg.image_size, cfg.in_channels};
  const Tensor x = randn(shape, g);
  const Tensor batch = concat({x, x, x, x}, 0);
  const std::vector<double> t(8, 30.0);
  const std::vector<std::int64_t> y = {0, 0, 1, 1, 2, 2, 2, 2};
  NoGradGuard no_grad;
  diffusion::PromptToPromptController c_cpu(pc, 2, 4), c_gpu(pc, 2, 4);
  Tensor out_cpu, out_gpu;
  {
    unet::ScopedAttentionController h(*cpu.net, c_cpu);
    out_cpu = net_cpu(batch, t, y);
  }
  {
    unet::ScopedAttentionController h(*gpu.net, c_gpu);
    out_gpu = net_gpu(batch.to(Device::cuda()), t, y);
  }
  EXPECT_TRUE(within_scale(out_gpu.to(Device::cpu()), out_cpu, kRel, kNmse));

  diffusion::SamplerConfig sc;
  sc.kind = diffusion::SamplerConfig::Kind::ddim;
  sc.respacing = "ddim4";
  sc.guidance_scale = 2.0;
  sc.num_classes = 2;
  const diffusion::DiffusionSchedule base(diffusion::linear_betas(40));
  Generator s_cpu(9), s_gpu(9);
  diffusion::PromptToPromptController d_cpu(pc, 2, 4), d_gpu(pc, 2, 4);
  const Tensor a = diffusion::prompt_to_prompt_sample(base, net_cpu, *cpu.net, shape, sc, &d_cpu, s_cpu);
  const Tensor b =
      diffusion::prompt_to_prompt_sample(base, net_gpu, *gpu.net, shape, sc, &d_gpu, s_gpu, Device::cuda());
  EXPECT_TRUE(within_scale(b.to(Device::cpu()), a, 1e-3, 1e-7));
}

}  // namespace
}  // namespace ddpm
