// Post-hoc EMA in ddpm-train and ddpm-export (models/run/posthoc_export.h) on the tiny run of
// tests/support/tiny_run.h: the snapshots hold the power EMAs of the weights the checkpoints
// record (recomputed here in double), a resumed run writes the same bytes, the reconstruction
// matches a tracker of the requested width run directly, and the exported folder opens with
// open_model (the ddpm-export binary beside this test writes the same weights).
#include <gtest/gtest.h>

#include <unistd.h>

#include <climits>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <map>

#include "engine/error.h"
#include "engine/io/atomic_file.h"
#include "engine/io/safetensors.h"
#include "models/run/checkpoint.h"
#include "models/run/model_source.h"
#include "models/run/posthoc_export.h"
#include "models/run/train_run.h"
#include "models/train/posthoc_ema.h"
#include "models/unet/model_io.h"
#include "support/posthoc_reference.h"
#include "support/temp_dir.h"
#include "support/tiny_run.h"

namespace fs = std::filesystem;
using namespace ddpm;

namespace {

using ddpm::testing::read_weights;
using ddpm::testing::relative_difference;
using ddpm::testing::track;
using ddpm::testing::Weights;

run::TrainOptions posthoc_run(const std::string& name) {
  run::TrainOptions o = ddpm::testing::tiny_run(ddpm::testing::temp_run(name));
  o.posthoc_ema = "0.05,0.10";
  o.posthoc_snapshot_every = 1;
  o.save_every = 1;  // a checkpoint (raw weights theta_t) after every step, for the reference
  return o;
}

}  // namespace

TEST(PosthocEmaRun, SnapshotsTrackTheWeightsAndResumeBitIdentically) {
  const run::TrainOptions straight = posthoc_run("posthoc_straight");
  run::train_run(straight);
  const nlohmann::json cfg = run::read_run_config(straight.out);
  EXPECT_EQ(cfg.at("train").at("posthoc_ema"), nlohmann::json::array({0.05, 0.10}));

  std::vector<Weights> theta;  // theta_1..theta_6 from the checkpoints
  for (int t = 1; t <= 6; ++t) theta.push_back(read_weights(run::checkpoint_dir(straight.out, t) + "/model.safetensors"));
  const std::vector<run::PosthocSnapshot> snaps = run::list_posthoc_snapshots(straight.out);
  ASSERT_EQ(snaps.size(), 6u);
  for (const run::PosthocSnapshot& s : snaps) {
    EXPECT_EQ(s.updates, s.step);  // nothing skipped
    ASSERT_EQ(s.gammas.size(), 2u);
    for (std::size_t i = 0; i < 2; ++i) {
      EXPECT_DOUBLE_EQ(s.gammas[i], train::gamma_from_sigma_rel(i == 0 ? 0.05 : 0.10));
      const Weights snap = read_weights(s.path, train::power_ema_prefix(i));
      EXPECT_LT(relative_difference(snap, track(theta, s.gammas[i], s.updates)), 1e-6) << s.path << " " << i;
    }
  }
  // beta_1 = 0: the first snapshot is theta_1 itself.
  EXPECT_EQ(read_weights(snaps[0].path, "phema1."), theta[0]);

  // Resumed at step 3 (with checkpoints every 3 steps): the same snapshots and power EMAs.
  run::TrainOptions first = posthoc_run("posthoc_resumed");
  first.save_every = 3;
  first.steps = 3;
  run::train_run(first);
  run::TrainOptions second = first;
  second.steps = 6;
  second.resume = "latest";
  run::train_run(second);
  for (int t = 1; t <= 6; ++t) {
    const std::string name = "/posthoc/step_" + std::to_string(t) + ".safetensors";
    ddpm::testing::expect_same_tensors(straight.out + name, second.out + name);
  }
  ddpm::testing::expect_same_tensors(run::checkpoint_dir(straight.out, 6) + "/" + run::kPowerEmaFile,
                               run::checkpoint_dir(second.out, 6) + "/" + run::kPowerEmaFile);
  ddpm::testing::expect_same_tensors(run::checkpoint_dir(straight.out, 6) + "/ema.safetensors",
                               run::checkpoint_dir(second.out, 6) + "/ema.safetensors");

  // A changed list is a changed run.
  run::TrainOptions changed = second;
  changed.steps = 7;
  changed.posthoc_ema = "0.05";
  try {
    run::train_run(changed);
    FAIL() << "no error";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("train.posthoc_ema"), std::string::npos) << e.what();
  }
}

// The ddpm-export binary, built beside cpu_tests; empty when absent.
std::string export_binary() {
  char buf[PATH_MAX] = {};
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return "";
  const fs::path p = fs::path(std::string(buf, static_cast<std::size_t>(n))).parent_path() / "ddpm-export";
  return fs::exists(p) ? p.string() : "";
}

