// Text-conditioned runs (ddpm-train --text-cond; models/text/text_conditioned.h) in the apps
// other than ddpm-train and ddpm-sample: ddpm-edit follows --prompt (edit_run.h), ddpm-eval's
// bpd and nll condition on each image's caption (models/eval/caption_condition.h), and
// ddpm-distill, ddpm-control's base, a cascade and --autoguide refuse a text model up front.
// One tiny text run (16x16 toy shapes, 6 steps) serves every test of the file.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/io/atomic_file.h"
#include "engine/io/npz.h"
#include "engine/io/png.h"
#include "engine/rng.h"
#include "models/data/captions.h"
#include "models/eval/caption_condition.h"
#include "models/eval/eval_run.h"
#include "models/eval/nll_eval.h"
#include "models/run/cascade_run.h"
#include "models/run/consistency_run.h"
#include "models/run/control_run.h"
#include "models/run/distill_run.h"
#include "models/run/edit_run.h"
#include "models/run/model_source.h"
#include "models/run/sample_run.h"
#include "models/run/train_run.h"
#include "support/temp_dir.h"
#include "support/tiny_model.h"
#include "support/tiny_run.h"
#include "support/value_error.h"

namespace ddpm {
namespace {

namespace fs = std::filesystem;
using testing::expect_value_error;

// test_text_conditioning_run.cpp's tiny text run: the toy shapes with generated captions.
const std::string& text_run() {
  static const std::string dir = [] {
    run::TrainOptions o = testing::tiny_text_run(testing::temp_run("text_apps"));
    run::train_run(o);
    return o.out;
  }();
  return dir;
}

// The text run opened, with its weights perturbed: six steps leave the zero-initialised
// proj_out of the spatial transformers nearly zero, so the text would barely reach the output.
run::ModelSource perturbed_text_model() {
  run::ModelSource m = run::open_model(text_run(), Device::cpu());
  Generator g(5);
  testing::perturb_weights(*m.text, g);
  return m;
}

// A 16x16 grey PNG of a fixed pseudo-random pattern (the toy shapes' size and channels).
std::string pattern_png(const std::string& dir, std::uint64_t seed) {
  Generator g(seed);
  const std::vector<float> z = randn({16, 16, 1}, g).to_vector();
  std::vector<std::uint8_t> px(z.size());
  for (std::size_t k = 0; k < z.size(); ++k) px[k] = static_cast<std::uint8_t>(std::clamp(128.0 + 60.0 * z[k], 0.0, 255.0));
  const std::string path = dir + "/guide.png";
  write_png(path, px.data(), 16, 16, 1);
  return path;
}

run::EditOptions edit_options(const std::string& command, const std::string& out) {
  run::EditOptions o;
  o.command = command;
  o.checkpoint = text_run();
  o.sampling_steps = 5;
  o.out = out;
  o.seed = 3;
  return o;
}

std::vector<std::uint8_t> result_pixels(const std::string& out) {
  return load_npz(out + "/samples.npz").get("arr_0").bytes;
}

TEST(TextApps, Img2imgGivesResultJPromptJModP) {
  testing::TempDir tmp("text_img2img");
  const run::ModelSource m = perturbed_text_model();
  run::EditOptions o = edit_options("img2img", tmp.path + "/two");
  o.images = pattern_png(tmp.path, 1);
  o.prompts = {"a light disc", "square"};
  o.num_samples = 2;
  o.guidance_scale = 2.0;
  const run::EditResult two = run::run_edit(o, m);
  EXPECT_EQ(two.info.at("prompts"), nlohmann::json({"a light disc", "square"}));
  EXPECT_EQ(two.info.at("negative_prompt"), "");
  EXPECT_EQ(load_npz(o.out + "/samples.npz").get("arr_1").as_int64(), (std::vector<std::int64_t>{0, 1}));

  // The same noise (one draw for the batch of two) with "a light disc" for both results: the
  // first result is unchanged, the second no longer reads "square".
  run::EditOptions same = o;
  same.prompts = {"a light disc", "a light disc"};
  same.out = tmp.path + "/same";
  run::run_edit(same, m);
  const std::vector<std::uint8_t> a = result_pixels(o.out), b = result_pixels(same.out);
  const std::size_t half = a.size() / 2;
  ASSERT_EQ(a.size(), b.size());
  EXPECT_TRUE(std::equal(a.begin(), a.begin() + half, b.begin()));
  EXPECT_FALSE(std::equal(a.begin() + half, a.end(), b.begin() + half));

  // A negative prompt replaces the empty caption in the guidance's unconditional branch.
  run::EditOptions neg = o;
  neg.negative_prompt = "dark";
  neg.out = tmp.path + "/neg";
  const run::EditResult rn = run::run_edit(neg, m);
  EXPECT_EQ(rn.info.at("negative_prompt"), "dark");
  EXPECT_NE(result_pixels(neg.out), a);
}

TEST(TextApps, InvertAndInterpolateUseTheirOnePrompt) {
  testing::TempDir tmp("text_invert");
  const run::ModelSource m = perturbed_text_model();
  run::EditOptions o = edit_options("invert", tmp.path + "/disc");
  o.images = pattern_png(tmp.path, 2);
  o.prompts = {"disc"};
  const run::EditResult r = run::run_edit(o, m);
  EXPECT_EQ(r.info.at("prompts"), nlohmann::json({"disc"}));
  EXPECT_TRUE(std::isfinite(r.info.at("reconstruction").at("mse").get<double>()));
  run::EditOptions sq = o;
  sq.prompts = {"square"};
  sq.out = tmp.path + "/square";
  run::run_edit(sq, m);
  // The prompt conditions the inversion: another caption gives other latents.
  EXPECT_NE(load_npz(o.out + "/latents.npz").get("latents").bytes,
            load_npz(sq.out + "/latents.npz").get("latents").bytes);

  run::EditOptions itp = edit_options("interpolate", tmp.path + "/lerp");
  itp.seeds = "1,2";
  itp.frames = 3;
  itp.prompts = {"a dark triangle"};
  const run::EditResult ri = run::run_edit(itp, m);
  EXPECT_EQ(ri.info.at("frames"), 3);
  EXPECT_EQ(ri.info.at("prompts"), nlohmann::json({"a dark triangle"}));
}

TEST(TextApps, EditRefusesPromptsThatDoNotFit) {
  testing::TempDir tmp("text_edit_refusals");
  const run::ModelSource m = run::open_model(text_run(), Device::cpu());
  run::EditOptions o = edit_options("img2img", tmp.path + "/out");
  o.images = pattern_png(tmp.path, 3);
  expect_value_error([&] { run::run_edit(o, m); }, "is text-conditioned: give --prompt TEXT");
  o.prompts = {"disc", "square", "triangle"};
  o.num_samples = 2;
  expect_value_error([&] { run::run_edit(o, m); }, "give --num-samples 3 or more");
  o.prompts = {"disc"};
  o.class_label = 1;
  expect_value_error([&] { run::run_edit(o, m); }, "--class does not apply");
  o.class_label = -1;
  o.negative_prompt = "dark";
  expect_value_error([&] { run::run_edit(o, m); }, "--negative-prompt takes effect through classifier-free guidance");
  run::EditOptions inv = edit_options("invert", tmp.path + "/out");
  inv.images = o.images;
  inv.prompts = {"disc", "square"};
  expect_value_error([&] { run::run_edit(inv, m); }, "invert takes one --prompt");
  // --prompt on a model without text.
  const run::ModelSource plain = testing::tiny_model_source();
  run::EditOptions p = edit_options("interpolate", tmp.path + "/out");
  p.checkpoint = "tiny";
  p.seeds = "1,2";
  p.prompts = {"disc"};
  expect_value_error([&] { run::run_edit(p, plain); }, "need a text-conditioned model");
  EXPECT_FALSE(fs::exists(tmp.path + "/out"));
}

TEST(TextApps, EvalConditionsEachImageOnItsCaption) {
  const run::ModelSource m = perturbed_text_model();
  Dataset data = take(eval::load_eval_dataset("toy", "test"), 6);
  const std::vector<std::string> captions = generate_captions(data);
  const eval::CaptionCondition c = eval::condition_on_captions(*m.text, data, "bpd");
  ASSERT_EQ(data.labels.size(), 6u);
  for (std::size_t i = 0; i < 6; ++i) EXPECT_EQ(c.table.texts[static_cast<std::size_t>(data.labels[i])], captions[i]);
  EXPECT_EQ(data.num_classes, c.table.size());
  // The denoiser on the caption indices is the text model on the captions themselves, and
  // label P is the empty caption.
  Generator g(4);
  const Tensor x = randn({2, 16, 16, 1}, g);
  const std::vector<double> t = {3.0, 40.0};
  const Tensor got = c.fn(x, t, {data.labels[0], c.table.size()});
  const Tensor want = m.text->forward(x, t, {captions[0], ""}, nn::Context{});
  EXPECT_EQ(got.to_double_vector(), want.to_double_vector());

  Dataset bare = data;
  bare.captions.clear();
  bare.labels.clear();
  expect_value_error([&] { eval::condition_on_captions(*m.text, bare, "nll"); }, "nll: the model is text-conditioned");
}

TEST(TextApps, BpdAndNllOfATextRun) {
  eval::BpdArgs b;
  b.checkpoint = text_run();
  b.data = "toy";
  b.limit = 2;
  b.batch_size = 2;
  std::ostringstream out;
  const eval::BpdEvalReport r = eval::run_bpd(b, out);
  EXPECT_EQ(r.n, 2);
  EXPECT_TRUE(std::isfinite(r.bpd) && r.bpd > 0) << r.bpd;
  EXPECT_NE(out.str().find("conditioned on each image's caption (generated captions"), std::string::npos) << out.str();

  eval::NllArgs a;
  a.checkpoint = text_run();
  a.data = "toy";
  a.limit = 2;
  a.batch_size = 2;
  a.ode_steps = 2;
  std::ostringstream o1, o2;
  const eval::NllEvalReport captioned = eval::run_nll(a, o1);
  a.null_label = true;
  const eval::NllEvalReport empty = eval::run_nll(a, o2);
  EXPECT_TRUE(std::isfinite(captioned.bpd) && std::isfinite(empty.bpd));
  EXPECT_NE(captioned.bpd, empty.bpd);  // the same draws, another condition
  EXPECT_NE(o1.str().find("each image's caption"), std::string::npos) << o1.str();
  EXPECT_NE(o2.str().find("the empty caption"), std::string::npos) << o2.str();
}

TEST(TextApps, DistillControlCascadeAndAutoguideRefuseATextModel) {
  testing::TempDir tmp("text_refusals");
  run::DistillOptions d;
  d.teacher = text_run();
  d.teacher_steps = 10;
  d.out = tmp.path + "/distill";
  expect_value_error([&] { run::distill_run(d); }, "is text-conditioned (ddpm-train --text-cond): ddpm-distill");
  run::ConsistencyOptions c;
  c.teacher = text_run();
  c.levels = 5;
  c.out = tmp.path + "/consistency";
  expect_value_error([&] { run::consistency_run(c); }, "is text-conditioned (ddpm-train --text-cond): ddpm-distill");

  run::ControlTrainArgs ct;
  ct.base = text_run();
  ct.out = tmp.path + "/control";
  expect_value_error([&] { run::train_control_run(ct); }, "ddpm-control does not pass prompts to its base");

  run::TrainOptions sr = testing::tiny_run(testing::temp_run("text_apps_super_res"));
  sr.super_res = 8;  // 16x16 from 8x8
  sr.steps = 1;
  sr.save_every = 1;
  run::train_run(sr);
  run::SampleOptions cas;
  cas.checkpoint = sr.out;
  cas.low_res_from = text_run();
  cas.num_samples = 1;
  cas.out = tmp.path + "/cascade";
  expect_value_error([&] { run::run_cascade(cas); }, "a cascade does not pass prompts between its stages");

  run::TrainOptions plain = testing::tiny_run(testing::temp_run("text_apps_plain"));
  plain.steps = 1;
  plain.save_every = 1;
  run::train_run(plain);
  run::SampleOptions ag;
  ag.checkpoint = plain.out;
  ag.autoguide = text_run();
  ag.guidance_scale = 2.0;
  ag.num_samples = 1;
  ag.sampling_steps = 2;
  ag.out = tmp.path + "/autoguide";
  expect_value_error([&] { run::run_sample(ag); }, "is text-conditioned (ddpm-train --text-cond): autoguidance");
  for (const char* f : {"distill", "consistency", "control", "cascade", "autoguide"})
    EXPECT_FALSE(fs::exists(tmp.path + "/" + f)) << f;
}

}  // namespace
}  // namespace ddpm
