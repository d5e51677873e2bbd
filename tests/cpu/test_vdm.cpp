// Variational diffusion models (models/diffusion/vdm.h): the continuous loss's invariance to
// the schedule's interior and the discrete L_T's convergence to it on Gaussian data (against
// the closed form), the Monte Carlo estimate against quadrature, finite-difference checks in
// double of the learned schedule (in t and in its weights), of the loss in the network's
// output and of the variance-minimising gradient, the antithetic time sampler, the prior and
// reconstruction terms against direct sums, and the grid bridge to DiffusionSchedule.
#include <algorithm>
#include <cmath>
#include <memory>
#include <numeric>
#include <vector>

#include <gtest/gtest.h>

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/reduce.h"
#include "models/diffusion/vdm.h"
#include "support/gradcheck.h"

namespace ddpm::diffusion {
namespace {

double sigmoid(double a) { return 1.0 / (1.0 + std::exp(-a)); }

// A learned curve with F random weights and a small linear part, so the interior is far
// from the fixed schedule's straight line.
GammaCurve random_curve(const VdmConfig& c, std::int64_t f, std::uint64_t seed, double w1 = 0.3) {
  const std::vector<double> w2 = testing::random_tensor({f}, seed, DType::f64, 3.0).to_double_vector();
  const std::vector<double> b2 = testing::random_tensor({f}, seed + 1, DType::f64, 2.0).to_double_vector();
  const std::vector<double> w3 = testing::random_tensor({f}, seed + 2).to_double_vector();
  return GammaCurve(c, w1, w2, b2, w3);
}

// For x ~ N(0, s^2 I) the optimal eps^ is E[eps | z_t] = sigma z / (alpha^2 s^2 + sigma^2),
// and the remaining error per dimension is alpha^2 s^2 / (alpha^2 s^2 + sigma^2) =
// s^2 SNR / (s^2 SNR + 1), SNR = exp(-gamma).
double gaussian_mse(double gamma, double s) {
  const double snr = std::exp(-gamma);
  return s * s * snr / (s * s * snr + 1.0);
}
// Then int_{g0}^{g1} mse dgamma = log(1 + s^2 e^{-g0}) - log(1 + s^2 e^{-g1}), so
// L_inf = d/2 of that: a function of the endpoints only.
double gaussian_l_inf(double g0, double g1, double s, int d) {
  return 0.5 * d * (std::log1p(s * s * std::exp(-g0)) - std::log1p(s * s * std::exp(-g1)));
}

// 1/2 d int_0^1 gamma'(t) mse(gamma(t)) dt by Simpson's rule on n intervals.
double quadrature_l_inf(const GammaCurve& g, double s, int d, int n = 20000) {
  double acc = 0.0;
  for (int i = 0; i <= n; ++i) {
    const GammaPoint p = g.at(static_cast<double>(i) / n);
    const double w = (i == 0 || i == n) ? 1.0 : (i % 2 ? 4.0 : 2.0);
    acc += w * p.dgamma * gaussian_mse(p.gamma, s);
  }
  return 0.5 * d * acc / (3.0 * n);
}

// L_T = 1/2 d sum_{i=1..T} expm1(gamma(i/T) - gamma((i-1)/T)) mse(gamma(i/T)).
double discrete_l_t(const GammaCurve& g, double s, int d, int T) {
  double acc = 0.0;
  for (int i = 1; i <= T; ++i)
    acc += std::expm1(g.gamma(static_cast<double>(i) / T) - g.gamma(static_cast<double>(i - 1) / T)) *
           gaussian_mse(g.gamma(static_cast<double>(i) / T), s);
  return 0.5 * d * acc;
}

// The optimal Gaussian denoiser as a network: it recovers gamma from the network time.
DenoiseFn gaussian_denoiser(const VdmConfig& c, double s) {
  return [c, s](const Tensor& z, const std::vector<double>& tn, const std::vector<std::int64_t>&) {
    std::vector<double> k;
    for (double v : tn) {
      const double g = c.gamma_min + v / 1000.0 * (c.gamma_max - c.gamma_min);
      const double a2 = sigmoid(-g), s2 = sigmoid(g);
      k.push_back(std::sqrt(s2) / (a2 * s * s + s2));
    }
    Shape shape(static_cast<std::size_t>(z.ndim()), 1);
    shape[0] = z.dim(0);
    return mul(z, Tensor::from_vector(k, shape, z.dtype(), z.device()));
  };
}

TEST(Vdm, ContinuousLossDependsOnlyOnTheEndpoints) {
  const VdmConfig c;  // -13.3 .. 5
  const GammaCurve linear(c), curved = random_curve(c, 16, 11);
  // The two shapes really differ in the interior.
  EXPECT_GT(std::abs(linear.gamma(0.3) - curved.gamma(0.3)), 0.5);
  for (double s : {0.5, 1.0}) {
    const double exact = gaussian_l_inf(c.gamma_min, c.gamma_max, s, 3);
    EXPECT_NEAR(quadrature_l_inf(linear, s, 3), exact, 1e-6 * exact);
    EXPECT_NEAR(quadrature_l_inf(curved, s, 3), exact, 1e-5 * exact);
  }
}

TEST(Vdm, DiscreteLossDecreasesTowardsTheContinuousOne) {
  const VdmConfig c;
  for (const GammaCurve& g : {GammaCurve(c), random_curve(c, 16, 5)}) {
    const double inf = gaussian_l_inf(c.gamma_min, c.gamma_max, 0.7, 2);
    const double l10 = discrete_l_t(g, 0.7, 2, 10), l100 = discrete_l_t(g, 0.7, 2, 100),
                 l1000 = discrete_l_t(g, 0.7, 2, 1000);
    EXPECT_GT(l10, l100);
    EXPECT_GT(l100, l1000);
    EXPECT_GT(l1000, inf);
    EXPECT_LT(l1000 - inf, 0.1 * (l100 - inf));  // the gap shrinks ~ 1/T
  }
}

TEST(Vdm, MonteCarloEstimateAgreesWithQuadrature) {
  for (std::int64_t steps : {std::int64_t{0}, std::int64_t{20}}) {
    VdmConfig c;
    c.steps = steps;
    const GammaCurve g = random_curve(c, 16, 3);
    const double s = 0.8;
    const int n = 4096, d = 4;
    Generator gen(7, 0);
    const Tensor x = mul(randn({n, d}, gen, Device::cpu(), DType::f64), Tensor::full({1}, s, DType::f64));
    const Tensor eps = randn({n, d}, gen, Device::cpu(), DType::f64);
    const std::vector<double> t = sample_vdm_times(n, steps, gen);
    const std::vector<double> l = vdm_diffusion_nats(gaussian_denoiser(c, s), g, x, t, eps, {}).to_double_vector();
    const double mean = std::accumulate(l.begin(), l.end(), 0.0) / n;
    double var = 0.0;
    for (double v : l) var += (v - mean) * (v - mean);
    const double se = std::sqrt(var / (n - 1) / n);
    const double expected = steps == 0 ? quadrature_l_inf(g, s, d) : discrete_l_t(g, s, d, static_cast<int>(steps));
    EXPECT_NEAR(mean, expected, 4.0 * se) << "T = " << steps << ", se " << se;
  }
}

TEST(Vdm, LearnedGammaIsMonotoneWithItsEndpointsAfterInit) {
  VdmConfig c;
  c.schedule = VdmScheduleKind::learned;
  Generator gen(1, 0);
  const VdmSchedule sched(c, gen, Device::cpu(), DType::f64);
  ASSERT_EQ(sched.named_parameters().size(), 4u);
  const GammaCurve g = sched.curve();
  EXPECT_NEAR(g.gamma(0.0), c.gamma_min, 1e-12);
  EXPECT_NEAR(g.gamma(1.0), c.gamma_max, 1e-12);
  double prev = g.gamma(0.0);
  for (int i = 1; i <= 1000; ++i) {
    const GammaPoint p = g.at(i / 1000.0);
    EXPECT_GT(p.gamma, prev);
    EXPECT_GT(p.dgamma, 0.0);
    prev = p.gamma;
  }
}

TEST(Vdm, LearnedGammaDerivativeInTMatchesFiniteDifferences) {
  const GammaCurve g = random_curve(VdmConfig{}, 8, 21);
  const double h = 1e-5;
  for (double t : {0.0 + h, 0.1, 0.37, 0.5, 0.81, 1.0 - h}) {
    const double fd = (g.gamma(t + h) - g.gamma(t - h)) / (2 * h);
    EXPECT_NEAR(g.at(t).dgamma, fd, 1e-6 * std::max(1.0, std::abs(fd))) << "t = " << t;
  }
}

TEST(Vdm, LearnedGammaWeightGradientsMatchFiniteDifferences) {
  const VdmConfig c;
  const std::int64_t f = 6;
  const GammaCurve g = random_curve(c, f, 31);
  const std::vector<double> t = {0.05, 0.4, 0.77}, cg = {0.7, -1.3, 0.4}, cd = {0.2, 0.5, -0.9};
  std::vector<double> grad(static_cast<std::size_t>(g.num_weights()), 0.0);
  g.accumulate_grad(t, cg, cd, grad);
  // The raw weights, perturbed one at a time.
  std::vector<double> w(static_cast<std::size_t>(g.num_weights()));
  w[0] = 0.3;
  const std::vector<double> w2 = testing::random_tensor({f}, 31, DType::f64, 3.0).to_double_vector();
  const std::vector<double> b2 = testing::random_tensor({f}, 32, DType::f64, 2.0).to_double_vector();
  const std::vector<double> w3 = testing::random_tensor({f}, 33).to_double_vector();
  std::copy(w2.begin(), w2.end(), w.begin() + 1);
  std::copy(b2.begin(), b2.end(), w.begin() + 1 + f);
  std::copy(w3.begin(), w3.end(), w.begin() + 1 + 2 * f);
  auto objective = [&](const std::vector<double>& v) {
    const GammaCurve gv(c, v[0], {v.begin() + 1, v.begin() + 1 + f}, {v.begin() + 1 + f, v.begin() + 1 + 2 * f},
                        {v.begin() + 1 + 2 * f, v.end()});
    double acc = 0.0;
    for (std::size_t j = 0; j < t.size(); ++j) acc += cg[j] * gv.gamma(t[j]) + cd[j] * gv.at(t[j]).dgamma;
    return acc;
  };
  const double h = 1e-6;
  for (std::size_t k = 0; k < w.size(); ++k) {
    std::vector<double> up = w, down = w;
    up[k] += h;
    down[k] -= h;
    const double fd = (objective(up) - objective(down)) / (2 * h);
    EXPECT_NEAR(grad[k], fd, 1e-6 + 1e-5 * std::abs(fd)) << "weight " << k;
  }
}

TEST(Vdm, LossGradientInTheNetworkOutputMatchesFiniteDifferences) {
  for (std::int64_t steps : {std::int64_t{0}, std::int64_t{10}}) {
    VdmConfig c;
    c.steps = steps;
    Generator gen(2, 0);
    const VdmSchedule sched(c, gen, Device::cpu(), DType::f64);
    const Tensor x = testing::random_tensor({3, 2, 2, 1}, 40), eps = testing::random_tensor({3, 2, 2, 1}, 41);
    const std::vector<double> t = {0.1, 0.5, 0.9};
    auto f = [&](const std::vector<Tensor>& in) {
      // The "network" returns its input P plus 0.1 z: the loss's gradient reaches P and the output.
      const DenoiseFn net = [&in](const Tensor& z, const std::vector<double>&, const std::vector<std::int64_t>&) {
        return add(in[0], scale(z, 0.1));
      };
      return vdm_diffusion_loss(net, sched, x, t, eps, {}).nats;
    };
    EXPECT_TRUE(testing::gradcheck(f, {testing::param(testing::random_tensor({3, 2, 2, 1}, 42))}));
  }
}

// sum_i L_i (plain) or sum_i L_i^2 (variance) of the tiny case, by the host curve with raw
// weights v (the objective of the finite differences).
double tiny_objective(const VdmConfig& c, const std::vector<double>& v, std::int64_t f, const DenoiseFn& net,
                      const Tensor& x, const std::vector<double>& t, const Tensor& eps, bool squared) {
  const GammaCurve g(c, v[0], {v.begin() + 1, v.begin() + 1 + f}, {v.begin() + 1 + f, v.begin() + 1 + 2 * f},
                     {v.begin() + 1 + 2 * f, v.end()});
  double acc = 0.0;
  for (double l : vdm_diffusion_nats(net, g, x, t, eps, {}).to_double_vector()) acc += squared ? l * l : l;
  return acc;
}

TEST(Vdm, VarianceMinimisingGradientIsTheGradientOfTheSquaredLoss) {
  for (std::int64_t steps : {std::int64_t{0}, std::int64_t{10}}) {
    VdmConfig c;
    c.steps = steps;
    c.schedule = VdmScheduleKind::learned;
    c.features = 4;
    Generator gen(3, 0);
    const VdmSchedule sched(c, gen, Device::cpu(), DType::f64);
    const Tensor x = testing::random_tensor({3, 2}, 50, DType::f64, 0.5), eps = testing::random_tensor({3, 2}, 51);
    const std::vector<double> t = {0.2, 0.55, 0.9};
    // A fixed nonlinear "network" of z, so the path through z_t matters. It ignores its time
    // input: that is a double, a stop-gradient for the schedule (vdm.h).
    const DenoiseFn net = [](const Tensor& z, const std::vector<double>&, const std::vector<std::int64_t>&) {
      return tanh(scale(z, 0.3));
    };
    std::vector<double> w;
    for (const Tensor& p : sched.weights())
      for (double v : p.to_double_vector()) w.push_back(v);
    for (bool variance : {false, true}) {
      for (const Tensor& p : sched.weights())
        if (p.grad().defined()) p.grad().zero_();
      sum(vdm_diffusion_loss(net, sched, x, t, eps, {}, variance ? 1.0 : 0.0).nats).backward();
      std::vector<double> grad;
      for (const Tensor& p : sched.weights())
        for (double v : p.grad().to_double_vector()) grad.push_back(v);
      const double h = 1e-4;  // L^2 reaches ~1e4 at T = 10: a smaller h drowns in rounding
      for (std::size_t k = 0; k < w.size(); ++k) {
        std::vector<double> up = w, down = w;
        up[k] += h;
        down[k] -= h;
        const double fd = (tiny_objective(c, up, c.features, net, x, t, eps, variance) -
                           tiny_objective(c, down, c.features, net, x, t, eps, variance)) /
                          (2 * h);
        EXPECT_NEAR(grad[k], fd, 1e-6 + 1e-5 * std::abs(fd))
            << (variance ? "variance" : "plain") << " gradient, T = " << steps << ", weight " << k;
      }
    }
  }
}

TEST(Vdm, AntitheticTimesAreStratified) {
  Generator gen(4, 0);
  std::vector<double> t = sample_vdm_times(8, 0, gen);
  std::sort(t.begin(), t.end());
  for (std::size_t i = 1; i < t.size(); ++i) EXPECT_NEAR(t[i] - t[i - 1], 1.0 / 8, 1e-12);
  EXPECT_LT(t.back() - t.front(), 1.0);
  for (double v : sample_vdm_times(64, 10, gen)) {
    EXPECT_NEAR(v * 10, std::round(v * 10), 1e-9);
    EXPECT_GE(v, 0.1 - 1e-12);
    EXPECT_LE(v, 1.0);
  }
}

TEST(Vdm, PriorAndReconstructionMatchDirectSums) {
  VdmConfig c;
  c.gamma_min = -6.0;  // wide enough that the decoder spreads over many values
  c.gamma_max = 2.0;
  const GammaCurve g(c);
  const std::vector<int> pixels = {0, 3, 128, 255, 77, 200};
  std::vector<double> xv;
  for (int k : pixels) xv.push_back(k / 127.5 - 1.0);
  const Tensor x = Tensor::from_vector(xv, {2, 3}, DType::f64);
  const Tensor eps0 = testing::random_tensor({2, 3}, 60);
  const std::vector<double> e = eps0.to_double_vector();
  const std::vector<double> prior = vdm_prior_nats(g, x), recon = vdm_reconstruction_nats(g, x, eps0);
  for (int i = 0; i < 2; ++i) {
    double kl = 0.0, nll = 0.0;
    for (int j = 0; j < 3; ++j) {
      const double xj = xv[i * 3 + j];
      const double m = std::sqrt(sigmoid(-2.0)) * xj, v = sigmoid(2.0);  // q(z_1 | x) = N(m, v)
      kl += 0.5 * (m * m + v - std::log(v) - 1.0);
      const double y = xj + std::exp(-3.0) * e[i * 3 + j];
      double z = 0.0;
      for (int k = 0; k < 256; ++k) z += std::exp(-0.5 * std::pow(y - (k / 127.5 - 1.0), 2) * std::exp(6.0));
      nll -= -0.5 * std::pow(y - xj, 2) * std::exp(6.0) - std::log(z);
    }
    EXPECT_NEAR(prior[i], kl, 1e-12);
    EXPECT_NEAR(recon[i], nll, 1e-9);
  }
  // At the default gamma_min = -13.3 the decoder's std exp(-6.65) = 1.3e-3 is a third of the
  // half-bin 1/255: it is almost certain of the right value (a few 1e-3 nats per dimension).
  const std::vector<double> sharp = vdm_reconstruction_nats(GammaCurve(VdmConfig{}), x, eps0);
  for (double r : sharp) EXPECT_LT(r, 0.03);
  EXPECT_NEAR(vdm_bits_per_dim(3.0 * std::log(2.0), 3), 1.0, 1e-15);
}

TEST(Vdm, GridScheduleMatchesGammaAndTheDenoiserMapsIndices) {
  VdmConfig c;
  const GammaCurve linear(c), curved = random_curve(c, 8, 70);
  for (const GammaCurve* g : {&linear, &curved}) {
    const DiffusionSchedule s = vdm_grid_schedule(*g, 50);
    ASSERT_EQ(s.num_timesteps(), 50);
    for (int i = 0; i < 50; ++i) EXPECT_NEAR(s.alphas_cumprod[i], sigmoid(-g->gamma((i + 1) / 50.0)), 1e-12);
  }
  std::vector<double> seen;
  const DenoiseFn spy = [&seen](const Tensor& x, const std::vector<double>& tn, const std::vector<std::int64_t>&) {
    seen = tn;
    return x;
  };
  const DenoiseFn grid = vdm_grid_denoiser(spy, std::make_shared<const GammaCurve>(linear), 10);
  grid(Tensor::full({3, 1}, 0.0, DType::f64), {0.0, 4.0, 9.0}, {});
  ASSERT_EQ(seen.size(), 3u);
  // Linear gamma: the network time is 1000 t, t = (i + 1) / 10.
  EXPECT_NEAR(seen[0], 100.0, 1e-9);
  EXPECT_NEAR(seen[1], 500.0, 1e-9);
  EXPECT_NEAR(seen[2], 1000.0, 1e-9);
}

TEST(Vdm, RefusesBadConfigurations) {
  VdmConfig c;
  c.gamma_min = 5.0;
  EXPECT_THROW(check_vdm_config(c), ValueError);
  c = VdmConfig{};
  c.steps = -1;
  EXPECT_THROW(check_vdm_config(c), ValueError);
  EXPECT_THROW(parse_vdm_schedule_kind("cosine"), ValueError);
}

}  // namespace
}  // namespace ddpm::diffusion
