// tests/cpu/test_progressive_distill.cpp: progressive distillation for UNet runs
// (models/diffusion/progressive_distill.h, models/run/distill_run.h).
//   - the grid is the one ddpm-sample's DDIM calls the network at (recorded through the real
//     sampler and make_sampler_config), and it nests between rounds;
//   - the target x~ and the teacher's steps against a scalar re-derivation in double with the
//     exact denoiser of Gaussian data, written in the sampler's form (x_0^, eps^) rather than
//     equations (1)-(2): one student step with x^ = x~ lands on the teacher's two;
//   - a tiny ddpm-train teacher distilled one round: the round folder opens with open_model,
//     and on held-out noise its one-step gap to the teacher's two steps is below the
//     undistilled teacher's at the halved step count;
//   - refusals.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <tuple>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "engine/io/atomic_file.h"
#include "engine/ops/elementwise.h"
#include "engine/rng.h"
#include "models/diffusion/progressive_distill.h"
#include "models/diffusion/respace.h"
#include "models/diffusion/sampler.h"
#include "models/run/distill_run.h"
#include "models/run/model_source.h"
#include "models/run/sample_run.h"
#include "support/gaussian_oracle.h"
#include "support/tiny_run.h"
#include "support/tiny_unet.h"
#include "support/value_error.h"

