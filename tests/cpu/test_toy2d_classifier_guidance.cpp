// Classifier guidance in ddpm-toy (models/toy/noisy_mlp_classifier.h, classifier_training.h,
// models/run/toy_run.h): the noisy classifier learns p(y | x_t, t) (sure on clean points, at
// chance on pure noise, where x_t carries no class), its gradient steers an UNCONDITIONAL
// model's samples into the requested class far more often than chance, its folder round
// trip gives the same guided samples, and the combinations the samplers cannot take are
// refused.
#include <cmath>
#include <vector>

#include <gtest/gtest.h>

#include "engine/error.h"
#include "engine/rng.h"
#include "models/run/toy_run.h"
#include "models/toy/class_metrics.h"
#include "models/toy/datasets2d.h"
#include "tests/support/temp_dir.h"
#include "tests/support/tiny_toy.h"

namespace ddpm {
namespace {

run::ToyTrainArgs model_args() {
  run::ToyTrainArgs a = testing::tiny_toy_args("moons", 800, 6);
  a.log_every = 800;
  return a;
}

TEST(Toy2dClassifierGuidance, ClassifierLearnsNoisyClassesAndSteersSamples) {
  run::ToyTrainArgs a = model_args();
  run::ToyModel m = run::make_toy_model(a);
  const run::ToyTrainReport r = run::train_toy_model(m, a);
  testing::use_ema(m, r.ema);

  run::ToyClassifier c = run::make_toy_classifier(m, 32, 2, 1);
  ParameterSlab slab;
  slab.pack(c.net->parameters());
  toy::NoisyClassifierTrainArgs ta;
  ta.steps = 600;
  ta.seed = 2;
  const toy::NoisyClassifierReport cr =
      toy::train_noisy_mlp_classifier(*c.net, slab, "moons", diffusion::DiffusionSchedule(m.betas), ta);
  EXPECT_LT(cr.log_losses.back(), std::log(2.0)) << "below the cross-entropy of a coin flip";
  const std::vector<double> acc =
      toy::noisy_accuracy(*c.net, "moons", diffusion::DiffusionSchedule(m.betas), {0, 99}, 2000, 3);
  EXPECT_GT(acc[0], 0.95);               // clean moons are separable
  EXPECT_NEAR(acc[1], 0.5, 0.06);        // abar_99 ~ 4e-5: x_t is noise, a coin flip

  // Unconditional samples land in either half; guided towards half 1 they land there.
  const std::int64_t n = 300;
  const PointDataset ref = toy::make_toy2d("moons", 4000, 8);
  const toy::LabelledPoints reference{ref.points, ref.labels, 2};
  const std::vector<std::int64_t> one(n, 1);
  auto accuracy = [&](double scale) {
    run::ToyConditioning cond;
    cond.labels = one;
    cond.classifier = &c;
    cond.classifier_scale = scale;
    Generator g(4);
    return toy::class_stats(run::sample_toy(m, "ddpm", 50, n, g, {}, cond).to_vector(), 1, reference).accuracy;
  };
  const double unguided = accuracy(0.0), guided = accuracy(4.0);
  std::printf("[ toy2d ] classifier guidance on moons: half 1 from %.3f (s=0) to %.3f (s=4)\n", unguided, guided);
  EXPECT_NEAR(unguided, 0.5, 0.15);
  EXPECT_GT(guided, 0.85);

  // The folder round trip: the same guided samples.
  testing::TempDir dir;
  run::save_toy_classifier(c, {{"steps", ta.steps}}, dir.path + "/cls", false);
  const run::ToyClassifier back = run::load_toy_classifier(dir.path + "/cls");
  const std::vector<std::int64_t> twenty(20, 1);
  run::ToyConditioning c1{twenty, 1.0, &c, 2.0}, c2{twenty, 1.0, &back, 2.0};
  Generator g1(5), g2(5);
  EXPECT_EQ(run::sample_toy(m, "ddim", 10, 20, g1, {}, c1).to_vector(),
            run::sample_toy(m, "ddim", 10, 20, g2, {}, c2).to_vector());
  EXPECT_THROW(run::load_toy_classifier(dir.path + "/missing"), IoError);
}

TEST(Toy2dClassifierGuidance, RefusesWhatTheSamplersCannotTake) {
  run::ToyTrainArgs a = model_args();
  const run::ToyModel m = run::make_toy_model(a);
  const run::ToyClassifier c = run::make_toy_classifier(m, 8, 1, 0);
  const std::vector<std::int64_t> labels(4, 0);
  Generator g(1);
  EXPECT_THROW(run::sample_toy(m, "heun", 5, 4, g, {}, {labels, 1.0, &c, 1.0}), ValueError);  // not a DDPM/DDIM step
  EXPECT_THROW(run::sample_toy(m, "plms", 5, 4, g, {}, {labels, 1.0, &c, 1.0}), ValueError);
  EXPECT_THROW(run::sample_toy(m, "ddim", 5, 4, g, {}, {{}, 1.0, &c, 1.0}), ValueError);      // no class
  EXPECT_THROW(run::sample_toy(m, "ddim", 5, 4, g, {}, {labels, 1.0, &c, -1.0}), ValueError);
  a.diffusion_steps = 200;  // a classifier of another diffusion
  const run::ToyModel other = run::make_toy_model(a);
  EXPECT_THROW(run::sample_toy(other, "ddim", 5, 4, g, {}, {labels, 1.0, &c, 1.0}), ValueError);
  // The labels of an unconditional model come from the classifier's classes.
  EXPECT_EQ(run::toy_class_labels(m, "all", 3, &c), (std::vector<std::int64_t>{0, 1, 0}));
  EXPECT_THROW(run::toy_class_labels(m, "2", 3, &c), ValueError);
}

}  // namespace
}  // namespace ddpm
