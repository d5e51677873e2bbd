// Analytic-DPM (models/diffusion/analytic_variance.h) on CUDA against the CPU reference: the
// Monte Carlo Gamma estimate and sampling with the analytic variance (DDPM respaced, DDIM with
// eta > 0). The same seed draws the same Philox numbers on both devices, so both runs see the
// same x_t and add the same noise; the network is built from engine ops (it runs on either
// device) and the only differences are f32 rounding.
#include <algorithm>
#include <cmath>
#include <memory>
#include <vector>

#include <gtest/gtest.h>

#include "engine/ops/elementwise.h"
#include "models/diffusion/analytic_variance.h"
#include "models/diffusion/sampler.h"
#include "support/gradcheck.h"

namespace ddpm::diffusion {
namespace {

// A smooth eps-"network": 0.5 tanh(x) + 0.1, so ||eps||^2 depends on x_t and Gamma on t.
Tensor toy_eps(const Tensor& x, const std::vector<double>&, const std::vector<std::int64_t>&) {
  return add_scalar(scale(tanh(x), 0.5), 0.1);
}

// Gamma at every timestep of a T = 100 linear schedule, estimated on the CPU from 16 images.
AnalyticGamma cpu_gamma(const DiffusionSchedule& s, const Tensor& x0) {
  Timesteps all;
  for (std::int64_t t = 0; t < s.num_timesteps(); ++t) all.push_back(t);
  Generator gen(21);
  AnalyticGamma g = estimate_gamma(s, GammaNetwork{toy_eps}, x0, {}, all, 8, gen);
  g.noise_schedule = "linear";
  return g;
}

TEST(AnalyticGpu, GammaEstimateMatchesCpu) {
  DDPM_REQUIRE_CUDA();
  const DiffusionSchedule s(linear_betas(100));
  const Tensor x0 = testing::random_tensor({16, 4, 4, 3}, 31, DType::f32, 0.5);
  const Timesteps ts{0, 7, 40, 99};
  Generator g_cpu(4), g_gpu(4);
  const AnalyticGamma a = estimate_gamma(s, GammaNetwork{toy_eps}, x0, {}, ts, 6, g_cpu);
  const AnalyticGamma b = estimate_gamma(s, GammaNetwork{toy_eps}, x0.to(Device::cuda()), {}, ts, 6, g_gpu);
  EXPECT_EQ(g_cpu.offset(), g_gpu.offset());  // the same eps draws, batch by batch
  ASSERT_EQ(a.gamma.size(), b.gamma.size());
  for (std::size_t i = 0; i < a.gamma.size(); ++i) {
    EXPECT_GT(a.gamma[i], 0.0);
    // A mean of 16 x 48 squares of size ~0.1: f32 sums agree to ~1e-6 relative.
    EXPECT_NEAR(b.gamma[i], a.gamma[i], 1e-5 * a.gamma[i]) << "timestep " << ts[i];
  }
}

TEST(AnalyticGpu, DdpmAndDdimSamplingWithTheAnalyticVarianceMatchCpu) {
  DDPM_REQUIRE_CUDA();
  const DiffusionSchedule s(linear_betas(100));
  const AnalyticGamma gamma = cpu_gamma(s, testing::random_tensor({16, 4, 4, 3}, 32, DType::f32, 0.5));
  SamplerConfig cfg;
  cfg.variance = VarianceType::analytic;
  cfg.analytic_gamma = std::make_shared<const AnalyticGamma>(gamma);
  cfg.analytic_gamma_file = "cpu-estimate";
  struct Case {
    SamplerConfig::Kind kind;
    const char* respacing;
    double eta;
  };
  for (const Case& c : {Case{SamplerConfig::Kind::ddpm, "", 0.0}, Case{SamplerConfig::Kind::ddpm, "10", 0.0},
                        Case{SamplerConfig::Kind::ddim, "ddim10", 0.5}}) {
    SCOPED_TRACE(std::string(sampler_kind_name(c.kind)) + " '" + c.respacing + "'");
    cfg.kind = c.kind;
    cfg.respacing = c.respacing;
    cfg.eta = c.eta;
    Generator g_cpu(8), g_gpu(8);
    const Tensor a = sample(s, toy_eps, {3, 8, 8, 3}, {}, cfg, g_cpu, Device::cpu());
    const Tensor b = sample(s, toy_eps, {3, 8, 8, 3}, {}, cfg, g_gpu, Device::cuda());
    EXPECT_EQ(g_cpu.offset(), g_gpu.offset());
    EXPECT_LT(testing::relative_gap(a.to_double_vector(), b.to(Device::cpu()).to_double_vector()), 1e-4);
  }
}

}  // namespace
}  // namespace ddpm::diffusion