namespace ddpm {
namespace {

namespace fs = std::filesystem;
using diffusion::DiffusionSchedule;
using diffusion::Timesteps;

// The original timesteps ddpm-sample's DDIM visits for --sampling-steps K, recorded from the
// network calls of the real sampler with the config make_sampler_config builds.
Timesteps sampled_ddim_grid(std::int64_t T, std::int64_t K) {
  run::ModelSource model;
  Generator init(0);
  model.net = std::make_unique<unet::UNet>(testing::tiny_unet_config(8, 1), init, Device::cpu());
  model.diffusion.diffusion_steps = T;
  run::SampleOptions o;
  o.sampler = "ddim";
  o.sampling_steps = static_cast<int>(K);
  const diffusion::SamplerConfig sc = run::make_sampler_config(o, model);
  Timesteps seen;
  const diffusion::DenoiseFn rec = [&](const Tensor& x, const std::vector<double>& t, const std::vector<std::int64_t>&) {
    seen.push_back(std::llround(t[0]));
    return Tensor::zeros(x.shape(), x.dtype());
  };
  const DiffusionSchedule base(diffusion::betas_for(diffusion::NoiseSchedule::linear, T));
  Generator gen(1);
  (void)diffusion::sample(base, rec, {1, 2, 2, 1}, {}, sc, gen);
  std::reverse(seen.begin(), seen.end());  // ascending
  return seen;
}

TEST(ProgressiveDistillGrid, MatchesDdpmSampleDdimGrid) {
  for (const auto& [T, K] : std::vector<std::pair<std::int64_t, std::int64_t>>{
           {1000, 1000}, {1000, 500}, {1000, 125}, {1000, 25}, {50, 10}, {50, 5}, {64, 1}})
    EXPECT_EQ(diffusion::ddim_sampling_grid(T, K), sampled_ddim_grid(T, K)) << "T " << T << " K " << K;
}

TEST(ProgressiveDistillGrid, NestsBetweenRounds) {
  for (const auto& [T, N, R] : std::vector<std::tuple<std::int64_t, std::int64_t, int>>{
           {1000, 1000, 3}, {1000, 200, 3}, {1024, 64, 6}, {50, 10, 1}}) {
    const std::vector<std::int64_t> counts = diffusion::distill_step_counts(T, N, R);
    ASSERT_EQ(counts.size(), static_cast<std::size_t>(R));
    std::int64_t teacher = N;
    for (std::int64_t K : counts) {
      EXPECT_EQ(K * 2, teacher);
      const diffusion::DistillGrid g = diffusion::distill_grid(T, K);
      EXPECT_EQ(g.teacher, diffusion::ddim_sampling_grid(T, teacher));
      EXPECT_EQ(g.teacher.back(), T - 1);  // both start from pure noise
      for (std::size_t i = 0; i < g.student.size(); ++i) EXPECT_EQ(g.teacher[2 * i + 1], g.student[i]);
      teacher = K;
    }
  }
  testing::expect_value_error([&] { (void)diffusion::distill_step_counts(1000, 64, 2); }, "--teacher-steps 64 cannot be halved");
  testing::expect_value_error([&] { (void)diffusion::distill_step_counts(1000, 200, 4); }, "multiple of 2^rounds = 16");
  testing::expect_value_error([&] { (void)diffusion::distill_grid(50, 10); }, "needs a teacher of 20");
}

// One DDIM step (eta = 0) in the sampler's form: x_0^ and eps^ = (z - sqrt(abar) x_0^) /
// sqrt(1 - abar), then z_u = sqrt(abar_u) x_0^ + sqrt(1 - abar_u) eps^ (abar_u = 1: clean).
double sampler_step(double z, double x0, double abar, double abar_u) {
  const double eps = (z - std::sqrt(abar) * x0) / std::sqrt(1.0 - abar);
  return std::sqrt(abar_u) * x0 + std::sqrt(1.0 - abar_u) * eps;
}

TEST(ProgressiveDistillTarget, OneStepOnTargetLandsOnTwoTeacherSteps) {
  const std::int64_t T = 40;
  const DiffusionSchedule s(diffusion::betas_for(diffusion::NoiseSchedule::linear, T));
  const double mu = 0.3, sd = 0.5;
  const diffusion::DenoiseFn teacher = testing::gaussian_eps_oracle(s, mu, sd);
  const diffusion::DistillGrid g = diffusion::distill_grid(T, 4);  // student 4 steps, teacher 8
  const std::vector<std::int64_t> index = {0, 1, 2, 3, 3, 0};
  const std::int64_t n = static_cast<std::int64_t>(index.size()), d = 3;
  Generator gen(7);
  const Tensor z = randn({n, d}, gen, Device::cpu(), DType::f64);
  diffusion::DenoiserReading r;  // eps, no variance, no clamp
  const diffusion::TeacherSteps ts = diffusion::teacher_ddim_steps(s, teacher, r, g, z, index, {});
  const Tensor target = diffusion::distillation_target(s, z, ts.z_end, ts.start, ts.end);
  const std::vector<double> zv = z.to_double_vector(), ze = ts.z_end.to_double_vector(),
                            xt = target.to_double_vector();
  const auto abar_of = [&](std::int64_t level) {
    return level == diffusion::kCleanLevel ? 1.0 : s.alphas_cumprod[static_cast<std::size_t>(level)];
  };
  const auto oracle_x0 = [&](double x, double abar) {  // E[x_0 | x_t] of N(mu, sd^2) data
    const double V = abar * sd * sd + 1.0 - abar;
    const double eps = std::sqrt(1.0 - abar) * (x - std::sqrt(abar) * mu) / V;
    return (x - std::sqrt(1.0 - abar) * eps) / std::sqrt(abar);
  };
  for (std::int64_t k = 0; k < n; ++k) {
    const std::int64_t i = index[static_cast<std::size_t>(k)];
    const std::int64_t t = g.student[static_cast<std::size_t>(i)], mid = g.teacher[static_cast<std::size_t>(2 * i)];
    const std::int64_t end = i > 0 ? g.student[static_cast<std::size_t>(i - 1)] : diffusion::kCleanLevel;
    EXPECT_EQ(ts.start[static_cast<std::size_t>(k)], t);
    EXPECT_EQ(ts.end[static_cast<std::size_t>(k)], end);
    for (std::int64_t j = 0; j < d; ++j) {
      const std::size_t e = static_cast<std::size_t>(k * d + j);
      // The teacher's two steps, by hand.
      const double z_mid = sampler_step(zv[e], oracle_x0(zv[e], abar_of(t)), abar_of(t), abar_of(mid));
      const double z_end = sampler_step(z_mid, oracle_x0(z_mid, abar_of(mid)), abar_of(mid), abar_of(end));
      EXPECT_NEAR(ze[e], z_end, 1e-12 * (1 + std::fabs(z_end))) << "sample " << k;
      // One student step from z with x^ = x~ lands there.
      EXPECT_NEAR(sampler_step(zv[e], xt[e], abar_of(t), abar_of(end)), z_end, 1e-10 * (1 + std::fabs(z_end)))
          << "sample " << k << " index " << i;
    }
  }
  // The gap of a model that predicts x~ exactly is zero; of the teacher itself it is not.
  EXPECT_GT(diffusion::one_step_gap(s, teacher, teacher, r, g, z, index, {}), 1e-8);
}

TEST(ProgressiveDistillTarget, LossIsTruncatedSnrWeightedMse) {
  const DiffusionSchedule s(diffusion::betas_for(diffusion::NoiseSchedule::linear, 40));
  Generator gen(3);
  const Tensor a = randn({3, 2, 2, 1}, gen, Device::cpu(), DType::f64), b = randn({3, 2, 2, 1}, gen, Device::cpu(), DType::f64);
  const Timesteps t = {0, 20, 39};
  const std::vector<double> av = a.to_double_vector(), bv = b.to_double_vector();
  double want = 0;
  for (std::size_t k = 0; k < 3; ++k) {
    const double abar = s.alphas_cumprod[static_cast<std::size_t>(t[k])];
    double m = 0;
    for (std::size_t j = 0; j < 4; ++j) m += (av[k * 4 + j] - bv[k * 4 + j]) * (av[k * 4 + j] - bv[k * 4 + j]) / 4;
    want += std::max(abar / (1 - abar), 1.0) * m / 3;
  }
  EXPECT_NEAR(diffusion::distillation_loss(s, a, b, t).item(), want, 1e-12 * want);
}

// A tiny v-prediction ddpm-train run (T = 50) as the teacher.
std::string tiny_teacher(const std::string& name, const std::string& objective = "ddpm", bool class_cond = false,
                         bool learn_sigma = false) {
  run::TrainOptions o = testing::tiny_run(testing::temp_run(name));
  o.class_cond = class_cond;
  o.class_dropout = class_cond ? 0.2 : 0.0;
  o.learn_sigma = learn_sigma;
  o.predict = "v";
  o.dropout = 0;
  o.objective = objective;
  o.sample_steps = 5;
  o.steps = 8;
  o.save_every = 8;
  o.lr = 2e-3;
  run::train_run(o);
  return o.out;
}

run::DistillOptions tiny_distill(const std::string& teacher, const std::string& out) {
  run::DistillOptions d;
  d.teacher = teacher;
  d.teacher_steps = 10;
  d.rounds = 1;
  d.steps_per_round = 60;
  d.batch_size = 8;
  d.lr = 2e-3;
  d.warmup_steps = 5;
  d.ema_rate = 0.9;
  d.gap_samples = 16;
  d.log_every = 1000;
  d.out = out;
  return d;
}

TEST(ProgressiveDistillRun, OneRoundShrinksHeldOutGapAndLoads) {
  const std::string teacher = tiny_teacher("distill_teacher");
  const std::string out = testing::temp_path("distill_out");
  fs::remove_all(out);
  const std::vector<run::DistillRound> rounds = run::distill_run(tiny_distill(teacher, out));
  ASSERT_EQ(rounds.size(), 1u);
  EXPECT_EQ(rounds[0].student_steps, 5);
  EXPECT_TRUE(std::isfinite(rounds[0].final_loss));

  const run::ModelSource t = run::open_model(teacher, Device::cpu());
  const run::ModelSource st = run::open_model(out + "/round_1", Device::cpu());
  EXPECT_EQ(st.kind, "checkpoint folder");
  EXPECT_EQ(st.diffusion.predict, diffusion::ModelMeanType::v);
  EXPECT_EQ(st.diffusion.diffusion_steps, 50);
  const nlohmann::json cfg = nlohmann::json::parse(read_file(out + "/round_1/config.json"));
  EXPECT_EQ(cfg["distill"]["sampling_steps"], 5);
  const nlohmann::json rec = nlohmann::json::parse(read_file(out + "/distill.json"));
  EXPECT_EQ(rec["rounds"][0]["student_steps"], 5);

  // Held-out noise (its own seed), with a second reading of the loaded folders: the student's
  // one step is closer to the teacher's two than the undistilled teacher's one step is.
  const DiffusionSchedule s(run::diffusion_betas(t.diffusion));
  const diffusion::DistillGrid g = diffusion::distill_grid(50, 5);
  Generator gen(12345);
  const Tensor x0 = clamp(scale(randn({16, 16, 16, 1}, gen), 0.5), -1.0, 1.0);
  std::vector<std::int64_t> index;
  Timesteps ts;
  for (std::int64_t k = 0; k < 16; ++k) index.push_back(k % 5), ts.push_back(g.student[static_cast<std::size_t>(k % 5)]);
  const Tensor z = diffusion::q_sample(s, x0, ts, randn({16, 16, 16, 1}, gen));
  const auto fn = [](const run::ModelSource& m) -> diffusion::DenoiseFn {
    const unet::UNet* net = m.net.get();
    return [net](const Tensor& x, const std::vector<double>& tt, const std::vector<std::int64_t>& y) {
      return net->forward(x, tt, y, nn::Context{});
    };
  };
  diffusion::DenoiserReading r;
  r.type = diffusion::ModelMeanType::v;
  r.clip_x0 = false;  // as the students are sampled (distill_run.h)
  const double before = diffusion::one_step_gap(s, fn(t), fn(t), r, g, z, index, {});
  const double after = diffusion::one_step_gap(s, fn(t), fn(st), r, g, z, index, {});
  EXPECT_LT(after, 0.8 * before) << "before " << before << " after " << after;
}

// Class-conditional, learned-variance teacher: both branches get trained labels (the null
// label included), only the mean part is read; the round folder keeps classes and variance.
TEST(ProgressiveDistillRun, ClassConditionalLearnedSigmaTeacher) {
  const std::string teacher = tiny_teacher("distill_cond_teacher", "ddpm", true, true);
  const std::string out = testing::temp_path("distill_cond_out");
  fs::remove_all(out);
  run::DistillOptions d = tiny_distill(teacher, out);
  d.steps_per_round = 6;
  std::vector<std::string> lines;
  d.log = [&lines](const std::string& l) { lines.push_back(l); };
  const std::vector<run::DistillRound> rounds = run::distill_run(d);
  ASSERT_EQ(rounds.size(), 1u);
  EXPECT_TRUE(std::isfinite(rounds[0].final_loss));
  const run::ModelSource st = run::open_model(out + "/round_1", Device::cpu());
  EXPECT_EQ(st.net->config().num_classes, 4);
  EXPECT_TRUE(st.net->config().learn_sigma);
  bool said_dropout = false;
  for (const std::string& l : lines) said_dropout |= l.find("null label with probability 0.2") != std::string::npos;
  EXPECT_TRUE(said_dropout) << "the teacher's class dropout was not used";
  const nlohmann::json rec = nlohmann::json::parse(read_file(out + "/distill.json"));
  EXPECT_DOUBLE_EQ(rec["label_dropout"].get<double>(), 0.2);
}

TEST(ProgressiveDistillRun, Refusals) {
  const std::string teacher = tiny_teacher("distill_refusal_teacher");
  const std::string out = testing::temp_path("distill_refused");
  fs::remove_all(out);
  run::DistillOptions d = tiny_distill(teacher, out);
  d.teacher_steps = 25;
  testing::expect_value_error([&] { (void)run::distill_run(d); }, "--teacher-steps 25 cannot be halved 1 times");
  d.teacher_steps = 10;
  d.rounds = 2;
  testing::expect_value_error([&] { (void)run::distill_run(d); }, "multiple of 2^rounds = 4");
  EXPECT_FALSE(fs::exists(out));
  fs::create_directories(out);
  std::ofstream(out + "/keep.txt") << "mine";
  d.rounds = 1;
  testing::expect_value_error([&] { (void)run::distill_run(d); }, "exists and is not empty; pass --overwrite");
  EXPECT_TRUE(fs::exists(out + "/keep.txt"));
  const std::string edm = tiny_teacher("distill_edm_teacher", "edm");
  testing::expect_value_error([&] { (void)run::distill_run(tiny_distill(edm, testing::temp_path("distill_edm"))); }, "EDM objective");
}

}  // namespace
}  // namespace ddpm
