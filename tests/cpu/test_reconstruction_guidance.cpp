// tests/cpu/test_reconstruction_guidance.cpp: Ho et al.'s reconstruction guidance
// (models/diffusion/reconstruction_guidance.h) against the same formulas written out by hand
// for a denoiser whose x_0 estimate mixes the frames, so the guidance gradient is not zero.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "engine/error.h"
#include "engine/ops/concat.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/reduce.h"
#include "engine/rng.h"
#include "models/diffusion/reconstruction_guidance.h"
#include "models/diffusion/schedule.h"

namespace ddpm {
namespace {

constexpr std::int64_t N = 2, F = 3, K = 1, H = 2, W = 2, C = 1;
constexpr double kC = 0.7;  // eps_theta(z) = kC * mean over frames of z (per pixel)

// A frame-mixing eps-network on the tape: eps = kC * mean_f z_f, broadcast to every frame.
Tensor mixing_eps(const Tensor& z) { return scale(expand_to(mean(z, {1}, true), z.shape()), kC); }

std::vector<double> values(std::int64_t count, double phase) {
  std::vector<double> v(static_cast<std::size_t>(count));
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = 0.8 * std::sin(1.3 * static_cast<double>(i) + phase);
  return v;
}

TEST(ReconstructionGuidance, MatchesEquation7WrittenOut) {
  const diffusion::DiffusionSchedule s(diffusion::linear_betas(50));
  const std::vector<double> xv = values(N * F * H * W * C, 0.3), kv = values(N * K * H * W * C, 1.1);
  const Tensor x = Tensor::from_vector(xv, {N, F, H, W, C}, DType::f64);
  const Tensor known = Tensor::from_vector(kv, {N, K, H, W, C}, DType::f64);
  const std::vector<double> t = {13, 37};
  const double w = 2.0;
  diffusion::ReconstructionGuidance g;
  g.known = known;
  g.weight = w;
  g.seed = 5;
  const diffusion::DenoiseFn net = [](const Tensor& z, const std::vector<double>&, const std::vector<std::int64_t>&) {
    return mixing_eps(z);
  };
  const std::vector<double> got = diffusion::reconstruction_guided(net, s, g)(x, t, {}).to_double_vector();

  // By hand. The replacement noise: the wrapper's first draw from Philox(seed).
  Generator gen(5);
  const std::vector<double> noise = randn({N, K, H, W, C}, gen, Device::cpu(), DType::f64).to_double_vector();
  const std::int64_t P = H * W * C;  // values per frame
  for (std::int64_t i = 0; i < N; ++i) {
    const auto ti = static_cast<std::size_t>(t[static_cast<std::size_t>(i)]);
    const double a = s.sqrt_alphas_cumprod[ti], sg = s.sqrt_one_minus_alphas_cumprod[ti];
    for (std::int64_t p = 0; p < P; ++p) {
      auto at = [&](std::int64_t f) { return static_cast<std::size_t>((i * F + f) * P + p); };
      const auto ka = static_cast<std::size_t>(i * K * P + p);  // K = 1
      std::vector<double> z(F);
      z[0] = a * kv[ka] + sg * noise[ka];  // replacement
      for (std::int64_t f = 1; f < F; ++f) z[static_cast<std::size_t>(f)] = xv[at(f)];
      const double m = (z[0] + z[1] + z[2]) / F;
      std::vector<double> x0(F);
      for (std::int64_t f = 0; f < F; ++f) x0[static_cast<std::size_t>(f)] = (z[static_cast<std::size_t>(f)] - sg * kC * m) / a;
      // d/dz_b ||x^a - x^^a||^2 = 2 (x^^a - x^a) d x^^a / d z_b, d x^^a / d z_b = -sg kC / (a F).
      const double grad_b = 2 * (x0[0] - kv[ka]) * (-sg * kC / (a * F));
      for (std::int64_t f = 0; f < F; ++f) {
        const double x0t = f == 0 ? x0[0] : x0[static_cast<std::size_t>(f)] - w * a / 2 * grad_b;
        const double eps = (z[static_cast<std::size_t>(f)] - a * x0t) / sg;
        EXPECT_NEAR(got[at(f)], eps, 1e-12) << "clip " << i << " frame " << f << " value " << p;
      }
      ASSERT_NE(grad_b, 0.0);  // the test would not tell guidance from none otherwise
    }
  }
}

// Weight 0 is the replacement method alone: the network's own output on the clip whose known
// frames are replaced; a learned-sigma output keeps its variance channels; x_0-prediction
// gets x~_0 back.
TEST(ReconstructionGuidance, WeightZeroIsReplacementAndParameterisationsRoundTrip) {
  const diffusion::DiffusionSchedule s(diffusion::linear_betas(50));
  const Tensor x = Tensor::from_vector(values(N * F * H * W * C, 0.1), {N, F, H, W, C}, DType::f64);
  const Tensor known = Tensor::from_vector(values(N * K * H * W * C, 2.0), {N, K, H, W, C}, DType::f64);
  const std::vector<double> t = {5, 44};
  diffusion::ReconstructionGuidance g;
  g.known = known;
  g.weight = 0;
  g.seed = 9;
  Tensor seen;
  const diffusion::DenoiseFn net = [&](const Tensor& z, const std::vector<double>&, const std::vector<std::int64_t>&) {
    seen = z.detach().clone();
    return mixing_eps(z);
  };
  const std::vector<double> got = diffusion::reconstruction_guided(net, s, g)(x, t, {}).to_double_vector();
  const std::vector<double> own = mixing_eps(seen).to_double_vector();
  for (std::size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], own[i], 1e-12);
  // The new frames reach the network unchanged; the known one is noised x^a, not x.
  const std::vector<double> sv = seen.to_double_vector(), xv = x.to_double_vector();
  EXPECT_EQ(sv[static_cast<std::size_t>(H * W * C)], xv[static_cast<std::size_t>(H * W * C)]);
  EXPECT_NE(sv[0], xv[0]);

  // Learned sigma: [eps, v] channels; v passes through.
  g.learned_sigma = true;
  const diffusion::DenoiseFn net2 = [](const Tensor& z, const std::vector<double>&, const std::vector<std::int64_t>&) {
    return concat({mixing_eps(z), scale(z, 0.25)}, -1);
  };
  const Tensor two = diffusion::reconstruction_guided(net2, s, g)(x, t, {});
  ASSERT_EQ(two.dim(4), 2 * C);

  // Bad input, one message each.
  g.learned_sigma = false;
  EXPECT_THROW(diffusion::reconstruction_guided(net, s, g)(x, {2.5, 3}, {}), ValueError);
  g.known = Tensor::from_vector(values(N * F * H * W * C, 0.0), {N, F, H, W, C}, DType::f64);  // K = F
  EXPECT_THROW(diffusion::reconstruction_guided(net, s, g)(x, t, {}), ValueError);
  g.known = known;
  g.weight = -1;
  EXPECT_THROW(diffusion::reconstruction_guided(net, s, g), ValueError);
}

}  // namespace
}  // namespace ddpm
