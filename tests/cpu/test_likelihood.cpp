// KL, the discretized Gaussian decoder, bits/dim and the VLB / hybrid losses, against
// closed forms computed here, with finite-difference gradient checks in double.
#include <cmath>

#include <gtest/gtest.h>

#include "engine/error.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/reduce.h"
#include "models/diffusion/likelihood.h"
#include "support/gradcheck.h"

namespace ddpm::diffusion {
namespace {

using testing::gradcheck;
using testing::random_tensor;
using testing::Inputs;

Tensor f64(std::vector<double> v, const Shape& shape) { return Tensor::from_vector(v, shape); }

double approx_cdf(double x) { return 0.5 * (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x))); }

// Bin centres -1 + 2k/255 for k = 0..255.
std::vector<double> bin_centres() {
  std::vector<double> c(256);
  for (int k = 0; k < 256; ++k) c[k] = -1.0 + 2.0 * k / 255.0;
  return c;
}

TEST(Likelihood, NormalKlClosedForm) {
  Tensor m = f64({0.3, -1.2}, {2}), lv = f64({0.1, -2.0}, {2});
  for (double v : normal_kl(m, lv, m, lv).to_double_vector()) EXPECT_EQ(v, 0.0);
  // KL(N(m1, s1^2) || N(m2, s2^2)) = log(s2/s1) + (s1^2 + (m1-m2)^2) / (2 s2^2) - 1/2
  double m1 = 1.0, v1 = std::exp(0.2), m2 = -0.5, v2 = std::exp(-0.3);
  double expected = 0.5 * std::log(v2 / v1) + (v1 + (m1 - m2) * (m1 - m2)) / (2 * v2) - 0.5;
  double got = normal_kl(f64({m1}, {1}), f64({0.2}, {1}), f64({m2}, {1}), f64({-0.3}, {1})).item();
  EXPECT_NEAR(got, expected, 1e-14);
  // Broadcasting a scalar N(0, 1) against a batch.
  Tensor zero = Tensor::zeros({}, DType::f64);
  EXPECT_EQ(normal_kl(random_tensor({2, 3}, 1), zero, zero, zero).shape(), (Shape{2, 3}));
}

TEST(Likelihood, NormalKlGradients) {
  Shape sh{2, 2, 3};
  Inputs in{random_tensor(sh, 2).set_requires_grad(true), random_tensor(sh, 3, DType::f64, 0.5).set_requires_grad(true),
            random_tensor(sh, 4).set_requires_grad(true), random_tensor(sh, 5, DType::f64, 0.5).set_requires_grad(true)};
  EXPECT_TRUE(gradcheck([](const Inputs& x) { return normal_kl(x[0], x[1], x[2], x[3]); }, in));
  // The model's side as a per-sample variance [N, 1, 1] (the fixed-variance case).
  Inputs bc{in[0], in[1], in[2], random_tensor({2, 1, 1}, 6).set_requires_grad(true)};
  EXPECT_TRUE(gradcheck([](const Inputs& x) { return normal_kl(x[0], x[1], x[2], x[3]); }, bc));
}

TEST(Likelihood, ApproxCdfIsCloseToTheExactCdf) {
  std::vector<double> xs;
  for (int i = -60; i <= 60; ++i) xs.push_back(i / 10.0);
  std::vector<double> got = approx_standard_normal_cdf(f64(xs, {static_cast<std::int64_t>(xs.size())})).to_double_vector();
  for (std::size_t i = 0; i < xs.size(); ++i) {
    EXPECT_NEAR(got[i], approx_cdf(xs[i]), 1e-15);
    EXPECT_NEAR(got[i], 0.5 * std::erfc(-xs[i] / std::sqrt(2.0)), 3e-4) << "x = " << xs[i];
  }
  EXPECT_EQ(got[60], 0.5);
}

TEST(Likelihood, DecoderProbabilitiesOverTheBinsSumToOne) {
  std::vector<double> c = bin_centres();
  // (mean, scale) pairs: wide, narrow (bins far away clamp at 1e-12), at an edge.
  for (auto [mu, sigma] : {std::pair{0.1, 0.3}, {-0.4, 0.02}, {0.99, 0.05}, {-1.0, 1.5}}) {
    Tensor x = f64(c, {1, 256});
    Tensor means = Tensor::full({1, 256}, mu, DType::f64), ls = Tensor::full({1, 256}, std::log(sigma), DType::f64);
    std::vector<double> ll = discretized_gaussian_log_likelihood(x, means, ls).to_double_vector();
    double total = 0;
    for (double l : ll) total += std::exp(l);
    EXPECT_NEAR(total, 1.0, 1e-9) << "mean " << mu << " scale " << sigma;
  }
}

