// ddpm-control eval (models/run/control_eval.h): the hint-agreement metrics against hand
// computations on tiny maps and images, and the evaluation of a tiny control run: it runs,
// its scale-0 samples are the base's own samples byte for byte, it writes eval.png/eval.json
// on request and leaves no scratch files behind; a class-conditional base samples each image's
// own label (checked against the sampler called directly with those labels).
#include <cmath>
#include <filesystem>
#include <sstream>

#include <gtest/gtest.h>

#include "engine/error.h"
#include "engine/io/npz.h"
#include "models/eval/eval_run.h"
#include "models/run/control_eval.h"
#include "models/run/control_run.h"
#include "models/run/sample_run.h"
#include "support/temp_dir.h"
#include "support/tiny_control.h"
#include "support/tiny_run.h"

namespace ddpm::run {
namespace {

namespace fs = std::filesystem;

TEST(ControlEvalMetric, EdgeMapAgreementMatchesAHandCount) {
  // Magnitudes m = (e + 1) / 2: a = {0, 1, 0.75, 0}, b = {0, 0.25, 1, 1}; at tau = 0.5 the
  // edges are a: {1, 2}, b: {2, 3}: TP = 1 (pixel 2), FP = 1 (pixel 1), FN = 1 (pixel 3).
  const HintAgreement r = edge_map_agreement({-1, 1, 0.5, -1}, {-1, -0.5, 1, 1}, 0.5);
  EXPECT_DOUBLE_EQ(r.mad, (0 + 1.5 + 0.5 + 2) / 4.0);
  EXPECT_DOUBLE_EQ(r.f1, 2.0 * 1 / (2 * 1 + 1 + 1));
  EXPECT_DOUBLE_EQ(r.iou, 1.0 / 3.0);
  EXPECT_TRUE(std::isnan(r.mse));
  const HintAgreement none = edge_map_agreement({-1, -1}, {-1, -0.9}, 0.25);  // no edge in either map
  EXPECT_DOUBLE_EQ(none.f1, 1.0);
  EXPECT_DOUBLE_EQ(none.iou, 1.0);
  EXPECT_NEAR(none.mad, 0.05, 1e-12);
  EXPECT_THROW(edge_map_agreement({-1}, {-1, 1}, 0.5), ValueError);
}

TEST(ControlEvalMetric, EdgesScoreOfAFlatAndAStepImageIsTheHandValue) {
  // 4x4 grey images: flat black, and a vertical black-to-white step between columns 1 and 2.
  // Sobel G_x of the step (replicated borders) is 4 at columns 1 and 2 and 0 elsewhere, G_y
  // is 0: the step's edge map is +1 on half the pixels, -1 on the rest; the flat one is -1.
  std::vector<float> flat(16, -1.0f), step(16, -1.0f);
  for (int r = 0; r < 4; ++r) step[r * 4 + 2] = step[r * 4 + 3] = 1.0f;
  std::vector<float> a = flat, b = step;
  a.insert(a.end(), step.begin(), step.end());  // pairs (flat, step) and (step, step)
  b.insert(b.end(), step.begin(), step.end());
  const HintAgreement s = score_hint_agreement(data::parse_hint("edges"), Tensor::from_vector(a, {2, 4, 4, 1}),
                                               Tensor::from_vector(b, {2, 4, 4, 1}));
  // Pair 1: 8 of 16 pixels differ by 2 (mad 1), no predicted edge (F1 = IoU = 0); pair 2: equal.
  EXPECT_DOUBLE_EQ(s.mad, (1.0 + 0.0) / 2);
  EXPECT_DOUBLE_EQ(s.f1, (0.0 + 1.0) / 2);
  EXPECT_DOUBLE_EQ(s.iou, (0.0 + 1.0) / 2);
}

TEST(ControlEvalMetric, LowresScoreIsTheMseOfTheAreaAveragedImages) {
  // lowres:2 of 4x4: a is flat 0.5 (its 2x2 image 0.5 everywhere); b has its top-left 2x2
  // block at 1 and the rest at -1 (2x2 image [1, -1; -1, -1]).
  std::vector<float> a(16, 0.5f), b(16, -1.0f);
  for (int r = 0; r < 2; ++r) b[r * 4] = b[r * 4 + 1] = 1.0f;
  const HintAgreement s = score_hint_agreement(data::parse_hint("lowres:2"), Tensor::from_vector(a, {1, 4, 4, 1}),
                                               Tensor::from_vector(b, {1, 4, 4, 1}));
  EXPECT_NEAR(s.mse, (0.25 + 3 * 2.25) / 4, 1e-12);
  EXPECT_TRUE(std::isnan(s.mad));
}

// The evaluation's scratch folders in `dir` (control_eval.cpp makes them by mkdtemp in the
// temporary directory).
int scratch_folders(const std::string& dir) {
  int n = 0;
  for (const auto& e : fs::directory_iterator(dir)) n += e.path().filename().string().rfind("ddpm-control-eval-", 0) == 0;
  return n;
}

TEST(ControlEval, RunsOnATinyControlRunAndItsBaselineIsTheBaseAlone) {
  const std::string base = testing::temp_run("ceval_base");
  TrainOptions o = testing::tiny_run(base);
  o.steps = 2;
  o.save_every = 2;
  train_run(o);
  ControlTrainArgs t;
  t.base = base;
  t.data = "toy";
  t.toy_count = 24;
  t.out = testing::temp_run("ceval_ctrl");
  t.steps = 3;
  t.batch_size = 4;
  t.lr = 1e-3;
  t.save_every = 3;
  t.log_every = 3;
  train_control_run(t);

  ControlEvalArgs e;
  e.control = t.out;
  e.limit = 3;
  e.batch_size = 2;
  e.sampling_steps = 5;
  e.seed = 3;
  e.out = testing::temp_run("ceval_out");
  std::ostringstream text;
  ControlEvalReport r;
  {
    const testing::ScopedTmpdir tmpdir;  // the scratch folder goes there, away from other processes'
    r = run_control_eval(e, text);
    EXPECT_EQ(scratch_folders(tmpdir.dir.path), 0);  // the scratch folder is gone
  }
  EXPECT_EQ(r.images, 3);
  EXPECT_NE(text.str().find("baseline (scale 0)"), std::string::npos) << text.str();
  EXPECT_NE(text.str().find("unrelated data pairs"), std::string::npos);

  // The baseline is the base's own samples: ddpm-sample without --control, same seed.
  SampleOptions s;
  s.checkpoint = base;
  s.sampler = "ddim";
  s.sampling_steps = 5;
  s.num_samples = 3;
  s.batch_size = 2;
  s.seed = 3;
  s.out = testing::temp_run("ceval_plain");
  const SampleResult plain = run_sample(s);
  EXPECT_EQ(r.baseline_pixels, plain.pixels);
  EXPECT_NE(r.controlled_pixels, plain.pixels);  // the trained zero convs are no longer zero
  // The scores are the metric applied to those images (an independent recomputation).
  auto unit = [](const std::vector<std::uint8_t>& px) {
    std::vector<float> v;
    for (std::uint8_t x : px) v.push_back(static_cast<float>(x / 127.5 - 1.0));
    return Tensor::from_vector(v, {3, 16, 16, 1});
  };
  const HintAgreement b = score_hint_agreement(r.hint, unit(plain.pixels), unit(r.data_pixels));
  EXPECT_DOUBLE_EQ(r.baseline.mad, b.mad);
  EXPECT_DOUBLE_EQ(r.baseline.f1, b.f1);
  EXPECT_GT(r.unrelated.mad, 0.0);  // distinct images have distinct edges
  EXPECT_TRUE(fs::exists(e.out + "/eval.png"));
  EXPECT_TRUE(fs::exists(e.out + "/eval.json"));
  EXPECT_EQ(r.json.at("images"), 3);
  EXPECT_EQ(r.json.at("hint"), "edges");
  EXPECT_EQ(r.json.at("sampler"), "ddim");  // the default for a DDPM base
  EXPECT_EQ(r.json.at("sampling_steps"), 5);

  // --json prints one parseable line; an existing --out and a single image are refused.
  ControlEvalArgs j = e;
  j.out.clear();
  j.json = true;
  j.limit = 2;
  std::ostringstream line;
  run_control_eval(j, line);
  const nlohmann::json parsed = nlohmann::json::parse(line.str());
  EXPECT_TRUE(parsed.at("controlled").contains("edge_f1"));
  EXPECT_THROW(run_control_eval(e, text), ValueError);
  ControlEvalArgs one = j;
  one.limit = 1;
  EXPECT_THROW(run_control_eval(one, text), ValueError);
  ControlEvalArgs not_control = j;
  not_control.control = base;
  EXPECT_THROW(run_control_eval(not_control, text), IoError);
}

TEST(ControlEval, AClassConditionalBaseSamplesEachImageWithItsOwnLabel) {
  const std::string base = testing::train_tiny_base("ceval_cond_base", [](TrainOptions& o) { o.class_cond = true; });
  ControlTrainArgs t = testing::tiny_control_args(base, testing::temp_run("ceval_cond_ctrl"));
  t.steps = 2;
  train_control_run(t);
  // The images eval takes (toy, test split, the first M) and their labels, read independently.
  constexpr std::int64_t M = 4;
  const Dataset ds = take(eval::load_eval_dataset("toy", "test"), M);
  const std::vector<std::int64_t> balanced = {0, 1, 2, 3};  // ddpm-sample's i mod num_classes
  ASSERT_NE(ds.labels, balanced) << "the check needs labels that differ from the balanced ones";

  ControlEvalArgs e;
  e.control = t.out;
  e.limit = M;
  e.batch_size = M;
  e.sampling_steps = 5;
  e.seed = 3;
  std::ostringstream text;
  const ControlEvalReport r = run_control_eval(e, text);
  EXPECT_EQ(r.labels, ds.labels);
  EXPECT_EQ(r.json.at("labels"), nlohmann::json(ds.labels));
  EXPECT_EQ(r.json.at("labels_from"), "images");
  EXPECT_NE(text.str().find("its image's label"), std::string::npos) << text.str();

  // The same draws through the sampler itself (diffusion::sample with the base + ControlNet
  // denoiser, one batch, the seed's generator): with the images' labels they are eval's
  // samples byte for byte, with the balanced labels they are not.
  const std::string images = testing::temp_run("ceval_cond_images") + ".npz";
  write_npz(images, {NpyView{"arr_0", NpyDType::u8, {M, 16, 16, 1}, ds.images.data(), ds.images.size()}});
  SampleOptions so;
  so.checkpoint = base;
  so.sampler = "ddim";
  so.sampling_steps = 5;
  so.num_samples = static_cast<int>(M);
  so.num_samples_given = true;
  so.control = t.out;
  so.control_from = images;  // no arr_1: the labels below are the only ones
  const ModelSource model = open_model(base, Device::cpu());
  ControlInputs control;
  ASSERT_TRUE(load_control_for(so, model, control));
  EXPECT_TRUE(control.labels.empty());
  const diffusion::DiffusionSchedule schedule(diffusion_betas(model.diffusion));
  const diffusion::SamplerConfig sc = make_sampler_config(so, model);
  auto draw = [&](const std::vector<std::int64_t>& labels, double scale) {
    control.scale = scale;
    Generator gen(e.seed);
    return to_uint8_pixels(diffusion::sample(schedule, control_denoiser(*model.net, control, 0, M), {M, 16, 16, 1},
                                             labels, sc, gen));
  };
  EXPECT_EQ(draw(ds.labels, 1.0), r.controlled_pixels);
  EXPECT_EQ(draw(ds.labels, 0.0), r.baseline_pixels);  // the baseline is conditioned on them too
  EXPECT_NE(draw(balanced, 1.0), r.controlled_pixels);

  // ddpm-sample --control-from an npz with arr_1 takes those labels too (--class overrides),
  // and refuses a label the base does not have.
  const std::string labelled = testing::temp_run("ceval_cond_labelled") + ".npz";
  std::vector<std::int64_t> labels = ds.labels;
  write_npz(labelled, {NpyView{"arr_0", NpyDType::u8, {M, 16, 16, 1}, ds.images.data(), ds.images.size()},
                       npy_view("arr_1", {M}, labels)});
  SampleOptions s2 = so;
  s2.control_from = labelled;
  s2.batch_size = 3;  // two batches: the labels follow the sample index across them
  s2.out = testing::temp_run("ceval_cond_sample");
  EXPECT_EQ(run_sample(s2).labels, ds.labels);
  s2.class_label = 1;
  s2.out = testing::temp_run("ceval_cond_class");
  EXPECT_EQ(run_sample(s2).labels, std::vector<std::int64_t>(M, 1));
  labels[2] = 7;  // the base has 4 classes
  write_npz(labelled, {NpyView{"arr_0", NpyDType::u8, {M, 16, 16, 1}, ds.images.data(), ds.images.size()},
                       npy_view("arr_1", {M}, labels)});
  s2.class_label = -1;
  s2.out = testing::temp_run("ceval_cond_bad");
  EXPECT_THROW(run_sample(s2), ValueError);
}

}  // namespace
}  // namespace ddpm::run
