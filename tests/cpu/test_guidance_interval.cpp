// Guidance interval (guidance.h, Kynkaanniemi et al. 2024): classifier-free guidance only
// while the step's noise level sigma lies in [lo, hi], one conditional network call elsewhere.
// Checked on every sampler family against the two ends it must reduce to (plain guidance,
// unguided sampling), by counting network calls against sigma_t computed here from the
// schedule, and by the refusals of bad intervals. Classifier guidance (classifier_guidance.h)
// under the same interval: its gradient term only at the steps inside, on DDPM, DDIM and the
// Langevin corrector, decided at the same steps as classifier-free guidance.
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "engine/error.h"
#include "engine/ops/elementwise.h"
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

// --- Classifier guidance under the same interval (classifier_guidance.h) -----------------

// A differentiable two-class classifier on [N, 2] points, logits = 2 tanh(0.5 x + 0.01 t),
// that records the original timestep of every call. (The samplers clip x_0 here, so x stays
// where tanh is not saturated and the gradient is not ~0.)
struct CountingClassifier {
  std::vector<double> timesteps;
  ClassifierFn fn() {
    return [this](const Tensor& x, const std::vector<double>& t) {
      timesteps.push_back(t.front());
      return scale(tanh(add_scalar(scale(x, 0.5), 0.01 * t.front())), 2.0);
    };
  }
};

// One DDPM/DDIM run of the interval tests: 3 samples [3, 2] over `respacing` of a 40-step
// linear schedule, seed 11, every step's x recorded in order.
struct ClassifierRun {
  Tensor x;
  std::vector<std::vector<double>> steps;  // x after each step
  std::vector<std::int64_t> step_timesteps;
  std::uint64_t rng_offset = 0;
};
ClassifierRun run_classifier_guided(StubNet& net, const SamplerConfig& cfg, const ClassifierGuidance& guidance) {
  const DiffusionSchedule base(linear_betas(40));
  Generator gen(11);
  ClassifierRun r;
  r.x = sample(base, net.fn(), {3, 2}, kLabels, cfg, gen, Device::cpu(),
               [&](const StepInfo& s) {
                 r.steps.push_back(s.x.to_double_vector());
                 r.step_timesteps.push_back(s.timestep);
               },
               guidance);
  r.rng_offset = gen.offset();
  return r;
}

// The configurations classifier guidance runs on: DDPM, DDIM with eta, and DDPM with the
// Langevin corrector (which adds s g to its score too), all respaced to 8 of 40 steps.
std::vector<SamplerConfig> classifier_configs() {
  SamplerConfig ddpm = cfg_guided(1.0);
  ddpm.respacing = "8";
  SamplerConfig ddim = ddpm;
  ddim.kind = SamplerConfig::Kind::ddim;
  ddim.respacing = "ddim8";
  ddim.eta = 0.5;
  SamplerConfig corrected = ddpm;
  corrected.corrector_steps = 1;
  return {ddpm, ddim, corrected};
}

TEST(GuidanceInterval, ClassifierGuidanceOverEveryLevelEqualsNoIntervalBitForBit) {
  for (const SamplerConfig& base_cfg : classifier_configs()) {
    CountingClassifier ca, cb;
    StubNet a, b;
    const ClassifierRun plain = run_classifier_guided(a, base_cfg, ClassifierGuidance{ca.fn(), 3.0, {}});
    SamplerConfig cfg = base_cfg;
    cfg.guidance_sigma_lo = 1e-6;  // below sigma_t of every step here (about 0.1 at t = 0)
    cfg.guidance_sigma_hi = 1e6;
    const ClassifierRun banded = run_classifier_guided(b, cfg, ClassifierGuidance{cb.fn(), 3.0, {}});
    EXPECT_EQ(plain.x.to_double_vector(), banded.x.to_double_vector());
    EXPECT_EQ(ca.timesteps, cb.timesteps);
    EXPECT_EQ(ca.timesteps.size(), 8u * static_cast<std::size_t>(1 + cfg.corrector_steps));
  }
}

TEST(GuidanceInterval, ClassifierGuidanceOutsideTheIntervalEqualsNoClassifierBitForBit) {
  for (const SamplerConfig& base_cfg : classifier_configs()) {
    StubNet a, b;
    const ClassifierRun unguided = run_classifier_guided(a, base_cfg, ClassifierGuidance{});
    CountingClassifier c;
    SamplerConfig cfg = base_cfg;
    cfg.guidance_sigma_lo = 1e9;
    cfg.guidance_sigma_hi = 1e10;
    const ClassifierRun banded = run_classifier_guided(b, cfg, ClassifierGuidance{c.fn(), 3.0, {}});
    EXPECT_EQ(unguided.x.to_double_vector(), banded.x.to_double_vector());
    EXPECT_EQ(unguided.rng_offset, banded.rng_offset);
    EXPECT_TRUE(c.timesteps.empty()) << "the classifier was called outside the interval";
  }
}

