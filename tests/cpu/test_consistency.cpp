// tests/cpu/test_consistency.cpp: consistency distillation (models/diffusion/consistency.h,
// models/run/consistency_run.h) and its sampler in ddpm-sample.
//   - the grid and the boundary condition: c_skip = 1, c_out = 0 exactly at the clean level,
//     where f returns z without a network call; the scalings elsewhere by the formula;
//   - the target (teacher DDIM step, then the target network) against a scalar re-derivation
//     in double, in the sampler's form x^ = (z - sigma eps^) / alpha;
//   - the distances by hand, and their gradient by finite differences in double;
//   - the sampler: K = 1 is one call at T - 1, K levels are K calls at LCM's levels, and with
//     the exact consistency function of Gaussian data the sample moments match the ones the
//     recursion (4) predicts;
//   - a tiny ddpm-train teacher distilled a few dozen steps: the held-out one-step gap to the
//     teacher's N-step DDIM endpoint shrinks, the folder opens, ddpm-sample samples it with
//     --sampler consistency and refuses other samplers, and other models refuse it;
//   - class-conditional learned-variance and latent teachers;
//   - a stop signal publishes nothing (it saves the run's state); refusals.
#include <gtest/gtest.h>

#include <cmath>
#include <csignal>
#include <filesystem>
#include <sstream>

#include <nlohmann/json.hpp>

#include "engine/io/atomic_file.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/reduce.h"
#include "engine/rng.h"
#include "models/diffusion/consistency.h"
#include "models/run/consistency_run.h"
#include "models/run/distill_state.h"
#include "models/run/latent_run.h"
#include "models/run/model_source.h"
#include "models/run/sample_run.h"
#include "support/consistency_reference.h"
#include "support/gradcheck.h"
#include "support/temp_dir.h"
#include "support/tiny_autoencoder.h"
#include "support/tiny_run.h"
#include "support/value_error.h"

