// Exact likelihood through the probability-flow ODE (models/diffusion/ode_likelihood.h) and
// `ddpm-eval nll`'s dataset loop (models/eval/nll_eval.h).
//
// Oracle. For data N(mu, Sigma) the ideal denoiser is linear,
//   D(x; sigma) = mu + Sigma (Sigma + sigma^2 I)^-1 (x - mu)        (Gaussian posterior mean),
// the marginal at sigma is N(mu, Sigma + sigma^2 I), and the ODE carries p_{sigma_min} exactly
// into p_{sigma_max}. So the computed log p_{sigma_min}(x) must equal the closed form
// log N(x; mu, Sigma + sigma_min^2 I) up to the solver's error and the prior's (exactly zero
// for mu = 0, Sigma = data_std^2 I: the prior N(0, (sigma_max^2 + data_std^2) I) is then the
// true marginal). With sigma_min = 0.002 this is log N(x; mu, Sigma) to within 1e-4.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <sstream>
#include <vector>

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/ops/concat.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/linalg.h"
#include "models/autoencoder/autoencoder_io.h"
#include "models/diffusion/edm.h"
#include "models/diffusion/ode_likelihood.h"
#include "models/eval/eval_flags.h"
#include "models/eval/nll_eval.h"
#include "models/run/latent_run.h"
#include "support/temp_dir.h"
#include "support/tiny_unet.h"

namespace ddpm::diffusion {
namespace {

constexpr double kPi = 3.14159265358979323846;

// Data N(mu, Q diag(lambda) Q^T) in d dimensions, Q a rotation in the (0, 1) plane by angle
// theta (theta = 0: independent coordinates). D = mu + Q diag(lambda / (lambda + sigma^2))
// Q^T (x - mu), built from engine ops (so the tape sees it) as a matmul with the symmetric
// matrix M(sigma) = Q diag(.) Q^T.
struct GaussianData {
  std::vector<double> mu, lambda;
  double theta = 0.0;