TEST(PosthocEmaRun, ExportReconstructsAnyWidthAndOpensAsACheckpoint) {
  run::TrainOptions o = posthoc_run("posthoc_export");
  o.steps = 8;
  o.save_every = 1;
  run::train_run(o);
  std::vector<Weights> theta;
  for (int t = 1; t <= 8; ++t) theta.push_back(read_weights(run::checkpoint_dir(o.out, t) + "/model.safetensors"));

  // Width 0.08 at the last snapshot and at step 5, against a tracker of 0.08 run directly.
  for (std::int64_t step : {0, 5}) {
    const run::PosthocResult r = run::reconstruct_posthoc_ema(o.out, 0.08, step);
    EXPECT_EQ(r.step, step == 0 ? 8 : 5);
    EXPECT_EQ(r.basis.size(), 2 * r.snapshot_steps.size());
    EXPECT_LT(r.solution.relative_residual, 1e-6);  // a snapshot every step spans the profile
    Weights rec;
    for (const auto& [name, t] : r.weights) rec[name] = t.to_double_vector();
    EXPECT_LT(relative_difference(rec, track(theta, train::gamma_from_sigma_rel(0.08), r.updates)), 1e-4) << step;
  }

  // The folder: the run's settings, the reconstructed weights, loadable by open_model.
  const run::PosthocResult r = run::reconstruct_posthoc_ema(o.out, 0.08);
  const std::string dir = ddpm::testing::temp_path("posthoc_export_dir");
  fs::remove_all(dir);
  run::write_posthoc_model(r, dir);
  const run::ModelSource src = run::open_model(dir, Device::cpu());
  EXPECT_EQ(src.kind, "checkpoint folder");
  EXPECT_TRUE(src.ema);
  EXPECT_EQ(src.diffusion.diffusion_steps, 50);
  EXPECT_FALSE(src.diffusion.edm.has_value());
  const auto loaded = unet::export_state_dict(*src.net);
  ASSERT_EQ(loaded.size(), r.weights.size());
  for (const auto& [name, t] : loaded) {
    bool found = false;
    for (const auto& [n2, t2] : r.weights)
      if (n2 == name) {
        EXPECT_EQ(t.to_vector(), t2.to_vector()) << name;
        found = true;
      }
    EXPECT_TRUE(found) << name;
  }
  const nlohmann::json cfg = run::read_run_config(dir);
  EXPECT_DOUBLE_EQ(cfg.at("posthoc_ema").at("sigma_rel").get<double>(), 0.08);
  EXPECT_THROW(run::write_posthoc_model(r, dir), ValueError);  // not empty, no overwrite

  // The ddpm-export binary writes the same weights.
  const std::string bin = export_binary();
  ASSERT_FALSE(bin.empty()) << "ddpm-export is not built beside cpu_tests (build every target)";
  const std::string out = ddpm::testing::temp_path("posthoc_export_cli");
  fs::remove_all(out);
  const std::string cmd = bin + " --checkpoint " + o.out + " --posthoc-ema 0.08 --out " + out + " > /dev/null";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  ddpm::testing::expect_same_tensors(dir + "/ema.safetensors", out + "/ema.safetensors");

  // Refusals.
  EXPECT_THROW(run::reconstruct_posthoc_ema(o.out, 0.5), ValueError);      // sigma_rel out of range
  EXPECT_THROW(run::reconstruct_posthoc_ema(o.out, 0.08, 9), ValueError);  // past the last snapshot
  EXPECT_THROW(run::reconstruct_posthoc_ema(o.out, 0.08, 1), ValueError);  // one snapshot only
  EXPECT_THROW(run::reconstruct_posthoc_ema(run::checkpoint_dir(o.out, 8) + "/nothing", 0.08), IoError);
  run::TrainOptions plain = ddpm::testing::tiny_run(ddpm::testing::temp_run("posthoc_plain"));
  plain.steps = 1;
  run::train_run(plain);
  EXPECT_FALSE(fs::exists(plain.out + "/posthoc"));
  EXPECT_FALSE(fs::exists(run::checkpoint_dir(plain.out, 1) + "/" + run::kPowerEmaFile));
  EXPECT_THROW(run::reconstruct_posthoc_ema(plain.out, 0.08), IoError);  // no posthoc/ folder
}

TEST(PosthocEmaRun, FlagsAreValidated) {
  run::TrainOptions o = ddpm::testing::tiny_run(ddpm::testing::temp_run("posthoc_flags"));
  o.posthoc_ema = "0.05,0.4";
  EXPECT_THROW(run::validate_options(o), ValueError);
  o.posthoc_ema = "";
  o.posthoc_snapshot_every = 10;
  EXPECT_THROW(run::validate_options(o), ValueError);
  o.posthoc_ema = "0.1";
  EXPECT_NO_THROW(run::validate_options(o));
}

