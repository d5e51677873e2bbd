// Improved consistency training (models/diffusion/consistency_training.h, the ict objective of
// models/train/trainer.h, models/run/ict_options.h): the boundary condition in closed form,
// iCT's curriculum and level distribution, the Karras grid, the per-sample loss against a hand
// computation, its gradient against finite differences in f64, that no gradient flows through
// the target and that the target sees the student's dropout draws, the trainer's draw order,
// a toy run whose one-step samples improve, bit-identical resume, the multistep sampler's
// levels and random numbers, and the config.json round trip.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <memory>
#include <vector>

#include <gtest/gtest.h>

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/reduce.h"
#include "models/diffusion/consistency_training.h"
#include "models/diffusion/edm.h"
#include "models/run/edm_options.h"
#include "models/run/ict_options.h"
#include "models/run/model_source.h"
#include "models/toy/mlp_denoiser.h"
#include "models/train/trainer.h"
#include "support/gradcheck.h"
#include "support/mixture_rig.h"

namespace ddpm::diffusion {
namespace {

// A toy network: F(x_in; t) = tanh(x_in a + t b) with a, b [1, C].
DenoiseFn toy_net(const Tensor& a, const Tensor& b) {
  return [a, b](const Tensor& x, const std::vector<double>& t, const std::vector<std::int64_t>&) {
    const Tensor tt = Tensor::from_vector(t, {static_cast<std::int64_t>(t.size()), 1}, x.dtype(), x.device());
    return tanh(add(mul(x, a), mul(tt, b)));
  };
}

TEST(Ict, BoundaryConditionHoldsExactly) {
  const IctConfig c;
  const IctScalings s = ict_scalings(c.sigma_min, c);
  EXPECT_EQ(s.c_skip, 1.0);
  EXPECT_EQ(s.c_out, 0.0);
  // f(x, sigma_min) = x bit for bit, whatever the network says.
  const Tensor x = testing::random_tensor({4, 3}, 1);
  const Tensor a = testing::random_tensor({1, 3}, 2), b = testing::random_tensor({1, 3}, 3);
  const Tensor f = ict_consistency_function(toy_net(a, b), c, x, std::vector<double>(4, c.sigma_min), {});
  EXPECT_EQ(f.to_double_vector(), x.to_double_vector());
  // Away from the boundary the coefficients are the closed forms; c_in and c_noise are EDM's.
  for (double sigma : {0.01, 0.5, 2.0, 80.0}) {
    const IctScalings p = ict_scalings(sigma, c);
    const EdmPreconditioning e = edm_preconditioning(sigma, c.sigma_data);
    const double sd = c.sigma_data, d = sigma - c.sigma_min;
    EXPECT_DOUBLE_EQ(p.c_skip, sd * sd / (d * d + sd * sd));
    EXPECT_DOUBLE_EQ(p.c_out, sd * d / std::sqrt(sd * sd + sigma * sigma));
    EXPECT_DOUBLE_EQ(p.c_in, e.c_in);
    EXPECT_DOUBLE_EQ(p.c_noise, std::log(sigma) / 4);
  }
  EXPECT_THROW(ict_scalings(0.001, c), ValueError);  // below sigma_min
}

TEST(Ict, CurriculumFollowsTheExponentialSchedule) {
  const IctConfig c;  // s0 = 10, s1 = 1280: K' = floor(K / 8)
  const std::int64_t K = 400000;
  EXPECT_EQ(ict_num_levels(c, 0, K), 11);
  EXPECT_EQ(ict_num_levels(c, 49999, K), 11);
  EXPECT_EQ(ict_num_levels(c, 50000, K), 21);
  EXPECT_EQ(ict_num_levels(c, 100000, K), 41);
  EXPECT_EQ(ict_num_levels(c, 350000, K), 1281);
  EXPECT_EQ(ict_num_levels(c, K - 1, K), 1281);
  EXPECT_EQ(ict_num_levels(c, 10 * K, K), 1281);  // capped at s1 + 1
  // A run shorter than the doublings (K' = 0 would divide by zero) doubles every step.
  EXPECT_EQ(ict_num_levels(c, 0, 5), 11);
  EXPECT_EQ(ict_num_levels(c, 3, 5), 81);
  // s1 / s0 not a power of two: log2 floor(100) + 1 = 7.64, K' = floor(1000 / 7.64) = 130.
  IctConfig d;
  d.s1 = 1000;
  EXPECT_EQ(ict_num_levels(d, 129, 1000), 11);
  EXPECT_EQ(ict_num_levels(d, 130, 1000), 21);
  EXPECT_EQ(ict_num_levels(d, 909, 1000), 641);
  EXPECT_EQ(ict_num_levels(d, 910, 1000), 1001);  // 1280 capped at s1 = 1000
}

TEST(Ict, KarrasGridHasExactEndpoints) {
  const IctConfig c;
  for (std::int64_t N : {2, 11, 1281}) {
    const std::vector<double> s = ict_sigmas(c, N);
    ASSERT_EQ(static_cast<std::int64_t>(s.size()), N);
    EXPECT_EQ(s.front(), c.sigma_min);
    EXPECT_EQ(s.back(), c.sigma_max);
    for (std::int64_t i = 1; i < N; ++i) EXPECT_LT(s[i - 1], s[i]);
    for (std::int64_t i = 1; i + 1 < N; ++i) {
      const double lo = std::pow(c.sigma_min, 1 / c.rho), hi = std::pow(c.sigma_max, 1 / c.rho);
      EXPECT_NEAR(s[i], std::pow(lo + double(i) / double(N - 1) * (hi - lo), c.rho), 1e-12 * s[i]);
    }
  }
  EXPECT_THROW(ict_sigmas(c, 1), ValueError);
}

TEST(Ict, LevelDistributionIsTheLogNormalMassOfEachBin) {
  const IctConfig c;
  const std::vector<double> s = ict_sigmas(c, 11);
  const std::vector<double> p = ict_level_probabilities(c, s);
  ASSERT_EQ(p.size(), 10u);
  double total = 0;
  for (double v : p) total += v;
  EXPECT_NEAR(total, 1.0, 1e-14);
  // p_i proportional to Phi(ln sigma_{i+1}) - Phi(ln sigma_i) of N(-1.1, 2^2), Phi from erfc.
  const auto Phi = [&](double sigma) {
    return 0.5 * std::erfc(-(std::log(sigma) - c.p_mean) / (c.p_std * std::sqrt(2.0)));
  };
  const double mass = Phi(s.back()) - Phi(s.front());
  for (std::size_t i = 0; i < p.size(); ++i) EXPECT_NEAR(p[i], (Phi(s[i + 1]) - Phi(s[i])) / mass, 1e-12);
  // The sampler: frequencies within 5 standard errors of p, and each bin's metric quartile.
  Generator g(3);
  const std::int64_t n = 20000;
  const IctLevelDraw d = sample_ict_levels(n, c, 11, g);
  Generator h(3);
  rand({n}, h, Device::cpu(), DType::f64);
  EXPECT_EQ(g.offset(), h.offset());  // n uniforms in f64, nothing else
  std::vector<double> freq(p.size(), 0.0);
  double cdf_before = 0;
  std::vector<double> cdf_mid(p.size());
  for (std::size_t i = 0; i < p.size(); ++i) cdf_mid[i] = (cdf_before += p[i]) - p[i] / 2;
  for (std::size_t k = 0; k < d.lower.size(); ++k) {
    const auto i = static_cast<std::size_t>(d.lower[k]);
    freq[i] += 1.0 / static_cast<double>(n);
    EXPECT_EQ(d.sigma_lo[k], s[i]);
    EXPECT_EQ(d.sigma_hi[k], s[i + 1]);
    EXPECT_EQ(d.quartile[k], std::min(3, static_cast<int>(4 * cdf_mid[i])));
  }
  for (std::size_t i = 0; i < p.size(); ++i)
    EXPECT_NEAR(freq[i], p[i], 5 * std::sqrt(p[i] * (1 - p[i]) / static_cast<double>(n)) + 1e-12) << "bin " << i;
}

TEST(Ict, PairLossIsTheWeightedPseudoHuberPerSample) {
  const Tensor f = testing::random_tensor({3, 2, 2, 1}, 4),
               target = testing::random_tensor({3, 2, 2, 1}, 5, DType::f64, 0.1);
  const std::vector<double> lo = {0.002, 0.5, 20.0}, hi = {0.01, 0.9, 80.0};
  const std::vector<double> ph = ict_pair_loss(f, target, lo, hi, ConsistencyDistance::pseudo_huber).to_double_vector();
  const std::vector<double> l2 = ict_pair_loss(f, target, lo, hi, ConsistencyDistance::l2).to_double_vector();
  const std::vector<double> fv = f.to_double_vector(), tv = target.to_double_vector();
  const double c = 0.00054 * std::sqrt(4.0);
  for (std::size_t i = 0; i < 3; ++i) {
    double sq = 0;
    for (std::size_t j = 0; j < 4; ++j) sq += (fv[i * 4 + j] - tv[i * 4 + j]) * (fv[i * 4 + j] - tv[i * 4 + j]);
    const double lambda = 1 / (hi[i] - lo[i]);
    EXPECT_NEAR(ph[i], lambda * (std::sqrt(sq + c * c) - c), 1e-12 * lambda);
    EXPECT_NEAR(l2[i], lambda * sq / 4, 1e-12 * lambda);
  }
  EXPECT_THROW(ict_pair_loss(f, target, hi, lo, ConsistencyDistance::l2), ValueError);  // sigma_{i+1} <= sigma_i
}

TEST(Ict, LossGradientMatchesFiniteDifferencesWithTheTargetHeldFixed) {
  const IctConfig c;
  const Tensor x0 = testing::random_tensor({4, 3}, 6, DType::f64, 0.5), z = testing::random_tensor({4, 3}, 7);
  const std::vector<double> lo = {0.002, 0.3, 1.5, 30.0}, hi = {0.05, 0.6, 3.0, 80.0};
  const Tensor a0 = testing::random_tensor({1, 3}, 8), b0 = testing::random_tensor({1, 3}, 9);
  Tensor target;
  {
    NoGradGuard ng;
    target = ict_consistency_function(toy_net(a0, b0), c, ict_noised(x0, z, lo), lo, {});
  }
  for (ConsistencyDistance d : {ConsistencyDistance::pseudo_huber, ConsistencyDistance::l2}) {
    const auto loss = [&](const std::vector<Tensor>& in) {
      const Tensor f = ict_consistency_function(toy_net(in[0], in[1]), c, ict_noised(x0, z, hi), hi, {});
      return ict_pair_loss(f, target, lo, hi, d);
    };
    EXPECT_TRUE(testing::gradcheck(loss, {testing::param(a0.clone()), testing::param(b0.clone())}));
  }
}

TEST(Ict, SamplingLevelsAndTheMultistepSampler) {
  const IctConfig c;
  EXPECT_EQ(ict_sampling_sigmas(c, 1), std::vector<double>{80.0});
  EXPECT_EQ(ict_sampling_sigmas(c, 2), (std::vector<double>{80.0, 0.821}));
  const std::vector<double> three = ict_sampling_sigmas(c, 3), grid = ict_sigmas(c, 4);
  EXPECT_EQ(three, (std::vector<double>{grid[3], grid[2], grid[1]}));
  EXPECT_THROW(ict_sampling_sigmas(c, 0), ValueError);
  EXPECT_THROW(check_ict_sampling_sigmas(c, {80.0, 90.0}), ValueError);   // above sigma_max, not descending
  EXPECT_THROW(check_ict_sampling_sigmas(c, {80.0, 0.002}), ValueError);  // sigma_min: f is the identity
  EXPECT_THROW(check_ict_sampling_sigmas(c, {1.0, 2.0}), ValueError);
  // CM Algorithm 1 by hand: x = f(80 z, 80); x = f(x + sqrt(tau^2 - sigma_min^2) z', tau).
  const Tensor a = testing::random_tensor({1, 2}, 10), b = testing::random_tensor({1, 2}, 11);
  const DenoiseFn net = toy_net(a, b);
  Generator g(5), h(5);
  const std::vector<double> taus = {80.0, 2.0};
  const Tensor x = ict_sample(net, c, {3, 2}, {}, taus, false, g, Device::cpu(), DType::f64);
  const Tensor z = randn({3, 2}, h, Device::cpu(), DType::f64), z2 = randn({3, 2}, h, Device::cpu(), DType::f64);
  const Tensor x1 = ict_consistency_function(net, c, scale(z, 80.0), std::vector<double>(3, 80.0), {});
  const Tensor expected = ict_consistency_function(net, c, add(x1, scale(z2, std::sqrt(4.0 - 0.002 * 0.002))),
                                                   std::vector<double>(3, 2.0), {});
  EXPECT_TRUE(testing::all_close(x, expected, 1e-14, 1e-12));
  EXPECT_EQ(g.offset(), h.offset());
}

}  // namespace
}  // namespace ddpm::diffusion