  std::size_t d() const { return mu.size(); }
  // Q as a row-major d x d matrix.
  std::vector<double> rotation() const {
    std::vector<double> q(d() * d(), 0.0);
    for (std::size_t i = 0; i < d(); ++i) q[i * d() + i] = 1.0;
    if (d() >= 2) {
      q[0] = std::cos(theta), q[1] = -std::sin(theta);
      q[d()] = std::sin(theta), q[d() + 1] = std::cos(theta);
    }
    return q;
  }
  // Q diag(w) Q^T.
  std::vector<double> rotated(const std::vector<double>& w) const {
    const std::vector<double> q = rotation();
    std::vector<double> m(d() * d(), 0.0);
    for (std::size_t i = 0; i < d(); ++i)
      for (std::size_t j = 0; j < d(); ++j)
        for (std::size_t k = 0; k < d(); ++k) m[i * d() + j] += q[i * d() + k] * w[k] * q[j * d() + k];
    return m;
  }
  SigmaDenoiser denoiser(std::int64_t n) const {
    GaussianData g = *this;
    return [g, n](const Tensor& x, double sigma) {
      std::vector<double> w(g.d());
      for (std::size_t k = 0; k < g.d(); ++k) w[k] = g.lambda[k] / (g.lambda[k] + sigma * sigma);
      const Tensor m =
          Tensor::from_vector(g.rotated(w), {static_cast<std::int64_t>(g.d()), static_cast<std::int64_t>(g.d())});
      std::vector<double> mu_rows;
      for (std::int64_t i = 0; i < n; ++i) mu_rows.insert(mu_rows.end(), g.mu.begin(), g.mu.end());
      const Tensor mu = Tensor::from_vector(mu_rows, x.shape());
      return SigmaDenoised{add(mu, matmul(sub(x, mu), m)), -1.0};  // M symmetric: (x - mu) M = M (x - mu)
    };
  }
  // log N(x; mu, Sigma + s2 I) for one sample x (host, independent of the code under test).
  double log_density(const std::vector<double>& x, double s2) const {
    const std::vector<double> q = rotation();
    double quad = 0, logdet = 0;
    for (std::size_t k = 0; k < d(); ++k) {
      double yk = 0;  // (Q^T (x - mu))_k
      for (std::size_t i = 0; i < d(); ++i) yk += q[i * d() + k] * (x[i] - mu[i]);
      const double v = lambda[k] + s2;
      quad += yk * yk / v;
      logdet += std::log(v);
    }
    return -0.5 * (quad + logdet + static_cast<double>(d()) * std::log(2 * kPi));
  }
};

// n points drawn from the data (f64 [n, d]).
Tensor draw(const GaussianData& g, std::int64_t n, std::uint64_t seed) {
  Generator gen(seed);
  const std::vector<double> z =
      randn({n, static_cast<std::int64_t>(g.d())}, gen, Device::cpu(), DType::f64).to_double_vector();
  const std::vector<double> sq(g.lambda.size());
  std::vector<double> root(g.d());
  for (std::size_t k = 0; k < g.d(); ++k) root[k] = std::sqrt(g.lambda[k]);
  const std::vector<double> q = g.rotation();
  std::vector<double> x(z.size());
  for (std::int64_t r = 0; r < n; ++r)
    for (std::size_t i = 0; i < g.d(); ++i) {
      double v = g.mu[i];
      for (std::size_t k = 0; k < g.d(); ++k) v += q[i * g.d() + k] * root[k] * z[r * g.d() + k];
      x[r * g.d() + i] = v;
    }
  return Tensor::from_vector(x, {n, static_cast<std::int64_t>(g.d())});
}

std::vector<double> row(const Tensor& x, std::int64_t r) {
  const std::vector<double> v = x.to_double_vector();
  const std::int64_t d = x.dim(1);
  return {v.begin() + r * d, v.begin() + (r + 1) * d};
}

double max_error(const GaussianData& g, const Tensor& x, const OdeLikelihood& res, double s2) {
  double worst = 0;
  for (std::int64_t r = 0; r < x.dim(0); ++r)
    worst = std::max(worst, std::abs(res.log_likelihood[r] - g.log_density(row(x, r), s2)));
  return worst;
}

OdeLikelihoodConfig config(std::int64_t steps, DivergenceEstimator e, double data_std = 0.0) {
  OdeLikelihoodConfig c;
  c.steps = steps;
  c.divergence = e;
  c.data_std = data_std;
  return c;
}

TEST(OdeLikelihood, GaussianDataGivesTheExactDensityWithSecondOrderConvergence) {
  // mu = 0, Sigma = 0.25 I in 3-D: the prior with data_std 0.5 is exact, so what remains is
  // Heun's error, O(K^-2).
  const GaussianData g{{0, 0, 0}, {0.25, 0.25, 0.25}};
  const Tensor x = draw(g, 5, 1);
  std::vector<double> err;
  for (std::int64_t k : {16, 32, 64, 128, 256}) {
    Generator gen(0);
    const OdeLikelihood res = ode_log_likelihood(g.denoiser(5), x, config(k, DivergenceEstimator::exact, 0.5), gen);
    EXPECT_EQ(res.evaluations, 2 * k * 3);  // 2K points, one forward per unit vector
    for (std::size_t r = 0; r < 5; ++r)
      EXPECT_NEAR(res.log_likelihood[r], res.prior_log_density[r] + res.divergence_integral[r], 1e-12);
    err.push_back(max_error(g, x, res, 0.002 * 0.002));
  }
  for (std::size_t i = 0; i + 1 < err.size(); ++i) {
    SCOPED_TRACE(i);
    EXPECT_GT(err[i] / err[i + 1], 3.0) << err[i] << " -> " << err[i + 1];  // halving h: error / 4
  }
  EXPECT_LT(err.back(), 2e-3);
  // And the data density itself (sigma_min^2 = 4e-6 shifts it by ~ 3 * 4e-6 / (2 * 0.25)).
  Generator gen(0);
  const OdeLikelihood fine = ode_log_likelihood(g.denoiser(5), x, config(256, DivergenceEstimator::exact, 0.5), gen);
  EXPECT_LT(max_error(g, x, fine, 0.0), 2e-3);
}

TEST(OdeLikelihood, AdaptiveRk45MeetsItsTolerance) {
  // The same exact-prior Gaussian, correlated this time (theta = 0.4): the error must follow
  // the tolerance, and tightening it costs more evaluations.
  const GaussianData g{{0, 0, 0}, {0.25, 0.25, 0.25}};
  const GaussianData corr{{0, 0, 0}, {0.1, 0.4, 0.25}, 0.4};
  for (const GaussianData* data : {&g, &corr}) {
    const Tensor x = draw(*data, 4, 6);
    std::vector<double> err;
    std::vector<std::int64_t> evals;
    for (double tol : {1e-4, 1e-6, 1e-8}) {
      OdeLikelihoodConfig c = config(1, DivergenceEstimator::exact, 0.5);
      c.solver = OdeSolver::rk45;
      c.rtol = c.atol = tol;
      Generator gen(0);
      const OdeLikelihood res = ode_log_likelihood(data->denoiser(4), x, c, gen);
      err.push_back(max_error(*data, x, res, 0.002 * 0.002));
      evals.push_back(res.evaluations / 3);  // per point: exact divergence runs dim = 3 forwards
    }
    // The global error is a few tens of the (local) tolerance. The anisotropic data's prior
    // N(0, (80^2 + 0.25) I) is only nearly its marginal: a floor of a few 1e-5 (measured
    // 2.9e-5; 0.5 (lambda - 0.25) (z^2 - 1) / 80^2 per dimension).
    const double floor = data == &g ? 0.0 : 5e-5;
    EXPECT_LT(err[0], 1e-2);
    EXPECT_LT(err[1], 5e-5 + floor);
    EXPECT_LT(err[2], 1e-6 + floor);
    EXPECT_LT(evals[0], evals[1]);
    EXPECT_LT(evals[1], evals[2]);
  }
  OdeLikelihoodConfig c = config(1, DivergenceEstimator::exact, 0.5);
  c.solver = OdeSolver::rk45;
  c.rtol = c.atol = 1e-8;
  c.max_adaptive_steps = 3;
  Generator gen(0);
  EXPECT_THROW(ode_log_likelihood(g.denoiser(4), draw(g, 4, 6), c, gen), ValueError);
}

TEST(OdeLikelihood, AnisotropicGaussianWithSongsPriorIsCloseToTheDataDensity) {
  // mu != 0 and unequal variances under the plain N(0, sigma_max^2 I) prior: its error is about
  // sum_j mu_j z_j / sigma_max (x(sigma_max) ~ sigma_max z): |mu| |z| / 80, a few 1e-2 here.
  const GaussianData g{{0.3, -0.5, 0.8}, {0.04, 0.25, 1.0}};
  const Tensor x = draw(g, 4, 2);
  Generator g1(0), g2(0);
  const OdeLikelihood exact = ode_log_likelihood(g.denoiser(4), x, config(256, DivergenceEstimator::exact), g1);
  EXPECT_LT(max_error(g, x, exact, 0.0), 0.06);
  // A diagonal Jacobian: every Rademacher probe gives the trace exactly (eps_j^2 = 1).
  const OdeLikelihood rad = ode_log_likelihood(g.denoiser(4), x, config(256, DivergenceEstimator::rademacher), g2);
  for (std::size_t r = 0; r < 4; ++r) EXPECT_NEAR(rad.log_likelihood[r], exact.log_likelihood[r], 1e-9);
}

TEST(OdeLikelihood, HutchinsonIsUnbiasedForTheExactDivergence) {
  // Correlated data (theta = 0.7): the Jacobian has off-diagonal terms, so both probes are
  // noisy. 600 copies of one point, each with its own probe kept along its trajectory
  // (which, D being linear, is the same for all): the mean of the 600 estimates of the
  // integral must match the exact integral within 4 standard errors.
  const GaussianData g{{0.1, -0.2, 0.0, 0.3}, {0.05, 0.6, 0.3, 0.1}, 0.7};
  const std::int64_t n = 600;
  const std::vector<double> point = row(draw(g, 1, 3), 0);
  std::vector<double> copies;
  for (std::int64_t i = 0; i < n; ++i) copies.insert(copies.end(), point.begin(), point.end());
  const Tensor x = Tensor::from_vector(copies, {n, 4});
  Generator g0(0);
  const OdeLikelihood exact = ode_log_likelihood(g.denoiser(1), Tensor::from_vector(point, {1, 4}),
                                                 config(128, DivergenceEstimator::exact), g0);
  EXPECT_LT(std::abs(exact.log_likelihood[0] - g.log_density(point, 0.0)), 0.02);
  for (DivergenceEstimator e : {DivergenceEstimator::rademacher, DivergenceEstimator::gaussian}) {
    SCOPED_TRACE(divergence_estimator_name(e));
    Generator gen(7);
    const OdeLikelihood est = ode_log_likelihood(g.denoiser(n), x, config(128, e), gen);
    const std::vector<double>& v = est.divergence_integral;
    const double mean = std::accumulate(v.begin(), v.end(), 0.0) / n;
    double var = 0;
    for (double e2 : v) var += (e2 - mean) * (e2 - mean);
    const double se = std::sqrt(var / (n - 1) / n);
    EXPECT_GT(se, 1e-4);  // really random
    EXPECT_NEAR(mean, exact.divergence_integral[0], 4 * se);
    EXPECT_NEAR(est.prior_log_density[0], exact.prior_log_density[0], 1e-9);  // same trajectory
  }
}

TEST(OdeLikelihood, LinearDenoiserDivergenceIsExact) {
  // D = a x: dD/dx = a I, div D = a dim; exact and Rademacher give it to rounding.
  const double a = 0.37;
  const SigmaDenoiser lin = [a](const Tensor& x, double) { return SigmaDenoised{scale(x, a), -1.0}; };
  Generator gen(3);
  const Tensor x = randn({3, 2, 2, 2}, gen, Device::cpu(), DType::f64);
  for (DivergenceEstimator e : {DivergenceEstimator::exact, DivergenceEstimator::rademacher}) {
    const DenoisedDivergence dd = denoise_with_divergence(lin, x, 0.5, e, hutchinson_probe(x, e, gen));
    ASSERT_EQ(dd.div.size(), 3u);
    for (double v : dd.div) EXPECT_NEAR(v, a * 8, 1e-12);
    EXPECT_EQ(dd.evaluations, e == DivergenceEstimator::exact ? 8 : 1);
  }
  // The Rademacher probe is +-1 and the Gaussian one is not.
  for (double v : hutchinson_probe(x, DivergenceEstimator::rademacher, gen).to_double_vector())
    EXPECT_EQ(std::abs(v), 1.0);
  EXPECT_FALSE(hutchinson_probe(x, DivergenceEstimator::exact, gen).defined());
}

TEST(OdeLikelihood, VpAdapterOfAnOracleGivesTheGaussianDensityForEveryMeanType) {
  // The DDPM route: the optimal network for data N(mu, s^2), built from engine ops, through
  // vp_sigma_denoiser on the linear schedule, T = 1000 (sigma 0.01 to 157), predicting eps,
  // x_0 or v, and once with a learned-variance half (2C outputs: the adapter uses the mean
  // half). Every variant is the same D, so the same likelihood.
  const double mu = 0.2, s = 0.5;
  const DiffusionSchedule sched(linear_betas(1000));
  const std::vector<double> train = vp_sigmas(sched);
  auto oracle = [train, mu, s](ModelMeanType type, bool learned_sigma) -> DenoiseFn {
    return [=](const Tensor& xvp, const std::vector<double>& t, const std::vector<std::int64_t>&) {
      // eps* = sqrt(1 - abar) (x_vp - sqrt(abar) mu) / (abar s^2 + 1 - abar); one t per batch.
      const double sg = sigma_for_timestep(train, t[0]), abar = 1.0 / (1.0 + sg * sg);
      const double v = abar * s * s + 1.0 - abar;
      const Tensor eps = scale(add_scalar(xvp, -std::sqrt(abar) * mu), std::sqrt(1.0 - abar) / v);
      const Tensor x0 = scale(sub(xvp, scale(eps, std::sqrt(1.0 - abar))), 1.0 / std::sqrt(abar));
      Tensor out = type == ModelMeanType::eps ? eps
                   : type == ModelMeanType::x0
                       ? x0
                       : sub(scale(eps, std::sqrt(abar)), scale(x0, std::sqrt(1.0 - abar)));  // v
      if (learned_sigma) out = concat({out, scale(xvp, 3.0)}, -1);  // a variance half to ignore
      return out;
    };
  };
  SamplerConfig sc;
  sc.clip_x0 = false;
  const auto [smin, smax] = resolve_sigma_range(sched, sc);
  OdeLikelihoodConfig c = config(128, DivergenceEstimator::exact);
  c.sigma_min = smin;
  c.sigma_max = smax;
  Generator gen(5);
  const Tensor x = add_scalar(scale(randn({6, 1}, gen, Device::cpu(), DType::f64), s), mu);
  const GaussianData g{{mu}, {s * s}};
  std::vector<double> reference;
  for (const auto& [type, learned] : std::vector<std::pair<ModelMeanType, bool>>{{ModelMeanType::eps, false},
                                                                                 {ModelMeanType::x0, false},
                                                                                 {ModelMeanType::v, false},
                                                                                 {ModelMeanType::eps, true}}) {
    SCOPED_TRACE(model_mean_type_name(type) + std::string(learned ? " + learned sigma" : ""));
    sc.mean_type = type;
    sc.learned_sigma = learned;
    const OdeLikelihood res = ode_log_likelihood(vp_sigma_denoiser(train, oracle(type, learned), sc, {}), x, c, gen);
    EXPECT_LT(max_error(g, x, res, smin * smin), 5e-3);  // Heun's and the prior's (~ mu z / 157)
    if (reference.empty()) reference = res.log_likelihood;
    for (std::size_t i = 0; i < reference.size(); ++i) EXPECT_NEAR(res.log_likelihood[i], reference[i], 1e-9);
  }
}

TEST(OdeLikelihood, HutchinsonVjpThroughTheTinyUnetMatchesFiniteDifferences) {
  // An EDM-preconditioned tiny UNet with every weight perturbed (the zero-initialised output
  // convolution would make D = c_skip x): eps^T (dD/dx) eps from the tape against the central
  // difference (eps^T D(x + h eps) - eps^T D(x - h eps)) / 2h, summed in f64 on the host. The
  // UNet itself runs in f32 (its timestep embedding is f32), so h is moderate: the truncation
  // error O(h^2) and the rounding O(64 * 1e-7 / h) are both below the tolerance.
  unet::UNetConfig cfg = testing::tiny_unet_config(8, 1);
  Generator init(11);
  unet::UNet net(cfg, init, Device::cpu());
  for (const auto& [name, t] : net.named_parameters()) {
    const std::vector<float> noise = randn(t.shape(), init).to_vector();
    float* p = t.data<float>();
    for (std::int64_t i = 0; i < t.numel(); ++i) p[i] += 0.1f * noise[static_cast<std::size_t>(i)];
  }
  const DenoiseFn fn = [&net](const Tensor& x, const std::vector<double>& t, const std::vector<std::int64_t>& y) {
    return net.forward(x, t, y, nn::Context{});
  };
  SamplerConfig sc;
  sc.clip_x0 = false;
  const EdmConfig edm;
  const double sigma = 0.7;
  const SigmaDenoiser den = [&](const Tensor& x, double s) {
    return SigmaDenoised{edm_denoise(fn, edm, sc, x, s, {}), -1.0};
  };
  Generator gen(12);
  const Tensor x = randn({2, 8, 8, 1}, gen);
  for (DivergenceEstimator e : {DivergenceEstimator::rademacher, DivergenceEstimator::gaussian}) {
    SCOPED_TRACE(divergence_estimator_name(e));
    const Tensor eps = hutchinson_probe(x, e, gen);
    const DenoisedDivergence dd = denoise_with_divergence(den, x, sigma, e, eps);
    const double h = 1e-2;
    NoGradGuard no_grad;
    const std::vector<double> dp = den(add(x, scale(eps, h)), sigma).x0.to_double_vector();
    const std::vector<double> dm = den(sub(x, scale(eps, h)), sigma).x0.to_double_vector();
    const std::vector<double> ev = eps.to_double_vector();
    for (std::size_t i = 0; i < 2; ++i) {
      double fd = 0;
      for (std::size_t j = i * 64; j < (i + 1) * 64; ++j) fd += ev[j] * (dp[j] - dm[j]) / (2 * h);
      EXPECT_NEAR(dd.div[i], fd, 3e-4 * std::max(1.0, std::abs(fd)));
    }
    // D itself is the plain forward's.
    const std::vector<double> d0 = den(x, sigma).x0.to_double_vector();
    const std::vector<double> d1 = dd.denoised.to_double_vector();
    for (std::size_t j = 0; j < d0.size(); ++j) ASSERT_NEAR(d0[j], d1[j], 1e-6);
  }
}

TEST(OdeLikelihood, BitsPerDimOfDequantizedData) {
  // Uniform density on [-1, 1)^D (2^-D) is uniform bytes: exactly 8 bits/dim.
  EXPECT_NEAR(dequantized_bits_per_dim(-5 * std::log(2.0), 5), 8.0, 1e-12);
  // A density known on both scales: u ~ N(0, 1) is y = 128 (u + 1) ~ N(128, 128^2) on [0, 256).
  const std::vector<double> u = {-0.3, 0.9, 0.05};
  double log_pu = 0, log_py = 0;
  for (double v : u) {
    log_pu += -0.5 * v * v - 0.5 * std::log(2 * kPi);
    const double y = 128 * (v + 1);
    log_py += -0.5 * (y - 128) * (y - 128) / (128.0 * 128.0) - 0.5 * std::log(2 * kPi * 128.0 * 128.0);
  }
  EXPECT_NEAR(dequantized_bits_per_dim(log_pu, 3), -log_py / (3 * std::log(2.0)), 1e-12);

  // Dequantization: every value inside its byte's bin [k/128 - 1, (k+1)/128 - 1), the offset
  // within the bin uniform (mean 1/2, variance 1/12).
  std::vector<std::uint8_t> bytes(4000);
  for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<std::uint8_t>((i * 37) % 256);
  Generator gen(9);
  const std::vector<double> v = dequantize_uniform(bytes, {10, 20, 20, 1}, gen).to_double_vector();
  double m = 0, q = 0;
  for (std::size_t i = 0; i < v.size(); ++i) {
    const double off = (v[i] + 1.0) * 128.0 - bytes[i];
    ASSERT_GE(off, -1e-4);
    ASSERT_LT(off, 1.0 + 1e-4);
    m += off;
    q += (off - 0.5) * (off - 0.5);
  }
  EXPECT_NEAR(m / 4000, 0.5, 4 * std::sqrt(1.0 / 12 / 4000));
  EXPECT_NEAR(q / 4000, 1.0 / 12, 0.01);
  EXPECT_THROW(dequantize_uniform(bytes, {1, 2, 2, 1}, gen), ValueError);
}

TEST(OdeLikelihood, BadSettingsAreValueErrors) {
  const GaussianData g{{0}, {0.25}};
  const Tensor x = draw(g, 2, 1);
  Generator gen(0);
  OdeLikelihoodConfig c = config(0, DivergenceEstimator::exact);
  EXPECT_THROW(ode_log_likelihood(g.denoiser(2), x, c, gen), ValueError);  // no steps
  c = config(4, DivergenceEstimator::exact);
  c.sigma_min = 90;
  EXPECT_THROW(ode_log_likelihood(g.denoiser(2), x, c, gen), ValueError);  // sigma_min >= sigma_max
  c = config(4, DivergenceEstimator::exact);
  c.data_std = -1;
  EXPECT_THROW(ode_log_likelihood(g.denoiser(2), x, c, gen), ValueError);
  // A denoiser the tape cannot differentiate (host arithmetic) is named, not silently zero.
  const SigmaDenoiser host = [](const Tensor& t, double) {
    return SigmaDenoised{Tensor::from_vector(t.to_double_vector(), t.shape()), -1.0};
  };
  EXPECT_THROW(ode_log_likelihood(host, x, config(2, DivergenceEstimator::rademacher), gen), ValueError);
  DivergenceEstimator e{};
  EXPECT_FALSE(parse_divergence_estimator("hutchinson", e));
  EXPECT_TRUE(parse_divergence_estimator("gaussian", e));
  EXPECT_EQ(e, DivergenceEstimator::gaussian);
}

}  // namespace
}  // namespace ddpm::diffusion

