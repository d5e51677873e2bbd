// ddpm-train's run (models/run/train_run.h) on a tiny UNet and the toy shapes: the files of a
// run folder, bit-identical resume, refusing to clobber a run, config mismatches, non-finite
// losses, flag validation and the command-line parser with presets.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <sstream>
#include <vector>

#include "engine/error.h"
#include "engine/io/atomic_file.h"
#include "engine/io/png.h"
#include "engine/io/safetensors.h"
#include "models/run/checkpoint.h"
#include "models/run/presets.h"
#include "models/run/train_flags.h"
#include "models/run/train_run.h"
#include "support/tiny_run.h"
#include "support/value_error.h"

namespace fs = std::filesystem;
using namespace ddpm;
using run::TrainOptions;

namespace {

using ddpm::testing::expect_same_tensors;
using ddpm::testing::temp_run;

TrainOptions tiny(const std::string& out) { return ddpm::testing::tiny_run(out); }

// Every file under dir with its bytes.
std::map<std::string, std::string> snapshot(const std::string& dir) {
  std::map<std::string, std::string> files;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file()) files[fs::relative(e.path(), dir).string()] = read_file(e.path().string());
  return files;
}

}  // namespace

TEST(TrainRun, WritesTheRunFolder) {
  TrainOptions o = tiny(temp_run("files"));
  const run::TrainResult r = run::train_run(o);
  EXPECT_EQ(r.steps_done, 6);
  EXPECT_EQ(r.last_checkpoint, run::checkpoint_dir(o.out, 6));
  const nlohmann::json cfg = run::read_run_config(o.out);
  EXPECT_EQ(cfg.at("model").at("model_channels"), 8);
  EXPECT_EQ(cfg.at("model").at("image_size"), 16);
  EXPECT_EQ(cfg.at("diffusion").at("diffusion_steps"), 50);
  const std::string jsonl = read_file(o.out + "/metrics.jsonl");
  EXPECT_EQ(std::count(jsonl.begin(), jsonl.end(), '\n'), 3);  // steps 2, 4, 6
  const std::string csv = read_file(o.out + "/metrics.csv");
  EXPECT_EQ(csv.rfind("step,loss,loss_q0,loss_q1,loss_q2,loss_q3,grad_norm,lr,images_per_s,skipped,peak_mib\n", 0), 0u);
  const Image loss = read_png(o.out + "/loss.png");
  EXPECT_EQ(loss.channels, 3);
  const Image grid = read_png(o.out + "/samples/step_6.png");
  EXPECT_EQ(grid.height, 2 * (16 + 2) + 2);  // 4 samples in 2 rows
  EXPECT_EQ(grid.channels, 1);
  const SafetensorsFile model = load_safetensors(r.last_checkpoint + "/model.safetensors");
  EXPECT_EQ(model.get("conv_in.weight").shape(), (Shape{8, 1, 3, 3}));  // OIHW on disk
  EXPECT_TRUE(load_safetensors(r.last_checkpoint + "/ema.safetensors").contains("conv_in.weight"));
  EXPECT_TRUE(load_safetensors(r.last_checkpoint + "/optimizer.safetensors").contains("exp_avg.conv_in.weight"));
  EXPECT_EQ(read_file(o.out + "/checkpoints/latest"), "step_6\n");
}

// The weights, EMA and optimizer state of two checkpoint folders are the same tensors.
void expect_same_weights(const std::string& a, const std::string& b) {
  for (const char* f : {"model.safetensors", "ema.safetensors", "optimizer.safetensors"})
    expect_same_tensors(a + "/" + f, b + "/" + f);
}

