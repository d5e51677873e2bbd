// Classifier guidance (models/diffusion/classifier_guidance.h and its use in sampler.cpp):
// the gradient against central differences in f64, one guided DDPM and one guided DDIM step
// against the equations worked out here, bit-identity when off, the refusals, an end-to-end
// run on the toy shapes, and ddpm-sample's flags.
#include <cmath>
#include <fstream>
#include <numeric>

#include <gtest/gtest.h>

#include "apps/common/cli.h"
#include "engine/autograd.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/reduce.h"
#include "models/data/toy.h"
#include "models/diffusion/sampler.h"
#include "models/run/classifier_run.h"
#include "models/run/sample_run.h"
#include "support/gradcheck.h"
#include "support/temp_dir.h"
#include "support/tiny_encoder.h"
#include "support/tiny_model.h"
#include "support/value_error.h"

namespace ddpm::diffusion {
namespace {

using testing::expect_value_error;

ClassifierFn as_fn(const unet::NoisyClassifier& c) {
  return [&c](const Tensor& x, const std::vector<double>& t) { return c.forward(x, t, nn::Context{}); };
}

// A smooth analytic eps-network in f64: eps = 0.5 tanh(x).
const DenoiseFn kTanhNet = [](const Tensor& x, const std::vector<double>&, const std::vector<std::int64_t>&) {
  return scale(tanh(x), 0.5);
};

TEST(ClassifierGuidance, GradientMatchesCentralDifferencesInF64) {
  auto cls = testing::tiny_encoder(testing::tiny_encoder_config(8, 3, 3), /*f64=*/true);
  const ClassifierFn f = as_fn(*cls);
  const Tensor x = testing::random_tensor({2, 8, 8, 3}, 7);
  const std::vector<std::int64_t> y{2, 0};
  const double t = 13;
  const std::vector<double> g = classifier_log_prob_gradient(f, x, t, y).to_double_vector();
  auto objective = [&](const std::vector<double>& v) {  // sum_i log p(y_i | x_i, t)
    NoGradGuard ng;
    const Tensor xv = Tensor::from_vector(v, x.shape(), DType::f64);
    return sum(selected_log_probs(f(xv, {t, t}), y)).item();
  };
  const std::vector<double> x0 = x.to_double_vector();
  const double h = 1e-5;
  double max_err = 0, max_g = 0;
  for (std::size_t k = 0; k < x0.size(); k += 5) {
    std::vector<double> up = x0, down = x0;
    up[k] += h;
    down[k] -= h;
    const double numeric = (objective(up) - objective(down)) / (2 * h);
    max_err = std::max(max_err, std::abs(numeric - g[k]));
    max_g = std::max(max_g, std::abs(numeric));
  }
  EXPECT_GT(max_g, 1e-3);  // the gradient is not trivially zero
  EXPECT_LT(max_err, 1e-7 + 1e-6 * max_g) << "max |analytic - numeric| over the checked elements";
  // x itself stays off the tape.
  EXPECT_FALSE(x.requires_grad());
}

// Runs the first step (respaced index 1 of 2) of a guided sampler and returns x after it.
Tensor first_step(const SamplerConfig& cfg, const ClassifierGuidance& guidance, const Shape& shape) {
  const DiffusionSchedule base(linear_betas(40));
  Generator gen(21);
  Tensor after;
  sample(base, kTanhNet, shape, {}, cfg, gen, Device::cpu(),
         [&](const StepInfo& s) {
           if (s.index == 1) after = s.x.clone();
         },
         guidance);
  return after;
}

TEST(ClassifierGuidance, OneDdpmStepIsTheMeanShiftedBySigmaTimesScaledGradient) {
  auto cls = testing::tiny_encoder(testing::tiny_encoder_config(8, 3, 3), true);
  SamplerConfig cfg;
  cfg.dtype = DType::f64;
  cfg.respacing = "2";  // respaced DDPM: fixed-small variance, Sigma = beta~ of the step (nonzero at index 1)
  const Shape shape{3, 8, 8, 3};
  const std::vector<std::int64_t> y{0, 1, 2};
  const double s = 2.5;
  const ClassifierGuidance guidance{as_fn(*cls), s, y};
  const Tensor got = first_step(cfg, guidance, shape);

  // By hand: x_T, the network, x_0^ (clipped), mu~, Sigma = beta~ of the respaced step, then
  // mu~ + Sigma s g + sqrt(Sigma) z with the same two draws.
  const DiffusionSchedule base(linear_betas(40));
  const RespacedSchedule rs = sampling_process(base, "2");
  const DiffusionSchedule& S = rs.schedule;
  Generator gen(21);
  const Tensor xT = randn(shape, gen, Device::cpu(), DType::f64);
  const Timesteps ti(3, 1);
  const double t_orig = static_cast<double>(rs.timestep_map[1]);
  EXPECT_EQ(rs.timestep_map[1], 39);  // the classifier sees the ORIGINAL timestep
  const Tensor eps = kTanhNet(xT, {t_orig, t_orig, t_orig}, {});
  const Tensor x0 = clamp(predict_x0_from_eps(S, xT, ti, eps), -1.0, 1.0);
  const Tensor mu = q_posterior_mean_variance(S, x0, xT, ti).mean;
  const double sigma2 = S.posterior_variance[1];
  const Tensor g = classifier_log_prob_gradient(as_fn(*cls), xT, t_orig, y);
  const Tensor z = randn(shape, gen, Device::cpu(), DType::f64);
  const Tensor expected = add(add(mu, scale(g, s * sigma2)), scale(z, std::sqrt(sigma2)));
  EXPECT_TRUE(testing::all_close(got, expected, 1e-12, 1e-10));
  // And the shift is really there: the unguided step differs by Sigma s g.
  const Tensor plain = first_step(cfg, ClassifierGuidance{}, shape);
  EXPECT_TRUE(testing::all_close(sub(got, plain), scale(g, s * sigma2), 1e-12, 1e-10));
}

TEST(ClassifierGuidance, OneDdimStepUsesTheShiftedEps) {
  auto cls = testing::tiny_encoder(testing::tiny_encoder_config(8, 3, 3), true);
  SamplerConfig cfg;
  cfg.kind = SamplerConfig::Kind::ddim;
  cfg.dtype = DType::f64;
  cfg.respacing = "ddim2";
  const Shape shape{3, 8, 8, 3};
  const std::vector<std::int64_t> y{2, 2, 1};
  const double s = 4.0;
  const Tensor got = first_step(cfg, ClassifierGuidance{as_fn(*cls), s, y}, shape);

  const DiffusionSchedule base(linear_betas(40));
  const RespacedSchedule rs = sampling_process(base, "ddim2");
  const DiffusionSchedule& S = rs.schedule;
  Generator gen(21);
  const Tensor xT = randn(shape, gen, Device::cpu(), DType::f64);
  const Timesteps ti(3, 1);
  const double t_orig = static_cast<double>(rs.timestep_map[1]);
  const double abar = S.alphas_cumprod[1], abar_prev = S.alphas_cumprod_prev[1];
  const Tensor eps_net = kTanhNet(xT, {t_orig, t_orig, t_orig}, {});
  // The unguided order: x_0^ clipped, eps^ from it. Then ADM eq. 14 and the same order again.
  const Tensor eps_hat = predict_eps_from_x0(S, xT, ti, clamp(predict_x0_from_eps(S, xT, ti, eps_net), -1.0, 1.0));
  const Tensor g = classifier_log_prob_gradient(as_fn(*cls), xT, t_orig, y);
  const Tensor eps_guided = sub(eps_hat, scale(g, std::sqrt(1 - abar) * s));
  const Tensor x0 = clamp(predict_x0_from_eps(S, xT, ti, eps_guided), -1.0, 1.0);
  const Tensor eps2 = predict_eps_from_x0(S, xT, ti, x0);
  const Tensor expected = add(scale(x0, std::sqrt(abar_prev)), scale(eps2, std::sqrt(1 - abar_prev)));  // eta = 0
  EXPECT_TRUE(testing::all_close(got, expected, 1e-12, 1e-10));
}

TEST(ClassifierGuidance, ScaleZeroOrNoClassifierIsBitIdentical) {
  auto cls = testing::tiny_encoder(testing::tiny_encoder_config(8, 3, 3), true);
  int calls = 0;
  const ClassifierFn counted = [&](const Tensor& x, const std::vector<double>& t) {
    ++calls;
    return cls->forward(x, t, nn::Context{});
  };
  const DiffusionSchedule base(linear_betas(40));
  for (auto kind : {SamplerConfig::Kind::ddpm, SamplerConfig::Kind::ddim}) {
    SamplerConfig cfg;
    cfg.kind = kind;
    cfg.eta = kind == SamplerConfig::Kind::ddim ? 0.5 : 0.0;
    cfg.dtype = DType::f64;
    cfg.respacing = "5";
    Generator g1(3), g2(3);
    const Tensor plain = sample(base, kTanhNet, {2, 8, 8, 3}, {}, cfg, g1);
    const Tensor zero = sample(base, kTanhNet, {2, 8, 8, 3}, {}, cfg, g2, Device::cpu(), {},
                               ClassifierGuidance{counted, 0.0, {0, 1}});
    EXPECT_TRUE(testing::same_bits(plain, zero));
    EXPECT_EQ(g1.offset(), g2.offset());  // the same random numbers were drawn
  }
  EXPECT_EQ(calls, 0);
}

TEST(ClassifierGuidance, RefusesHeunAndDisabledGradients) {
  auto cls = testing::tiny_encoder(testing::tiny_encoder_config(8, 3, 3), true);
  const DiffusionSchedule base(linear_betas(40));
  SamplerConfig cfg;
  cfg.kind = SamplerConfig::Kind::heun;
  cfg.dtype = DType::f64;
  Generator gen(0);
  expect_value_error(
      [&] { sample(base, kTanhNet, {1, 8, 8, 3}, {}, cfg, gen, Device::cpu(), {}, {as_fn(*cls), 1.0, {0}}); },
      "not implemented for the Heun sampler (--sampler heun)");
  cfg.kind = SamplerConfig::Kind::ddpm;
  {
    // The caller turned gradients off: the guidance enables them for itself, and gives the
    // same samples as without the caller's guard.
    Generator g1(5), g2(5);
    const Tensor free = sample(base, kTanhNet, {1, 8, 8, 3}, {}, cfg, g1, Device::cpu(), {}, {as_fn(*cls), 1.0, {0}});
    NoGradGuard ng;
    const Tensor guarded =
        sample(base, kTanhNet, {1, 8, 8, 3}, {}, cfg, g2, Device::cpu(), {}, {as_fn(*cls), 1.0, {0}});
    EXPECT_EQ(free.to_double_vector(), guarded.to_double_vector());
    EXPECT_FALSE(grad_enabled()) << "the caller's guard must still be in force after sampling";
  }
  // No target classes for an unconditional model.
  expect_value_error([&] { guidance_labels(ClassifierGuidance{as_fn(*cls), 1.0, {}}, {}, 2); },
                     "one target class per sample");
}

// Train the noisy classifier briefly on the toy shapes, then sample with a fixed, untrained
// eps-network (eps = 0.5 tanh x) with and without guidance from the same seed: guidance must
// raise the classifier's log p(y | x_0) of the target class at t = 0.
//
// The target is the class the unguided samples look LEAST like (the lowest mean log p), found
// from the samples, not fixed. A class they already resemble has little room: the samples sit
// against the [-1, 1] clamp of x_0, which absorbs a push further that way. (A fixed target,
// class 1, passed on one machine and failed on another, where the classifier's training took a
// different path through rounding and class 1 was that saturated class: +0.002 at scale 100.)
TEST(ClassifierGuidance, EndToEndGuidanceRaisesTheTargetClassLogProbability) {
  const Dataset data = make_toy_shapes(256, 2, 16);  // 4 classes
  run::ClassifierTrainArgs a;
  a.steps = 120;
  a.batch_size = 16;
  a.lr = 2e-3;
  a.weight_decay = 0;
  a.model_channels = 8;
  a.channel_mult = "1,2";
  a.norm_groups = 4;
  Generator init(0);
  unet::NoisyClassifier cls(run::encoder_config_for(a, data), init, Device::cpu());
  const DiffusionSchedule base(cosine_betas(40));
  run::train_noisy_classifier(cls, data, base, a);

  // The premise: the classifier learned something (mean log p of the true class of clean
  // training images above chance, ln 1/4 = -1.386).
  {
    NoGradGuard ng;
    const std::int64_t m = 64;
    std::vector<float> px;
    for (std::int64_t i = 0; i < m; ++i)
      for (std::size_t k = 0; k < data.image_bytes(); ++k) px.push_back(data.image(i)[k] / 127.5f - 1.0f);
    const Tensor x = Tensor::from_vector(px, {m, 16, 16, 1});
    const std::vector<std::int64_t> labels(data.labels.begin(), data.labels.begin() + m);
    const double lp = sum(selected_log_probs(cls.forward(x, std::vector<double>(m, 0.0), nn::Context{}), labels)).item() / m;
    ASSERT_GT(lp, std::log(0.25) + 0.15) << "the classifier did not learn the toy shapes";
  }

  SamplerConfig cfg;
  const std::int64_t n = 8;
  const DenoiseFn net = [](const Tensor& x, const std::vector<double>&, const std::vector<std::int64_t>&) {
    return scale(tanh(x), 0.5);
  };
  auto mean_log_p = [&](const Tensor& x0, std::int64_t c) {
    NoGradGuard ng;
    const std::vector<std::int64_t> y(n, c);
    return sum(selected_log_probs(cls.forward(x0, std::vector<double>(n, 0.0), nn::Context{}), y)).item() / n;
  };
  Generator g1(9), g2(9);
  const Tensor plain = sample(base, net, {n, 16, 16, 1}, {}, cfg, g1);
  std::int64_t target = 0;
  for (std::int64_t c = 1; c < data.num_classes; ++c)
    if (mean_log_p(plain, c) < mean_log_p(plain, target)) target = c;
  const Tensor guided = sample(base, net, {n, 16, 16, 1}, {}, cfg, g2, Device::cpu(), {},
                               ClassifierGuidance{as_fn(cls), 100.0, std::vector<std::int64_t>(n, target)});
  EXPECT_GT(mean_log_p(guided, target), mean_log_p(plain, target) + 0.3)
      << "target class " << target << ": unguided " << mean_log_p(plain, target) << ", guided "
      << mean_log_p(guided, target);
}

// --- ddpm-sample --classifier / --classifier-scale ---------------------------------------------

std::pair<int, std::string> sample_cli(std::vector<std::string> args, const run::ModelSource* model) {
  run::SampleOptions o;
  CLI::App app("ddpm-sample", "ddpm-sample");
  run::add_sample_flags(app, o);
  args.insert(args.begin(), "ddpm-sample");
  std::vector<char*> argv;
  for (auto& s : args) argv.push_back(s.data());
  ::testing::internal::CaptureStderr();
  const int rc = cli::run(app, static_cast<int>(argv.size()), argv.data(), [&] {
    run::check_sample_options(o);
    if (model) run::run_sample(o, *model);
    return 0;
  });
  return {rc, ::testing::internal::GetCapturedStderr()};
}

TEST(ClassifierGuidanceCli, MismatchesAndHeunExitWithStatusTwo) {
  testing::TempDir tmp("cguide-cli");
  // A classifier for 16x16x1 toy images, T = 40: the tiny model makes 8x8x3 images.
  auto cls16 = testing::tiny_encoder(testing::tiny_encoder_config(16, 1, 4), false);
  const auto schedule = [](std::int64_t T, NoiseSchedule s) {
    run::DiffusionSettings d;
    d.diffusion_steps = T;
    d.noise_schedule = s;
    return d;
  };
  run::save_noisy_classifier(*cls16, schedule(40, NoiseSchedule::linear), {}, tmp.path + "/cls16", false);
  auto cls8 = testing::tiny_encoder(testing::tiny_encoder_config(8, 3, 4), false);
  run::save_noisy_classifier(*cls8, schedule(1000, NoiseSchedule::linear), {}, tmp.path + "/cls8_T1000", false);
  run::save_noisy_classifier(*cls8, schedule(40, NoiseSchedule::cosine), {}, tmp.path + "/cls8_cos", false);
  run::save_noisy_classifier(*cls8, schedule(40, NoiseSchedule::linear), {}, tmp.path + "/cls8", false);
  const run::ModelSource model = testing::tiny_model_source();  // T = 40, linear, 8x8x3
  const std::string out = tmp.path + "/out";
  auto r = sample_cli({"--checkpoint", "m", "--out", out, "--classifier", tmp.path + "/cls16"}, &model);
  EXPECT_EQ(r.first, 2);
  EXPECT_NE(r.second.find("takes 16x16 images; the model makes 8x8"), std::string::npos) << r.second;
  r = sample_cli({"--checkpoint", "m", "--out", out, "--classifier", tmp.path + "/cls8_T1000"}, &model);
  EXPECT_EQ(r.first, 2);
  EXPECT_NE(r.second.find("T = 1000 diffusion steps; the model has T = 40"), std::string::npos) << r.second;
  r = sample_cli({"--checkpoint", "m", "--out", out, "--classifier", tmp.path + "/cls8_cos"}, &model);
  EXPECT_EQ(r.first, 2);
  EXPECT_NE(r.second.find("cosine noise schedule; the model uses the linear"), std::string::npos) << r.second;
  r = sample_cli({"--checkpoint", "m", "--out", out, "--sampler", "heun", "--classifier-scale", "2"}, nullptr);
  EXPECT_EQ(r.first, 2);
  EXPECT_NE(r.second.find("not implemented for --sampler heun"), std::string::npos) << r.second;
  r = sample_cli({"--checkpoint", "m", "--out", out, "--classifier-scale", "2"}, nullptr);
  EXPECT_EQ(r.first, 2);
  EXPECT_NE(r.second.find("needs --classifier"), std::string::npos) << r.second;
  r = sample_cli({"--checkpoint", "m", "--out", out, "--classifier", "c", "--classifier-scale", "0"}, nullptr);
  EXPECT_EQ(r.first, 2);
  EXPECT_NE(r.second.find("must be positive"), std::string::npos) << r.second;
  // A matching classifier on the unconditional model: samples, with both recorded.
  r = sample_cli({"--checkpoint", "m", "--out", out, "--classifier", tmp.path + "/cls8", "--classifier-scale", "3",
                  "--class", "2", "--num-samples", "2", "--sampling-steps", "4"},
                 &model);
  ASSERT_EQ(r.first, 0) << r.second;
  std::ifstream f(out + "/sample_info.json");
  const nlohmann::json info = nlohmann::json::parse(f);
  EXPECT_EQ(info["classifier"], tmp.path + "/cls8");
  EXPECT_EQ(info["classifier_scale"], 3.0);
}

}  // namespace
}  // namespace ddpm::diffusion