namespace ddpm {
namespace {

namespace fs = std::filesystem;
using diffusion::ConsistencyGrid;
using diffusion::DiffusionSchedule;
using diffusion::kCleanLevel;
using diffusion::Timesteps;

DiffusionSchedule linear_schedule(std::int64_t T) {
  return DiffusionSchedule(diffusion::linear_betas(T));
}

TEST(ConsistencyGridTest, LevelsAreTheDdimGridAboveTheCleanLevel) {
  const ConsistencyGrid g = diffusion::consistency_grid(50, 10);
  ASSERT_EQ(g.num_levels(), 10);
  EXPECT_EQ(g.levels[0], kCleanLevel);
  for (std::int64_t n = 1; n <= 10; ++n) EXPECT_EQ(g.levels[static_cast<std::size_t>(n)], 5 * n - 1);
  EXPECT_DOUBLE_EQ(g.timestep_scale, 200.0);  // 10 * 1000 / T
  testing::expect_value_error([] { (void)diffusion::consistency_grid(50, 7); }, "--consistency-levels 7");
}

TEST(ConsistencyMath, BoundaryConditionIsExact) {
  const ConsistencyGrid g = diffusion::consistency_grid(50, 10);
  const diffusion::BoundaryScalings b0 = diffusion::boundary_scalings(g, kCleanLevel);
  EXPECT_EQ(b0.c_skip, 1.0);
  EXPECT_EQ(b0.c_out, 0.0);
  for (std::int64_t t : {0, 4, 49}) {  // tau = s (t + 1)
    const double tau = 200.0 * static_cast<double>(t + 1);
    const diffusion::BoundaryScalings b = diffusion::boundary_scalings(g, t);
    EXPECT_NEAR(b.c_skip, 0.25 / (tau * tau + 0.25), 1e-15);
    EXPECT_NEAR(b.c_out, tau / std::sqrt(tau * tau + 0.25), 1e-15);
  }
  // f(z, clean) = z bit for bit, without calling the network.
  const DiffusionSchedule s = linear_schedule(50);
  int calls = 0;
  const diffusion::DenoiseFn net = [&calls](const Tensor& x, const std::vector<double>&,
                                            const std::vector<std::int64_t>&) {
    ++calls;
    return scale(x, 3.0);
  };
  const Tensor z = testing::random_tensor({3, 2, 2, 1}, 7);
  const Tensor f = diffusion::consistency_function(s, net, {}, g, z, {kCleanLevel, kCleanLevel, kCleanLevel}, {});
  EXPECT_EQ(calls, 0);
  EXPECT_EQ(f.to_double_vector(), z.to_double_vector());
  // In a mixed batch the clean row is still z exactly.
  const Tensor m = diffusion::consistency_function(s, net, {}, g, z, {kCleanLevel, 9, 49}, {});
  EXPECT_EQ(calls, 1);
  const std::vector<double> mv = m.to_double_vector(), zv = z.to_double_vector();
  for (std::size_t k = 0; k < 4; ++k) EXPECT_EQ(mv[k], zv[k]);
}

// eps-networks that are simple functions of (x, t), different for teacher and target.
diffusion::DenoiseFn linear_eps(double a, double b) {
  return [a, b](const Tensor& x, const std::vector<double>& t, const std::vector<std::int64_t>&) {
    const std::vector<double> xv = x.to_double_vector();
    std::vector<double> out(xv.size());
    const std::size_t per = xv.size() / t.size();
    for (std::size_t k = 0; k < xv.size(); ++k) out[k] = a * xv[k] + b * t[k / per] / 50.0;
    return Tensor::from_vector(out, x.shape(), x.dtype());
  };
}

TEST(ConsistencyMath, TargetMatchesScalarDerivation) {
  const DiffusionSchedule s = linear_schedule(50);
  const ConsistencyGrid g = diffusion::consistency_grid(50, 10);
  const Tensor x0 = testing::random_tensor({3, 2, 2, 1}, 11, DType::f64, 0.5);
  const Tensor eps = testing::random_tensor({3, 2, 2, 1}, 12);
  const std::vector<std::int64_t> upper = {1, 4, 10};  // lower levels: clean, 14, 44
  const diffusion::ConsistencyExamples e = diffusion::consistency_examples(s, g, x0, upper, eps);
  EXPECT_EQ(e.upper, (Timesteps{4, 19, 49}));
  EXPECT_EQ(e.lower, (Timesteps{kCleanLevel, 14, 44}));
  const double ta = 0.3, tb = 0.2, ga = -0.1, gb = 0.4;  // teacher and target eps-nets
  const Tensor got = diffusion::consistency_target(s, linear_eps(ta, tb), linear_eps(ga, gb), {}, g, e, {});
  const std::vector<double> xv = x0.to_double_vector(), ev = eps.to_double_vector(), gv = got.to_double_vector();
  for (std::size_t k = 0; k < xv.size(); ++k) {
    const std::size_t i = k / 4;
    const double tu = static_cast<double>(e.upper[i]);
    const double abar_u = s.alphas_cumprod[static_cast<std::size_t>(e.upper[i])];
    const double z = std::sqrt(abar_u) * xv[k] + std::sqrt(1 - abar_u) * ev[k];
    // The teacher's x^ and the DDIM step to the lower level (x^ itself at the clean level).
    const double eps_t = ta * z + tb * tu / 50.0;
    const double xhat = (z - std::sqrt(1 - abar_u) * eps_t) / std::sqrt(abar_u);
    // eps^ = (z - alpha x^) / sigma is the teacher's eps itself.
    const double want = testing::consistency_target_by_hand(s, e.lower[i], xhat, eps_t, ga, gb, 200.0);
    EXPECT_NEAR(gv[k], want, 1e-12 * (1 + std::abs(want))) << "element " << k;
  }
}

TEST(ConsistencyMath, DistancesByHandAndTheirGradient) {
  const Tensor a = testing::random_tensor({3, 2, 2, 1}, 21), b = testing::random_tensor({3, 2, 2, 1}, 22);
  const std::vector<double> av = a.to_double_vector(), bv = b.to_double_vector();
  double l2 = 0, huber = 0;
  const double c = 0.00054 * 2.0;  // sqrt(4 elements)
  for (std::size_t i = 0; i < 3; ++i) {
    double n2 = 0;
    for (std::size_t j = 0; j < 4; ++j) n2 += (av[i * 4 + j] - bv[i * 4 + j]) * (av[i * 4 + j] - bv[i * 4 + j]);
    l2 += n2 / 12;
    huber += (std::sqrt(n2 + c * c) - c) / 3;
  }
  EXPECT_NEAR(diffusion::consistency_loss(a, b, diffusion::ConsistencyDistance::l2).item(), l2, 1e-14);
  EXPECT_NEAR(diffusion::consistency_loss(a, b, diffusion::ConsistencyDistance::pseudo_huber).item(), huber, 1e-14);
  for (auto d : {diffusion::ConsistencyDistance::l2, diffusion::ConsistencyDistance::pseudo_huber})
    EXPECT_TRUE(testing::gradcheck(
        [d](const std::vector<Tensor>& in) { return diffusion::consistency_loss(in[0], in[1], d); },
        {testing::param(testing::random_tensor({3, 2, 2, 1}, 23)), testing::random_tensor({3, 2, 2, 1}, 24)}))
        << diffusion::consistency_distance_name(d);
  testing::expect_value_error([] { (void)diffusion::parse_consistency_distance("huber"); }, "--consistency-loss");
}

TEST(ConsistencySampler, CallsOneNetworkPerLevelAtLcmLevels) {
  const DiffusionSchedule s = linear_schedule(50);
  const ConsistencyGrid g = diffusion::consistency_grid(50, 10);
  std::vector<double> seen;
  const diffusion::DenoiseFn net = [&seen](const Tensor& x, const std::vector<double>& t,
                                           const std::vector<std::int64_t>&) {
    seen.push_back(t[0]);
    return scale(x, 0.5);
  };
  Generator gen(3);
  (void)diffusion::consistency_sample(s, net, {}, g, {2, 2, 2, 1}, {}, 1, false, gen);
  EXPECT_EQ(seen, (std::vector<double>{49}));
  seen.clear();
  (void)diffusion::consistency_sample(s, net, {}, g, {2, 2, 2, 1}, {}, 3, false, gen);
  EXPECT_EQ(seen, (std::vector<double>{49, 34, 19}));  // L_10, L_7, L_4 (stride floor(10 / 3) = 3)
  seen.clear();
  (void)diffusion::consistency_sample(s, net, {}, g, {2, 2, 2, 1}, {}, 10, false, gen);
  EXPECT_EQ(seen.size(), 10u);
  EXPECT_EQ(seen.back(), 4);
  testing::expect_value_error([&] { (void)diffusion::consistency_sample(s, net, {}, g, {1, 1, 1, 1}, {}, 11, false, gen); },
                              "--sampling-steps 11 is outside [1, 10]");
}

// Data N(mu, sd^2) per element: the probability-flow ODE maps z at level L (alpha, sigma) to
// x_0 = mu + sd (z - alpha mu) / sqrt(alpha^2 sd^2 + sigma^2) (support/gaussian_oracle.h's
// solution, carried to sigma = 0). An x0-network that makes (1) exactly this function, and the
// moments of x after each step of (4): x ~ N(m, v) -> z ~ N(alpha m, alpha^2 v + sigma^2).
TEST(ConsistencySampler, ExactConsistencyFunctionGivesPredictedMoments) {
  const DiffusionSchedule s = linear_schedule(50);
  const ConsistencyGrid g = diffusion::consistency_grid(50, 10);
  const double mu = 0.3, sd = 0.5;
  const auto ab = [&](double t) {
    const double abar = s.alphas_cumprod[static_cast<std::size_t>(std::llround(t))];
    return std::pair<double, double>(std::sqrt(abar), std::sqrt(1 - abar));
  };
  const diffusion::DenoiseFn oracle = [&](const Tensor& x, const std::vector<double>& t,
                                          const std::vector<std::int64_t>&) {
    const std::vector<double> xv = x.to_double_vector();
    std::vector<double> out(xv.size());
    const std::size_t per = xv.size() / t.size();
    for (std::size_t k = 0; k < xv.size(); ++k) {
      const auto [a, sg] = ab(t[k / per]);
      const diffusion::BoundaryScalings b = diffusion::boundary_scalings(g, std::llround(t[k / per]));
      const double F = mu + sd * (xv[k] - a * mu) / std::sqrt(a * a * sd * sd + sg * sg);
      out[k] = (F - b.c_skip * xv[k]) / b.c_out;
    }
    return Tensor::from_vector(out, x.shape(), x.dtype());
  };
  diffusion::DenoiserReading r;
  r.type = diffusion::ModelMeanType::x0;
  for (std::int64_t K : {1, 3}) {
    Generator gen(99);
    const Tensor x = diffusion::consistency_sample(s, oracle, r, g, {4000, 2, 1, 1}, {}, K, false, gen,
                                                   Device::cpu(), DType::f64);
    double m = 0, v = 1;  // z at L_N ~ N(0, 1): "x" before the first step is taken as alpha = 1, sigma = 0 of it
    bool first = true;
    for (std::int64_t t : diffusion::consistency_sampling_levels(g, K)) {
      const auto [a, sg] = ab(static_cast<double>(t));
      const double zm = first ? 0 : a * m, zv = first ? 1 : a * a * v + sg * sg;
      const double D = std::sqrt(a * a * sd * sd + sg * sg);
      m = mu + sd * (zm - a * mu) / D;
      v = sd * sd * zv / (D * D);
      first = false;
    }
    const std::vector<double> xv = x.to_double_vector();
    double em = 0, ev = 0;
    for (double e : xv) em += e / static_cast<double>(xv.size());
    for (double e : xv) ev += (e - em) * (e - em) / static_cast<double>(xv.size() - 1);
    const double n = static_cast<double>(xv.size());
    EXPECT_NEAR(em, m, 4 * std::sqrt(v / n)) << "K = " << K;
    EXPECT_NEAR(ev, v, 4 * v * std::sqrt(2 / n)) << "K = " << K;
  }
}

// A tiny v-prediction ddpm-train run (T = 50) as the teacher, as in test_progressive_distill.cpp.
std::string tiny_teacher(const std::string& name, const std::string& objective = "ddpm", bool class_cond = false) {
  run::TrainOptions o = testing::tiny_run(testing::temp_run(name));
  o.diffusion_steps = 50;
  o.class_cond = class_cond;  // with learned variance: the mean half is read, the rest ignored
  o.class_dropout = class_cond ? 0.2 : 0.0;
  o.learn_sigma = class_cond;
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

run::ConsistencyOptions tiny_consistency(const std::string& teacher, const std::string& out) {
  run::ConsistencyOptions c;
  c.teacher = teacher;
  c.levels = 5;
  c.steps = 20;
  c.target_ema = 0;  // iCT's theta^- = theta: the boundary reaches the top level sooner in a short run
  c.batch_size = 8;
  c.lr = 2e-3;
  c.warmup_steps = 5;
  c.ema_rate = 0.9;
  c.gap_samples = 16;
  c.log_every = 1000;
  c.out = out;
  return c;
}

TEST(ConsistencyRun, ShrinksTheOneStepGapAndSamples) {
  const std::string teacher = tiny_teacher("consistency_teacher");
  const std::string out = testing::temp_path("consistency_out");
  fs::remove_all(out);
  const run::ConsistencyResult r = run::consistency_run(tiny_consistency(teacher, out));
  EXPECT_EQ(r.steps_done, 20);
  EXPECT_TRUE(std::isfinite(r.final_loss));
  EXPECT_LT(r.gap_after, 0.8 * r.gap_before) << "before " << r.gap_before << " after " << r.gap_after;
  const nlohmann::json cfg = nlohmann::json::parse(read_file(out + "/config.json"));
  EXPECT_EQ(cfg["distillation"]["sampler"], "consistency");
  EXPECT_EQ(cfg["distillation"]["consistency"]["levels"], 5);
  const run::ModelSource st = run::open_model(out, Device::cpu());
  EXPECT_EQ(st.diffusion.predict, diffusion::ModelMeanType::v);

  run::SampleOptions so;
  so.checkpoint = out;
  so.sampler = "consistency";
  so.sampling_steps = 2;
  so.num_samples = 3;
  so.batch_size = 3;
  so.out = testing::temp_path("consistency_samples");
  fs::remove_all(so.out);
  (void)run::run_sample(so);
  const nlohmann::json info = nlohmann::json::parse(read_file(so.out + "/sample_info.json"));
  EXPECT_EQ(info["consistency"]["network_calls"], 2);
  EXPECT_EQ(info["consistency"]["timesteps"], (std::vector<std::int64_t>{49, 29}));  // L_5, L_3 (L_n = 10 n - 1, stride floor(5 / 2) = 2)

  run::SampleOptions unnamed = so;  // without --sampler the folder's own sampler is the default
  unnamed.sampler = "ddpm";
  unnamed.sampler_defaulted = true;
  unnamed.out = testing::temp_path("consistency_default_sampler");
  fs::remove_all(unnamed.out);
  (void)run::run_sample(unnamed);
  EXPECT_EQ(read_file(unnamed.out + "/samples.npz"), read_file(so.out + "/samples.npz"));

  run::SampleOptions ddim = so;  // other samplers are refused for the folder, and nothing is written
  ddim.sampler = "ddim";
  ddim.out = testing::temp_path("consistency_ddim");
  fs::remove_all(ddim.out);
  testing::expect_value_error([&] { (void)run::run_sample(ddim); }, "is a consistency model");
  EXPECT_FALSE(fs::exists(ddim.out));
  run::SampleOptions of_teacher = so;  // and the sampler for other models
  of_teacher.checkpoint = teacher;
  of_teacher.out = testing::temp_path("consistency_of_teacher");
  testing::expect_value_error([&] { (void)run::run_sample(of_teacher); }, "needs a consistency model");
  run::SampleOptions too_many = so;
  too_many.sampling_steps = 6;
  too_many.out = testing::temp_path("consistency_too_many");
  testing::expect_value_error([&] { (void)run::run_sample(too_many); }, "outside [1, 5]");
}

// A class-conditional, learned-variance teacher: labels dropped at the teacher's rate, and the
// folder samples per class (the same noise with two classes gives two different images).
TEST(ConsistencyRun, ClassConditionalLearnedSigmaTeacher) {
  const std::string teacher = tiny_teacher("consistency_cond_teacher", "ddpm", true);
  const std::string out = testing::temp_path("consistency_cond_out");
  fs::remove_all(out);
  run::ConsistencyOptions c = tiny_consistency(teacher, out);
  c.steps = 6;
  const run::ConsistencyResult r = run::consistency_run(c);
  EXPECT_TRUE(std::isfinite(r.final_loss));
  const nlohmann::json cfg = nlohmann::json::parse(read_file(out + "/config.json"));
  EXPECT_DOUBLE_EQ(cfg["distillation"]["consistency"]["label_dropout"].get<double>(), 0.2);
  const run::ModelSource st = run::open_model(out, Device::cpu());
  EXPECT_EQ(st.net->config().num_classes, 4);
  EXPECT_TRUE(st.net->config().learn_sigma);
  std::vector<std::vector<std::uint8_t>> px;
  for (int label : {0, 1}) {
    run::SampleOptions so;
    so.checkpoint = out;
    so.sampler = "consistency";
    so.num_samples = 2;
    so.batch_size = 2;
    so.class_label = label;
    so.out = testing::temp_path("consistency_cond_samples_" + std::to_string(label));
    px.push_back(run::run_sample(so).pixels);
  }
  EXPECT_NE(px[0], px[1]);
}

// A latent teacher: the folder carries the run's autoencoder, and ddpm-sample on the folder
// alone decodes what the opened model decoded by the run's autoencoder by hand gives.
TEST(ConsistencyRun, LatentTeacherCarriesTheAutoencoder) {
  const std::string teacher = testing::tiny_latent_v_teacher("consistency_latent_teacher", "consistency_latent_ae");
  const std::string out = testing::temp_path("consistency_latent_out");
  fs::remove_all(out);
  run::ConsistencyOptions c = tiny_consistency(teacher, out);
  c.steps = 3;
  const run::ConsistencyResult r = run::consistency_run(c);
  for (double l : r.losses) EXPECT_TRUE(std::isfinite(l));
  const std::string ae = run::find_run_autoencoder(out);
  EXPECT_EQ(fs::path(ae).lexically_normal(), (fs::path(out) / run::kRunAutoencoderFolder).lexically_normal());
  run::SampleOptions s;
  s.checkpoint = out;
  s.sampler = "consistency";
  s.sampling_steps = 2;
  s.num_samples = 2;
  s.batch_size = 2;
  s.seed = 7;
  s.out = testing::temp_run("consistency_latent_sample");
  const run::SampleResult from_folder = run::run_sample(s);
  ASSERT_EQ(from_folder.shape, (Shape{2, 16, 16, 1}));  // decoded pixels
  const run::ModelSource st = run::open_model(out, Device::cpu());
  const run::LatentCodec codec(teacher + "/" + run::kRunAutoencoderFolder, Device::cpu());
  s.out = testing::temp_run("consistency_latent_sample_by_hand");
  EXPECT_EQ(run::run_sample(s, st, nullptr, &codec).pixels, from_folder.pixels);
}

TEST(ConsistencyRun, StopSignalPublishesNothingAndRefusals) {
  const std::string teacher = tiny_teacher("consistency_stop_teacher");
  const std::string out = testing::temp_path("consistency_stop_out");
  fs::remove_all(out);
  run::ConsistencyOptions c = tiny_consistency(teacher, out);
  c.log_every = 3;
  bool raised = false;
  c.log = [&raised](const std::string& l) {
    if (!raised && l.find("step 3/") != std::string::npos) {
      raised = true;
      std::raise(SIGTERM);
    }
  };
  const run::ConsistencyResult r = run::consistency_run(c);
  ASSERT_TRUE(raised);
  EXPECT_EQ(r.stopped_by_signal, SIGTERM);
  EXPECT_EQ(r.steps_done, 3);
  EXPECT_TRUE(r.folder.empty());
  EXPECT_FALSE(fs::exists(out));  // not published; the state is (test_consistency_resume.cpp resumes it)
  EXPECT_EQ(run::load_distill_state(out).step, 3);

  const std::string other = testing::temp_path("consistency_refused_out");  // out has a saved state now
  run::ConsistencyOptions bad = tiny_consistency(teacher, other);
  bad.levels = 7;
  testing::expect_value_error([&] { (void)run::consistency_run(bad); }, "--consistency-levels 7 does not fit");
  bad = tiny_consistency(teacher, other);
  bad.loss = "huber";
  testing::expect_value_error([&] { (void)run::consistency_run(bad); }, "l2 or pseudo-huber");
  bad = tiny_consistency(teacher, teacher);  // a non-empty --out
  testing::expect_value_error([&] { (void)run::consistency_run(bad); }, "exists and is not empty");
  EXPECT_FALSE(fs::exists(other));
}

}  // namespace
}  // namespace ddpm