TEST(TrainRun, ResumeIsBitIdentical) {
  TrainOptions straight = tiny(temp_run("straight"));
  run::train_run(straight);

  TrainOptions first = tiny(temp_run("resumed"));
  first.steps = 3;
  run::train_run(first);
  TrainOptions second = first;
  second.steps = 6;
  second.resume = "latest";
  const run::TrainResult r = run::train_run(second);
  EXPECT_EQ(r.steps_done, 6);

  const std::string a = run::checkpoint_dir(straight.out, 6), b = run::checkpoint_dir(second.out, 6);
  expect_same_weights(a, b);
  nlohmann::json sa = nlohmann::json::parse(read_file(a + "/trainer_state.json"));
  nlohmann::json sb = nlohmann::json::parse(read_file(b + "/trainer_state.json"));
  EXPECT_EQ(sa.at("generator"), sb.at("generator"));
  EXPECT_EQ(sa.at("loader"), sb.at("loader"));
  EXPECT_EQ(sa.at("adam_step"), sb.at("adam_step"));
  // The resumed run's metrics continue the first part's: steps 2, 3 (its end), 4, 6.
  const std::string jsonl = read_file(second.out + "/metrics.jsonl");
  EXPECT_EQ(std::count(jsonl.begin(), jsonl.end(), '\n'), 4);
}

// --gradient-checkpointing (engine/recompute.h) computes the same gradients, summed in a
// different order where a tensor has several consumers, so a run with it follows the run
// without it to float rounding, draws the same dropout masks (the generators end equal), and
// may be switched on or off on resume.
TEST(TrainRun, GradientCheckpointingTrainsTheSameRunAndMayChangeOnResume) {
  TrainOptions plain = tiny(temp_run("no_recompute"));
  run::train_run(plain);

  TrainOptions first = tiny(temp_run("recompute"));
  first.gradient_checkpointing = true;
  first.steps = 3;
  run::train_run(first);
  const nlohmann::json cfg = nlohmann::json::parse(read_file(first.out + "/config.json"));
  EXPECT_EQ(cfg.at("run").at("gradient_checkpointing"), true);
  TrainOptions second = first;
  second.gradient_checkpointing = false;
  second.steps = 6;
  second.resume = "latest";
  EXPECT_EQ(run::train_run(second).steps_done, 6);

  const std::string a = run::checkpoint_dir(plain.out, 6), b = run::checkpoint_dir(second.out, 6);
  const double moved = ddpm::testing::max_abs_difference(a + "/model.safetensors",
                                                         run::checkpoint_dir(plain.out, 3) + "/model.safetensors");
  const double worst = ddpm::testing::max_abs_difference(a + "/model.safetensors", b + "/model.safetensors");
  EXPECT_GT(moved, 1e-3);           // steps 4-6 changed the weights (lr 1e-3) ...
  EXPECT_LT(worst, 1e-3 * moved);   // ... and the two runs agree far below that
  const nlohmann::json sa = nlohmann::json::parse(read_file(a + "/trainer_state.json"));
  const nlohmann::json sb = nlohmann::json::parse(read_file(b + "/trainer_state.json"));
  EXPECT_EQ(sa.at("generator"), sb.at("generator"));
  // The metrics' peak tensor memory of steps 1-2: lower with recomputation.
  auto first_peak = [](const std::string& dir) {
    std::istringstream lines(read_file(dir + "/metrics.jsonl"));
    std::string line;
    std::getline(lines, line);
    const nlohmann::json j = nlohmann::json::parse(line);
    EXPECT_EQ(j.at("step"), 2);
    return j.at("peak_mib").get<double>();
  };
  const double peak_plain = first_peak(plain.out), peak_recompute = first_peak(first.out);
  EXPECT_GT(peak_recompute, 0.0);
  EXPECT_LT(peak_recompute, peak_plain);
}

