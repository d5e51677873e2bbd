// EDM preconditioning, training and sampling (models/diffusion/edm.h, the edm objective of
// models/train/trainer.h): the coefficients against the paper's conditions in closed form,
// the loss identity lambda ||D - y||^2 = ||F - F_target||^2, the loss's gradient against
// finite differences in f64, the log-normal sigma sampler's statistics, the Heun / Euler
// sampler on the analytic optimal denoiser of Gaussian data, guidance, a toy training run,
// and bit-identical resume of an EDM trainer.
#include <array>
#include <cmath>
#include <cstdio>
#include <limits>
#include <memory>
#include <numeric>
#include <vector>

#include <gtest/gtest.h>

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/reduce.h"
#include "models/diffusion/edm.h"
#include "models/diffusion/likelihood.h"
#include "models/run/model_source.h"
#include "models/toy/mlp_denoiser.h"
#include "models/train/trainer.h"
#include "support/gradcheck.h"
#include "support/mixture_rig.h"

namespace ddpm::diffusion {
namespace {

const std::vector<double> kSigmas = {0.002, 0.03, 0.2, 0.5, 1.0, 3.7, 80.0};

TEST(Edm, CoefficientsMeetThePapersConditions) {
  for (double sd : {0.5, 1.3})
    for (double sigma : kSigmas) {
      const EdmPreconditioning p = edm_preconditioning(sigma, sd);
      // Unit input variance: Var(c_in x) = c_in^2 (sigma^2 + sd^2) = 1.
      EXPECT_NEAR(p.c_in * p.c_in * (sigma * sigma + sd * sd), 1.0, 1e-12);
      // Unit target variance for Var(y) = sd^2, x = y + sigma n (y, n independent):
      // Var((y - c_skip x) / c_out) = ((1 - c_skip)^2 sd^2 + c_skip^2 sigma^2) / c_out^2.
      const double var = ((1 - p.c_skip) * (1 - p.c_skip) * sd * sd + p.c_skip * p.c_skip * sigma * sigma) /
                         (p.c_out * p.c_out);
      EXPECT_NEAR(var, 1.0, 1e-12) << "sigma " << sigma;
      // c_skip minimises that variance: its derivative in c_skip, 2(c_skip (sd^2 + sigma^2) - sd^2), is 0.
      EXPECT_NEAR(p.c_skip * (sd * sd + sigma * sigma) - sd * sd, 0.0, 1e-12 * (1 + sigma * sigma));
      EXPECT_DOUBLE_EQ(p.c_noise, std::log(sigma) / 4);
      EXPECT_NEAR(edm_loss_weight(sigma, sd) * p.c_out * p.c_out, 1.0, 1e-12);  // lambda = 1 / c_out^2
    }
  EXPECT_THROW(edm_preconditioning(0.0, 0.5), ValueError);
}

// A toy network: F(x_in; t) = tanh(x_in a + t b) with a, b [1, C] (any inputs it is given).
DenoiseFn toy_net(const Tensor& a, const Tensor& b) {
  return [a, b](const Tensor& x, const std::vector<double>& t, const std::vector<std::int64_t>&) {
    const Tensor tt = Tensor::from_vector(t, {static_cast<std::int64_t>(t.size()), 1}, x.dtype(), x.device());
    return tanh(add(mul(x, a), mul(tt, b)));
  };
}

TEST(Edm, TheLossIsTheWeightedDenoisingErrorPerSample) {
  const Tensor y = testing::random_tensor({5, 3}, 1, DType::f64, 0.5);
  const Tensor n = testing::random_tensor({5, 3}, 2);
  const Tensor a = testing::random_tensor({1, 3}, 3), b = testing::random_tensor({1, 3}, 4);
  const std::vector<double> sigma = {0.01, 0.3, 1.0, 7.0, 60.0};
  const EdmConfig c;
  const std::vector<double> loss = edm_training_loss(toy_net(a, b), c, y, sigma, n, {}).to_double_vector();
  // lambda ||D - y||^2 (mean over elements) with D = c_skip x + c_out F(c_in x; c_noise), element by element.
  const std::vector<double> yv = y.to_double_vector(), nv = n.to_double_vector(), av = a.to_double_vector(),
                            bv = b.to_double_vector();
  for (std::size_t i = 0; i < 5; ++i) {
    const EdmPreconditioning p = edm_preconditioning(sigma[i], c.sigma_data);
    double sq = 0;
    for (std::size_t j = 0; j < 3; ++j) {
      const double x = yv[i * 3 + j] + sigma[i] * nv[i * 3 + j];
      const double d = p.c_skip * x + p.c_out * std::tanh(p.c_in * x * av[j] + p.c_noise * bv[j]);
      sq += (d - yv[i * 3 + j]) * (d - yv[i * 3 + j]);
    }
    const double expected = edm_loss_weight(sigma[i], c.sigma_data) * sq / 3;
    EXPECT_NEAR(loss[i], expected, 1e-10 * (1 + expected)) << "sample " << i;
  }
}

TEST(Edm, LossGradientMatchesFiniteDifferences) {
  const Tensor y = testing::random_tensor({4, 3}, 5, DType::f64, 0.5);
  const Tensor n = testing::random_tensor({4, 3}, 6);
  const std::vector<double> sigma = {0.05, 0.4, 2.0, 20.0};
  const EdmConfig c{0.5, -1.2, 1.2};
  EXPECT_TRUE(testing::gradcheck(
      [&](const testing::Inputs& in) { return edm_training_loss(toy_net(in[0], in[1]), c, y, sigma, n, {}); },
      {testing::param(testing::random_tensor({1, 3}, 7)), testing::param(testing::random_tensor({1, 3}, 8))}));
}

TEST(Edm, LogNormalSigmaSamplerStatistics) {
  const EdmConfig c{0.5, -1.2, 1.2};
  Generator g(3);
  const std::int64_t n = 20000;
  const EdmSigmaDraw d = sample_edm_sigmas(n, c, g);
  Generator h(3);
  randn({n}, h, Device::cpu(), DType::f64);
  EXPECT_EQ(g.offset(), h.offset());  // exactly n normals drawn
  double mean = 0, sq = 0;
  std::array<int, 4> quart{};
  for (std::size_t i = 0; i < d.sigma.size(); ++i) {
    const double l = std::log(d.sigma[i]);
    EXPECT_NEAR((l - c.p_mean) / c.p_std, d.z[i], 1e-12);
    mean += l;
    sq += l * l;
    ++quart[static_cast<std::size_t>(edm_sigma_quartile(d.z[i]))];
  }
  mean /= n;
  const double sd = std::sqrt(sq / n - mean * mean);
  // Standard errors: P_std / sqrt(n) = 0.0085 for the mean, P_std / sqrt(2n) = 0.006 for the std.
  EXPECT_NEAR(mean, c.p_mean, 4 * c.p_std / std::sqrt(double(n)));
  EXPECT_NEAR(sd, c.p_std, 4 * c.p_std / std::sqrt(2.0 * n));
  for (int q : quart) EXPECT_NEAR(q, n / 4, 4 * std::sqrt(n * 0.25 * 0.75));  // binomial(n, 1/4)
  EXPECT_EQ(edm_sigma_quartile(-1.0), 0);
  EXPECT_EQ(edm_sigma_quartile(-0.1), 1);
  EXPECT_EQ(edm_sigma_quartile(0.1), 2);
  EXPECT_EQ(edm_sigma_quartile(1.0), 3);
}

// The preconditioned network whose D is the analytic optimum for N(0, s0^2) data,
// D*(x; sigma) = s0^2 / (sigma^2 + s0^2) x: it recovers sigma from t = c_noise and x from
// x_in = c_in x, and returns F = (D* - c_skip x) / c_out. Records the c_noise it saw.
DenoiseFn gaussian_optimal_net(double s0, double sd, std::vector<double>* seen_t = nullptr) {
  return [=](const Tensor& x_in, const std::vector<double>& t, const std::vector<std::int64_t>&) {
    if (seen_t) seen_t->push_back(t.front());
    const double sigma = std::exp(4 * t.front());
    const EdmPreconditioning p = edm_preconditioning(sigma, sd);
    const double k = s0 * s0 / (sigma * sigma + s0 * s0);
    return scale(x_in, (k - p.c_skip) / (p.c_in * p.c_out));  // (k x - c_skip x) / c_out, x = x_in / c_in
  };
}

TEST(Edm, DenoiserIsTheDataWhenFIsTheIdealTarget) {
  // F returning (y - c_skip x) / c_out exactly must give D = y.
  const Tensor y = testing::random_tensor({3, 2}, 9, DType::f64, 0.5), n = testing::random_tensor({3, 2}, 10);
  const double sigma = 1.7;
  const EdmPreconditioning p = edm_preconditioning(sigma, 0.5);
  std::vector<double> seen;
  const DenoiseFn ideal = [&](const Tensor& x_in, const std::vector<double>& t, const std::vector<std::int64_t>&) {
    seen = t;
    return scale(sub(y, scale(x_in, p.c_skip / p.c_in)), 1.0 / p.c_out);
  };
  SamplerConfig sc;
  sc.dtype = DType::f64;
  const Tensor x = add(y, scale(n, sigma));
  EXPECT_TRUE(testing::all_close(edm_denoise(ideal, EdmConfig{}, sc, x, sigma, {}), y, 1e-12, 1e-12));
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_DOUBLE_EQ(seen[0], std::log(sigma) / 4);
}

TEST(Edm, HeunOnTheOptimalDenoiserReproducesTheDataVariance) {
  const double s0 = 0.3, sd = 0.5;  // data std differs from sigma_data: F is not 0
  SamplerConfig sc;
  sc.dtype = DType::f64;
  sc.heun_steps = 32;
  const std::int64_t n = 8000;
  for (KarrasSolver solver : {KarrasSolver::heun, KarrasSolver::euler, KarrasSolver::dpmpp_2m}) {
    Generator g(21), z_gen(21);
    const std::vector<double> x = edm_sample(gaussian_optimal_net(s0, sd), EdmConfig{sd}, {n, 1}, {}, sc, g,
                                             Device::cpu(), {}, solver)
                                      .to_double_vector();
    const std::vector<double> z = randn({n, 1}, z_gen, Device::cpu(), DType::f64).to_double_vector();
    // The ODE is linear in x: x_N = k sigma_max z with k -> s0 / sqrt(sigma_max^2 + s0^2) for
    // the exact flow (x(sigma) = x(sigma_max) sqrt(sigma^2 + s0^2) / sqrt(sigma_max^2 + s0^2)).
    const double k_exact = s0 / std::sqrt(kEdmSigmaMax * kEdmSigmaMax + s0 * s0);
    const double k = x[0] / (kEdmSigmaMax * z[0]);
    std::printf("solver %d: k / k_exact - 1 = %g\n", int(solver), k / k_exact - 1);
    EXPECT_NEAR(k / k_exact, 1.0, solver == KarrasSolver::euler ? 0.15 : 0.03) << "solver " << int(solver);
    double var = 0;
    for (double v : x) var += v * v;
    var /= n;
    // Heun and DPM-Solver++(2M): the data variance within the sampling error (std of the estimate sqrt(2/n) = 1.6%).
    if (solver != KarrasSolver::euler) EXPECT_NEAR(var / (s0 * s0), 1.0, 0.06);
  }
  // Heun is second order: four times the steps, about a sixteenth of the error (> 8x less).
  auto k_error = [&](std::int64_t steps) {
    SamplerConfig c = sc;
    c.heun_steps = steps;
    Generator g(5), z_gen(5);
    const double x = edm_sample(gaussian_optimal_net(s0, sd), EdmConfig{sd}, {1, 1}, {}, c, g).item();
    const double z = randn({1, 1}, z_gen, Device::cpu(), DType::f64).item();
    return std::abs(x / (kEdmSigmaMax * z) / (s0 / std::sqrt(kEdmSigmaMax * kEdmSigmaMax + s0 * s0)) - 1);
  };
  std::printf("heun k errors: 16 steps %g, 64 steps %g\n", k_error(16), k_error(64));
  EXPECT_LT(k_error(64), k_error(16) / 8);
  // With churn (algorithm 2) the map is stochastic; the variance still matches.
  sc.heun_steps = 64;
  sc.s_churn = 10;
  sc.s_noise = 1.0;
  Generator g(22);
  const std::vector<double> x = edm_sample(gaussian_optimal_net(s0, sd), EdmConfig{sd}, {n, 1}, {}, sc, g)
                                    .to_double_vector();
  double var = 0;
  for (double v : x) var += v * v;
  std::printf("churn var ratio %g\n", var / n / (s0 * s0));
  EXPECT_NEAR(var / n / (s0 * s0), 1.0, 0.06);
}

TEST(Edm, SamplerLevelsAndChurnAreUncapped) {
  SamplerConfig sc;
  std::vector<double> seen;
  sc.dtype = DType::f64;
  sc.heun_steps = 4;
  Generator g(1);
  edm_sample(gaussian_optimal_net(0.5, 0.5, &seen), EdmConfig{}, {2, 1}, {}, sc, g);
  ASSERT_EQ(seen.size(), 7u);  // 2N - 1 evaluations
  EXPECT_NEAR(std::exp(4 * seen.front()), kEdmSigmaMax, 1e-9);
  EXPECT_NEAR(std::exp(4 * seen.back()), kEdmSigmaMin, 1e-12);
  // The churned level above sigma_max is allowed (no training grid).
  sc.s_churn = 1.0;
  const std::vector<double> levels = karras_sigmas(4, kEdmSigmaMin, kEdmSigmaMax, 7.0);
  const std::vector<double> hat = churned_sigmas(levels, std::numeric_limits<double>::infinity(), sc);
  EXPECT_DOUBLE_EQ(hat[0], kEdmSigmaMax * 1.25);
  sc.sigma_min = 1.0;
  sc.sigma_max = 0.5;
  EXPECT_THROW(resolve_edm_sigma_range(sc), ValueError);
}

TEST(Edm, ClassifierFreeGuidanceMixesTheTwoDenoisers) {
  // A label-aware net: F = x_in * (1 + label) / 10 + t.
  const DenoiseFn net = [](const Tensor& x, const std::vector<double>& t, const std::vector<std::int64_t>& y) {
    std::vector<double> f = x.to_double_vector();
    const std::int64_t c = x.dim(1);
    for (std::size_t i = 0; i < f.size(); ++i)
      f[i] = f[i] * (1.0 + static_cast<double>(y[i / static_cast<std::size_t>(c)])) / 10 + t[i / c];
    return Tensor::from_vector(f, x.shape(), DType::f64);
  };
  SamplerConfig sc;
  sc.dtype = DType::f64;
  sc.num_classes = 3;
  const Tensor x = testing::random_tensor({2, 2}, 30);
  const std::vector<std::int64_t> labels = {0, 2}, null = {3, 3};
  const Tensor dc = edm_denoise(net, EdmConfig{}, sc, x, 0.7, labels);
  const Tensor du = edm_denoise(net, EdmConfig{}, sc, x, 0.7, null);
  sc.guidance_scale = 2.5;
  const Tensor dg = edm_denoise(net, EdmConfig{}, sc, x, 0.7, labels);
  EXPECT_TRUE(testing::all_close(dg, add(du, scale(sub(dc, du), 2.5)), 1e-12, 1e-12));
  sc.guidance_scale = 1.0;
  sc.learned_sigma = true;
  EXPECT_THROW(edm_denoise(net, EdmConfig{}, sc, x, 0.7, labels), ValueError);
}

}  // namespace
}  // namespace ddpm::diffusion

