// The loss front end: channel split of a learned-variance output, batch views, the
// prediction targets of eps / x_0 / v, and the simple, hybrid and vlb losses (values,
// the stop-gradient of the hybrid loss, and the error cases).
#include <cmath>
#include <vector>

#include <gtest/gtest.h>

#include "engine/error.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/reduce.h"
#include "models/diffusion/gaussian_diffusion.h"
#include "models/diffusion/likelihood.h"
#include "support/gradcheck.h"

namespace ddpm::diffusion {
namespace {

using testing::random_tensor;

TEST(GaussianDiffusion, ParsesNames) {
  EXPECT_EQ(parse_model_mean_type("v"), ModelMeanType::v);
  EXPECT_STREQ(model_mean_type_name(ModelMeanType::x0), "x0");
  EXPECT_EQ(parse_loss_type("hybrid"), LossType::hybrid);
  EXPECT_STREQ(loss_type_name(LossType::vlb), "vlb");
  EXPECT_THROW(parse_model_mean_type("score"), ValueError);
  EXPECT_THROW(parse_loss_type("l1"), ValueError);
}

TEST(GaussianDiffusion, SplitsTheLastAxisWithGradient) {
  Tensor x = random_tensor({2, 3, 3, 4}, 1);  // NHWC, 2C = 4
  auto [mean, var] = split_learned_variance(x);
  ASSERT_EQ(mean.shape(), (Shape{2, 3, 3, 2}));
  std::vector<double> xv = x.to_double_vector(), mv = mean.to_double_vector(), vv = var.to_double_vector();
  for (std::size_t p = 0; p < 18; ++p)
    for (std::size_t c = 0; c < 2; ++c) {
      EXPECT_EQ(mv[p * 2 + c], xv[p * 4 + c]);
      EXPECT_EQ(vv[p * 2 + c], xv[p * 4 + 2 + c]);
    }
  x.set_requires_grad(true);
  EXPECT_TRUE(testing::gradcheck([](const std::vector<Tensor>& in) { return slice_channels(in[0], 1, 2); }, {x}));
  EXPECT_THROW(slice_channels(x, 3, 2), ValueError);
  EXPECT_THROW(split_learned_variance(random_tensor({2, 3}, 2)), ValueError);
}

TEST(GaussianDiffusion, BatchRowsViewAndConcat) {
  Tensor x = Tensor::from_vector(std::vector<double>{0, 1, 2, 3, 4, 5, 6, 7}, {4, 2});
  Tensor mid = batch_rows(x, 1, 2);
  EXPECT_EQ(mid.shape(), (Shape{2, 2}));
  EXPECT_EQ(mid.to_double_vector(), (std::vector<double>{2, 3, 4, 5}));
  Tensor both = concat_rows(mid, batch_rows(x, 0, 1));
  EXPECT_EQ(both.to_double_vector(), (std::vector<double>{2, 3, 4, 5, 0, 1}));
  EXPECT_THROW(batch_rows(x, 3, 2), ValueError);
  EXPECT_THROW(concat_rows(x, random_tensor({1, 3}, 3)), ValueError);
}

struct Case {
  DiffusionSchedule s{cosine_betas(50)};
  Timesteps t{0, 7, 25, 49};
  Tensor x0 = clamp(random_tensor({4, 2, 2, 3}, 10, DType::f64, 0.5), -1.0, 1.0);
  Tensor noise = random_tensor({4, 2, 2, 3}, 11);
  Tensor xt = q_sample(s, x0, t, noise);
};

TEST(GaussianDiffusion, SimpleLossTargetsEveryMeanType) {
  Case c;
  Tensor out = random_tensor({4, 2, 2, 3}, 12);
  for (ModelMeanType type : {ModelMeanType::eps, ModelMeanType::x0, ModelMeanType::v}) {
    LossConfig cfg;
    cfg.mean_type = type;
    Tensor target = mean_type_target(c.s, type, c.x0, c.noise, c.t);
    std::vector<double> want = mean_flat(square(sub(out, target))).to_double_vector();
    std::vector<double> got = training_losses(c.s, cfg, out, c.x0, c.xt, c.t, c.noise).loss.to_double_vector();
    for (std::size_t i = 0; i < 4; ++i) EXPECT_NEAR(got[i], want[i], 1e-12) << model_mean_type_name(type);
    // The perfect prediction converts back to the true eps and x_0.
    Tensor eps = eps_from_prediction(c.s, type, target, c.xt, c.t);
    Tensor x0 = x0_from_prediction(c.s, type, target, c.xt, c.t);
    EXPECT_TRUE(testing::all_close(eps, c.noise, 1e-9, 1e-9)) << model_mean_type_name(type);
    EXPECT_TRUE(testing::all_close(x0, c.x0, 1e-9, 1e-9)) << model_mean_type_name(type);
  }
}

TEST(GaussianDiffusion, HybridLossMatchesTheLikelihoodModuleAndStopsTheMeanGradient) {
  Case c;
  Tensor out = random_tensor({4, 2, 2, 6}, 13, DType::f64, 0.5);
  LossConfig cfg;
  cfg.loss = LossType::hybrid;
  cfg.learned_sigma = true;
  LossTerms terms = training_losses(c.s, cfg, out, c.x0, c.xt, c.t, c.noise);
  auto [eps, v] = split_learned_variance(out);
  Tensor ref = hybrid_loss(c.s, eps, v, c.x0, c.xt, c.t, c.noise);
  EXPECT_TRUE(testing::all_close(terms.loss, ref, 1e-12, 1e-12));

  // d hybrid / d eps-part == d simple / d eps-part: the bound trains only the variance.
  Tensor o1 = out.clone().set_requires_grad(true);
  sum(training_losses(c.s, cfg, o1, c.x0, c.xt, c.t, c.noise).loss).backward();
  Tensor o2 = out.clone().set_requires_grad(true);
  LossConfig simple = cfg;
  simple.loss = LossType::simple;
  sum(training_losses(c.s, simple, o2, c.x0, c.xt, c.t, c.noise).loss).backward();
  EXPECT_TRUE(testing::all_close(slice_channels(o1.grad(), 0, 3), slice_channels(o2.grad(), 0, 3), 1e-12, 1e-12));
  std::vector<double> gv = slice_channels(o1.grad(), 3, 3).to_double_vector();
  double norm = 0;
  for (double g : gv) norm += g * g;
  EXPECT_GT(norm, 0.0);  // the variance part learns from the bound
  std::vector<double> gs = slice_channels(o2.grad(), 3, 3).to_double_vector();
  for (double g : gs) EXPECT_EQ(g, 0.0);  // and from nothing else
}

TEST(GaussianDiffusion, VlbLossIsTTimesTheTermAndTrainsTheMeanToo) {
  Case c;
  Tensor out = random_tensor({4, 2, 2, 3}, 14).set_requires_grad(true);
  LossConfig cfg;
  cfg.loss = LossType::vlb;
  LossTerms terms = training_losses(c.s, cfg, out, c.x0, c.xt, c.t, c.noise);
  Gaussian p = p_mean_variance(c.s, VarianceType::fixed_small, out.detach(), Tensor(), c.xt, c.t, false);
  Tensor ref = scale(vb_terms_bpd(c.s, p.mean, p.log_variance, c.x0, c.xt, c.t), 50.0);
  EXPECT_TRUE(testing::all_close(terms.loss, ref, 1e-10, 1e-10));
  EXPECT_FALSE(terms.mse.defined());
  sum(terms.loss).backward();
  double gnorm = 0;
  for (double g : out.grad().to_double_vector()) gnorm += g * g;
  EXPECT_GT(gnorm, 0.0);  // no stop-gradient: the bound trains the mean
  // Gradient in f64 by finite differences (learned variance, x0-prediction).
  Tensor lo = random_tensor({4, 2, 2, 6}, 15, DType::f64, 0.3).set_requires_grad(true);
  LossConfig lv = cfg;
  lv.learned_sigma = true;
  lv.mean_type = ModelMeanType::x0;
  Case cc;
  EXPECT_TRUE(testing::gradcheck(
      [&](const std::vector<Tensor>& in) { return training_losses(cc.s, lv, in[0], cc.x0, cc.xt, cc.t, cc.noise).loss; },
      {lo}, 1e-6, 1e-6, 1e-4));
}

TEST(GaussianDiffusion, RejectsMismatchedOutputs) {
  Case c;
  LossConfig cfg;
  EXPECT_THROW(training_losses(c.s, cfg, random_tensor({4, 2, 2, 6}, 1), c.x0, c.xt, c.t, c.noise), ValueError);
  cfg.learned_sigma = true;
  EXPECT_THROW(training_losses(c.s, cfg, random_tensor({4, 2, 2, 3}, 1), c.x0, c.xt, c.t, c.noise), ValueError);
  cfg.learned_sigma = false;
  cfg.loss = LossType::hybrid;
  EXPECT_THROW(training_losses(c.s, cfg, random_tensor({4, 2, 2, 3}, 1), c.x0, c.xt, c.t, c.noise), ValueError);
}

}  // namespace
}  // namespace ddpm::diffusion
