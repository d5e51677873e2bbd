// Post-hoc EMA in the toy kit (ddpm-toy train --posthoc-ema, ddpm-toy posthoc;
// models/run/toy_posthoc.cpp).
//
// The independent computations:
//   - the weight sequence theta_1 .. theta_N is rebuilt by training from scratch for k = 1..N
//     steps (the toy's training is deterministic and its first k steps do not depend on
//     --steps: warm-up fixed at 100, constant rate), and a PowerEma is run over it with
//     t = k; the snapshots in the written folder must hold exactly those averages;
//   - reconstructing a tracked width at the last snapshot must give that tracker's weights
//     (the least-squares mix of posthoc_ema.h is exact there);
//   - the posthoc table's raw and ema rows must score what `sample` scores for the same
//     weights, seed and sample count (a second code path for sampling and scoring).
#include <gtest/gtest.h>

#include <cmath>
#include <sstream>

#include "engine/io/safetensors.h"
#include "models/run/posthoc_export.h"
#include "models/run/toy_run.h"
#include "tests/support/temp_dir.h"
#include "tests/support/value_error.h"

namespace ddpm {
namespace {

using run::ToyTrainArgs;

ToyTrainArgs tiny_args(std::int64_t steps) {
  ToyTrainArgs a;
  a.data = "moons";
  a.steps = steps;
  a.batch_size = 32;
  a.hidden = 16;
  a.layers = 1;
  a.diffusion_steps = 100;
  a.seed = 3;
  return a;
}

constexpr std::int64_t kSteps = 12, kEvery = 4;
const std::vector<double> kWidths = {0.05, 0.10};

// A trained folder with snapshots at steps 4, 8 and 12; the tracker values of the last one.
struct TrainedFolder {
  std::string dir;
  run::ToyTrainReport report;
};
TrainedFolder train_folder(const std::string& name) {
  ToyTrainArgs a = tiny_args(kSteps);
  a.posthoc_ema = "0.05,0.10";
  a.posthoc_snapshot_every = kEvery;
  run::ToyModel m = run::make_toy_model(a);
  TrainedFolder f{testing::temp_path(name), run::train_toy_model(m, a)};
  run::save_toy_model(m, f.report.ema, {{"ema_rate", a.ema_rate}}, {}, 0, 0, f.dir, false, f.report.posthoc);
  return f;
}

float max_abs_diff(const Tensor& a, const Tensor& b) {
  const std::vector<float> x = a.to_vector(), y = b.to_vector();
  EXPECT_EQ(x.size(), y.size());
  float d = 0;
  for (std::size_t i = 0; i < x.size() && i < y.size(); ++i) d = std::max(d, std::abs(x[i] - y[i]));
  return d;
}

TEST(ToyPosthoc, SnapshotsEqualPowerEmasOverTheWeightSequence) {
  const TrainedFolder f = train_folder("toy_posthoc_seq");
  const std::vector<run::PosthocSnapshot> snaps = run::list_posthoc_snapshots(f.dir);
  ASSERT_EQ(snaps.size(), 3u);

  std::vector<train::PowerEma> emas;
  std::size_t next = 0;
  for (std::int64_t k = 1; k <= kSteps; ++k) {
    ToyTrainArgs b = tiny_args(k);  // the same run, stopped after k steps: theta_k
    run::ToyModel mk = run::make_toy_model(b);
    run::train_toy_model(mk, b);
    if (emas.empty())
      for (const double s : kWidths) emas.emplace_back(mk.slab, s);
    for (train::PowerEma& e : emas) e.update(mk.slab, k);
    if (k % kEvery != 0) continue;
    const run::PosthocSnapshot& s = snaps[next++];
    EXPECT_EQ(s.step, k);
    EXPECT_EQ(s.updates, k);
    ASSERT_EQ(s.sigma_rels.size(), kWidths.size());
    const SafetensorsFile file = load_safetensors(s.path);
    for (std::size_t i = 0; i < emas.size(); ++i) {
      EXPECT_DOUBLE_EQ(s.sigma_rels[i], kWidths[i]);
      EXPECT_NEAR(s.gammas[i], train::gamma_from_sigma_rel(kWidths[i]), 1e-12);
      for (std::size_t j = 0; j < mk.slab.size(); ++j) {
        const std::string name = train::power_ema_prefix(i) + mk.slab.entry(j).name;
        EXPECT_LE(max_abs_diff(file.get(name), mk.slab.slice(emas[i].values(), j)), 1e-6f)
            << name << " at step " << k;
      }
    }
  }
  EXPECT_EQ(next, 3u);
}

TEST(ToyPosthoc, ReconstructingATrackedWidthGivesTheTracker) {
  const TrainedFolder f = train_folder("toy_posthoc_recon");
  const run::ToyPosthocSnapshot& last = f.report.posthoc.back();
  ASSERT_EQ(last.step, kSteps);
  run::ToyModel m = run::make_toy_model(tiny_args(kSteps));
  for (std::size_t i = 0; i < kWidths.size(); ++i) {
    const run::PosthocResult r = run::reconstruct_posthoc_ema(f.dir, kWidths[i]);
    EXPECT_EQ(r.step, kSteps);
    EXPECT_LT(r.solution.relative_residual, 1e-6);
    ASSERT_EQ(r.weights.size(), m.slab.size());
    for (std::size_t j = 0; j < m.slab.size(); ++j) {
      ASSERT_EQ(r.weights[j].first, m.slab.entry(j).name);
      EXPECT_LE(max_abs_diff(r.weights[j].second, m.slab.slice(last.emas[i].values(), j)), 1e-6f)
          << r.weights[j].first << ", sigma_rel " << kWidths[i];
    }
  }
}

TEST(ToyPosthoc, TableRowsMatchSampleAndRefusals) {
  const TrainedFolder f = train_folder("toy_posthoc_table");
  run::ToyPosthocArgs p;
  p.checkpoint = f.dir;
  p.out = testing::temp_path("toy_posthoc_table_out");
  p.sigma_rels = "0.05,0.2";
  p.sampler = "ddim";
  p.sampling_steps = 8;
  p.num_samples = 150;
  p.seed = 11;
  std::ostringstream log;
  const std::vector<run::ToyPosthocRow> rows = run::run_toy_posthoc(p, log);
  ASSERT_EQ(rows.size(), 4u);
  EXPECT_EQ(rows[0].kind, "raw");
  EXPECT_EQ(rows[1].kind, "ema");
  EXPECT_DOUBLE_EQ(rows[3].sigma_rel, 0.2);
  EXPECT_TRUE(std::isnan(rows[0].residual));
  EXPECT_LT(rows[2].residual, 1e-6);  // 0.05 is tracked: exact
  EXPECT_GT(rows[3].residual, rows[2].residual);
  EXPECT_NE(log.str().find("<- best"), std::string::npos);
  for (const bool no_ema : {true, false}) {
    run::ToySampleArgs s;
    s.checkpoint = f.dir;
    s.out = testing::temp_path(no_ema ? "toy_posthoc_raw" : "toy_posthoc_ema");
    s.sampler = "ddim";
    s.sampling_steps = 8;
    s.num_samples = 150;
    s.no_ema = no_ema;
    s.seed = 11;
    std::ostringstream ignored;
    const run::ToyScore score = run::run_toy_sample(s, ignored);
    EXPECT_DOUBLE_EQ(rows[no_ema ? 0 : 1].energy, score.energy);
    EXPECT_DOUBLE_EQ(rows[0].floor, score.floor);
  }

  p.out = testing::temp_path("toy_posthoc_bad");
  p.sigma_rels = "0.05,0.5";
  testing::expect_value_error([&] { run::run_toy_posthoc(p, log); }, "--sigma-rels");
  // A folder trained without --posthoc-ema has no snapshots.
  ToyTrainArgs a = tiny_args(2);
  run::ToyModel m = run::make_toy_model(a);
  const run::ToyTrainReport r = run::train_toy_model(m, a);
  EXPECT_TRUE(r.posthoc.empty());
  const std::string plain = testing::temp_path("toy_posthoc_plain");
  run::save_toy_model(m, r.ema, {{"ema_rate", a.ema_rate}}, {}, 0, 0, plain, false);
  p.checkpoint = plain;
  p.sigma_rels = "0.05";
  EXPECT_THROW(run::run_toy_posthoc(p, log), IoError);
  EXPECT_FALSE(std::filesystem::exists(p.out));
}

// --posthoc-step 8 of a run with snapshots at 4, 8 and 12: the posthoc rows are the EMAs at
// step 8. A tracked width there is the tracker's value at step 8, so its row must score what
// `sample` scores for a folder whose ema.safetensors is that tracker (written by hand).
TEST(ToyPosthoc, PosthocStepReconstructsAtAnEarlierSnapshotAndRefusesPastTheLast) {
  const TrainedFolder f = train_folder("toy_posthoc_step");
  const run::ToyPosthocSnapshot& at8 = f.report.posthoc[1];
  ASSERT_EQ(at8.step, 8);
  run::ToyPosthocArgs p;
  p.checkpoint = f.dir;
  p.out = testing::temp_path("toy_posthoc_step_out");
  p.sigma_rels = "0.05";
  p.posthoc_step = 8;
  p.sampler = "ddim";
  p.sampling_steps = 8;
  p.num_samples = 150;
  p.seed = 7;
  std::ostringstream log;
  const std::vector<run::ToyPosthocRow> rows = run::run_toy_posthoc(p, log);
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_LT(rows[2].residual, 1e-6);
  EXPECT_NE(log.str().find("post-hoc EMA at step 8 (8 updates) from 2 snapshots"), std::string::npos) << log.str();
  EXPECT_NE(log.str().find("the raw and ema rows are the weights at the end of training (step 12)"), std::string::npos)
      << log.str();

  run::ToyModel m = run::make_toy_model(tiny_args(kSteps));
  const std::string by_hand = testing::temp_path("toy_posthoc_step_tracker");
  run::save_toy_model(m, at8.emas[0].values(), {{"ema_rate", 0.995}}, {}, 0, 0, by_hand, false);
  run::ToySampleArgs s;
  s.checkpoint = by_hand;
  s.out = testing::temp_path("toy_posthoc_step_sample");
  s.sampler = "ddim";
  s.sampling_steps = 8;
  s.num_samples = 150;
  s.seed = 7;
  std::ostringstream ignored;
  // The reconstruction equals the tracker to f32 rounding (1e-6), not bit for bit.
  EXPECT_NEAR(rows[2].energy, run::run_toy_sample(s, ignored).energy, 1e-4);

  // Between snapshots: a warning naming them; past the last: refused, nothing written.
  p.posthoc_step = 10;
  p.out = testing::temp_path("toy_posthoc_step_10");
  std::ostringstream log10;
  run::run_toy_posthoc(p, log10);
  EXPECT_NE(log10.str().find("step 10 lies between the post-hoc EMA snapshots of steps 8 and 12"), std::string::npos)
      << log10.str();
  p.posthoc_step = 13;
  p.out = testing::temp_path("toy_posthoc_step_13");
  testing::expect_value_error([&] { run::run_toy_posthoc(p, log); }, "past the last post-hoc EMA snapshot (step 12)");
  EXPECT_FALSE(std::filesystem::exists(p.out));
  p.posthoc_step = -1;
  testing::expect_value_error([&] { run::run_toy_posthoc(p, log); }, "--posthoc-step");
}

}  // namespace
}  // namespace ddpm
