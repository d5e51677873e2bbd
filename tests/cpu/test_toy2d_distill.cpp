// tests/cpu/test_toy2d_distill.cpp: progressive distillation (models/toy/distill.h).
//
// The target is checked in double against a closed form derived from the Gaussian oracle
// (tests/support/gaussian_oracle.h): for data N(mu, s^2) the exact eps-network gives
// x^(z, t) = mu + alpha_t s^2 (z - alpha_t mu) / V_t, V_t = alpha_t^2 s^2 + sigma_t^2, so a DDIM
// step (distill.h eq. 1) t -> u maps the deviation d = z - alpha mu linearly:
//   d_u = rho(t, u) d_t,  rho(t, u) = (alpha_t alpha_u s^2 + sigma_t sigma_u) / V_t,
// two steps multiply the factors, and eq. 2 then gives
//   x~ = mu + d_t (rho(t, t') rho(t', t'') - sigma''/sigma_t) / (alpha'' - sigma'' alpha_t / sigma_t).
// The teacher's two steps are also compared with the library's DDIM sampler (sampler.h
// denoise + ddim_step on the respaced teacher grid), and one student step with x~ with the
// same sampler on the student grid: it must land on the teacher's z''.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <sstream>

#include "engine/rng.h"
#include "models/diffusion/sampler.h"
#include "models/run/toy_run.h"
#include "models/toy/distill.h"
#include "tests/support/gaussian_oracle.h"
#include "tests/support/temp_dir.h"
#include "tests/support/tiny_toy.h"
#include "tests/support/value_error.h"

