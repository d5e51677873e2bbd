// Learning-rate schedules (models/train/lr_schedule.h, models/run/lr_schedule_flags.h):
// scheduled_lr against closed-form values (warm-up end, quarter, midpoint, last step), the
// constant schedule against the old warm-up formula bit for bit, the trainer's per-step rate
// under cosine, bit-identical resume of a cosine-scheduled trainer and ddpm-train run, the
// config.json entries that make resume refuse a changed schedule, and the flag refusals.
#include <cmath>
#include <filesystem>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "apps/common/cli.h"
#include "engine/error.h"
#include "engine/io/atomic_file.h"
#include "models/run/autoencoder_run.h"
#include "models/run/checkpoint.h"
#include "models/run/classifier_run.h"
#include "models/run/control_run.h"
#include "models/run/lr_schedule_flags.h"
#include "models/run/toy_run.h"
#include "models/run/train_flags.h"
#include "models/run/train_run.h"
#include "models/toy/mlp_denoiser.h"
#include "models/train/lr_schedule.h"
#include "models/train/trainer.h"
#include "support/tiny_run.h"
#include "support/value_error.h"

namespace ddpm {
namespace {

using train::LrSchedule;
using train::scheduled_lr;

constexpr double kPi = 3.14159265358979323846;

// The test's own statement of the schedules (lr_schedule.h's table), written out per case.
double cosine_closed_form(double b, double m, std::int64_t w, std::int64_t s, std::int64_t k) {
  if (k < w) return b * (k + 1.0) / w;
  const double p = std::min(1.0, (k - w) / static_cast<double>(s - w));
  return m + (b - m) * (1.0 + std::cos(kPi * p)) / 2.0;
}

TEST(LrSchedule, ClosedFormValues) {
  const double b = 1e-3, m = 1e-5;
  const std::int64_t w = 10, s = 110;  // 100 decay steps: p = (k - 10) / 100
  for (LrSchedule kind : {LrSchedule::constant, LrSchedule::linear, LrSchedule::cosine}) {
    SCOPED_TRACE(train::lr_schedule_name(kind));
    EXPECT_DOUBLE_EQ(scheduled_lr(kind, b, m, w, s, 0), b / 10);     // warm-up: (0 + 1) / 10
    EXPECT_DOUBLE_EQ(scheduled_lr(kind, b, m, w, s, 4), b / 2);      // (4 + 1) / 10
    EXPECT_DOUBLE_EQ(scheduled_lr(kind, b, m, w, s, w - 1), b);      // the warm-up's end
    EXPECT_DOUBLE_EQ(scheduled_lr(kind, b, m, w, s, w), b);          // p = 0
  }
  auto at = [&](LrSchedule kind, std::int64_t k) { return scheduled_lr(kind, b, m, w, s, k); };
  // p = 1/4, 1/2, 99/100 (the last step, k = S - 1) and past the end.
  EXPECT_DOUBLE_EQ(at(LrSchedule::linear, 35), m + 0.75 * (b - m));
  EXPECT_DOUBLE_EQ(at(LrSchedule::cosine, 35), m + (b - m) * (0.5 + std::sqrt(2.0) / 4));  // cos(pi/4) = sqrt2/2
  EXPECT_DOUBLE_EQ(at(LrSchedule::linear, 60), (b + m) / 2);
  EXPECT_DOUBLE_EQ(at(LrSchedule::cosine, 60), (b + m) / 2);  // cos(pi/2) = 0
  EXPECT_DOUBLE_EQ(at(LrSchedule::linear, s - 1), m + 0.01 * (b - m));
  // 1 + cos(0.99 pi) = 1 - cos(0.01 pi) = 2 sin^2(0.005 pi)
  EXPECT_NEAR(at(LrSchedule::cosine, s - 1), m + (b - m) * std::pow(std::sin(0.005 * kPi), 2), 1e-18);
  EXPECT_GT(at(LrSchedule::cosine, s - 1), m);  // the floor comes one step past the run
  for (LrSchedule kind : {LrSchedule::linear, LrSchedule::cosine}) {
    EXPECT_DOUBLE_EQ(at(kind, s), m);
    EXPECT_DOUBLE_EQ(at(kind, s + 500), m);  // a trainer driven past S stays at the floor
  }
  EXPECT_DOUBLE_EQ(at(LrSchedule::constant, s - 1), b);
  EXPECT_DOUBLE_EQ(at(LrSchedule::constant, s + 500), b);
  // Without warm-up the decay starts at step 0; with lr_min = 0 it ends at zero.
  EXPECT_DOUBLE_EQ(scheduled_lr(LrSchedule::cosine, b, 0, 0, 4, 0), b);
  EXPECT_DOUBLE_EQ(scheduled_lr(LrSchedule::cosine, b, 0, 0, 4, 2), b / 2);
  EXPECT_DOUBLE_EQ(scheduled_lr(LrSchedule::linear, b, 0, 0, 4, 3), b / 4);
  // The decay is monotone and stays in [m, b].
  for (LrSchedule kind : {LrSchedule::linear, LrSchedule::cosine})
    for (std::int64_t k = w; k < s + 2; ++k) {
      ASSERT_LE(at(kind, k + 1), at(kind, k)) << k;
      ASSERT_GE(at(kind, k), m);
    }
}

TEST(LrSchedule, ConstantIsTheOldWarmupBitForBit) {
  const double b = 3e-4;
  for (std::int64_t w : {0, 1, 4, 7, 5000})
    for (std::int64_t k = 0; k < 40; ++k) {
      // The formula the trainer used before schedules existed.
      const double old = w <= 0 ? b : b * std::min(1.0, static_cast<double>(k + 1) / static_cast<double>(w));
      ASSERT_EQ(scheduled_lr(LrSchedule::constant, b, 0.0, w, 0, k), old) << "W " << w << ", step " << k;
      ASSERT_EQ(train::warmup_lr(b, w, k), old);
    }
}

TEST(LrSchedule, NamesAndRefusals) {
  for (LrSchedule kind : {LrSchedule::constant, LrSchedule::linear, LrSchedule::cosine})
    EXPECT_EQ(train::parse_lr_schedule(train::lr_schedule_name(kind)), kind);
  testing::expect_value_error([] { train::parse_lr_schedule("cosine_with_restarts"); }, "cosine_with_restarts");
  testing::expect_value_error([] { scheduled_lr(LrSchedule::cosine, 1e-3, -1e-6, 0, 10, 0); }, "lr_min");
  testing::expect_value_error([] { scheduled_lr(LrSchedule::linear, 1e-3, 2e-3, 0, 10, 0); }, "lr_min");
  testing::expect_value_error([] { scheduled_lr(LrSchedule::cosine, 1e-3, 0, 10, 10, 0); }, "warm-up");
  testing::expect_value_error([] { scheduled_lr(LrSchedule::constant, 1e-3, 0, 0, 0, -1); }, "step");
  EXPECT_NO_THROW(scheduled_lr(LrSchedule::constant, 1e-3, 0, 10, 0, 3));  // constant needs no horizon
}

// A tiny f64 MLP denoiser on a 2-D Gaussian: the trainer's smallest rig (as test_trainer.cpp).
struct Rig {
  diffusion::DiffusionSchedule schedule{diffusion::cosine_betas(40)};
  std::unique_ptr<toy::MlpDenoiser> model;
  ParameterSlab slab;
  Rig() {
    toy::MlpDenoiserConfig c;
    c.hidden = 16;
    c.layers = 2;
    c.time_dim = 8;
    c.dtype = DType::f64;
    Generator g(1);
    model = std::make_unique<toy::MlpDenoiser>(c, g);
    slab.pack(model->parameters());
  }
};

train::Batch gaussian_batch(std::int64_t, Generator& gen) {
  std::vector<double> v = randn({16, 2}, gen, Device::cpu(), DType::f64).to_double_vector();
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = (i % 2 ? -0.2 : 0.3) + 0.2 * v[i];
  return {Tensor::from_vector(v, {16, 2}, DType::f64), {}};
}

train::TrainerConfig cosine_config() {
  train::TrainerConfig c;
  c.adamw.lr = 1e-2;
  c.warmup_steps = 2;
  c.lr_schedule = LrSchedule::cosine;
  c.lr_min = 1e-4;
  c.total_steps = 8;
  c.ema_rate = 0.99;
  c.seed = 11;
  return c;
}

TEST(LrSchedule, TrainerStepsAtTheCosineRate) {
  Rig r;
  const train::TrainerConfig c = cosine_config();
  train::Trainer tr(r.slab, r.model->fn(), r.schedule, gaussian_batch, c);
  for (std::int64_t k = 0; k < 8; ++k) {
    const train::StepMetrics m = tr.step();
    const double want = cosine_closed_form(1e-2, 1e-4, 2, 8, k);
    EXPECT_NEAR(m.lr, want, 1e-17) << "step " << k;
    EXPECT_EQ(tr.optimizer().lr(), m.lr);  // the logged rate is the one AdamW used
  }
  train::TrainerConfig no_horizon = c;
  no_horizon.total_steps = 0;  // a decaying schedule without the run's length
  testing::expect_value_error([&] { train::Trainer(r.slab, r.model->fn(), r.schedule, gaussian_batch, no_horizon); },
                              "cosine");
}

TEST(LrSchedule, ResumedCosineTrainerIsBitIdentical) {
  const train::TrainerConfig c = cosine_config();
  Rig a;
  train::Trainer straight(a.slab, a.model->fn(), a.schedule, gaussian_batch, c);
  std::vector<double> lr_straight;
  for (int k = 0; k < 8; ++k) lr_straight.push_back(straight.step().lr);

  Rig b;
  train::TrainerState mid;
  {
    train::Trainer first(b.slab, b.model->fn(), b.schedule, gaussian_batch, c);
    for (int k = 0; k < 3; ++k) first.step();
    mid = first.state();
  }
  Rig fresh;  // a new process: fresh weights, then the checkpoint's state
  train::Trainer resumed(fresh.slab, fresh.model->fn(), fresh.schedule, gaussian_batch, c);
  resumed.load_state(mid);
  for (int k = 3; k < 8; ++k) EXPECT_EQ(resumed.step().lr, lr_straight[static_cast<std::size_t>(k)]) << k;
  EXPECT_EQ(fresh.slab.values().to_double_vector(), a.slab.values().to_double_vector());
  EXPECT_EQ(resumed.ema().values().to_double_vector(), straight.ema().values().to_double_vector());
}

run::TrainOptions tiny_cosine(const std::string& out) {
  run::TrainOptions o = ddpm::testing::tiny_run(out);  // 6 steps, warm-up 2, a checkpoint every 3
  o.lr_schedule.schedule = "cosine";
  o.lr_schedule.lr_min = 1e-4;
  return o;
}

std::vector<nlohmann::json> metrics_lines(const std::string& run_dir) {
  std::vector<nlohmann::json> lines;
  const std::string text = read_file(run_dir + "/metrics.jsonl");
  std::size_t at = 0;
  for (std::size_t nl; (nl = text.find('\n', at)) != std::string::npos; at = nl + 1)
    lines.push_back(nlohmann::json::parse(text.substr(at, nl - at)));
  return lines;
}

TEST(LrSchedule, TrainRunLogsTheScheduleAndResumesBitIdentically) {
  const run::TrainOptions straight = tiny_cosine(ddpm::testing::temp_run("lr_cosine_straight"));
  run::train_run(straight);
  const nlohmann::json cfg = run::read_run_config(straight.out);
  EXPECT_EQ(cfg.at("train").at("lr_schedule"), "cosine");
  EXPECT_EQ(cfg.at("train").at("lr_min"), 1e-4);
  EXPECT_EQ(cfg.at("train").at("lr_decay_steps"), 6);
  // metrics.jsonl every 2 steps: the rate of the window's last step (0-based k = done - 1).
  const std::vector<nlohmann::json> lines = metrics_lines(straight.out);
  ASSERT_EQ(lines.size(), 3u);
  for (const nlohmann::json& line : lines) {
    const std::int64_t done = line.at("step").get<std::int64_t>();
    EXPECT_NEAR(line.at("lr").get<double>(), cosine_closed_form(1e-3, 1e-4, 2, 6, done - 1), 1e-18) << done;
  }

  // An interrupted run: resume the straight run's step-3 checkpoint into a second folder.
  run::TrainOptions resumed = tiny_cosine(ddpm::testing::temp_run("lr_cosine_resumed"));
  resumed.resume = run::checkpoint_dir(straight.out, 3);
  const run::TrainResult r = run::train_run(resumed);
  EXPECT_EQ(r.steps_done, 6);
  for (const char* f : {"model.safetensors", "ema.safetensors", "optimizer.safetensors"})
    ddpm::testing::expect_same_tensors(run::checkpoint_dir(straight.out, 6) + "/" + f,
                                       run::checkpoint_dir(resumed.out, 6) + "/" + f);
  const std::vector<nlohmann::json> after = metrics_lines(resumed.out);
  ASSERT_FALSE(after.empty());
  EXPECT_EQ(after.back().at("lr"), lines.back().at("lr"));

  // A changed schedule, floor or horizon is a different run.
  auto refused = [&](const char* what, auto&& change, const std::string& key) {
    SCOPED_TRACE(what);
    run::TrainOptions o = tiny_cosine(straight.out);
    o.resume = run::checkpoint_dir(straight.out, 3);
    change(o);
    testing::expect_value_error([&] { run::train_run(o); }, key);
  };
  refused("linear", [](run::TrainOptions& o) { o.lr_schedule.schedule = "linear"; }, "train.lr_schedule");
  refused("floor", [](run::TrainOptions& o) { o.lr_schedule.lr_min = 2e-4; }, "train.lr_min");
  refused("longer", [](run::TrainOptions& o) { o.steps = 12; }, "train.lr_decay_steps");
  refused("constant", [](run::TrainOptions& o) { o.lr_schedule = {}; }, "train.lr_schedule");
}

TEST(LrSchedule, FlagsAreCheckedInEveryTrainingProgram) {
  // ddpm-train's command line: an unknown --lr-schedule is a usage error (exit 2).
  auto train_exit = [](std::vector<std::string> args) {
    CLI::App app("test", "ddpm-train");
    cli::CommonFlags common;
    cli::add_common_flags(app, common);
    run::TrainOptions o;
    run::add_train_flags(app, o);
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    return cli::run(app, static_cast<int>(argv.size()), argv.data(), [&] {
      run::validate_options(o);
      return 0;
    });
  };
  const std::vector<std::string> ok = {"ddpm-train", "--data", "toy", "--out", "r", "--preset", "none"};
  auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> a = ok;
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  };
  EXPECT_EQ(train_exit(with({"--lr-schedule", "cosine", "--lr-min", "1e-6"})), 0);
  EXPECT_EQ(train_exit(with({"--lr-schedule", "exponential"})), 2);
  EXPECT_EQ(train_exit(with({"--lr-schedule", "cosine", "--lr-min", "-1e-6"})), 2);
  EXPECT_EQ(train_exit(with({"--lr-schedule", "linear", "--lr-min", "1"})), 2);  // above --lr 1e-4

