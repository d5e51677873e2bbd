// ddpm-toy end to end in the library (models/run/toy_run.h): a short training run on
// gaussians8 whose samples, drawn with a first- and a second-order sampler, score far better
// than N(0, I) noise and within a small factor of the data-vs-data floor of the energy distance; the model
// folder round trip gives bit-identical samples; the step levels the trajectory is labelled
// with match the schedule.
#include <cmath>
#include <vector>

#include <gtest/gtest.h>

#include "engine/error.h"
#include "engine/rng.h"
#include "models/diffusion/karras.h"
#include "models/run/toy_run.h"
#include "models/toy/datasets2d.h"
#include "models/toy/energy_distance.h"
#include "tests/support/temp_dir.h"
#include "tests/support/tiny_toy.h"

namespace ddpm {
namespace {

using testing::use_ema;

run::ToyTrainArgs small_args() {
  run::ToyTrainArgs a = testing::tiny_toy_args("gaussians8", 1500, 3);
  a.batch_size = 256;
  a.layers = 3;
  a.log_every = 100;
  return a;
}

TEST(Toy2dTraining, SamplesScoreNearTheDataFloorAndFarFromNoise) {
  run::ToyTrainArgs a = small_args();
  run::ToyModel m = run::make_toy_model(a);
  const run::ToyTrainReport r = run::train_toy_model(m, a);
  ASSERT_EQ(r.log_losses.size(), 15u);
  EXPECT_LT(r.log_losses.back(), r.log_losses.front()) << "the loss must fall";
  use_ema(m, r.ema);  // sample with the EMA weights

  const std::int64_t n = 2000;
  const std::vector<float> ref = toy::make_toy2d("gaussians8", n, 100).points;
  const double floor = toy::energy_distance(toy::make_toy2d("gaussians8", n, 101).points, ref);
  Generator ng(102);
  const double noise = toy::energy_distance(randn({n, 2}, ng).to_vector(), ref);
  for (const char* sampler : {"ddim", "dpm++2m"}) {
    Generator g(7);
    const std::vector<float> xs = run::sample_toy(m, sampler, 20, n, g).to_vector();
    const double score = toy::energy_distance(xs, ref);
    std::printf("[ toy2d ] %s, 20 steps after %lld training steps (%.1f s): energy %.5f, floor %.5f, noise %.5f\n",
                sampler, static_cast<long long>(a.steps), r.seconds, score, floor, noise);
    // Loose bounds for a 3-second model (it scores about 6x the floor; the default
    // ddpm-toy run, 4000 steps of a 128-wide MLP, about 2x). N(0, I) shares the data's mean
    // and covariance, so "noise" is the hardest baseline a moment match could reach.
    EXPECT_LT(score, noise / 5) << sampler;
    EXPECT_LT(score, 10 * floor) << sampler;
  }
}

TEST(Toy2dTraining, FolderRoundTripGivesTheSameSamples) {
  run::ToyTrainArgs a = small_args();
  a.steps = 20;
  run::ToyModel m = run::make_toy_model(a);
  const run::ToyTrainReport r = run::train_toy_model(m, a);
  testing::TempDir dir;
  const std::string out = dir.path + "/run";
  run::save_toy_model(m, r.ema, {{"steps", a.steps}}, {}, 0, 0, out, false);
  EXPECT_THROW(run::save_toy_model(m, r.ema, {}, {}, 0, 0, out, false), ValueError);  // exists
  for (const bool raw : {true, false}) {
    const run::ToyModel back = run::load_toy_model(out, raw);
    run::ToyModel& ref = m;
    if (!raw) use_ema(ref, r.ema);
    Generator g1(5), g2(5);
    EXPECT_EQ(run::sample_toy(ref, "ddim", 10, 50, g1).to_vector(), run::sample_toy(back, "ddim", 10, 50, g2).to_vector())
        << (raw ? "raw" : "EMA");
  }
  EXPECT_THROW(run::load_toy_model(dir.path + "/missing", false), IoError);
}

TEST(Toy2dTraining, StepLevelsFollowTheSchedule) {
  run::ToyTrainArgs a = small_args();
  const run::ToyModel m = run::make_toy_model(a);
  const diffusion::DiffusionSchedule s(m.betas);
  // DDPM over all T steps: after k steps the state is x at t = T - 1 - k.
  const run::ToyStepLevels all = run::toy_step_levels(m, "ddpm", 100);
  ASSERT_EQ(all.alpha_bar.size(), 100u);
  EXPECT_EQ(all.label[0], "t=98");
  EXPECT_DOUBLE_EQ(all.alpha_bar[9], s.alphas_cumprod[89]);
  EXPECT_EQ(all.label[99], "sample");
  // Karras levels: abar = 1 / (1 + sigma^2), rising to 1.
  const run::ToyStepLevels heun = run::toy_step_levels(m, "heun", 10);
  const std::vector<double> sig = diffusion::karras_sigmas(10, std::sqrt((1 - s.alphas_cumprod[0]) / s.alphas_cumprod[0]),
                                                           std::sqrt((1 - s.alphas_cumprod[99]) / s.alphas_cumprod[99]));
  for (int k = 1; k < 10; ++k) EXPECT_NEAR(heun.alpha_bar[k - 1], 1 / (1 + sig[k] * sig[k]), 1e-12) << k;
  EXPECT_THROW(run::toy_step_levels(m, "ddpm", 101), ValueError);
  EXPECT_THROW(run::toy_step_levels(m, "lms", 10), ValueError);
}

}  // namespace
}  // namespace ddpm