// A step between snapshots: the export stands, and the note names the bracketing snapshot
// steps and the nearest one (ties to the earlier); at a snapshot there is no note. The steps
// after the last snapshot below the request are in no basis profile, so a tracked width (exact
// at any snapshot step) is reconstructed only approximately there.
TEST(PosthocEmaRun, AStepBetweenSnapshotsIsExportedWithANoteNamingTheNearestSnapshot) {
  run::TrainOptions o = ddpm::testing::tiny_run(ddpm::testing::temp_run("posthoc_gap"));
  o.steps = 12;
  o.save_every = 12;
  o.posthoc_ema = "0.05,0.10";
  o.posthoc_snapshot_every = 4;  // snapshots at steps 4, 8 and 12
  run::train_run(o);
  struct Case {
    std::int64_t step, before, after, nearest, gap;
  };
  for (const Case c : {Case{9, 8, 12, 8, 1}, Case{10, 8, 12, 8, 2}, Case{11, 8, 12, 12, 3}}) {
    const run::PosthocResult r = run::reconstruct_posthoc_ema(o.out, 0.05, c.step);
    EXPECT_EQ(r.snapshot_steps.back(), c.before);
    EXPECT_EQ(r.next_snapshot_step, c.after);
    EXPECT_GT(r.solution.relative_residual, 1e-4) << c.step;  // no basis for the last steps
    const std::string note = run::posthoc_gap_note(r);
    for (const std::string& want :
         {"step " + std::to_string(c.step) + " lies between the post-hoc EMA snapshots of steps " +
              std::to_string(c.before) + " and " + std::to_string(c.after),
          "the " + std::to_string(c.gap) + (c.gap == 1 ? " step after step " : " steps after step ") +
              std::to_string(c.before),
          "the nearest snapshot step is " + std::to_string(c.nearest) + " (--posthoc-step " +
              std::to_string(c.nearest) + ")"})
      EXPECT_NE(note.find(want), std::string::npos) << "'" << want << "' not in: " << note;
  }
  const run::PosthocResult at8 = run::reconstruct_posthoc_ema(o.out, 0.05, 8);
  EXPECT_LT(at8.solution.relative_residual, 1e-6);  // a tracked width at a snapshot: exact
  EXPECT_EQ(run::posthoc_gap_note(at8), "");
  EXPECT_EQ(at8.next_snapshot_step, 12);
  EXPECT_EQ(run::posthoc_gap_note(run::reconstruct_posthoc_ema(o.out, 0.05)), "");

  // The ddpm-export binary prints the note and still writes the folder.
  const std::string bin = export_binary();
  ASSERT_FALSE(bin.empty()) << "ddpm-export is not built beside cpu_tests (build every target)";
  const std::string out = ddpm::testing::temp_path("posthoc_gap_cli"), log = out + ".log";
  fs::remove_all(out);
  const std::string cmd =
      bin + " --checkpoint " + o.out + " --posthoc-ema 0.05 --posthoc-step 11 --out " + out + " > " + log;
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  const std::string printed = read_file(log);
  EXPECT_NE(printed.find("warning: step 11 lies between the post-hoc EMA snapshots of steps 8 and 12"), std::string::npos)
      << printed;
  EXPECT_NE(printed.find("(--posthoc-step 12)"), std::string::npos) << printed;
  EXPECT_TRUE(fs::exists(out + "/ema.safetensors"));
  // Past the last snapshot: refused, naming the folder and the step to ask for instead.
  try {
    run::reconstruct_posthoc_ema(o.out, 0.05, 13);
    FAIL() << "no error";
  } catch (const ValueError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("past the last post-hoc EMA snapshot (step 12) in " + o.out), std::string::npos) << m;
    EXPECT_NE(m.find("(--posthoc-step 12)"), std::string::npos) << m;
  }
}

// The solve's own errors, raised on profiles, reach the user naming the snapshot folder and
// steps they came from (the wrapping is in posthoc_export, the math knows no files).
TEST(PosthocEmaRun, SolverErrorsNameTheSnapshotFolder) {
  const train::PowerProfile target{train::gamma_from_sigma_rel(0.08), 6};
  // The plain solve: the message speaks of profiles only.
  std::string plain;
  try {
    train::solve_posthoc_coefficients({{6.9, 3}, {6.9, 0}}, target);
  } catch (const ValueError& e) {
    plain = strip_source_locations(e.what());
  }
  ASSERT_NE(plain.find("t >= 1"), std::string::npos) << plain;
  EXPECT_EQ(plain.find("runs/x"), std::string::npos);
  for (const auto& basis : {std::vector<train::PowerProfile>{{6.9, 3}, {6.9, 0}}, std::vector<train::PowerProfile>{}}) {
    try {
      run::solve_posthoc_snapshots("runs/x/posthoc", {3, 6}, basis, target);
      FAIL() << "no error";
    } catch (const ValueError& e) {
      const std::string m = e.what();
      EXPECT_NE(m.find("post-hoc EMA reconstruction from the snapshots in runs/x/posthoc (steps 3, 6)"),
                std::string::npos)
          << m;
      EXPECT_NE(m.find(basis.empty() ? "no snapshot profiles" : plain), std::string::npos) << m;
    }
  }
  // And a valid basis goes through unchanged.
  const train::PosthocSolution a = run::solve_posthoc_snapshots("runs/x/posthoc", {6}, {{target.gamma, 6}}, target);
  const train::PosthocSolution b = train::solve_posthoc_coefficients({{target.gamma, 6}}, target);
  EXPECT_EQ(a.coefficients, b.coefficients);
  EXPECT_EQ(a.relative_residual, b.relative_residual);
}
