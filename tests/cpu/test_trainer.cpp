// The training loop: learning-rate warm-up, gradient clipping, EMA warm-up, microbatching
// (gradient accumulation equal to the full batch), the per-quartile loss bookkeeping,
// skipping non-finite steps, and bit-identical resume from the trainer's state.
// A tiny MLP denoiser in f64 on the CPU, so the comparisons are exact up to rounding.
#include <cmath>
#include <limits>
#include <memory>
#include <vector>

#include <gtest/gtest.h>

#include "engine/error.h"
#include "engine/ops/elementwise.h"
#include "models/toy/mlp_denoiser.h"
#include "models/train/trainer.h"

namespace ddpm::train {
namespace {

using diffusion::DiffusionSchedule;

// A tiny model, its slab, and a schedule: everything a trainer needs.
struct ToyRig {
  DiffusionSchedule schedule{diffusion::cosine_betas(40)};
  std::unique_ptr<toy::MlpDenoiser> model;
  ParameterSlab slab;
  explicit ToyRig(std::uint64_t init_seed = 1, bool learned_sigma = false) {
    toy::MlpDenoiserConfig c;
    c.hidden = 16;
    c.layers = 2;
    c.time_dim = 8;
    c.dtype = DType::f64;
    c.learned_sigma = learned_sigma;
    Generator g(init_seed);
    model = std::make_unique<toy::MlpDenoiser>(c, g);
    slab.pack(model->parameters());
  }
};

// 32 points from N((0.3, -0.2), 0.2^2 I), drawn from the trainer's generator.
Batch gaussian_batch(std::int64_t, Generator& gen) {
  std::vector<double> v = randn({32, 2}, gen, Device::cpu(), DType::f64).to_double_vector();
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = (i % 2 ? -0.2 : 0.3) + 0.2 * v[i];
  return {Tensor::from_vector(v, {32, 2}, DType::f64), {}};
}

TrainerConfig base_config() {
  TrainerConfig c;
  c.adamw.lr = 1e-2;
  c.grad_clip = 0.0;
  c.ema_rate = 0.999;
  c.seed = 7;
  return c;
}

TEST(Trainer, WarmupLearningRate) {
  EXPECT_DOUBLE_EQ(warmup_lr(1e-3, 0, 0), 1e-3);
  EXPECT_DOUBLE_EQ(warmup_lr(1e-3, 4, 0), 0.25e-3);
  EXPECT_DOUBLE_EQ(warmup_lr(1e-3, 4, 3), 1e-3);
  EXPECT_DOUBLE_EQ(warmup_lr(1e-3, 4, 10), 1e-3);
  ToyRig s;
  TrainerConfig c = base_config();
  c.warmup_steps = 4;
  Trainer tr(s.slab, s.model->fn(), s.schedule, gaussian_batch, c);
  const double want[] = {0.25e-2, 0.5e-2, 0.75e-2, 1e-2, 1e-2};
  for (double w : want) {
    StepMetrics m = tr.step();
    EXPECT_DOUBLE_EQ(m.lr, w);
    EXPECT_DOUBLE_EQ(tr.optimizer().lr(), w);
  }
}

TEST(Trainer, ClipsTheGradientNorm) {
  ToyRig s;
  TrainerConfig c = base_config();
  c.grad_clip = 1e-4;
  Trainer tr(s.slab, s.model->fn(), s.schedule, gaussian_batch, c);
  StepMetrics m = tr.step();
  ASSERT_FALSE(m.skipped);
  EXPECT_GT(m.grad_norm, 1e-3);                 // the norm before clipping
  EXPECT_NEAR(grad_norm(s.slab), 1e-4, 1e-8);   // the gradients the update used
}

TEST(Trainer, EmaUsesItsWarmup) {
  ToyRig s;
  std::vector<double> p0 = s.slab.values().to_double_vector();
  Trainer tr(s.slab, s.model->fn(), s.schedule, gaussian_batch, base_config());
  StepMetrics m = tr.step();
  EXPECT_DOUBLE_EQ(m.ema_decay, 0.1);  // min(0.999, 1/10) at the first update
  std::vector<double> p1 = s.slab.values().to_double_vector(), e1 = tr.ema().values().to_double_vector();
  for (std::size_t i = 0; i < p0.size(); ++i) ASSERT_NEAR(e1[i], 0.1 * p0[i] + 0.9 * p1[i], 1e-15);
  EXPECT_DOUBLE_EQ(tr.step().ema_decay, 2.0 / 11.0);
}

TEST(Trainer, MicrobatchesAccumulateTheFullBatchGradient) {
  ToyRig a(3), b(3);
  TrainerConfig c = base_config();
  Trainer full(a.slab, a.model->fn(), a.schedule, gaussian_batch, c);
  c.microbatch = 5;  // 32 = 6 x 5 + 2: uneven chunks
  Trainer micro(b.slab, b.model->fn(), b.schedule, gaussian_batch, c);
  for (int k = 0; k < 2; ++k) {
    StepMetrics mf = full.step(), mm = micro.step();
    EXPECT_NEAR(mf.loss, mm.loss, 1e-13);
    std::vector<double> gf = a.slab.grads().to_double_vector(), gm = b.slab.grads().to_double_vector();
    for (std::size_t i = 0; i < gf.size(); ++i) ASSERT_NEAR(gf[i], gm[i], 1e-12) << "step " << k << ", element " << i;
    std::vector<double> pf = a.slab.values().to_double_vector(), pm = b.slab.values().to_double_vector();
    for (std::size_t i = 0; i < pf.size(); ++i) ASSERT_NEAR(pf[i], pm[i], 1e-9);
  }
}

TEST(Trainer, QuartileBookkeeping) {
  std::array<double, 4> means;
  std::array<std::int64_t, 4> counts;
  quartile_means({0, 9, 10, 19, 20, 39, 39}, {1, 3, 5, 7, 9, 11, 13}, 40, means, counts);
  EXPECT_EQ(counts, (std::array<std::int64_t, 4>{2, 2, 1, 2}));
  EXPECT_DOUBLE_EQ(means[0], 2.0);
  EXPECT_DOUBLE_EQ(means[1], 6.0);
  EXPECT_DOUBLE_EQ(means[2], 9.0);
  EXPECT_DOUBLE_EQ(means[3], 12.0);
  quartile_means({0, 1}, {1, 1}, 40, means, counts);
  EXPECT_TRUE(std::isnan(means[3]));
  EXPECT_THROW(quartile_means({40}, {1}, 40, means, counts), ValueError);

  // In a step with uniform t (weights 1) the quartiles partition the batch and average to the loss.
  ToyRig s;
  Trainer tr(s.slab, s.model->fn(), s.schedule, gaussian_batch, base_config());
  StepMetrics m = tr.step();
  std::int64_t n = 0;
  double total = 0.0;
  for (int q = 0; q < 4; ++q) {
    n += m.quartile_count[q];
    if (m.quartile_count[q] > 0) total += m.loss_quartile[q] * static_cast<double>(m.quartile_count[q]);
  }
  EXPECT_EQ(n, 32);
  EXPECT_NEAR(total / 32.0, m.loss, 1e-12);
}

TEST(Trainer, NonFiniteStepsAreSkippedWithoutTouchingTheParameters) {
  ToyRig s;
  int mode = 0;  // 0 normal, 1 NaN loss, 2 finite loss with a NaN gradient
  Tensor probe = s.slab.at("output.bias");
  diffusion::DenoiseFn base = s.model->fn();
  diffusion::DenoiseFn net = [&](const Tensor& x, const std::vector<double>& t, const std::vector<std::int64_t>& y) {
    Tensor out = base(x, t, y);
    if (mode == 1) return scale(out, std::numeric_limits<double>::quiet_NaN());
    // d sqrt(u)/du at u = 0 is infinite: 0 * inf = NaN reaches the bias, the value stays finite.
    if (mode == 2) return add(out, scale(sqrt(scale(probe, 0.0)), 0.0));
    return out;
  };
  Trainer tr(s.slab, net, s.schedule, gaussian_batch, base_config());
  tr.step();
  for (int bad : {1, 2}) {
    mode = bad;
    std::vector<double> p = s.slab.values().to_double_vector(), e = tr.ema().values().to_double_vector();
    const std::int64_t updates = tr.optimizer().step_count();
    StepMetrics m = tr.step();
    EXPECT_TRUE(m.skipped) << "mode " << bad;
    EXPECT_FALSE(std::isfinite(m.grad_norm));
    EXPECT_EQ(bad == 1, !std::isfinite(m.loss));
    EXPECT_EQ(s.slab.values().to_double_vector(), p);
    EXPECT_EQ(tr.ema().values().to_double_vector(), e);
    EXPECT_EQ(tr.optimizer().step_count(), updates);
  }
  mode = 0;
  EXPECT_FALSE(tr.step().skipped);
  EXPECT_EQ(tr.step_count(), 4);
}

TEST(Trainer, ResumedTrainingIsBitIdentical) {
  for (TimestepSampling ts : {TimestepSampling::uniform, TimestepSampling::loss_second_moment}) {
    TrainerConfig c = base_config();
    c.timesteps = ts;
    c.grad_clip = 1.0;
    c.warmup_steps = 3;
    c.microbatch = 16;
    ToyRig a(5), b(5), resumed(99);  // the resumed model starts from other weights
    Trainer ta(a.slab, a.model->fn(), a.schedule, gaussian_batch, c);
    Trainer tb(b.slab, b.model->fn(), b.schedule, gaussian_batch, c);
    std::vector<double> la;
    for (int k = 0; k < 16; ++k) la.push_back(ta.step().loss);
    for (int k = 0; k < 8; ++k) tb.step();
    TrainerState st = tb.state();
    Trainer tc(resumed.slab, resumed.model->fn(), resumed.schedule, gaussian_batch, c);
    tc.load_state(st);
    EXPECT_EQ(tc.step_count(), 8);
    for (int k = 8; k < 16; ++k) EXPECT_EQ(tc.step().loss, la[static_cast<std::size_t>(k)]) << "step " << k;
    EXPECT_EQ(resumed.slab.values().to_double_vector(), a.slab.values().to_double_vector());
    EXPECT_EQ(tc.ema().values().to_double_vector(), ta.ema().values().to_double_vector());
    EXPECT_EQ(tc.optimizer().exp_avg_sq().to_double_vector(), ta.optimizer().exp_avg_sq().to_double_vector());
    EXPECT_EQ(tc.generator().offset(), ta.generator().offset());
  }
}

TEST(Trainer, ImportanceSamplingReweightsTheLoss) {
  // Once warmed up, the loss is the weighted mean sum_i w_i loss_i / N with w = 1/(T p_t):
  // check it against the quartile bookkeeping, which is unweighted.
  ToyRig s;
  TrainerConfig c = base_config();
  c.timesteps = TimestepSampling::loss_second_moment;
  Trainer tr(s.slab, s.model->fn(), s.schedule, gaussian_batch, c);
  StepMetrics m;
  for (int k = 0; k < 40; ++k) m = tr.step();  // 40 x 32 draws: every t has 10 losses
  TrainerState st = tr.state();
  ASSERT_TRUE(st.importance->warmed_up());
  std::vector<double> p = st.importance->probabilities();
  double pmax = 0, pmin = 1;
  for (double pi : p) pmax = std::max(pmax, pi), pmin = std::min(pmin, pi);
  EXPECT_GT(pmax / pmin, 1.5);  // no longer uniform
  double unweighted = 0;
  for (int q = 0; q < 4; ++q)
    if (m.quartile_count[q] > 0) unweighted += m.loss_quartile[q] * static_cast<double>(m.quartile_count[q]);
  unweighted /= 32.0;
  EXPECT_TRUE(std::isfinite(m.loss));
  EXPECT_GT(std::abs(m.loss - unweighted), 1e-9);  // the weights changed the backpropagated loss
}

TEST(Trainer, LabelDropoutUsesTheNullLabel) {
  // Classifier-free guidance training: each label becomes the null label (num_classes) with
  // probability label_dropout; the others pass through unchanged.
  toy::MlpDenoiserConfig mc;
  mc.hidden = 8;
  mc.layers = 1;
  mc.time_dim = 4;
  mc.num_classes = 3;
  mc.dtype = DType::f64;
  Generator init(1);
  toy::MlpDenoiser model(mc, init);
  ParameterSlab slab(model.parameters());
  DiffusionSchedule schedule(diffusion::cosine_betas(40));
  std::int64_t seen = 0, nulls = 0;
  diffusion::DenoiseFn net = [&](const Tensor& x, const std::vector<double>& t, const std::vector<std::int64_t>& y) {
    for (std::size_t i = 0; i < y.size(); ++i) {
      ++seen;
      if (y[i] == 3) {
        ++nulls;
      } else {
        EXPECT_EQ(y[i], static_cast<std::int64_t>(i % 3));  // unchanged
      }
    }
    return model.forward(x, t, y);
  };
  auto batches = [](std::int64_t step, Generator& gen) {
    Batch b = gaussian_batch(step, gen);
    for (int i = 0; i < 32; ++i) b.labels.push_back(i % 3);
    return b;
  };
  TrainerConfig c = base_config();
  c.num_classes = 3;
  c.label_dropout = 0.15;
  Trainer tr(slab, net, schedule, batches, c);
  for (int k = 0; k < 50; ++k) tr.step();
  ASSERT_EQ(seen, 1600);
  EXPECT_NEAR(static_cast<double>(nulls) / 1600.0, 0.15, 0.03);  // 3.4 standard errors
}

TEST(Trainer, RejectsBadConfigurations) {
  ToyRig s;
  TrainerConfig c = base_config();
  c.label_dropout = 0.1;  // without classes
  EXPECT_THROW(Trainer(s.slab, s.model->fn(), s.schedule, gaussian_batch, c), ValueError);
  c = base_config();
  c.loss.loss = diffusion::LossType::hybrid;  // needs learned sigma
  Trainer tr(s.slab, s.model->fn(), s.schedule, gaussian_batch, c);
  EXPECT_THROW(tr.step(), ValueError);
}

// The recipes of training_recipes.h, checked draw for draw against a second computation:
// the same generator replayed by hand gives x_0, t, the noise, the offset and the
// perturbation; the network must see sqrt(abar) x_0 + sqrt(1 - abar) (noise + offset +
// gamma xi), and the loss must be the Min-SNR-weighted mean of ||out - (noise + offset)||^2.
TEST(Trainer, RecipesFollowTheirEquationsDrawForDraw) {
  for (auto type : {diffusion::ModelMeanType::eps, diffusion::ModelMeanType::v}) {
    ToyRig s;
    TrainerConfig c = base_config();
    c.loss.mean_type = type;
    c.snr_gamma = 2.0;
    c.noise_offset = 0.3;
    c.input_perturbation = 0.2;
    Tensor seen_x, seen_out;
    std::vector<double> seen_t;
    const diffusion::DenoiseFn inner = s.model->fn();
    diffusion::DenoiseFn spy = [&](const Tensor& x, const std::vector<double>& t, const std::vector<std::int64_t>& y) {
      seen_x = x;
      seen_t = t;
      seen_out = inner(x, t, y);
      return seen_out;
    };
    Trainer tr(s.slab, spy, s.schedule, gaussian_batch, c);
    const StepMetrics m = tr.step();

    Generator g(c.seed);
    const std::vector<double> x0 = gaussian_batch(0, g).x0.to_double_vector();
    const std::vector<double> u = rand({32}, g, Device::cpu(), DType::f64).to_double_vector();
    const std::vector<double> n = randn({32, 2}, g, Device::cpu(), DType::f64).to_double_vector();
    const std::vector<double> off = randn({32, 2}, g, Device::cpu(), DType::f64).to_double_vector();  // [N, C]
    const std::vector<double> xi = randn({32, 2}, g, Device::cpu(), DType::f64).to_double_vector();
    const std::vector<double> x = seen_x.to_double_vector(), out = seen_out.to_double_vector();
    const std::int64_t T = s.schedule.num_timesteps();
    double want_loss = 0;
    for (std::size_t i = 0; i < 32; ++i) {
      const auto t = std::min<std::int64_t>(T - 1, static_cast<std::int64_t>(u[i] * static_cast<double>(T)));
      ASSERT_EQ(seen_t[i], static_cast<double>(t));
      const double ab = s.schedule.alphas_cumprod[static_cast<std::size_t>(t)], snr = ab / (1 - ab);
      double li = 0;
      for (std::size_t j = 2 * i; j < 2 * i + 2; ++j) {
        const double noise = n[j] + 0.3 * off[j];
        EXPECT_NEAR(x[j], std::sqrt(ab) * x0[j] + std::sqrt(1 - ab) * (noise + 0.2 * xi[j]), 1e-12);
        const double target = type == diffusion::ModelMeanType::eps ? noise : std::sqrt(ab) * noise - std::sqrt(1 - ab) * x0[j];
        li += (out[j] - target) * (out[j] - target) / 2;
      }
      const double w = std::min(snr, 2.0) / (type == diffusion::ModelMeanType::eps ? snr : snr + 1);
      want_loss += w * li / 32;
    }
    EXPECT_NEAR(m.loss, want_loss, 1e-12) << diffusion::model_mean_type_name(type);
  }
}

TEST(Trainer, RecipesAreRefusedWhereTheyDoNotApply) {
  ToyRig s;
  TrainerConfig c = base_config();
  c.snr_gamma = 5;
  c.loss.loss = diffusion::LossType::vlb;
  EXPECT_THROW(Trainer(s.slab, s.model->fn(), s.schedule, gaussian_batch, c), ValueError);
  c = base_config();
  c.objective = Objective::edm;
  c.noise_offset = 0.1;
  EXPECT_THROW(Trainer(s.slab, s.model->fn(), s.schedule, gaussian_batch, c), ValueError);
  c = base_config();
  c.input_perturbation = -0.1;
  EXPECT_THROW(Trainer(s.slab, s.model->fn(), s.schedule, gaussian_batch, c), ValueError);
}

}  // namespace
}  // namespace ddpm::train
