// tests/cpu/test_guided_distill.cpp: guided distillation (Meng et al. 2023;
// models/run/guided_distill.h, progressive_distill.h eq. (4), unet.h guidance_embedding).
//   - the UNet's guidance embedding: zero-initialised (the net equals the same net without
//     it, bit for bit, for any w), its gradient against finite differences in double, the
//     config round trip, the refused diffusers export, calls with and without weights;
//   - the guided combination and the teacher's doubled-batch guided x^ against a hand
//     computation in double;
//   - ddpm-distill --guided on a tiny class-conditional teacher: the stage-1 student at step 0
//     is the teacher's conditional branch exactly; after stage 1 it is closer to the teacher's
//     guided x^w at held-out (z_t, w); a stage-2 round is published with the range recorded;
//   - ddpm-sample of a guided folder: the same pixels as a sampler driven by ONE counted
//     network call per step with w = s - 1 and no classifier-free doubling; the range refusal;
//   - the option refusals.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <set>

#include <nlohmann/json.hpp>

#include "engine/io/atomic_file.h"
#include "engine/ops/elementwise.h"
#include "engine/rng.h"
#include "models/diffusion/progressive_distill.h"
#include "models/diffusion/sampler.h"
#include "models/run/distill_run.h"
#include "models/run/guided_distill.h"
#include "models/run/model_source.h"
#include "models/run/sample_run.h"
#include "models/unet/model_io.h"
#include "support/gradcheck.h"
#include "support/tiny_encoder.h"  // parameters_to_f64
#include "support/tiny_run.h"
#include "support/tiny_unet.h"
#include "support/value_error.h"

