// PLMS (models/diffusion/plms.h): the Adams-Bashforth coefficients, and on Gaussian data, where
// the probability-flow ODE has a closed form (tests/support/gaussian_oracle.h), a far smaller
// error than DDIM at the same number of network calls, shrinking faster than first order.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <vector>

#include <gtest/gtest.h>

#include "engine/error.h"
#include "models/diffusion/plms.h"
#include "models/diffusion/sampler.h"
#include "models/run/sample_run.h"
#include "support/gaussian_oracle.h"
#include "support/temp_dir.h"
#include "support/tiny_model.h"
#include "support/value_error.h"

namespace ddpm::diffusion {
namespace {

constexpr double kMu = 0.3, kStd = 0.2;

TEST(Plms, AdamsBashforthCoefficientsIntegratePolynomialsExactly) {
  // AB of order k integrates a polynomial slope of degree k - 1 exactly: for e(s) on the
  // history points s = 0, -1, -2, -3 (newest first) the combination equals the mean of e
  // over the step s in [0, 1].
  for (int order = 1; order <= 4; ++order)
    for (int degree = 0; degree < order; ++degree) {
      std::vector<Tensor> h;
      for (int j = 0; j < order; ++j)
        h.push_back(Tensor::from_vector({std::pow(-static_cast<double>(j), degree)}, {1}, DType::f64));
      const double got = adams_bashforth_eps(h).to_double_vector()[0];
      EXPECT_NEAR(got, 1.0 / (degree + 1), 1e-12) << "order " << order << ", degree " << degree;
    }
  EXPECT_THROW(adams_bashforth_eps({}), ValueError);
}

// RMS error of each sample against the exact ODE end point from its own x_T.
double rms_error(const DiffusionSchedule& s, const std::vector<double>& x_T, const std::vector<double>& got) {
  const double sigma_T = testing::vp_sigma(s, s.num_timesteps() - 1);
  const double sqrt_abar_T = std::sqrt(s.alphas_cumprod.back());
  double sq = 0;
  for (std::size_t j = 0; j < got.size(); ++j) {
    const double exact = kMu + (x_T[j] / sqrt_abar_T - kMu) * kStd / std::sqrt(kStd * kStd + sigma_T * sigma_T);
    sq += (got[j] - exact) * (got[j] - exact);
  }
  return std::sqrt(sq / static_cast<double>(got.size()));
}

TEST(Plms, BeatsDdimAtEqualCallsAndConvergesFasterThanFirstOrder) {
  const DiffusionSchedule s(linear_betas(1000));
  const Shape shape{256, 1};
  Generator g0(5);
  const std::vector<double> x_T = randn(shape, g0, Device::cpu(), DType::f64).to_double_vector();
  std::vector<double> plms_err, ddim_err;
  for (int n : {10, 20, 40}) {
    SamplerConfig c;
    c.kind = SamplerConfig::Kind::ddim;
    c.respacing = "ddim" + std::to_string(n);
    c.clip_x0 = false;
    c.dtype = DType::f64;
    int calls = 0;
    Generator g1(5), g2(5);
    plms_err.push_back(rms_error(
        s, x_T, plms_sample(s, testing::gaussian_eps_oracle(s, kMu, kStd, &calls), shape, {}, c, g1).to_double_vector()));
    EXPECT_EQ(calls, n) << "one network call per step";
    ddim_err.push_back(
        rms_error(s, x_T, sample(s, testing::gaussian_eps_oracle(s, kMu, kStd), shape, {}, c, g2).to_double_vector()));
  }
  std::printf("RMS error vs the exact ODE end point: plms 10/20/40 steps %.3g %.3g %.3g; ddim %.3g %.3g %.3g\n",
              plms_err[0], plms_err[1], plms_err[2], ddim_err[0], ddim_err[1], ddim_err[2]);
  // Measured: plms 0.0605, 0.0161, 0.0029; ddim 0.105, 0.0611, 0.0328. The multistep error
  // falls ~4-5x per doubling (its warm-up steps are low order), DDIM's ~1.8x.
  for (std::size_t k = 0; k < 3; ++k) EXPECT_LT(plms_err[k], ddim_err[k]) << k;
  EXPECT_LT(plms_err[2], ddim_err[2] / 8);
  for (std::size_t k = 0; k < 2; ++k) {
    EXPECT_GT(plms_err[k] / plms_err[k + 1], 3.0) << "faster than first order (2x per doubling)";
    EXPECT_LT(ddim_err[k] / ddim_err[k + 1], 2.2) << "DDIM is first order";
  }
}

TEST(Plms, RefusesAnythingButDeterministicDdim) {
  const DiffusionSchedule s(linear_betas(100));
  Generator g(0);
  SamplerConfig c;
  c.kind = SamplerConfig::Kind::ddpm;
  EXPECT_THROW(plms_sample(s, testing::gaussian_eps_oracle(s, 0, 1), {2, 1}, {}, c, g), ValueError);
  c.kind = SamplerConfig::Kind::ddim;
  c.eta = 0.5;
  EXPECT_THROW(plms_sample(s, testing::gaussian_eps_oracle(s, 0, 1), {2, 1}, {}, c, g), ValueError);
}

// ddpm-sample --sampler plms: its own samples (not DDIM's), the same for a seed, recorded in
// sample_info.json; DDIM's stride rule for --sampling-steps; eta and classifier guidance refused.
TEST(Plms, SampleRunSamplerFlag) {
  run::ModelSource m = testing::tiny_model_source(0);
  auto options = [](const std::string& name, const std::string& sampler) {
    run::SampleOptions o;
    o.checkpoint = "tiny";
    o.num_samples = 2;
    o.batch_size = 2;
    o.sampler = sampler;
    o.sampling_steps = 8;  // the tiny model has T = 40: ddim8, stride 5
    o.seed = 4;
    o.out = testing::temp_path("plms_" + name);
    return o;
  };
  const run::SampleResult a = run::run_sample(options("a", "plms"), m);
  const run::SampleResult b = run::run_sample(options("b", "plms"), m);
  const run::SampleResult ddim = run::run_sample(options("ddim", "ddim"), m);
  EXPECT_EQ(a.pixels, b.pixels);
  EXPECT_NE(a.pixels, ddim.pixels);
  auto message = [&](const run::SampleOptions& o) {
    return testing::value_error_message([&] { run::run_sample(o, m); });
  };
  run::SampleOptions bad = options("bad", "plms");
  bad.sampling_steps = 7;
  EXPECT_NE(message(bad).find("--sampling-steps 7"), std::string::npos) << message(bad);
  bad = options("bad", "plms");
  bad.eta = 0.5;
  EXPECT_NE(message(bad).find("--eta"), std::string::npos) << message(bad);
  bad = options("bad", "plms");
  bad.classifier = "some-classifier";
  EXPECT_NE(message(bad).find("not implemented for --sampler plms"), std::string::npos) << message(bad);
}

}  // namespace
}  // namespace ddpm::diffusion
