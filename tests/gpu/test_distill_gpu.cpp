// tests/gpu/test_distill_gpu.cpp: ddpm-distill (models/run/distill_run.h) on CUDA against the
// same round on the CPU. One tiny v-prediction teacher (trained on the CPU, T = 50, no
// dropout) is distilled one round, 10 -> 5 DDIM steps, from the same seed on both devices,
// f32 with TF32 off. Every random draw is the same on both (Philox counters give the same
// bits on CUDA and the CPU; the student indices and label draws are made on the host), so
// the two runs differ by rounding only:
//   - step 1's loss comes from identical weights: relative difference <= 1e-3. Rounding of a
//     few f32 ulps through ~20 layers and the teacher's two DDIM steps is amplified by the
//     target x~ = (z'' - r z) / (alpha'' - r alpha_t) (eq. 2), whose denominator is small at
//     the noisiest levels (T = 50 is a coarse, fast-decaying schedule);
//   - the later steps' losses, and the held-out gaps, within 1e-2 relative: AdamW divides by
//     sqrt(v), so a gradient component at the rounding level can move its weight by up to lr
//     either way, and the gap is a mean square of differences of nearly equal f32 values.
//     A wrong kernel, a missing term or a draw that differs between devices gives O(1);
//   - the CUDA round folder is complete: it opens on the device and records its 5-step grid,
//     and distill.json says 1 of 1 rounds.
// (Written on a machine without a GPU: compiled in the CUDA build, skipped here.)
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "engine/io/atomic_file.h"
#include "engine/math_mode.h"
#include "models/run/distill_record.h"
#include "models/run/distill_run.h"
#include "models/run/model_source.h"
#include "support/gradcheck.h"
#include "support/tiny_run.h"

namespace ddpm {
namespace {

namespace fs = std::filesystem;

run::DistillOptions one_round(const std::string& teacher, const std::string& out, Device device) {
  run::DistillOptions d;
  d.teacher = teacher;
  d.teacher_steps = 10;
  d.rounds = 1;
  d.steps_per_round = 6;
  d.batch_size = 8;
  d.lr = 1e-3;
  d.warmup_steps = 2;
  d.ema_rate = 0.9;
  d.gap_samples = 8;
  d.log_every = 1000;
  d.seed = 11;
  d.out = out;
  d.device = device;
  return d;
}

TEST(DistillGpu, OneRoundMatchesCpu) {
  DDPM_REQUIRE_CUDA();
  MathModeScope restore;
  set_allow_tf32(false);
  run::TrainOptions t = testing::tiny_run(testing::temp_run("distill_gpu_teacher"));
  t.predict = "v";
  t.dropout = 0;
  t.steps = 4;
  t.save_every = 4;
  run::train_run(t);

  const std::string cpu_out = testing::temp_path("distill_gpu_cpu"), gpu_out = testing::temp_path("distill_gpu_cuda");
  fs::remove_all(cpu_out);
  fs::remove_all(gpu_out);
  const run::DistillResult c = run::distill_run(one_round(t.out, cpu_out, Device::cpu()));
  const run::DistillResult g = run::distill_run(one_round(t.out, gpu_out, Device::cuda()));
  ASSERT_EQ(c.rounds.size(), 1u);
  ASSERT_EQ(g.rounds.size(), 1u);
  const std::vector<double>& lc = c.rounds[0].losses;
  const std::vector<double>& lg = g.rounds[0].losses;
  ASSERT_EQ(lc.size(), 6u);
  ASSERT_EQ(lg.size(), lc.size());
  for (std::size_t k = 0; k < lc.size(); ++k) {
    ASSERT_TRUE(std::isfinite(lc[k]) && std::isfinite(lg[k])) << "step " << k + 1;
    const double tol = (k == 0 ? 1e-3 : 1e-2) * std::abs(lc[k]);
    EXPECT_NEAR(lg[k], lc[k], tol) << "step " << k + 1 << ": CUDA " << lg[k] << ", CPU " << lc[k];
  }
  EXPECT_NEAR(g.rounds[0].gap_before, c.rounds[0].gap_before, 1e-2 * c.rounds[0].gap_before);
  EXPECT_NEAR(g.rounds[0].gap_after, c.rounds[0].gap_after, 1e-2 * c.rounds[0].gap_after);

  const run::ModelSource st = run::open_model(gpu_out + "/round_1", Device::cuda());
  EXPECT_EQ(st.kind, "checkpoint folder");
  EXPECT_EQ(st.diffusion.predict, diffusion::ModelMeanType::v);
  const std::optional<run::DistillationRecord> rec = run::read_distillation_record(gpu_out + "/round_1");
  ASSERT_TRUE(rec.has_value());
  EXPECT_EQ(rec->sampling_steps, 5);
  const nlohmann::json j = nlohmann::json::parse(read_file(gpu_out + "/distill.json"));
  EXPECT_EQ(j["rounds_done"], 1);
  EXPECT_EQ(j["complete"], true);
}

}  // namespace
}  // namespace ddpm
