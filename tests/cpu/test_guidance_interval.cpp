// Guidance interval (guidance.h, Kynkaanniemi et al. 2024): classifier-free guidance only
// while the step's noise level sigma lies in [lo, hi], one conditional network call elsewhere.
// Checked on every sampler family against the two ends it must reduce to (plain guidance,
// unguided sampling), by counting network calls against sigma_t computed here from the
// schedule, and by the refusals of bad intervals.
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "engine/error.h"
#include "models/diffusion/guidance.h"
#include "models/diffusion/respace.h"
#include "tests/support/guided_samplers.h"

namespace ddpm::diffusion {
namespace {

using testing::guided_sampler_names;
using testing::run_guided_sampler;
using testing::StubNet;

const std::vector<std::int64_t> kLabels = {0, 1, 1};

SamplerConfig cfg_guided(double scale) {
  SamplerConfig cfg;
  cfg.num_classes = 2;
  cfg.guidance_scale = scale;
  return cfg;
}

TEST(GuidanceInterval, CoveringEveryLevelEqualsPlainGuidanceBitForBit) {
  for (const std::string& sampler : guided_sampler_names()) {
    StubNet a, b;
    const Tensor plain = run_guided_sampler(sampler, a.fn(), cfg_guided(2.5), kLabels);
    SamplerConfig cfg = cfg_guided(2.5);
    cfg.guidance_sigma_lo = 1e-6;  // below sigma_min of every sampler here (DDPM: 0.05, EDM: 0.002)
    cfg.guidance_sigma_hi = 1e6;   // above sigma_max of every sampler here (EDM: 80)
    ASSERT_TRUE(has_guidance_interval(cfg));
    const Tensor banded = run_guided_sampler(sampler, b.fn(), cfg, kLabels);
    EXPECT_EQ(plain.to_double_vector(), banded.to_double_vector()) << sampler;
    EXPECT_EQ(a.batches, b.batches) << sampler;
  }
}

TEST(GuidanceInterval, AnEmptyIntervalEqualsUnguidedSamplingBitForBit) {
  for (const std::string& sampler : guided_sampler_names()) {
    StubNet a, b;
    const Tensor unguided = run_guided_sampler(sampler, a.fn(), cfg_guided(1.0), kLabels);
    SamplerConfig cfg = cfg_guided(4.0);
    cfg.guidance_sigma_lo = 1e9;
    cfg.guidance_sigma_hi = 1e10;
    const Tensor banded = run_guided_sampler(sampler, b.fn(), cfg, kLabels);
    EXPECT_EQ(unguided.to_double_vector(), banded.to_double_vector()) << sampler;
    // Never the doubled batch: one call of 3 samples per evaluation.
    EXPECT_EQ(a.batches, b.batches) << sampler;
    for (std::int64_t n : b.batches) EXPECT_EQ(n, 3) << sampler;
  }
}

TEST(GuidanceInterval, OneNetworkCallPerStepOutsideTheInterval) {
  // DDPM over 10 respaced steps of a 40-step linear schedule; sigma_t of each kept step is
  // computed here in double from alpha_bar, independently of the sampler.
  const DiffusionSchedule base(linear_betas(40));
  const Timesteps kept = space_timesteps(40, "10");
  const double lo = 0.3, hi = 3.0;
  std::vector<std::int64_t> expected;  // the batch of each call, from the last kept step down
  int inside = 0;
  for (std::size_t i = kept.size(); i-- > 0;) {
    const double abar = base.alphas_cumprod[static_cast<std::size_t>(kept[i])];
    const double sigma = std::sqrt((1.0 - abar) / abar);
    const bool in = sigma >= lo && sigma <= hi;
    inside += in ? 1 : 0;
    expected.push_back(in ? 6 : 3);  // [x; x] inside, [x] outside
  }
  ASSERT_GT(inside, 0);
  ASSERT_LT(inside, 10);  // the test needs steps on both sides
  StubNet net;
  SamplerConfig cfg = cfg_guided(3.0);
  cfg.respacing = "10";
  cfg.guidance_sigma_lo = lo;
  cfg.guidance_sigma_hi = hi;
  Generator gen(1);
  sample(base, net.fn(), {3, 2}, kLabels, cfg, gen);
  EXPECT_EQ(net.batches, expected);
}

TEST(GuidanceInterval, KarrasLevelsAreJudgedByTheirOwnSigma) {
  // Euler on 6 Karras levels: one call per level, guided exactly where the level (as
  // karras_sigmas lays them out) is inside.
  const DiffusionSchedule base(linear_betas(40));
  SamplerConfig cfg = cfg_guided(3.0);
  cfg.kind = SamplerConfig::Kind::heun;
  cfg.heun_steps = 6;
  cfg.guidance_sigma_lo = 0.5;
  cfg.guidance_sigma_hi = 5.0;
  const auto [smin, smax] = resolve_sigma_range(base, cfg);
  const std::vector<double> levels = karras_sigmas(6, smin, smax, cfg.rho);
  std::vector<std::int64_t> expected;
  for (std::size_t i = 0; i + 1 < levels.size(); ++i) expected.push_back(levels[i] >= 0.5 && levels[i] <= 5.0 ? 6 : 3);
  StubNet net;
  Generator gen(2);
  karras_sample(base, net.fn(), {3, 2}, kLabels, cfg, gen, Device::cpu(), {}, KarrasSolver::euler);
  EXPECT_EQ(net.batches, expected);
}

TEST(GuidanceInterval, BadIntervalsAreRefusedWithClearMessages) {
  auto message = [](const std::string& text) {
    try {
      parse_guidance_interval(text, "--guidance-interval");
    } catch (const ValueError& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  EXPECT_NE(message("2,1").find("must be below HI"), std::string::npos) << message("2,1");
  EXPECT_NE(message("1,1").find("must be below HI"), std::string::npos);
  EXPECT_NE(message("-1,2").find(">= 0"), std::string::npos) << message("-1,2");
  EXPECT_NE(message("1").find("two noise levels"), std::string::npos) << message("1");
  EXPECT_NE(message("1,2,3").find("two noise levels"), std::string::npos);
  EXPECT_NE(message("a,2").find("not a number"), std::string::npos) << message("a,2");
  EXPECT_NE(message("1,").find("not a number"), std::string::npos);
  EXPECT_NE(message("nan,2").find("not a number"), std::string::npos);
  const auto ok = parse_guidance_interval("0.3,inf", "--guidance-interval");
  EXPECT_EQ(ok.first, 0.3);
  EXPECT_TRUE(std::isinf(ok.second));

  // The library refuses the same in a SamplerConfig, and a caller without sigma.
  SamplerConfig cfg = cfg_guided(2.0);
  cfg.guidance_sigma_lo = 2.0;
  cfg.guidance_sigma_hi = 1.0;
  StubNet net;
  EXPECT_THROW(run_guided_sampler("ddim", net.fn(), cfg, kLabels), ValueError);
  cfg.guidance_sigma_lo = -1.0;
  EXPECT_THROW(run_guided_sampler("ddim", net.fn(), cfg, kLabels), ValueError);
  cfg.guidance_sigma_lo = 0.5;
  cfg.guidance_sigma_hi = 2.0;
  const Tensor x = Tensor::zeros({3, 2}, DType::f32);
  EXPECT_THROW(network_output(net.fn(), cfg, x, 10.0, kLabels), ValueError);  // no sigma given
  EXPECT_NO_THROW(network_output(net.fn(), cfg, x, 10.0, kLabels, 1.0));
}

}  // namespace
}  // namespace ddpm::diffusion
