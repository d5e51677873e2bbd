// tests/cpu/test_distill_step.cpp: the tail of a distillation step shared by progressive and
// consistency distillation (distill_state.h: apply_distill_step, close_loss_window):
//   - a finite loss moves the weights (AdamW), the EMA and the loss window, at the warmed-up lr;
//   - a non-finite loss, or a finite loss with a non-finite gradient, moves nothing and is
//     recorded as NaN (the run goes on; the published loss is that of the steps applied);
//   - the window closes at every log_every-th step and at the last, keeping the previous
//     final loss when every step of the window was skipped.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <vector>

#include "engine/ops/elementwise.h"
#include "engine/ops/reduce.h"
#include "engine/optim.h"
#include "engine/parameters.h"
#include "models/data/toy.h"
#include "models/run/distill_state.h"
#include "support/gradcheck.h"

namespace ddpm {
namespace {

using run::apply_distill_step;
using run::close_loss_window;
using run::DistillProgress;

LoaderOptions small_batches() {
  LoaderOptions o;
  o.batch_size = 2;
  return o;
}

struct StepFixture {
  StepFixture()
      : loader(std::make_shared<const Dataset>(make_toy_shapes(8, 1)), small_batches()),
        slab(NamedTensors{{"w", testing::random_tensor({5}, 3, DType::f64)}}),
        ema(slab, 0.5),
        opt(slab, AdamWConfig{}),
        progress{draws, dropout, loader, slab, ema, opt, final_loss, window_sum, window_n, losses} {}

  // Gradient of sum(w * g) with respect to w is g.
  double backward(double g_value) {
    slab.zero_grad();
    const Tensor w = slab.at("w");
    const Tensor g = Tensor::full({5}, g_value, DType::f64, Device::cpu());
    Tensor loss = sum(mul(w, g));
    loss.backward();
    return loss.item();
  }

  Generator draws{1}, dropout{2};
  BatchLoader loader;
  ParameterSlab slab;
  Ema ema;
  AdamW opt;
  double final_loss = NAN, window_sum = 0;
  std::int64_t window_n = 0;
  std::vector<double> losses;
  DistillProgress progress;
};

TEST(DistillStep, FiniteLossMovesWeightsEmaAndWindow) {
  StepFixture f;
  const std::vector<double> before = f.slab.values().to_double_vector();
  const double loss = f.backward(1.0);
  EXPECT_TRUE(apply_distill_step(f.progress, loss, /*grad_clip=*/0, /*lr=*/0.1, /*warmup_steps=*/0, /*step=*/0));
  EXPECT_NE(f.slab.values().to_double_vector(), before);
  EXPECT_EQ(f.opt.step_count(), 1);
  ASSERT_EQ(f.losses.size(), 1u);
  EXPECT_EQ(f.losses[0], loss);
  EXPECT_EQ(f.window_n, 1);
  EXPECT_EQ(f.window_sum, loss);
}

TEST(DistillStep, NonFiniteLossOrGradientMovesNothing) {
  StepFixture f;
  const std::vector<double> before = f.slab.values().to_double_vector();
  f.backward(1.0);
  EXPECT_FALSE(apply_distill_step(f.progress, NAN, 0, 0.1, 0, 0));  // the loss itself
  f.backward(INFINITY);  // an infinite gradient, given with a finite loss value
  EXPECT_FALSE(apply_distill_step(f.progress, 1.0, /*grad_clip=*/1.0, 0.1, 0, 1));
  EXPECT_EQ(f.slab.values().to_double_vector(), before);
  EXPECT_EQ(f.opt.step_count(), 0);
  ASSERT_EQ(f.losses.size(), 2u);
  EXPECT_TRUE(std::isnan(f.losses[0]) && std::isnan(f.losses[1]));
  EXPECT_EQ(f.window_n, 0);
}

TEST(DistillStep, WarmupScalesTheFirstStep) {
  StepFixture a, b;
  const std::vector<double> start = a.slab.values().to_double_vector();
  ASSERT_TRUE(apply_distill_step(a.progress, a.backward(1.0), 0, 0.1, /*warmup_steps=*/0, 0));
  ASSERT_TRUE(apply_distill_step(b.progress, b.backward(1.0), 0, 0.1, /*warmup_steps=*/10, 0));
  const std::vector<double> va = a.slab.values().to_double_vector(), vb = b.slab.values().to_double_vector();
  // AdamW's first step moves each weight by about lr (its normalised gradient is +-1): the
  // warmed-up step (lr / 10 at step 0) moves it about a tenth as far.
  EXPECT_NEAR(std::fabs(vb[0] - start[0]) / std::fabs(va[0] - start[0]), 0.1, 0.02);
}

TEST(DistillStep, WindowClosesAtLogStepsAndKeepsTheLastMeanWhenAllSkipped) {
  StepFixture f;
  f.window_sum = 3.0;
  f.window_n = 2;
  EXPECT_EQ(close_loss_window(f.progress, 3, 10, /*log_every=*/4), "");  // not a log step
  EXPECT_EQ(f.window_n, 2);
  EXPECT_EQ(close_loss_window(f.progress, 4, 10, 4), "  step 4/10 loss 1.5");
  EXPECT_EQ(f.final_loss, 1.5);
  EXPECT_EQ(f.window_n, 0);
  EXPECT_EQ(f.window_sum, 0);
  // Steps 5..10 all skipped: the last step closes the window, and the final loss stays.
  EXPECT_EQ(close_loss_window(f.progress, 10, 10, 4), "  step 10/10 loss (all steps skipped: non-finite)");
  EXPECT_EQ(f.final_loss, 1.5);
}

}  // namespace
}  // namespace ddpm
