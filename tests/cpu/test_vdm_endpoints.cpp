// VDM's learned endpoints and Fourier features (models/diffusion/vdm.h "Learned endpoints",
// models/unet/fourier_features.h): finite-difference checks in double of the endpoints'
// gradient of the whole bound (prior + diffusion + reconstruction, with the variance scale
// on), the bound at init equal to the fixed-endpoint one, trainer steps moving the endpoints,
// the features against hand-computed values and their gradient, the UNet's wider conv_in and
// the features reaching it, and the config keys (round trips, older files, refusals).
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/io/safetensors.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/reduce.h"
#include "engine/parameters.h"
#include "models/diffusion/vdm.h"
#include "models/run/vdm_options.h"
#include "models/toy/mlp_denoiser.h"
#include "models/train/trainer.h"
#include "models/unet/fourier_features.h"
#include "models/unet/model_io.h"
#include "support/gradcheck.h"
#include "support/tiny_unet.h"

namespace ddpm {
namespace {

using diffusion::GammaCurve;
using diffusion::VdmConfig;
using diffusion::VdmSchedule;

VdmConfig learned_config(std::int64_t steps, bool endpoints) {
  VdmConfig c;
  c.schedule = diffusion::VdmScheduleKind::learned;
  c.features = 4;
  c.steps = steps;
  c.gamma_min = -6.0;  // exp(gamma_0 / 2) = 0.05: the decoder spreads over several bins
  c.gamma_max = 4.0;
  c.learn_endpoints = endpoints;
  return c;
}

// x on the 8-bit grid (k / 127.5 - 1), [3, 2].
Tensor pixels() {
  const std::vector<double> k = {3, 250, 128, 17, 90, 201};
  std::vector<double> v;
  for (double ki : k) v.push_back(ki / 127.5 - 1.0);
  return Tensor::from_vector(v, {3, 2}, DType::f64);
}

// A fixed nonlinear "network" of z (the time input is a stop-gradient, vdm.h).
const diffusion::DenoiseFn kNet = [](const Tensor& z, const std::vector<double>&, const std::vector<std::int64_t>&) {
  return tanh(scale(z, 0.3));
};

// The whole bound sum_i (diffusion + prior + reconstruction) of the schedule's net weights
// with endpoints g0, g1, on the host curve (the finite differences' objective).
double bound(const VdmConfig& c, const VdmSchedule& s, double g0, double g1, const Tensor& x,
             const std::vector<double>& t, const Tensor& eps, const Tensor& eps0) {
  const std::vector<Tensor> w = s.weights();
  const GammaCurve g(c, w[0].to_double_vector()[0], w[1].to_double_vector(), w[2].to_double_vector(),
                     w[3].to_double_vector(), g0, g1);
  const std::vector<double> d = diffusion::vdm_diffusion_nats(kNet, g, x, t, eps, {}).to_double_vector();
  const std::vector<double> p = diffusion::vdm_prior_nats(g, x), r = diffusion::vdm_reconstruction_nats(g, x, eps0);
  double acc = 0.0;
  for (std::size_t i = 0; i < d.size(); ++i) acc += d[i] + p[i] + r[i];
  return acc;
}

TEST(VdmEndpoints, GradientIsThePlainGradientOfTheBound) {
  for (std::int64_t steps : {std::int64_t{0}, std::int64_t{10}}) {
    const VdmConfig c = learned_config(steps, true);
    Generator gen(7, 0);
    const VdmSchedule s(c, gen, Device::cpu(), DType::f64);
    const Tensor x = pixels(), eps = testing::random_tensor({3, 2}, 60), eps0 = testing::random_tensor({3, 2}, 61);
    const std::vector<double> t = {0.15, 0.5, 0.85};
    // The variance scale stays on: it must not reach the endpoints.
    sum(add(diffusion::vdm_diffusion_loss(kNet, s, x, t, eps, {}, 1.0).nats,
            diffusion::vdm_prior_reconstruction_nats(s, x, eps0)))
        .backward();
    const std::vector<Tensor> ends = s.endpoints();
    ASSERT_EQ(ends.size(), 2u);
    const double h = 1e-5, g0 = c.gamma_min, g1 = c.gamma_max;
    const double fd0 = (bound(c, s, g0 + h, g1, x, t, eps, eps0) - bound(c, s, g0 - h, g1, x, t, eps, eps0)) / (2 * h);
    const double fd1 = (bound(c, s, g0, g1 + h, x, t, eps, eps0) - bound(c, s, g0, g1 - h, x, t, eps, eps0)) / (2 * h);
    const double a0 = ends[0].grad().to_double_vector()[0], a1 = ends[1].grad().to_double_vector()[0];
    EXPECT_NEAR(a0, fd0, 1e-6 + 1e-6 * std::abs(fd0)) << "gamma_0, T = " << steps;
    EXPECT_NEAR(a1, fd1, 1e-6 + 1e-6 * std::abs(fd1)) << "gamma_1, T = " << steps;
    // The reconstruction and prior terms alone, against their own finite differences.
    const GammaCurve at0 = s.curve();
    const std::vector<double> dr = diffusion::vdm_reconstruction_dgamma0(at0, x, eps0);
    const std::vector<double> dp = diffusion::vdm_prior_dgamma1(at0, x);
    const std::vector<Tensor> w = s.weights();
    auto curve = [&](double e0, double e1) {
      return GammaCurve(c, w[0].to_double_vector()[0], w[1].to_double_vector(), w[2].to_double_vector(),
                        w[3].to_double_vector(), e0, e1);
    };
    const std::vector<double> rp = diffusion::vdm_reconstruction_nats(curve(g0 + h, g1), x, eps0),
                              rm = diffusion::vdm_reconstruction_nats(curve(g0 - h, g1), x, eps0),
                              pp = diffusion::vdm_prior_nats(curve(g0, g1 + h), x),
                              pm = diffusion::vdm_prior_nats(curve(g0, g1 - h), x);
    for (std::size_t i = 0; i < 3; ++i) {
      EXPECT_NEAR(dr[i], (rp[i] - rm[i]) / (2 * h), 1e-6 + 1e-6 * std::abs(dr[i])) << "reconstruction " << i;
      EXPECT_NEAR(dp[i], (pp[i] - pm[i]) / (2 * h), 1e-7) << "prior " << i;
    }
  }
}

TEST(VdmEndpoints, AtInitTheBoundAndTheNetGradientEqualTheFixedEndpointOnes) {
  for (std::int64_t steps : {std::int64_t{0}, std::int64_t{10}}) {
    Generator ga(8, 0), gb(8, 0);
    const VdmSchedule learned(learned_config(steps, true), ga, Device::cpu(), DType::f64);
    const VdmSchedule fixed(learned_config(steps, false), gb, Device::cpu(), DType::f64);
    ASSERT_EQ(learned.endpoints().size(), 2u);
    EXPECT_TRUE(fixed.endpoints().empty());
    EXPECT_EQ(learned.endpoints()[0].to_double_vector()[0], -6.0);
    EXPECT_EQ(learned.endpoints()[1].to_double_vector()[0], 4.0);
    const Tensor x = pixels(), eps = testing::random_tensor({3, 2}, 70), eps0 = testing::random_tensor({3, 2}, 71);
    const std::vector<double> t = {0.1, 0.45, 0.95};
    const Tensor la = add(diffusion::vdm_diffusion_loss(kNet, learned, x, t, eps, {}).nats,
                          diffusion::vdm_prior_reconstruction_nats(learned, x, eps0));
    const Tensor lb = add(diffusion::vdm_diffusion_loss(kNet, fixed, x, t, eps, {}).nats,
                          diffusion::vdm_prior_reconstruction_nats(fixed, x, eps0));
    EXPECT_EQ(la.to_double_vector(), lb.to_double_vector()) << "T = " << steps;
    sum(la).backward();
    sum(lb).backward();
    // The net's weights: the same draws and the same variance-minimising gradient.
    for (std::size_t k = 0; k < 4; ++k) {
      EXPECT_EQ(learned.weights()[k].to_double_vector(), fixed.weights()[k].to_double_vector());
      const std::vector<double> a = learned.weights()[k].grad().to_double_vector(),
                                b = fixed.weights()[k].grad().to_double_vector();
      for (std::size_t j = 0; j < a.size(); ++j) EXPECT_NEAR(a[j], b[j], 1e-12 * (1 + std::abs(b[j])));
    }
  }
}

// A toy rig as test_vdm_train.cpp's: an MLP denoiser and a learned schedule with learned
// endpoints in one slab.
train::Batch clusters(std::int64_t, Generator& gen) {
  std::vector<double> v = randn({12, 2}, gen, Device::cpu(), DType::f64).to_double_vector();
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = ((i / 2) % 2 ? -0.5 : 0.5) + 0.05 * v[i];
  return {Tensor::from_vector(v, {12, 2}, DType::f64), {}};
}

TEST(VdmEndpoints, TrainerStepsMoveTheEndpointsAndKeepThemOrdered) {
  toy::MlpDenoiserConfig mc;
  mc.hidden = 16;
  mc.layers = 2;
  mc.time_dim = 8;
  mc.dtype = DType::f64;
  Generator g(1);
  toy::MlpDenoiser model(mc, g);
  VdmConfig v = learned_config(0, true);
  VdmSchedule gamma(v, g, Device::cpu(), DType::f64);
  NamedTensors all = model.parameters();
  for (const auto& [name, t] : gamma.named_parameters()) all.emplace_back("vdm_gamma." + name, t);
  ParameterSlab slab;
  slab.pack(all);
  train::TrainerConfig tc;
  tc.objective = train::Objective::vdm;
  tc.vdm_schedule = &gamma;
  tc.adamw.lr = 1e-2;
  tc.seed = 5;
  const diffusion::DiffusionSchedule unused{diffusion::cosine_betas(40)};
  train::Trainer tr(slab, model.fn(), unused, clusters, tc);
  for (int k = 0; k < 4; ++k) tr.step();
  const GammaCurve now = gamma.curve();
  EXPECT_NE(now.gamma_0(), v.gamma_min);
  EXPECT_NE(now.gamma_1(), v.gamma_max);
  EXPECT_LT(now.gamma_0(), now.gamma_1());
  // gamma(0) and gamma(1) are the endpoints, whatever the net.
  EXPECT_NEAR(now.gamma(0.0), now.gamma_0(), 1e-12);
  EXPECT_NEAR(now.gamma(1.0), now.gamma_1(), 1e-12);
}

TEST(VdmEndpoints, WeightsFileCarriesTheEndpointsToTheReader) {
  VdmConfig c = learned_config(0, true);
  Generator g(9, 0);
  VdmSchedule s(c, g, Device::cpu(), DType::f32);
  s.endpoints()[0].copy_from(Tensor::full({1}, -7.25, DType::f32));
  s.endpoints()[1].copy_from(Tensor::full({1}, 3.5, DType::f32));
  std::vector<std::pair<std::string, Tensor>> named;
  for (const auto& [name, t] : s.named_parameters()) named.emplace_back("vdm_gamma." + name, t);
  const std::string path = (std::filesystem::temp_directory_path() / "vdm_endpoints_test.safetensors").string();
  save_safetensors(path, named);
  const auto curve = run::read_vdm_curve(c, path);
  EXPECT_EQ(curve->gamma_0(), -7.25);
  EXPECT_EQ(curve->gamma_1(), 3.5);
  EXPECT_DOUBLE_EQ(curve->gamma(0.0), -7.25);
  // A config without learned endpoints reads the flags' endpoints from the same file.
  c.learn_endpoints = false;
  EXPECT_EQ(run::read_vdm_curve(c, path)->gamma_0(), c.gamma_min);
  std::filesystem::remove(path);
}

TEST(VdmEndpoints, ConfigSectionRoundTripsAndOlderSectionsHaveFixedEndpoints) {
  const VdmConfig c = learned_config(10, true);
  const nlohmann::json j = run::vdm_section_json(c);
  EXPECT_EQ(j.at("vdm_learn_endpoints"), true);
  const VdmConfig back = run::vdm_config_from_json(j);
  EXPECT_TRUE(back.learn_endpoints);
  EXPECT_EQ(back.features, 4);
  // Without learned endpoints the key is absent (a section as written before them).
  nlohmann::json old = run::vdm_section_json(learned_config(10, false));
  EXPECT_FALSE(old.contains("vdm_learn_endpoints"));
  EXPECT_FALSE(run::vdm_config_from_json(old).learn_endpoints);
  // Learned endpoints of the fixed schedule are refused.
  nlohmann::json bad = j;
  bad["vdm_schedule"] = "fixed";
  EXPECT_THROW(run::vdm_config_from_json(bad), ValueError);
}

// --- Fourier features ------------------------------------------------------------------------

TEST(VdmFourierFeatures, ValuesMatchHandComputedOnes) {
  // x = 0.1 and -0.25, n = 6, 7: angles 2 pi 64 x and 2 pi 128 x.
  //   0.1:   12.8 pi -> sin(0.8 pi) =  0.587785, cos = -0.809017; 25.6 pi -> sin(1.6 pi) = -0.951057, cos = 0.309017
  //   -0.25: -32 pi and -64 pi -> sin 0, cos 1
  const Tensor x = Tensor::from_vector(std::vector<double>{0.1, -0.25}, {1, 1, 1, 2}, DType::f64);
  const std::vector<double> f = unet::base2_fourier_features(x, 6, 7).to_double_vector();
  const std::vector<double> expected = {0.587785252, -0.951056516, 0.0, 0.0,   // sines: c0 n6, c0 n7, c1 n6, c1 n7
                                        -0.809016994, 0.309016994, 1.0, 1.0};  // cosines, same order
  ASSERT_EQ(f.size(), expected.size());
  for (std::size_t i = 0; i < f.size(); ++i) EXPECT_NEAR(f[i], expected[i], 1e-8) << "channel " << i;
  EXPECT_EQ(unet::fourier_feature_channels(3, 6, 7), 12);
  EXPECT_THROW(unet::base2_fourier_features(x, 7, 6), ValueError);
}

TEST(VdmFourierFeatures, GradientMatchesFiniteDifferences) {
  auto f = [](const std::vector<Tensor>& in) { return unet::base2_fourier_features(in[0], -1, 1); };
  EXPECT_TRUE(testing::gradcheck(f, {testing::param(testing::random_tensor({2, 2, 3}, 80))}));
}

TEST(VdmFourierFeatures, UNetWidensConvInAndFeedsTheFeaturesThere) {
  unet::UNetConfig plain = testing::tiny_unet_config(8, 2);
  unet::UNetConfig wide = plain;
  wide.fourier_features = {6, 7};
  EXPECT_EQ(wide.conv_in_channels(), 2 + 2 * 2 * 2);
  EXPECT_EQ(plain.conv_in_channels(), 2);
  Generator ga(11), gb(11);
  unet::UNet a(wide, ga, Device::cpu()), b(plain, gb, Device::cpu());
  // conv_in weight [Cout, 3, 3, Cin]: the wide one takes the 8 feature channels after x_t.
  Tensor wa, wb;
  for (const auto& [name, t] : a.named_parameters())
    if (name == "conv_in.weight") wa = t;
  for (const auto& [name, t] : b.named_parameters())
    if (name == "conv_in.weight") wb = t;
  ASSERT_TRUE(wa.defined() && wb.defined());
  EXPECT_EQ(wa.shape(), (Shape{8, 3, 3, 10}));
  EXPECT_EQ(wb.shape(), (Shape{8, 3, 3, 2}));
  // Give b random weights everywhere (conv_out too, so the output is not zero), copy them into
  // a with its feature columns ZERO: then a equals b; with random feature columns it does not.
  NamedTensors pb = b.named_parameters(), pa = a.named_parameters();
  ASSERT_EQ(pa.size(), pb.size());
  for (std::size_t k = 0; k < pb.size(); ++k) {
    Tensor r = testing::random_tensor(pb[k].second.shape(), 100 + k, DType::f32, 0.3);
    pb[k].second.copy_from(r);
    if (pb[k].first != "conv_in.weight") pa[k].second.copy_from(r);
  }
  const std::vector<double> small = wb.to_double_vector();
  std::vector<double> big(static_cast<std::size_t>(wa.numel()), 0.0);
  for (std::int64_t o = 0; o < 8 * 9; ++o)
    for (std::int64_t i = 0; i < 2; ++i) big[static_cast<std::size_t>(o * 10 + i)] = small[static_cast<std::size_t>(o * 2 + i)];
  wa.copy_from(Tensor::from_vector(big, wa.shape(), DType::f32));
  const Tensor x = testing::random_tensor({2, 8, 8, 2}, 90, DType::f32);
  NoGradGuard ng;
  const std::vector<double> ya = a.forward(x, {10.0, 500.0}, {}, nn::Context{}).to_double_vector();
  const std::vector<double> yb = b.forward(x, {10.0, 500.0}, {}, nn::Context{}).to_double_vector();
  ASSERT_EQ(ya.size(), yb.size());
  double diff = 0.0;
  for (std::size_t i = 0; i < ya.size(); ++i) diff = std::max(diff, std::abs(ya[i] - yb[i]));
  EXPECT_LT(diff, 1e-4);
  for (std::int64_t o = 0; o < 8 * 9; ++o) big[static_cast<std::size_t>(o * 10 + 5)] = 0.5;  // one feature column
  wa.copy_from(Tensor::from_vector(big, wa.shape(), DType::f32));
  const std::vector<double> yc = a.forward(x, {10.0, 500.0}, {}, nn::Context{}).to_double_vector();
  double moved = 0.0;
  for (std::size_t i = 0; i < yc.size(); ++i) moved = std::max(moved, std::abs(yc[i] - yb[i]));
  EXPECT_GT(moved, 1e-3);
}

TEST(VdmFourierFeatures, ConfigKeyRoundTripsOlderFilesLoadAndBadValuesAreRefused) {
  unet::UNetConfig c = testing::tiny_unet_config(8, 1);
  c.fourier_features = {6, 7};
  const nlohmann::json j = unet::config_to_json(c);
  EXPECT_EQ(j.at("fourier_features"), nlohmann::json({6, 7}));
  EXPECT_EQ(unet::config_from_json(j).fourier_features, (std::vector<int>{6, 7}));
  // A file written before the key (or without features) has none.
  const nlohmann::json old = unet::config_to_json(testing::tiny_unet_config(8, 1));
  EXPECT_FALSE(old.contains("fourier_features"));
  EXPECT_TRUE(unet::config_from_json(old).fourier_features.empty());
  nlohmann::json bad = j;
  bad["fourier_features"] = {7};
  EXPECT_THROW(unet::config_from_json(bad), IoError);
  bad["fourier_features"] = {7, 6};
  EXPECT_THROW(unet::config_from_json(bad), ValueError);
}

}  // namespace
}  // namespace ddpm
