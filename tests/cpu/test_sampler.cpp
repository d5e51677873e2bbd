// Samplers: DDPM ancestral and DDIM, respacing with original timesteps, the last step,
// classifier-free guidance in one doubled batch, and ORACLE tests: for Gaussian data the
// optimal eps-predictor is known in closed form, so the sampler math is checked apart from
// any training.
//
// Oracle. Data x_0 ~ N(mu, sigma^2 I), x_t = sqrt(abar) x_0 + sqrt(1 - abar) eps. (eps, x_t)
// are jointly Gaussian with Cov(eps, x_t) = sqrt(1 - abar) and Var(x_t) = abar sigma^2 + 1 - abar,
// so the MSE-optimal prediction is
//   eps*(x_t, t) = E[eps | x_t] = sqrt(1 - abar) (x_t - sqrt(abar) mu) / (abar sigma^2 + 1 - abar).
// For a mixture of such Gaussians (the unconditional model of class-conditional data) it is
// the responsibility-weighted sum of the per-class predictors.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "engine/error.h"
#include "models/diffusion/respace.h"
#include "models/diffusion/sampler.h"

namespace ddpm::diffusion {
namespace {

struct Gauss2 {
  double mx, my, sigma;
};

// Per-sample oracle eps for a mixture of isotropic Gaussians with equal weights.
std::vector<double> mixture_eps(const DiffusionSchedule& s, const std::vector<Gauss2>& comps,
                                const std::vector<double>& xv, const std::vector<double>& t) {
  std::vector<double> out(xv.size());
  const std::size_t n = t.size();
  for (std::size_t i = 0; i < n; ++i) {
    const double ab = s.alphas_cumprod[static_cast<std::size_t>(t[i])];
    const double px = xv[2 * i], py = xv[2 * i + 1];
    std::vector<double> logw(comps.size()), ex(comps.size()), ey(comps.size());
    double maxw = -1e300;
    for (std::size_t k = 0; k < comps.size(); ++k) {
      const double var = ab * comps[k].sigma * comps[k].sigma + 1.0 - ab;
      const double dx = px - std::sqrt(ab) * comps[k].mx, dy = py - std::sqrt(ab) * comps[k].my;
      logw[k] = -(dx * dx + dy * dy) / (2 * var) - std::log(var);
      maxw = std::max(maxw, logw[k]);
      ex[k] = std::sqrt(1 - ab) * dx / var;
      ey[k] = std::sqrt(1 - ab) * dy / var;
    }
    double wsum = 0, sx = 0, sy = 0;
    for (std::size_t k = 0; k < comps.size(); ++k) {
      const double w = std::exp(logw[k] - maxw);
      wsum += w;
      sx += w * ex[k];
      sy += w * ey[k];
    }
    out[2 * i] = sx / wsum;
    out[2 * i + 1] = sy / wsum;
  }
  return out;
}

// An oracle network for the given mean type; labels pick a component, the null label (or
// no labels) the mixture of all.
DenoiseFn oracle(const DiffusionSchedule& s, std::vector<Gauss2> comps, ModelMeanType type = ModelMeanType::eps) {
  return [&s, comps, type](const Tensor& x, const std::vector<double>& t, const std::vector<std::int64_t>& labels) {
    std::vector<double> eps(x.numel()), xv = x.to_double_vector();
    if (labels.empty()) {
      eps = mixture_eps(s, comps, xv, t);
    } else {
      for (std::size_t i = 0; i < t.size(); ++i) {
        std::int64_t y = labels[i];
        std::vector<Gauss2> c = y < static_cast<std::int64_t>(comps.size()) ? std::vector<Gauss2>{comps[y]} : comps;
        std::vector<double> e = mixture_eps(s, c, {xv[2 * i], xv[2 * i + 1]}, {t[i]});
        eps[2 * i] = e[0];
        eps[2 * i + 1] = e[1];
      }
    }
    Tensor e = Tensor::from_vector(eps, x.shape(), x.dtype());
    Timesteps ti(t.size());
    for (std::size_t i = 0; i < t.size(); ++i) ti[i] = static_cast<std::int64_t>(t[i]);
    if (type == ModelMeanType::x0) return predict_x0_from_eps(s, x, ti, e);
    if (type == ModelMeanType::v) {
      Tensor x0 = predict_x0_from_eps(s, x, ti, e);
      return v_target(s, x0, e, ti);
    }
    return e;
  };
}

struct Stats {
  double mean[2], std[2];
};

Stats stats(const Tensor& samples) {
  std::vector<double> v = samples.to_double_vector();
  const std::size_t n = v.size() / 2;
  Stats st{};
  for (int d = 0; d < 2; ++d) {
    double m = 0, q = 0;
    for (std::size_t i = 0; i < n; ++i) m += v[2 * i + d];
    m /= n;
    for (std::size_t i = 0; i < n; ++i) q += (v[2 * i + d] - m) * (v[2 * i + d] - m);
    st.mean[d] = m;
    st.std[d] = std::sqrt(q / (n - 1));
  }
  return st;
}

const Gauss2 kData{0.3, -0.2, 0.2};
constexpr std::int64_t kN = 3000;

// The exact std / sigma of what the DISCRETE sampler produces from the oracle. For Gaussian
// data the oracle is affine in x_t, so every step maps x to k x + (const) + s z and the
// sample is exactly Gaussian; its variance follows v <- k^2 v + s^2 from v_T = 1:
//   x_0^ - mu = sqrt(a) sigma^2 / V (x - sqrt(a) mu),  eps^ = sqrt(1 - a) / V (x - sqrt(a) mu),
//   V = a sigma^2 + 1 - a;  DDPM: k = coef1 sqrt(a) sigma^2/V + coef2, s^2 = beta~ (0 at the end);
//   DDIM: k = sqrt(a') sqrt(a) sigma^2/V + sqrt(1 - a' - s^2) sqrt(1 - a)/V.
// With few steps this is visibly below 1 for narrow data (the last step returns the
// posterior mean E[x_0 | x_t], which shrinks): 0.87 for sigma = 0.2 with 50-100 steps.
double discrete_std_ratio(const DiffusionSchedule& base, const std::string& spacing, double sigma, bool ddim,
                          double eta = 0.0) {
  Timesteps kept = space_timesteps(base.num_timesteps(), spacing);
  double v = 1.0;
  for (std::size_t i = kept.size(); i-- > 0;) {
    const double a = base.alphas_cumprod[static_cast<std::size_t>(kept[i])];
    const double ap = i == 0 ? 1.0 : base.alphas_cumprod[static_cast<std::size_t>(kept[i - 1])];
    const double V = a * sigma * sigma + 1 - a;
    const double c0 = std::sqrt(a) * sigma * sigma / V, ce = std::sqrt(1 - a) / V;
    const double beta = 1 - a / ap;
    double k, s2;
    if (ddim) {
      s2 = eta * eta * (1 - ap) / (1 - a) * (1 - a / ap);
      k = std::sqrt(ap) * c0 + std::sqrt(std::max(0.0, 1 - ap - s2)) * ce;
    } else {
      k = beta * std::sqrt(ap) / (1 - a) * c0 + (1 - ap) * std::sqrt(1 - beta) / (1 - a);
      s2 = i == 0 ? 0.0 : beta * (1 - ap) / (1 - a);
    }
    v = k * k * v + s2;
  }
  return std::sqrt(v) / sigma;
}

// Mean within 0.02 of mu (about 5 standard errors of 0.2/sqrt(3000) = 0.0037); std within
// 4 % (3 standard errors, 1/sqrt(2 n) = 1.3 %) of the exact discrete-sampler value, and that
// value within `shrink_tol` of sigma itself.
void expect_matches_data(const Tensor& samples, const Gauss2& g, double exact_ratio, double shrink_tol,
                         const char* what) {
  Stats st = stats(samples);
  const double mu[2] = {g.mx, g.my};
  EXPECT_NEAR(exact_ratio, 1.0, shrink_tol) << what;
  for (int d = 0; d < 2; ++d) {
    EXPECT_NEAR(st.mean[d], mu[d], 0.02) << what << ", axis " << d;
    EXPECT_NEAR(st.std[d] / g.sigma / exact_ratio, 1.0, 0.04) << what << ", axis " << d;
  }
}

DiffusionSchedule linear_schedule(std::int64_t T) { return DiffusionSchedule(linear_betas(T)); }

TEST(SamplerOracle, DdpmAllStepsReproducesTheGaussian) {
  DiffusionSchedule s = linear_schedule(1000);
  SamplerConfig cfg;
  cfg.clip_x0 = false;
  Generator gen(11);
  expect_matches_data(sample(s, oracle(s, {kData}), {2000, 2}, {}, cfg, gen), kData,
                      discrete_std_ratio(s, "1000", kData.sigma, false), 0.03, "DDPM T=1000");
}

TEST(SamplerOracle, DdpmRespaced100ReproducesTheGaussian) {
  DiffusionSchedule s = linear_schedule(1000);
  SamplerConfig cfg;
  cfg.respacing = "100";
  Generator gen(12);
  expect_matches_data(sample(s, oracle(s, {kData}), {kN, 2}, {}, cfg, gen), kData,
                      discrete_std_ratio(s, "100", kData.sigma, false), 0.15, "DDPM respaced 100");
}

TEST(SamplerOracle, DdimEta0With50StepsReproducesTheGaussian) {
  DiffusionSchedule s = linear_schedule(1000);
  SamplerConfig cfg;
  cfg.kind = SamplerConfig::Kind::ddim;
  cfg.respacing = "ddim50";
  Generator gen(13);
  expect_matches_data(sample(s, oracle(s, {kData}), {kN, 2}, {}, cfg, gen), kData,
                      discrete_std_ratio(s, "ddim50", kData.sigma, true), 0.15, "DDIM eta 0, 50 steps");
  // Cosine schedule, x_0 clipping on (the data lies well inside [-1, 1]).
  DiffusionSchedule c(cosine_betas(200));
  cfg.respacing = "ddim50";
  Generator gen2(14);
  expect_matches_data(sample(c, oracle(c, {kData}), {kN, 2}, {}, cfg, gen2), kData,
                      discrete_std_ratio(c, "ddim50", kData.sigma, true), 0.1, "DDIM cosine");
  // eta = 1 (stochastic DDIM) on the same grid.
  cfg.eta = 1.0;
  Generator gen3(15);
  expect_matches_data(sample(c, oracle(c, {kData}), {kN, 2}, {}, cfg, gen3), kData,
                      discrete_std_ratio(c, "ddim50", kData.sigma, true, 1.0), 0.15, "DDIM cosine eta 1");
}

TEST(SamplerOracle, EveryMeanTypeGivesTheSameSamples) {
  DiffusionSchedule s(cosine_betas(100));
  SamplerConfig cfg;
  cfg.kind = SamplerConfig::Kind::ddim;
  cfg.respacing = "20";
  cfg.dtype = DType::f64;
  Generator g0(5);
  std::vector<double> ref = sample(s, oracle(s, {kData}), {64, 2}, {}, cfg, g0).to_double_vector();
  for (ModelMeanType type : {ModelMeanType::x0, ModelMeanType::v}) {
    cfg.mean_type = type;
    Generator g(5);
    std::vector<double> got = sample(s, oracle(s, {kData}, type), {64, 2}, {}, cfg, g).to_double_vector();
    for (std::size_t i = 0; i < ref.size(); ++i) ASSERT_NEAR(got[i], ref[i], 1e-9) << model_mean_type_name(type);
  }
}

TEST(Sampler, DdimEtaOneMatchesDdpmWithFixedSmallVariance) {
  DiffusionSchedule s(cosine_betas(100));
  SamplerConfig ddpm;
  ddpm.respacing = "25";
  ddpm.dtype = DType::f64;
  SamplerConfig ddim = ddpm;
  ddim.kind = SamplerConfig::Kind::ddim;
  ddim.eta = 1.0;
  Generator g1(21), g2(21);
  std::vector<double> a = sample(s, oracle(s, {kData}), {32, 2}, {}, ddpm, g1).to_double_vector();
  std::vector<double> b = sample(s, oracle(s, {kData}), {32, 2}, {}, ddim, g2).to_double_vector();
  EXPECT_EQ(g1.offset(), g2.offset());  // the same noise draws, in the same order
  for (std::size_t i = 0; i < a.size(); ++i) ASSERT_NEAR(a[i], b[i], 1e-9);
}

TEST(Sampler, DdimEta0IsDeterministicAndItsLastStepReturnsX0) {
  DiffusionSchedule s(cosine_betas(100));
  // An x_0-predicting model whose prediction is known: 0.25 - 0.5 x (a function of x_t).
  DenoiseFn net = [](const Tensor& x, const std::vector<double>&, const std::vector<std::int64_t>&) {
    std::vector<double> v = x.to_double_vector();
    for (double& e : v) e = 0.25 - 0.5 * e;
    return Tensor::from_vector(v, x.shape(), x.dtype());
  };
  SamplerConfig cfg;
  cfg.kind = SamplerConfig::Kind::ddim;
  cfg.mean_type = ModelMeanType::x0;
  cfg.respacing = "ddim10";
  cfg.dtype = DType::f64;
  std::vector<double> x_before_last;
  StepCallback cb = [&](const StepInfo& info) {
    if (info.index == 1) x_before_last = info.x.to_double_vector();
  };
  Generator g1(3), g2(3);
  std::vector<double> a = sample(s, net, {16, 2}, {}, cfg, g1, Device::cpu(), cb).to_double_vector();
  std::vector<double> b = sample(s, net, {16, 2}, {}, cfg, g2).to_double_vector();
  EXPECT_EQ(a, b);
  EXPECT_EQ(g1.offset(), 32u);  // only x_T was drawn
  ASSERT_EQ(x_before_last.size(), a.size());
  for (std::size_t i = 0; i < a.size(); ++i) EXPECT_DOUBLE_EQ(a[i], std::clamp(0.25 - 0.5 * x_before_last[i], -1.0, 1.0));
}

TEST(Sampler, RespacedSamplingCallsTheNetworkWithOriginalTimesteps) {
  DiffusionSchedule s(cosine_betas(100));
  for (const char* spacing : {"10", "ddim25", "5,10"}) {
    std::vector<double> seen;
    DenoiseFn net = [&](const Tensor& x, const std::vector<double>& t, const std::vector<std::int64_t>&) {
      for (double ti : t) EXPECT_EQ(ti, t[0]);
      seen.push_back(t[0]);
      return Tensor::zeros(x.shape(), x.dtype());
    };
    for (auto kind : {SamplerConfig::Kind::ddpm, SamplerConfig::Kind::ddim}) {
      seen.clear();
      SamplerConfig cfg;
      cfg.kind = kind;
      cfg.respacing = spacing;
      Generator gen(1);
      sample(s, net, {4, 2}, {}, cfg, gen);
      Timesteps kept = space_timesteps(100, spacing);
      ASSERT_EQ(seen.size(), kept.size()) << spacing;
      EXPECT_EQ(seen.front(), 99.0) << spacing;
      for (std::size_t i = 0; i < seen.size(); ++i) EXPECT_EQ(seen[i], static_cast<double>(kept[kept.size() - 1 - i]));
    }
  }
}

TEST(Sampler, NoNoiseIsAddedOnTheLastDdpmStep) {
  DiffusionSchedule s(cosine_betas(50));
  DenoiseFn net = [](const Tensor& x, const std::vector<double>&, const std::vector<std::int64_t>&) {
    return Tensor::full(x.shape(), 0.1, x.dtype());
  };
  SamplerConfig cfg;
  cfg.dtype = DType::f64;
  std::vector<double> pred_x0_last;
  Generator gen(8);
  Tensor out = sample(s, net, {8, 2}, {}, cfg, gen, Device::cpu(), [&](const StepInfo& info) {
    if (info.index == 0) pred_x0_last = info.pred_x0.to_double_vector();
  });
  // x_T plus 49 noisy steps, none for the last: 50 draws of 16 numbers.
  EXPECT_EQ(gen.offset(), 50u * 16u);
  std::vector<double> v = out.to_double_vector();
  for (std::size_t i = 0; i < v.size(); ++i) EXPECT_DOUBLE_EQ(v[i], pred_x0_last[i]);
}

TEST(Sampler, VarianceChoicesAndDefaults) {
  SamplerConfig cfg;
  EXPECT_EQ(resolve_variance(cfg, true), VarianceType::fixed_small);
  cfg.learned_sigma = true;
  EXPECT_EQ(resolve_variance(cfg, true), VarianceType::learned_range);
  cfg.learned_sigma = false;
  cfg.variance = VarianceType::fixed_large;
  EXPECT_EQ(resolve_variance(cfg, false), VarianceType::fixed_large);
  EXPECT_THROW(resolve_variance(cfg, true), ValueError);
  cfg.variance = VarianceType::learned_range;
  EXPECT_THROW(resolve_variance(cfg, false), ValueError);
  EXPECT_THROW(parse_sampler_kind("euler"), ValueError);
}

TEST(Sampler, LearnedVarianceAtTheLowEndIsFixedSmall) {
  // v = -1 gives log Sigma = log beta~ (clipped): the fixed-small sampler, step for step.
  DiffusionSchedule s(cosine_betas(60));
  DenoiseFn base = oracle(s, {kData});
  DenoiseFn learned = [&](const Tensor& x, const std::vector<double>& t, const std::vector<std::int64_t>& y) {
    std::vector<double> e = base(x, t, y).to_double_vector(), out;
    for (std::size_t i = 0; i < e.size() / 2; ++i) out.insert(out.end(), {e[2 * i], e[2 * i + 1], -1.0, -1.0});
    return Tensor::from_vector(out, {x.dim(0), 4}, x.dtype());
  };
  SamplerConfig fixed;
  fixed.respacing = "15";
  fixed.dtype = DType::f64;
  SamplerConfig lr = fixed;
  lr.learned_sigma = true;
  Generator g1(4), g2(4);
  std::vector<double> a = sample(s, base, {16, 2}, {}, fixed, g1).to_double_vector();
  std::vector<double> b = sample(s, learned, {16, 2}, {}, lr, g2).to_double_vector();
  for (std::size_t i = 0; i < a.size(); ++i) ASSERT_NEAR(a[i], b[i], 1e-9);
}

// --- classifier-free guidance ------------------------------------------------------------
const std::vector<Gauss2> kClasses = {{0.4, 0.0, 0.15}, {-0.4, 0.0, 0.15}};

TEST(SamplerGuidance, EvaluatesBothBranchesInOneDoubledBatch) {
  DiffusionSchedule s(cosine_betas(40));
  int calls = 0;
  DenoiseFn net = [&](const Tensor& x, const std::vector<double>& t, const std::vector<std::int64_t>& labels) {
    ++calls;
    EXPECT_EQ(x.dim(0), 6);
    EXPECT_EQ(t.size(), 6u);
    EXPECT_EQ(labels, (std::vector<std::int64_t>{0, 1, 1, 2, 2, 2}));  // requested, then null = 2
    return Tensor::zeros(x.shape(), x.dtype());
  };
  SamplerConfig cfg;
  cfg.num_classes = 2;
  cfg.guidance_scale = 3.0;
  cfg.respacing = "8";
  Generator gen(0);
  sample(s, net, {3, 2}, {0, 1, 1}, cfg, gen);
  EXPECT_EQ(calls, 8);
}

TEST(SamplerGuidance, ScaleOneMatchesTheClassAndLargerScalesPushFurther) {
  DiffusionSchedule s(cosine_betas(100));
  DenoiseFn net = oracle(s, kClasses);
  SamplerConfig cfg;
  cfg.kind = SamplerConfig::Kind::ddim;
  cfg.respacing = "ddim50";
  cfg.num_classes = 2;
  std::vector<std::int64_t> labels(2000, 0);
  Generator g1(31);
  Stats plain = stats(sample(s, net, {2000, 2}, labels, cfg, g1));
  EXPECT_NEAR(plain.mean[0], 0.4, 0.02);
  EXPECT_NEAR(plain.mean[1], 0.0, 0.02);
  const double exact = discrete_std_ratio(s, "ddim50", 0.15, true);  // 0.91: see above
  EXPECT_NEAR(plain.std[0] / 0.15 / exact, 1.0, 0.05);
  // s = 0 is the unconditional model: the mixture, mean 0, std sqrt(0.15^2 + 0.4^2) on x.
  cfg.guidance_scale = 0.0;
  Generator g0(32);
  Stats uncond = stats(sample(s, net, {2000, 2}, labels, cfg, g0));
  EXPECT_NEAR(uncond.mean[0], 0.0, 0.05);
  EXPECT_NEAR(uncond.std[0], std::sqrt(0.15 * 0.15 + 0.16), 0.03);
  // s = 3 moves the samples further from the unconditional mean (0) in the class direction.
  cfg.guidance_scale = 3.0;
  Generator g3(33);
  Stats guided = stats(sample(s, net, {2000, 2}, labels, cfg, g3));
  EXPECT_GT(guided.mean[0], plain.mean[0] + 0.03);
  EXPECT_NEAR(guided.mean[1], 0.0, 0.02);
}

TEST(SamplerGuidance, GuidanceWithoutClassesIsAClearError) {
  DiffusionSchedule s(cosine_betas(40));
  DenoiseFn net = oracle(s, {kData});
  SamplerConfig cfg;
  cfg.guidance_scale = 2.0;
  Generator gen(0);
  try {
    sample(s, net, {2, 2}, {}, cfg, gen);
    FAIL() << "expected a ValueError";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("class-conditional"), std::string::npos) << e.what();
  }
  cfg.num_classes = 2;
  EXPECT_THROW(sample(s, net, {2, 2}, {0}, cfg, gen), ValueError);     // one label for two samples
  EXPECT_THROW(sample(s, net, {2, 2}, {0, 2}, cfg, gen), ValueError);  // the null label is not a class
}

TEST(Sampler, RejectsAWronglyShapedNetworkOutput) {
  DiffusionSchedule s(cosine_betas(40));
  DenoiseFn net = [](const Tensor& x, const std::vector<double>&, const std::vector<std::int64_t>&) {
    return Tensor::zeros({x.dim(0), 3}, x.dtype());
  };
  SamplerConfig cfg;
  Generator gen(0);
  EXPECT_THROW(sample(s, net, {2, 2}, {}, cfg, gen), ValueError);
}

}  // namespace
}  // namespace ddpm::diffusion