TEST(TrainRun, ResumeWithImportanceSampledTimestepsIsBitIdentical) {
  // T = 2 and 16 images a step: every timestep has its 10 losses after the first 3 steps,
  // so the second half draws t from the learned p_t, which only a saved history reproduces.
  auto opts = [](const std::string& out) {
    TrainOptions o = tiny(out);
    o.noise_schedule = "cosine";
    o.diffusion_steps = 2;
    o.sample_steps = 2;
    o.batch_size = 16;
    o.toy_count = 64;
    o.schedule_sampler = "loss-second-moment";
    return o;
  };
  TrainOptions straight = opts(temp_run("importance_straight"));
  run::train_run(straight);
  TrainOptions first = opts(temp_run("importance_resumed"));
  first.steps = 3;
  run::train_run(first);
  nlohmann::json mid =
      nlohmann::json::parse(read_file(run::checkpoint_dir(first.out, 3) + "/trainer_state.json"));
  for (const auto& h : mid.at("importance_history")) ASSERT_EQ(h.size(), 10u) << "history not warm at the resume";
  TrainOptions second = first;
  second.steps = 6;
  second.resume = "latest";
  run::train_run(second);
  const std::string a = run::checkpoint_dir(straight.out, 6), b = run::checkpoint_dir(second.out, 6);
  expect_same_weights(a, b);
  EXPECT_EQ(nlohmann::json::parse(read_file(a + "/trainer_state.json")).at("importance_history"),
            nlohmann::json::parse(read_file(b + "/trainer_state.json")).at("importance_history"));
}

TEST(TrainRun, TrainingRecipesAreRecordedAndResumeBitIdentically) {
  auto opts = [](const std::string& out) {
    TrainOptions o = tiny(out);
    o.snr_gamma = 5;
    o.noise_offset = 0.1;
    o.input_perturbation = 0.1;
    return o;
  };
  TrainOptions straight = opts(temp_run("recipes_straight"));
  run::train_run(straight);
  const nlohmann::json cfg = nlohmann::json::parse(read_file(straight.out + "/config.json"));
  EXPECT_EQ(cfg.at("train").at("snr_gamma"), 5.0);
  EXPECT_EQ(cfg.at("train").at("noise_offset"), 0.1);
  EXPECT_EQ(cfg.at("train").at("input_perturbation"), 0.1);

  TrainOptions first = opts(temp_run("recipes_resumed"));
  first.steps = 3;
  run::train_run(first);
  TrainOptions forgot = first;  // resuming without the recipes is a different run
  forgot.steps = 6;
  forgot.resume = "latest";
  forgot.noise_offset = 0;
  EXPECT_NE(ddpm::testing::value_error_message([&] { run::train_run(forgot); }).find("train.noise_offset"),
            std::string::npos);
  TrainOptions second = first;
  second.steps = 6;
  second.resume = "latest";
  run::train_run(second);
  const std::string a = run::checkpoint_dir(straight.out, 6), b = run::checkpoint_dir(second.out, 6);
  expect_same_weights(a, b);
}

TEST(TrainRun, RefusesAnExistingRunWithoutResumeOrOverwrite) {
  TrainOptions o = tiny(temp_run("existing"));
  o.steps = 2;
  o.save_every = 2;
  run::train_run(o);
  const auto before = snapshot(o.out);
  try {
    run::train_run(o);
    FAIL() << "no error";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("already holds a run"), std::string::npos) << e.what();
  }
  EXPECT_EQ(snapshot(o.out), before);  // nothing changed

  o.overwrite = true;
  run::train_run(o);
  bool moved_aside = false;
  for (const auto& e : fs::directory_iterator(fs::path(o.out).parent_path()))
    if (e.path().filename().string().rfind(fs::path(o.out).filename().string() + ".replaced-", 0) == 0) {
      moved_aside = true;
      EXPECT_EQ(snapshot(e.path().string()), before);  // the old run is kept whole
    }
  EXPECT_TRUE(moved_aside);
}

