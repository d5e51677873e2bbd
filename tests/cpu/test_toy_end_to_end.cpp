// End to end on the CPU: a small MLP trained by the library's Trainer on a 2-D mixture of
// Gaussians, then sampled with DDPM and DDIM; the samples must reproduce the data by a
// statistical test. And a class-conditional toy (trained with label dropout) whose
// classifier-free-guided samples land in the requested class.
//
// Data: 4 modes on a circle of radius 0.6 (angles 45, 135, 225, 315 degrees), each N(c_k,
// 0.08^2 I), equal weights, drawn from the trainer's Philox generator.
// The test per sampler: assign each sample to its nearest mode; every mode must hold
// 25 % +- 7 % of the samples; per mode the mean is within 0.05 of c_k and the std per axis
// within [0.5, 1.6] x 0.08 (a short training run blurs or sharpens the modes a little); at
// most 6 % of samples lie farther than 0.3 (3.75 sigma) from every mode.
#include <array>
#include <chrono>
#include <cmath>
#include <vector>

#include <gtest/gtest.h>

#include "models/diffusion/sampler.h"
#include "models/toy/mlp_denoiser.h"
#include "models/train/trainer.h"

namespace ddpm {
namespace {

using diffusion::DiffusionSchedule;
using diffusion::SamplerConfig;

constexpr int kModes = 4;
constexpr double kRadius = 0.6, kStd = 0.08;

std::array<double, 2> mode_center(int k) {
  const double a = M_PI / 4 + k * M_PI / 2;
  return {kRadius * std::cos(a), kRadius * std::sin(a)};
}

// n points; labels are the mode indices (uniform); both from gen.
train::Batch mixture_batch(std::int64_t n, Generator& gen, bool with_labels) {
  std::vector<double> u = rand({n}, gen, Device::cpu(), DType::f64).to_double_vector();
  std::vector<double> z = randn({n, 2}, gen, Device::cpu(), DType::f64).to_double_vector();
  std::vector<float> x(static_cast<std::size_t>(2 * n));
  train::Batch b;
  for (std::int64_t i = 0; i < n; ++i) {
    const int k = std::min(kModes - 1, static_cast<int>(u[static_cast<std::size_t>(i)] * kModes));
    auto c = mode_center(k);
    x[2 * i] = static_cast<float>(c[0] + kStd * z[2 * i]);
    x[2 * i + 1] = static_cast<float>(c[1] + kStd * z[2 * i + 1]);
    if (with_labels) b.labels.push_back(k);
  }
  b.x0 = Tensor::from_vector(x, {n, 2});
  return b;
}

struct ModeReport {
  std::array<double, kModes> fraction{}, mean_err{}, std_x{}, std_y{};
  double outliers = 0;
  std::vector<int> nearest;
};

ModeReport analyse(const Tensor& samples) {
  std::vector<double> v = samples.to_double_vector();
  const std::size_t n = v.size() / 2;
  ModeReport r;
  std::array<double, kModes> sx{}, sy{}, sxx{}, syy{}, cnt{};
  for (std::size_t i = 0; i < n; ++i) {
    int best = 0;
    double bd = 1e9;
    for (int k = 0; k < kModes; ++k) {
      auto c = mode_center(k);
      const double d = std::hypot(v[2 * i] - c[0], v[2 * i + 1] - c[1]);
      if (d < bd) bd = d, best = k;
    }
    r.nearest.push_back(best);
    if (bd > 0.3) {
      r.outliers += 1.0 / n;
      continue;
    }
    cnt[best] += 1;
    sx[best] += v[2 * i];
    sy[best] += v[2 * i + 1];
    sxx[best] += v[2 * i] * v[2 * i];
    syy[best] += v[2 * i + 1] * v[2 * i + 1];
  }
  for (int k = 0; k < kModes; ++k) {
    auto c = mode_center(k);
    r.fraction[k] = cnt[k] / n;
    const double mx = sx[k] / std::max(1.0, cnt[k]), my = sy[k] / std::max(1.0, cnt[k]);
    r.mean_err[k] = std::hypot(mx - c[0], my - c[1]);
    r.std_x[k] = std::sqrt(std::max(0.0, sxx[k] / std::max(1.0, cnt[k]) - mx * mx));
    r.std_y[k] = std::sqrt(std::max(0.0, syy[k] / std::max(1.0, cnt[k]) - my * my));
  }
  return r;
}

void expect_reproduces_mixture(const Tensor& samples, const char* what) {
  ModeReport r = analyse(samples);
  std::printf("[ toy ] %s: outliers %.3f", what, r.outliers);
  for (int k = 0; k < kModes; ++k)
    std::printf(" | mode %d: %.3f, mean err %.3f, std %.3f %.3f", k, r.fraction[k], r.mean_err[k], r.std_x[k],
                r.std_y[k]);
  std::printf("\n");
  EXPECT_LE(r.outliers, 0.06) << what;
  for (int k = 0; k < kModes; ++k) {
    EXPECT_NEAR(r.fraction[k], 1.0 / kModes, 0.07) << what << ", mode " << k;
    EXPECT_LE(r.mean_err[k], 0.05) << what << ", mode " << k;
    EXPECT_GE(r.std_x[k], 0.5 * kStd) << what << ", mode " << k;
    EXPECT_LE(r.std_x[k], 1.6 * kStd) << what << ", mode " << k;
    EXPECT_GE(r.std_y[k], 0.5 * kStd) << what << ", mode " << k;
    EXPECT_LE(r.std_y[k], 1.6 * kStd) << what << ", mode " << k;
  }
}

// Trains an MLP on the mixture; returns the model with its EMA weights loaded.
struct Trained {
  std::unique_ptr<toy::MlpDenoiser> model;
  ParameterSlab slab;
  double seconds = 0, last_loss = 0;
};

void train_toy(Trained& out, const DiffusionSchedule& schedule, int num_classes, int steps) {
  toy::MlpDenoiserConfig mc;
  mc.hidden = 64;
  mc.layers = 3;
  mc.time_dim = 16;
  mc.num_classes = num_classes;
  Generator init(1234);
  out.model = std::make_unique<toy::MlpDenoiser>(mc, init);
  out.slab.pack(out.model->parameters());
  train::TrainerConfig tc;
  tc.adamw.lr = 2e-3;
  tc.warmup_steps = 50;
  tc.grad_clip = 1.0;
  tc.ema_rate = 0.99;
  tc.num_classes = num_classes;
  tc.label_dropout = num_classes > 0 ? 0.15 : 0.0;
  tc.seed = 2024;
  const bool labels = num_classes > 0;
  train::Trainer tr(out.slab, out.model->fn(), schedule,
                    [labels](std::int64_t, Generator& g) { return mixture_batch(256, g, labels); }, tc);
  auto start = std::chrono::steady_clock::now();
  double recent = 0;
  for (int k = 0; k < steps; ++k) {
    train::StepMetrics m = tr.step();
    ASSERT_FALSE(m.skipped) << "step " << k;
    if (k >= steps - 100) recent += m.loss / 100.0;
  }
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  out.last_loss = recent;
  tr.ema().copy_to(out.slab);  // sample with the EMA weights
}

TEST(ToyEndToEnd, MixtureOfGaussiansIsReproducedByDdpmAndDdim) {
  DiffusionSchedule schedule(diffusion::cosine_betas(100));
  Trained t;
  train_toy(t, schedule, 0, 1500);
  std::printf("[ toy ] unconditional: 1500 steps in %.2f s, final loss %.4f\n", t.seconds, t.last_loss);
  SamplerConfig ddpm;
  Generator g1(77);
  expect_reproduces_mixture(diffusion::sample(schedule, t.model->fn(), {2000, 2}, {}, ddpm, g1), "DDPM, all 100 steps");
  SamplerConfig ddim;
  ddim.kind = SamplerConfig::Kind::ddim;
  ddim.respacing = "ddim25";
  Generator g2(78);
  expect_reproduces_mixture(diffusion::sample(schedule, t.model->fn(), {2000, 2}, {}, ddim, g2), "DDIM, 25 steps");
}

TEST(ToyEndToEnd, GuidedSamplesLandInTheRequestedClass) {
  DiffusionSchedule schedule(diffusion::cosine_betas(100));
  Trained t;
  train_toy(t, schedule, kModes, 1500);
  std::printf("[ toy ] class-conditional: 1500 steps in %.2f s, final loss %.4f\n", t.seconds, t.last_loss);
  std::vector<std::int64_t> labels;
  for (int i = 0; i < 400; ++i) labels.push_back(i % kModes);
  for (double s : {1.0, 3.0}) {
    SamplerConfig cfg;
    cfg.kind = SamplerConfig::Kind::ddim;
    cfg.respacing = "ddim25";
    cfg.num_classes = kModes;
    cfg.guidance_scale = s;
    Generator g(90);
    ModeReport r = analyse(diffusion::sample(schedule, t.model->fn(), {400, 2}, labels, cfg, g));
    int hits = 0;
    for (std::size_t i = 0; i < labels.size(); ++i) hits += r.nearest[i] == labels[i];
    std::printf("[ toy ] guidance scale %.1f: %.3f in the requested class\n", s, hits / 400.0);
    EXPECT_GE(hits / 400.0, s == 1.0 ? 0.9 : 0.97) << "guidance scale " << s;
  }
}

}  // namespace
}  // namespace ddpm