TEST(Likelihood, DecoderValuesAtInteriorAndEdgeBins) {
  const double mu = 0.2, sigma = 0.4;
  Tensor x = f64({-1.0, 0.2 + 2.0 / 255, 1.0}, {1, 3});
  Tensor ll = discretized_gaussian_log_likelihood(x, Tensor::full({1, 3}, mu, DType::f64),
                                                  Tensor::full({1, 3}, std::log(sigma), DType::f64));
  std::vector<double> v = ll.to_double_vector();
  auto cdf = [&](double z) { return approx_cdf((z - mu) / sigma); };
  EXPECT_NEAR(v[0], std::log(cdf(-1.0 + 1.0 / 255)), 1e-12);  // (-inf, -1 + 1/255]
  double xm = 0.2 + 2.0 / 255;
  EXPECT_NEAR(v[1], std::log(cdf(xm + 1.0 / 255) - cdf(xm - 1.0 / 255)), 1e-12);
  EXPECT_NEAR(v[2], std::log(1 - cdf(1.0 - 1.0 / 255)), 1e-12);  // [1 - 1/255, inf)
  // Far from the mean the probability floors at 1e-12.
  Tensor far = discretized_gaussian_log_likelihood(f64({-1.0 + 100.0 / 255}, {1, 1}), f64({0.9}, {1, 1}),
                                                   f64({std::log(0.001)}, {1, 1}));
  EXPECT_NEAR(far.item(), std::log(1e-12), 1e-9);
}

TEST(Likelihood, DecoderKeepsBothTailsInF32) {
  // A mean 5 sigma below (and above) an interior bin: p ~ 1e-8, far above the 1e-12
  // floor. Computed literally, Phi(z+) - Phi(z-) with both near 1 is 0 in f32.
  for (double mu : {0.25, 0.76}) {
    Tensor x = f64({0.5 + 1.0 / 255}, {1, 1}), m = f64({mu}, {1, 1}), ls = f64({std::log(0.05)}, {1, 1});
    double ref = discretized_gaussian_log_likelihood(x, m, ls).item();
    double f32v = discretized_gaussian_log_likelihood(x.to(DType::f32), m.to(DType::f32), ls.to(DType::f32)).item();
    EXPECT_GT(ref, std::log(1e-12) + 3) << "mean " << mu;
    EXPECT_NEAR(f32v, ref, 1e-3 * std::fabs(ref)) << "mean " << mu;
  }
}

TEST(Likelihood, DecoderGradientsWrtMeansAndLogScales) {
  std::vector<double> xs{-1.0, -1.0 + 2.0 / 255, -0.2, 0.0 + 1.0 / 255, 0.6, 1.0};
  Tensor x = f64(xs, {1, 2, 3});
  Tensor means = random_tensor({1, 2, 3}, 7, DType::f64, 0.3).set_requires_grad(true);
  Tensor ls = add_scalar(random_tensor({1, 2, 3}, 8, DType::f64, 0.2), -1.5).detach().set_requires_grad(true);
  EXPECT_TRUE(gradcheck([&](const Inputs& in) { return discretized_gaussian_log_likelihood(x, in[0], in[1]); },
                        {means, ls}, 1e-6, 1e-6, 1e-5));
  EXPECT_THROW(discretized_gaussian_log_likelihood(x, Tensor::zeros({1, 6}, DType::f64), ls), ValueError);
}

TEST(Likelihood, MeanFlatAndBitsPerDim) {
  Tensor x = f64({1, 2, 3, 4, 5, 6, 7, 8}, {2, 2, 2, 1});
  EXPECT_EQ(mean_flat(x).shape(), (Shape{2}));
  EXPECT_EQ(mean_flat(x).to_double_vector(), (std::vector<double>{2.5, 6.5}));
  std::vector<double> bpd = bits_per_dim(x).to_double_vector();
  EXPECT_NEAR(bpd[0], 10.0 / (4 * std::log(2.0)), 1e-14);
  EXPECT_NEAR(nats_to_bits_per_dim(3072 * std::log(2.0) * 3.5, 3072), 3.5, 1e-12);
  EXPECT_THROW(nats_to_bits_per_dim(1.0, 0), ValueError);
}

