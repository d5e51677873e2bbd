// ddpm-control's library (models/run/control_run.h): a ControlNet trained on a tiny frozen
// base run resumes bit-identically, leaves the base's files untouched, samples through
// ddpm-sample's --control (scale 0 = the base's samples exactly, a trained ControlNet changes
// them), and refuses mismatched bases, folders and flags; importance sampling of t is taken
// from the base (or --schedule-sampler) and resumes bit-identically with its loss history.
#include <filesystem>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>

#include "engine/error.h"
#include "engine/io/png.h"
#include "models/run/checkpoint.h"
#include "models/run/control_run.h"
#include "models/run/metrics.h"
#include "models/run/sample_run.h"
#include "support/tiny_control.h"

namespace ddpm::run {
namespace {

namespace fs = std::filesystem;

std::string read_all(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

// A tiny class-conditional base run (toy 16x16, T = 50, 2 steps).
const std::string& base_run() {
  static const std::string dir =
      testing::train_tiny_base("control_base", [](TrainOptions& o) { o.class_cond = true; });
  return dir;
}

ControlTrainArgs tiny_control(const std::string& out) { return testing::tiny_control_args(base_run(), out); }

TEST(ControlRun, TrainingResumesBitIdenticallyAndLeavesTheBaseUntouched) {
  const std::string base_ckpt = base_run() + "/checkpoints/step_2/";
  const std::string base_ema = read_all(base_ckpt + "ema.safetensors");
  const std::string full = testing::temp_run("control_full"), split = testing::temp_run("control_split");
  const testing::ControlResumeRuns runs = testing::expect_control_resume_bit_identical(tiny_control, full, split, [&] {
    // an interrupted run's line past the checkpoint (step 2): the resume must drop it
    MetricsLine stray;
    stray.step = 3;
    stray.loss = 9.5;
    std::ofstream f(split + "/metrics.jsonl", std::ios::app);
    f << stray.to_json().dump() << "\n";
  });
  EXPECT_EQ(runs.straight.steps_done, 4);
  EXPECT_EQ(runs.resumed.losses.size(), 2u);
  EXPECT_EQ(read_all(base_ckpt + "ema.safetensors"), base_ema);  // the frozen base is never written
  // Metrics as ddpm-train writes them: one line per --log-every steps, the mean of the
  // window's losses; the resumed run's files equal the uninterrupted run's (but the speed).
  for (const std::string& dir : {full, split}) {
    EXPECT_TRUE(fs::exists(dir + "/loss.png")) << dir;
    std::istringstream csv(read_all(dir + "/metrics.csv"));
    std::string header, l1, l2, extra;
    std::getline(csv, header);
    EXPECT_EQ(header, kMetricsCsvHeader);
    EXPECT_TRUE(std::getline(csv, l1) && std::getline(csv, l2)) << dir;
    EXPECT_FALSE(std::getline(csv, extra)) << dir << ": " << extra;
  }
  auto lines = [&](const std::string& dir) {
    std::vector<nlohmann::json> v;
    std::istringstream in(read_all(dir + "/metrics.jsonl"));
    for (std::string t; std::getline(in, t);) v.push_back(nlohmann::json::parse(t));
    return v;
  };
  const std::vector<nlohmann::json> lf = lines(full), ls = lines(split);
  ASSERT_EQ(lf.size(), 2u);
  ASSERT_EQ(ls.size(), 2u);
  for (std::size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(lf[i].at("step"), 2 * (i + 1));
    EXPECT_EQ(ls[i].at("step"), lf[i].at("step"));
    EXPECT_EQ(ls[i].at("loss"), lf[i].at("loss"));
    EXPECT_EQ(ls[i].at("grad_norm"), lf[i].at("grad_norm"));
    const std::vector<double>& losses = runs.straight.losses;
    EXPECT_DOUBLE_EQ(lf[i].at("loss").get<double>(), (losses[2 * i] + losses[2 * i + 1]) / 2);
  }
  // The checkpoint holds the ControlNet alone: its zero convs have moved away from zero.
  const SafetensorsFile m = load_safetensors(full + "/checkpoints/step_4/model.safetensors");
  bool moved = false;
  for (const auto& [name, t] : m.tensors) {
    EXPECT_EQ(name.find("up_blocks"), std::string::npos) << name;
    if (name == "controlnet_mid_block.weight")
      for (float v : t.to_vector()) moved = moved || v != 0;
  }
  EXPECT_TRUE(moved);
  const nlohmann::json cfg = read_run_config(full);
  EXPECT_EQ(cfg.at("architecture"), "controlnet");
  EXPECT_EQ(cfg.at("hint"), "edges");
  EXPECT_EQ(cfg.at("controlnet").at("conditioning_channels"), 1);

  // Refusals: an existing run without --resume/--overwrite, a resume with another hint,
  // data of the wrong size, an unknown hint.
  EXPECT_THROW(train_control_run(tiny_control(full)), ValueError);
  ControlTrainArgs other_hint = tiny_control(split);
  other_hint.resume = "latest";
  other_hint.hint = "lowres:4";
  EXPECT_THROW(train_control_run(other_hint), ValueError);
  ControlTrainArgs padded = tiny_control(testing::temp_run("control_padded"));
  padded.pad_to_32 = true;
  EXPECT_THROW(train_control_run(padded), ValueError);
  ControlTrainArgs unknown = tiny_control(testing::temp_run("control_unknown"));
  unknown.hint = "canny";
  EXPECT_THROW(train_control_run(unknown), ValueError);
  ControlTrainArgs no_base = tiny_control(testing::temp_run("control_nobase"));
  no_base.base = full + "/nowhere";
  EXPECT_THROW(train_control_run(no_base), ValueError);
}

SampleOptions sample_options(const std::string& out) {
  SampleOptions s;
  s.checkpoint = base_run();
  s.sampler = "ddim";
  s.sampling_steps = 5;
  s.num_samples = 3;
  s.batch_size = 2;  // two batches: hint rows follow the sample index
  // One class for the plain and the controlled runs: a labelled --control-from (toy) would
  // otherwise give each sample its hint image's label, the plain run balanced ones.
  s.class_label = 2;
  s.out = out;
  s.seed = 3;
  return s;
}

// --gradient-checkpointing recomputes both the ControlNet's blocks and the frozen base's
// (whose backward carries the gradient to the residuals): the same training to rounding.
TEST(ControlRun, GradientCheckpointingTrainsTheSameControlNet) {
  ControlTrainArgs plain = tiny_control(testing::temp_run("control_no_recompute"));
  ControlTrainArgs again = tiny_control(testing::temp_run("control_recompute"));
  again.gradient_checkpointing = true;
  train_control_run(plain);
  train_control_run(again);
  const std::string a = checkpoint_dir(plain.out, 4) + "/model.safetensors";
  const double moved = testing::max_abs_difference(a, checkpoint_dir(plain.out, 2) + "/model.safetensors");
  const double worst = testing::max_abs_difference(a, checkpoint_dir(again.out, 4) + "/model.safetensors");
  EXPECT_GT(moved, 1e-4);
  EXPECT_LT(worst, 1e-3 * moved) << "moved " << moved << ", differ by " << worst;
}

TEST(ControlRun, SamplingWithScaleZeroIsTheBaseAndATrainedControlNetChangesTheSamples) {
  const std::string ctrl = testing::temp_run("control_sample");
  train_control_run(tiny_control(ctrl));
  const SampleResult plain = run_sample(sample_options(testing::temp_run("control_plain")));
  SampleOptions zero = sample_options(testing::temp_run("control_zero"));
  zero.control = ctrl;
  zero.control_from = "toy";
  zero.num_samples_given = true;
  zero.control_scale = 0.0;
  const SampleResult z = run_sample(zero);
  EXPECT_EQ(z.pixels, plain.pixels);  // residuals scaled to zero: the base's own samples
  SampleOptions on = zero;
  on.out = testing::temp_run("control_on");
  on.control_scale = 1.0;
  const SampleResult c = run_sample(on);
  EXPECT_NE(c.pixels, plain.pixels);
  EXPECT_TRUE(fs::exists(on.out + "/control.png"));
  const nlohmann::json info = nlohmann::json::parse(read_all(on.out + "/sample_info.json"));
  EXPECT_EQ(info.at("control").at("hint"), "edges");
  EXPECT_EQ(info.at("control").at("images"), 3);
  // A classifier-free guided run repeats the hint for the doubled batch.
  SampleOptions guided = on;
  guided.out = testing::temp_run("control_guided");
  guided.guidance_scale = 2.0;
  EXPECT_NO_THROW(run_sample(guided));

  // Refusals: a base of another config, a control image of the wrong size, flags that make
  // no sense on their own.
  const std::string other = testing::temp_run("control_other_base");
  TrainOptions ob = testing::tiny_run(other);
  ob.class_cond = true;
  ob.diffusion_steps = 40;
  ob.steps = 1;
  ob.save_every = 1;
  train_run(ob);
  SampleOptions mismatch = on;
  mismatch.checkpoint = other;
  mismatch.out = testing::temp_run("control_mismatch");
  EXPECT_THROW(run_sample(mismatch), ValueError);
  SampleOptions wrong_size = on;
  wrong_size.control_from.clear();
  wrong_size.control_image = base_run() + "/../wrong.png";
  {
    std::vector<std::uint8_t> px(8 * 8, 128);
    write_png(wrong_size.control_image, px.data(), 8, 8, 1);
  }
  wrong_size.out = testing::temp_run("control_wrong_size");
  EXPECT_THROW(run_sample(wrong_size), ValueError);
  SampleOptions flags = sample_options(testing::temp_run("control_flags"));
  flags.control_image = "x.png";  // without --control
  EXPECT_THROW(check_sample_options(flags), ValueError);
  flags.control = ctrl;
  flags.control_from = "toy";  // both inputs
  EXPECT_THROW(check_sample_options(flags), ValueError);
  flags.control_from.clear();
  flags.control_scale = std::nan("");
  EXPECT_THROW(check_sample_options(flags), ValueError);
}

// A base trained with importance sampling of t at T = 4, so a few steps of batch 24 fill every
// t's history of 10 losses and the sampler leaves its uniform warm-up inside the test.
const std::string& importance_base() {
  static const std::string dir = testing::train_tiny_base("control_lsm_base", [](TrainOptions& o) {
    o.noise_schedule = "cosine";  // the linear one needs T > 20
    o.diffusion_steps = 4;
    o.sample_steps = 2;
    o.schedule_sampler = "loss-second-moment";
  });
  return dir;
}

ControlTrainArgs importance_control(const std::string& out) {
  ControlTrainArgs a = testing::tiny_control_args(importance_base(), out);
  a.batch_size = 24;
  return a;
}

std::vector<std::vector<double>> importance_history(const std::string& checkpoint) {
  const nlohmann::json st = nlohmann::json::parse(read_all(checkpoint + "/trainer_state.json"));
  return st.at("importance_history").get<std::vector<std::vector<double>>>();
}

TEST(ControlRun, ImportanceSamplingOfTIsTheBasesByDefaultAndResumesBitIdentically) {
  const std::string full = testing::temp_run("control_lsm_full"), split = testing::temp_run("control_lsm_split");
  testing::expect_control_resume_bit_identical(importance_control, full, split);
  EXPECT_EQ(read_run_config(full).at("train").at("schedule_sampler"), "loss-second-moment");  // the base's
  // The sampler was in use: every t holds its full history of 10 losses by step 4, and the
  // resumed run carried the same history (so it drew the same t, with the same 1 / (T p_t)).
  const std::vector<std::vector<double>> h = importance_history(full + "/checkpoints/step_4");
  ASSERT_EQ(h.size(), 4u);
  for (const std::vector<double>& losses : h) EXPECT_EQ(losses.size(), 10u);
  EXPECT_EQ(importance_history(split + "/checkpoints/step_4"), h);

  // Without the saved history the resumed sampler starts its warm-up again and draws other t:
  // the restored history is what made the resume above bit-identical.
  const std::string amnesic = testing::temp_run("control_lsm_amnesic");
  ControlTrainArgs first = importance_control(amnesic);
  first.steps = 2;
  train_control_run(first);
  const std::string state = amnesic + "/checkpoints/step_2/trainer_state.json";
  nlohmann::json st = nlohmann::json::parse(read_all(state));
  ASSERT_FALSE(st.at("importance_history").empty());
  st.erase("importance_history");
  std::ofstream(state) << st.dump();
  ControlTrainArgs rest = importance_control(amnesic);
  rest.resume = "latest";
  train_control_run(rest);
  const SafetensorsFile a = load_safetensors(amnesic + "/checkpoints/step_4/model.safetensors"),
                        b = load_safetensors(full + "/checkpoints/step_4/model.safetensors");
  bool differs = false;
  for (const auto& [name, t] : a.tensors) differs = differs || t.to_vector() != b.get(name).to_vector();
  EXPECT_TRUE(differs);

  // --schedule-sampler overrides the base's setting, is recorded, and must match on resume.
  const std::string uniform = testing::temp_run("control_lsm_uniform");
  ControlTrainArgs u = importance_control(uniform);
  u.schedule_sampler = "uniform";
  u.steps = 2;
  train_control_run(u);
  EXPECT_EQ(read_run_config(uniform).at("train").at("schedule_sampler"), "uniform");
  EXPECT_FALSE(nlohmann::json::parse(read_all(uniform + "/checkpoints/step_2/trainer_state.json"))
                   .contains("importance_history"));
  ControlTrainArgs resume_other = importance_control(uniform);  // the base's loss-second-moment
  resume_other.resume = "latest";
  EXPECT_THROW(train_control_run(resume_other), ValueError);
  ControlTrainArgs bad = importance_control(testing::temp_run("control_lsm_bad"));
  bad.schedule_sampler = "importance";
  EXPECT_THROW(check_control_train_args(bad), ValueError);
}

}  // namespace
}  // namespace ddpm::run
