// Autoguidance (guidance.h, Karras et al. 2024): pred = pred_guide + w (pred_main - pred_guide)
// with a weaker network of the same task in place of CFG's unconditional branch. Checked: the
// two ends (w = 1 is the main network, w = 0 the guide, bit for bit, on every sampler family),
// the formula and the calls on a stub pair against a host computation in double, the rescale,
// the guidance interval, and unconditional networks.
#include <cmath>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "engine/error.h"
#include "models/diffusion/guidance.h"
#include "tests/support/guided_samplers.h"

namespace ddpm::diffusion {
namespace {

using testing::guided_sampler_names;
using testing::run_guided_sampler;
using testing::StubNet;

StubNet weak_model() {
  StubNet g;
  g.amp = 0.6;
  g.offset = 0.2;
  return g;
}

TEST(Autoguidance, ScaleOneGivesTheMainModelsSamplesBitForBit) {
  for (const bool conditional : {false, true}) {
    const std::vector<std::int64_t> labels = conditional ? std::vector<std::int64_t>{0, 1, 1} : std::vector<std::int64_t>{};
    for (const std::string& sampler : guided_sampler_names()) {
      StubNet main_a, main_b, guide = weak_model();
      SamplerConfig cfg;
      cfg.num_classes = conditional ? 2 : 0;
      const Tensor plain = run_guided_sampler(sampler, main_a.fn(), cfg, labels);
      cfg.autoguide = guide.fn();
      cfg.guidance_scale = 1.0;
      const Tensor auto1 = run_guided_sampler(sampler, main_b.fn(), cfg, labels);
      EXPECT_EQ(plain.to_double_vector(), auto1.to_double_vector()) << sampler;
      EXPECT_TRUE(guide.batches.empty()) << sampler << ": the guide is not evaluated at w = 1";
    }
  }
}

TEST(Autoguidance, ScaleZeroGivesTheGuidesSamples) {
  for (const bool conditional : {false, true}) {
    const std::vector<std::int64_t> labels = conditional ? std::vector<std::int64_t>{1, 0, 1} : std::vector<std::int64_t>{};
    for (const std::string& sampler : guided_sampler_names()) {
      StubNet main = StubNet{}, guide_alone = weak_model(), guide = weak_model();
      SamplerConfig cfg;
      cfg.num_classes = conditional ? 2 : 0;
      const Tensor of_guide = run_guided_sampler(sampler, guide_alone.fn(), cfg, labels);
      cfg.autoguide = guide.fn();
      cfg.guidance_scale = 0.0;
      const Tensor auto0 = run_guided_sampler(sampler, main.fn(), cfg, labels);
      // guide + 0 (main - guide) is the guide's prediction exactly.
      EXPECT_EQ(of_guide.to_double_vector(), auto0.to_double_vector()) << sampler;
      EXPECT_EQ(main.batches.size(), guide.batches.size()) << sampler << ": one guide call per main call";
    }
  }
}

TEST(Autoguidance, FormulaOnAStubPairWithTheSameLabelsAndOneCallEach) {
  StubNet main, guide = weak_model();
  SamplerConfig cfg;
  cfg.num_classes = 3;
  cfg.guidance_scale = 2.5;
  cfg.autoguide = guide.fn();
  const std::vector<std::int64_t> labels = {2, 0};
  const std::vector<double> xv = {0.3, -1.2, 0.7, 0.05};
  const Tensor x = Tensor::from_vector(xv, {2, 2}, DType::f64);
  std::vector<std::int64_t> seen;
  DenoiseFn guide_fn = guide.fn();
  cfg.autoguide = [&](const Tensor& xx, const std::vector<double>& t, const std::vector<std::int64_t>& y) {
    seen = y;
    return guide_fn(xx, t, y);
  };
  const NetOutput out = network_output(main.fn(), cfg, x, 17.0, labels, 1.0);
  EXPECT_EQ(seen, labels);
  EXPECT_EQ(main.batches, (std::vector<std::int64_t>{2}));   // [x], not the doubled batch
  EXPECT_EQ(guide.batches, (std::vector<std::int64_t>{2}));
  const std::vector<double> got = out.pred.to_double_vector();
  for (std::size_t i = 0; i < xv.size(); ++i) {
    const double y = static_cast<double>(labels[i / 2]);
    const double d1 = 0.8 * std::tanh(0.7 * xv[i] + 0.002 * 17.0 + 0.3 * (y + 1.0));        // main
    const double d0 = 0.6 * std::tanh(0.7 * xv[i] + 0.002 * 17.0 + 0.3 * (y + 1.0) + 0.2);  // guide
    EXPECT_NEAR(got[i], d0 + 2.5 * (d1 - d0), 1e-12) << i;
  }
}

TEST(Autoguidance, LearnedVarianceIsTheMainModelsAndRescaleMatchesItsStd) {
  // Networks with 2C channels: the variance half must come from the main network.
  auto two_channel = [](double mean_value, double var_value) {
    return [=](const Tensor& x, const std::vector<double>&, const std::vector<std::int64_t>&) {
      std::vector<double> v;
      for (std::int64_t r = 0; r < x.dim(0); ++r) {
        v.insert(v.end(), {mean_value + 0.1 * r, mean_value - 0.3 * r});  // mean part (C = 2)
        v.insert(v.end(), {var_value, var_value});                        // variance part
      }
      return Tensor::from_vector(v, {x.dim(0), 4}, x.dtype());
    };
  };
  SamplerConfig cfg;
  cfg.learned_sigma = true;
  cfg.guidance_scale = 3.0;
  cfg.autoguide = two_channel(-0.5, -0.9);
  const Tensor x = Tensor::zeros({2, 2}, DType::f64);
  const NetOutput out = network_output(two_channel(1.0, 0.4), cfg, x, 3.0, {}, 1.0);
  for (double v : out.var_values.to_double_vector()) EXPECT_EQ(v, 0.4);
  // phi = 1: the guided prediction takes the main network's per-sample std exactly.
  cfg.guidance_rescale = 1.0;
  const std::vector<double> r = network_output(two_channel(1.0, 0.4), cfg, x, 3.0, {}, 1.0).pred.to_double_vector();
  for (int row = 0; row < 2; ++row) {
    const double m0 = 1.0 + 0.1 * row, m1 = 1.0 - 0.3 * row;  // main's pred row
    const double main_std = std::abs(m0 - m1) / 2.0;
    const double mean = (r[2 * row] + r[2 * row + 1]) / 2.0;
    const double std = std::sqrt(((r[2 * row] - mean) * (r[2 * row] - mean) + (r[2 * row + 1] - mean) * (r[2 * row + 1] - mean)) / 2.0);
    if (row == 0) {
      EXPECT_EQ(main_std, 0.0);  // row 0 has no spread: std 0 / 0 makes no promise
      continue;
    }
    EXPECT_NEAR(std, main_std, 1e-12);
  }
}

TEST(Autoguidance, TheGuidanceIntervalAppliesToo) {
  // Outside the interval the guide is not evaluated; inside it is, once per main call.
  StubNet main, guide = weak_model();
  SamplerConfig cfg;
  cfg.guidance_scale = 2.0;
  cfg.autoguide = guide.fn();
  cfg.guidance_sigma_lo = 0.5;
  cfg.guidance_sigma_hi = 2.0;
  const Tensor x = Tensor::zeros({3, 2}, DType::f32);
  const Tensor outside = network_output(main.fn(), cfg, x, 5.0, {}, 3.0).pred;
  EXPECT_TRUE(guide.batches.empty());
  StubNet alone;
  SamplerConfig plain;
  EXPECT_EQ(outside.to_double_vector(), network_output(alone.fn(), plain, x, 5.0, {}).pred.to_double_vector());
  network_output(main.fn(), cfg, x, 5.0, {}, 1.0);
  EXPECT_EQ(guide.batches.size(), 1u);
}

TEST(Autoguidance, AWronglyShapedGuideIsRefused) {
  StubNet main;
  SamplerConfig cfg;
  cfg.guidance_scale = 2.0;
  cfg.autoguide = [](const Tensor& x, const std::vector<double>&, const std::vector<std::int64_t>&) {
    return Tensor::zeros({x.dim(0), 5}, x.dtype());
  };
  try {
    run_guided_sampler("ddim", main.fn(), cfg, {});
    FAIL() << "expected a ValueError";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("autoguidance network"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace ddpm::diffusion
