// Analytic-DPM (models/diffusion/analytic_variance.h): the optimal reverse variance, its bounds,
// the Monte Carlo estimate of Gamma, the Gamma file, and the samplers and bound that use it.
//
// Closed form. For data x_0 ~ N(0, s^2 I) every quantity is known exactly. With V_t = abar_t s^2
// + bbar_t (the variance of x_t per element), the optimal eps predictor is eps*(x_t) =
// sqrt(bbar_t) x_t / V_t (support/gaussian_oracle.h), so
//   Gamma_t = E||eps*||^2 / d = bbar_t / V_t,
// and the true reverse step q(x_s | x_t) of the Markov process (DDPM, lambda^2 = beta~) is
// exactly Gaussian: x_t = sqrt(alpha_{t|s}) x_s + noise, so by Gaussian conditioning
//   Var[x_s | x_t] = V_s - alpha_{t|s} V_s^2 / V_t.
// Its mean is mu~(x_t, E[x_0 | x_t]) (mu~ is affine in x_0), so the Gaussian of the sampler's
// family with the OPTIMAL variance is the exact reverse step: Theorem 1's sigma*^2 with the
// exact Gamma must equal Var[x_s | x_t]. That is derived here without Gamma and compared. For
// DDIM's family (lambda^2 = eta^2 beta~) the non-Markov process's x_s given (x_t, x_0) is
// sqrt(abar_s) x_0 + sqrt(bbar_s - lambda^2) (x_t - sqrt(abar_t) x_0)/sqrt(bbar_t) + lambda z,
// so Var[x_s | x_t] = lambda^2 + c^2 Var[x_0 | x_t], Var[x_0 | x_t] = s^2 - abar_t s^4 / V_t.
#include <algorithm>
#include <cmath>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "engine/rng.h"
#include "engine/ops/elementwise.h"
#include "models/diffusion/analytic_variance.h"
#include "models/diffusion/respace.h"
#include "models/diffusion/sampler.h"
#include "models/eval/bpd_eval.h"
#include "support/gaussian_oracle.h"
#include "support/temp_dir.h"
#include "support/value_error.h"

