// Gaussian conditioning augmentation of super-resolution models (CDM, Ho et al. 2022 sec.
// 3.2; models/diffusion/super_res.h): the training draw against a hand computation with a
// replayed generator, the level mapping, the UNet's level embedding (shapes, that the level
// changes the output, a finite-difference check of its gradient, the config round trip and
// the refused diffusers export), a trainer step with the augmented condition against a step
// made by hand, and the sampling closure's draw order and determinism.
#include <cmath>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "engine/error.h"
#include "engine/ops/concat.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/reduce.h"
#include "engine/rng.h"
#include "models/diffusion/super_res.h"
#include "models/train/trainer.h"
#include "models/unet/model_io.h"
#include "support/tiny_unet.h"

namespace ddpm::diffusion {
namespace {

constexpr int kSize = 8, kLow = 4;

const DiffusionSchedule& schedule50() {
  static const DiffusionSchedule s(linear_betas(50));
  return s;
}

unet::UNetConfig sr_config(double cond_augment) {
  unet::UNetConfig c = testing::tiny_unet_config(kSize, 1);
  c.concat_channels = 1;
  c.low_res_size = kLow;
  c.cond_augment = cond_augment;
  return c;
}

// A tiny SR UNet whose every weight is perturbed (conv_out starts at zero, which would hide
// the input's effect on the output).
std::unique_ptr<unet::UNet> random_sr_unet(double cond_augment, std::uint64_t seed = 11) {
  Generator g(seed);
  auto net = std::make_unique<unet::UNet>(sr_config(cond_augment), g, Device::cpu());
  for (const auto& [name, t] : net->named_parameters()) {
    const std::vector<float> noise = randn(t.shape(), g).to_vector();
    float* p = t.data<float>();
    for (std::int64_t i = 0; i < t.numel(); ++i) p[i] += 0.2f * noise[static_cast<std::size_t>(i)];
  }
  return net;
}

Tensor testing_z() {
  Generator g(2);
  return randn({3, kSize, kSize, 1}, g);
}

TEST(CondAugment, LevelIsTheRoundedFractionOfTheLastTimestep) {
  EXPECT_EQ(cond_augment_level(0.0, 50, "f"), 0);
  EXPECT_EQ(cond_augment_level(1.0, 50, "f"), 49);
  EXPECT_EQ(cond_augment_level(0.3, 50, "f"), 15);  // 14.7
  EXPECT_EQ(cond_augment_level(0.2, 1000, "f"), 200);  // 199.8
  EXPECT_THROW(cond_augment_level(-0.1, 50, "f"), ValueError);
  EXPECT_THROW(cond_augment_level(1.5, 50, "f"), ValueError);
}

TEST(CondAugment, TrainingDrawMatchesAHandComputationWithAReplayedGenerator) {
  const Tensor z = testing_z();
  const std::vector<double>& abar = schedule50().alphas_cumprod;
  Generator gen(7);
  const Tensor got = draw_augmented_condition(z, 0.3, abar, gen);
  ASSERT_EQ(got.shape(), (Shape{3, kSize, kSize, 2}));

  // Replay: N uniforms (f64) for the levels, then the noise (f64), a ~ U{0, ..., 15}.
  Generator replay(7);
  const std::vector<double> u = rand({3}, replay, Device::cpu(), DType::f64).to_double_vector();
  const std::vector<double> n = randn(z.shape(), replay, Device::cpu(), DType::f64).to_double_vector();
  EXPECT_EQ(gen.offset(), replay.offset());  // nothing else was drawn
  const std::vector<double> zv = z.to_double_vector(), g = got.to_double_vector();
  const std::size_t pixels = kSize * kSize;
  for (std::size_t i = 0; i < 3; ++i) {
    const auto a = static_cast<std::int64_t>(std::floor(u[i] * 16));
    const double ab = abar[static_cast<std::size_t>(a)];
    for (std::size_t p = 0; p < pixels; ++p) {
      const std::size_t k = i * pixels + p;
      EXPECT_NEAR(g[2 * k], std::sqrt(ab) * zv[k] + std::sqrt(1 - ab) * n[k], 1e-6) << i << " " << p;
      EXPECT_EQ(g[2 * k + 1], static_cast<double>(a)) << "the level plane of row " << i;
    }
  }
}

TEST(CondAugment, LevelsCoverZeroToTheMaximumUniformly) {
  const Tensor z = Tensor::zeros({4000, 1, 1, 1});
  Generator gen(3);
  const std::vector<double> v = draw_augmented_condition(z, 0.1, schedule50().alphas_cumprod, gen).to_double_vector();
  std::vector<int> count(6, 0);  // A = round(0.1 * 49) = 5: levels 0..5
  for (std::size_t i = 1; i < v.size(); i += 2) {
    ASSERT_GE(v[i], 0);
    ASSERT_LE(v[i], 5);
    ++count[static_cast<std::size_t>(v[i])];
  }
  for (int c : count) EXPECT_NEAR(c, 4000.0 / 6, 5 * std::sqrt(4000.0 / 6));  // 5 sigma
}

TEST(CondAugment, UNetEmbedsTheLevelOnlyWhenAsked) {
  // Without augmentation: the plain SR network, parameter for parameter and bit for bit.
  Generator g1(4), g2(4);
  const unet::UNet plain(sr_config(0), g1, Device::cpu());
  const unet::UNet aug(sr_config(0.5), g2, Device::cpu());
  const auto pp = plain.named_parameters(), ap = aug.named_parameters();
  ASSERT_EQ(ap.size(), pp.size() + 4);  // aug_embedding.linear_{1,2}.{weight,bias}
  for (std::size_t i = 0; i < pp.size(); ++i) {
    EXPECT_EQ(ap[i].first, pp[i].first);
    EXPECT_EQ(ap[i].second.to_vector(), pp[i].second.to_vector()) << pp[i].first;
  }
  std::set<std::string> extra;
  for (std::size_t i = pp.size(); i < ap.size(); ++i) extra.insert(ap[i].first);
  EXPECT_EQ(extra, (std::set<std::string>{"aug_embedding.linear_1.weight", "aug_embedding.linear_1.bias",
                                          "aug_embedding.linear_2.weight", "aug_embedding.linear_2.bias"}));

  // Shapes: x_t, the condition and its level plane in; C out. Without the plane: refused.
  const auto net = random_sr_unet(0.5);
  Generator g(9);
  const Tensor xt = randn({2, kSize, kSize, 1}, g), z = randn({2, kSize, kSize, 1}, g);
  const Tensor at3 = net->forward(concat({xt, with_level_plane(z, 3)}, -1), {4, 4}, {}, nn::Context{});
  EXPECT_EQ(at3.shape(), (Shape{2, kSize, kSize, 1}));
  EXPECT_THROW(net->forward(concat({xt, z}, -1), {4, 4}, {}, nn::Context{}), ValueError);
  // The level reaches the output (the embedding is used), the same level repeats exactly.
  const Tensor at20 = net->forward(concat({xt, with_level_plane(z, 20)}, -1), {4, 4}, {}, nn::Context{});
  const Tensor again = net->forward(concat({xt, with_level_plane(z, 3)}, -1), {4, 4}, {}, nn::Context{});
  EXPECT_EQ(again.to_vector(), at3.to_vector());
  double diff = 0;
  for (std::size_t i = 0; i < at3.to_vector().size(); ++i) diff += std::abs(at3.to_vector()[i] - at20.to_vector()[i]);
  EXPECT_GT(diff, 1e-3);
}

TEST(CondAugment, GradientReachesTheLevelEmbeddingAndMatchesFiniteDifferences) {
  const auto net = random_sr_unet(0.5);
  Generator g(10);
  const Tensor xt = randn({2, kSize, kSize, 1}, g), z = randn({2, kSize, kSize, 1}, g);
  const Tensor w = randn({2, kSize, kSize, 1}, g);
  const Tensor in = concat({xt, augment_condition(z, {2, 17}, randn(z.shape(), g), schedule50().alphas_cumprod)}, -1);
  auto loss = [&]() { return sum(mul(net->forward(in, {3, 30}, {}, nn::Context{}), w)); };
  for (const char* name : {"aug_embedding.linear_1.weight", "aug_embedding.linear_2.weight"}) {
    SCOPED_TRACE(name);
    Tensor p;
    for (auto& [n, t] : net->named_parameters())
      if (n == name) p = t;
    ASSERT_TRUE(p.defined());
    for (auto& [n, t] : net->named_parameters()) t.set_requires_grad(n == name);
    loss().backward();
    const std::vector<float> grad = p.grad().to_vector();
    double norm2 = 0;
    for (float v : grad) norm2 += static_cast<double>(v) * v;
    ASSERT_GT(norm2, 0) << "no gradient reached " << name;
    // Central difference along the gradient direction: dL/dh (p + h g) at 0 = |g|^2.
    const std::vector<float> p0 = p.to_vector();
    const double h = 1e-2 / std::sqrt(norm2);
    auto at = [&](double s) {
      float* d = p.data<float>();
      for (std::size_t i = 0; i < p0.size(); ++i) d[i] = static_cast<float>(p0[i] + s * grad[i]);
      return loss().to_double_vector()[0];
    };
    const double numeric = (at(h) - at(-h)) / (2 * h);
    at(0);
    EXPECT_NEAR(numeric, norm2, 2e-2 * norm2);
  }
}

TEST(CondAugment, ConfigRoundTripsAndTheExportIsRefused) {
  const unet::UNetConfig c = sr_config(0.25);
  const nlohmann::json j = unet::config_to_json(c);
  EXPECT_EQ(j.at("super_res").at("cond_augment"), 0.25);
  EXPECT_EQ(unet::config_from_json(j).cond_augment, 0.25);
  EXPECT_FALSE(unet::config_to_json(sr_config(0)).at("super_res").contains("cond_augment"));  // unchanged
  nlohmann::json bad = j;
  bad["super_res"]["cond_augment"] = "high";
  EXPECT_THROW(unet::config_from_json(bad), IoError);
  bad["super_res"]["cond_augment"] = 1.5;
  EXPECT_THROW(unet::config_from_json(bad), ValueError);
  unet::UNetConfig plain = testing::tiny_unet_config(kSize, 1);
  plain.cond_augment = 0.2;  // not a super-resolution model
  EXPECT_THROW(plain.validate(), ValueError);

  try {
    unet::config_to_diffusers(c);
    ADD_FAILURE() << "a conditioning-augmented model was exported";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("aug_embedding"), std::string::npos) << e.what();
  }
  EXPECT_NO_THROW(unet::config_to_diffusers(sr_config(0)));
}

TEST(CondAugment, TrainerStepWithTheAugmentedConditionEqualsAHandMadeStep) {
  const auto net = random_sr_unet(0.4);
  const DiffusionSchedule& s = schedule50();
  const unet::UNet* n = net.get();
  DenoiseFn fn = [n](const Tensor& x, const std::vector<double>& t, const std::vector<std::int64_t>& y) {
    return n->forward(x, t, y, nn::Context{});
  };
  Generator data(99);
  const Tensor x0 = randn({3, kSize, kSize, 1}, data);
  const Tensor z = super_res_condition(x0, kLow);
  // The provider draws the augmentation from the trainer's generator (trainer.h's order).
  train::BatchProvider provider = [&](std::int64_t, Generator& gen) {
    return train::Batch{x0, {}, draw_augmented_condition(z, 0.4, s.alphas_cumprod, gen)};
  };
  train::TrainerConfig tc;
  tc.adamw.lr = 1e-3;
  tc.grad_clip = 0;
  tc.seed = 5;

  // By hand: the provider's draws, then t (N uniforms, f64), then the noise.
  Generator g(tc.seed);
  const Tensor cond = draw_augmented_condition(z, 0.4, s.alphas_cumprod, g);
  const std::vector<double> u = rand({3}, g, Device::cpu(), DType::f64).to_double_vector();
  const Tensor noise = randn(x0.shape(), g);
  std::vector<double> t;
  Timesteps ti;
  for (double ui : u) {
    ti.push_back(std::min<std::int64_t>(49, static_cast<std::int64_t>(ui * 50)));
    t.push_back(static_cast<double>(ti.back()));
  }
  const Tensor xt = q_sample(s, x0, ti, noise);
  const std::vector<double> eps = fn(concat({xt, cond}, -1), t, {}).to_double_vector();
  const std::vector<double> nz = noise.to_double_vector();
  double want = 0;
  for (std::size_t k = 0; k < eps.size(); ++k) want += (eps[k] - nz[k]) * (eps[k] - nz[k]);
  want /= static_cast<double>(eps.size());

  ParameterSlab slab;
  slab.pack(net->named_parameters());
  train::Trainer trainer(slab, fn, s, provider, tc);
  EXPECT_NEAR(trainer.step().loss, want, 1e-5 * want);
}

TEST(CondAugment, SamplingDrawsTheNoiseAfterXTOnceAndIsDeterministic) {
  Generator data(1);
  const Tensor z = randn({2, kSize, kSize, 1}, data);
  const std::vector<double>& abar = schedule50().alphas_cumprod;
  std::vector<Tensor> seen;
  DenoiseFn spy = [&](const Tensor& x, const std::vector<double>&, const std::vector<std::int64_t>&) {
    seen.push_back(slice(x, -1, 1, 2));  // the condition and its level plane
    return slice(x, -1, 0, 1);
  };
  auto run = [&](std::int64_t level, std::uint64_t seed) {
    seen.clear();
    Generator gen(seed);
    const DenoiseFn f = concat_augmented_condition(spy, z, level, abar, gen);
    const Tensor xT = randn({2, kSize, kSize, 1}, gen);  // the sampler's x_T comes first
    f(xT, {49, 49}, {});
    const std::uint64_t after_first = gen.offset();
    f(concat({xT, xT}, 0), {48, 48, 48, 48}, {});  // a guidance batch: the same rows, repeated
    EXPECT_EQ(gen.offset(), after_first);          // drawn once
    EXPECT_EQ(seen[1].to_vector(), concat({seen[0], seen[0]}, 0).to_vector());
    return seen[0];
  };
  const Tensor a = run(10, 8);
  // By hand: x_T, then the condition's noise (f64), at level 10 for every row.
  Generator replay(8);
  randn({2, kSize, kSize, 1}, replay);
  const Tensor noise = randn(z.shape(), replay, Device::cpu(), DType::f64);
  EXPECT_EQ(a.to_vector(), augment_condition(z, {10, 10}, noise, abar).to_vector());
  EXPECT_EQ(run(10, 8).to_vector(), a.to_vector());  // deterministic for a seed
  EXPECT_NE(run(30, 8).to_vector(), a.to_vector());  // the level changes it
  EXPECT_NE(run(10, 9).to_vector(), a.to_vector());  // fresh noise per seed
}

}  // namespace
}  // namespace ddpm::diffusion
