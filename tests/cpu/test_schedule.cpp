// The noise schedules, their float64 coefficient tables, and the tensor formulas of the
// forward process and posterior, checked against closed forms computed here independently
// (products of (1 - beta), the Gaussian-product posterior, the cosine alpha_bar formula).
#include <cmath>

#include <gtest/gtest.h>

#include "engine/error.h"
#include "engine/ops/elementwise.h"
#include "models/diffusion/schedule.h"
#include "support/gradcheck.h"

namespace ddpm::diffusion {
namespace {

using testing::gradcheck;
using testing::random_tensor;
using testing::Inputs;

double product_of_alphas(const std::vector<double>& betas, std::size_t upto) {
  double p = 1.0;
  for (std::size_t i = 0; i <= upto; ++i) p *= 1.0 - betas[i];
  return p;
}

void expect_near_vectors(const Tensor& actual, const Tensor& expected, double tol) {
  ASSERT_EQ(actual.shape(), expected.shape());
  std::vector<double> a = actual.to_double_vector(), e = expected.to_double_vector();
  for (std::size_t i = 0; i < a.size(); ++i) ASSERT_NEAR(a[i], e[i], tol) << "element " << i;
}

TEST(Schedule, LinearAtT1000HasTheDdpmRange) {
  std::vector<double> b = betas_for(NoiseSchedule::linear, 1000);
  ASSERT_EQ(b.size(), 1000u);
  EXPECT_NEAR(b[0], 1e-4, 1e-18);
  EXPECT_NEAR(b[999], 0.02, 1e-17);
  EXPECT_NEAR(b[500], 1e-4 + (0.02 - 1e-4) * 500.0 / 999.0, 1e-17);
  EXPECT_LT(product_of_alphas(b, 999), 1e-4);
  EXPECT_GT(product_of_alphas(b, 999), 1e-5);  // about 4.0e-5
}

TEST(Schedule, LinearIsScaledSoShortSchedulesEndInNoise) {
  std::vector<double> b = linear_betas(200);
  EXPECT_NEAR(b[0], 5e-4, 1e-18);
  EXPECT_NEAR(b[199], 0.1, 1e-16);
  EXPECT_LT(product_of_alphas(b, 199), 1e-4) << "x_T must be (nearly) pure noise";
  // Contrast: the unscaled range 1e-4 .. 0.02 over 200 steps leaves alpha_bar_T = 0.13.
  double unscaled = 1.0;
  for (int i = 0; i < 200; ++i) unscaled *= 1.0 - (1e-4 + (0.02 - 1e-4) * i / 199.0);
  EXPECT_NEAR(unscaled, 0.13, 0.01);
  DiffusionSchedule s(b);
  EXPECT_NEAR(s.alphas_cumprod[199], product_of_alphas(b, 199), 1e-18);
}

TEST(Schedule, CosineMatchesItsAlphaBarAndClipsTheLastBeta) {
  const std::int64_t T = 1000;
  DiffusionSchedule s(betas_for(parse_noise_schedule("cosine"), T));
  auto f = [&](double t) {
    double c = std::cos((t / T + 0.008) / 1.008 * M_PI / 2);
    return c * c;
  };
  EXPECT_DOUBLE_EQ(s.betas[T - 1], 0.999);
  for (double beta : s.betas) {
    EXPECT_GT(beta, 0.0);
    EXPECT_LE(beta, 0.999);
  }
  for (std::int64_t t = 1; t < T; ++t) EXPECT_LT(s.alphas_cumprod[t], s.alphas_cumprod[t - 1]) << "t = " << t;
  // alpha_bar at index t is alpha_bar(t + 1) of the formula (index 0 is the first step).
  for (std::int64_t t : {0, 1, 250, 500, 900, 990}) {
    double expected = f(t + 1.0) / f(0.0);
    EXPECT_NEAR(s.alphas_cumprod[t] / expected, 1.0, 1e-12) << "t = " << t;
  }
  // The clipped tail makes 1/sqrt(alpha_bar) huge: why x0 must be clipped when sampling.
  EXPECT_GT(s.sqrt_recip_alphas_cumprod[T - 1], 1e3);
}

TEST(Schedule, CoefficientTablesAreConsistent) {
  DiffusionSchedule s(linear_betas(100));
  const std::size_t T = 100;
  EXPECT_EQ(s.alphas_cumprod_prev[0], 1.0);
  EXPECT_EQ(s.alphas_cumprod_next[T - 1], 0.0);
  EXPECT_EQ(s.posterior_variance[0], 0.0) << "beta-tilde at t = 0 is exactly 0";
  EXPECT_DOUBLE_EQ(s.posterior_log_variance_clipped[0], std::log(s.posterior_variance[1]));
  for (std::size_t t = 0; t < T; ++t) {
    double a = product_of_alphas(s.betas, t);
    double a_prev = t == 0 ? 1.0 : product_of_alphas(s.betas, t - 1);
    EXPECT_NEAR(s.alphas_cumprod[t], a, 1e-15);
    if (t + 1 < T) EXPECT_EQ(s.alphas_cumprod_next[t], s.alphas_cumprod[t + 1]);
    if (t > 0) EXPECT_EQ(s.alphas_cumprod_prev[t], s.alphas_cumprod[t - 1]);
    EXPECT_NEAR(s.sqrt_alphas_cumprod[t], std::sqrt(a), 1e-15);
    EXPECT_NEAR(s.sqrt_one_minus_alphas_cumprod[t], std::sqrt(1 - a), 1e-15);
    EXPECT_NEAR(s.log_one_minus_alphas_cumprod[t], std::log(1 - a), 1e-12);
    EXPECT_NEAR(s.sqrt_recip_alphas_cumprod[t] * s.sqrt_alphas_cumprod[t], 1.0, 1e-14);
    EXPECT_NEAR(s.sqrt_recipm1_alphas_cumprod[t], std::sqrt((1 - a) / a), 1e-12);
    // Posterior of a Gaussian prior x_{t-1} ~ N(sqrt(a_prev) x0, 1 - a_prev) observed
    // through x_t ~ N(sqrt(alpha_t) x_{t-1}, beta_t): precisions add.
    if (t > 0) {
      double alpha = 1 - s.betas[t];
      double var = 1.0 / (1.0 / (1 - a_prev) + alpha / s.betas[t]);
      EXPECT_NEAR(s.posterior_variance[t] / var, 1.0, 1e-12);
      EXPECT_DOUBLE_EQ(s.posterior_log_variance_clipped[t], std::log(s.posterior_variance[t]));
    }
  }
}

TEST(Schedule, PosteriorMeanMatchesTheGaussianProduct) {
  DiffusionSchedule s(cosine_betas(50));
  const Timesteps t{0, 1, 17, 49};
  Tensor x0 = random_tensor({4, 2, 3, 2}, 21), xt = random_tensor({4, 2, 3, 2}, 22);
  Gaussian q = q_posterior_mean_variance(s, x0, xt, t);
  ASSERT_EQ(q.variance.shape(), (Shape{4, 1, 1, 1}));
  std::vector<double> x0v = x0.to_double_vector(), xtv = xt.to_double_vector(), mean = q.mean.to_double_vector();
  std::vector<double> var = q.variance.to_double_vector(), logv = q.log_variance.to_double_vector();
  const std::size_t per = 12;
  for (std::size_t n = 0; n < 4; ++n) {
    std::size_t k = static_cast<std::size_t>(t[n]);
    double a_prev = k == 0 ? 1.0 : product_of_alphas(s.betas, k - 1), alpha = 1 - s.betas[k];
    double prec_prior = k == 0 ? INFINITY : 1.0 / (1 - a_prev), prec_obs = alpha / s.betas[k];
    for (std::size_t i = n * per; i < (n + 1) * per; ++i) {
      // precision-weighted mean: (sqrt(a_prev) x0 / (1-a_prev) + sqrt(alpha) xt / beta) / precision
      double expected = k == 0 ? x0v[i]
                               : (std::sqrt(a_prev) * x0v[i] * prec_prior + std::sqrt(alpha) * xtv[i] / s.betas[k]) /
                                     (prec_prior + prec_obs);
      EXPECT_NEAR(mean[i], expected, 1e-12) << "sample " << n;
    }
    EXPECT_DOUBLE_EQ(var[n], s.posterior_variance[k]);
    EXPECT_DOUBLE_EQ(logv[n], s.posterior_log_variance_clipped[k]);
  }
}

TEST(Schedule, QSampleAndItsInverses) {
  DiffusionSchedule s(linear_betas(1000));
  const Timesteps t{0, 10, 500, 999};
  Tensor x0 = random_tensor({4, 3, 3, 2}, 31), eps = random_tensor({4, 3, 3, 2}, 32);
  // Zero noise: x_t = sqrt(alpha_bar_t) x0.
  Tensor clean = q_sample(s, x0, t, Tensor::zeros(x0.shape(), DType::f64));
  std::vector<double> c = clean.to_double_vector(), x = x0.to_double_vector();
  for (std::size_t i = 0; i < c.size(); ++i)
    EXPECT_NEAR(c[i], std::sqrt(product_of_alphas(s.betas, static_cast<std::size_t>(t[i / 18]))) * x[i], 1e-14);
  Tensor xt = q_sample(s, x0, t, eps);
  expect_near_vectors(predict_x0_from_eps(s, xt, t, eps), x0, 1e-11);
  expect_near_vectors(predict_eps_from_x0(s, xt, t, x0), eps, 1e-11);
  // v-prediction round trip.
  Tensor v = v_target(s, x0, eps, t);
  expect_near_vectors(predict_x0_from_v(s, xt, t, v), x0, 1e-13);
  expect_near_vectors(predict_eps_from_v(s, xt, t, v), eps, 1e-13);
  // f32 on the CPU too.
  Tensor xt32 = q_sample(s, x0.to(DType::f32), t, eps.to(DType::f32));
  EXPECT_EQ(xt32.dtype(), DType::f32);
  expect_near_vectors(xt32, xt, 1e-6);
}

TEST(Schedule, QSampleGradients) {
  DiffusionSchedule s(cosine_betas(20));
  Tensor x0 = random_tensor({2, 2, 2, 3}, 41).set_requires_grad(true);
  Tensor eps = random_tensor({2, 2, 2, 3}, 42).set_requires_grad(true);
  const Timesteps t{3, 19};
  EXPECT_TRUE(gradcheck([&](const Inputs& in) { return q_sample(s, in[0], t, in[1]); }, {x0, eps}));
  EXPECT_TRUE(gradcheck([&](const Inputs& in) { return predict_x0_from_eps(s, in[0], t, in[1]); }, {x0, eps}));
}

TEST(Schedule, FixedVariances) {
  DiffusionSchedule s(linear_betas(100));
  Tensor like = Tensor::zeros({3, 2, 2, 1}, DType::f64);
  const Timesteps t{0, 1, 99};
  std::vector<double> small = fixed_small_variance(s, t, like).variance.to_double_vector();
  EXPECT_EQ(small, (std::vector<double>{0.0, s.posterior_variance[1], s.posterior_variance[99]}));
  Gaussian large = fixed_large_variance(s, t, like);
  std::vector<double> lv = large.variance.to_double_vector(), llog = large.log_variance.to_double_vector();
  EXPECT_EQ(lv[0], s.posterior_variance[1]) << "fixed-large uses beta-tilde_1 at t = 0";
  EXPECT_EQ(lv[1], s.betas[1]);
  EXPECT_EQ(lv[2], s.betas[99]);
  EXPECT_DOUBLE_EQ(llog[0], std::log(s.posterior_variance[1]));
  EXPECT_DOUBLE_EQ(llog[2], std::log(s.betas[99]));
}

TEST(Schedule, LearnedRangeInterpolatesLogVariances) {
  DiffusionSchedule s(cosine_betas(100));
  const Timesteps t{0, 40, 99};
  Tensor v = Tensor::from_vector(std::vector<double>{-1, -1, 0, 0, 1, 1}, {3, 1, 1, 2});
  std::vector<double> lv = learned_range_variance(s, t, v).log_variance.to_double_vector();
  EXPECT_NEAR(lv[0], s.posterior_log_variance_clipped[0], 1e-14);  // v = -1: log beta-tilde (clipped)
  EXPECT_NEAR(lv[2], 0.5 * (std::log(s.betas[40]) + s.posterior_log_variance_clipped[40]), 1e-14);
  EXPECT_NEAR(lv[4], std::log(s.betas[99]), 1e-14);  // v = 1: log beta, the full (0.999) beta
  Tensor var_values = random_tensor({3, 2, 2, 2}, 51, DType::f64, 0.5).set_requires_grad(true);
  EXPECT_TRUE(gradcheck([&](const Inputs& in) { return learned_range_variance(s, t, in[0]).variance; }, {var_values}));
}

TEST(Schedule, ErrorsNameTheProblem) {
  EXPECT_THROW(parse_noise_schedule("quadratic"), ValueError);
  EXPECT_THROW(parse_variance_type("learned"), ValueError);
  EXPECT_EQ(parse_variance_type("fixed_large"), VarianceType::fixed_large);
  EXPECT_STREQ(noise_schedule_name(NoiseSchedule::cosine), "cosine");
  EXPECT_THROW(linear_betas(0), ValueError);
  EXPECT_THROW(linear_betas(20), ValueError);  // the scaled end would be beta = 1
  EXPECT_LT(linear_betas(21).back(), 1.0);
  EXPECT_THROW(DiffusionSchedule(std::vector<double>{0.1, 0.0}), ValueError);
  EXPECT_THROW(DiffusionSchedule(std::vector<double>{}), ValueError);
  DiffusionSchedule s(cosine_betas(10));
  Tensor x = Tensor::zeros({2, 1, 1, 1}, DType::f64);
  try {
    extract(s.betas, {0, 10}, x);
    FAIL();
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("timestep 10 of sample 1 is outside [0, 10)"), std::string::npos) << e.what();
  }
  EXPECT_THROW(extract(s.betas, {0, 1, 2}, x), ValueError);
  EXPECT_THROW(q_sample(s, x, {0, 1}, Tensor::zeros({2, 1, 1, 2}, DType::f64)), ValueError);
}

}  // namespace
}  // namespace ddpm::diffusion
