// Activation checkpointing of the KL autoencoder (models/autoencoder/autoencoder.h,
// engine/recompute.h): the training loss's gradients with recomputation are those without
// it (compared in f64, each run's own backward being the independent second code path),
// the peak of live tensor bytes falls, and `ddpm-autoencoder train --gradient-checkpointing`
// trains the same weights and records the flag.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "apps/common/cli.h"
#include "engine/math_mode.h"
#include "models/run/autoencoder_run.h"
#include "support/autoencoder_recompute_step.h"
#include "support/temp_dir.h"
#include "support/tiny_run.h"

namespace ddpm {
namespace {

using testing::AutoencoderStep;
using testing::autoencoder_training_step;

TEST(AutoencoderRecompute, LossGradientsMatchWithoutRecomputationInF64) {
  const AutoencoderStep plain = autoencoder_training_step(Device::cpu(), DType::f64, false);
  const AutoencoderStep again = autoencoder_training_step(Device::cpu(), DType::f64, true);
  // The forward runs the same kernels in the same order (under no-grad mode): the loss is
  // the same number.
  EXPECT_EQ(plain.loss, again.loss);
  ASSERT_EQ(plain.grads.size(), again.grads.size());
  // Inside a block the recomputed backward is the plain one. Each block's input has two
  // consumers (GroupNorm and the residual or shortcut), whose gradient parts the plain tape
  // sums in its order and the nested tape in its own; the sums may therefore differ in the
  // last bits (float addition is not associative). Observed: every element bit-identical.
  std::size_t nonzero = 0, equal = 0;
  double scale = 0.0, worst = 0.0;
  for (std::size_t i = 0; i < plain.grads.size(); ++i) {
    scale = std::max(scale, std::fabs(plain.grads[i]));
    worst = std::max(worst, std::fabs(plain.grads[i] - again.grads[i]));
    nonzero += plain.grads[i] != 0.0;
    equal += plain.grads[i] == again.grads[i];
  }
  std::printf("    %zu of %zu gradient elements bit-identical; worst difference %.3g of the largest\n", equal,
              plain.grads.size(), worst / scale);
  EXPECT_LE(worst, 1e-13 * scale);               // f64 rounding, far below any real gradient change
  EXPECT_GT(nonzero, plain.grads.size() * 9 / 10);  // the backward reached the whole network
  EXPECT_EQ(plain.leaked_bytes, 0u);               // the tape and what it saved died with the step
  EXPECT_EQ(again.leaked_bytes, 0u);
}

TEST(AutoencoderRecompute, PeakActivationBytesAreLower) {
  // 32x32 images: the full-resolution blocks dominate, as they do in a real first stage.
  const AutoencoderStep plain = autoencoder_training_step(Device::cpu(), DType::f32, false, 4, 32);
  const AutoencoderStep again = autoencoder_training_step(Device::cpu(), DType::f32, true, 4, 32);
  std::printf("    peak activation bytes: %zu without recomputation, %zu with (%.2fx)\n", plain.peak_bytes,
              again.peak_bytes, static_cast<double>(again.peak_bytes) / static_cast<double>(plain.peak_bytes));
  EXPECT_LT(again.peak_bytes, plain.peak_bytes * 3 / 4)
      << again.peak_bytes << " bytes with recomputation, " << plain.peak_bytes << " without";
  EXPECT_EQ(again.leaked_bytes, 0u);
}

// ddpm-autoencoder's command line, run in-process as apps/ddpm_autoencoder.cpp runs it.
std::pair<int, std::string> autoencoder_cli(std::vector<std::string> args) {
  MathModeScope restore;  // resolve_device applies --tf32 and --conv-algo process-wide
  CLI::App app("ddpm-autoencoder", "ddpm-autoencoder");
  cli::CommonFlags common;
  cli::add_common_flags(app, common);
  run::AutoencoderCommand command;
  run::add_autoencoder_subcommands(app, command);
  args.insert(args.begin(), "ddpm-autoencoder");
  std::vector<char*> argv;
  for (auto& s : args) argv.push_back(s.data());
  std::ostringstream out;
  ::testing::internal::CaptureStderr();
  const int rc = cli::run(app, static_cast<int>(argv.size()), argv.data(), [&] {
    run::run_autoencoder_command(command, cli::resolve_device(common), common.seed, out);
    return 0;
  });
  return {rc, ::testing::internal::GetCapturedStderr() + out.str()};
}

// The same gradients each step (to float rounding), so the same Adam trajectory: the two
// folders' weights agree far below what the training moved them, and the flag is recorded.
TEST(AutoencoderRecompute, TrainWithGradientCheckpointingGivesTheSameWeights) {
  testing::TempDir tmp("ae-recompute");
  auto train = [&](const std::string& name, int steps, bool recompute) {
    std::vector<std::string> args{"train",          "--data",         "toy",       "--out", tmp.path + "/" + name,
                                  "--steps",        std::to_string(steps), "--batch-size", "8", "--lr",
                                  "1e-3",           "--base-channels", "8",       "--channel-mult", "1,2",
                                  "--norm-groups",  "4",              "--z-channels", "3", "--scale-images",
                                  "16",             "--log-every",    "0"};
    if (recompute) args.push_back("--gradient-checkpointing");
    const auto r = autoencoder_cli(args);
    EXPECT_EQ(r.first, 0) << r.second;
    std::ifstream f(tmp.path + "/" + name + "/config.json");
    return nlohmann::json::parse(f);
  };
  const nlohmann::json start = train("one_step", 1, false);
  const nlohmann::json plain = train("plain", 6, false);
  const nlohmann::json again = train("recompute", 6, true);
  EXPECT_EQ(plain.at("train").at("gradient_checkpointing"), false);
  EXPECT_EQ(again.at("train").at("gradient_checkpointing"), true);
  const double moved = testing::max_abs_difference(tmp.path + "/plain/model.safetensors",
                                                   tmp.path + "/one_step/model.safetensors");
  const double worst = testing::max_abs_difference(tmp.path + "/plain/model.safetensors",
                                                   tmp.path + "/recompute/model.safetensors");
  std::printf("    weights after 6 steps: max |with - without| %.3g; steps 2-6 moved them by %.3g\n", worst, moved);
  EXPECT_GT(moved, 1e-3);          // steps 2-6 changed the weights (lr 1e-3) ...
  EXPECT_LE(worst, 1e-4 * moved);  // ... and the two runs agree far below that
  EXPECT_NEAR(plain.at("train").at("final_loss").get<double>(), again.at("train").at("final_loss").get<double>(),
              1e-5 * std::fabs(plain.at("train").at("final_loss").get<double>()));
}

}  // namespace
}  // namespace ddpm
