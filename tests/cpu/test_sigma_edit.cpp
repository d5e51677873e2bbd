// Tests for models/diffusion/sigma_edit.h (inversion, decoding and SDEdit in EDM's sigma
// space) on the exact denoiser of Gaussian data, D(x; sigma) = mu + s^2 / (s^2 + sigma^2) (x - mu),
// whose probability-flow ODE has the closed-form solution
//   x(sigma) - mu = (x(sigma') - mu) sqrt(sigma^2 + s^2) / sqrt(sigma'^2 + s^2).
#include <cmath>
#include <vector>

#include <gtest/gtest.h>

#include "engine/ops/elementwise.h"
#include "engine/rng.h"
#include "models/diffusion/karras.h"
#include "models/diffusion/sigma_edit.h"
#include "support/value_error.h"

namespace ddpm::diffusion {
namespace {

constexpr double kMu = 0.3, kStd = 0.5, kSigmaMin = 0.002, kSigmaMax = 80.0;

// The exact D for N(mu, s^2) data, elementwise, in f64 (counting its calls).
SigmaDenoiser gaussian_denoiser(int* calls = nullptr) {
  return [calls](const Tensor& x, double sigma) {
    if (calls) ++*calls;
    std::vector<double> v = x.to_double_vector();
    const double c = kStd * kStd / (kStd * kStd + sigma * sigma);
    for (double& e : v) e = kMu + c * (e - kMu);
    return SigmaDenoised{Tensor::from_vector(v, x.shape(), x.dtype()), -1.0};
  };
}

SamplerConfig f64_config() {
  SamplerConfig c;
  c.dtype = DType::f64;
  return c;
}

Tensor images(std::uint64_t seed) {  // [2, 4, 4, 3] in about [-1, 1]
  Generator g(seed);
  std::vector<double> v = randn({2, 4, 4, 3}, g, Device::cpu(), DType::f64).to_double_vector();
  for (double& e : v) e = std::tanh(e);
  return Tensor::from_vector(v, {2, 4, 4, 3}, DType::f64);
}

double rms(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (std::size_t k = 0; k < a.size(); ++k) s += (a[k] - b[k]) * (a[k] - b[k]);
  return std::sqrt(s / static_cast<double>(a.size()));
}

TEST(SigmaEdit, InversionFollowsTheExactFlowAndRoundTripErrorShrinksWithLevels) {
  const Tensor y = images(1);
  const std::vector<double> yv = y.to_double_vector();
  // The exact end point of the flow from sigma = 0 up to sigma_max.
  std::vector<double> top(yv.size());
  for (std::size_t k = 0; k < yv.size(); ++k)
    top[k] = kMu + (yv[k] - kMu) * std::sqrt(kSigmaMax * kSigmaMax + kStd * kStd) / kStd;
  double prev_round = 1e9, prev_top = 1e9;
  for (std::int64_t n : {8, 16, 32}) {
    int calls = 0;
    const std::vector<double> levels = karras_sigmas(n, kSigmaMin, kSigmaMax);
    const Tensor x = sigma_ode_invert(gaussian_denoiser(&calls), y, levels, f64_config());
    EXPECT_EQ(calls, 2 * n - 1) << "Heun: 2N - 1 evaluations";
    const double top_err = rms(x.to_double_vector(), top) / kSigmaMax;
    const Tensor back = sigma_ode_decode(gaussian_denoiser(), x, levels, f64_config());
    const double round = rms(back.to_double_vector(), yv);
    std::printf("N = %lld: top error %.3g (of sigma_max), round trip RMS %.3g\n", static_cast<long long>(n),
                top_err, round);
    // Second order: doubling N cuts both errors by well over 2 (about 4).
    EXPECT_LT(top_err, prev_top / 3);
    EXPECT_LT(round, prev_round / 3);
    prev_round = round;
    prev_top = top_err;
  }
  EXPECT_LT(prev_round, 2e-3);
}

TEST(SigmaEdit, EulerInversionIsFirstOrder) {
  const Tensor y = images(2);
  std::vector<double> errs;
  for (std::int64_t n : {16, 32}) {
    const std::vector<double> levels = karras_sigmas(n, kSigmaMin, kSigmaMax);
    const Tensor x = sigma_ode_invert(gaussian_denoiser(), y, levels, f64_config(), Device::cpu(), KarrasSolver::euler);
    const Tensor back =
        sigma_ode_decode(gaussian_denoiser(), x, levels, f64_config(), Device::cpu(), KarrasSolver::euler);
    const double err = rms(back.to_double_vector(), y.to_double_vector());
    errs.push_back(err);
  }
  EXPECT_LT(errs[1], errs[0] / 1.6);  // about 2 per doubling
  EXPECT_GT(errs[1], errs[0] / 3.0);  // but not second order
}

TEST(SigmaEdit, DecodeFromSigmaMaxNoiseIsPlainSampling) {
  const std::vector<double> levels = karras_sigmas(6, kSigmaMin, kSigmaMax);
  Generator g(5), h(5);
  const std::vector<double> churned(levels.begin(), levels.end() - 1);
  const Tensor plain =
      karras_solve(gaussian_denoiser(), {3, 2, 2, 1}, levels, churned, f64_config(), g, Device::cpu(), {},
                   KarrasSolver::heun);
  const Tensor start = scale(randn({3, 2, 2, 1}, h, Device::cpu(), DType::f64), kSigmaMax);
  EXPECT_EQ(sigma_ode_decode(gaussian_denoiser(), start, levels, f64_config()).to_double_vector(),
            plain.to_double_vector());
}

TEST(SigmaEdit, StartIndexRunsCeilOfStrengthTimesN) {
  EXPECT_EQ(sigma_sdedit_start_index(10, 1.0), 0);
  EXPECT_EQ(sigma_sdedit_start_index(10, 0.3), 7);   // 3 steps, not 4 from 0.3 * 10 = 3.0000000000000004
  EXPECT_EQ(sigma_sdedit_start_index(10, 0.25), 7);  // ceil(2.5) = 3
  EXPECT_EQ(sigma_sdedit_start_index(10, 0.01), 9);  // at least one step
  for (double s : {0.0, -0.1, 1.5, std::nan("")})
    testing::expect_value_error([&] { sigma_sdedit_start_index(10, s); }, "strength must lie in (0, 1]");
  testing::expect_value_error(
      [&] { sigma_ode_invert(gaussian_denoiser(), images(1), {1.0, 0.0}, f64_config(), Device::cpu(),
                             KarrasSolver::dpmpp_2m); },
      "heun or euler");
}

// Strength 1 redraws the sample: with the same z, SDEdit's start guide + sigma_max z differs from
// plain sampling's sigma_max z only by the guide. For the affine D of Gaussian data every Heun
// step is affine with fixed point mu, so the whole solve is x_end = mu + K (x_start - mu) and the
// results differ by exactly K guide, K about the flow's s / sqrt(s^2 + sigma_max^2) (= 1/160):
// the same statistics as plain sampling, shifted by under 1% of the guide.
TEST(SigmaEdit, StrengthOneMatchesPlainSampling) {
  const std::int64_t n = 18;
  const std::vector<double> levels = karras_sigmas(n, kSigmaMin, kSigmaMax);
  const std::vector<double> churned(levels.begin(), levels.end() - 1);
  const Shape shape{4000, 1};
  const double guide_value = 0.9;
  const Tensor guide = Tensor::from_vector(std::vector<double>(4000, guide_value), shape, DType::f64);
  Generator g(9), h(9), z_gen(9);
  const std::vector<double> edited =
      sigma_sdedit(gaussian_denoiser(), guide, 1.0, levels, f64_config(), g).to_double_vector();
  const std::vector<double> plain =
      karras_solve(gaussian_denoiser(), shape, levels, churned, f64_config(), h, Device::cpu(), {}, KarrasSolver::heun)
          .to_double_vector();
  EXPECT_EQ(g.offset(), h.offset());  // one draw of z each
  const std::vector<double> z = randn(shape, z_gen, Device::cpu(), DType::f64).to_double_vector();
  const double k_solver = (plain[0] - kMu) / (kSigmaMax * z[0] - kMu);  // the solve's gain K
  EXPECT_NEAR(k_solver / (kStd / std::sqrt(kSigmaMax * kSigmaMax + kStd * kStd)), 1.0, 0.1);
  double mean_e = 0, mean_p = 0, sq_e = 0, sq_p = 0;
  for (std::size_t k = 0; k < edited.size(); ++k) {
    EXPECT_NEAR(edited[k] - plain[k], k_solver * guide_value, 1e-9);
    mean_e += edited[k] / 4000.0;
    mean_p += plain[k] / 4000.0;
    sq_e += edited[k] * edited[k] / 4000.0;
    sq_p += plain[k] * plain[k] / 4000.0;
  }
  const double sd_e = std::sqrt(sq_e - mean_e * mean_e), sd_p = std::sqrt(sq_p - mean_p * mean_p);
  std::printf("strength 1: mean %.4f (plain %.4f, data %.2f), std %.4f (plain %.4f, data %.2f)\n", mean_e, mean_p,
              kMu, sd_e, sd_p, kStd);
  EXPECT_NEAR(sd_e, sd_p, 1e-9);
  EXPECT_NEAR(mean_e - mean_p, k_solver * guide_value, 1e-9);
  // Both are samples of (about) the data: Heun on 18 levels scales the spread by K / k_exact.
  EXPECT_NEAR(mean_e, kMu, 4 * kStd / std::sqrt(4000.0) + guide_value * k_solver);
  EXPECT_NEAR(sd_e, kStd, 0.1 * kStd);
}

// A small strength runs only the last levels from guide + sigma_{i0} z: with the exact D the
// result is mu + (guide + sigma_{i0} z - mu) s / sqrt(s^2 + sigma_{i0}^2) up to Heun's error.
TEST(SigmaEdit, SmallStrengthFollowsTheFlowFromItsStartLevel) {
  const std::int64_t n = 20;
  const std::vector<double> levels = karras_sigmas(n, kSigmaMin, kSigmaMax);
  const Tensor guide = images(3);
  Generator g(4), h(4);
  int calls = 0;
  const Tensor out = sigma_sdedit(gaussian_denoiser(&calls), guide, 0.25, levels, f64_config(), g);
  const std::int64_t i0 = sigma_sdedit_start_index(n, 0.25);
  EXPECT_EQ(calls, 2 * (n - i0) - 1);
  const double s0 = levels[static_cast<std::size_t>(i0)];
  const std::vector<double> z = randn(guide.shape(), h, Device::cpu(), DType::f64).to_double_vector();
  const std::vector<double> gv = guide.to_double_vector(), ov = out.to_double_vector();
  std::vector<double> exact(gv.size());
  for (std::size_t k = 0; k < gv.size(); ++k)
    exact[k] = kMu + (gv[k] + s0 * z[k] - kMu) * kStd / std::sqrt(kStd * kStd + s0 * s0);
  EXPECT_LT(rms(ov, exact), 0.01);
}

}  // namespace
}  // namespace ddpm::diffusion