TEST(GuidanceInterval, ClassifierGuidanceChangesOnlyTheStepsInside) {
  // sigma_t of every kept step, in double from alpha_bar, independently of the sampler.
  const DiffusionSchedule base(linear_betas(40));
  auto sigma_at = [&](std::int64_t t) {
    const double abar = base.alphas_cumprod[static_cast<std::size_t>(t)];
    return std::sqrt((1.0 - abar) / abar);
  };
  for (const SamplerConfig& base_cfg : classifier_configs()) {
    // A cut between the 4th and 5th noisiest kept steps (kept: ascending original timesteps):
    // guide the noisy part [cut, inf] or the clean part [0, cut].
    const Timesteps kept = space_timesteps(40, base_cfg.respacing);
    ASSERT_EQ(kept.size(), 8u);
    const double cut = std::sqrt(sigma_at(kept[3]) * sigma_at(kept[4]));
    StubNet n0, n1;
    CountingClassifier c_full;
    const ClassifierRun unguided = run_classifier_guided(n0, base_cfg, ClassifierGuidance{});
    const ClassifierRun full = run_classifier_guided(n1, base_cfg, ClassifierGuidance{c_full.fn(), 3.0, {}});
    for (const bool noisy_part : {true, false}) {
      SamplerConfig cfg = base_cfg;
      cfg.guidance_sigma_lo = noisy_part ? cut : 0.0;
      cfg.guidance_sigma_hi = noisy_part ? std::numeric_limits<double>::infinity() : cut;
      StubNet n2;
      CountingClassifier c;
      const ClassifierRun banded = run_classifier_guided(n2, cfg, ClassifierGuidance{c.fn(), 3.0, {}});
      // The classifier saw exactly the kept timesteps inside, each 1 + corrector_steps times.
      std::vector<double> expected_calls;
      for (std::int64_t t : banded.step_timesteps) {
        const double sigma = sigma_at(t);
        if (sigma >= cfg.guidance_sigma_lo && sigma <= cfg.guidance_sigma_hi)
          for (std::int64_t k = 0; k <= cfg.corrector_steps; ++k) expected_calls.push_back(static_cast<double>(t));
      }
      EXPECT_EQ(c.timesteps, expected_calls);
      ASSERT_EQ(banded.steps.size(), 8u);
      // Steps 0..3 (counted from the noisiest) have sigma above the cut, 4..7 below. The
      // noisy part follows the fully guided run there and leaves it afterwards; the clean
      // part follows the unguided run until its first guided step.
      const ClassifierRun& same_until_cut = noisy_part ? full : unguided;
      for (std::size_t k = 0; k < 4; ++k) EXPECT_EQ(banded.steps[k], same_until_cut.steps[k]) << "step " << k;
      EXPECT_NE(banded.steps[4], same_until_cut.steps[4]);
      EXPECT_NE(banded.x.to_double_vector(), unguided.x.to_double_vector());
      EXPECT_NE(banded.x.to_double_vector(), full.x.to_double_vector());
    }
  }
}

TEST(GuidanceInterval, OneDecisionForClassifierFreeAndClassifierGuidance) {
  // Both kinds at once under a mixed interval: the doubled CFG batch and the classifier call
  // happen at exactly the same steps.
  SamplerConfig cfg = cfg_guided(2.0);
  cfg.respacing = "10";
  cfg.clip_x0 = false;
  cfg.guidance_sigma_lo = 0.3;
  cfg.guidance_sigma_hi = 3.0;
  StubNet net;
  CountingClassifier c;
  const ClassifierRun r = run_classifier_guided(net, cfg, ClassifierGuidance{c.fn(), 3.0, {}});
  ASSERT_EQ(net.batches.size(), r.step_timesteps.size());
  std::vector<double> doubled_steps;
  for (std::size_t k = 0; k < net.batches.size(); ++k)
    if (net.batches[k] == 6) doubled_steps.push_back(static_cast<double>(r.step_timesteps[k]));
  EXPECT_FALSE(doubled_steps.empty());
  EXPECT_LT(doubled_steps.size(), net.batches.size());
  EXPECT_EQ(c.timesteps, doubled_steps);
}

}  // namespace
}  // namespace ddpm::diffusion
