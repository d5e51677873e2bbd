// Post-hoc EMA in ddpm-control train (models/run/posthoc_flags.h) and its export
// (ddpm-export --posthoc-ema of a control run; posthoc_export.h, control_run.h): the snapshots
// hold the power EMAs of the ControlNet's weights alone (recomputed here in double from the
// checkpoints), a resumed run writes the same bytes, the reconstruction at a tracked width is
// that tracked EMA, and the exported folder opens as a control run for ddpm-sample --control.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <climits>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "engine/error.h"
#include "engine/io/safetensors.h"
#include "models/run/checkpoint.h"
#include "models/run/control_run.h"
#include "models/run/posthoc_export.h"
#include "models/run/sample_run.h"
#include "models/train/posthoc_ema.h"
#include "models/unet/model_io.h"
#include "support/tiny_control.h"

namespace ddpm::run {
namespace {

namespace fs = std::filesystem;

using Weights = std::map<std::string, std::vector<double>>;

Weights read_weights(const std::string& path, const std::string& prefix = "") {
  Weights w;
  for (const auto& [name, t] : load_safetensors(path).tensors)
    if (name.compare(0, prefix.size(), prefix) == 0) w[name.substr(prefix.size())] = t.to_double_vector();
  return w;
}

Weights to_weights(const std::vector<std::pair<std::string, Tensor>>& tensors) {
  Weights w;
  for (const auto& [name, t] : tensors) w[name] = t.to_double_vector();
  return w;
}

// The power-function EMA of posthoc_ema.h run in double over theta_1..theta_t:
// theta_hat <- beta_t theta_hat + (1 - beta_t) theta_t, beta_t = (1 - 1/t)^(gamma + 1).
Weights track(const std::vector<Weights>& theta, double gamma, std::int64_t t) {
  Weights ema = theta[0];
  for (std::int64_t tau = 1; tau <= t; ++tau) {
    const double beta = std::pow(1.0 - 1.0 / static_cast<double>(tau), gamma + 1.0);
    for (auto& [name, v] : ema)
      for (std::size_t i = 0; i < v.size(); ++i) v[i] = beta * v[i] + (1.0 - beta) * theta[tau - 1].at(name)[i];
  }
  return ema;
}

// max |a - b| / max |b| over every tensor; the two must hold the same names.
double relative_difference(const Weights& a, const Weights& b) {
  EXPECT_EQ(a.size(), b.size());
  double diff = 0, scale = 0;
  for (const auto& [name, vb] : b) {
    const auto it = a.find(name);
    if (it == a.end()) {
      ADD_FAILURE() << name << " is missing";
      continue;
    }
    for (std::size_t i = 0; i < vb.size(); ++i) {
      diff = std::max(diff, std::abs(it->second[i] - vb[i]));
      scale = std::max(scale, std::abs(vb[i]));
    }
  }
  return diff / scale;
}

// A tiny pixel-space DDPM base (tiny_control.h), trained once.
const std::string& base_run() {
  static const std::string dir = testing::train_tiny_base("control_posthoc_base", [](TrainOptions&) {});
  return dir;
}

// tiny_control_args (four steps, a checkpoint every two) with power EMAs of widths 0.05 and
// 0.10 snapshotted after every step.
ControlTrainArgs posthoc_control(const std::string& out) {
  ControlTrainArgs a = testing::tiny_control_args(base_run(), out);
  a.posthoc_ema = "0.05,0.10";
  a.posthoc_snapshot_every = 1;
  return a;
}

// The ddpm-export binary, built beside cpu_tests; empty when absent.
std::string export_binary() {
  char buf[PATH_MAX] = {};
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return "";
  const fs::path p = fs::path(std::string(buf, static_cast<std::size_t>(n))).parent_path() / "ddpm-export";
  return fs::exists(p) ? p.string() : "";
}

std::string read_all(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

TEST(ControlPosthoc, SnapshotsTrackTheControlNetResumeBitIdenticallyAndReconstruct) {
  const std::string full = testing::temp_run("control_posthoc_full");
  const std::string split = testing::temp_run("control_posthoc_split");
  // The uninterrupted run checkpoints every step: its model weights are theta_1..theta_4.
  auto args = [&](const std::string& out) {
    ControlTrainArgs a = posthoc_control(out);
    if (out == full) a.save_every = 1;
    return a;
  };
  testing::expect_control_resume_bit_identical(args, full, split);
  for (int t = 1; t <= 4; ++t) {
    const std::string name = "/posthoc/step_" + std::to_string(t) + ".safetensors";
    testing::expect_same_tensors(full + name, split + name);  // the resumed run rewrote steps 3, 4 alike
  }
  testing::expect_same_tensors(checkpoint_dir(full, 4) + "/" + kPowerEmaFile,
                               checkpoint_dir(split, 4) + "/" + kPowerEmaFile);
  const nlohmann::json cfg = read_run_config(full);
  EXPECT_EQ(cfg.at("train").at("posthoc_ema"), nlohmann::json::array({0.05, 0.10}));
  EXPECT_EQ(cfg.at("run").at("posthoc_snapshot_every"), 1);

  std::vector<Weights> theta;
  for (int t = 1; t <= 4; ++t) theta.push_back(read_weights(checkpoint_dir(full, t) + "/" + kModelFile));
  const std::vector<PosthocSnapshot> snaps = list_posthoc_snapshots(full);
  ASSERT_EQ(snaps.size(), 4u);
  for (const PosthocSnapshot& s : snaps) {
    EXPECT_EQ(s.updates, s.step);
    ASSERT_EQ(s.gammas.size(), 2u);
    for (std::size_t i = 0; i < 2; ++i) {
      const Weights snap = read_weights(s.path, train::power_ema_prefix(i));
      // The ControlNet alone: its zero convs, none of the frozen base's decoder.
      EXPECT_EQ(snap.count("controlnet_mid_block.weight"), 1u) << s.path;
      for (const auto& [name, v] : snap) EXPECT_EQ(name.find("up_blocks"), std::string::npos) << name;
      EXPECT_LT(relative_difference(snap, track(theta, s.gammas[i], s.updates)), 1e-6) << s.path << " " << i;
    }
  }

  // At a tracked width the reconstruction is that tracker's EMA (the basis holds its profile).
  const PosthocResult tracked = reconstruct_posthoc_ema(full, 0.10);
  EXPECT_EQ(tracked.step, 4);
  EXPECT_LT(tracked.solution.relative_residual, 1e-9);
  const Weights ema_010 = read_weights(checkpoint_dir(full, 4) + "/" + kPowerEmaFile, train::power_ema_prefix(1));
  EXPECT_LT(relative_difference(to_weights(tracked.weights), ema_010), 1e-5);
  // Another width, at the last snapshot and at step 3, against a tracker of it run directly.
  for (std::int64_t step : {0, 3}) {
    const PosthocResult r = reconstruct_posthoc_ema(full, 0.08, step);
    EXPECT_LT(r.solution.relative_residual, 1e-6);
    EXPECT_LT(relative_difference(to_weights(r.weights), track(theta, train::gamma_from_sigma_rel(0.08), r.updates)),
              1e-4)
        << step;
  }

  // A changed list is a changed run.
  ControlTrainArgs changed = posthoc_control(split);
  changed.resume = "latest";
  changed.steps = 5;
  changed.posthoc_ema = "0.05";
  try {
    train_control_run(changed);
    FAIL() << "no error";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("train.posthoc_ema"), std::string::npos) << e.what();
  }
  // Flags that make no sense.
  ControlTrainArgs bad = posthoc_control(testing::temp_run("control_posthoc_bad"));
  bad.posthoc_ema = "0.05,0.5";
  EXPECT_THROW(check_control_train_args(bad), ValueError);
  bad.posthoc_ema.clear();  // --posthoc-snapshot-every 1 without --posthoc-ema
  EXPECT_THROW(check_control_train_args(bad), ValueError);
}

TEST(ControlPosthoc, TheExportOpensAsAControlRunWithTheReconstructedWeights) {
  const std::string ctrl = testing::temp_run("control_posthoc_export_run");
  train_control_run(posthoc_control(ctrl));
  const PosthocResult r = reconstruct_posthoc_ema(ctrl, 0.08);
  const std::string dir = testing::temp_path("control_posthoc_export");
  write_posthoc_model(r, dir);
  EXPECT_FALSE(fs::exists(dir + "/autoencoder"));
  EXPECT_TRUE(is_control_run_folder(dir));
  EXPECT_TRUE(is_control_run_folder(ctrl));
  EXPECT_FALSE(is_control_run_folder(base_run()));

  const ControlRun opened = open_control_run(dir, Device::cpu());
  EXPECT_EQ(opened.checkpoint, dir);
  EXPECT_EQ(opened.config.at("architecture"), kControlNetArchitecture);
  EXPECT_DOUBLE_EQ(opened.config.at("posthoc_ema").at("sigma_rel").get<double>(), 0.08);
  EXPECT_EQ(opened.config.at("base"), read_run_config(ctrl).at("base"));
  const Weights loaded = to_weights(unet::export_state_dict(*opened.net));
  EXPECT_EQ(relative_difference(loaded, to_weights(r.weights)), 0.0);  // stored f32, loaded f32

  // ddpm-sample --control takes the export like the run; its weights are not the run's EMA.
  SampleOptions s;
  s.checkpoint = base_run();
  s.sampler = "ddim";
  s.sampling_steps = 5;
  s.num_samples = 2;
  s.num_samples_given = true;
  s.control_from = "toy";
  s.seed = 3;
  s.control = dir;
  s.out = testing::temp_run("control_posthoc_sample_export");
  const SampleResult from_export = run_sample(s);
  const nlohmann::json info = nlohmann::json::parse(read_all(s.out + "/sample_info.json"));
  EXPECT_EQ(info.at("control").at("checkpoint"), dir);
  EXPECT_EQ(from_export.pixels.size(), 2u * 16 * 16);
  // (The tiny model's samples saturate to 0 / 255, so the weights are compared, not pixels.)
  const ControlRun run = open_control_run(ctrl, Device::cpu());
  EXPECT_GT(relative_difference(to_weights(unet::export_state_dict(*run.net)), loaded), 1e-4)
      << "the export holds the run's classic EMA, not the reconstruction";

  // The ddpm-export binary writes the same folder; --probe is refused for a ControlNet and
  // leaves no --out behind.
  const std::string bin = export_binary();
  ASSERT_FALSE(bin.empty()) << "ddpm-export is not built beside cpu_tests (build every target)";
  const std::string out = testing::temp_path("control_posthoc_export_cli");
  const std::string cmd = bin + " --checkpoint " + ctrl + " --posthoc-ema 0.08 --out " + out + " > /dev/null";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  testing::expect_same_tensors(dir + "/" + kEmaFile, out + "/" + kEmaFile);
  const std::string probed = testing::temp_path("control_posthoc_probe");
  const std::string probe_cmd = bin + " --checkpoint " + ctrl + " --posthoc-ema 0.08 --probe " + probed +
                                "/p.safetensors --out " + probed + " > /dev/null 2>&1";
  const int rc = std::system(probe_cmd.c_str());
  EXPECT_TRUE(WIFEXITED(rc) && WEXITSTATUS(rc) == 2) << probe_cmd;
  EXPECT_FALSE(fs::exists(probed));

  // Refusals as for a ddpm-train run: an existing --out, a width out of range, a control run
  // without snapshots.
  EXPECT_THROW(write_posthoc_model(r, dir), ValueError);
  EXPECT_THROW(reconstruct_posthoc_ema(ctrl, 0.5), ValueError);
  ControlTrainArgs plain = testing::tiny_control_args(base_run(), testing::temp_run("control_posthoc_plain"));
  plain.steps = 1;
  train_control_run(plain);
  EXPECT_FALSE(fs::exists(plain.out + "/posthoc"));
  EXPECT_FALSE(fs::exists(checkpoint_dir(plain.out, 1) + "/" + kPowerEmaFile));
  EXPECT_THROW(reconstruct_posthoc_ema(plain.out, 0.08), IoError);
}

}  // namespace
}  // namespace ddpm::run
