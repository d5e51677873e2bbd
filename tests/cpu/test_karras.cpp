// The Heun sampler of Karras et al. 2022 (models/diffusion/karras.h): the noise levels,
// t(sigma), the evaluation count, dispatch, clipping, guidance, and ORACLE tests.
//
// Oracle. Data x_0 ~ N(mu, s^2) in 1-D. At a (fractional) timestep t the network's input is
// x_vp = sqrt(abar) x_0 + sqrt(1 - abar) eps with abar = 1 / (1 + sigma(t)^2); x_vp is
// Gaussian with mean sqrt(abar) mu and variance V = abar s^2 + 1 - abar, Cov(eps, x_vp) =
// sqrt(1 - abar), so the MSE-optimal prediction is
//   eps*(x_vp, t) = E[eps | x_vp] = sqrt(1 - abar) (x_vp - sqrt(abar) mu) / V.
// In EDM's variable x = x_vp / sqrt(abar) this gives D(x; sigma) = mu + s^2 / (s^2 + sigma^2)
// (x - mu), and the probability-flow ODE dx/dsigma = (x - D) / sigma = sigma (x - mu) /
// (s^2 + sigma^2) has the exact solution
//   x(sigma) - mu = (x(sigma_max) - mu) sqrt(s^2 + sigma^2) / sqrt(s^2 + sigma_max^2),
// so every sample's exact end point is known from its starting noise: the solver's error
// is measured per sample, apart from the Monte-Carlo error of the sample statistics.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <filesystem>

#include <nlohmann/json.hpp>

#include "engine/error.h"
#include "engine/io/atomic_file.h"
#include "engine/io/png.h"
#include "engine/ops/elementwise.h"
#include "models/diffusion/karras.h"
#include "models/diffusion/sampler.h"
#include "models/run/sample_run.h"
#include "support/tiny_model.h"
#include "support/temp_dir.h"
#include "support/tiny_unet.h"