namespace ddpm {
namespace {

namespace fs = std::filesystem;
using diffusion::DiffusionSchedule;
using diffusion::Timesteps;

unet::UNetConfig cond_config(int size = 8) {
  unet::UNetConfig c = testing::tiny_unet_config(size, 1);
  c.num_classes = 3;
  return c;
}

// Every weight perturbed (the zero-initialised output layers would hide the inputs).
void perturb(const unet::UNet& net, std::uint64_t seed, float scale) {
  Generator g(seed);
  for (const auto& [name, t] : net.named_parameters()) {
    const std::vector<float> noise = randn(t.shape(), g).to_vector();
    float* p = t.data<float>();
    for (std::int64_t i = 0; i < t.numel(); ++i) p[i] += scale * noise[static_cast<std::size_t>(i)];
  }
}

TEST(GuidedDistillUNet, ZeroInitialisedEmbeddingEqualsTheNetWithoutIt) {
  Generator g1(4), g2(4);
  const unet::UNet plain(cond_config(), g1, Device::cpu());
  unet::UNetConfig gc = cond_config();
  gc.guidance_embedding = true;
  const unet::UNet guided(gc, g2, Device::cpu());
  const auto pp = plain.named_parameters(), gp = guided.named_parameters();
  ASSERT_EQ(gp.size(), pp.size() + 4);
  for (std::size_t i = 0; i < pp.size(); ++i) {  // every other weight drawn as without it
    EXPECT_EQ(gp[i].first, pp[i].first);
    EXPECT_EQ(gp[i].second.to_vector(), pp[i].second.to_vector()) << pp[i].first;
  }
  std::set<std::string> extra;
  for (std::size_t i = pp.size(); i < gp.size(); ++i) extra.insert(gp[i].first);
  EXPECT_EQ(extra, (std::set<std::string>{"guidance_embedding.linear_1.weight", "guidance_embedding.linear_1.bias",
                                          "guidance_embedding.linear_2.weight", "guidance_embedding.linear_2.bias"}));

  // The copy ddpm-distill makes of a trained (here: perturbed) net: equal outputs for any w.
  perturb(plain, 5, 0.2f);
  const auto copy = run::with_guidance_embedding(plain, 77);
  Generator g(9);
  const Tensor x = randn({3, 8, 8, 1}, g);
  const std::vector<double> t = {3, 20, 41};
  const std::vector<std::int64_t> y = {0, 2, 3};  // 3: the null label
  const std::vector<float> want = plain.forward(x, t, y, nn::Context{}).to_vector();
  for (double w : {0.0, 0.5, 4.0})
    EXPECT_EQ(copy->forward(x, t, y, std::vector<double>(3, w), nn::Context{}).to_vector(), want) << "w " << w;

  // A guided net refuses a call without weights (or with the wrong count), a plain one with.
  testing::expect_value_error([&] { (void)copy->forward(x, t, y, nn::Context{}); }, "needs one guidance weight w");
  testing::expect_value_error([&] { (void)copy->forward(x, t, y, {1.0}, nn::Context{}); },
                              "1 guidance weights for a batch of 3");
  testing::expect_value_error([&] { (void)plain.forward(x, t, y, {1, 1, 1}, nn::Context{}); },
                              "has no guidance_embedding");
  testing::expect_value_error([&] { (void)run::with_guidance_embedding(*copy, 1); }, "already has");
}

TEST(GuidedDistillUNet, EmbeddingGradientMatchesFiniteDifferencesInDouble) {
  unet::UNetConfig c = cond_config(4);
  c.guidance_embedding = true;
  Generator g(3);
  unet::UNet net(c, g, Device::cpu());
  perturb(net, 6, 0.2f);  // linear_2 too, so linear_1 gets a gradient
  testing::parameters_to_f64(net);
  const Tensor x = testing::random_tensor({2, 4, 4, 1}, 8);
  std::vector<Tensor> leaves;
  for (const auto& [name, p] : net.named_parameters())
    if (name == "guidance_embedding.linear_1.weight" || name == "guidance_embedding.linear_1.bias" ||
        name == "guidance_embedding.linear_2.bias") {
      Tensor leaf = p;
      leaf.set_requires_grad(true);
      leaves.push_back(leaf);
    }
  ASSERT_EQ(leaves.size(), 3u);
  auto f = [&](const std::vector<Tensor>&) {
    return net.forward(x, {4, 30}, {1, 2}, {0.7, 2.5}, nn::Context{});
  };
  EXPECT_TRUE(testing::gradcheck(f, leaves, 1e-6, 1e-7, 1e-5));
}

TEST(GuidedDistillUNet, ConfigRoundTripsAndTheExportIsRefused) {
  unet::UNetConfig c = cond_config();
  c.guidance_embedding = true;
  const nlohmann::json j = unet::config_to_json(c);
  EXPECT_EQ(j.at("guidance_embedding"), true);
  EXPECT_TRUE(unet::config_from_json(j).guidance_embedding);
  EXPECT_FALSE(unet::config_to_json(cond_config()).contains("guidance_embedding"));  // others unchanged
  EXPECT_FALSE(unet::config_from_json(unet::config_to_json(cond_config())).guidance_embedding);
  nlohmann::json bad = j;
  bad["guidance_embedding"] = "yes";
  EXPECT_THROW(unet::config_from_json(bad), IoError);
  unet::UNetConfig plain = testing::tiny_unet_config(8, 1);
  plain.guidance_embedding = true;  // unconditional
  testing::expect_value_error([&] { plain.validate(); }, "needs a class-conditional model");
  testing::expect_value_error([&] { (void)unet::config_to_diffusers(c); }, "guidance-distilled");
  EXPECT_NO_THROW(unet::config_to_diffusers(cond_config()));
}

TEST(GuidedDistillTarget, GuidedCombinationMatchesAHandComputationInDouble) {
  const DiffusionSchedule s(diffusion::betas_for(diffusion::NoiseSchedule::linear, 40));
  Generator gen(2);
  const Tensor z = randn({3, 2}, gen, Device::cpu(), DType::f64);
  const Timesteps t = {5, 17, 39};
  const std::vector<std::int64_t> y = {0, 1, 1};
  const std::vector<double> w = {0.0, 1.5, 4.0};
  // An eps "teacher" whose output depends on the label: eps = 0.3 z + 0.1 (label + 1) t / 40.
  const diffusion::DenoiseFn teacher = [](const Tensor& x, const std::vector<double>& tt,
                                          const std::vector<std::int64_t>& yy) {
    std::vector<double> v = x.to_double_vector();
    const std::size_t d = v.size() / tt.size();
    for (std::size_t k = 0; k < v.size(); ++k)
      v[k] = 0.3 * v[k] + 0.1 * static_cast<double>(yy[k / d] + 1) * tt[k / d] / 40.0;
    return Tensor::from_vector(v, x.shape(), DType::f64);
  };
  diffusion::DenoiserReading r;  // eps, unclamped
  const std::vector<double> got =
      diffusion::teacher_guided_x0(s, teacher, r, z, t, y, /*null_label=*/2, w).to_double_vector();
  const std::vector<double> zv = z.to_double_vector();
  for (std::size_t k = 0; k < 3; ++k) {
    const double abar = s.alphas_cumprod[static_cast<std::size_t>(t[k])];
    const auto x0 = [&](double zz, std::int64_t label) {
      const double eps = 0.3 * zz + 0.1 * static_cast<double>(label + 1) * static_cast<double>(t[k]) / 40.0;
      return (zz - std::sqrt(1 - abar) * eps) / std::sqrt(abar);
    };
    for (std::size_t j = 0; j < 2; ++j) {
      const double zz = zv[k * 2 + j];
      const double want = (1 + w[k]) * x0(zz, y[k]) - w[k] * x0(zz, 2);
      EXPECT_NEAR(got[k * 2 + j], want, 1e-12 * (1 + std::fabs(want))) << k << " " << j;
    }
  }
  // The combination alone, and its refusal of mismatched weights.
  const Tensor a = Tensor::from_vector({1.0, 2.0, 3.0, 4.0}, {2, 2}, DType::f64);
  const Tensor b = Tensor::from_vector({0.5, -1.0, 2.0, 0.0}, {2, 2}, DType::f64);
  EXPECT_EQ(diffusion::guided_combination(a, b, {0.0, 2.0}).to_double_vector(),
            (std::vector<double>{1.0, 2.0, 3 * 3.0 - 2 * 2.0, 3 * 4.0 - 0.0}));
  testing::expect_value_error([&] { (void)diffusion::guided_combination(a, b, {1.0}); }, "1 guidance weights");
}

// A tiny class-conditional v-prediction run (T = 32: --teacher-steps 8 halves to 4).
std::string cond_teacher(const std::string& name) {
  run::TrainOptions o = testing::tiny_run(testing::temp_run(name));
  o.diffusion_steps = 32;
  o.class_cond = true;
  o.class_dropout = 0.2;
  o.predict = "v";
  o.dropout = 0;
  o.sample_steps = 8;
  o.steps = 8;
  o.save_every = 8;
  o.lr = 2e-3;
  run::train_run(o);
  return o.out;
}

const std::string& shared_teacher() {
  static const std::string t = cond_teacher("guided_teacher");
  return t;
}

run::DistillOptions guided_options(const std::string& out) {
  run::DistillOptions d;
  d.teacher = shared_teacher();
  d.teacher_steps = 8;
  d.rounds = 0;
  d.guided = "1,3";
  d.steps_per_round = 20;
  d.batch_size = 8;
  d.lr = 2e-3;
  d.warmup_steps = 3;
  d.ema_rate = 0.8;
  d.gap_samples = 8;
  d.log_every = 1000;
  d.out = out;
  return d;
}

// Stage 1 only (--rounds 0) on the shared teacher, run once per process.
const std::string& stage1_folder() {
  static const std::string out = [] {
    const std::string o = testing::temp_path("guided_stage1");
    const run::DistillResult res = run::distill_run(guided_options(o));
    EXPECT_EQ(res.rounds.size(), 1u);
    return o;
  }();
  return out;
}

diffusion::DenoiseFn plain_fn(const run::ModelSource& m) {
  return run::weighted_denoiser(*m.net, {});
}

// Held-out (z_t, y, w): fixed images, noise, timesteps on the 8-step grid, weights in [0, 2].
struct HeldOut {
  Tensor z;
  Timesteps t;
  std::vector<std::int64_t> y;
  std::vector<double> w;
};
HeldOut held_out(const DiffusionSchedule& s) {
  HeldOut h;
  Generator gen(4242);
  const Tensor x0 = clamp(scale(randn({12, 16, 16, 1}, gen), 0.5), -1.0, 1.0);
  const Timesteps grid = diffusion::ddim_sampling_grid(32, 8);
  for (std::size_t k = 0; k < 12; ++k) {
    h.t.push_back(grid[k % 8]);
    h.y.push_back(static_cast<std::int64_t>(k % 4));
    h.w.push_back(2.0 * static_cast<double>(k) / 11.0);
  }
  h.z = diffusion::q_sample(s, x0, h.t, randn({12, 16, 16, 1}, gen));
  return h;
}

TEST(GuidedDistillRun, StageOneStartsAtTheConditionalBranchAndMovesToTheGuidedTeacher) {
  const run::ModelSource t = run::open_model(shared_teacher(), Device::cpu());
  const DiffusionSchedule s(run::diffusion_betas(t.diffusion));
  const HeldOut h = held_out(s);
  diffusion::DenoiserReading r;
  r.type = diffusion::ModelMeanType::v;

  // Step 0: the student ddpm-distill builds is the teacher's conditional branch, exactly.
  const auto start = run::with_guidance_embedding(*t.net, 1);
  const std::vector<float> cond = t.net->forward(h.z, {h.t.begin(), h.t.end()}, h.y, nn::Context{}).to_vector();
  EXPECT_EQ(start->forward(h.z, {h.t.begin(), h.t.end()}, h.y, h.w, nn::Context{}).to_vector(), cond);

  const std::string& out = stage1_folder();
  const nlohmann::json rec = nlohmann::json::parse(read_file(out + "/distill.json"));
  ASSERT_EQ(rec["rounds"].size(), 1u);
  EXPECT_EQ(rec["rounds"][0]["round"], 0);
  EXPECT_EQ(rec["rounds"][0]["student_steps"], 8);
  EXPECT_LT(rec["rounds"][0]["gap_after"].get<double>(), rec["rounds"][0]["gap_before"].get<double>());

  const run::ModelSource st = run::open_model(out + "/round_0", Device::cpu());
  ASSERT_TRUE(st.net->config().guidance_embedding);
  const diffusion::DenoiseFn cond_fn = plain_fn(t);
  const double before = diffusion::guided_x0_gap(s, cond_fn, cond_fn, r, h.z, h.t, h.y, 4, h.w);
  const double after =
      diffusion::guided_x0_gap(s, cond_fn, run::weighted_denoiser(*st.net, h.w), r, h.z, h.t, h.y, 4, h.w);
  EXPECT_LT(after, 0.8 * before) << "before " << before << " after " << after;

  const nlohmann::json cfg = nlohmann::json::parse(read_file(out + "/round_0/config.json"));
  EXPECT_EQ(cfg["model"]["guidance_embedding"], true);
  EXPECT_EQ(cfg["distillation"]["round"], 0);
  EXPECT_EQ(cfg["distillation"]["sampling_steps"], 8);
  EXPECT_EQ(cfg["distillation"]["guided"]["scale_min"], 1.0);
  EXPECT_EQ(cfg["distillation"]["guided"]["scale_max"], 3.0);
  EXPECT_EQ(rec["guided"]["scale_max"], 3.0);
  EXPECT_EQ(rec["complete"], true);
}

TEST(GuidedDistillRun, StageTwoRoundIsPublishedWithTheRange) {
  const std::string out = testing::temp_path("guided_stage2");
  run::DistillOptions d = guided_options(out);
  d.rounds = 1;
  d.guided_steps = 3;
  d.steps_per_round = 3;
  const run::DistillResult res = run::distill_run(d);
  ASSERT_EQ(res.rounds.size(), 2u);
  EXPECT_EQ(res.rounds[1].round, 1);
  EXPECT_EQ(res.rounds[1].student_steps, 4);
  EXPECT_EQ(res.rounds[0].losses.size(), 3u);
  EXPECT_TRUE(std::isfinite(res.rounds[1].gap_after));
  const std::optional<run::DistillationRecord> rec = run::read_distillation_record(out + "/round_1");
  ASSERT_TRUE(rec && rec->guided);
  EXPECT_EQ(rec->guided->scale_min, 1.0);
  EXPECT_EQ(rec->sampling_steps, 4);
  EXPECT_TRUE(run::open_model(out + "/round_1", Device::cpu()).net->config().guidance_embedding);
  const nlohmann::json j = nlohmann::json::parse(read_file(out + "/distill.json"));
  EXPECT_EQ(j["rounds"].size(), 2u);
  EXPECT_EQ(j["rounds_done"], 1);
}

TEST(GuidedDistillSample, OneNetworkCallPerStepWithTheWeightSMinusOne) {
  const std::string folder = stage1_folder() + "/round_0";  // its embedding trained off zero
  const run::ModelSource m = run::open_model(folder, Device::cpu());

  run::SampleOptions o;
  o.checkpoint = folder;
  o.sampler = "ddim";
  o.sampling_steps = 8;
  o.num_samples = 3;
  o.batch_size = 3;
  o.guidance_scale = 2.5;
  o.seed = 11;
  o.out = testing::temp_path("guided_sample_out");
  const run::SampleResult got = run::run_sample(o);

  // The reference: the sampler config ddpm-sample builds, with no classifier-free doubling,
  // driven by one counted call per step with w = 1.5.
  const diffusion::SamplerConfig sc = run::make_sampler_config(o, m);
  EXPECT_EQ(sc.guidance_scale, 1.0);
  const DiffusionSchedule base(run::diffusion_betas(m.diffusion));
  const auto reference = [&](double w, int* calls) {
    const diffusion::DenoiseFn fn = [&](const Tensor& x, const std::vector<double>& t,
                                        const std::vector<std::int64_t>& y) {
      ++*calls;
      EXPECT_EQ(x.dim(0), 3) << "a doubled batch";
      return m.net->forward(x, t, y, std::vector<double>(3, w), nn::Context{});
    };
    Generator gen(o.seed);
    return run::to_uint8_pixels(diffusion::sample(base, fn, {3, 16, 16, 1}, {0, 1, 2}, sc, gen));
  };
  int calls = 0;
  EXPECT_EQ(got.pixels, reference(1.5, &calls));
  EXPECT_EQ(calls, 8);
  int other = 0;
  EXPECT_NE(got.pixels, reference(0.0, &other)) << "the weight does not reach the samples";
  const nlohmann::json info = nlohmann::json::parse(read_file(o.out + "/sample_info.json"));
  EXPECT_EQ(info["guidance_distilled"]["guidance_weight_w"], 1.5);
  EXPECT_EQ(info["guidance_distilled"]["network_calls_per_step"], 1);

  // Outside the trained range [1, 3]: refused, nothing written.
  o.guidance_scale = 4;
  o.out = testing::temp_path("guided_sample_refused");
  testing::expect_value_error([&] { (void)run::run_sample(o); }, "outside the range [1, 3]");
  EXPECT_FALSE(fs::exists(o.out));
  o.guidance_scale = 2;
  o.guidance_rescale = 0.5;
  testing::expect_value_error([&] { (void)run::run_sample(o); }, "do not apply to it");
}

TEST(GuidedDistillRun, Refusals) {
  const std::string out = testing::temp_path("guided_refused");
  run::DistillOptions d = guided_options(out);
  for (const auto& [spec, msg] : std::vector<std::pair<std::string, std::string>>{
           {"3,1", "S_MIN 3 is larger than S_MAX 1"}, {"0.5,2", "S_MIN 0.5 is below 1"},
           {"2", "--guided 2 is not a range"}, {"1,x", "is not a range"}}) {
    d.guided = spec;
    testing::expect_value_error([&] { run::check_distill_options(d); }, msg);
  }
  d.guided = "";
  testing::expect_value_error([&] { run::check_distill_options(d); }, "--rounds must be in [1, 12], got 0");
  d.rounds = 1;
  d.guided_steps = 5;
  testing::expect_value_error([&] { run::check_distill_options(d); }, "--guided-steps 5 needs --guided");
  // An unconditional teacher: refused before anything is written.
  run::TrainOptions u = testing::tiny_run(testing::temp_run("guided_uncond"));
  u.diffusion_steps = 32;
  u.sample_steps = 8;
  u.steps = 1;
  u.save_every = 1;
  run::train_run(u);
  d = guided_options(out);
  d.teacher = u.out;
  testing::expect_value_error([&] { (void)run::distill_run(d); }, "is unconditional");
  EXPECT_FALSE(fs::exists(out));
}

}  // namespace
}  // namespace ddpm
