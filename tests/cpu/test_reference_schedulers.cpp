// The project's diffusion schedule against Hugging Face diffusers' DDPMScheduler and
// DDIMScheduler, from the fixtures tests/data/reference/schedulers/{linear,cosine}.json that
// scripts/make_reference.py writes (docs/REFERENCE.md). No Python is needed here.
//
// The fixtures hold diffusers' formulas evaluated in float64 (the script swaps diffusers'
// float32 tables for float64 ones built by the same formulas), so the agreement is checked at
// float64 precision: 1e-12 relative, plus an absolute term where a formula cancels (x_0 from
// eps divides by sqrt(alpha_bar_t), which is ~1e-5 at the end of the cosine schedule, so
// its absolute error is ~1e-16 / sqrt(alpha_bar_t)). diffusers' own float32 tables are
// checked at float32 precision.
//
// Conventions that differ and are tested as such:
//   - posterior variance at t = 0: diffusers clamps it to 1e-20 (for its log), ours is 0;
//   - DDIM: diffusers' default step keeps the model's eps in the direction term; ours (as
//     improved-diffusion) recomputes eps from the clipped x_0 (diffusers'
//     use_clipped_model_output=True); both are compared;
//   - DDIM spacing: ddimN here is diffusers' "trailing" spacing; diffusers' default
//     "leading" never visits T-1 (checked, and its step is still matched by our formulas).
#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "engine/ops/elementwise.h"
#include "models/diffusion/respace.h"
#include "models/diffusion/schedule.h"
#include "support/test_data.h"