namespace ddpm::train {
namespace {

using testing::mixture_batch;
using IctRig = testing::MixtureRig;

TrainerConfig ict_trainer_config(std::int64_t steps = 400) {
  TrainerConfig c;
  c.objective = Objective::ict;
  c.adamw.lr = 1e-2;
  c.grad_clip = 0.0;
  c.ema_rate = 0.99;
  c.total_steps = steps;
  c.seed = 11;
  return c;
}

TEST(IctTrainer, DrawsLevelsAtTsPlaceAndBackpropagatesTheStudentAlone) {
  IctRig r(1);
  Trainer tr(r.slab, r.model->fn(), r.schedule, mixture_batch, ict_trainer_config());
  const StepMetrics m = tr.step();
  const std::vector<double> trainer_grad = r.slab.grads().to_double_vector();
  // Replay the documented order: the provider's draws, N uniforms for the levels, the noise.
  const diffusion::IctConfig c;
  Generator g(11);
  const Batch b = mixture_batch(0, g);
  const diffusion::IctLevelDraw d = diffusion::sample_ict_levels(32, c, diffusion::ict_num_levels(c, 0, 400), g);
  const Tensor z = randn({32, 2}, g, Device::cpu(), DType::f64);
  EXPECT_EQ(tr.generator().offset(), g.offset());
  std::array<std::int64_t, 4> counts{};
  for (int q : d.quartile) ++counts[static_cast<std::size_t>(q)];
  EXPECT_EQ(m.quartile_count, counts);
  // The same loss with the target as a constant copy: the same value and the same gradient.
  IctRig fresh(1);
  const diffusion::DenoiseFn net = fresh.model->fn();
  const Tensor target_on_tape =
      diffusion::ict_consistency_function(net, c, diffusion::ict_noised(b.x0, z, d.sigma_lo), d.sigma_lo, {});
  const Tensor target = Tensor::from_vector(target_on_tape.to_double_vector(), {32, 2}, DType::f64);
  const Tensor f =
      diffusion::ict_consistency_function(net, c, diffusion::ict_noised(b.x0, z, d.sigma_hi), d.sigma_hi, {});
  fresh.slab.zero_grad();
  const Tensor loss = mean(diffusion::ict_pair_loss(f, target, d.sigma_lo, d.sigma_hi, c.distance));
  loss.backward();
  EXPECT_NEAR(m.loss, loss.item(), 1e-12 * loss.item());
  const std::vector<double> student_grad = fresh.slab.grads().to_double_vector();
  ASSERT_EQ(student_grad.size(), trainer_grad.size());
  for (std::size_t i = 0; i < student_grad.size(); ++i)
    EXPECT_NEAR(trainer_grad[i], student_grad[i], 1e-10 * (1 + std::abs(student_grad[i]))) << "parameter " << i;
  // With the target on the tape too the gradient differs: the test above could fail.
  fresh.slab.zero_grad();
  const Tensor f2 =
      diffusion::ict_consistency_function(net, c, diffusion::ict_noised(b.x0, z, d.sigma_hi), d.sigma_hi, {});
  mean(diffusion::ict_pair_loss(f2, target_on_tape, d.sigma_lo, d.sigma_hi, c.distance)).backward();
  const std::vector<double> both = fresh.slab.grads().to_double_vector();
  double diff = 0, norm = 0;
  for (std::size_t i = 0; i < both.size(); ++i) {
    diff += (both[i] - student_grad[i]) * (both[i] - student_grad[i]);
    norm += student_grad[i] * student_grad[i];
  }
  EXPECT_GT(diff, 1e-6 * norm);
}

TEST(IctTrainer, TheTargetAndTheStudentSeeTheSameDropoutDraws) {
  // A "network" that draws a dropout-like mask from the trainer's dropout generator and
  // records the generator's offset at each call: the target's and the student's calls of a
  // step must start at the same offset, and the step must advance it once.
  IctRig r(2);
  Trainer* trainer = nullptr;
  std::vector<std::uint64_t> offsets;
  const diffusion::DenoiseFn inner = r.model->fn();
  const diffusion::DenoiseFn net = [&](const Tensor& x, const std::vector<double>& t,
                                       const std::vector<std::int64_t>& y) {
    Generator& g = trainer->dropout_generator();
    offsets.push_back(g.offset());
    const Tensor keep = rand(x.shape(), g, x.device(), x.dtype());  // the mask's uniforms
    return add(inner(x, t, y), scale(keep, 1e-3));
  };
  Trainer tr(r.slab, net, r.schedule, mixture_batch, ict_trainer_config());
  trainer = &tr;
  tr.step();
  ASSERT_EQ(offsets.size(), 2u);
  EXPECT_EQ(offsets[0], offsets[1]);
  Generator once(11);
  once.set_state(11, offsets[1]);
  rand({32, 2}, once, Device::cpu(), DType::f64);  // one mask's draws
  EXPECT_EQ(tr.generator().offset(), once.offset());
}

// The mean distance of K-step samples to the nearer cluster centre (+-0.5, +-0.5).
// K = 1: tau = {80}; K = 2: {80, 0.821} (consistency_training.h's defaults).
double sample_error(const toy::MlpDenoiser& model, Ema* ema, ParameterSlab& slab, std::int64_t K = 1) {
  if (ema) ema->swap(slab);
  Generator g(77);
  const diffusion::IctConfig c;
  const Tensor x = diffusion::ict_sample(model.fn(), c, {512, 2}, {}, diffusion::ict_sampling_sigmas(c, K), false, g,
                                         Device::cpu(), DType::f64);
  if (ema) ema->swap(slab);
  const std::vector<double> v = x.to_double_vector();
  double acc = 0;
  for (std::size_t i = 0; i < v.size(); i += 2) {
    const double dp = std::hypot(v[i] - 0.5, v[i + 1] - 0.5), dm = std::hypot(v[i] + 0.5, v[i + 1] + 0.5);
    acc += std::min(dp, dm);
  }
  return acc / 512.0;
}

TEST(IctTrainer, ToyTrainingImprovesOneStepSamples) {
  const std::int64_t steps = 1000;
  IctRig r(3, 32);
  TrainerConfig c = ict_trainer_config(steps);
  c.ema_rate = 0.95;
  Trainer tr(r.slab, r.model->fn(), r.schedule, mixture_batch, c);
  const double before = sample_error(*r.model, nullptr, r.slab);
  double first = 0, last = 0;
  const int window = 50;
  for (std::int64_t k = 0; k < steps; ++k) {
    const StepMetrics m = tr.step();
    ASSERT_FALSE(m.skipped);
    if (k < window) first += m.loss / window;
    if (k >= steps - window) last += m.loss / window;
  }
  const double after = sample_error(*r.model, &tr.ema(), r.slab), two = sample_error(*r.model, &tr.ema(), r.slab, 2);
  std::printf(
      "iCT toy: distance to the nearer cluster, one step %.4f -> %.4f, two steps %.4f (EMA); loss first "
      "%.4g last %.4g (not comparable: N(k) and lambda change along the curriculum)\n",
      before, after, two, first, last);
  // A model collapsed onto the data mean (the origin) would score 0.707, about what the
  // untrained network gives; a trained one puts its one-step samples near the clusters.
  EXPECT_LT(after, 0.3 * before);
  EXPECT_LT(after, 0.2);
}

TEST(IctTrainer, ResumedTrainingIsBitIdentical) {
  TrainerConfig c = ict_trainer_config(12);
  c.warmup_steps = 3;
  c.microbatch = 8;
  testing::expect_resume_bit_identical(c);
}

TEST(IctTrainer, MicrobatchesGiveTheFullBatchLoss) {
  TrainerConfig c = ict_trainer_config();
  IctRig a(6), b(6);
  Trainer ta(a.slab, a.model->fn(), a.schedule, mixture_batch, c);
  c.microbatch = 5;  // uneven split
  Trainer tb(b.slab, b.model->fn(), b.schedule, mixture_batch, c);
  for (int k = 0; k < 3; ++k) {
    const StepMetrics ma = ta.step(), mb = tb.step();
    EXPECT_NEAR(ma.loss, mb.loss, 1e-12 * ma.loss);
    EXPECT_NEAR(ma.grad_norm, mb.grad_norm, 1e-10 * ma.grad_norm);
  }
}

TEST(IctTrainer, RefusesWhatBelongsToTheDiscreteProcess) {
  IctRig r(1);
  TrainerConfig c = ict_trainer_config();
  c.timesteps = TimestepSampling::loss_second_moment;
  EXPECT_THROW(Trainer(r.slab, r.model->fn(), r.schedule, mixture_batch, c), ValueError);
  c = ict_trainer_config();
  c.loss.learned_sigma = true;
  EXPECT_THROW(Trainer(r.slab, r.model->fn(), r.schedule, mixture_batch, c), ValueError);
  c = ict_trainer_config();
  c.total_steps = 0;  // the curriculum needs K
  EXPECT_THROW(Trainer(r.slab, r.model->fn(), r.schedule, mixture_batch, c), ValueError);
  c = ict_trainer_config();
  c.ict.s0 = 1;
  EXPECT_THROW(Trainer(r.slab, r.model->fn(), r.schedule, mixture_batch, c), ValueError);
  c = ict_trainer_config();
  c.snr_gamma = 5;
  EXPECT_THROW(Trainer(r.slab, r.model->fn(), r.schedule, mixture_batch, c), ValueError);
  EXPECT_EQ(parse_objective("ict"), Objective::ict);
  EXPECT_STREQ(objective_name(Objective::ict), "ict");
}

}  // namespace
}  // namespace ddpm::train

