// The samplers and likelihoods added after the first GPU runs, on CUDA against the CPU
// reference: DPM-Solver++(2M) and its SDE variant, UniPC, Euler, Heun and Euler ancestral on the Karras levels (VP adapter), the EDM training
// loss and its gradient, EDM sampling with churn, and the probability-flow ODE likelihood
// with Hutchinson probes. The same seed draws the same Philox numbers on both devices, so
// both runs follow the same path; the networks are built from engine ops (so they run on
// either device) and the only differences are f32 rounding.
#include <algorithm>
#include <cmath>
#include <vector>

#include <gtest/gtest.h>

#include "engine/ops/elementwise.h"
#include "models/diffusion/edm.h"
#include "models/diffusion/karras.h"
#include "models/diffusion/ode_likelihood.h"
#include "support/gradcheck.h"

namespace ddpm::diffusion {
namespace {

// A smooth "network" from engine ops: out = 0.5 tanh(x) + 0.1 (t enters only the EDM
// preconditioning and the VP adapter's scaling).
Tensor toy_output(const Tensor& x, const std::vector<double>&, const std::vector<std::int64_t>&) {
  return add_scalar(scale(tanh(x), 0.5), 0.1);
}

// max |a - b| / max |a|.
double relative_gap(const Tensor& cpu, const Tensor& cuda) {
  return testing::relative_gap(cpu.to_double_vector(), cuda.to(Device::cpu()).to_double_vector());
}

TEST(SamplersGpu, KarrasSolversOnTheVpAdapterMatchCpu) {
  DDPM_REQUIRE_CUDA();
  const DiffusionSchedule s(linear_betas(1000));
  SamplerConfig cfg;
  cfg.kind = SamplerConfig::Kind::heun;
  cfg.heun_steps = 10;
  for (KarrasSolver solver :
       {KarrasSolver::dpmpp_2m, KarrasSolver::euler, KarrasSolver::heun, KarrasSolver::euler_ancestral,
        KarrasSolver::unipc, KarrasSolver::dpmpp_2m_sde}) {
    SCOPED_TRACE(karras_solver_name(solver));
    Generator g_cpu(5), g_gpu(5);
    const Tensor a = karras_sample(s, toy_output, {4, 8, 8, 3}, {}, cfg, g_cpu, Device::cpu(), {}, solver);
    const Tensor b = karras_sample(s, toy_output, {4, 8, 8, 3}, {}, cfg, g_gpu, Device::cuda(), {}, solver);
    EXPECT_EQ(g_cpu.offset(), g_gpu.offset());
    EXPECT_LT(relative_gap(a, b), 1e-4);
  }
}

TEST(SamplersGpu, EdmLossAndGradientMatchCpu) {
  DDPM_REQUIRE_CUDA();
  const EdmConfig edm{0.5, -1.2, 1.2};
  const std::vector<double> sigma{0.002, 0.05, 0.6, 3.0, 80.0};
  const Tensor y = testing::random_tensor({5, 8, 8, 3}, 11, DType::f64, 0.5);
  const Tensor noise = testing::random_tensor({5, 8, 8, 3}, 12);
  testing::CudaCheck check{{1e-5, 1e-4}};
  check.needs_grad = {true, true};
  testing::check_against_cpu(
      [&](const auto& in) { return edm_training_loss(toy_output, edm, in[0], sigma, in[1], {}); }, {y, noise}, check);
}

TEST(SamplersGpu, EdmSamplingWithChurnMatchesCpu) {
  DDPM_REQUIRE_CUDA();
  const EdmConfig edm{0.5, -1.2, 1.2};
  SamplerConfig cfg;
  cfg.kind = SamplerConfig::Kind::heun;
  cfg.heun_steps = 8;
  cfg.s_churn = 20;
  cfg.s_tmin = 0.05;
  cfg.s_tmax = 50;
  cfg.s_noise = 1.003;
  Generator g_cpu(9), g_gpu(9);
  const Tensor a = edm_sample(toy_output, edm, {3, 8, 8, 1}, {}, cfg, g_cpu, Device::cpu());
  const Tensor b = edm_sample(toy_output, edm, {3, 8, 8, 1}, {}, cfg, g_gpu, Device::cuda());
  EXPECT_EQ(g_cpu.offset(), g_gpu.offset());  // the same churn draws
  EXPECT_LT(relative_gap(a, b), 1e-4);
  cfg.s_churn = 0;
  Generator h_cpu(9), h_gpu(9);
  const Tensor c = edm_sample(toy_output, edm, {3, 8, 8, 1}, {}, cfg, h_cpu, Device::cpu(), {}, KarrasSolver::dpmpp_2m);
  const Tensor d =
      edm_sample(toy_output, edm, {3, 8, 8, 1}, {}, cfg, h_gpu, Device::cuda(), {}, KarrasSolver::dpmpp_2m);
  EXPECT_LT(relative_gap(c, d), 1e-4);
}

TEST(SamplersGpu, OdeLikelihoodWithHutchinsonProbesMatchesCpu) {
  DDPM_REQUIRE_CUDA();
  const DiffusionSchedule s(linear_betas(1000));
  const std::vector<double> train = vp_sigmas(s);
  SamplerConfig sc;
  OdeLikelihoodConfig c;
  c.steps = 8;
  c.sigma_min = train.front();
  c.sigma_max = train.back();
  c.data_std = 0.5;
  const Tensor x = testing::random_tensor({3, 8, 8, 3}, 13, DType::f32, 0.5);
  Generator g_cpu(3), g_gpu(3);
  const OdeLikelihood a = ode_log_likelihood(vp_sigma_denoiser(train, toy_output, sc, {}), x, c, g_cpu);
  const OdeLikelihood b = ode_log_likelihood(vp_sigma_denoiser(train, toy_output, sc, {}), x.to(Device::cuda()), c, g_gpu);
  ASSERT_EQ(a.log_likelihood.size(), b.log_likelihood.size());
  for (std::size_t i = 0; i < a.log_likelihood.size(); ++i) {
    // log p sums about 200 elements' terms of size ~1 over 8 levels: f32 rounding ~1e-4 relative.
    EXPECT_NEAR(b.log_likelihood[i], a.log_likelihood[i], 1e-3 * std::max(1.0, std::abs(a.log_likelihood[i])))
        << "sample " << i;
    EXPECT_NEAR(b.divergence_integral[i], a.divergence_integral[i],
                1e-3 * std::max(1.0, std::abs(a.divergence_integral[i])));
  }
  EXPECT_EQ(a.evaluations, b.evaluations);
}

}  // namespace
}  // namespace ddpm::diffusion
