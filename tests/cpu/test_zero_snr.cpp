// Zero terminal SNR (Lin, Liu, Li & Yang 2024) and its companions: the schedule rescale
// (schedule.h rescale_zero_terminal_snr), every coefficient and sampler at alpha_bar = 0,
// respacing that keeps T-1, and the guidance rescale (sampler.h). The samplers are checked
// against the exact v-network of Gaussian data (a closed form, independent of the code under
// test); the guidance rescale against a hand computation in double.
#include <cmath>
#include <limits>
#include <vector>

#include <gtest/gtest.h>

#include "engine/ops/concat.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/reduce.h"
#include "engine/rng.h"
#include "models/diffusion/karras.h"
#include "models/diffusion/likelihood.h"
#include "models/diffusion/respace.h"
#include "models/diffusion/sampler.h"
#include "models/diffusion/schedule.h"
#include "support/value_error.h"

namespace ddpm::diffusion {
namespace {

constexpr double kMu = 0.2, kS = 0.3;

DiffusionSchedule zero_snr_linear(std::int64_t T) { return DiffusionSchedule(rescale_zero_terminal_snr(linear_betas(T))); }

// The exact v-network for data N(kMu, kS^2) per element, at real timesteps: alpha_bar at an
// integer t from the schedule, between levels from the interpolated sigma (karras.h
// sigma_for_timestep), so the Karras samplers see the same closed form. With
// V = abar s^2 + 1 - abar,  E[eps | x] = sqrt(1 - abar) (x - sqrt(abar) mu) / V and
// E[x_0 | x] = mu + sqrt(abar) s^2 (x - sqrt(abar) mu) / V, so
//   v* = sqrt(abar) E[eps | x] - sqrt(1 - abar) E[x_0 | x],   v* = -mu at abar = 0.
DenoiseFn gaussian_v_oracle(const DiffusionSchedule& sched) {
  const std::vector<double> abars = sched.alphas_cumprod, sig = vp_sigmas(sched);
  return [abars, sig](const Tensor& x, const std::vector<double>& t, const std::vector<std::int64_t>&) {
    const std::vector<double> xv = x.to_double_vector();
    std::vector<double> out(xv.size());
    const std::size_t per = xv.size() / t.size();
    for (std::size_t i = 0; i < t.size(); ++i) {
      double abar;
      if (t[i] == std::floor(t[i])) {
        abar = abars[static_cast<std::size_t>(t[i])];
      } else {
        const double s = sigma_for_timestep(sig, t[i]);
        abar = 1.0 / (1.0 + s * s);
      }
      const double V = abar * kS * kS + 1.0 - abar;
      for (std::size_t j = i * per; j < (i + 1) * per; ++j) {
        const double r = xv[j] - std::sqrt(abar) * kMu;
        const double eps = std::sqrt(1.0 - abar) * r / V, x0 = kMu + std::sqrt(abar) * kS * kS * r / V;
        out[j] = std::sqrt(abar) * eps - std::sqrt(1.0 - abar) * x0;
      }
    }
    return Tensor::from_vector(out, x.shape(), x.dtype());
  };
}

void expect_data_moments(const Tensor& x, const char* what) {
  const std::vector<double> v = x.to_double_vector();
  double m = 0, sq = 0;
  for (double e : v) {
    ASSERT_TRUE(std::isfinite(e)) << what;
    m += e;
  }
  m /= static_cast<double>(v.size());
  for (double e : v) sq += (e - m) * (e - m);
  const double sd = std::sqrt(sq / static_cast<double>(v.size()));
  // 2048 draws: the standard errors are 0.0066 (mean) and 0.0047 (std); 5 of them.
  EXPECT_NEAR(m, kMu, 0.035) << what;
  EXPECT_NEAR(sd, kS, 0.025) << what;
}

TEST(ZeroSnr, RescaleEndsAtZeroKeepsTheFirstLevelAndIsAffineInSqrtAlphaBar) {
  for (const auto& [name, betas] : {std::pair<const char*, std::vector<double>>{"linear", linear_betas(1000)},
                                    {"cosine", cosine_betas(100)}}) {
    const DiffusionSchedule old_s(betas), new_s(rescale_zero_terminal_snr(betas));
    const std::size_t T = betas.size();
    EXPECT_EQ(new_s.alphas_cumprod.back(), 0.0) << name;
    EXPECT_EQ(new_s.betas.back(), 1.0) << name;
    EXPECT_TRUE(new_s.zero_terminal_snr());
    EXPECT_FALSE(old_s.zero_terminal_snr());
    EXPECT_NEAR(new_s.sqrt_alphas_cumprod[0], old_s.sqrt_alphas_cumprod[0], 1e-14) << name;
    // Algorithm 1 in closed form: sqrt_abar' = a sqrt_abar + b with a = s0 / (s0 - sT), b = -a sT.
    const double s0 = old_s.sqrt_alphas_cumprod[0], sT = old_s.sqrt_alphas_cumprod[T - 1];
    const double a = s0 / (s0 - sT), b = -a * sT;
    for (std::size_t t = 0; t < T; ++t) {
      EXPECT_NEAR(new_s.sqrt_alphas_cumprod[t], a * old_s.sqrt_alphas_cumprod[t] + b, 1e-12) << name << " t=" << t;
      EXPECT_GT(new_s.betas[t], 0.0);
      EXPECT_LE(new_s.betas[t], 1.0);
    }
  }
  testing::expect_value_error([] { rescale_zero_terminal_snr({0.1}); }, "at least 2");
  testing::expect_value_error([] { rescale_zero_terminal_snr({0.1, 1.0}); }, "outside (0, 1)");
}

TEST(ZeroSnr, CoefficientsAtTheLastStepAreFiniteOrRefused) {
  const DiffusionSchedule s = zero_snr_linear(100);
  const std::size_t L = 99;
  const double abar_prev = s.alphas_cumprod[L - 1];
  // DDPM eq. 7 at beta = 1, abar = 0: coef1 = sqrt(abar_prev), coef2 = 0, beta~ = 1 - abar_prev.
  EXPECT_NEAR(s.posterior_mean_coef1[L], std::sqrt(abar_prev), 1e-15);
  EXPECT_EQ(s.posterior_mean_coef2[L], 0.0);
  EXPECT_NEAR(s.posterior_variance[L], 1.0 - abar_prev, 1e-15);
  EXPECT_TRUE(std::isfinite(s.posterior_log_variance_clipped[L]));
  EXPECT_EQ(s.log_one_minus_alphas_cumprod[L], 0.0);

  const Tensor x = Tensor::from_vector({0.5, -1.5, 2.0}, {3, 1}, DType::f64);
  const Tensor x0 = Tensor::from_vector({0.1, 0.2, -0.3}, {3, 1}, DType::f64);
  // eps from x_0 at abar = 0 is x_t itself; elsewhere the closed form (x - sqrt(abar) x0) / sqrt(1 - abar).
  for (std::int64_t t : {std::int64_t{0}, std::int64_t{50}, std::int64_t{99}}) {
    const std::vector<double> eps = predict_eps_from_x0(s, x, Timesteps(3, t), x0).to_double_vector();
    const double ab = s.alphas_cumprod[static_cast<std::size_t>(t)];
    for (std::size_t i = 0; i < 3; ++i)
      EXPECT_NEAR(eps[i], (x.to_double_vector()[i] - std::sqrt(ab) * x0.to_double_vector()[i]) / std::sqrt(1.0 - ab),
                  1e-12) << "t=" << t;
  }
  // v at abar = 0: x_0 = -v and eps = x_t.
  const Tensor v = Tensor::from_vector({0.7, 0.0, -0.2}, {3, 1}, DType::f64);
  EXPECT_EQ(predict_x0_from_v(s, x, Timesteps(3, 99), v).to_double_vector(), std::vector<double>({-0.7, 0.0, 0.2}));
  EXPECT_EQ(predict_eps_from_v(s, x, Timesteps(3, 99), v).to_double_vector(), x.to_double_vector());
  testing::expect_value_error([&] { predict_x0_from_eps(s, x, Timesteps(3, 99), v); }, "alpha_bar is 0 at timestep 99");
  testing::expect_value_error([&] { check_mean_type_for_schedule(s, ModelMeanType::eps, "here"); },
                              "zero terminal SNR");
  check_mean_type_for_schedule(s, ModelMeanType::v, "here");
  check_mean_type_for_schedule(DiffusionSchedule(linear_betas(100)), ModelMeanType::eps, "here");
}

TEST(ZeroSnr, RespacingKeepsTheLastStepAndItsBetaOfOne) {
  const std::vector<double> betas = rescale_zero_terminal_snr(linear_betas(100));
  for (const char* spacing : {"10", "7", "1", "ddim10", "3,4", "100"}) {
    const Timesteps kept = space_timesteps(100, spacing);
    EXPECT_EQ(kept.back(), 99) << spacing << ": sampling must start from the fully noised step";
    const RespacedSchedule rs = respace(betas, spacing);
    EXPECT_EQ(rs.schedule.betas.back(), 1.0) << spacing;
    EXPECT_EQ(rs.schedule.alphas_cumprod.back(), 0.0) << spacing;
  }
  // The same holds for an ordinary schedule: every form is trailing or linspace, never leading.
  for (std::int64_t n : {3, 9, 25, 49})
    EXPECT_EQ(space_timesteps(50, std::to_string(n)).back(), 49) << n;
}

SamplerConfig oracle_config(SamplerConfig::Kind kind, const std::string& respacing) {
  SamplerConfig c;
  c.kind = kind;
  c.respacing = respacing;
  c.mean_type = ModelMeanType::v;
  c.clip_x0 = false;  // the oracle's x_0^ is exact; clamping would bias the moments
  c.dtype = DType::f64;
  return c;
}

TEST(ZeroSnr, GaussianOracleSamplesHaveTheDataMoments) {
  const DiffusionSchedule s = zero_snr_linear(1000);
  const DenoiseFn net = gaussian_v_oracle(s);
  const Shape shape{8, 16, 16, 1};  // 2048 draws
  {
    Generator g(1);
    expect_data_moments(sample(s, net, shape, {}, oracle_config(SamplerConfig::Kind::ddpm, ""), g), "ddpm");
  }
  {
    Generator g(2);
    expect_data_moments(sample(s, net, shape, {}, oracle_config(SamplerConfig::Kind::ddpm, "250"), g), "ddpm, 25");
  }
  {
    Generator g(3);
    expect_data_moments(sample(s, net, shape, {}, oracle_config(SamplerConfig::Kind::ddim, "ddim100"), g), "ddim");
  }
  {
    SamplerConfig c = oracle_config(SamplerConfig::Kind::ddim, "ddim100");
    c.corrector_steps = 1;  // the Langevin score at abar = 0 is -eps = -x: finite
    Generator g(4);
    expect_data_moments(sample(s, net, shape, {}, c, g), "ddim + langevin");
  }
  // The first x_0^ of DDPM is -v = mu exactly (x_T carries nothing of the data).
  Generator g(5);
  double first_x0 = std::numeric_limits<double>::quiet_NaN();
  sample(s, net, shape, {}, oracle_config(SamplerConfig::Kind::ddpm, "10"), g, Device::cpu(),
         [&](const StepInfo& info) {
           if (info.index == 9) first_x0 = info.pred_x0.to_double_vector()[0];
         });
  EXPECT_NEAR(first_x0, kMu, 1e-12);
}

TEST(ZeroSnr, KarrasSamplersCapSigmaMaxAtTheLargestFiniteLevel) {
  const DiffusionSchedule s = zero_snr_linear(1000);
  const std::vector<double> sig = vp_sigmas(s);
  ASSERT_EQ(sig.size(), 999u);  // sigma_{T-1} = infinity is no level
  const double top = std::sqrt((1.0 - s.alphas_cumprod[998]) / s.alphas_cumprod[998]);
  EXPECT_EQ(sig.back(), top);
  SamplerConfig c = oracle_config(SamplerConfig::Kind::heun, "");
  EXPECT_EQ(resolve_sigma_range(s, c).second, top);
  c.sigma_max = top * 2.0;
  testing::expect_value_error([&] { resolve_sigma_range(s, c); }, "training range");
  c.sigma_max = 0.0;
  const DenoiseFn net = gaussian_v_oracle(s);
  // Heun from the capped top (sigma = 15406 here): the data's moments. The levels span 6
  // decades, so it needs more of them than at sigma_max = 157 (test_karras.cpp: 40 there).
  c.heun_steps = 80;
  Generator g(7);
  expect_data_moments(karras_sample(s, net, {8, 16, 16, 1}, {}, c, g, Device::cpu(), {}, KarrasSolver::heun), "heun");
  // The first-order and multistep solvers carry larger truncation errors in the spread
  // (test_karras.cpp measures them); here: finite, and the mean right.
  c.heun_steps = 40;
  for (KarrasSolver solver : {KarrasSolver::euler, KarrasSolver::dpmpp_2m, KarrasSolver::euler_ancestral}) {
    Generator gs(8);
    const std::vector<double> v =
        karras_sample(s, net, {8, 16, 16, 1}, {}, c, gs, Device::cpu(), {}, solver).to_double_vector();
    double m = 0;
    for (double e : v) {
      ASSERT_TRUE(std::isfinite(e)) << karras_solver_name(solver);
      m += e / static_cast<double>(v.size());
    }
    EXPECT_NEAR(m, kMu, 0.035) << karras_solver_name(solver);
  }
}

TEST(ZeroSnr, SamplersRefuseAnEpsNetwork) {
  const DiffusionSchedule s = zero_snr_linear(60);
  SamplerConfig c = oracle_config(SamplerConfig::Kind::ddpm, "");
  c.mean_type = ModelMeanType::eps;
  const DenoiseFn net = [](const Tensor& x, const std::vector<double>&, const std::vector<std::int64_t>&) { return x; };
  Generator g(0);
  testing::expect_value_error([&] { sample(s, net, {2, 1}, {}, c, g); }, "use --predict v");
}

TEST(ZeroSnr, BitsPerDimAreFiniteWithAZeroPriorTerm) {
  const DiffusionSchedule s = zero_snr_linear(60);
  const DenoiseFn net = gaussian_v_oracle(s);
  const ModelGaussianFn model = [&](const Tensor& xt, const Timesteps& t) {
    const Tensor v = net(xt, std::vector<double>(t.begin(), t.end()), {});
    return p_mean_variance_from_x0(s, VarianceType::fixed_small, x0_from_prediction(s, ModelMeanType::v, v, xt, t),
                                   Tensor(), xt, t, /*clip_x0=*/true);
  };
  // Images on the 8-bit grid.
  std::vector<double> px;
  for (int i = 0; i < 2 * 4 * 4; ++i) px.push_back(-1.0 + 2.0 * ((i * 37) % 256) / 255.0);
  const Tensor x0 = Tensor::from_vector(px, {2, 4, 4, 1}, DType::f64);
  Generator g(3);
  const BpdResult r = calc_bpd_loop(s, model, x0, g);
  for (std::size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(r.prior_bpd[i], 0.0);  // q(x_T | x_0) = N(0, I) exactly
    EXPECT_TRUE(std::isfinite(r.total_bpd[i]));
    EXPECT_TRUE(std::isfinite(r.terms_bpd.back()[i]));  // L_{T-1}: KL at the abar = 0 step
  }
  testing::expect_value_error(
      [&] {
        p_mean_variance(s, VarianceType::fixed_small, x0, Tensor(), x0, Timesteps(2, 59), true);
      },
      "cannot be recovered");
}

// A 2-class classifier on [N, 1] points: logits (m, -m), m = mean of x; log p(0 | x) rises with x.
Tensor toy_classifier(const Tensor& x, const std::vector<double>&) {
  const Tensor m = mean(x, {1}, /*keepdim=*/true);  // [N, 1]
  return concat({m, scale(m, -1.0)}, 1);             // [N, 2]
}

TEST(ZeroSnr, ClassifierGuidedDdimSkipsOnlyTheZeroSnrStep) {
  const DiffusionSchedule s = zero_snr_linear(60);
  const DenoiseFn net = gaussian_v_oracle(s);
  ClassifierGuidance guidance;
  guidance.classifier = toy_classifier;
  guidance.scale = 4.0;
  guidance.labels = std::vector<std::int64_t>(256, 0);
  SamplerConfig c = oracle_config(SamplerConfig::Kind::ddim, "ddim10");
  Generator g1(9), g2(9);
  const Tensor guided = sample(s, net, {256, 1}, {}, c, g1, Device::cpu(), {}, guidance);
  const Tensor plain = sample(s, net, {256, 1}, {}, c, g2);
  double shift = 0;
  const std::vector<double> a = guided.to_double_vector(), b = plain.to_double_vector();
  for (std::size_t i = 0; i < a.size(); ++i) {
    ASSERT_TRUE(std::isfinite(a[i]));
    shift += (a[i] - b[i]) / static_cast<double>(a.size());
  }
  EXPECT_GT(shift, 0.0);  // guided towards class 0, i.e. larger x, on the steps after the first
}

// A class-conditional fake network: conditional rows get c(x) = 2x + 1, unconditional ones u(x) = x.
Tensor fake_conditional_net(const Tensor& x, const std::vector<double>&, const std::vector<std::int64_t>& labels) {
  std::vector<double> v = x.to_double_vector();
  const std::size_t per = v.size() / labels.size();
  for (std::size_t i = 0; i < labels.size(); ++i)
    for (std::size_t j = i * per; j < (i + 1) * per; ++j)
      if (labels[i] != 3) v[j] = 2.0 * v[j] + 1.0;  // label 3 is the null label (num_classes = 3)
  return Tensor::from_vector(v, x.shape(), x.dtype());
}

TEST(GuidanceRescale, MatchesAHandComputation) {
  const std::vector<double> xs = {0.5, -1.0, 2.0, 0.25, 3.0, 1.0, -2.0, 0.0};
  const Tensor x = Tensor::from_vector(xs, {2, 2, 2, 1}, DType::f64);
  SamplerConfig c;
  c.num_classes = 3;
  c.dtype = DType::f64;
  c.guidance_scale = 3.0;
  const std::vector<std::int64_t> labels{0, 1};
  const std::vector<double> plain = network_output(fake_conditional_net, c, x, 10.0, labels).pred.to_double_vector();
  c.guidance_rescale = 0.7;
  const std::vector<double> got = network_output(fake_conditional_net, c, x, 10.0, labels).pred.to_double_vector();
  for (int n = 0; n < 2; ++n) {
    std::vector<double> cond, cfg;
    for (int j = 0; j < 4; ++j) {
      const double xv = xs[static_cast<std::size_t>(4 * n + j)], cv = 2.0 * xv + 1.0;
      cond.push_back(cv);
      cfg.push_back(xv + 3.0 * (cv - xv));
    }
    auto sd = [](const std::vector<double>& v) {
      double m = 0, q = 0;
      for (double e : v) m += e / 4.0;
      for (double e : v) q += (e - m) * (e - m) / 4.0;
      return std::sqrt(q);
    };
    const double ratio = sd(cond) / sd(cfg);
    for (int j = 0; j < 4; ++j) {
      const std::size_t k = static_cast<std::size_t>(4 * n + j);
      EXPECT_NEAR(plain[k], cfg[static_cast<std::size_t>(j)], 1e-14);
      EXPECT_NEAR(got[k], 0.7 * cfg[static_cast<std::size_t>(j)] * ratio + 0.3 * cfg[static_cast<std::size_t>(j)],
                  1e-12);
    }
  }
  c.guidance_rescale = 1.0;  // phi = 1: the guided prediction takes the conditional std exactly
  const Tensor full = network_output(fake_conditional_net, c, x, 10.0, labels).pred;
  c.guidance_scale = 1.0;
  c.guidance_rescale = 0.0;
  const Tensor cond = network_output(fake_conditional_net, c, x, 10.0, labels).pred;
  const std::vector<double> sd_full = sqrt(mean(square(sub(full, mean(full, {1, 2, 3}, true))), {1, 2, 3})).to_double_vector();
  const std::vector<double> sd_cond = sqrt(mean(square(sub(cond, mean(cond, {1, 2, 3}, true))), {1, 2, 3})).to_double_vector();
  for (int n = 0; n < 2; ++n) EXPECT_NEAR(sd_full[static_cast<std::size_t>(n)], sd_cond[static_cast<std::size_t>(n)], 1e-12);
  // phi without guidance, or outside [0, 1], is refused.
  c.guidance_rescale = 0.5;
  testing::expect_value_error([&] { network_output(fake_conditional_net, c, x, 10.0, labels); }, "guidance scale is 1");
  c.guidance_scale = 2.0;
  c.guidance_rescale = 1.5;
  testing::expect_value_error([&] { network_output(fake_conditional_net, c, x, 10.0, labels); }, "[0, 1]");
}

}  // namespace
}  // namespace ddpm::diffusion