namespace ddpm {
namespace {

constexpr double kMu = 0.3, kS = 0.7;

struct Level {
  double alpha, sigma;
};
Level level(const diffusion::DiffusionSchedule& s, std::int64_t t) {
  if (t == toy::kCleanLevel) return {1.0, 0.0};
  const double abar = s.alphas_cumprod[static_cast<std::size_t>(t)];
  return {std::sqrt(abar), std::sqrt(1.0 - abar)};
}
double rho(const Level& t, const Level& u) {
  const double V = t.alpha * t.alpha * kS * kS + t.sigma * t.sigma;
  return (t.alpha * u.alpha * kS * kS + t.sigma * u.sigma) / V;
}

TEST(ToyDistill, TargetMatchesTheGaussianClosedForm) {
  const diffusion::DiffusionSchedule s(diffusion::linear_betas(100));
  const diffusion::DenoiseFn oracle = testing::gaussian_eps_oracle(s, kMu, kS);
  const toy::DistillGrid g = toy::distill_grid(100, 5);  // teacher 9 steps
  ASSERT_EQ(g.teacher.size(), 9u);
  const std::int64_t n = 10;
  Generator gen(3);
  const Tensor z = randn({n, 3}, gen, Device::cpu(), DType::f64);
  std::vector<std::int64_t> index;
  for (std::int64_t k = 0; k < n; ++k) index.push_back(k % 5);
  const toy::TeacherSteps ts = toy::teacher_ddim_steps(s, oracle, diffusion::ModelMeanType::eps, g, z, index);
  const Tensor target = toy::distillation_target(s, z, ts.z_end, ts.start, ts.end);
  const std::vector<double> zv = z.to_double_vector(), xv = target.to_double_vector();
  for (std::int64_t k = 0; k < n; ++k) {
    const std::int64_t i = index[static_cast<std::size_t>(k)];
    const Level t = level(s, g.student[static_cast<std::size_t>(i)]);
    double factor;
    if (i == 0) {  // one step to clean: x~ = the oracle's x^ at t = 0
      factor = t.alpha * kS * kS / (t.alpha * t.alpha * kS * kS + t.sigma * t.sigma);
    } else {
      const Level mid = level(s, g.teacher[static_cast<std::size_t>(2 * i - 1)]);
      const Level end = level(s, g.student[static_cast<std::size_t>(i - 1)]);
      factor = (rho(t, mid) * rho(mid, end) - end.sigma / t.sigma) / (end.alpha - end.sigma * t.alpha / t.sigma);
    }
    for (int c = 0; c < 3; ++c) {
      const double d = zv[static_cast<std::size_t>(3 * k + c)] - t.alpha * kMu;
      EXPECT_NEAR(xv[static_cast<std::size_t>(3 * k + c)], kMu + factor * d, 1e-11) << "index " << i;
    }
  }
}

TEST(ToyDistill, OneStudentStepWithTheTargetEqualsTwoLibraryDdimSteps) {
  const diffusion::DiffusionSchedule s(diffusion::linear_betas(100));
  const diffusion::DenoiseFn oracle = testing::gaussian_eps_oracle(s, kMu, kS);
  const toy::DistillGrid g = toy::distill_grid(100, 5);
  diffusion::SamplerConfig cfg;
  cfg.kind = diffusion::SamplerConfig::Kind::ddim;
  cfg.clip_x0 = false;
  cfg.dtype = DType::f64;
  const diffusion::RespacedSchedule teacher_process = diffusion::sampling_process(s, "9");
  const diffusion::RespacedSchedule student_process = diffusion::sampling_process(s, "5");
  ASSERT_EQ(teacher_process.timestep_map, g.teacher);
  ASSERT_EQ(student_process.timestep_map, g.student);
  Generator unused(0), gen(11);
  for (std::int64_t i = 0; i < 5; ++i) {
    const Tensor z = randn({4, 2}, gen, Device::cpu(), DType::f64);
    const toy::TeacherSteps ts =
        toy::teacher_ddim_steps(s, oracle, diffusion::ModelMeanType::eps, g, z, std::vector<std::int64_t>(4, i));
    // The sampler's DDIM: teacher indices 2i and 2i - 1 (just 0 for i = 0: 0 -> clean).
    Tensor x = z;
    for (std::int64_t j = 2 * i; j >= std::max<std::int64_t>(2 * i - 1, 0); --j)
      x = diffusion::ddim_step(teacher_process.schedule, 0.0, x,
                               diffusion::denoise(teacher_process, oracle, cfg, x, j, {}), j, unused);
    const std::vector<double> lib = x.to_double_vector(), ours = ts.z_end.to_double_vector();
    for (std::size_t k = 0; k < lib.size(); ++k) EXPECT_NEAR(ours[k], lib[k], 1e-12) << "index " << i;
    // One student step at index i with x~ as its x_0 estimate lands on the teacher's z''.
    diffusion::Denoised d;
    d.pred_x0 = toy::distillation_target(s, z, ts.z_end, ts.start, ts.end);
    const std::vector<double> one = diffusion::ddim_step(student_process.schedule, 0.0, z, d, i, unused).to_double_vector();
    for (std::size_t k = 0; k < lib.size(); ++k) EXPECT_NEAR(one[k], lib[k], 1e-11) << "index " << i;
  }
}

TEST(ToyDistill, StepCountsAndGridsAreChecked) {
  EXPECT_EQ(toy::distill_step_counts(200, 65, 6), (std::vector<std::int64_t>{33, 17, 9, 5, 3, 2}));
  EXPECT_EQ(toy::distill_step_counts(200, 9, 1), (std::vector<std::int64_t>{5}));
  testing::expect_value_error([] { toy::distill_step_counts(200, 64, 6); }, "cannot be halved 6 times");
  testing::expect_value_error([] { toy::distill_step_counts(200, 65, 7); }, "cannot be halved 7 times");
  testing::expect_value_error([] { toy::distill_step_counts(50, 65, 6); }, "at most the model's T = 50");
  testing::expect_value_error([] { toy::distill_step_counts(200, 65, 0); }, "--rounds must be in [1, 10]");
  // Every grid the halvings visit nests in its teacher's (distill_grid checks it).
  for (std::int64_t T : {100, 137, 200, 1000})
    for (std::int64_t k : {2, 3, 5, 9, 17, 33}) {
      if (2 * (k - 1) + 1 > T) continue;
      const toy::DistillGrid g = toy::distill_grid(T, k);
      EXPECT_EQ(g.student.front(), 0);
      EXPECT_EQ(g.student.back(), T - 1);
    }
  const diffusion::DiffusionSchedule s(diffusion::linear_betas(100));
  const Tensor z = Tensor::zeros({1, 2}, DType::f64);
  testing::expect_value_error([&] { toy::distillation_target(s, z, z, {10}, {20}); }, "not less noisy");
}

// A teacher trained briefly (v-prediction), then one round 5 -> 3 steps: the student's one
// DDIM step must land much closer to the teacher's two than the teacher's own one step does,
// on held-out points (a seed that neither training nor the round's own gap used).
TEST(ToyDistill, ARoundShrinksTheOneStepGapOnHeldOutPoints) {
  run::ToyTrainArgs a = testing::tiny_toy_args("moons", 400, 2);
  a.predict = "v";
  run::ToyModel teacher = run::make_toy_model(a);
  const run::ToyTrainReport tr = run::train_toy_model(teacher, a);
  testing::use_ema(teacher, tr.ema);
  const diffusion::DiffusionSchedule s(teacher.betas);
  const toy::DistillGrid g = toy::distill_grid(100, 3);
  run::ToyModel student = run::make_toy_model(a);
  Tensor sv = student.slab.values();
  sv.copy_from(teacher.slab.values());
  toy::DistillArgs da;
  da.data = "moons";
  da.steps = 150;
  da.batch_size = 128;
  da.lr = 1e-3;
  da.warmup_steps = 20;
  da.ema_rate = 0.9;
  da.gap_points = 400;
  da.seed = 4;
  Tensor ema;
  const toy::DistillRoundReport r = toy::distill_round(s, teacher.net->fn(), *student.net, student.slab,
                                                       diffusion::ModelMeanType::v, g, da, &ema);
  testing::use_ema(student, ema);
  const double before = toy::one_step_gap(s, teacher.net->fn(), teacher.net->fn(), diffusion::ModelMeanType::v, g,
                                          "moons", 1000, 99);
  const double after = toy::one_step_gap(s, teacher.net->fn(), student.net->fn(), diffusion::ModelMeanType::v, g,
                                         "moons", 1000, 99);
  EXPECT_LT(after, 0.25 * before) << "before " << before << ", after " << after;
  EXPECT_LT(r.gap_after, 0.25 * r.gap_before);
  EXPECT_GT(before, 1e-3);  // the undistilled one step really differs from two
}

TEST(ToyDistill, RefusesBadFoldersBeforeAnyWork) {
  testing::TempDir dir;
  run::ToyTrainArgs a = testing::tiny_toy_args("moons", 5, 1);
  run::ToyModel m = run::make_toy_model(a);
  const run::ToyTrainReport tr = run::train_toy_model(m, a);
  const std::string teacher = dir.path + "/teacher";
  run::save_toy_model(m, tr.ema, {{"steps", a.steps}}, {}, 0, 0, teacher, false);
  a.class_cond = true;
  run::ToyModel c = run::make_toy_model(a);
  const std::string cond = dir.path + "/cond";
  run::save_toy_model(c, c.slab.values().clone(), {{"steps", 0}}, {}, 0, 0, cond, false);

  std::ostringstream out;
  run::ToyDistillArgs d;
  d.teacher = teacher;
  d.out = dir.path + "/out";
  d.rounds = 2;
  d.teacher_steps = 10;  // 9 intervals: not halvable twice
  testing::expect_value_error([&] { run::run_toy_distill(d, out); }, "cannot be halved 2 times");
  d.teacher_steps = 9;
  d.teacher = cond;
  testing::expect_value_error([&] { run::run_toy_distill(d, out); }, "is class-conditional");
  d.teacher = dir.path + "/missing";
  EXPECT_THROW(run::run_toy_distill(d, out), IoError);
  d.teacher = teacher;
  d.out = teacher;  // exists and is not empty
  testing::expect_value_error([&] { run::run_toy_distill(d, out); }, "exists; pass --overwrite");
  d.out = dir.path + "/out";
  d.eval_samples = -1;
  testing::expect_value_error([&] { run::run_toy_distill(d, out); }, "--eval-samples must be in");
  d.eval_samples = 0;
  d.steps = 0;
  testing::expect_value_error([&] { run::run_toy_distill(d, out); }, "--steps must be positive");
  EXPECT_FALSE(std::filesystem::exists(dir.path + "/out"));

  // A tiny successful run: two round folders that load, and the csv.
  d.steps = 3;
  d.batch_size = 16;
  const std::vector<run::ToyDistillRow> rows = run::run_toy_distill(d, out);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].student_steps, 5);
  EXPECT_EQ(rows[1].student_steps, 3);
  for (const char* r : {"/out/round1", "/out/round2"}) EXPECT_NO_THROW(run::load_toy_model(dir.path + r, false)) << r;
  EXPECT_TRUE(std::filesystem::exists(dir.path + "/out/distill.csv"));
}

}  // namespace
}  // namespace ddpm
