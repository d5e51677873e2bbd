// The stochastic Heun sampler of Karras et al. 2022 (EDM algorithm 2, models/diffusion/karras.h):
// churn off is the deterministic sampler bit for bit; a churned level adds exactly the
// variance gap sigma^^2 - sigma^2 (times S_noise^2) and draws one noise tensor; levels outside
// [S_tmin, S_tmax] are left alone; gamma is capped at sqrt(2) - 1; sigma^ stays inside the
// training range; the whole trajectory matches a hand-run of the algorithm; and a Gaussian
// toy ends with the variance the discretized scheme predicts in closed form.
//
// The analytic denoiser. For data x_0 ~ N(0, s^2 I) and x = x_0 + sigma n, the ideal
// denoiser is D(x; sigma) = E[x_0 | x] = x s^2 / (s^2 + sigma^2), so the eps a DDPM network
// would predict is (x - D) / sigma = x sigma / (s^2 + sigma^2), with x = x_vp sqrt(1 + sigma^2)
// (karras.h: the network sees x_vp = x / sqrt(1 + sigma^2) at t(sigma)). Every step of the
// sampler is then linear in x, which is what makes the closed forms below possible.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "engine/autograd.h"
#include "engine/ops/elementwise.h"
#include "engine/rng.h"
#include "models/diffusion/karras.h"
#include "models/diffusion/sampler.h"
#include "support/value_error.h"