TEST(TrainRun, TwoOverwritesInOneSecondKeepBothOldRuns) {
  // move_run_aside names the folder by the second; a second replacement within it must not
  // collide with the first one's folder (it used to fail with a filesystem error).
  const std::string dir = temp_run("aside_twice");
  fs::remove_all(dir);
  std::vector<std::string> asides;
  for (const char* content : {"first", "second"}) {
    fs::create_directories(dir);
    write_file_atomic(dir + "/marker.txt", content);
    asides.push_back(run::move_run_aside(dir));
  }
  ASSERT_NE(asides[0], asides[1]);
  EXPECT_EQ(read_file(asides[0] + "/marker.txt"), "first");
  EXPECT_EQ(read_file(asides[1] + "/marker.txt"), "second");
  EXPECT_FALSE(fs::exists(dir));
  for (const std::string& a : asides) fs::remove_all(a);
}

TEST(TrainRun, ResumeWithDifferentFlagsListsTheNames) {
  TrainOptions o = tiny(temp_run("mismatch"));
  o.steps = 2;
  o.save_every = 2;
  run::train_run(o);
  const auto before = snapshot(o.out);
  TrainOptions other = o;
  other.resume = "latest";
  other.steps = 4;
  other.num_channels = 16;
  other.lr = 5e-4;
  try {
    run::train_run(other);
    FAIL() << "no error";
  } catch (const ValueError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("model.model_channels: 8 vs 16"), std::string::npos) << msg;
    EXPECT_NE(msg.find("train.lr"), std::string::npos) << msg;
  }
  EXPECT_EQ(snapshot(o.out), before);
}

TEST(TrainRun, NonFiniteLossStopsNamingTheStepAndKeepsTheLastGoodCheckpoint) {
  TrainOptions o = tiny(temp_run("nonfinite"));
  o.lr = 1e30;  // the first update sends the weights to ~1e30: the next loss overflows
  o.warmup_steps = 0;
  o.save_every = 1;
  try {
    run::train_run(o);
    FAIL() << "no error";
  } catch (const ValueError&) {
    FAIL() << "a non-finite loss is a run failure (exit 1), not a usage error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("non-finite"), std::string::npos) << msg;
    EXPECT_NE(msg.find("at step 2"), std::string::npos) << msg;
    EXPECT_NE(msg.find(run::checkpoint_dir(o.out, 1)), std::string::npos) << msg;
  }
  EXPECT_EQ(read_file(o.out + "/checkpoints/latest"), "step_1\n");
  EXPECT_FALSE(fs::exists(run::checkpoint_dir(o.out, 2)));
}

TEST(TrainRun, InvalidFlagsAreValueErrors) {
  const TrainOptions ok = tiny(ddpm::testing::temp_path("unused"));
  EXPECT_NO_THROW(run::validate_options(ok));
  auto expect_bad = [&](const char* what, auto&& change) {
    TrainOptions o = ok;
    change(o);
    EXPECT_THROW(run::validate_options(o), ValueError) << what;
  };
  expect_bad("batch size 0", [](TrainOptions& o) { o.batch_size = 0; });
  expect_bad("negative steps", [](TrainOptions& o) { o.steps = -3; });
  expect_bad("zero channels", [](TrainOptions& o) { o.num_channels = 0; });
  expect_bad("negative lr", [](TrainOptions& o) { o.lr = -1; });
  expect_bad("respacing", [](TrainOptions& o) { o.sample_steps = 7; });  // 7 does not divide 50
  expect_bad("groups", [](TrainOptions& o) { o.num_channels = 6; });       // 6 % 4 != 0
  expect_bad("halving", [](TrainOptions& o) { o.image_size = 30; o.channel_mult = "1,2,2"; });
  expect_bad("guidance", [](TrainOptions& o) { o.guidance_scale = 3; });
  expect_bad("class dropout", [](TrainOptions& o) { o.class_dropout = 0.2; });
  expect_bad("hybrid", [](TrainOptions& o) { o.loss = "hybrid"; });
  expect_bad("loss name", [](TrainOptions& o) { o.loss = "l1"; });
  expect_bad("schedule", [](TrainOptions& o) { o.noise_schedule = "quadratic"; });
  expect_bad("predict", [](TrainOptions& o) { o.predict = "score"; });
  expect_bad("channel mult", [](TrainOptions& o) { o.channel_mult = "1,x"; });
  expect_bad("data", [](TrainOptions& o) { o.data = "mnist"; });
  expect_bad("no out", [](TrainOptions& o) { o.out = ""; });
  expect_bad("resume and overwrite", [](TrainOptions& o) { o.resume = "latest"; o.overwrite = true; });
  expect_bad("negative snr gamma", [](TrainOptions& o) { o.snr_gamma = -1; });
  expect_bad("snr gamma with vlb", [](TrainOptions& o) { o.snr_gamma = 5; o.loss = "vlb"; });
  expect_bad("offset noise with edm", [](TrainOptions& o) { o.noise_offset = 0.1; o.objective = "edm"; });
  expect_bad("nan perturbation", [](TrainOptions& o) { o.input_perturbation = std::nan(""); });
  // Only known once the data is loaded: 16x16 cannot be halved 5 times.
  TrainOptions o = tiny(temp_run("halving"));
  o.channel_mult = "1,1,1,1,1,1";
  o.attention_resolutions = "";
  EXPECT_THROW(run::train_run(o), ValueError);
  TrainOptions four = ok;
  four.channel_mult = "1,2,2,2";
  EXPECT_THROW(run::make_unet_config(four, 28, 1, 0), ValueError);  // 28 cannot be halved 3 times
  EXPECT_NO_THROW(run::make_unet_config(four, 32, 1, 0));
}

