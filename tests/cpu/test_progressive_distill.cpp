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
//   - refusals;
//   - crash safety: a run stopped by a signal in round 2 keeps round 1 published (equal to a
//     one-round run's), one stopped in round 1 leaves an old --out untouched;
//   - the round folder's "distillation" record: ddpm-sample's --clip-x0 default and warning;
//   - a latent teacher: the round folder carries the autoencoder and ddpm-sample decodes it.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <tuple>

#include <nlohmann/json.hpp>

#include "engine/io/atomic_file.h"
#include "engine/ops/elementwise.h"
#include "engine/rng.h"
#include "models/autoencoder/autoencoder_io.h"
#include "models/diffusion/progressive_distill.h"
#include "models/diffusion/respace.h"
#include "models/diffusion/sampler.h"
#include "models/run/autoencoder_run.h"
#include "models/run/distill_record.h"
#include "models/run/distill_run.h"
#include "models/run/latent_run.h"
#include "models/run/model_source.h"
#include "models/run/sample_run.h"
#include "support/gaussian_oracle.h"
#include "support/tiny_autoencoder.h"
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
                         bool learn_sigma = false, std::int64_t T = 50) {
  run::TrainOptions o = testing::tiny_run(testing::temp_run(name));
  o.diffusion_steps = T;
  o.class_cond = class_cond;
  o.class_dropout = class_cond ? 0.2 : 0.0;
  o.learn_sigma = learn_sigma;
  o.predict = "v";
  o.dropout = 0;
  o.objective = objective;
  o.sample_steps = T % 8 == 0 ? 8 : 5;
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
  const std::vector<run::DistillRound> rounds = run::distill_run(tiny_distill(teacher, out)).rounds;
  ASSERT_EQ(rounds.size(), 1u);
  EXPECT_EQ(rounds[0].student_steps, 5);
  EXPECT_TRUE(std::isfinite(rounds[0].final_loss));

  const run::ModelSource t = run::open_model(teacher, Device::cpu());
  const run::ModelSource st = run::open_model(out + "/round_1", Device::cpu());
  EXPECT_EQ(st.kind, "checkpoint folder");
  EXPECT_EQ(st.diffusion.predict, diffusion::ModelMeanType::v);
  EXPECT_EQ(st.diffusion.diffusion_steps, 50);
  const nlohmann::json cfg = nlohmann::json::parse(read_file(out + "/round_1/config.json"));
  EXPECT_EQ(cfg["distillation"]["sampling_steps"], 5);
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
  const std::vector<run::DistillRound> rounds = run::distill_run(d).rounds;
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


// Nothing finished is lost: a SIGINT raised as round 2 of 2 starts (through the log line, while
// distill_run's StopSignals is installed) lets the step in progress finish, keeps round_1
// exactly as a one-round run of the same seed writes it (the second code path), publishes
// no round_2 and leaves distill.json saying 1 of 2 rounds, stopped by SIGINT.
TEST(ProgressiveDistillRun, StopInRoundTwoKeepsRoundOne) {
  const std::string teacher = tiny_teacher("distill_stop_teacher", "ddpm", false, false, 32);
  const std::string out = testing::temp_path("distill_stop_out");
  fs::remove_all(out);
  run::DistillOptions d = tiny_distill(teacher, out);
  d.teacher_steps = 8;  // 8 -> 4 -> 2 on T = 32
  d.rounds = 2;
  d.steps_per_round = 4;
  bool raised = false;
  d.log = [&raised](const std::string& l) {
    if (!raised && l.rfind("round 2/2:", 0) == 0) {
      raised = true;
      std::raise(SIGINT);
    }
  };
  const run::DistillResult r = run::distill_run(d);
  ASSERT_TRUE(raised);
  EXPECT_EQ(r.stopped_by_signal, SIGINT);
  EXPECT_EQ(r.rounds_planned, 2);
  ASSERT_EQ(r.rounds.size(), 1u);
  EXPECT_FALSE(fs::exists(out + "/round_2"));
  for (const auto& e : fs::directory_iterator(out))  // no temporary folder of round 2 left behind
    EXPECT_TRUE(e.path().filename() == "round_1" || e.path().filename() == "distill.json") << e.path();
  const nlohmann::json rec = nlohmann::json::parse(read_file(out + "/distill.json"));
  EXPECT_EQ(rec["rounds_planned"], 2);
  EXPECT_EQ(rec["rounds_done"], 1);
  EXPECT_EQ(rec["complete"], false);
  EXPECT_EQ(rec["rounds"].size(), 1u);
  EXPECT_EQ(rec["stopped"]["signal"], "SIGINT");
  EXPECT_EQ(rec["stopped"]["round"], 2);
  const run::ModelSource st = run::open_model(out + "/round_1", Device::cpu());
  EXPECT_EQ(st.kind, "checkpoint folder");

  const std::string one = testing::temp_path("distill_stop_one_round");
  fs::remove_all(one);
  run::DistillOptions d1 = tiny_distill(teacher, one);
  d1.teacher_steps = 8;
  d1.steps_per_round = 4;
  const run::DistillResult r1 = run::distill_run(d1);
  EXPECT_EQ(r1.stopped_by_signal, 0);
  EXPECT_EQ(r1.rounds[0].losses, r.rounds[0].losses);
  testing::expect_same_tensors(one + "/round_1/ema.safetensors", out + "/round_1/ema.safetensors");
  EXPECT_EQ(nlohmann::json::parse(read_file(one + "/distill.json"))["complete"], true);
}

// Stopped in round 1 with --overwrite: nothing is published, and the old --out is kept whole
// (it is replaced only when round 1 is published).
TEST(ProgressiveDistillRun, StopInRoundOneKeepsTheOldOut) {
  const std::string teacher = tiny_teacher("distill_stop1_teacher");
  const std::string out = testing::temp_path("distill_stop1_out");
  fs::remove_all(out);
  fs::create_directories(out);
  std::ofstream(out + "/keep.txt") << "mine";
  run::DistillOptions d = tiny_distill(teacher, out);
  d.overwrite = true;
  d.steps_per_round = 3;
  std::vector<std::string> lines;
  d.log = [&lines](const std::string& l) {
    lines.push_back(l);
    if (l.rfind("round 1/1:", 0) == 0) std::raise(SIGTERM);
  };
  const run::DistillResult r = run::distill_run(d);
  EXPECT_EQ(r.stopped_by_signal, SIGTERM);
  EXPECT_TRUE(r.rounds.empty());
  EXPECT_TRUE(fs::exists(out + "/keep.txt"));
  EXPECT_FALSE(fs::exists(out + "/round_1"));
  bool said = false;
  for (const std::string& l : lines) said |= l.find("stopped by SIGTERM") != std::string::npos &&
                                             l.find("0 of 1 rounds complete") != std::string::npos;
  EXPECT_TRUE(said);
}

// A student's folder says how it is sampled: ddpm-sample defaults to --clip-x0 false for it
// (not for its teacher), a sample with no flags is the sample with --clip-x0 false, and one
// warning line comes when the sampler or the step count leaves the trained DDIM grid.
TEST(ProgressiveDistillSample, StudentDefaultsToNoClipAndWarnsOffItsGrid) {
  const std::string teacher = tiny_teacher("distill_sample_teacher");
  const std::string out = testing::temp_path("distill_sample_out");
  fs::remove_all(out);
  run::DistillOptions d = tiny_distill(teacher, out);
  d.steps_per_round = 3;
  (void)run::distill_run(d);
  const std::string student = out + "/round_1";
  const std::optional<run::DistillationRecord> rec = run::read_distillation_record(student);
  ASSERT_TRUE(rec.has_value());
  EXPECT_EQ(rec->sampling_steps, 5);
  EXPECT_EQ(rec->sampler, "ddim");
  EXPECT_FALSE(rec->clip_x0);
  EXPECT_FALSE(run::read_distillation_record(teacher).has_value());

  const run::ModelSource st = run::open_model(student, Device::cpu());
  run::SampleOptions o;
  o.checkpoint = student;
  o.sampler = "ddim";
  o.sampling_steps = 5;
  EXPECT_FALSE(diffusion::resolve_clip_x0(run::make_sampler_config(o, st)));
  run::SampleOptions asked = o;
  asked.clip_x0 = "true";
  asked.clip_x0_given = true;
  EXPECT_TRUE(diffusion::resolve_clip_x0(run::make_sampler_config(asked, st)));
  run::SampleOptions of_teacher = o;
  of_teacher.checkpoint = teacher;
  EXPECT_TRUE(diffusion::resolve_clip_x0(run::make_sampler_config(of_teacher, st))) << "the default clamp stays for other models";

  o.num_samples = 2;
  o.batch_size = 2;
  o.seed = 3;
  const auto sample = [](run::SampleOptions s, const std::string& name, std::string* log_text) {
    s.out = testing::temp_run(name);
    std::ostringstream log;
    const run::SampleResult res = run::run_sample(s, &log);
    if (log_text) *log_text = log.str();
    return res.pixels;
  };
  const auto warnings = [](const std::string& text) {
    int n = 0;
    std::istringstream in(text);
    for (std::string l; std::getline(in, l);) n += l.rfind("warning: ", 0) == 0 ? 1 : 0;
    return n;
  };
  std::string log_default, log_more, log_ddpm;
  const std::vector<std::uint8_t> by_default = sample(o, "distill_sample_default", &log_default);
  run::SampleOptions no_clip = o;
  no_clip.clip_x0 = "false";
  no_clip.clip_x0_given = true;
  EXPECT_EQ(sample(no_clip, "distill_sample_no_clip", nullptr), by_default);
  EXPECT_EQ(warnings(log_default), 0) << log_default;
  run::SampleOptions more = o;
  more.sampling_steps = 10;
  (void)sample(more, "distill_sample_10", &log_more);
  EXPECT_EQ(warnings(log_more), 1) << log_more;
  EXPECT_NE(log_more.find("--sampler ddim --sampling-steps 5 only"), std::string::npos) << log_more;
  run::SampleOptions ddpm = o;
  ddpm.sampler = "ddpm";
  ddpm.sampling_steps = 0;  // every step
  (void)sample(ddpm, "distill_sample_ddpm", &log_ddpm);
  EXPECT_EQ(warnings(log_ddpm), 1) << log_ddpm;
  EXPECT_NE(log_ddpm.find("with --sampler ddpm --sampling-steps 50"), std::string::npos) << log_ddpm;
}

// A latent teacher distilled one round: the student is a 4x4x3 latent UNet, its folder
// carries the run's autoencoder (tensor for tensor), and ddpm-sample on the folder alone
// decodes the same pixels as the opened student decoded by the RUN's autoencoder by hand.
TEST(ProgressiveDistillRun, LatentTeacherRoundCarriesTheAutoencoder) {
  const std::string teacher = testing::tiny_latent_v_teacher("distill_latent_teacher", "distill_latent_ae");
  const std::string out = testing::temp_path("distill_latent_out");
  fs::remove_all(out);
  run::DistillOptions d = tiny_distill(teacher, out);
  d.steps_per_round = 3;
  const run::DistillResult r = run::distill_run(d);
  ASSERT_EQ(r.rounds.size(), 1u);
  for (double l : r.rounds[0].losses) EXPECT_TRUE(std::isfinite(l));
  const std::string student = out + "/round_1";
  const std::string ae = run::find_run_autoencoder(student);
  EXPECT_EQ(fs::path(ae).lexically_normal(), (fs::path(student) / run::kRunAutoencoderFolder).lexically_normal());
  testing::expect_same_tensors(ae + "/" + autoencoder::kAutoencoderWeights,
                               teacher + "/" + run::kRunAutoencoderFolder + "/" + autoencoder::kAutoencoderWeights);
  const run::ModelSource st = run::open_model(student, Device::cpu());
  EXPECT_EQ(st.net->config().image_size, 4);
  EXPECT_EQ(st.net->config().in_channels, 3);

  run::SampleOptions s;
  s.checkpoint = student;
  s.sampler = "ddim";
  s.sampling_steps = 5;
  s.num_samples = 2;
  s.batch_size = 2;
  s.seed = 7;
  s.out = testing::temp_run("distill_latent_sample");
  const run::SampleResult from_folder = run::run_sample(s);
  ASSERT_EQ(from_folder.shape, (Shape{2, 16, 16, 1}));  // decoded pixels
  const run::LatentCodec codec(teacher + "/" + run::kRunAutoencoderFolder, Device::cpu());
  s.out = testing::temp_run("distill_latent_sample_by_hand");
  EXPECT_EQ(run::run_sample(s, st, nullptr, &codec).pixels, from_folder.pixels);
}

TEST(ProgressiveDistillSample, WarningOnlyOffTheTrainedGrid) {
  run::DistillationRecord r;
  r.round = 2;
  r.sampling_steps = 4;
  EXPECT_EQ(run::distillation_sampling_warning(r, "x", "ddim", 4, 32), "");
  EXPECT_EQ(run::distillation_sampling_warning(r, "x", "ddim", 0, 4), "");  // 0: all T = 4 steps
  EXPECT_NE(run::distillation_sampling_warning(r, "x", "ddim", 8, 32), "");
  EXPECT_NE(run::distillation_sampling_warning(r, "x", "plms", 4, 32), "");
  EXPECT_NE(run::distillation_sampling_warning(r, "x", "ddim", 0, 32), "");
}

}  // namespace
}  // namespace ddpm