namespace ddpm::diffusion {
namespace {

struct Gauss1 {
  double mu, s;
};

// eps* for an equal-weight mixture of 1-D Gaussians at abar (one component: the formula above).
double mixture_eps(const std::vector<Gauss1>& comps, double xvp, double abar) {
  double wsum = 0, esum = 0, maxlog = -1e300;
  std::vector<double> logw(comps.size()), e(comps.size());
  for (std::size_t k = 0; k < comps.size(); ++k) {
    const double V = abar * comps[k].s * comps[k].s + 1 - abar;
    const double dx = xvp - std::sqrt(abar) * comps[k].mu;
    logw[k] = -dx * dx / (2 * V) - 0.5 * std::log(V);
    maxlog = std::max(maxlog, logw[k]);
    e[k] = std::sqrt(1 - abar) * dx / V;
  }
  for (std::size_t k = 0; k < comps.size(); ++k) {
    const double w = std::exp(logw[k] - maxlog);
    wsum += w;
    esum += w * e[k];
  }
  return esum / wsum;
}

// The oracle network at fractional timesteps (sigma(t) by the same log interpolation as the
// sampler), predicting eps, x_0 or v. Labels pick a component; the null label, or none, the
// mixture. `calls` counts evaluations when given.
DenoiseFn oracle(const DiffusionSchedule& sched, std::vector<Gauss1> comps, ModelMeanType type = ModelMeanType::eps,
                 int* calls = nullptr) {
  std::vector<double> train = vp_sigmas(sched);
  return [train, comps, type, calls](const Tensor& x, const std::vector<double>& t,
                                     const std::vector<std::int64_t>& labels) {
    if (calls) ++*calls;
    std::vector<double> xv = x.to_double_vector(), out(xv.size());
    const std::size_t per = xv.size() / t.size();
    for (std::size_t i = 0; i < t.size(); ++i) {
      const double sg = sigma_for_timestep(train, t[i]);
      const double abar = 1.0 / (1.0 + sg * sg);
      std::vector<Gauss1> c = comps;
      if (!labels.empty() && labels[i] < static_cast<std::int64_t>(comps.size())) c = {comps[labels[i]]};
      for (std::size_t j = i * per; j < (i + 1) * per; ++j) {
        const double eps = mixture_eps(c, xv[j], abar);
        const double x0 = (xv[j] - std::sqrt(1 - abar) * eps) / std::sqrt(abar);
        out[j] = type == ModelMeanType::eps  ? eps
                 : type == ModelMeanType::x0 ? x0
                                             : std::sqrt(abar) * eps - std::sqrt(1 - abar) * x0;
      }
    }
    return Tensor::from_vector(out, x.shape(), x.dtype());
  };
}

DiffusionSchedule linear_schedule(std::int64_t T) { return DiffusionSchedule(linear_betas(T)); }

double mean_of(const std::vector<double>& v) {
  double m = 0;
  for (double e : v) m += e;
  return m / static_cast<double>(v.size());
}
double std_of(const std::vector<double>& v) {
  const double m = mean_of(v);
  double q = 0;
  for (double e : v) q += (e - m) * (e - m);
  return std::sqrt(q / static_cast<double>(v.size() - 1));
}

// RMS distance of samples from the exact ODE end points of their starting noise (the
// sampler's first draw, sigma_max z; DDIM starts at x_T = z, the same point in EDM's x).
double rms_error_vs_exact_flow(const std::vector<double>& got, std::uint64_t seed, const Gauss1& g,
                               double sigma_max) {
  Generator gen(seed);
  const std::vector<double> z =
      randn({static_cast<std::int64_t>(got.size()), 1}, gen, Device::cpu(), DType::f64).to_double_vector();
  const double k = g.s / std::sqrt(g.s * g.s + sigma_max * sigma_max);
  double sq = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double exact = g.mu + (sigma_max * z[i] - g.mu) * k;
    sq += (got[i] - exact) * (got[i] - exact);
  }
  return std::sqrt(sq / static_cast<double>(got.size()));
}

const Gauss1 kData{0.3, 0.2};

// --- the noise levels and t(sigma) -----------------------------------------------------

TEST(KarrasSigmas, FormulaEndpointsMonotoneAndRho) {
  const std::vector<double> sig = karras_sigmas(18, 0.002, 80.0, 7.0);
  ASSERT_EQ(sig.size(), 19u);
  EXPECT_EQ(sig.front(), 80.0);
  EXPECT_EQ(sig[17], 0.002);
  EXPECT_EQ(sig.back(), 0.0);
  for (std::size_t i = 0; i + 1 < sig.size(); ++i) EXPECT_GT(sig[i], sig[i + 1]) << i;
  // EDM eq. 5 at i = 9 by hand.
  const double a = std::pow(80.0, 1 / 7.0), b = std::pow(0.002, 1 / 7.0);
  EXPECT_NEAR(sig[9], std::pow(a + 9.0 / 17.0 * (b - a), 7.0), 1e-12);
  // sigma^(1/rho) is evenly spaced; rho = 1 spaces sigma itself evenly.
  for (std::size_t i = 1; i + 1 < 18; ++i)
    EXPECT_NEAR(std::pow(sig[i], 1 / 7.0) - std::pow(sig[i + 1], 1 / 7.0), (a - b) / 17.0, 1e-12);
  const std::vector<double> lin = karras_sigmas(5, 1.0, 9.0, 1.0);
  EXPECT_EQ(lin, (std::vector<double>{9.0, 7.0, 5.0, 3.0, 1.0, 0.0}));
  // Larger rho crowds the levels near sigma_min: the middle level drops.
  EXPECT_LT(karras_sigmas(11, 0.01, 100.0, 7.0)[5], karras_sigmas(11, 0.01, 100.0, 3.0)[5]);
  EXPECT_EQ(karras_sigmas(1, 0.01, 100.0), (std::vector<double>{100.0, 0.0}));
}

TEST(KarrasSigmas, BadInputsAreClearErrors) {
  auto message = [](auto f) {
    try {
      f();
    } catch (const ValueError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message([] { karras_sigmas(0, 0.01, 10.0); }).find("at least 1 step"), std::string::npos);
  EXPECT_NE(message([] { karras_sigmas(-3, 0.01, 10.0); }).find("at least 1 step"), std::string::npos);
  EXPECT_NE(message([] { karras_sigmas(10, 10.0, 10.0); }).find("must be below sigma_max"), std::string::npos);
  EXPECT_NE(message([] { karras_sigmas(10, 20.0, 10.0); }).find("must be below sigma_max"), std::string::npos);
  EXPECT_THROW(karras_sigmas(10, 0.0, 10.0), ValueError);
  EXPECT_THROW(karras_sigmas(10, 0.01, 10.0, 0.0), ValueError);

  // Through the sampler: steps, an inverted range, a range outside the training levels.
  DiffusionSchedule s = linear_schedule(100);
  DenoiseFn net = oracle(s, {kData});
  SamplerConfig cfg;
  cfg.kind = SamplerConfig::Kind::heun;
  Generator gen(0);
  cfg.heun_steps = 0;
  EXPECT_NE(message([&] { sample(s, net, {2, 1}, {}, cfg, gen); }).find("at least 1 step"), std::string::npos);
  cfg.heun_steps = 5;
  cfg.sigma_min = 1.0;
  cfg.sigma_max = 0.5;
  EXPECT_NE(message([&] { sample(s, net, {2, 1}, {}, cfg, gen); }).find("must be below sigma_max"), std::string::npos);
  cfg.sigma_min = 0.0;
  cfg.sigma_max = 1e6;  // far above sigma_{T-1} = 157
  EXPECT_NE(message([&] { sample(s, net, {2, 1}, {}, cfg, gen); }).find("training range"), std::string::npos);
  cfg.sigma_max = 0.0;
  cfg.sigma_min = 1e-5;  // below sigma_0 = 0.01
  EXPECT_NE(message([&] { sample(s, net, {2, 1}, {}, cfg, gen); }).find("training range"), std::string::npos);
  EXPECT_EQ(gen.offset(), 0u);  // nothing was drawn before the checks
}

TEST(KarrasSigmas, TimestepForSigmaInvertsTheTrainingLevels) {
  for (const DiffusionSchedule& s : {linear_schedule(1000), DiffusionSchedule(cosine_betas(100))}) {
    const std::vector<double> train = vp_sigmas(s);
    const std::size_t T = train.size();
    for (std::size_t t = 0; t < T; ++t) {
      EXPECT_NEAR(train[t], std::sqrt((1 - s.alphas_cumprod[t]) / s.alphas_cumprod[t]), 1e-12 * train[t]);
      ASSERT_NEAR(timestep_for_sigma(train, train[t]), static_cast<double>(t), 1e-9) << t;
      ASSERT_EQ(sigma_for_timestep(train, static_cast<double>(t)), train[t]);
    }
    // Between the levels: log-linear, monotone, and the two functions are inverses.
    double prev = -1;
    for (double t = 0; t <= static_cast<double>(T - 1); t += 0.37) {
      const double sg = sigma_for_timestep(train, t);
      EXPECT_NEAR(timestep_for_sigma(train, sg), t, 1e-9);
      EXPECT_GT(sg, prev);
      prev = sg;
    }
    const double mid = std::sqrt(train[3] * train[4]);  // the geometric mean sits half way
    EXPECT_NEAR(timestep_for_sigma(train, mid), 3.5, 1e-9);
    // Outside the range: clamped to the end steps.
    EXPECT_EQ(timestep_for_sigma(train, train.front() / 2), 0.0);
    EXPECT_EQ(timestep_for_sigma(train, train.back() * 2), static_cast<double>(T - 1));
  }
}

// --- the sampler loop ---------------------------------------------------------------------

TEST(KarrasSampler, EvaluatesTheNetwork2NMinus1TimesFromTMinus1DownToZero) {
  DiffusionSchedule s = linear_schedule(1000);
  std::vector<double> seen;
  std::vector<double> first_input;
  DenoiseFn inner = oracle(s, {kData});
  DenoiseFn net = [&](const Tensor& x, const std::vector<double>& t, const std::vector<std::int64_t>& y) {
    for (double ti : t) EXPECT_EQ(ti, t[0]);
    if (seen.empty()) first_input = x.to_double_vector();
    seen.push_back(t[0]);
    return inner(x, t, y);
  };
  SamplerConfig cfg;
  cfg.kind = SamplerConfig::Kind::heun;
  for (std::int64_t N : {1, 2, 5, 18}) {
    cfg.heun_steps = N;
    seen.clear();
    Generator gen(3);
    sample(s, net, {512, 1}, {}, cfg, gen);
    ASSERT_EQ(static_cast<std::int64_t>(seen.size()), 2 * N - 1) << N;
    EXPECT_EQ(seen.front(), 999.0);                // t(sigma_max) with the default range
    EXPECT_EQ(seen.back(), N == 1 ? 999.0 : 0.0);  // the last evaluation is at sigma_min: t = 0
    for (std::size_t i = 0; i + 1 < seen.size(); ++i) EXPECT_GE(seen[i], seen[i + 1]);
    EXPECT_EQ(gen.offset(), 512u);  // one draw: x_0
    // The network sees x / sqrt(1 + sigma_max^2) = sigma_max z / sqrt(1 + sigma_max^2): std ~ 1.
    EXPECT_NEAR(std_of(first_input), 1.0, 0.1);
  }
  // Euler: one evaluation per step.
  seen.clear();
  cfg.heun_steps = 7;
  Generator gen(3);
  karras_sample(s, net, {8, 1}, {}, cfg, gen, Device::cpu(), {}, KarrasSolver::euler);
  EXPECT_EQ(seen.size(), 7u);
}

TEST(KarrasSampler, DispatchCallbackAndTheLastStepReturnsD) {
  EXPECT_EQ(parse_sampler_kind("heun"), SamplerConfig::Kind::heun);
  EXPECT_STREQ(sampler_kind_name(SamplerConfig::Kind::heun), "heun");
  DiffusionSchedule s(cosine_betas(100));
  SamplerConfig cfg;
  cfg.kind = SamplerConfig::Kind::heun;
  cfg.heun_steps = 6;
  cfg.dtype = DType::f64;
  const std::vector<double> sig = karras_sigmas(6, vp_sigmas(s).front(), vp_sigmas(s).back());
  std::vector<std::int64_t> indices;
  std::vector<double> last_pred;
  StepCallback cb = [&](const StepInfo& info) {
    indices.push_back(info.index);
    EXPECT_EQ(info.num_steps, 6);
    EXPECT_EQ(info.sigma, sig[static_cast<std::size_t>(5 - info.index)]);
    if (info.index == 0) {
      last_pred = info.pred_x0.to_double_vector();
      EXPECT_EQ(info.timestep, 0);
    }
  };
  Generator g1(9), g2(9);
  const std::vector<double> a =
      sample(s, oracle(s, {kData}), {32, 1}, {}, cfg, g1, Device::cpu(), cb).to_double_vector();
  const std::vector<double> b = karras_sample(s, oracle(s, {kData}), {32, 1}, {}, cfg, g2).to_double_vector();
  EXPECT_EQ(a, b);  // sample() dispatches to karras_sample, and the sampler is deterministic
  EXPECT_EQ(indices, (std::vector<std::int64_t>{5, 4, 3, 2, 1, 0}));
  EXPECT_EQ(a, last_pred);  // the last step is Euler to sigma = 0: x_N = D(x_{N-1}; sigma_min)
}

TEST(KarrasSampler, ClippingIsOffByDefaultAndClampsDWhenAsked) {
  SamplerConfig cfg;
  EXPECT_TRUE(resolve_clip_x0(cfg));  // DDPM and DDIM clip by default
  cfg.kind = SamplerConfig::Kind::heun;
  EXPECT_FALSE(resolve_clip_x0(cfg));  // EDM does not
  // An x_0-predicting net that always says 3: unclipped the sample is 3, clipped 1.
  DiffusionSchedule s = linear_schedule(100);
  DenoiseFn net = [](const Tensor& x, const std::vector<double>&, const std::vector<std::int64_t>&) {
    return Tensor::full(x.shape(), 3.0, x.dtype());
  };
  cfg.mean_type = ModelMeanType::x0;
  cfg.heun_steps = 4;
  cfg.dtype = DType::f64;
  Generator g1(1), g2(1);
  for (double v : sample(s, net, {4, 1}, {}, cfg, g1).to_double_vector()) EXPECT_EQ(v, 3.0);
  cfg.clip_x0 = true;
  for (double v : sample(s, net, {4, 1}, {}, cfg, g2).to_double_vector()) EXPECT_EQ(v, 1.0);
}

TEST(KarrasSampler, EveryMeanTypeAndF32AgreeWithTheF64Eps) {
  DiffusionSchedule s = linear_schedule(1000);
  SamplerConfig cfg;
  cfg.kind = SamplerConfig::Kind::heun;
  cfg.heun_steps = 12;
  cfg.dtype = DType::f64;
  Generator g0(5);
  const std::vector<double> ref = sample(s, oracle(s, {kData}), {64, 1}, {}, cfg, g0).to_double_vector();
  for (ModelMeanType type : {ModelMeanType::x0, ModelMeanType::v}) {
    cfg.mean_type = type;
    Generator g(5);
    const std::vector<double> got = sample(s, oracle(s, {kData}, type), {64, 1}, {}, cfg, g).to_double_vector();
    for (std::size_t i = 0; i < ref.size(); ++i) ASSERT_NEAR(got[i], ref[i], 1e-9) << model_mean_type_name(type);
  }
  // f32 (the CUDA path's dtype) against the f64 reference: the same draws (f32 values
  // widened), rounding only. x starts near sigma_max = 157, so f32's relative 6e-8 is an
  // absolute 1e-5 there; the ODE contracts it with the spread (factor s / sigma_max).
  cfg.mean_type = ModelMeanType::eps;
  cfg.dtype = DType::f32;
  Generator g1(5);
  const std::vector<double> f32 = sample(s, oracle(s, {kData}), {64, 1}, {}, cfg, g1).to_double_vector();
  double worst = 0;
  for (std::size_t i = 0; i < ref.size(); ++i) worst = std::max(worst, std::abs(f32[i] - ref[i]));
  EXPECT_LT(worst, 1e-5);
}

// --- the oracle: Heun reproduces the data and beats first-order solvers -------------------

// Heun's truncation error on this problem, computed with the exact D (a scalar recursion,
// since D is affine): the end-point spread relative to the exact s, for data s = 0.2,
// sigma in [0.01, 157] (linear schedule, T = 1000), rho = 7:
//   N = 18 (35 evaluations): +8.1 %,  N = 20: +6.6 %,  N = 40 (79 evaluations): +1.3 %;
//   Euler at the same evaluation counts: -9.7 % (35), -4.4 % (79).
// Narrow data (s << sigma_max) is the hard case: the trajectories bend around sigma ~ s.
// So the statistics test uses N = 40.
TEST(KarrasOracle, HeunMapsNoiseToTheGaussian) {
  DiffusionSchedule s = linear_schedule(1000);
  constexpr std::int64_t n = 4000;
  SamplerConfig cfg;
  cfg.kind = SamplerConfig::Kind::heun;
  cfg.heun_steps = 40;
  cfg.dtype = DType::f64;
  Generator gen(17);
  const std::vector<double> heun = sample(s, oracle(s, {kData}), {n, 1}, {}, cfg, gen).to_double_vector();
  // Mean within 0.015 (about 5 standard errors, 0.2 / sqrt(4000) = 0.0032); std within 5 %
  // (the 1.3 % bias above plus 3.5 standard errors, 1 / sqrt(2 n) = 1.1 %).
  EXPECT_NEAR(mean_of(heun), kData.mu, 0.015);
  EXPECT_NEAR(std_of(heun) / kData.s, 1.0, 0.05);
}

// DPM-Solver++(2M) on the same levels through the VP adapter (dpm_solver.h): second order at
// one network evaluation per level, so at equal evaluations well ahead of Euler; and it
// refuses churn (deterministic multistep: the history would not match a re-noised x).
TEST(KarrasOracle, DpmSolver2mIsSecondOrderAtOneEvaluationPerLevel) {
  DiffusionSchedule s = linear_schedule(1000);
  const double sigma_max = vp_sigmas(s).back();
  constexpr std::int64_t n = 1000;
  constexpr std::uint64_t seed = 29;
  auto error = [&](std::int64_t N, KarrasSolver solver) {
    SamplerConfig cfg;
    cfg.kind = SamplerConfig::Kind::heun;
    cfg.heun_steps = N;
    cfg.dtype = DType::f64;
    int calls = 0;
    Generator gen(seed);
    const std::vector<double> got =
        karras_sample(s, oracle(s, {kData}, ModelMeanType::eps, &calls), {n, 1}, {}, cfg, gen, Device::cpu(), {}, solver)
            .to_double_vector();
    EXPECT_EQ(calls, karras_network_evaluations(solver, N)) << karras_solver_name(solver) << " N=" << N;
    return rms_error_vs_exact_flow(got, seed, kData, sigma_max);
  };
  const double dpm20 = error(20, KarrasSolver::dpmpp_2m), dpm40 = error(40, KarrasSolver::dpmpp_2m);
  const double euler40 = error(40, KarrasSolver::euler), heun20 = error(20, KarrasSolver::heun);
  std::printf("RMS error vs the exact ODE end point: dpm++2m N=20 %.3g, N=40 %.3g; euler 40 %.3g; heun 20 "
              "(39 evaluations) %.3g\n",
              dpm20, dpm40, euler40, heun20);
  EXPECT_GT(dpm20 / dpm40, 3.0);  // second order: about 4
  EXPECT_LT(3 * dpm40, euler40);  // 40 evaluations each

  SamplerConfig churned;
  churned.kind = SamplerConfig::Kind::heun;
  churned.heun_steps = 5;
  churned.s_churn = 10;
  Generator gen(1);
  EXPECT_THROW(karras_sample(s, oracle(s, {kData}), {4, 1}, {}, churned, gen, Device::cpu(), {}, KarrasSolver::dpmpp_2m),
               ValueError);
  KarrasSolver parsed = KarrasSolver::heun;
  EXPECT_TRUE(parse_karras_solver("dpm++2m", parsed));
  EXPECT_EQ(parsed, KarrasSolver::dpmpp_2m);
  EXPECT_FALSE(parse_karras_solver("dpm++", parsed));
}

// Euler ancestral (karras.h): each step is the posterior mean D + (s'^2/s^2)(x - D) plus
// s_up z with s_up^2 = s'^2 (s^2 - s'^2) / s^2, computed here from the same draws; the last
// step lands on D. On the Gaussian oracle the samples have the data's mean and spread.
TEST(KarrasAncestral, StepsArePosteriorDrawsAndSamplesMatchTheData) {
  const SigmaDenoiser toy = [](const Tensor& x, double sigma) {
    return SigmaDenoised{scale(tanh(x), 1.0 / (1.0 + sigma)), 0.0};
  };
  const std::vector<double> levels{2.0, 0.7, 0.0};
  SamplerConfig cfg;
  cfg.dtype = DType::f64;
  Generator gen(31), replay(31);
  const std::vector<double> got =
      karras_solve(toy, {6, 1}, levels, {2.0, 0.7}, cfg, gen, Device::cpu(), {}, KarrasSolver::euler_ancestral)
          .to_double_vector();
  const std::vector<double> z0 = randn({6, 1}, replay, Device::cpu(), DType::f64).to_double_vector();
  const std::vector<double> z1 = randn({6, 1}, replay, Device::cpu(), DType::f64).to_double_vector();
  EXPECT_EQ(gen.offset(), replay.offset());  // two draws: x_0, then one z (none onto sigma = 0)
  for (std::size_t k = 0; k < got.size(); ++k) {
    const double x0 = 2.0 * z0[k], d0 = std::tanh(x0) / 3.0;
    const double x1 = d0 + (0.49 / 4.0) * (x0 - d0) + 0.7 * std::sqrt(4.0 - 0.49) / 2.0 * z1[k];
    EXPECT_NEAR(got[k], std::tanh(x1) / 1.7, 1e-12) << "sample " << k;
  }

  // The oracle's D is E[x_0 | x], not a draw of x_0, so each step misses a little of the
  // posterior's spread (Var(x_0 | x) (1 - s'^2/s^2)^2): first-order in the step size, it
  // fades as the levels get denser (measured: std 0.184 at 100 levels, 0.197 at 400).
  const DiffusionSchedule s = linear_schedule(1000);
  SamplerConfig oracle_cfg;
  oracle_cfg.kind = SamplerConfig::Kind::heun;
  oracle_cfg.dtype = DType::f64;
  auto spread = [&](std::int64_t levels_n, double& mean) {
    oracle_cfg.heun_steps = levels_n;
    Generator g(37);
    const std::vector<double> x = karras_sample(s, oracle(s, {kData}), {4000, 1}, {}, oracle_cfg, g, Device::cpu(),
                                                {}, KarrasSolver::euler_ancestral)
                                      .to_double_vector();
    mean = mean_of(x);
    return std_of(x);
  };
  double mean100 = 0, mean400 = 0;
  const double std100 = spread(100, mean100), std400 = spread(400, mean400);
  std::printf("euler-ancestral: std %.4f at 100 levels, %.4f at 400 (data %.4f); means %.4f, %.4f (data %.4f)\n",
              std100, std400, kData.s, mean100, mean400, kData.mu);
  EXPECT_NEAR(mean100, kData.mu, 0.015);
  EXPECT_NEAR(mean400, kData.mu, 0.015);
  EXPECT_NEAR(std400 / kData.s, 1.0, 0.04);
  EXPECT_GT(kData.s - std100, 2.5 * (kData.s - std400));  // the deficit shrinks with the step
  Generator g(41);
  SamplerConfig churned = oracle_cfg;
  churned.heun_steps = 5;
  churned.s_churn = 10;
  EXPECT_THROW(karras_sample(s, oracle(s, {kData}), {4, 1}, {}, churned, g, Device::cpu(), {},
                             KarrasSolver::euler_ancestral),
               ValueError);
}

// Per sample against the exact flow: Heun is second order (doubling N divides its error by
// about 4; Euler's by 2) and beats Euler on the same kind of levels and DDIM with eta = 0
// (Euler on evenly spaced discrete levels) at the same number of network evaluations.
TEST(KarrasOracle, HeunIsSecondOrderAndBeatsEulerAndDdimAtEqualEvaluations) {
  DiffusionSchedule s = linear_schedule(1000);
  const double sigma_max = vp_sigmas(s).back();
  constexpr std::int64_t n = 1000;
  constexpr std::uint64_t seed = 23;
  auto karras_error = [&](std::int64_t N, KarrasSolver solver) {
    SamplerConfig cfg;
    cfg.kind = SamplerConfig::Kind::heun;
    cfg.heun_steps = N;
    cfg.dtype = DType::f64;
    Generator gen(seed);
    return rms_error_vs_exact_flow(
        karras_sample(s, oracle(s, {kData}), {n, 1}, {}, cfg, gen, Device::cpu(), {}, solver).to_double_vector(),
        seed, kData, sigma_max);
  };
  const double heun20 = karras_error(20, KarrasSolver::heun), heun40 = karras_error(40, KarrasSolver::heun);
  const double euler39 = karras_error(39, KarrasSolver::euler), euler79 = karras_error(79, KarrasSolver::euler);
  SamplerConfig ddim;
  ddim.kind = SamplerConfig::Kind::ddim;
  ddim.respacing = "79";
  ddim.clip_x0 = false;
  ddim.dtype = DType::f64;
  Generator g3(seed);
  const double ddim79 = rms_error_vs_exact_flow(sample(s, oracle(s, {kData}), {n, 1}, {}, ddim, g3).to_double_vector(),
                                                seed, kData, sigma_max);
  std::printf("RMS error vs the exact ODE end point: heun N=20 %.3g, N=40 %.3g; euler 39 %.3g, 79 %.3g; "
              "ddim 79 %.3g\n",
              heun20, heun40, euler39, euler79, ddim79);
  EXPECT_GT(heun20 / heun40, 3.0);                  // second order: about 4
  EXPECT_NEAR(euler39 / euler79, 2.0, 0.5);         // first order
  EXPECT_LT(heun40, 0.005);                         // 1.3 % of the spread 0.2
  EXPECT_LT(2.5 * heun40, euler79);                 // 79 evaluations each
  EXPECT_LT(2.5 * heun40, ddim79);
}

TEST(KarrasOracle, GuidanceUsesOneDoubledBatchAndScaleOneIsTheClass) {
  const std::vector<Gauss1> classes = {{0.4, 0.15}, {-0.4, 0.15}};
  DiffusionSchedule s = linear_schedule(1000);
  int calls = 0;
  DenoiseFn inner = oracle(s, classes, ModelMeanType::eps);
  DenoiseFn net = [&](const Tensor& x, const std::vector<double>& t, const std::vector<std::int64_t>& labels) {
    ++calls;
    EXPECT_EQ(x.dim(0), 2 * 1500);
    EXPECT_EQ(labels.back(), 2);  // the null label closes the doubled batch
    return inner(x, t, labels);
  };
  SamplerConfig cfg;
  cfg.kind = SamplerConfig::Kind::heun;
  cfg.heun_steps = 40;
  cfg.num_classes = 2;
  cfg.dtype = DType::f64;
  const std::vector<std::int64_t> labels(1500, 0);
  Generator g0(41);
  const std::vector<double> plain = sample(s, oracle(s, classes), {1500, 1}, labels, cfg, g0).to_double_vector();
  EXPECT_NEAR(mean_of(plain), 0.4, 0.02);
  EXPECT_NEAR(std_of(plain) / 0.15, 1.0, 0.06);
  cfg.guidance_scale = 0.0;  // the unconditional mixture: mean 0, std sqrt(0.15^2 + 0.4^2)
  Generator g1(42);
  const std::vector<double> uncond = sample(s, net, {1500, 1}, labels, cfg, g1).to_double_vector();
  EXPECT_EQ(calls, 79);
  EXPECT_NEAR(mean_of(uncond), 0.0, 0.05);
  EXPECT_NEAR(std_of(uncond), std::sqrt(0.15 * 0.15 + 0.16), 0.03);
  cfg.guidance_scale = 3.0;  // pushed further in the class direction
  Generator g3(43);
  EXPECT_GT(mean_of(sample(s, oracle(s, classes), {1500, 1}, labels, cfg, g3).to_double_vector()),
            mean_of(plain) + 0.03);
}

// --- ddpm-sample --sampler heun, through a real (tiny, random) UNet at fractional t --------

TEST(KarrasSampleRun, HeunThroughDdpmSampleRecordsItsSettings) {
  run::ModelSource m = testing::tiny_model_source();
  run::SampleOptions o;
  o.checkpoint = "tiny";
  o.num_samples = 3;
  o.batch_size = 3;
  o.sampler = "heun";
  o.sampling_steps = 3;
  o.show_steps = true;
  o.out = testing::temp_path("karras_sample_run");
  run::SampleResult r = run::run_sample(o, m);
  EXPECT_EQ(r.pixels.size(), 3u * 8 * 8 * 3);
  EXPECT_EQ(read_png(o.out + "/steps.png").width, 3 * 10 + 2);  // one column per Heun step
  nlohmann::json info = nlohmann::json::parse(read_file(o.out + "/sample_info.json"));
  EXPECT_EQ(info["sampler"], "heun");
  EXPECT_EQ(info["sampling_steps"], 3);
  EXPECT_EQ(info["respacing"], "");
  EXPECT_EQ(info["clip_x0"], true);  // ddpm-sample clamps by default, Heun included (--clip-x0)
  EXPECT_EQ(info["heun"]["network_evaluations_per_sample"], 5);
  EXPECT_EQ(info["heun"]["rho"], 7.0);
  const std::vector<double> train = vp_sigmas(DiffusionSchedule(linear_betas(40)));
  EXPECT_DOUBLE_EQ(info["heun"]["sigma_max"].get<double>(), train.back());
  EXPECT_DOUBLE_EQ(info["heun"]["sigma_min"].get<double>(), train.front());
  // 0 steps: N = 18. DDPM/DDIM-only flags are refused.
  run::SampleOptions d = o;
  d.out = o.out + "_unused";  // a folder that does not exist, so only the flags are judged
  d.sampling_steps = 0;
  EXPECT_EQ(run::make_sampler_config(d, m).heun_steps, 18);
  EXPECT_NO_THROW(run::check_sample_options(d));
  d.eta = 0.5;
  EXPECT_THROW(run::check_sample_options(d), ValueError);
  d.eta = 0.0;
  d.variance = "fixed_large";
  EXPECT_THROW(run::check_sample_options(d), ValueError);
  std::filesystem::remove_all(o.out);
}

}  // namespace
}  // namespace ddpm::diffusion