namespace ddpm::eval {
namespace {

TEST(NllEval, DatasetLoopAddsUpAndRefusesBadRequests) {
  // 4 tiny 2x2x1 "images"; the model: the Gaussian oracle N(0, 0.5^2) per pixel, whose
  // exact density of dequantized u is known, so the loop's bits/dim can be checked.
  Dataset ds;
  ds.name = "tiny";
  ds.n = 4, ds.height = 2, ds.width = 2, ds.channels = 1;
  ds.images = {0, 64, 128, 255, 10, 20, 30, 40, 200, 100, 50, 150, 128, 128, 128, 128};
  const double s2 = 0.25;
  const DenoiserForLabels make = [s2](const std::vector<std::int64_t>& labels) -> diffusion::SigmaDenoiser {
    EXPECT_TRUE(labels.empty());
    return [s2](const Tensor& x, double sigma) {
      return diffusion::SigmaDenoised{scale(x, s2 / (s2 + sigma * sigma)), -1.0};
    };
  };
  NllEvalOptions o;
  o.ode.steps = 128;
  o.ode.data_std = 0.5;
  o.batch_size = 3;  // two batches, the second partial
  const NllEvalReport r = evaluate_nll(make, ds, o);
  EXPECT_EQ(r.n, 4);
  EXPECT_EQ(r.dim, 4);
  EXPECT_EQ(r.evaluations, 256);
  EXPECT_NEAR(r.bpd, r.prior_bpd + r.divergence_bpd, 1e-9);
  // The same numbers by hand: the same generator draws U then the probe, per batch.
  Generator gen(0);
  double expected = 0;
  for (std::int64_t b = 0; b < 4; b += 3) {
    const std::int64_t count = std::min<std::int64_t>(3, 4 - b);
    const std::vector<std::uint8_t> bytes(ds.images.begin() + b * 4, ds.images.begin() + (b + count) * 4);
    const Tensor u = diffusion::dequantize_uniform(bytes, {count, 2, 2, 1}, gen);
    diffusion::hutchinson_probe(u, o.ode.divergence, gen);  // advance as the loop does
    const std::vector<double> uv = u.to_double_vector();
    for (std::int64_t i = 0; i < count; ++i) {
      double logp = 0;  // log N(u; 0, (s^2 + sigma_min^2) I)
      const double v = s2 + o.ode.sigma_min * o.ode.sigma_min;
      for (std::int64_t j = 0; j < 4; ++j)
        logp += -0.5 * uv[i * 4 + j] * uv[i * 4 + j] / v - 0.5 * std::log(2 * 3.14159265358979323846 * v);
      expected += diffusion::dequantized_bits_per_dim(logp, 4) / 4;
    }
  }
  EXPECT_NEAR(r.bpd, expected, 5e-3);
  EXPECT_GT(r.bpd_stderr, 0.0);

  o.num_classes = 3;  // class-conditional on unlabelled data
  EXPECT_THROW(evaluate_nll(make, ds, o), ValueError);
  // Labelled data: each batch's denoiser gets its images' labels, or the null label.
  ds.labels = {2, 0, 1, 1};
  for (bool null_label : {false, true}) {
    std::vector<std::int64_t> seen;
    o.null_label = null_label;
    o.ode.steps = 2;
    evaluate_nll(
        [&](const std::vector<std::int64_t>& labels) {
          seen.insert(seen.end(), labels.begin(), labels.end());
          return make({});
        },
        ds, o);
    const std::vector<std::int64_t> expected_labels = null_label ? std::vector<std::int64_t>(4, 3) : ds.labels;
    EXPECT_EQ(seen, expected_labels);
  }
  o.null_label = false;
  o.num_classes = 0;
  o.ode.steps = 0;
  EXPECT_THROW(evaluate_nll(make, ds, o), ValueError);
}

TEST(NllEval, FlagsParseIntoNllArgs) {
  CLI::App app{"test", "ddpm-eval"};
  EvalCommand c;
  add_eval_subcommands(app, c);
  std::vector<std::string> args = {"ddpm-eval", "nll",          "--checkpoint", "runs/x",   "--data",
                                   "toy",       "--ode-solver", "rk45",         "--rtol",   "1e-4",
                                   "--atol",    "1e-6",         "--hutchinson", "gaussian", "--ode-steps",
                                   "7",         "--null-label", "--sigma-max",  "50",       "--no-ema"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  app.parse(static_cast<int>(argv.size()), argv.data());
  EXPECT_EQ(c.mode(), EvalMode::nll);
  EXPECT_EQ(c.nll.checkpoint, "runs/x");
  EXPECT_EQ(c.nll.ode_solver, "rk45");
  EXPECT_EQ(c.nll.rtol, 1e-4);
  EXPECT_EQ(c.nll.atol, 1e-6);
  EXPECT_EQ(c.nll.hutchinson, "gaussian");
  EXPECT_EQ(c.nll.ode_steps, 7);
  EXPECT_TRUE(c.nll.null_label);
  EXPECT_EQ(c.nll.sigma_max, 50.0);
  EXPECT_FALSE(c.nll.ema);
}

TEST(NllEval, LatentRunsAndBadEstimatorsAreRefused) {
  testing::TempDir dir("nll_latent");
  const std::filesystem::path run = std::filesystem::path(dir.path) / "run";
  std::filesystem::create_directories(run / run::kRunAutoencoderFolder);
  std::ofstream(run / "config.json") << R"({"model": {}, "autoencoder": {}})";
  std::ofstream(run / run::kRunAutoencoderFolder / autoencoder::kAutoencoderConfig)
      << R"({"architecture": ")" << autoencoder::kAutoencoderArchitecture << R"("})";
  std::ostringstream out;
  NllArgs a;
  a.checkpoint = run.string();
  a.data = "toy";
  try {
    run_nll(a, out);
    FAIL() << "a latent run was evaluated";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("latent diffusion model"), std::string::npos) << e.what();
  }
  a.hutchinson = "hutch";
  EXPECT_THROW(run_nll(a, out), ValueError);
  a.hutchinson = "rademacher";
  a.ode_steps = 0;
  EXPECT_THROW(run_nll(a, out), ValueError);
}

}  // namespace
}  // namespace ddpm::eval
