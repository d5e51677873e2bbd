// tests/cpu/test_consistency_guided.cpp: guided consistency distillation (LCM, Luo et al.
// 2023, Algorithm 1; `ddpm-distill --method consistency --guided S_MIN,S_MAX`,
// models/run/consistency_run.h) and the sampling of its students.
//   - the guided teacher step equals a hand-written DDIM step with (1 + w) eps_c - w eps_u, in
//     double; the guided ODE endpoint at w = 0 is the plain one;
//   - the student takes w: with a perturbed guidance embedding, two w give two losses;
//   - --guided 1,1 (w = 0): the first step's loss and gap_before equal an unguided run's with
//     label dropout 0 (the draws before w are the same, w is drawn last, and a fresh embedding
//     at w = 0 adds nothing); --guided 3,3 changes them (the teacher is guided);
//   - a guided run records its range, trains the embedding, and its folder samples in one
//     network call per step at a given s, differently for two s, refusing s off the range;
//     an unguided consistency student still refuses --guidance-scale;
//   - a stopped guided run resumes to the bits of an uninterrupted one; a changed --guided is
//     refused on resume;
//   - refusals: an unconditional teacher, a malformed range, nothing written.
#include <gtest/gtest.h>

#include <cmath>
#include <csignal>
#include <filesystem>
#include <memory>

#include <nlohmann/json.hpp>

#include "engine/io/atomic_file.h"
#include "engine/ops/elementwise.h"
#include "models/diffusion/consistency.h"
#include "models/run/consistency_run.h"
#include "models/run/distill_state.h"
#include "models/run/guided_distill.h"
#include "models/run/model_source.h"
#include "models/run/sample_run.h"
#include "support/consistency_reference.h"
#include "support/gradcheck.h"
#include "support/stop_at_log.h"
#include "support/temp_dir.h"
#include "support/tiny_run.h"
#include "support/value_error.h"