TEST(Likelihood, PriorBpdMatchesTheClosedForm) {
  DiffusionSchedule s(linear_betas(1000));
  Tensor x0 = f64({-1.0, 1.0, 0.5, 0.0}, {2, 1, 1, 2});
  std::vector<double> got = prior_bpd(s, x0).to_double_vector(), xv = x0.to_double_vector();
  double a = s.alphas_cumprod[999];
  for (int n = 0; n < 2; ++n) {
    double kl = 0;
    for (int i = 0; i < 2; ++i) {
      double m = std::sqrt(a) * xv[2 * n + i], v = 1 - a;  // KL(N(m, v) || N(0, 1))
      kl += 0.5 * (-1 - std::log(v) + v + m * m);
    }
    EXPECT_NEAR(got[n], kl / 2 / std::log(2.0), 1e-15);
    EXPECT_LT(got[n], 1e-4);
  }
}

TEST(Likelihood, VbTermsAreKlForPositiveTAndTheDecoderAtZero) {
  DiffusionSchedule s(cosine_betas(100));
  const Timesteps t{0, 5, 99};
  Tensor x0 = clamp(random_tensor({3, 2, 2, 3}, 9, DType::f64, 0.5), -1, 1);
  Tensor xt = q_sample(s, x0, t, random_tensor({3, 2, 2, 3}, 10));
  Gaussian q = q_posterior_mean_variance(s, x0, xt, t);
  // A model equal to the true posterior has zero KL for t > 0.
  std::vector<double> exact = vb_terms_bpd(s, q.mean, q.log_variance, x0, xt, t).to_double_vector();
  EXPECT_NEAR(exact[1], 0.0, 1e-14);
  EXPECT_NEAR(exact[2], 0.0, 1e-14);
  Tensor ll = discretized_gaussian_log_likelihood(x0, q.mean, expand_to(scale(q.log_variance, 0.5), x0.shape()));
  EXPECT_NEAR(exact[0], -mean_flat(ll).to_double_vector()[0] / std::log(2.0), 1e-12);
  // A model off by a constant shift: the t > 0 terms are the closed-form KL.
  Tensor shifted = add_scalar(q.mean, 0.1);
  std::vector<double> off = vb_terms_bpd(s, shifted, q.log_variance, x0, xt, t).to_double_vector();
  EXPECT_NEAR(off[1], 0.5 * 0.01 / s.posterior_variance[5] / std::log(2.0), 1e-10);
  Tensor m = random_tensor({3, 2, 2, 3}, 11, DType::f64, 0.3).set_requires_grad(true);
  Tensor lv = random_tensor({3, 1, 1, 1}, 12, DType::f64, 0.2).set_requires_grad(true);
  EXPECT_TRUE(gradcheck([&](const Inputs& in) { return vb_terms_bpd(s, in[0], add_scalar(in[1], -4.0), x0, xt, t); },
                        {m, lv}, 1e-6, 1e-6, 1e-5));
}

TEST(Likelihood, HybridLossStopsTheVlbGradientAtTheMean) {
  DiffusionSchedule s(linear_betas(200));
  const Timesteps t{0, 50, 199};
  Shape sh{3, 2, 2, 3};
  Tensor x0 = clamp(random_tensor(sh, 13, DType::f64, 0.5), -1, 1), noise = random_tensor(sh, 14);
  Tensor xt = q_sample(s, x0, t, noise);
  Tensor eps = random_tensor(sh, 15).set_requires_grad(true);
  Tensor vv = random_tensor(sh, 16, DType::f64, 0.3).set_requires_grad(true);
  Tensor loss = hybrid_loss(s, eps, vv, x0, xt, t, noise);
  // Value: L_simple + 0.001 * T * L_t.
  Gaussian p = p_mean_variance(s, VarianceType::learned_range, eps.detach(), vv.detach(), xt, t, false);
  std::vector<double> vb = vb_terms_bpd(s, p.mean, p.log_variance, x0, xt, t).to_double_vector();
  std::vector<double> simple = mean_flat(square(sub(eps.detach(), noise))).to_double_vector();
  std::vector<double> got = loss.to_double_vector();
  for (int n = 0; n < 3; ++n) EXPECT_NEAR(got[n], simple[n] + 0.001 * 200 * vb[n], 1e-12);
  // Gradient into eps is exactly that of L_simple: d/d eps sum_n mean_flat((eps-noise)^2).
  sum(loss).backward();
  std::vector<double> ge = eps.grad().to_double_vector(), e = eps.to_double_vector(), z = noise.to_double_vector();
  for (std::size_t i = 0; i < ge.size(); ++i) EXPECT_NEAR(ge[i], 2 * (e[i] - z[i]) / 12.0, 1e-14);
  double gv_norm = 0;
  for (double g : vv.grad().to_double_vector()) gv_norm += g * g;
  EXPECT_GT(gv_norm, 0.0) << "the variance is trained by the bound";
  vv.set_grad(Tensor());
  EXPECT_TRUE(gradcheck([&](const Inputs& in) { return hybrid_loss(s, eps.detach(), in[0], x0, xt, t, noise); }, {vv},
                        1e-6, 1e-6, 1e-5));
}