TEST(TrainFlags, PresetUnderExplicitFlags) {
  CLI::App app{"test", "ddpm-train"};
  TrainOptions o;
  run::add_train_flags(app, o);
  const char* argv[] = {"ddpm-train", "--preset", "auto", "--num-channels", "48", "--data", "toy", "--out", "r"};
  const int argc = static_cast<int>(std::size(argv));
  app.parse(argc, argv);
  run::apply_preset_under_flags(app, argc, argv, o, Device::cpu());
  EXPECT_EQ(o.preset, "cpu-small");
  EXPECT_EQ(o.num_channels, 48);        // explicit
  EXPECT_EQ(o.channel_mult, "1,2,4");   // from the preset
  EXPECT_EQ(o.attention_resolutions, "");
  EXPECT_EQ(o.data, "toy");
  EXPECT_EQ(o.out, "r");

  CLI::App bad{"test", "ddpm-train"};
  TrainOptions ob;
  run::add_train_flags(bad, ob);
  const char* argv2[] = {"ddpm-train", "--batch-sise", "3"};
  EXPECT_THROW(bad.parse(3, argv2), CLI::ParseError);
  EXPECT_FALSE(app.help().empty());
}

// A text run takes the preset's lr capped at kTextPresetMaxLr (presets.h); --lr still wins,
// and a run without --text-cond keeps the preset's own.
TEST(TrainFlags, TextRunsCapThePresetLearningRate) {
  const auto parsed = [](std::vector<const char*> args) {
    CLI::App app{"test", "ddpm-train"};
    TrainOptions o;
    run::add_train_flags(app, o);
    args.insert(args.begin(), "ddpm-train");
    const int argc = static_cast<int>(args.size());
    app.parse(argc, args.data());
    run::apply_preset_under_flags(app, argc, args.data(), o, Device::cpu());
    return o;
  };
  EXPECT_EQ(parsed({"--preset", "cpu-small", "--out", "r"}).lr, 2e-3);
  EXPECT_EQ(parsed({"--preset", "cpu-small", "--text-cond", "--out", "r"}).lr, run::kTextPresetMaxLr);
  EXPECT_EQ(parsed({"--preset", "cpu-small", "--text-cond", "--lr", "1e-3", "--out", "r"}).lr, 1e-3);
  EXPECT_EQ(parsed({"--preset", "gpu-medium", "--text-cond", "--out", "r"}).lr, 2e-4);  // below the cap already
  EXPECT_TRUE(parsed({"--preset", "cpu-small", "--text-cond", "--out", "r"}).text.enabled);
}