namespace ddpm {
namespace {

namespace fs = std::filesystem;
using diffusion::ConsistencyGrid;
using diffusion::DiffusionSchedule;
using diffusion::Timesteps;

// An eps-network of (x, t, label): a x + b t / 50 + c label (the null label 4 included).
diffusion::DenoiseFn labelled_eps(double a, double b, double c) {
  return [a, b, c](const Tensor& x, const std::vector<double>& t, const std::vector<std::int64_t>& y) {
    const std::vector<double> xv = x.to_double_vector();
    std::vector<double> out(xv.size());
    const std::size_t per = xv.size() / t.size();
    for (std::size_t k = 0; k < xv.size(); ++k)
      out[k] = a * xv[k] + b * t[k / per] / 50.0 + c * static_cast<double>(y.empty() ? 0 : y[k / per]);
    return Tensor::from_vector(out, x.shape(), x.dtype());
  };
}

TEST(ConsistencyGuidedMath, TeacherStepIsTheGuidedEpsDdimStep) {
  const DiffusionSchedule s(diffusion::linear_betas(50));
  const ConsistencyGrid g = diffusion::consistency_grid(50, 10);
  const Tensor x0 = testing::random_tensor({3, 2, 2, 1}, 31, DType::f64, 0.5);
  const Tensor eps = testing::random_tensor({3, 2, 2, 1}, 32);
  const diffusion::ConsistencyExamples e = diffusion::consistency_examples(s, g, x0, {1, 4, 10}, eps);
  const std::vector<std::int64_t> labels = {0, 2, 1};
  const std::int64_t null_label = 4;
  const diffusion::TeacherGuidance guidance{{0.5, 2.0, 3.5}, null_label};
  const double ta = 0.3, tb = 0.2, tc = -0.15, ga = -0.1, gb = 0.4;  // teacher and target networks
  const Tensor got = diffusion::consistency_target(s, labelled_eps(ta, tb, tc), labelled_eps(ga, gb, 0), {}, g, e,
                                                   labels, guidance);
  const std::vector<double> xv = x0.to_double_vector(), ev = eps.to_double_vector(), gv = got.to_double_vector();
  for (std::size_t k = 0; k < xv.size(); ++k) {
    const std::size_t i = k / 4;
    const double w = guidance.w[i];
    const double tu = static_cast<double>(e.upper[i]);
    const double abar_u = s.alphas_cumprod[static_cast<std::size_t>(e.upper[i])];
    const double z = std::sqrt(abar_u) * xv[k] + std::sqrt(1 - abar_u) * ev[k];
    // LCM eq. 9-10: the guided eps, then the eta = 0 DDIM step with it.
    const double eps_c = ta * z + tb * tu / 50.0 + tc * static_cast<double>(labels[i]);
    const double eps_u = ta * z + tb * tu / 50.0 + tc * static_cast<double>(null_label);
    const double eps_w = (1 + w) * eps_c - w * eps_u;
    const double xhat = (z - std::sqrt(1 - abar_u) * eps_w) / std::sqrt(abar_u);
    const double want = testing::consistency_target_by_hand(s, e.lower[i], xhat, eps_w, ga, gb, 200.0);
    EXPECT_NEAR(gv[k], want, 1e-12 * (1 + std::abs(want))) << "element " << k;
  }

  // The guided N-step endpoint: at w = 0 the plain one, at w = 2 another.
  const Tensor z = testing::random_tensor({3, 2, 2, 1}, 33);
  const auto endpoint = [&](const diffusion::TeacherGuidance& gd) {
    return diffusion::teacher_ode_endpoint(s, labelled_eps(ta, tb, tc), {}, g, z, labels, gd).to_double_vector();
  };
  const std::vector<double> plain = endpoint({}), w0 = endpoint({{0, 0, 0}, null_label}),
                            w2 = endpoint({{2, 2, 2}, null_label});
  for (std::size_t k = 0; k < plain.size(); ++k) {
    EXPECT_NEAR(w0[k], plain[k], 1e-12 * (1 + std::abs(plain[k]))) << "element " << k;
    EXPECT_GT(std::abs(w2[k] - plain[k]), 1e-6) << "element " << k;
  }
}

// The teacher the run tests share (support/tiny_run.h: T = 32, v-prediction, 4 classes).
const std::string& teacher() {
  static const std::string dir = testing::tiny_class_v_teacher("consistency_guided_teacher");
  return dir;
}

// The student takes w: a guidance-embedded copy of the teacher with its embedding's last
// layer perturbed (a fresh one is zero and hides w) gives two losses for two weights, and
// the unperturbed copy gives one.
TEST(ConsistencyGuidedMath, StudentTakesTheWeight) {
  const run::ModelSource m = run::open_model(teacher(), Device::cpu());
  const DiffusionSchedule s(run::diffusion_betas(m.diffusion));
  const ConsistencyGrid g = diffusion::consistency_grid(m.diffusion.diffusion_steps, 4);
  diffusion::DenoiserReading r;
  r.type = m.diffusion.predict;
  const std::unique_ptr<unet::UNet> student = run::with_guidance_embedding(*m.net, 5);
  const Tensor z = testing::random_tensor({2, 16, 16, 1}, 41, DType::f32);
  const Tensor target = testing::random_tensor({2, 16, 16, 1}, 42, DType::f32, 0.5);
  const Timesteps level = {g.levels[2], g.levels[4]};
  const std::vector<std::int64_t> labels = {1, 3};
  const auto loss_at = [&](double w) {
    const Tensor f = diffusion::consistency_function(s, run::weighted_denoiser(*student, {w, w}), r, g, z, level, labels);
    return diffusion::consistency_loss(f, target, diffusion::ConsistencyDistance::l2).item();
  };
  EXPECT_EQ(loss_at(0.0), loss_at(3.0)) << "a fresh embedding (last layer zero) must add nothing";
  for (auto& [name, value] : student->named_parameters())
    if (name == "guidance_embedding.linear_2.weight") {
      Tensor v = value;  // a handle on the parameter
      v.copy_from(add_scalar(value, 0.05));
    }
  const double l0 = loss_at(0.0), l3 = loss_at(3.0);
  EXPECT_GT(std::abs(l3 - l0), 1e-6 * l0) << "w = 0: " << l0 << ", w = 3: " << l3;
}

// Few steps of batch 4 on 4 levels (T = 32).
run::ConsistencyOptions tiny_guided(const std::string& out, const std::string& guided) {
  run::ConsistencyOptions c;
  c.teacher = teacher();
  c.levels = 4;
  c.steps = 4;
  c.batch_size = 4;
  c.lr = 2e-3;
  c.warmup_steps = 2;
  c.ema_rate = 0.5;
  c.target_ema = 0.5;
  c.gap_samples = 4;
  c.log_every = 1;
  c.checkpoint_every = 0;
  c.guided = guided;
  c.out = out;
  return c;
}

// w = 0 is the unguided run (compared: the first step's loss, computed from the same draws,
// and gap_before); w = 2 is not. The draws of w come after the step's others, so the first
// step of the three runs sees the same examples.
TEST(ConsistencyGuidedRun, UnitScaleFirstStepIsTheUnguidedOne) {
  run::ConsistencyOptions plain = tiny_guided(testing::temp_path("consistency_guided_plain"), "");
  plain.steps = 1;
  plain.label_dropout = 0;  // a guided run's default
  fs::remove_all(plain.out);
  const run::ConsistencyResult rp = run::consistency_run(plain);
  run::ConsistencyOptions unit = plain;
  unit.label_dropout = -1;  // the guided default: 0, not the teacher's 0.2
  unit.guided = "1,1";
  unit.out = testing::temp_path("consistency_guided_unit");
  fs::remove_all(unit.out);
  const run::ConsistencyResult ru = run::consistency_run(unit);
  ASSERT_EQ(rp.losses.size(), 1u);
  ASSERT_EQ(ru.losses.size(), 1u);
  EXPECT_NEAR(ru.losses[0], rp.losses[0], 1e-5 * rp.losses[0]);
  EXPECT_NEAR(ru.gap_before, rp.gap_before, 1e-5 * rp.gap_before);
  const nlohmann::json cfg = nlohmann::json::parse(read_file(unit.out + "/config.json"));
  EXPECT_EQ(cfg["distillation"]["consistency"]["label_dropout"].get<double>(), 0.0);
  EXPECT_EQ(cfg["distillation"]["guided"]["scale_min"].get<double>(), 1.0);

  run::ConsistencyOptions three = unit;
  three.guided = "3,3";
  three.out = testing::temp_path("consistency_guided_three");
  fs::remove_all(three.out);
  const run::ConsistencyResult r3 = run::consistency_run(three);
  EXPECT_GT(std::abs(r3.losses[0] - rp.losses[0]), 1e-4 * rp.losses[0]);
  EXPECT_GT(std::abs(r3.gap_before - rp.gap_before), 1e-4 * rp.gap_before);

  // The unguided student still refuses a guidance scale, and writes nothing.
  run::SampleOptions so;
  so.checkpoint = plain.out;
  so.sampler = "consistency";
  so.guidance_scale = 2;
  so.num_samples = 2;
  so.out = testing::temp_path("consistency_guided_plain_samples");
  fs::remove_all(so.out);
  testing::expect_value_error([&] { (void)run::run_sample(so); }, "does not combine with --guidance-scale 2");
  EXPECT_FALSE(fs::exists(so.out));
}

TEST(ConsistencyGuidedRun, RecordsTheRangeAndSamplesInOneCallPerStep) {
  const std::string out = testing::temp_path("consistency_guided_out");
  fs::remove_all(out);
  const run::ConsistencyResult r = run::consistency_run(tiny_guided(out, "1,5"));
  for (double l : r.losses) EXPECT_TRUE(std::isfinite(l));
  const nlohmann::json cfg = nlohmann::json::parse(read_file(out + "/config.json"));
  EXPECT_TRUE(cfg["model"]["guidance_embedding"].get<bool>());
  EXPECT_EQ(cfg["distillation"]["sampler"], "consistency");
  EXPECT_EQ(cfg["distillation"]["guided"]["scale_min"].get<double>(), 1.0);
  EXPECT_EQ(cfg["distillation"]["guided"]["scale_max"].get<double>(), 5.0);
  EXPECT_EQ(cfg["distillation"]["consistency"]["gap_guidance_scale"].get<double>(), 3.0);
  const run::ModelSource st = run::open_model(out, Device::cpu());
  double moved = 0;  // the embedding's last layer started at zero: the student was given w
  for (const auto& [name, value] : st.net->named_parameters())
    if (name == "guidance_embedding.linear_2.weight")
      for (double v : value.to_double_vector()) moved = std::max(moved, std::abs(v));
  EXPECT_GT(moved, 0.0);

  // One network call of n rows per step, at the w fed (consistency.h (4) with the w closure).
  int calls = 0;
  std::int64_t rows = 0;
  const diffusion::DenoiseFn inner = run::weighted_denoiser(*st.net, {1.0, 1.0});
  const diffusion::DenoiseFn counted = [&](const Tensor& x, const std::vector<double>& t,
                                           const std::vector<std::int64_t>& y) {
    ++calls;
    rows += x.dim(0);
    return inner(x, t, y);
  };
  Generator gen(3);
  diffusion::DenoiserReading reading;
  reading.type = st.diffusion.predict;
  (void)diffusion::consistency_sample(DiffusionSchedule(run::diffusion_betas(st.diffusion)), counted, reading,
                                      *run::read_consistency_grid(out, st.diffusion.diffusion_steps), {2, 16, 16, 1},
                                      {0, 1}, 2, false, gen);
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(rows, 4);

  std::vector<std::vector<std::uint8_t>> px;
  for (double scale : {2.0, 4.0}) {
    run::SampleOptions so;
    so.checkpoint = out;
    so.sampler = "consistency";
    so.sampling_steps = 2;
    so.guidance_scale = scale;
    so.class_label = 1;
    so.num_samples = 2;
    so.batch_size = 2;
    so.out = testing::temp_path("consistency_guided_samples_" + std::to_string(static_cast<int>(scale)));
    fs::remove_all(so.out);
    px.push_back(run::run_sample(so).pixels);
    const nlohmann::json info = nlohmann::json::parse(read_file(so.out + "/sample_info.json"));
    EXPECT_EQ(info["consistency"]["network_calls"], 2);
  }
  EXPECT_NE(px[0], px[1]);
  run::SampleOptions off;
  off.checkpoint = out;
  off.sampler = "consistency";
  off.guidance_scale = 6;
  off.num_samples = 2;
  off.out = testing::temp_path("consistency_guided_off_range");
  fs::remove_all(off.out);
  testing::expect_value_error([&] { (void)run::run_sample(off); }, "is outside the range [1, 5]");
  EXPECT_FALSE(fs::exists(off.out));
}

TEST(ConsistencyGuidedRun, StoppedRunResumesBitIdentical) {
  const std::string whole = testing::temp_path("consistency_guided_whole");
  fs::remove_all(whole);
  const run::ConsistencyResult rw = run::consistency_run(tiny_guided(whole, "1,4"));
  const std::string out = testing::temp_path("consistency_guided_stopped");
  fs::remove_all(out);
  fs::remove_all(run::distill_state_dir(out));
  run::ConsistencyOptions c = tiny_guided(out, "1, 4");  // another spelling of the same range
  bool raised = false;
  c.log = testing::sigterm_at("", "  step 2/4", &raised);
  ASSERT_EQ(run::consistency_run(c).stopped_by_signal, SIGTERM);
  ASSERT_TRUE(raised);
  EXPECT_EQ(run::load_distill_state(out).options["guided"], "1.0,4.0");

  run::ConsistencyOptions changed;  // --guided differs from the saved range: refused by name
  changed.out = out;
  changed.resume = true;
  changed.guided = "1,3";
  changed.flags_given = {"--guided"};
  testing::expect_value_error([&] { (void)run::consistency_run(changed); }, "--guided \"1.0,3.0\" differs");

  run::ConsistencyOptions again;  // --resume --out OUT alone: the range comes from the state
  again.out = out;
  again.resume = true;
  const run::ConsistencyResult r = run::consistency_run(again);
  EXPECT_EQ(r.losses, rw.losses);
  EXPECT_EQ(r.gap_before, rw.gap_before);
  EXPECT_EQ(r.gap_after, rw.gap_after);
  EXPECT_TRUE(read_file(whole + "/ema.safetensors") == read_file(out + "/ema.safetensors"))
      << "the resumed guided student differs from the uninterrupted run's";
  nlohmann::json a = nlohmann::json::parse(read_file(whole + "/config.json"));
  nlohmann::json b = nlohmann::json::parse(read_file(out + "/config.json"));
  a["distillation"]["consistency"].erase("seconds");
  b["distillation"]["consistency"].erase("seconds");
  EXPECT_EQ(a, b);
}

TEST(ConsistencyGuidedRun, Refusals) {
  run::TrainOptions t = testing::tiny_run(testing::temp_run("consistency_guided_uncond"));
  t.diffusion_steps = 32;
  t.sample_steps = 8;
  t.steps = 1;
  t.save_every = 1;
  run::train_run(t);
  const std::string out = testing::temp_path("consistency_guided_refused");
  fs::remove_all(out);
  run::ConsistencyOptions c = tiny_guided(out, "1,3");
  c.teacher = t.out;
  testing::expect_value_error([&] { (void)run::consistency_run(c); }, "is unconditional");
  c = tiny_guided(out, "5,1");
  testing::expect_value_error([&] { (void)run::consistency_run(c); }, "is larger than S_MAX");
  c = tiny_guided(out, "0.5,3");
  testing::expect_value_error([&] { (void)run::consistency_run(c); }, "is below 1");
  EXPECT_FALSE(fs::exists(out));
  EXPECT_FALSE(fs::exists(run::distill_state_dir(out)));
}

}  // namespace
}  // namespace ddpm
