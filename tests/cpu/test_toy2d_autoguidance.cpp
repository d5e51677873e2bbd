// ddpm-toy's autoguidance and guidance interval (models/run/toy_run.h, guidance.h): a model
// and a weaker guide (the same toy trained for fewer steps) give, at w = 1, the model's
// samples and, at w = 0, the guide's, bit for bit, with and without classes; an empty
// guidance interval gives conditional samples, one covering every level the guided ones; the
// guide must be of the same dataset, diffusion and classes; and the sample subcommand writes
// what it says.
#include <filesystem>
#include <limits>
#include <sstream>
#include <vector>

#include <gtest/gtest.h>

#include "engine/error.h"
#include "engine/rng.h"
#include "models/run/toy_run.h"
#include "tests/support/temp_dir.h"
#include "tests/support/tiny_toy.h"

namespace ddpm {
namespace {

run::ToyModel trained(const std::string& data, std::int64_t steps, bool class_cond) {
  run::ToyTrainArgs a = testing::tiny_toy_args(data, steps, 4);
  a.batch_size = 64;
  a.log_every = steps;
  a.class_cond = class_cond;
  run::ToyModel m = run::make_toy_model(a);
  const run::ToyTrainReport r = run::train_toy_model(m, a);
  testing::use_ema(m, r.ema);
  return m;
}

std::vector<float> draw(const run::ToyModel& m, const std::string& sampler, const run::ToyConditioning& cond) {
  Generator g(12);
  return run::sample_toy(m, sampler, 10, 6, g, {}, cond).to_vector();
}

TEST(Toy2dAutoguidance, ScaleOneIsTheModelAndScaleZeroTheGuide) {
  for (const bool class_cond : {false, true}) {
    const run::ToyModel model = trained("gaussians8", 60, class_cond), guide = trained("gaussians8", 10, class_cond);
    const std::vector<std::int64_t> labels = class_cond ? std::vector<std::int64_t>{0, 1, 2, 3, 4, 5}
                                                        : std::vector<std::int64_t>{};
    for (const std::string sampler : {"ddpm", "ddim", "heun", "dpm++2m"}) {
      run::ToyConditioning cond;
      cond.labels = labels;
      const std::vector<float> of_model = draw(model, sampler, cond), of_guide = draw(guide, sampler, cond);
      ASSERT_NE(of_model, of_guide);
      cond.autoguide = &guide;
      cond.guidance_scale = 1.0;
      EXPECT_EQ(draw(model, sampler, cond), of_model) << sampler;
      cond.guidance_scale = 0.0;
      EXPECT_EQ(draw(model, sampler, cond), of_guide) << sampler;
      cond.guidance_scale = 2.0;
      EXPECT_NE(draw(model, sampler, cond), of_model) << sampler;
    }
  }
}

TEST(Toy2dAutoguidance, GuidanceIntervalEndsOnTheToy) {
  const run::ToyModel model = trained("gaussians8", 20, true);
  run::ToyConditioning cond;
  cond.labels = {1, 1, 2, 2, 3, 3};
  const std::vector<float> conditional = draw(model, "ddim", cond);
  cond.guidance_scale = 3.0;
  const std::vector<float> guided = draw(model, "ddim", cond);
  cond.guidance_sigma_lo = 1e9, cond.guidance_sigma_hi = 1e10;
  EXPECT_EQ(draw(model, "ddim", cond), conditional);
  cond.guidance_sigma_lo = 0.0, cond.guidance_sigma_hi = 1e9;
  EXPECT_EQ(draw(model, "ddim", cond), guided);
}

TEST(Toy2dAutoguidance, TheGuideMustShareTheTask) {
  const run::ToyModel model = trained("gaussians8", 1, false);
  auto refusal = [&](const run::ToyModel& guide) {
    run::ToyConditioning cond;
    cond.autoguide = &guide;
    cond.guidance_scale = 2.0;
    try {
      draw(model, "ddim", cond);
    } catch (const ValueError& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  EXPECT_NE(refusal(trained("moons", 1, false)).find("trained on moons"), std::string::npos);
  EXPECT_NE(refusal(trained("gaussians8", 1, true)).find("8 classes"), std::string::npos);
  run::ToyModel other_t = trained("gaussians8", 1, false);
  other_t.diffusion_steps = 50;
  EXPECT_NE(refusal(other_t).find("50-step"), std::string::npos) << refusal(other_t);
  EXPECT_EQ(refusal(trained("gaussians8", 1, false)), "accepted");
}

TEST(Toy2dAutoguidance, SampleSubcommandWithAGuideAndAnInterval) {
  testing::TempDir dir;
  for (const std::string name : {"model", "guide"}) {
    run::ToyTrainArgs a = testing::tiny_toy_args("gaussians8", name == "model" ? 40 : 10, 4);
    a.batch_size = 64;
    a.log_every = 10;
    a.out = dir.path + "/" + name;
    std::ostringstream log;
    run::run_toy_train(a, log);
  }
  run::ToySampleArgs s;
  s.checkpoint = dir.path + "/model";
  s.autoguide = dir.path + "/guide";
  s.guidance_scale = 2.0;
  s.guidance_interval = "0.2,10";
  s.sampler = "ddim";
  s.sampling_steps = 10;
  s.num_samples = 50;
  s.out = dir.path + "/out";
  std::ostringstream out;
  const run::ToyScore score = run::run_toy_sample(s, out);
  EXPECT_NE(out.str().find("autoguided by"), std::string::npos) << out.str();
  EXPECT_NE(out.str().find("sigma in [0.2,10]"), std::string::npos) << out.str();
  EXPECT_GT(score.energy, 0.0);
  EXPECT_TRUE(std::filesystem::exists(s.out + "/scatter.png"));
  s.out = dir.path + "/bad";
  s.guidance_scale = 1.0;  // an interval with nothing to limit
  EXPECT_THROW(run::run_toy_sample(s, out), ValueError);
  EXPECT_FALSE(std::filesystem::exists(s.out));
  s.guidance_scale = 2.0;
  s.guidance_interval = "3,1";
  EXPECT_THROW(run::run_toy_sample(s, out), ValueError);
  EXPECT_FALSE(std::filesystem::exists(s.out));
}

}  // namespace
}  // namespace ddpm