namespace ddpm::train {
namespace {

using testing::mixture_batch;
using EdmRig = testing::MixtureRig;

TrainerConfig edm_config() {
  TrainerConfig c;
  c.objective = Objective::edm;
  c.adamw.lr = 1e-2;
  c.grad_clip = 1.0;
  c.ema_rate = 0.99;
  c.seed = 11;
  return c;
}

TEST(EdmTrainer, DrawsSigmaAfterTheBatchAndReportsLnSigmaQuartiles) {
  EdmRig r(1);
  Trainer tr(r.slab, r.model->fn(), r.schedule, mixture_batch, edm_config());
  const StepMetrics m = tr.step();
  // Replay the documented order: the provider's draws, then N normals for ln sigma.
  Generator g(11);
  mixture_batch(0, g);
  const diffusion::EdmSigmaDraw d = diffusion::sample_edm_sigmas(32, edm_config().edm, g);
  std::array<std::int64_t, 4> counts{};
  for (double z : d.z) ++counts[static_cast<std::size_t>(diffusion::edm_sigma_quartile(z))];
  EXPECT_EQ(m.quartile_count, counts);
  // The backpropagated loss is the mean of the per-sample EDM losses at those sigmas.
  EdmRig fresh(1);
  Generator g2(11);
  const Batch b = mixture_batch(0, g2);
  diffusion::sample_edm_sigmas(32, edm_config().edm, g2);
  const Tensor noise = randn({32, 2}, g2, Device::cpu(), DType::f64);
  NoGradGuard ng;
  const double expected =
      mean(diffusion::edm_training_loss(fresh.model->fn(), edm_config().edm, b.x0, d.sigma, noise, {})).item();
  EXPECT_NEAR(m.loss, expected, 1e-12 * expected);
}

TEST(EdmTrainer, ToyTrainingDecreasesTheLoss) {
  EdmRig r(2, 32);
  TrainerConfig c = edm_config();
  c.ema_rate = 0.9;
  Trainer tr(r.slab, r.model->fn(), r.schedule, mixture_batch, c);
  // The loss has a floor (the posterior variance of the target, about 1 at large sigma where
  // x says little about y), so the whole loss falls only so far; the lowest quartile of ln
  // sigma (sigma < 0.13, where two tight clusters are nearly identifiable from x) can be
  // learned almost perfectly.
  const int steps = 300, window = 50;
  double first = 0, last = 0, first_q0 = 0, last_q0 = 0;
  std::int64_t first_n0 = 0, last_n0 = 0;
  for (int k = 0; k < steps; ++k) {
    const StepMetrics m = tr.step();
    if (k < window) {
      first += m.loss;
      first_q0 += m.quartile_count[0] > 0 ? m.loss_quartile[0] * m.quartile_count[0] : 0.0;
      first_n0 += m.quartile_count[0];
    }
    if (k >= steps - window) {
      last += m.loss;
      last_q0 += m.quartile_count[0] > 0 ? m.loss_quartile[0] * m.quartile_count[0] : 0.0;
      last_n0 += m.quartile_count[0];
    }
  }
  std::printf("EDM toy loss: first %g last %g; lowest quartile first %g last %g\n", first / window, last / window,
              first_q0 / first_n0, last_q0 / last_n0);
  EXPECT_LT(last, 0.9 * first);
  EXPECT_LT(last_q0 / last_n0, 0.5 * first_q0 / first_n0);
}

TEST(EdmTrainer, ResumedTrainingIsBitIdentical) {
  TrainerConfig c = edm_config();
  c.warmup_steps = 3;
  c.microbatch = 8;
  testing::expect_resume_bit_identical(c);
}

TEST(EdmTrainer, MicrobatchesGiveTheFullBatchLoss) {
  TrainerConfig c = edm_config();
  EdmRig a(6), b(6);
  Trainer ta(a.slab, a.model->fn(), a.schedule, mixture_batch, c);
  c.microbatch = 5;  // uneven split: 5 + 5 + ... + 2
  Trainer tb(b.slab, b.model->fn(), b.schedule, mixture_batch, c);
  for (int k = 0; k < 3; ++k) {
    const StepMetrics ma = ta.step(), mb = tb.step();
    EXPECT_NEAR(ma.loss, mb.loss, 1e-12 * ma.loss);
    EXPECT_NEAR(ma.grad_norm, mb.grad_norm, 1e-10 * ma.grad_norm);
  }
}

TEST(EdmTrainer, RefusesWhatBelongsToTheDiscreteProcess) {
  EdmRig r(1);
  TrainerConfig c = edm_config();
  c.timesteps = TimestepSampling::loss_second_moment;
  EXPECT_THROW(Trainer(r.slab, r.model->fn(), r.schedule, mixture_batch, c), ValueError);
  c = edm_config();
  c.loss.learned_sigma = true;
  EXPECT_THROW(Trainer(r.slab, r.model->fn(), r.schedule, mixture_batch, c), ValueError);
  c = edm_config();
  c.edm.sigma_data = 0;
  EXPECT_THROW(Trainer(r.slab, r.model->fn(), r.schedule, mixture_batch, c), ValueError);
  EXPECT_EQ(parse_objective("edm"), Objective::edm);
  EXPECT_THROW(parse_objective("ve"), ValueError);
}

}  // namespace
}  // namespace ddpm::train

namespace ddpm::run {
namespace {

TEST(EdmModelSource, DiffusionSettingsRoundTripAndDefaultToDdpm) {
  DiffusionSettings d;
  d.edm = diffusion::EdmConfig{0.7, -1.0, 1.5};
  const DiffusionSettings back = diffusion_from_json(diffusion_to_json(d), false);
  ASSERT_TRUE(back.edm.has_value());
  EXPECT_EQ(back.edm->sigma_data, 0.7);
  EXPECT_EQ(back.edm->p_mean, -1.0);
  EXPECT_EQ(back.edm->p_std, 1.5);
  EXPECT_THROW(diffusion_from_json(diffusion_to_json(d), true), ValueError);  // a learned-sigma UNet
  // A section without "objective" (every run before it existed) is DDPM.
  EXPECT_FALSE(diffusion_from_json({{"diffusion_steps", 50}, {"noise_schedule", "linear"}}, false).edm.has_value());
  EXPECT_THROW(diffusion_from_json({{"objective", "ve"}}, false), ValueError);
  EXPECT_THROW(diffusion_from_json({{"objective", "edm"}, {"sigma_data", 0.5}}, false), ValueError);  // p_mean missing
}

}  // namespace
}  // namespace ddpm::run
