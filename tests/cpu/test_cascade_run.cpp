// The cascade in one call (models/run/cascade_run.h, ddpm-sample --low-res-from) and the
// autoguidance of super-resolution models (autoguide_run.h), on tiny UNets: an 8x8 base and a
// 16x16 super-resolution model (low_res_size 8). The one-call cascade equals the two-command
// cascade (base, then --low-res base/samples.npz) pixel for pixel and file for file in
// OUT/base; its refusals come before any output. Autoguidance: w = 1 gives the model's own
// samples and w = 0 the guide's, pixel for pixel, also with conditioning augmentation (so
// both networks saw the same augmentation noise); mismatched guides are refused by name.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/io/atomic_file.h"
#include "engine/io/npz.h"
#include "engine/rng.h"
#include "models/run/autoguide_run.h"
#include "models/run/cascade_run.h"
#include "models/run/sample_run.h"
#include "support/temp_dir.h"
#include "support/tiny_model.h"
#include "support/tiny_unet.h"
#include "support/value_error.h"

namespace ddpm::run {
namespace {

namespace fs = std::filesystem;

// A 16x16 super-resolution model of 8x8 images, every weight perturbed by 0.05 N(0, 1) (as
// tiny_model.h: a fresh UNet outputs 0), T = 40 as the tiny base. `seed` makes another model.
ModelSource tiny_super_res(int num_classes = 0, double cond_augment = 0.0, std::uint64_t seed = 31,
                           int low_res_size = 8) {
  ModelSource m;
  Generator g(seed);
  unet::UNetConfig cfg = testing::tiny_unet_config(16);
  cfg.num_classes = num_classes;
  cfg.low_res_size = low_res_size;
  cfg.concat_channels = cfg.in_channels;
  cfg.cond_augment = cond_augment;
  m.net = std::make_unique<unet::UNet>(cfg, g, Device::cpu());
  for (auto& [name, t] : m.net->named_parameters()) {
    std::vector<float> noise = randn(t.shape(), g).to_vector();
    float* p = t.data<float>();
    for (std::int64_t i = 0; i < t.numel(); ++i) p[i] += 0.05f * noise[static_cast<std::size_t>(i)];
  }
  m.diffusion.diffusion_steps = 40;
  m.kind = "test super-resolution";
  return m;
}

// A plain model of another size or channel count than the tiny base (tiny_model.h's recipe).
ModelSource tiny_plain(int image_size, int channels, int num_classes = 0) {
  ModelSource m;
  Generator g(13);
  unet::UNetConfig cfg = testing::tiny_unet_config(image_size, channels);
  cfg.num_classes = num_classes;
  m.net = std::make_unique<unet::UNet>(cfg, g, Device::cpu());
  m.diffusion.diffusion_steps = 40;
  m.kind = "test";
  return m;
}

std::string out_dir(const std::string& name) { return testing::temp_path("cascade_run_" + name); }

// The SR stage's options: DDIM, 4 steps, 3 samples in batches of 2 (two batches).
SampleOptions sr_options(const std::string& out) {
  SampleOptions o;
  o.checkpoint = "sr";
  o.num_samples = 3;
  o.batch_size = 2;
  o.sampler = "ddim";
  o.sampling_steps = 4;
  o.seed = 5;
  o.out = out;
  return o;
}

// Three random 8x8 RGB images (and labels 2, 0, 1) as a base model's samples.npz.
std::string low_res_npz(const std::string& name) {
  const std::string path = testing::fresh_temp_dir("cascade_run_" + name) + "/low.npz";
  std::mt19937 rng(3);
  std::uniform_int_distribution<int> byte(0, 255);
  std::vector<std::uint8_t> px(3 * 8 * 8 * 3);
  for (auto& p : px) p = static_cast<std::uint8_t>(byte(rng));
  write_npz(path, {npy_view("arr_0", {3, 8, 8, 3}, px), npy_view("arr_1", {3}, std::vector<std::int64_t>{2, 0, 1})});
  return path;
}

TEST(CascadeRun, OneCallEqualsTheTwoCommandCascadePixelForPixel) {
  for (const int classes : {0, 3}) {
    const ModelSource base = testing::tiny_model_source(classes), sr = tiny_super_res(classes);
    const std::string tag = std::to_string(classes);
    // One call: the base with its own sampler, steps, guidance and seed.
    SampleOptions o = sr_options(out_dir("one_" + tag));
    o.low_res_from = "base";
    o.base_sampler = "ddpm";
    o.base_sampling_steps = 5;
    o.base_guidance_scale = classes > 0 ? 2.0 : 1.0;
    o.base_seed = 9;
    const SampleResult one = run_cascade(o, sr, base);

    // Two commands.
    SampleOptions b;
    b.checkpoint = "base";
    b.num_samples = 3;
    b.batch_size = 2;
    b.sampler = "ddpm";
    b.sampling_steps = 5;
    b.guidance_scale = o.base_guidance_scale;
    b.seed = 9;
    b.out = out_dir("two_base_" + tag);
    const SampleResult two_base = run_sample(b, base);
    SampleOptions s = sr_options(out_dir("two_sr_" + tag));
    s.low_res = b.out + "/samples.npz";
    const SampleResult two = run_sample(s, sr);

    EXPECT_EQ(one.pixels, two.pixels) << classes;
    EXPECT_EQ(one.labels, two.labels) << classes;
    EXPECT_EQ(one.shape, (Shape{3, 16, 16, 3}));
    for (const char* f : {"samples.npz", "grid.png", "images/000002.png", "sample_info.json"})
      EXPECT_EQ(read_file(o.out + "/base/" + f), read_file(b.out + "/" + f)) << f;
    for (const char* f : {"samples.npz", "grid.png", "low_res.png"})
      EXPECT_EQ(read_file(o.out + "/" + f), read_file(s.out + "/" + f)) << f;
    EXPECT_FALSE(fs::exists(o.out + "/.super_res_stage"));
    EXPECT_NE(std::find(one.files.begin(), one.files.end(), "base/samples.npz"), one.files.end());

    const nlohmann::json info = nlohmann::json::parse(read_file(o.out + "/sample_info.json"));
    EXPECT_EQ(info.at("low_res").at("path"), o.out + "/base/samples.npz");
    EXPECT_EQ(info.at("low_res").at("labels_from_low_res"), classes > 0);
    EXPECT_EQ(info.at("cascade").at("base"), "base");
    EXPECT_EQ(info.at("cascade").at("base_stage").at("seed"), 9);
    EXPECT_EQ(info.at("cascade").at("base_stage").at("sampler"), "ddpm");
    EXPECT_EQ(info.at("seed"), 5);
    if (classes > 0) {
      EXPECT_EQ(one.labels, (std::vector<std::int64_t>{0, 1, 2}));  // balanced base labels, carried over
    }
  }
}

TEST(CascadeRun, BaseStageDefaultsToTheMainFlags) {
  const ModelSource base = testing::tiny_model_source(0), sr = tiny_super_res(0);
  SampleOptions o = sr_options(out_dir("defaults"));
  o.low_res_from = "base";
  run_cascade(o, sr, base);
  const nlohmann::json stage =
      nlohmann::json::parse(read_file(o.out + "/sample_info.json")).at("cascade").at("base_stage");
  EXPECT_EQ(stage.at("sampler"), "ddim");
  EXPECT_EQ(stage.at("sampling_steps"), 4);
  EXPECT_EQ(stage.at("seed"), 5);
  EXPECT_EQ(stage.at("guidance_scale"), 1.0);
  EXPECT_EQ(stage.at("num_samples"), 3);
}

TEST(CascadeRun, RefusalsNameBothModelsAndLeaveNothing) {
  const ModelSource base = testing::tiny_model_source(0), sr = tiny_super_res(0);
  SampleOptions o = sr_options(out_dir("refused"));
  o.low_res_from = "base";
  auto refusal = [&](const SampleOptions& opts, const ModelSource& s, const ModelSource& b) {
    const std::string m = testing::value_error_message([&] { run_cascade(opts, s, b); });
    EXPECT_FALSE(fs::exists(opts.out)) << m;
    return m;
  };
  SampleOptions both = o;
  both.low_res = "low.npz";
  EXPECT_NE(refusal(both, sr, base).find("not both"), std::string::npos);
  SampleOptions stray = sr_options(out_dir("refused"));
  stray.base_sampling_steps = 3;
  EXPECT_NE(testing::value_error_message([&] { check_sample_options(stray); }).find("--base-sampling-steps"),
            std::string::npos);
  EXPECT_NE(testing::value_error_message([&] { run_sample(o, sr); }).find("run_cascade"), std::string::npos);
  SampleOptions bad_sampler = o;
  bad_sampler.base_sampler = "nope";
  EXPECT_NE(refusal(bad_sampler, sr, base).find("--base-sampler nope"), std::string::npos);

  std::string m = refusal(o, base, base);  // the --checkpoint is not a super-resolution model
  EXPECT_NE(m.find("super-resolution models only"), std::string::npos) << m;
  m = refusal(o, sr, tiny_super_res(0));
  EXPECT_NE(m.find("is itself a super-resolution model"), std::string::npos) << m;
  m = refusal(o, sr, tiny_plain(16, 3));
  EXPECT_NE(m.find("--low-res-from base makes 16x16"), std::string::npos) << m;
  EXPECT_NE(m.find("--checkpoint sr upsamples 8x8"), std::string::npos) << m;
  m = refusal(o, sr, tiny_plain(8, 1));
  EXPECT_NE(m.find("1 channel(s)"), std::string::npos) << m;
  const ModelSource sr3 = tiny_super_res(3);
  m = refusal(o, sr3, base);
  EXPECT_NE(m.find("--checkpoint sr has 3 classes"), std::string::npos) << m;
  EXPECT_NE(m.find("--low-res-from base has 0"), std::string::npos) << m;
  m = refusal(o, sr3, tiny_plain(8, 3, 2));
  EXPECT_NE(m.find("has 2"), std::string::npos) << m;
  SampleOptions cls = o;
  cls.class_label = 1;
  m = refusal(cls, sr, base);
  EXPECT_NE(m.find("needs a class-conditional base model"), std::string::npos) << m;
  // The SR stage's own checks also come before the base samples anything.
  SampleOptions steps = o;
  steps.sampling_steps = 7;  // DDIM needs a divisor of T = 40
  m = refusal(steps, sr, base);
  EXPECT_NE(m.find("--sampling-steps 7"), std::string::npos) << m;
  SampleOptions level = o;
  level.low_res_noise_level = 0.1;
  m = refusal(level, sr, base);
  EXPECT_NE(m.find("without conditioning augmentation"), std::string::npos) << m;
  // A base with the SR's classes but an SR unconditional: fine, --class goes to the base only.
  SampleOptions to_base = sr_options(out_dir("class_to_base"));
  to_base.low_res_from = "base";
  to_base.class_label = 2;
  const SampleResult r = run_cascade(to_base, sr, testing::tiny_model_source(3));
  EXPECT_TRUE(r.labels.empty());
  const nlohmann::json stage =
      nlohmann::json::parse(read_file(to_base.out + "/sample_info.json")).at("cascade").at("base_stage");
  EXPECT_EQ(stage.at("class"), 2);
}

TEST(SuperResAutoguide, ScaleOneIsTheModelAndScaleZeroTheGuidePixelForPixel) {
  const std::string low = low_res_npz("ag_low");
  for (const double aug : {0.0, 0.5}) {
    for (const std::string sampler : {"ddim", "heun"}) {
      const ModelSource sr = tiny_super_res(3, aug), guide = tiny_super_res(3, aug, 77);
      const std::string tag = sampler + (aug > 0 ? "_aug" : "");
      SampleOptions o = sr_options(out_dir("ag_plain_" + tag));
      o.sampler = sampler;
      o.low_res = low;
      o.low_res_noise_level = aug > 0 ? 0.2 : 0.0;
      const SampleResult plain = run_sample(o, sr);
      SampleOptions a = o;
      a.autoguide = "guide";
      a.out = out_dir("ag_w1_" + tag);
      EXPECT_EQ(run_sample(a, sr, nullptr, nullptr, &guide).pixels, plain.pixels) << tag;
      a.guidance_scale = 0.0;
      a.out = out_dir("ag_w0_" + tag);
      const SampleResult w0 = run_sample(a, sr, nullptr, nullptr, &guide);
      SampleOptions g = o;
      g.checkpoint = "guide";
      g.out = out_dir("ag_guide_" + tag);
      const SampleResult of_guide = run_sample(g, guide);
      EXPECT_EQ(w0.pixels, of_guide.pixels) << tag;
      EXPECT_NE(plain.pixels, of_guide.pixels) << "the two models must differ for this test to mean anything";
      EXPECT_EQ(w0.labels, (std::vector<std::int64_t>{2, 0, 1}));  // arr_1, for both networks
      a.guidance_scale = 2.0;
      a.out = out_dir("ag_w2_" + tag);
      EXPECT_NE(run_sample(a, sr, nullptr, nullptr, &guide).pixels, plain.pixels) << tag;
    }
  }
}

TEST(SuperResAutoguide, CascadeWithAGuideAtScaleZeroIsTheGuidesCascade) {
  const ModelSource base = testing::tiny_model_source(0), sr = tiny_super_res(0, 0.5), guide = tiny_super_res(0, 0.3, 77);
  SampleOptions o = sr_options(out_dir("ag_cascade"));
  o.low_res_from = "base";
  o.low_res_noise_level = 0.25;
  o.autoguide = "guide";
  o.guidance_scale = 0.0;
  const SampleResult guided = run_cascade(o, sr, base, nullptr, nullptr, &guide);
  SampleOptions g = o;
  g.autoguide.clear();
  g.guidance_scale = 1.0;
  g.checkpoint = "guide";
  g.out = out_dir("ag_cascade_guide");
  EXPECT_EQ(guided.pixels, run_cascade(g, guide, base).pixels);
  EXPECT_EQ(nlohmann::json::parse(read_file(o.out + "/sample_info.json")).at("autoguide"), "guide");
}

TEST(SuperResAutoguide, GuidesThatDoNotTakeTheSameConditionAreRefusedByName) {
  const std::string low = low_res_npz("ag_refused");
  const ModelSource sr = tiny_super_res(0, 0.5);
  SampleOptions o = sr_options(out_dir("ag_refused"));
  o.low_res = low;
  o.low_res_noise_level = 0.4;
  o.autoguide = "guide";
  o.guidance_scale = 2.0;
  auto refusal = [&](const ModelSource& guide) {
    const std::string m = testing::value_error_message([&] { run_sample(o, sr, nullptr, nullptr, &guide); });
    EXPECT_FALSE(fs::exists(o.out)) << m;
    return m;
  };
  std::string m = refusal(tiny_plain(16, 3));
  EXPECT_NE(m.find("--autoguide guide is not a super-resolution model"), std::string::npos) << m;
  EXPECT_NE(m.find("the model is a super-resolution model (8x8 -> 16x16)"), std::string::npos) << m;
  m = refusal(tiny_super_res(0, 0.5, 77, 4));
  EXPECT_NE(m.find("(4x4 -> 16x16)"), std::string::npos) << m;
  m = refusal(tiny_super_res(0, 0.0, 77));
  EXPECT_NE(m.find("without conditioning augmentation"), std::string::npos) << m;
  m = refusal(tiny_super_res(0, 0.3, 77));
  EXPECT_NE(m.find("--low-res-noise-level 0.4 lies outside [0, 0.3]"), std::string::npos) << m;
  // A plain model with a super-resolution guide of its size.
  const ModelSource plain = tiny_plain(16, 3);
  SampleOptions p = sr_options(out_dir("ag_refused_plain"));
  p.autoguide = "guide";
  p.guidance_scale = 2.0;
  const ModelSource sr_guide = tiny_super_res(0);
  m = testing::value_error_message([&] { run_sample(p, plain, nullptr, nullptr, &sr_guide); });
  EXPECT_NE(m.find("--autoguide guide is a super-resolution model (8x8 -> 16x16); the model is not"), std::string::npos)
      << m;
}

}  // namespace
}  // namespace ddpm::run