  run::TrainOptions o = ddpm::testing::tiny_run("/tmp/unused");
  o.lr_schedule.schedule = "exponential";
  testing::expect_value_error([&] { run::validate_options(o); }, "--lr-schedule 'exponential' is unknown");
  o.lr_schedule = {"constant", 1e-5};
  testing::expect_value_error([&] { run::validate_options(o); }, "--lr-min 1e-05 has no effect");
  o.lr_schedule = {"cosine", 2e-3};
  testing::expect_value_error([&] { run::validate_options(o); }, "--lr-min 0.002 must lie in [0, --lr 0.001]");
  o.lr_schedule = {"cosine", 0};
  o.warmup_steps = o.steps;
  testing::expect_value_error([&] { run::validate_options(o); }, "leaves none after");

  // ddpm-toy train and ddpm-control train check the same flags.
  run::ToyTrainArgs toy;
  toy.lr_schedule.schedule = "step";
  testing::expect_value_error([&] { run::check_toy_train_args(toy); }, "'step' is unknown");
  toy.lr_schedule = {"cosine", 0};
  toy.steps = 100;  // all warm-up (ddpm-toy warms up over 100 steps)
  testing::expect_value_error([&] { run::check_toy_train_args(toy); }, "leaves none after 100 warm-up steps");
  run::ControlTrainArgs control;
  control.base = control.out = "x";
  control.lr_schedule = {"linear", -1};
  testing::expect_value_error([&] { run::check_control_train_args(control); }, "--lr-min -1");
  control.lr_schedule = {"linear", 0};
  control.warmup_steps = -1;
  testing::expect_value_error([&] { run::check_control_train_args(control); }, "--warmup-steps");
  // ddpm-classifier train and ddpm-autoencoder train, before any data is read.
  std::ostringstream out;
  run::ClassifierTrainArgs cls;
  cls.out = ddpm::testing::temp_run("lr_cls_unused");
  cls.lr_schedule = {"cosine", 1.0};
  testing::expect_value_error([&] { run::run_classifier_train(cls, out); }, "--lr-min 1 must lie in");
  run::AutoencoderTrainArgs ae;
  ae.out = ddpm::testing::temp_run("lr_ae_unused");
  ae.lr_schedule = {"warm-restarts", 0};
  testing::expect_value_error([&] { run::run_autoencoder_train(ae, out); }, "--lr-schedule 'warm-restarts'");
  EXPECT_FALSE(std::filesystem::exists(cls.out) || std::filesystem::exists(ae.out));  // nothing left on disk
}

TEST(LrSchedule, WarmupFlagIsRegisteredAndCheckedWithTheScheduleFlags) {
  // add_warmup_and_lr_schedule_flags: --warmup-steps (parsed into the caller's field, default
  // kept) before --lr-schedule and --lr-min; validate_lr_schedule_flags refuses a negative one.
  CLI::App app("t");
  std::int64_t warmup = 7;
  run::LrScheduleFlags flags;
  run::add_warmup_and_lr_schedule_flags(app, warmup, flags, "Training");
  ASSERT_NE(app.get_option_no_throw("--warmup-steps"), nullptr);
  EXPECT_EQ(app.get_option("--warmup-steps")->get_group(), "Training");
  EXPECT_NE(app.help().find("--warmup-steps INT=7"), std::string::npos) << app.help();
  const char* argv[] = {"t", "--warmup-steps", "12", "--lr-schedule", "cosine"};
  app.parse(5, const_cast<char**>(argv));
  EXPECT_EQ(warmup, 12);
  EXPECT_EQ(flags.schedule, "cosine");
  EXPECT_NO_THROW(run::validate_lr_schedule_flags(flags, 1e-3, warmup, 100));
  testing::expect_value_error([&] { run::validate_lr_schedule_flags(flags, 1e-3, -1, 100); },
                              "--warmup-steps must be >= 0, got -1");
}

}  // namespace
}  // namespace ddpm