namespace ddpm::diffusion {
namespace {

using nlohmann::json;
using Values = std::vector<double>;
constexpr std::int64_t kT = 1000;
constexpr double kRtol = 1e-12;

// The fixture of one schedule, parsed once per test binary.
const json& fixture(const std::string& schedule) {
  static std::map<std::string, json> cache;
  auto it = cache.find(schedule);
  if (it != cache.end()) return it->second;
  const std::string path = ddpm::test::data_dir() + "/reference/schedulers/" + schedule + ".json";
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open the reference fixture " + path + " (see docs/REFERENCE.md)");
  return cache.emplace(schedule, json::parse(in)).first->second;
}

Values values(const json& j) { return j.get<Values>(); }

// Asserts |actual - expected| <= rtol |expected| + atol element by element; on failure
// reports the worst element once.
void expect_close(const Values& actual, const Values& expected, double rtol, double atol, const std::string& what) {
  ASSERT_EQ(actual.size(), expected.size()) << what;
  double worst_excess = 0.0;
  std::size_t worst = 0;
  for (std::size_t i = 0; i < actual.size(); ++i) {
    double excess = std::abs(actual[i] - expected[i]) - (rtol * std::abs(expected[i]) + atol);
    if (excess > worst_excess) worst_excess = excess, worst = i;
  }
  EXPECT_EQ(worst_excess, 0.0) << what << ": element " << worst << " is " << actual[worst] << ", diffusers has "
                               << expected[worst] << " (rtol " << rtol << ", atol " << atol << ")";
}

// A step's flattened NCHW array as an f64 CPU tensor of the step's shape. Every formula
// compared here is elementwise with a per-sample coefficient, so NCHW vs NHWC is immaterial.
Tensor step_tensor(const json& step, const char* key) {
  Shape shape = step.at("shape").get<Shape>();
  return Tensor::from_vector(values(step.at(key)), shape, DType::f64);
}

Timesteps batch_of(const json& step, std::int64_t t) { return Timesteps(static_cast<std::size_t>(step.at("shape")[0].get<std::int64_t>()), t); }

class ReferenceSchedule : public ::testing::TestWithParam<std::string> {
 protected:
  const json& doc() const { return fixture(GetParam()); }
  DiffusionSchedule schedule() const { return DiffusionSchedule(betas_for(parse_noise_schedule(GetParam()), kT)); }
};

TEST_P(ReferenceSchedule, BetasAndAlphaBarMatchDiffusersInFloat64) {
  const json& ddpm = doc().at("ddpm");
  ASSERT_EQ(ddpm.at("config").at("num_train_timesteps").get<std::int64_t>(), kT);
  DiffusionSchedule s = schedule();
  // diffusers' linear schedule at T = 1000 is 1e-4 .. 0.02, our 1000/T scaling is then 1;
  // its squaredcos_cap_v2 is the same alpha_bar(t) on the same grid t = i/T, i = 0..T.
  expect_close(s.betas, values(ddpm.at("betas")), kRtol, 0.0, "betas");
  expect_close(s.alphas_cumprod, values(ddpm.at("alphas_cumprod")), kRtol, 0.0, "alphas_cumprod");
}

TEST_P(ReferenceSchedule, DiffusersFloat32TablesAgreeToFloat32Precision) {
  const json& ddpm = doc().at("ddpm");
  DiffusionSchedule s = schedule();
  // diffusers keeps betas in float32: the cosine ones are rounded from float64, the linear
  // ones come from a float32 linspace (measured 1.07e-7 relative, under one float32 ulp =
  // 2^-23); alpha_bar is multiplied up in float32, whose error grows along the 1000-term
  // product (measured 1.3e-5 relative).
  expect_close(s.betas, values(ddpm.at("betas_float32")), 2.4e-7, 0.0, "float32 betas");
  expect_close(s.alphas_cumprod, values(ddpm.at("alphas_cumprod_float32")), 5e-5, 0.0, "float32 alphas_cumprod");
}

TEST_P(ReferenceSchedule, PosteriorVarianceMatchesExceptTheClampAtZero) {
  DiffusionSchedule s = schedule();
  Values expected = values(doc().at("ddpm").at("posterior_variance"));
  ASSERT_EQ(expected.size(), static_cast<std::size_t>(kT));
  // diffusers clamps beta~_0 = 0 to 1e-20 before taking logs; ours is exactly 0 and the
  // log is clipped by substituting beta~_1 instead.
  EXPECT_EQ(s.posterior_variance[0], 0.0);
  EXPECT_EQ(expected[0], 1e-20);
  // diffusers recomputes beta_t as 1 - alpha_bar_t / alpha_bar_{t-1}: a cancellation worth
  // ~1e-16 / beta_t relative (beta_0 = 1e-4 for linear), hence 1e-11 here.
  expect_close(Values(s.posterior_variance.begin() + 1, s.posterior_variance.end()),
               Values(expected.begin() + 1, expected.end()), 1e-11, 0.0, "posterior_variance[1:]");
}

TEST_P(ReferenceSchedule, DdpmStepMatchesPosteriorMeanAndVariance) {
  DiffusionSchedule s = schedule();
  for (const json& step : doc().at("ddpm").at("steps")) {
    const std::int64_t t = step.at("t").get<std::int64_t>();
    SCOPED_TRACE("DDPM step at t = " + std::to_string(t));
    Timesteps ts = batch_of(step, t);
    Tensor xt = step_tensor(step, "sample"), eps = step_tensor(step, "model_output");
    // x_0 from eps divides by sqrt(alpha_bar_t): absolute error ~1e-16 sqrt(1/alpha_bar_t) |x_t|.
    const double atol_x0 = 1e-13 * s.sqrt_recip_alphas_cumprod[static_cast<std::size_t>(t)];

    Tensor x0 = predict_x0_from_eps(s, xt, ts, eps);
    expect_close(x0.to_double_vector(), values(step.at("pred_original_sample_unclipped")), kRtol, atol_x0,
                 "pred_original_sample (clip_sample=False)");
    Tensor x0_clipped = clamp(x0, -1.0, 1.0);
    expect_close(x0_clipped.to_double_vector(), values(step.at("pred_original_sample")), kRtol, atol_x0,
                 "pred_original_sample (clipped)");

    // mu~_t(x_0, x_t) and the sample mean + sqrt(beta~_t) z with diffusers' own z.
    Gaussian post = q_posterior_mean_variance(s, x0_clipped, xt, ts);
    Values mean = post.mean.to_double_vector();
    expect_close(mean, values(step.at("prev_sample_mean")), kRtol, 1e-13, "posterior mean");
    Gaussian p = p_mean_variance(s, VarianceType::fixed_small, eps, Tensor(), xt, ts, /*clip_x0=*/true);
    expect_close(p.mean.to_double_vector(), values(step.at("prev_sample_mean")), kRtol, 1e-13,
                 "p_mean_variance mean (fixed_small, clipped x0)");

    Values z = values(step.at("noise")), sample(mean.size());
    const double sigma = t > 0 ? std::sqrt(s.posterior_variance[static_cast<std::size_t>(t)]) : 0.0;
    for (std::size_t i = 0; i < mean.size(); ++i) sample[i] = mean[i] + sigma * z[i];
    expect_close(sample, values(step.at("prev_sample")), kRtol, 1e-13, "prev_sample (no noise at t = 0)");

    if (step.contains("learned_range_log_variance")) {
      Gaussian learned = learned_range_variance(s, ts, step_tensor(step, "var_values"));
      expect_close(learned.log_variance.to_double_vector(), values(step.at("learned_range_log_variance")), kRtol,
                   1e-13, "learned_range log variance");
    }
  }
}

// One DDIM step (Song et al. eq. 12) computed here from alpha_bar_t and alpha_bar_prev:
//   x_0 = clip((x_t - sqrt(1 - abar) eps) / sqrt(abar)),
//   x_prev = sqrt(abar_prev) x_0 + sqrt(1 - abar_prev - sigma^2) eps_dir + sigma z,
//   sigma = eta sqrt((1 - abar_prev) / (1 - abar)) sqrt(1 - abar / abar_prev),
// with eps_dir the model's eps, or eps recomputed from the clipped x_0.
struct DdimStep {
  Values x0, x_prev;
};
DdimStep ddim_step(double abar, double abar_prev, const Values& xt, const Values& eps, const Values& z, double eta,
                   bool recompute_eps) {
  DdimStep r{Values(xt.size()), Values(xt.size())};
  const double sigma = eta * std::sqrt((1 - abar_prev) / (1 - abar)) * std::sqrt(1 - abar / abar_prev);
  for (std::size_t i = 0; i < xt.size(); ++i) {
    double x0 = std::clamp((xt[i] - std::sqrt(1 - abar) * eps[i]) / std::sqrt(abar), -1.0, 1.0);
    double e = recompute_eps ? (xt[i] - std::sqrt(abar) * x0) / std::sqrt(1 - abar) : eps[i];
    r.x0[i] = x0;
    r.x_prev[i] = std::sqrt(abar_prev) * x0 + std::sqrt(1 - abar_prev - sigma * sigma) * e + (eta > 0 ? sigma * z[i] : 0.0);
  }
  return r;
}

TEST_P(ReferenceSchedule, DdimTrailingSpacingIsOurDdim50) {
  const json& trailing = doc().at("ddim").at("trailing");
  ASSERT_EQ(trailing.at("num_inference_steps").get<int>(), 50);
  Timesteps theirs = trailing.at("timesteps").get<Timesteps>();  // descending
  std::reverse(theirs.begin(), theirs.end());
  EXPECT_EQ(space_timesteps(kT, "ddim50"), theirs);
  EXPECT_EQ(theirs.back(), kT - 1);
  // diffusers' default "leading" spacing: 0, 20, ..., 980 (never T - 1 = 999).
  Timesteps leading = doc().at("ddim").at("leading").at("timesteps").get<Timesteps>();
  ASSERT_EQ(leading.size(), 50u);
  for (std::size_t i = 0; i < leading.size(); ++i) EXPECT_EQ(leading[i], 980 - 20 * static_cast<std::int64_t>(i));
}

TEST_P(ReferenceSchedule, DdimStepsMatchOurScheduleFormulas) {
  DiffusionSchedule s = schedule();
  RespacedSchedule respaced = respace(s.betas, "ddim50");
  for (const char* spacing : {"trailing", "leading"}) {
    for (const json& step : doc().at("ddim").at(spacing).at("steps")) {
      const std::int64_t t = step.at("t").get<std::int64_t>(), prev_t = step.at("prev_t").get<std::int64_t>();
      SCOPED_TRACE(std::string("DDIM ") + spacing + " step at t = " + std::to_string(t));
      const double abar = s.alphas_cumprod[static_cast<std::size_t>(t)];
      const double abar_prev = prev_t >= 0 ? s.alphas_cumprod[static_cast<std::size_t>(prev_t)] : 1.0;
      const double atol = 1e-13 / std::sqrt(abar);
      Values xt = values(step.at("sample")), eps = values(step.at("model_output")), z = values(step.at("noise"));

      DdimStep plain = ddim_step(abar, abar_prev, xt, eps, z, 0.0, false);
      expect_close(plain.x0, values(step.at("pred_original_sample")), kRtol, atol, "pred_original_sample");
      expect_close(plain.x_prev, values(step.at("prev_sample")), kRtol, atol, "eta 0, model eps");
      DdimStep reclipped = ddim_step(abar, abar_prev, xt, eps, z, 0.0, true);
      expect_close(reclipped.x_prev, values(step.at("prev_sample_clipped_eps")), kRtol, atol, "eta 0, eps from clipped x0");
      DdimStep noisy = ddim_step(abar, abar_prev, xt, eps, z, 1.0, true);
      expect_close(noisy.x_prev, values(step.at("prev_sample_eta1_clipped_eps")), kRtol, atol, "eta 1");

      if (std::string(spacing) != "trailing") continue;
      // The same step through the respaced process: new index i with timestep_map[i] = t.
      auto it = std::find(respaced.timestep_map.begin(), respaced.timestep_map.end(), t);
      ASSERT_NE(it, respaced.timestep_map.end());
      const auto i = static_cast<std::size_t>(it - respaced.timestep_map.begin());
      const DiffusionSchedule& r = respaced.schedule;
      // The respaced process multiplies up 1 - beta'_i = abar / abar_prev, rounded to
      // ~1e-16 absolute: relative ~1e-16 abar_prev / abar (4e-12 at the cosine tail, where
      // abar / abar_prev ~ 1e-4).
      const double rel = 1e-14 * abar_prev / abar;
      EXPECT_NEAR(r.alphas_cumprod[i] / abar, 1.0, rel);
      EXPECT_NEAR(r.alphas_cumprod_prev[i] / abar_prev, 1.0, rel);
      // sigma(eta = 1)^2 is the respaced process's posterior variance: DDIM with eta = 1 is
      // DDPM with fixed-small variance on the kept steps.
      const double sigma2 = (1 - abar_prev) / (1 - abar) * (1 - abar / abar_prev);
      EXPECT_NEAR(r.posterior_variance[i], sigma2, 1e-12 * sigma2 + 1e-300);
      // Our tensor formulas on the respaced schedule: x_0 from eps, clip, eps from x_0.
      Timesteps idx = batch_of(step, static_cast<std::int64_t>(i));
      Tensor xt_t = step_tensor(step, "sample");
      Tensor x0 = clamp(predict_x0_from_eps(r, xt_t, idx, step_tensor(step, "model_output")), -1.0, 1.0);
      Tensor e = predict_eps_from_x0(r, xt_t, idx, x0);
      Tensor x_prev = add(scale(x0, std::sqrt(r.alphas_cumprod_prev[i])), scale(e, std::sqrt(1 - r.alphas_cumprod_prev[i])));
      expect_close(x0.to_double_vector(), values(step.at("pred_original_sample")), kRtol, atol, "respaced x0");
      expect_close(x_prev.to_double_vector(), values(step.at("prev_sample_clipped_eps")), 1e-11, atol,
                   "respaced DDIM step");
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Diffusers, ReferenceSchedule, ::testing::Values("linear", "cosine"),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

}  // namespace
}  // namespace ddpm::diffusion
