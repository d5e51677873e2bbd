// Class-conditional ddpm-toy (models/run/toy_run.h): a short training run with label
// dropout whose classifier-free guided samples (scale 3) land in the requested class far more
// often than unconditional samples do, and crowd closer to the class centre than plain
// conditional ones (the guidance trade-off); the conditioning's refusals; and the model folder
// with and without num_classes in config.json (older folders read as unconditional).
#include <filesystem>
#include <fstream>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "engine/error.h"
#include "engine/io/atomic_file.h"
#include "engine/rng.h"
#include "models/run/toy_run.h"
#include "models/toy/class_metrics.h"
#include "models/toy/datasets2d.h"
#include "tests/support/temp_dir.h"
#include "tests/support/tiny_toy.h"

namespace ddpm {
namespace {

using testing::use_ema;

run::ToyTrainArgs small_args(bool class_cond) {
  run::ToyTrainArgs a = testing::tiny_toy_args("gaussians8", 1000, 4);
  a.batch_size = 256;
  a.log_every = 500;
  a.class_cond = class_cond;
  a.class_dropout = 0.1;
  return a;
}

TEST(Toy2dGuidance, GuidedSamplesLandInTheirClassAndContract) {
  run::ToyTrainArgs a = small_args(true);
  run::ToyModel m = run::make_toy_model(a);
  ASSERT_EQ(m.num_classes, 8);
  const run::ToyTrainReport r = run::train_toy_model(m, a);
  use_ema(m, r.ema);

  const std::int64_t n = 400;
  const PointDataset ref = toy::make_toy2d("gaussians8", 4000, 77);
  const toy::LabelledPoints reference{ref.points, ref.labels, 8};
  std::vector<std::int64_t> requested(n);
  for (std::int64_t i = 0; i < n; ++i) requested[i] = i % 8;
  // The fraction landing in the requested class, and the mean spread over the classes.
  auto measure = [&](const run::ToyConditioning& cond, double& accuracy, double& spread) {
    Generator g(9);
    const std::vector<float> xs = run::sample_toy(m, "ddim", 20, n, g, {}, cond).to_vector();
    const std::vector<toy::ClassStats> per = toy::per_class_stats(xs, requested, reference);
    accuracy = spread = 0;
    for (const toy::ClassStats& c : per) accuracy += c.accuracy / 8, spread += c.spread / 8;
  };
  double acc_u, spread_u, acc_1, spread_1, acc_3, spread_3;
  measure({}, acc_u, spread_u);                 // unconditional: the null label
  measure({requested, 1.0}, acc_1, spread_1);   // conditional
  measure({requested, 3.0}, acc_3, spread_3);   // guided
  std::printf("[ toy2d ] class accuracy / spread after %lld steps: unconditional %.3f / %.2f, s=1 %.3f / %.2f, "
              "s=3 %.3f / %.2f\n",
              static_cast<long long>(a.steps), acc_u, spread_u, acc_1, spread_1, acc_3, spread_3);
  // Unconditional samples ignore the request: 1/8 in expectation (sd about 0.017 at n = 400).
  EXPECT_LT(acc_u, 0.25);
  EXPECT_GT(acc_3, 0.9);
  EXPECT_GE(acc_3, acc_1 - 0.02);
  // Guidance trades diversity for typicality: the guided samples sit closer to the class mean.
  EXPECT_LT(spread_3, spread_1);
}

TEST(Toy2dGuidance, RefusesConditioningAModelCannotTake) {
  run::ToyTrainArgs a = small_args(false);
  a.steps = 1;
  const run::ToyModel uncond = run::make_toy_model(a);
  Generator g(1);
  EXPECT_THROW(run::sample_toy(uncond, "ddim", 5, 4, g, {}, {{0, 1, 2, 3}, 1.0}), ValueError);
  EXPECT_THROW(run::sample_toy(uncond, "ddim", 5, 4, g, {}, {{}, 2.0}), ValueError);
  EXPECT_THROW(run::toy_class_labels(uncond, "0", 4), ValueError);
  const run::ToyModel cond = run::make_toy_model(small_args(true));
  EXPECT_THROW(run::sample_toy(cond, "ddim", 5, 4, g, {}, {{}, 2.0}), ValueError);          // no class
  EXPECT_THROW(run::sample_toy(cond, "ddim", 5, 4, g, {}, {{0, 1, 2, 3}, -1.0}), ValueError);  // scale < 0
  EXPECT_THROW(run::sample_toy(cond, "ddim", 5, 4, g, {}, {{0, 1}, 1.0}), ValueError);       // 2 labels, 4 samples
  EXPECT_THROW(run::toy_class_labels(cond, "8", 4), ValueError);
  EXPECT_THROW(run::toy_class_labels(cond, "-1", 4), ValueError);
  EXPECT_THROW(run::toy_class_labels(cond, "two", 4), ValueError);
  EXPECT_EQ(run::toy_class_labels(cond, "all", 10), (std::vector<std::int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 0, 1}));
  EXPECT_EQ(run::toy_class_labels(cond, "5", 3), (std::vector<std::int64_t>{5, 5, 5}));
  a.class_dropout = 1.0;
  EXPECT_THROW(run::check_toy_train_args(a), ValueError);
}

TEST(Toy2dGuidance, FolderKeepsTheClassesAndOldConfigsReadAsUnconditional) {
  testing::TempDir dir;
  for (const bool class_cond : {true, false}) {
    run::ToyTrainArgs a = small_args(class_cond);
    a.steps = 5;
    run::ToyModel m = run::make_toy_model(a);
    const run::ToyTrainReport r = run::train_toy_model(m, a);
    const std::string out = dir.path + (class_cond ? "/cond" : "/uncond");
    run::save_toy_model(m, r.ema, {{"steps", a.steps}}, {}, 0, 0, out, false);
    if (!class_cond) {  // an older folder: no num_classes at all
      nlohmann::json info = nlohmann::json::parse(read_file(out + "/config.json"));
      info["model"].erase("num_classes");
      write_file_atomic(out + "/config.json", info.dump(2));
    }
    const run::ToyModel back = run::load_toy_model(out, true);
    EXPECT_EQ(back.num_classes, class_cond ? 8 : 0);
    const run::ToyConditioning cond = class_cond ? run::ToyConditioning{{3, 3, 3}, 2.0} : run::ToyConditioning{};
    Generator g1(5), g2(5);
    EXPECT_EQ(run::sample_toy(m, "ddim", 10, 3, g1, {}, cond).to_vector(),
              run::sample_toy(back, "ddim", 10, 3, g2, {}, cond).to_vector());
  }
}

}  // namespace
}  // namespace ddpm