TEST(Likelihood, LearnedRangeMeanClipsX0WhenAsked) {
  DiffusionSchedule s(cosine_betas(100));
  const Timesteps t{99};
  Tensor xt = f64({3.0, -3.0}, {1, 1, 1, 2}), eps = f64({0.0, 0.0}, {1, 1, 1, 2});
  Tensor vv = Tensor::zeros({1, 1, 1, 2}, DType::f64);
  Gaussian clipped = p_mean_variance(s, VarianceType::learned_range, eps, vv, xt, t, true);
  Tensor x0c = f64({1.0, -1.0}, {1, 1, 1, 2});
  std::vector<double> expect = q_posterior_mean_variance(s, x0c, xt, t).mean.to_double_vector();
  std::vector<double> got = clipped.mean.to_double_vector();
  EXPECT_NEAR(got[0], expect[0], 1e-12);
  EXPECT_NEAR(got[1], expect[1], 1e-12);
}

}  // namespace
}  // namespace ddpm::diffusion

namespace ddpm::diffusion {
namespace {

TEST(Likelihood, PMeanVarianceForEveryVarianceType) {
  DiffusionSchedule s(cosine_betas(100));
  const Timesteps t{0, 30, 99};
  Shape sh{3, 2, 2, 1};
  Tensor x0 = clamp(random_tensor(sh, 31, DType::f64, 0.5), -1, 1), eps = random_tensor(sh, 32);
  Tensor xt = q_sample(s, x0, t, eps);
  for (VarianceType type : {VarianceType::fixed_small, VarianceType::fixed_large, VarianceType::learned_range}) {
    SCOPED_TRACE(variance_type_name(type));
    Tensor vv = type == VarianceType::learned_range ? Tensor::full(sh, 1.0, DType::f64) : Tensor();
    Gaussian p = p_mean_variance(s, type, eps, vv, xt, t, false);
    // The true eps recovers x0 exactly, so the mean is the true posterior mean.
    std::vector<double> m = p.mean.to_double_vector(), q = q_posterior_mean_variance(s, x0, xt, t).mean.to_double_vector();
    for (std::size_t i = 0; i < m.size(); ++i) EXPECT_NEAR(m[i], q[i], 1e-12);
    std::vector<double> lv = p.log_variance.to_double_vector();
    double expected_t30 = type == VarianceType::fixed_small ? s.posterior_log_variance_clipped[30] : std::log(s.betas[30]);
    EXPECT_NEAR(lv[type == VarianceType::learned_range ? 4 : 1], expected_t30, 1e-12);
  }
  EXPECT_THROW(p_mean_variance(s, VarianceType::learned_range, eps, Tensor(), xt, t, false), ValueError);
}

TEST(Likelihood, BpdLoopIsPriorPlusTermsWithTModelCalls) {
  DiffusionSchedule s(cosine_betas(40));
  Tensor x0 = clamp(random_tensor({2, 2, 2, 3}, 33, DType::f64, 0.5), -1, 1);
  int calls = 0;
  // An oracle that knows x0: its p(x_{t-1} | x_t) is the true posterior, so every KL is 0.
  ModelGaussianFn oracle = [&](const Tensor& xt, const Timesteps& t) {
    ++calls;
    return q_posterior_mean_variance(s, x0, xt, t);
  };
  Generator gen(5);
  BpdResult r = calc_bpd_loop(s, oracle, x0, gen);
  EXPECT_EQ(calls, 40) << "one model evaluation per timestep";
  ASSERT_EQ(r.terms_bpd.size(), 40u);
  std::vector<double> prior = prior_bpd(s, x0).to_double_vector();
  for (int n = 0; n < 2; ++n) {
    for (int t = 1; t < 40; ++t) EXPECT_NEAR(r.terms_bpd[t][n], 0.0, 1e-13);
    EXPECT_GT(r.terms_bpd[0][n], 0.0);
    EXPECT_DOUBLE_EQ(r.prior_bpd[n], prior[n]);
    EXPECT_NEAR(r.total_bpd[n], prior[n] + r.terms_bpd[0][n], 1e-13);
  }
  // A model that always predicts 0: positive terms, and the total is their sum.
  ModelGaussianFn blind = [&](const Tensor& xt, const Timesteps& t) {
    return Gaussian{Tensor::zeros(xt.shape(), DType::f64), Tensor(), fixed_small_variance(s, t, xt).log_variance};
  };
  BpdResult b = calc_bpd_loop(s, blind, x0, gen);
  double sum = b.prior_bpd[1];
  for (int t = 0; t < 40; ++t) sum += b.terms_bpd[t][1];
  EXPECT_NEAR(b.total_bpd[1], sum, 1e-12);
  EXPECT_GT(b.total_bpd[1], r.total_bpd[1]);
}

TEST(Likelihood, ImportanceSamplerIsUniformUntilWarmAndThenFollowsTheSecondMoment) {
  LossSecondMomentSampler sampler(4, 2, 0.001);
  Generator gen(7);
  sampler.update({0, 1, 2}, {1.0, 2.0, 3.0});
  EXPECT_FALSE(sampler.warmed_up());
  for (double p : sampler.probabilities()) EXPECT_EQ(p, 0.25);
  for (double w : sampler.sample(8, gen).weights) EXPECT_EQ(w, 1.0);
  sampler.update({0, 1, 2, 3, 3}, {1.0, 2.0, 4.0, 0.0, 0.0});
  EXPECT_TRUE(sampler.warmed_up());
  // Histories: {1,1}, {2,2}, {3,4}, {0,0}: sqrt(E[L^2]) = 1, 2, sqrt(12.5), 0.
  std::vector<double> m{1.0, 2.0, std::sqrt(12.5), 0.0};
  double total = m[0] + m[1] + m[2];
  std::vector<double> p = sampler.probabilities();
  for (int t = 0; t < 4; ++t) EXPECT_NEAR(p[t], 0.999 * m[t] / total + 0.001 / 4, 1e-15);
  // Only the last `history` losses count: t = 0 now holds {1, 5}.
  sampler.update({0}, {5.0});
  m[0] = std::sqrt(13.0);
  total = m[0] + m[1] + m[2];
  p = sampler.probabilities();
  EXPECT_NEAR(p[0], 0.999 * m[0] / total + 0.00025, 1e-15);
  // Draws follow p, and the weights 1/(T p_t) make the weighted loss unbiased for the
  // mean over t.
  const std::vector<double> loss_at{3.0, 2.0, 3.5, 0.01};
  LossSecondMomentSampler::Draw d = sampler.sample(40000, gen);
  std::vector<double> freq(4, 0.0);
  double weighted = 0.0;
  for (std::size_t i = 0; i < d.t.size(); ++i) {
    freq[d.t[i]] += 1.0 / 40000;
    EXPECT_DOUBLE_EQ(d.weights[i], 1.0 / (4 * p[d.t[i]]));
    weighted += d.weights[i] * loss_at[d.t[i]] / 40000;
  }
  for (int t = 0; t < 4; ++t) EXPECT_NEAR(freq[t], p[t], 0.01) << "t = " << t;
  EXPECT_NEAR(weighted, (3.0 + 2.0 + 3.5 + 0.01) / 4, 0.05);  // standard error about 0.001
  EXPECT_THROW(sampler.update({4}, {1.0}), ValueError);
  EXPECT_THROW(sampler.update({0, 1}, {1.0}), ValueError);
}

}  // namespace
}  // namespace ddpm::diffusion