namespace ddpm::diffusion {
namespace {

using testing::expect_value_error;

DiffusionSchedule linear_schedule(std::int64_t T) { return DiffusionSchedule(betas_for(NoiseSchedule::linear, T)); }

double gaussian_gamma(double abar, double s) { return (1.0 - abar) / (abar * s * s + 1.0 - abar); }

std::vector<double> exact_gamma(const DiffusionSchedule& process, double s) {
  std::vector<double> g;
  for (double abar : process.alphas_cumprod) g.push_back(gaussian_gamma(abar, s));
  return g;
}

// The Gamma file of the closed form at every timestep of `base`.
AnalyticGamma exact_gamma_file(const DiffusionSchedule& base, double s) {
  AnalyticGamma g;
  g.diffusion_steps = base.num_timesteps();
  g.noise_schedule = "linear";
  g.alpha_bar_first = base.alphas_cumprod.front();
  g.alpha_bar_last = base.alphas_cumprod.back();
  for (std::int64_t t = 0; t < base.num_timesteps(); ++t) g.timesteps.push_back(t);
  g.gamma = exact_gamma(base, s);
  return g;
}

TEST(AnalyticVariance, EqualsTheExactPosteriorVarianceOfGaussianDataFullAndRespaced) {
  const DiffusionSchedule base = linear_schedule(100);
  for (const std::string& respacing : {std::string(), std::string("10"), std::string("7,3")}) {
    const RespacedSchedule rs = sampling_process(base, respacing);
    const DiffusionSchedule& p = rs.schedule;
    for (double s : {0.3, 1.0}) {
      const std::vector<AnalyticStep> steps = analytic_steps(p, exact_gamma(p, s), 1.0);
      for (std::size_t i = 1; i < steps.size(); ++i) {
        const double abar_t = p.alphas_cumprod[i], abar_s = p.alphas_cumprod_prev[i];
        const double Vt = abar_t * s * s + 1.0 - abar_t, Vs = abar_s * s * s + 1.0 - abar_s;
        const double exact = Vs - (abar_t / abar_s) * Vs * Vs / Vt;  // Gaussian conditioning
        EXPECT_NEAR(steps[i].optimal, exact, 1e-11 * exact + 1e-15) << "respacing '" << respacing << "' s " << s
                                                                     << " i " << i;
        EXPECT_NEAR(steps[i].lambda2, p.posterior_variance[i], 1e-15);
        // Var[x_0 | x_t] <= s^2 <= 1: the exact value lies inside Theorem 2's bounds, so no clip.
        EXPECT_DOUBLE_EQ(steps[i].variance, steps[i].optimal);
      }
    }
  }
}

TEST(AnalyticVariance, DdimFamilyEqualsLambdaPlusTheX0PosteriorTerm) {
  const DiffusionSchedule base = linear_schedule(100);
  const RespacedSchedule rs = sampling_process(base, "ddim20");
  const DiffusionSchedule& p = rs.schedule;
  const double s = 0.6;
  for (double eta : {0.0, 0.5}) {
    const std::vector<AnalyticStep> steps = analytic_steps(p, exact_gamma(p, s), eta);
    for (std::size_t i = 1; i < steps.size(); ++i) {
      const double abar_t = p.alphas_cumprod[i], abar_s = p.alphas_cumprod_prev[i];
      const double Vt = abar_t * s * s + 1.0 - abar_t;
      const double lambda2 = eta * eta * p.posterior_variance[i];
      const double c = std::sqrt(abar_s) - std::sqrt(1.0 - abar_s - lambda2) * std::sqrt(abar_t / (1.0 - abar_t));
      const double var_x0 = s * s - abar_t * s * s * s * s / Vt;
      EXPECT_NEAR(steps[i].optimal, lambda2 + c * c * var_x0, 1e-12) << "eta " << eta << " i " << i;
      EXPECT_NEAR(steps[i].lambda2, lambda2, 1e-15);
    }
  }
}

TEST(AnalyticVariance, ClippedBetweenLambdaAndTheUpperBound) {
  const DiffusionSchedule base = linear_schedule(100);
  const RespacedSchedule rs = sampling_process(base, "10");
  const std::size_t K = rs.timestep_map.size();
  for (double eta : {0.0, 1.0}) {
    for (double gamma : {0.0, 0.3, 0.9, 1.0, 1.4}) {
      const std::vector<AnalyticStep> steps = analytic_steps(rs.schedule, std::vector<double>(K, gamma), eta);
      for (std::size_t i = 0; i < K; ++i) {
        const AnalyticStep& st = steps[i];
        EXPECT_LE(st.lower, st.variance);
        EXPECT_LE(st.variance, st.upper);
        EXPECT_DOUBLE_EQ(st.lower, st.lambda2);
        if (gamma >= 1.0) EXPECT_DOUBLE_EQ(st.variance, st.lambda2);  // 1 - Gamma <= 0: the lower bound
        if (st.optimal >= st.lower && st.optimal <= st.upper) EXPECT_DOUBLE_EQ(st.variance, st.optimal);
      }
    }
  }
  // Gamma = 0 at t = T-1 asks for sigma*^2 = lambda^2 + bbar/alpha (...)^2 > the upper bound
  // (bbar / abar > 1 there): it is clipped down to it.
  const std::vector<AnalyticStep> zero = analytic_steps(rs.schedule, std::vector<double>(K, 0.0), 1.0);
  EXPECT_GT(zero.back().optimal, zero.back().upper);
  EXPECT_DOUBLE_EQ(zero.back().variance, zero.back().upper);
}

TEST(AnalyticVariance, SamplingTableHasNoNoiseLastAndCapsTheStepBefore) {
  const DiffusionSchedule base = linear_schedule(100);
  const AnalyticGamma g = exact_gamma_file(base, 1.0);
  const RespacedSchedule rs = sampling_process(base, "10");
  const std::vector<double> var = analytic_sampling_variances(rs, g, 1.0, 0.0, "g.json");
  const std::vector<AnalyticStep> steps = analytic_steps(rs.schedule, gamma_for_process(g, rs, "g.json"), 1.0);
  ASSERT_EQ(var.size(), steps.size());
  EXPECT_EQ(var[0], 0.0);
  const double cap = std::pow(2.0 * 2.0 / 255.0 * std::sqrt(M_PI / 2.0), 2);  // linear: 2 bins
  EXPECT_LT(cap, steps[1].variance);  // the cap is active on this schedule
  EXPECT_DOUBLE_EQ(var[1], cap);
  for (std::size_t i = 2; i < var.size(); ++i) EXPECT_DOUBLE_EQ(var[i], steps[i].variance);
  AnalyticGamma cosine = g;
  cosine.noise_schedule = "cosine";
  EXPECT_DOUBLE_EQ(analytic_sampling_variances(rs, cosine, 1.0, 0.0, "g.json")[1], cap / 4.0);  // 1 bin
}

TEST(AnalyticVariance, MonteCarloGammaMatchesTheClosedForm) {
  const DiffusionSchedule base = linear_schedule(100);
  const double s = 0.5;
  Generator data_gen(11);
  const Tensor x0 = scale(randn({512, 8, 8, 1}, data_gen, Device::cpu(), DType::f64), s);  // d = 64
  GammaNetwork eps_net{testing::gaussian_eps_oracle(base, 0.0, s), ModelMeanType::eps, false};
  const Timesteps ts = {0, 10, 50, 99};
  Generator gen(5);
  const AnalyticGamma g = estimate_gamma(base, eps_net, x0, {}, ts, 128, gen);
  ASSERT_EQ(g.timesteps, ts);
  EXPECT_EQ(g.num_images, 512);
  EXPECT_EQ(g.diffusion_steps, 100);
  for (std::size_t k = 0; k < ts.size(); ++k) {
    const double exact = gaussian_gamma(base.alphas_cumprod[static_cast<std::size_t>(ts[k])], s);
    // ||eps*||^2 / d averages 32768 squares of N(0, Gamma): relative std sqrt(2 / 32768) = 0.8%.
    EXPECT_NEAR(g.gamma[k], exact, 0.04 * exact) << "t " << ts[k];
  }
  // A v-network is read through its eps: v* = (eps* - sqrt(bbar) x_t) / sqrt(abar) gives the
  // same Gamma for the same draws.
  const std::vector<double> abars = base.alphas_cumprod;
  const DenoiseFn eps_fn = testing::gaussian_eps_oracle(base, 0.0, s);
  GammaNetwork v_net{[abars, eps_fn](const Tensor& x, const std::vector<double>& t,
                                     const std::vector<std::int64_t>& y) {
                       const double abar = abars[static_cast<std::size_t>(std::llround(t[0]))];
                       return scale(sub(eps_fn(x, t, y), scale(x, std::sqrt(1.0 - abar))), 1.0 / std::sqrt(abar));
                     },
                     ModelMeanType::v, false};
  Generator gen_v(5);
  const AnalyticGamma gv = estimate_gamma(base, v_net, x0, {}, ts, 128, gen_v);
  for (std::size_t k = 0; k < ts.size(); ++k) EXPECT_NEAR(gv.gamma[k], g.gamma[k], 1e-9 * g.gamma[k]);
}

TEST(AnalyticVariance, EstimatorRefusesLearnedVarianceAndZeroTerminalSnr) {
  const DiffusionSchedule base = linear_schedule(60);
  const Tensor x0 = Tensor::zeros({2, 2, 2, 1}, DType::f64);
  Generator gen(0);
  GammaNetwork learned{testing::gaussian_eps_oracle(base, 0.0, 1.0), ModelMeanType::eps, true};
  expect_value_error([&] { estimate_gamma(base, learned, x0, {}, {0, 1}, 2, gen); }, "learned its variance");
  const DiffusionSchedule zsnr(rescale_zero_terminal_snr(base.betas));
  GammaNetwork plain{testing::gaussian_eps_oracle(base, 0.0, 1.0), ModelMeanType::v, false};
  expect_value_error([&] { estimate_gamma(zsnr, plain, x0, {}, {0, 1}, 2, gen); }, "zero terminal SNR");
  expect_value_error([&] { estimate_gamma(base, plain, x0, {}, {1, 1}, 2, gen); }, "rise strictly");
  expect_value_error([&] { estimate_gamma(base, plain, x0, {3}, {1}, 2, gen); }, "1 labels for 2 images");
}

TEST(AnalyticVariance, FileRoundTripAndMismatchRefusals) {
  const DiffusionSchedule base = linear_schedule(100);
  AnalyticGamma g = exact_gamma_file(base, 0.7);
  g.model = "RUN/checkpoints/step_6 (ema)";
  g.mean_type = "v";
  g.data = "toy-shapes/train";
  g.num_images = 32;
  g.seed = 1234567890123ULL;
  const std::string path = testing::fresh_temp_dir("analytic_gamma") + "/gamma.json";
  write_analytic_gamma(g, path);
  const AnalyticGamma r = read_analytic_gamma(path);
  EXPECT_EQ(r.model, g.model);
  EXPECT_EQ(r.mean_type, "v");
  EXPECT_EQ(r.diffusion_steps, 100);
  EXPECT_EQ(r.noise_schedule, "linear");
  EXPECT_EQ(r.alpha_bar_first, g.alpha_bar_first);  // bit for bit
  EXPECT_EQ(r.alpha_bar_last, g.alpha_bar_last);
  EXPECT_EQ(r.data, g.data);
  EXPECT_EQ(r.num_images, 32);
  EXPECT_EQ(r.seed, g.seed);
  EXPECT_EQ(r.timesteps, g.timesteps);
  EXPECT_EQ(r.gamma, g.gamma);
  check_gamma_fits(r, base, path);  // no throw

  expect_value_error([&] { check_gamma_fits(r, linear_schedule(200), path); }, "100 diffusion steps; this model has 200");
  expect_value_error([&] { check_gamma_fits(r, DiffusionSchedule(betas_for(NoiseSchedule::cosine, 100)), path); },
                     "another noise schedule");
  AnalyticGamma partial = g;
  partial.timesteps = {0, 50, 99};
  partial.gamma = {0.1, 0.5, 0.9};
  expect_value_error([&] { partial.at(49, "p.json"); }, "p.json has no estimate at timestep 49");
  expect_value_error([&] { gamma_for_process(partial, sampling_process(base, "10"), "p.json"); }, "no estimate");
  EXPECT_EQ(partial.at(50, "p.json"), 0.5);

  const std::string bad = testing::fresh_temp_dir("analytic_gamma_bad") + "/bad.json";
  std::ofstream(bad) << "{\"format\": \"ddpm-analytic-gamma\", \"version\": 1, \"diffusion_steps\": 10, "
                        "\"alpha_bar_first\": 0.9, \"alpha_bar_last\": 0.1, \"timesteps\": [0, 1], \"gamma\": [0.5]}";
  expect_value_error([&] { read_analytic_gamma(bad); }, "2 timesteps and 1 Gamma values");
  std::ofstream(bad) << "{\"timesteps\": []}";
  expect_value_error([&] { read_analytic_gamma(bad); }, "is not a Gamma file");
  std::ofstream(bad) << "not json";
  expect_value_error([&] { read_analytic_gamma(bad); }, "cannot be read as a Gamma file");
}

// Sampling with the exact Gamma of Gaussian data: every reverse step is then the exact
// q(x_s | x_t), so x at the first kept timestep tau_1 has q's marginal, and the last step
// (no noise) returns E[x_0 | x_tau1], whose variance is abar s^4 / V at tau_1: s^2 up to 0.4%
// for tau_1 = 0, about 0.18 against s^2 = 0.25 for ddim10's tau_1 = 9.
double sample_variance(const Tensor& x) {
  const std::vector<double> v = x.to_double_vector();
  double m = 0, q = 0;
  for (double a : v) m += a;
  m /= static_cast<double>(v.size());
  for (double a : v) q += (a - m) * (a - m);
  return q / static_cast<double>(v.size() - 1);
}

TEST(AnalyticVariance, DdpmAndDdimSamplesOfGaussianDataHaveItsVariance) {
  const DiffusionSchedule base = linear_schedule(100);
  const double s = 0.5;
  const DenoiseFn net = testing::gaussian_eps_oracle(base, 0.0, s);
  SamplerConfig cfg;
  cfg.variance = VarianceType::analytic;
  cfg.analytic_gamma = std::make_shared<const AnalyticGamma>(exact_gamma_file(base, s));
  cfg.analytic_gamma_file = "exact";
  cfg.analytic_clip_bins = 1e6;  // no cap at i = 1: the exact chain
  cfg.clip_x0 = false;
  cfg.dtype = DType::f64;
  struct Case {
    SamplerConfig::Kind kind;
    std::string respacing;
    double eta;
  };
  for (const Case& c : {Case{SamplerConfig::Kind::ddpm, "", 1.0}, Case{SamplerConfig::Kind::ddpm, "10", 1.0},
                        Case{SamplerConfig::Kind::ddim, "ddim10", 0.0}, Case{SamplerConfig::Kind::ddim, "ddim10", 0.5}}) {
    cfg.kind = c.kind;
    cfg.respacing = c.respacing;
    cfg.eta = c.kind == SamplerConfig::Kind::ddim ? c.eta : 0.0;
    Generator gen(3);
    const Tensor x = sample(base, net, {4096, 2}, {}, cfg, gen);
    const double abar1 = base.alphas_cumprod[static_cast<std::size_t>(sampling_process(base, c.respacing).timestep_map[0])];
    const double expected = abar1 * s * s * s * s / (abar1 * s * s + 1.0 - abar1);
    // 8192 values: the variance estimate's relative std is sqrt(2 / 8192) = 1.6%.
    EXPECT_NEAR(sample_variance(x), expected, 0.07 * expected)
        << sampler_kind_name(c.kind) << " '" << c.respacing << "' eta " << c.eta;
  }
}

TEST(AnalyticVariance, SamplerRefusesMissingOrMismatchedGamma) {
  const DiffusionSchedule base = linear_schedule(100);
  const DenoiseFn net = testing::gaussian_eps_oracle(base, 0.0, 1.0);
  SamplerConfig cfg;
  cfg.variance = VarianceType::analytic;
  Generator gen(0);
  expect_value_error([&] { sample(base, net, {2, 2}, {}, cfg, gen); }, "needs a Gamma estimate");
  AnalyticGamma partial = exact_gamma_file(base, 1.0);
  partial.timesteps = {0, 99};
  partial.gamma = {0.1, 0.9};
  cfg.analytic_gamma = std::make_shared<const AnalyticGamma>(partial);
  cfg.analytic_gamma_file = "partial.json";
  cfg.respacing = "10";
  expect_value_error([&] { sample(base, net, {2, 2}, {}, cfg, gen); }, "partial.json has no estimate at timestep");
  cfg.respacing = "";
  expect_value_error([&] { sample(linear_schedule(200), net, {2, 2}, {}, cfg, gen); }, "diffusion steps");
  cfg.variance = VarianceType::fixed_small;  // a Gamma file with another variance is a mistake
  expect_value_error([&] { sample(base, net, {2, 2}, {}, cfg, gen); }, "only used with the analytic variance");
  cfg.variance = VarianceType::analytic;
  cfg.learned_sigma = true;
  expect_value_error([&] { sample(base, net, {2, 2}, {}, cfg, gen); }, "learned sigma");
}

TEST(AnalyticVariance, BoundUsesTheTableAndFixedSmallsDecoder) {
  const DiffusionSchedule base = linear_schedule(100);
  const AnalyticGamma g = exact_gamma_file(base, 0.8);
  eval::BpdEvalOptions o;
  o.variance = VarianceType::analytic;
  expect_value_error([&] { eval::model_gaussian(base, testing::gaussian_eps_oracle(base, 0.0, 0.8), o, {}); },
                     "needs a Gamma estimate");
  o.analytic_gamma = std::make_shared<const AnalyticGamma>(g);
  o.analytic_gamma_file = "g.json";
  const ModelGaussianFn p = eval::model_gaussian(base, testing::gaussian_eps_oracle(base, 0.0, 0.8), o, {});
  const std::vector<double> table = analytic_likelihood_variances(base, g, "g.json");
  const Tensor xt = Tensor::zeros({2, 2, 2, 1}, DType::f64);
  for (std::int64_t t : {0, 1, 50, 99}) {
    const Gaussian gt = p(xt, {t, t});
    EXPECT_NEAR(gt.variance.to_double_vector()[0], table[static_cast<std::size_t>(t)], 1e-15);
    EXPECT_NEAR(gt.log_variance.to_double_vector()[1], std::log(table[static_cast<std::size_t>(t)]), 1e-12);
  }
  EXPECT_DOUBLE_EQ(table[0], std::exp(base.posterior_log_variance_clipped[0]));  // fixed_small's decoder
  EXPECT_DOUBLE_EQ(table[50], analytic_steps(base, g.gamma, 1.0)[50].variance);
  AnalyticGamma partial = g;
  partial.timesteps.pop_back();
  partial.gamma.pop_back();
  expect_value_error([&] { analytic_likelihood_variances(base, partial, "p.json"); }, "no estimate at timestep 99");
}

}  // namespace
}  // namespace ddpm::diffusion
