// SDEdit (models/diffusion/sdedit.h): the start step on the respaced grid (checked against the
// closed forms of the two spacings), strength 1 against plain sampling on a zero-terminal-SNR
// schedule (where q_sample at T - 1 is pure noise, so both must agree bit for bit), and the
// deterministic (DDIM) variant against the exact ODE of Gaussian data.
#include <cmath>
#include <vector>

#include <gtest/gtest.h>

#include "engine/rng.h"
#include "models/diffusion/respace.h"
#include "models/diffusion/sdedit.h"
#include "support/gaussian_oracle.h"
#include "support/value_error.h"

namespace ddpm::diffusion {
namespace {

TEST(Sdedit, StartIndexOnTheFullGridIsFloorOfStrengthTimesT) {
  // No respacing: t_i = i, so t_i + 1 <= s T  <=>  i <= floor(s T) - 1.
  Timesteps all(40);
  for (std::int64_t t = 0; t < 40; ++t) all[static_cast<std::size_t>(t)] = t;
  for (double s : {0.025, 0.1, 0.3, 0.5, 0.61, 0.99, 1.0})
    EXPECT_EQ(sdedit_start_index(all, 40, s), static_cast<std::int64_t>(std::floor(s * 40 + 1e-9)) - 1) << s;
}

TEST(Sdedit, StartIndexOnTheDdimGrid) {
  // ddim10 at T = 40 keeps t_i = 4 (i + 1) - 1, so t_i + 1 <= s T  <=>  i <= floor(s T / 4) - 1.
  const Timesteps kept = space_timesteps(40, "ddim10");
  for (double s : {0.1, 0.2, 0.3, 0.5, 0.55, 0.75, 1.0})
    EXPECT_EQ(sdedit_start_index(kept, 40, s), static_cast<std::int64_t>(std::floor(s * 40 / 4 + 1e-9)) - 1) << s;
  EXPECT_EQ(kept[static_cast<std::size_t>(sdedit_start_index(kept, 40, 1.0))], 39);
  testing::expect_value_error([&] { sdedit_start_index(kept, 40, 0.05); }, "smallest usable strength is 0.1");
  testing::expect_value_error([&] { sdedit_start_index(kept, 40, 0.0); }, "(0, 1]");
  testing::expect_value_error([&] { sdedit_start_index(kept, 40, 1.5); }, "(0, 1]");
}

// A smooth x_0-predicting stand-in network (any deterministic function will do).
Tensor x0_net(const Tensor& x, const std::vector<double>& t, const std::vector<std::int64_t>&) {
  std::vector<double> v = x.to_double_vector();
  const std::size_t per = v.size() / t.size();
  for (std::size_t k = 0; k < v.size(); ++k) v[k] = std::tanh(0.7 * v[k] + 0.01 * t[k / per]);
  return Tensor::from_vector(v, x.shape(), x.dtype());
}

TEST(Sdedit, StrengthOneEqualsSamplingWhenTheLastStepIsPureNoise) {
  // beta_{T-1} = 1: abar_{T-1} = 0 and x_{T-1} = q_sample(x^g, T-1, z) = z exactly, which is
  // sample()'s x_T. Both then draw in the same order, so DDPM results agree bit for bit
  // (DDIM cannot run here: converting between x_0 and eps divides by sqrt(abar) = 0).
  std::vector<double> betas = linear_betas(40);
  betas.back() = 1.0;
  const DiffusionSchedule base(betas);
  Generator g0(3);
  const Tensor guide = randn({2, 3, 3, 1}, g0, Device::cpu(), DType::f64);
  for (const char* respacing : {"", "10"}) {
    SamplerConfig c;
    c.mean_type = ModelMeanType::x0;
    c.respacing = respacing;
    c.dtype = DType::f64;
    Generator g1(21), g2(21);
    const Tensor a = sdedit(base, x0_net, guide, 1.0, {}, c, g1);
    const Tensor b = sample(base, x0_net, guide.shape(), {}, c, g2);
    EXPECT_EQ(a.to_double_vector(), b.to_double_vector()) << "respacing '" << respacing << "'";
  }
}

TEST(Sdedit, DeterministicVariantFollowsTheExactOde) {
  // DDIM (eta 0) from x_{t0} = sqrt(abar) g + sqrt(1 - abar) z, i.e. xbar = g + sigma_0 z:
  // the ODE ends at mu + (g + sigma_0 z - mu) s / sqrt(s^2 + sigma_0^2).
  const double mu = 0.2, s = 0.3;
  const DiffusionSchedule base(linear_betas(1000));
  const DenoiseFn net = testing::gaussian_eps_oracle(base, mu, s);
  Generator g0(4);
  const Tensor guide = randn({6, 2, 2, 1}, g0, Device::cpu(), DType::f64);
  SamplerConfig c;
  c.kind = SamplerConfig::Kind::ddim;
  c.clip_x0 = false;
  c.dtype = DType::f64;
  for (const double strength : {0.3, 0.6}) {
    Generator g1(17), g2(17);
    const std::vector<double> got = sdedit(base, net, guide, strength, {}, c, g1).to_double_vector();
    const std::vector<double> z = randn(guide.shape(), g2, Device::cpu(), DType::f64).to_double_vector();
    const std::vector<double> g = guide.to_double_vector();
    // t0 = s T = 300 or 600: start at original index s T - 1.
    const auto err = [&](std::int64_t t) {
      const double sg = testing::vp_sigma(base, t);
      double q = 0;
      for (std::size_t k = 0; k < g.size(); ++k) {
        const double exact = mu + (g[k] + sg * z[k] - mu) * s / std::sqrt(s * s + sg * sg);
        q += (got[k] - exact) * (got[k] - exact);
      }
      return std::sqrt(q / static_cast<double>(g.size()));
    };
    const std::int64_t t0 = std::llround(strength * 1000) - 1;
    EXPECT_LT(err(t0), 2e-3) << strength;
    // Starting 10% of the way off gives a visibly different end point.
    EXPECT_GT(err(t0 - 100), 10 * err(t0)) << strength;
  }
}

TEST(Sdedit, ReverseProcessFromTheTopIsSample) {
  // reverse_process_from(x_T, K - 1) is sample() without its first draw, DDPM and DDIM.
  const DiffusionSchedule base(linear_betas(40));
  const DenoiseFn net = testing::gaussian_eps_oracle(base, 0.1, 0.5);
  for (auto kind : {SamplerConfig::Kind::ddpm, SamplerConfig::Kind::ddim}) {
    SamplerConfig c;
    c.kind = kind;
    c.eta = kind == SamplerConfig::Kind::ddim ? 0.5 : 0.0;
    c.respacing = kind == SamplerConfig::Kind::ddim ? "ddim8" : "8";
    c.dtype = DType::f64;
    Generator g1(2), g2(2);
    const Tensor a = sample(base, net, {2, 2, 2, 1}, {}, c, g1);
    const Tensor xT = randn({2, 2, 2, 1}, g2, Device::cpu(), DType::f64);
    const Tensor b = reverse_process_from(base, net, xT, 7, {}, c, g2);
    EXPECT_EQ(a.to_double_vector(), b.to_double_vector()) << sampler_kind_name(kind);
  }
}

}  // namespace
}  // namespace ddpm::diffusion