namespace ddpm::diffusion {
namespace {

DiffusionSchedule linear_schedule(std::int64_t T) { return DiffusionSchedule(linear_betas(T)); }

// One network call as the sampler made it: the fractional timestep and the input x_vp.
struct Call {
  double t;
  std::vector<double> x_vp;
};

// The eps-predicting ideal denoiser for data N(0, data_std^2 I) (header), recording its
// calls when `calls` is given.
DenoiseFn gaussian_denoiser(const DiffusionSchedule& sched, double data_std, std::vector<Call>* calls = nullptr) {
  const std::vector<double> train = vp_sigmas(sched);
  return [train, data_std, calls](const Tensor& x, const std::vector<double>& t, const std::vector<std::int64_t>&) {
    for (double ti : t) EXPECT_EQ(ti, t[0]);  // one level per call
    const std::vector<double> xv = x.to_double_vector();
    if (calls) calls->push_back({t[0], xv});
    const double sigma = sigma_for_timestep(train, t[0]);
    const double s2 = data_std * data_std;
    const double k = std::sqrt(1.0 + sigma * sigma) * sigma / (s2 + sigma * sigma);  // eps = k x_vp
    std::vector<double> out(xv.size());
    for (std::size_t i = 0; i < xv.size(); ++i) out[i] = k * xv[i];
    return Tensor::from_vector(out, x.shape(), x.dtype());
  };
}

SamplerConfig heun_config(std::int64_t steps, DType dtype = DType::f64) {
  SamplerConfig c;
  c.kind = SamplerConfig::Kind::heun;
  c.heun_steps = steps;
  c.dtype = dtype;
  return c;
}

// gamma_i of algorithm 2, written out here from the paper (not from karras.cpp).
double edm_gamma(const SamplerConfig& c, double sigma) {
  if (sigma < c.s_tmin || sigma > c.s_tmax) return 0.0;
  return std::min(c.s_churn / static_cast<double>(c.heun_steps), std::sqrt(2.0) - 1.0);
}

double mean_of(const std::vector<double>& v) {
  double m = 0;
  for (double e : v) m += e;
  return m / static_cast<double>(v.size());
}
double variance_of(const std::vector<double>& v) {
  const double m = mean_of(v);
  double q = 0;
  for (double e : v) q += (e - m) * (e - m);
  return q / static_cast<double>(v.size() - 1);
}

// The Generator offset after drawing `tensors` tensors of n elements (each draw rounds up
// to a Philox block of 4).
std::uint64_t offset_after(std::uint64_t tensors, std::uint64_t n) { return tensors * ((n + 3) / 4 * 4); }

// Algorithm 1 as karras.cpp ran it before the churn existed, op for op in the engine's own
// ops: the independent path the churn-free sampler must match bit for bit.
Tensor algorithm1_reference(const DiffusionSchedule& base, const DenoiseFn& net, const Shape& shape,
                            const SamplerConfig& c, Generator& gen) {
  NoGradGuard no_grad;
  const std::vector<double> train = vp_sigmas(base);
  const std::vector<double> sig = karras_sigmas(c.heun_steps, train.front(), train.back(), c.rho);
  auto denoise = [&](const Tensor& x, double sigma) {  // D = x - sigma eps(x c_in, t(sigma))
    const double c_in = 1.0 / std::sqrt(1.0 + sigma * sigma);
    const Tensor eps = net(scale(x, c_in), std::vector<double>(static_cast<std::size_t>(shape[0]),
                                                               timestep_for_sigma(train, sigma)), {});
    return sub(x, scale(eps, sigma));
  };
  Tensor x = scale(randn(shape, gen, Device::cpu(), c.dtype), train.back());
  for (std::size_t i = 0; i + 1 < sig.size(); ++i) {
    const double s = sig[i], s_next = sig[i + 1];
    const Tensor d0 = denoise(x, s);
    if (s_next == 0.0) {
      x = d0;
      continue;
    }
    const Tensor d = scale(sub(x, d0), 1.0 / s);
    const Tensor xe = add(x, scale(d, s_next - s));
    const Tensor d2 = scale(sub(xe, denoise(xe, s_next)), 1.0 / s_next);
    x = add(x, scale(add(d, d2), 0.5 * (s_next - s)));
  }
  return x;
}

TEST(KarrasChurn, ChurnOffIsAlgorithm1BitForBitAndDrawsNothingMore) {
  const DiffusionSchedule s = linear_schedule(100);
  const Shape shape{6, 5, 3};  // 90 elements: not a multiple of 4, so the offset rounding shows
  for (DType dtype : {DType::f32, DType::f64}) {
    SamplerConfig plain = heun_config(6, dtype);
    Generator g_ref(11);
    const std::vector<double> ref =
        algorithm1_reference(s, gaussian_denoiser(s, 0.5), shape, plain, g_ref).to_double_vector();
    // S_churn = 0 with every other churn setting moved: still algorithm 1.
    SamplerConfig off = plain;
    off.s_tmin = 0.2;
    off.s_tmax = 20;
    off.s_noise = 1.007;
    // S_churn > 0 with a window no level falls in: gamma_i = 0 everywhere, also algorithm 1.
    SamplerConfig empty_window = plain;
    empty_window.s_churn = 50;
    empty_window.s_tmin = 1e3;
    empty_window.s_tmax = 1e4;
    for (const SamplerConfig* c : {&plain, &off, &empty_window}) {
      Generator gen(11);
      const std::vector<double> got = sample(s, gaussian_denoiser(s, 0.5), shape, {}, *c, gen).to_double_vector();
      EXPECT_EQ(got, ref);  // bit-identical
      EXPECT_EQ(gen.offset(), g_ref.offset());
      EXPECT_EQ(gen.offset(), offset_after(1, 90));  // x_0 only
    }
  }
}

TEST(KarrasChurn, AChurnedLevelAddsTheVarianceGapAndOthersAreUntouched) {
  // T = 1000 linear: training sigmas 0.01 .. 157. Five levels; the window holds level 2 only.
  const DiffusionSchedule sched = linear_schedule(1000);
  const std::vector<double> train = vp_sigmas(sched);
  SamplerConfig c = heun_config(5);
  const std::vector<double> sig = karras_sigmas(5, train.front(), train.back());
  c.s_tmin = sig[2] * 0.99;
  c.s_tmax = sig[2] * 1.01;
  c.s_churn = 5 * 0.3;  // gamma = S_churn / N = 0.3 (below the cap)
  c.s_noise = 1.2;
  ASSERT_NEAR(edm_gamma(c, sig[2]), 0.3, 1e-15);
  ASSERT_EQ(edm_gamma(c, sig[1]), 0.0);
  ASSERT_EQ(edm_gamma(c, sig[3]), 0.0);
  const double s_hat = sig[2] * 1.3;
  ASSERT_LT(s_hat, train.back());  // no clamp here

  const std::int64_t n = 64 * 32 * 32;  // 65536 elements for the statistics
  const Shape shape{64, 32, 32, 1};
  std::vector<Call> calls;
  std::vector<std::vector<double>> states;  // x_{i+1} in EDM's units, from the callback
  Generator gen(21);
  sample(sched, gaussian_denoiser(sched, 0.5, &calls), shape, {}, c, gen, Device::cpu(),
         [&](const StepInfo& info) {
           const std::size_t i = static_cast<std::size_t>(4 - info.index);
           std::vector<double> x = info.x.to_double_vector();
           for (double& e : x) e *= std::sqrt(1.0 + sig[i + 1] * sig[i + 1]);  // undo x / sqrt(1 + sigma^2)
           states.push_back(x);
         });
  ASSERT_EQ(calls.size(), 9u);  // 2N - 1: calls 2i and 2i + 1 belong to level i
  ASSERT_EQ(states.size(), 5u);

  // Level 2: the first call is at t(sigma^), on x^ = x_2 + sqrt(sigma^^2 - sigma^2) S_noise eps.
  EXPECT_EQ(calls[4].t, timestep_for_sigma(train, s_hat));
  std::vector<double> delta(static_cast<std::size_t>(n));
  for (std::size_t j = 0; j < delta.size(); ++j)
    delta[j] = calls[4].x_vp[j] * std::sqrt(1.0 + s_hat * s_hat) - states[1][j];
  const double gap = (s_hat * s_hat - sig[2] * sig[2]) * c.s_noise * c.s_noise;
  // The sample mean of n N(0, gap) values has std sqrt(gap / n); the sample variance has
  // relative std sqrt(2 / (n - 1)). Five standard deviations each.
  EXPECT_LT(std::abs(mean_of(delta)), 5.0 * std::sqrt(gap / static_cast<double>(n)));
  EXPECT_NEAR(variance_of(delta) / gap, 1.0, 5.0 * std::sqrt(2.0 / static_cast<double>(n - 1)));

  // Levels 1 and 3 are outside the window: the network sees x_i itself at t(sigma_i).
  for (std::size_t level : {1u, 3u}) {
    EXPECT_EQ(calls[2 * level].t, timestep_for_sigma(train, sig[level])) << level;
    double worst = 0;
    for (std::size_t j = 0; j < delta.size(); ++j) {
      const double x = calls[2 * level].x_vp[j] * std::sqrt(1.0 + sig[level] * sig[level]);
      worst = std::max(worst, std::abs(x - states[level - 1][j]) / (1.0 + std::abs(x)));
    }
    EXPECT_LT(worst, 1e-12) << level;  // rounding of the scaling only
  }
  EXPECT_EQ(gen.offset(), offset_after(2, static_cast<std::uint64_t>(n)));  // x_0 and one eps
}

TEST(KarrasChurn, TrajectoryMatchesAHandRunOfAlgorithm2) {
  // EDM's ImageNet-64 setting (table 5) on levels from sigma_max = 80: several levels churned,
  // the top one (80 > S_tmax = 50) and the lowest ones (< S_tmin) not; no clamp (80 sqrt(2) < 157).
  const DiffusionSchedule sched = linear_schedule(1000);
  const std::vector<double> train = vp_sigmas(sched);
  SamplerConfig c = heun_config(8);
  c.sigma_max = 80;
  c.s_churn = 80;  // 80 / 8 = 10: gamma capped at sqrt(2) - 1
  c.s_tmin = 0.05;
  c.s_tmax = 50;
  c.s_noise = 1.003;
  const double data_std = 0.5;
  const Shape shape{16, 1};
  const std::size_t n = 16;

  Generator gen(5);
  const std::vector<double> got = sample(sched, gaussian_denoiser(sched, data_std), shape, {}, c, gen).to_double_vector();

  // The hand-run: scalar algorithm 2 per element, the analytic D in closed form, and the
  // noise from a second generator in the documented order (x_0, then one eps per churned level).
  const std::vector<double> sig = karras_sigmas(8, train.front(), 80.0);
  auto D = [&](double x, double sigma) { return x * data_std * data_std / (data_std * data_std + sigma * sigma); };
  Generator noise(5);
  std::vector<double> x = randn(shape, noise, Device::cpu(), DType::f64).to_double_vector();
  for (double& e : x) e *= 80.0;
  int churned = 0;
  for (std::size_t i = 0; i + 1 < sig.size(); ++i) {
    const double s = sig[i], s_next = sig[i + 1];
    const double s_hat = s * (1.0 + edm_gamma(c, s));
    if (s_hat > s) {
      ++churned;
      const std::vector<double> eps = randn(shape, noise, Device::cpu(), DType::f64).to_double_vector();
      for (std::size_t j = 0; j < n; ++j) x[j] += std::sqrt(s_hat * s_hat - s * s) * c.s_noise * eps[j];
    }
    for (std::size_t j = 0; j < n; ++j) {
      const double d = (x[j] - D(x[j], s_hat)) / s_hat;
      const double xe = x[j] + (s_next - s_hat) * d;
      if (s_next == 0.0) {
        x[j] = xe;
        continue;
      }
      const double d2 = (xe - D(xe, s_next)) / s_next;
      x[j] = x[j] + (s_next - s_hat) * 0.5 * (d + d2);
    }
  }
  EXPECT_GE(churned, 3);
  EXPECT_LT(churned, 8);  // some levels are outside [0.05, 50]
  for (std::size_t j = 0; j < n; ++j) EXPECT_NEAR(got[j], x[j], 1e-9 * (1.0 + std::abs(x[j]))) << j;
  EXPECT_EQ(gen.offset(), noise.offset());
  EXPECT_EQ(gen.offset(), offset_after(1 + static_cast<std::uint64_t>(churned), n));
}

TEST(KarrasChurn, GammaIsCappedAtSqrt2MinusOneAndSigmaHatStaysInTheTrainingRange) {
  const DiffusionSchedule sched = linear_schedule(1000);
  const std::vector<double> train = vp_sigmas(sched);
  const double top = train.back();
  SamplerConfig c = heun_config(6);
  const std::vector<double> sig = karras_sigmas(6, train.front(), top);

  // Small S_churn: gamma = S_churn / N on every level but the first (at the top: clamped).
  c.s_churn = 0.6;
  std::vector<double> hat = churned_sigmas(sig, train, c);
  ASSERT_EQ(hat.size(), 6u);
  EXPECT_EQ(hat[0], sig[0]);  // sigma_0 = sigma_{T-1}: no room above, not churned
  for (std::size_t i = 1; i < 6; ++i) EXPECT_DOUBLE_EQ(hat[i], std::min(sig[i] * 1.1, top)) << i;

  // Large S_churn: gamma = sqrt(2) - 1, so sigma^ = sqrt(2) sigma and the variance doubles:
  // sigma^^2 - sigma^2 = sigma^2 (unless the clamp bites).
  c.s_churn = 1000;
  hat = churned_sigmas(sig, train, c);
  std::int64_t churned = 0;
  for (std::size_t i = 0; i < 6; ++i) {
    EXPECT_LE(hat[i], top) << i;
    EXPECT_GE(hat[i], sig[i]) << i;
    if (sig[i] * std::sqrt(2.0) <= top) {
      EXPECT_NEAR(hat[i] * hat[i] - sig[i] * sig[i], sig[i] * sig[i], 1e-12 * sig[i] * sig[i]) << i;
    } else {
      EXPECT_EQ(hat[i], top) << i;  // clamped to the training range's top: t(sigma^) = T-1
      EXPECT_EQ(timestep_for_sigma(train, hat[i]), 999.0) << i;
    }
    churned += hat[i] > sig[i] ? 1 : 0;
  }
  ASSERT_LT(sig[1] * std::sqrt(2.0), top);  // this level set has no partially clamped level ...
  EXPECT_EQ(churned, 5);                    // ... so all but the top one are churned

  // A level whose raised noise would pass the top is churned only up to it (partially).
  const std::vector<double> near_top = karras_sigmas(3, train.front(), top * 0.9);
  hat = churned_sigmas(near_top, train, c);
  EXPECT_EQ(hat[0], top);
  EXPECT_GT(hat[0], near_top[0]);

  // In the sampler: the network never sees t > T-1, and only the churned levels draw.
  std::vector<Call> calls;
  Generator gen(3);
  sample(sched, gaussian_denoiser(sched, 0.5, &calls), {4, 2}, {}, c, gen);
  for (const Call& call : calls) EXPECT_LE(call.t, 999.0);
  EXPECT_EQ(calls.front().t, 999.0);
  EXPECT_EQ(gen.offset(), offset_after(1 + static_cast<std::uint64_t>(churned), 8));
}

TEST(KarrasChurn, TheGeneratorAdvancesOneTensorPerChurnedLevel) {
  const DiffusionSchedule sched = linear_schedule(200);
  const std::vector<double> train = vp_sigmas(sched);
  const std::vector<double> sig = karras_sigmas(7, train.front(), train.back());
  const Shape shape{3, 7};  // 21 elements: one draw takes 24 stream elements
  struct Window {
    double tmin, tmax;
  };
  for (Window w : {Window{0, std::numeric_limits<double>::infinity()}, Window{0.05, 5}, Window{sig[3], sig[3]},
                   Window{sig[6], sig[2]}, Window{200, 300}}) {
    SamplerConfig c = heun_config(7);
    c.s_churn = 2;
    c.s_tmin = w.tmin;
    c.s_tmax = w.tmax;
    // Expected: the levels in the window with room below the top (the first level has none).
    std::uint64_t expected = 0;
    for (std::size_t i = 0; i < 7; ++i)
      if (sig[i] >= w.tmin && sig[i] <= w.tmax && sig[i] < train.back()) ++expected;
    Generator gen(8);
    sample(sched, gaussian_denoiser(sched, 0.5), shape, {}, c, gen);
    EXPECT_EQ(gen.offset(), offset_after(1 + expected, 21)) << w.tmin << " " << w.tmax;
  }
}

TEST(KarrasChurn, GaussianToyEndsWithTheVarianceTheSchemePredicts) {
  // Data N(0, 0.5^2), the ideal denoiser, 64 levels from sigma_max = 80, EDM's ImageNet churn.
  // Each step is linear in x: a churn adds variance (sigma^^2 - sigma^2) S_noise^2 and the
  // Heun step multiplies x by a_i, with k(sigma) = sigma / (s^2 + sigma^2) (dx/dsigma = k x)
  // and h = sigma_{i+1} - sigma^:
  //   a_i = 1 + h/2 (k(sigma^) + k(sigma_{i+1}) (1 + h k(sigma^)))   (Euler then trapezoid)
  //   a_{N-1} = s^2 / (s^2 + sigma^^2)                                  (the last step: D)
  // so Var[x_N] follows in closed form from Var[x_0] = sigma_max^2; with exact integration it
  // would be s^2 (the probability-flow ODE and the churn both keep the marginals).
  const DiffusionSchedule sched = linear_schedule(1000);
  const std::vector<double> train = vp_sigmas(sched);
  const double data_std = 0.5, s2 = data_std * data_std;
  SamplerConfig c = heun_config(64);
  c.sigma_max = 80;
  c.s_churn = 80;
  c.s_tmin = 0.05;
  c.s_tmax = 50;
  c.s_noise = 1.003;
  const std::vector<double> sig = karras_sigmas(64, train.front(), 80.0);
  auto k = [&](double sigma) { return sigma / (s2 + sigma * sigma); };
  double V = 80.0 * 80.0;
  for (std::size_t i = 0; i + 1 < sig.size(); ++i) {
    const double s = sig[i], s_next = sig[i + 1];
    const double s_hat = s * (1.0 + edm_gamma(c, s));
    V += (s_hat * s_hat - s * s) * c.s_noise * c.s_noise;
    double a;
    if (s_next == 0.0) {
      a = s2 / (s2 + s_hat * s_hat);
    } else {
      const double h = s_next - s_hat;
      a = 1.0 + 0.5 * h * (k(s_hat) + k(s_next) * (1.0 + h * k(s_hat)));
    }
    V *= a * a;
  }
  EXPECT_NEAR(V / s2, 1.0, 0.06);  // the discretization error of 64 levels with churn (~4%)

  const std::int64_t n = 40000;
  Generator gen(17);
  const std::vector<double> x = sample(sched, gaussian_denoiser(sched, data_std), {n, 1}, {}, c, gen).to_double_vector();
  const double tol = 5.0 * std::sqrt(2.0 / static_cast<double>(n - 1));  // 5 std of a sample variance
  EXPECT_NEAR(variance_of(x) / V, 1.0, tol);
  EXPECT_NEAR(variance_of(x) / s2, 1.0, 0.06 + tol);
  EXPECT_LT(std::abs(mean_of(x)), 5.0 * std::sqrt(V / static_cast<double>(n)));
  // The noise matters: without the churn's variance the same closed form would be far off.
  double V_no_noise = 80.0 * 80.0;
  for (std::size_t i = 0; i + 1 < sig.size(); ++i) {
    const double s = sig[i], s_next = sig[i + 1], s_hat = s * (1.0 + edm_gamma(c, s));
    const double h = s_next - s_hat;
    const double a = s_next == 0.0 ? s2 / (s2 + s_hat * s_hat)
                                   : 1.0 + 0.5 * h * (k(s_hat) + k(s_next) * (1.0 + h * k(s_hat)));
    V_no_noise *= a * a;
  }
  EXPECT_GT(std::abs(V_no_noise / V - 1.0), 10 * tol);
}

TEST(KarrasChurn, BadSettingsAreValueErrorsNamingTheField) {
  const DiffusionSchedule sched = linear_schedule(50);
  auto message = [&](void (*edit)(SamplerConfig&)) {
    SamplerConfig c = heun_config(3);
    edit(c);
    return testing::value_error_message([&] {
      Generator gen(1);
      sample(sched, gaussian_denoiser(sched, 0.5), {2, 1}, {}, c, gen);
    });
  };
  auto has = [](const std::string& m, const std::string& part) { return m.find(part) != std::string::npos; };
  std::string m = message([](SamplerConfig& c) { c.s_churn = -1; });
  EXPECT_TRUE(has(m, "s_churn")) << m;
  m = message([](SamplerConfig& c) { c.s_churn = std::numeric_limits<double>::infinity(); });
  EXPECT_TRUE(has(m, "s_churn")) << m;
  m = message([](SamplerConfig& c) { c.s_noise = 0; });
  EXPECT_TRUE(has(m, "s_noise")) << m;
  m = message([](SamplerConfig& c) { c.s_tmin = -0.1; });
  EXPECT_TRUE(has(m, "s_tmin")) << m;
  m = message([](SamplerConfig& c) {
    c.s_tmin = 2;
    c.s_tmax = 1;
  });
  EXPECT_TRUE(has(m, "s_tmin (2) must not exceed s_tmax (1)")) << m;
  m = message([](SamplerConfig& c) { c.s_tmax = std::numeric_limits<double>::quiet_NaN(); });
  EXPECT_TRUE(has(m, "s_tmax")) << m;
  EXPECT_EQ(message([](SamplerConfig& c) { c.s_churn = 5; }), "no error");
}

}  // namespace
}  // namespace ddpm::diffusion