namespace ddpm::run {
namespace {

TEST(IctOptions, DefaultsAreIctsAndTheSectionRoundTrips) {
  TrainOptions o;
  o.objective = "ict";
  diffusion::IctConfig c = ict_config(o);
  EXPECT_EQ(c.p_mean, -1.1);  // iCT's, not EDM's -1.2 / 1.2
  EXPECT_EQ(c.p_std, 2.0);
  EXPECT_EQ(c.s0, 10);
  EXPECT_EQ(c.s1, 1280);
  o.objective_flags_given = {"--p-mean"};
  o.p_mean = -1.2;  // given explicitly at EDM's value: kept
  EXPECT_EQ(ict_config(o).p_mean, -1.2);
  o.ict_discretization = "20,640";
  o.consistency_loss = "l2";
  c = ict_config(o);
  const DiffusionSettings d = diffusion_from_json(diffusion_to_json(DiffusionSettings{}), false);
  EXPECT_FALSE(d.ict);
  DiffusionSettings s;
  s.ict = c;
  const DiffusionSettings back = diffusion_from_json(diffusion_to_json(s), false);
  ASSERT_TRUE(back.ict);
  EXPECT_FALSE(back.edm);
  EXPECT_EQ(back.ict->s0, 20);
  EXPECT_EQ(back.ict->s1, 640);
  EXPECT_EQ(back.ict->p_mean, -1.2);
  EXPECT_EQ(back.ict->distance, diffusion::ConsistencyDistance::l2);
  EXPECT_EQ(diffusion_to_json(back), diffusion_to_json(s));
  // Refusals naming the flag.
  o.ict_discretization = "10";
  EXPECT_THROW(validate_ict_options(o), ValueError);
  o.ict_discretization = "1280,10";
  EXPECT_THROW(validate_ict_options(o), ValueError);
  o.ict_discretization = "10,1280";
  o.snr_gamma = 5;
  EXPECT_THROW(validate_ict_options(o), ValueError);
  TrainOptions ddpm;
  ddpm.objective_flags_given = {"--ict-discretization"};
  EXPECT_THROW(validate_ict_options(ddpm), ValueError);
  EXPECT_THROW(diffusion_from_json(diffusion_to_json(s), true), ValueError);  // learned variance
}

TEST(IctOptions, LatentsGetUnitSigmaDataAsForEdm) {
  TrainOptions o;
  o.objective = "ict";
  EXPECT_TRUE(default_sigma_data_for_latents(o));  // --autoencoder: unit-variance latents
  EXPECT_EQ(ict_config(o).sigma_data, 1.0);
  TrainOptions given;
  given.objective = "ict";
  given.objective_flags_given = {"--sigma-data"};
  EXPECT_FALSE(default_sigma_data_for_latents(given));
  EXPECT_EQ(ict_config(given).sigma_data, 0.5);
}

}  // namespace
}  // namespace ddpm::run
