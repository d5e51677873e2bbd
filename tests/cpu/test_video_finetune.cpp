// ddpm-train --init-from on clips (models/run/finetune.h, "Video"): an image model becomes a
// video model. What is checked: the fine-tune's video model, made by the production path
// (finetune_unet_config, then load_finetune_weights) from an image UNet with every weight
// non-zero, computes the image model frame by frame at step 0, with and without the
// first-frame condition (whatever the condition holds: conv_in's new channels are zero and
// the temporal blocks' to_out is zero); the refusals (another F, images for a video source,
// the flag on images, a conditioned source without the flag, LoRA on clips, a parameter
// that is neither loaded nor new); and whole runs: an image run fine-tuned on clips records
// "video" in config.json and resumes bit for bit like a run that never stopped, and a video
// run fine-tunes on clips of its own F.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "engine/error.h"
#include "engine/ops/concat.h"
#include "models/run/checkpoint.h"
#include "models/run/finetune.h"
#include "models/run/model_source.h"
#include "models/run/train_run.h"
#include "models/unet/unet.h"
#include "support/gradcheck.h"
#include "support/tiny_encoder.h"
#include "support/tiny_run.h"
#include "support/tiny_unet.h"
#include "support/value_error.h"

namespace fs = std::filesystem;
using namespace ddpm;
using ddpm::testing::expect_value_error;
using ddpm::testing::random_tensor;
using ddpm::testing::temp_run;
using run::TrainOptions;

namespace {

constexpr int kFrames = 3, kClasses = 3;

bool is_temporal(const std::string& name) { return name.find("temp_attentions.") != std::string::npos; }

// A class-conditional image UNet with attention, every weight non-zero in f64 (conv_out and
// the residual branches start at zero, which would hide everything), as a fine-tune source.
run::FineTuneSource image_source(unet::UNet** keep = nullptr) {
  static unet::UNetConfig c = [] {
    unet::UNetConfig cfg = ddpm::testing::tiny_unet_config(8, 2);
    cfg.attention_resolutions = {4};
    cfg.num_classes = kClasses;
    return cfg;
  }();
  static const std::unique_ptr<unet::UNet> net = [] {
    Generator g(21);
    auto n = std::make_unique<unet::UNet>(c, g, Device::cpu());
    ddpm::testing::parameters_to_f64(*n);
    std::uint64_t seed = 500;
    for (auto [name, p] : n->named_parameters()) p.copy_from(random_tensor(p.shape(), seed++, DType::f64, 0.3));
    return n;
  }();
  if (keep != nullptr) *keep = net.get();
  run::FineTuneSource s;
  s.model = c;
  for (const auto& [name, t] : net->named_parameters()) s.weights.emplace_back(name, t.clone());
  s.record = {{"source", "/image-source"}};
  return s;
}

// Clips of `frames` frames of the source's frame size, channels and classes.
Dataset clips_like(const unet::UNetConfig& c, int frames) {
  Dataset d;
  d.name = "clips";
  d.n = 1;
  d.frames = frames;
  d.height = d.width = c.image_size;
  d.channels = c.in_channels;
  d.labels = {0};
  d.num_classes = c.num_classes;
  return d;
}

TrainOptions video_options(bool first_frame_condition) {
  TrainOptions o;
  o.init_from = "/image-source";
  o.dropout = 0;
  o.first_frame_condition = first_frame_condition;
  return o;
}

// The fine-tune's video model of the image source, built and loaded as train_run does.
std::unique_ptr<unet::UNet> finetuned_video(const run::FineTuneSource& s, bool first_frame_condition) {
  const unet::UNetConfig target = run::finetune_unet_config(s, video_options(first_frame_condition),
                                                           clips_like(s.model, kFrames));
  Generator g(77);  // another draw than the source's: every loaded weight must come from it
  auto video = std::make_unique<unet::UNet>(target, g, Device::cpu());
  ddpm::testing::parameters_to_f64(*video);
  run::load_finetune_weights(s, *video, target);
  return video;
}

double peak_abs(const Tensor& t) {
  double m = 0;
  for (double v : t.to_double_vector()) m = std::max(m, std::fabs(v));
  return m;
}

// The step-0 claim: the video model on clips [2, F, 8, 8, C] equals the image source on
// their 2F frames (t and labels repeated per frame), condition ignored.
void expect_source_frame_by_frame(bool first_frame_condition) {
  unet::UNet* image = nullptr;
  const run::FineTuneSource s = image_source(&image);
  const std::unique_ptr<unet::UNet> video = finetuned_video(s, first_frame_condition);
  const unet::UNetConfig& vc = video->config();
  EXPECT_EQ(vc.num_frames, kFrames);
  EXPECT_EQ(vc.first_frame_condition, first_frame_condition);
  EXPECT_EQ(vc.input_channels(), first_frame_condition ? 2 * 2 + 1 : 2);
  const std::int64_t C = s.model.in_channels;
  const Tensor x = random_tensor({2, kFrames, 8, 8, C}, 31);
  const std::vector<double> t = {7, 900}, t_frames = {7, 7, 7, 900, 900, 900};
  const std::vector<std::int64_t> labels = {2, 0}, labels_frames = {2, 2, 2, 0, 0, 0};
  const Tensor per_frame = image->forward(x.reshape({2 * kFrames, 8, 8, C}), t_frames, labels_frames, nn::Context{});
  ASSERT_GT(peak_abs(per_frame), 1e-2);  // not a comparison of two zero outputs
  // Two conditions (a random first frame and the clip's own): both ignored at step 0.
  std::vector<Tensor> inputs = {x};
  if (first_frame_condition)
    inputs = {concat({x, unet::first_frame_condition(random_tensor({2, 8, 8, C}, 32, DType::f64, 3.0), kFrames)}, -1),
              concat({x, unet::first_frame_condition(random_tensor({2, 8, 8, C}, 33), kFrames)}, -1)};
  for (const Tensor& in : inputs) {
    const Tensor y = video->forward(in, t, labels, nn::Context{});
    ASSERT_EQ(y.shape(), (Shape{2, kFrames, 8, 8, C}));
    EXPECT_TRUE(ddpm::testing::all_close(y.reshape(per_frame.shape()), per_frame, 1e-12, 1e-10));
  }
  // What makes it so: the temporal blocks are fresh (to_out zero), conv_in's new channels zero.
  std::map<std::string, Tensor> src;
  for (const auto& [name, w] : s.weights) src[name] = w;
  for (const auto& [name, p] : video->named_parameters()) {
    if (is_temporal(name)) {
      EXPECT_EQ(src.count(name), 0u) << name;
      if (name.find("to_out.0.") != std::string::npos) EXPECT_EQ(peak_abs(p), 0.0) << name;
    } else if (name != "conv_in.weight" || !first_frame_condition) {
      EXPECT_TRUE(ddpm::testing::same_bits(p, src.at(name))) << name;
    }
  }
  // And the comparison can fail: a non-zero condition weight makes the condition count.
  if (first_frame_condition) {
    std::map<std::string, Tensor> params;
    for (const auto& [name, p] : video->named_parameters()) params[name] = p;
    std::vector<double> w = params.at("conv_in.weight").to_double_vector();
    w[C] = 0.5;  // [o = 0, 0, 0, c = C]: the first condition channel
    Tensor conv_in = params.at("conv_in.weight");
    conv_in.copy_from(Tensor::from_vector(w, conv_in.shape(), DType::f64));
    const Tensor y = video->forward(inputs[0], t, labels, nn::Context{});
    EXPECT_FALSE(ddpm::testing::all_close(y.reshape(per_frame.shape()), per_frame, 1e-6, 1e-6));
  }
}

}  // namespace

TEST(VideoFineTune, StartsAsTheImageSourceFrameByFrame) { expect_source_frame_by_frame(false); }

TEST(VideoFineTune, StartsAsTheImageSourceFrameByFrameWithTheConditionIgnored) { expect_source_frame_by_frame(true); }

// A fresh video model of the same config is not the source: loading is what makes it so.
TEST(VideoFineTune, AnUnloadedVideoModelDiffers) {
  unet::UNet* image = nullptr;
  const run::FineTuneSource s = image_source(&image);
  const unet::UNetConfig target = run::finetune_unet_config(s, video_options(false), clips_like(s.model, kFrames));
  Generator g(77);
  unet::UNet video(target, g, Device::cpu());
  ddpm::testing::parameters_to_f64(video);
  std::uint64_t seed = 900;
  for (auto [name, p] : video.named_parameters())
    if (!is_temporal(name)) p.copy_from(random_tensor(p.shape(), seed++, DType::f64, 0.3));
  const Tensor x = random_tensor({1, kFrames, 8, 8, 2}, 41);
  const Tensor y = video.forward(x, {5}, {1}, nn::Context{});
  const Tensor per_frame = image->forward(x.reshape({kFrames, 8, 8, 2}), {5, 5, 5}, {1, 1, 1}, nn::Context{});
  EXPECT_FALSE(ddpm::testing::all_close(y.reshape(per_frame.shape()), per_frame, 1e-6, 1e-6));
}

TEST(VideoFineTune, RefusesWhatDoesNotFit) {
  const run::FineTuneSource image = image_source();
  // The flag on images; LoRA on clips.
  expect_value_error([&] { run::finetune_unet_config(image, video_options(true), clips_like(image.model, 1)); },
                     "--first-frame-condition conditions a video model");
  TrainOptions lora = video_options(false);
  lora.lora_rank = 2;
  expect_value_error([&] { run::finetune_unet_config(image, lora, clips_like(image.model, kFrames)); },
                     "--lora-rank 2 does not apply to a video fine-tune");
  // A video source: other F, images, its condition without the flag.
  run::FineTuneSource video = image;
  video.model = run::finetune_unet_config(image, video_options(true), clips_like(image.model, kFrames));
  expect_value_error([&] { run::finetune_unet_config(video, video_options(true), clips_like(image.model, 5)); },
                     "holds clips of 5 frames, but the --init-from model /image-source is a video model of 3 frames");
  expect_value_error([&] { run::finetune_unet_config(video, video_options(true), clips_like(image.model, 1)); },
                     "holds images, but the --init-from model /image-source is a video model of 3 frames");
  expect_value_error([&] { run::finetune_unet_config(video, video_options(false), clips_like(image.model, kFrames)); },
                     "is conditioned on each clip's first frame; give --first-frame-condition");
  // Frame size per frame, as for images.
  Dataset big = clips_like(image.model, kFrames);
  big.height = big.width = 16;
  expect_value_error([&] { run::finetune_unet_config(image, video_options(false), big); },
                     "has 16x16x2 images, but the --init-from model takes 8x8x2");
}

// Only the temporal blocks of an image source and the grown conv_in may differ; anything else
// is named.
TEST(VideoFineTune, NamesAParameterNeitherLoadedNorNew) {
  const run::FineTuneSource image = image_source();
  const unet::UNetConfig target = run::finetune_unet_config(image, video_options(true), clips_like(image.model, kFrames));
  Generator g(1);
  unet::UNet net(target, g, Device::cpu());
  run::FineTuneSource missing = image;
  missing.weights.erase(std::find_if(missing.weights.begin(), missing.weights.end(),
                                     [](const auto& w) { return w.first == "conv_out.weight"; }));
  try {
    run::load_finetune_weights(missing, net, target);
    FAIL() << "no error";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("missing: conv_out.weight"), std::string::npos) << e.what();
  }
  // A video source must hold its temporal blocks.
  run::FineTuneSource video;
  video.model = target;
  video.record = image.record;
  for (const auto& [name, t] : net.named_parameters())
    if (name != "mid_block.temp_attentions.0.to_q.weight") video.weights.emplace_back(name, t.clone());
  try {
    run::load_finetune_weights(video, net, target);
    FAIL() << "no error";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("missing: mid_block.temp_attentions.0.to_q.weight"), std::string::npos)
        << e.what();
  }
  // conv_in of a video target without the condition cannot take a wider source kernel.
  run::FineTuneSource wide = image;
  wide.model = target;
  wide.weights.clear();
  for (const auto& [name, t] : net.named_parameters()) wide.weights.emplace_back(name, t.clone());
  const unet::UNetConfig plain = run::finetune_unet_config(image, video_options(false), clips_like(image.model, kFrames));
  Generator g2(2);
  unet::UNet plain_net(plain, g2, Device::cpu());
  try {
    run::load_finetune_weights(wide, plain_net, plain);
    FAIL() << "no error";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("shape of conv_in.weight"), std::string::npos) << e.what();
  }
}

namespace {

// Tiny runs on moving-toy at 16x16: the image source on single frames (--frames 1).
TrainOptions tiny_moving(const std::string& out, int frames) {
  TrainOptions o = ddpm::testing::tiny_run(out);
  o.data = "moving-toy";
  o.toy_count = 8;
  o.frames = frames;
  o.canvas = 16;
  o.item_size = 8;
  o.class_cond = true;
  o.steps = 2;
  o.save_every = 2;
  o.num_samples = 2;
  o.sample_steps = 2;
  return o;
}

const std::string& image_run() {
  static const std::string dir = [] {
    TrainOptions o = tiny_moving(temp_run("vfinetune_image"), 1);
    run::train_run(o);
    return o.out;
  }();
  return dir;
}

// The fine-tune flags: data, optimiser and run settings (the model comes from SRC).
TrainOptions video_finetune(const std::string& src, const std::string& out) {
  TrainOptions f;
  f.init_from = src;
  f.data = "moving-toy";
  f.toy_count = 8;
  f.frames = 4;
  f.canvas = 16;
  f.item_size = 8;
  f.first_frame_condition = true;
  f.batch_size = 2;
  f.lr = 1e-3;
  f.warmup_steps = 0;
  f.ema_rate = 0.9;
  f.steps = 2;
  f.save_every = 1;
  f.sample_every = 0;
  f.log_every = 1;
  f.num_samples = 2;
  f.sample_steps = 2;
  f.out = out;
  f.log = nullptr;
  return f;
}

}  // namespace

// An image run fine-tuned on clips: config.json's model and record, and a resume that matches
// the run that never stopped, bit for bit.
TEST(VideoFineTune, AnImageRunFineTunesOnClipsAndResumes) {
  TrainOptions straight = video_finetune(image_run(), temp_run("vfinetune_straight"));
  run::train_run(straight);
  const nlohmann::json cfg = run::read_run_config(straight.out);
  EXPECT_EQ(cfg.at("model").at("num_frames"), 4);
  EXPECT_EQ(cfg.at("model").at("first_frame_condition"), true);
  EXPECT_EQ(cfg.at("init_from").at("video"), (nlohmann::json{{"num_frames", 4}, {"from_image", true}}));
  nlohmann::json image_model = run::read_run_config(image_run()).at("model");
  for (const char* key : {"image_size", "in_channels", "model_channels", "channel_mult", "num_classes"})
    EXPECT_EQ(cfg.at("model").at(key), image_model.at(key)) << key;

  // It started from the image run's EMA weights: AdamW's first step moves each by at most lr
  // (test_finetune.cpp FirstStepStartsFromTheSourceWeights), conv_in's first C channels too.
  const run::ModelSource src = run::open_model(image_run(), Device::cpu(), /*use_ema=*/true);
  const run::ModelSource step1 = run::open_model(run::checkpoint_dir(straight.out, 1), Device::cpu(), false);
  std::map<std::string, Tensor> source;
  for (const auto& [name, t] : src.net->named_parameters()) source[name] = t;
  int temporal = 0;
  for (const auto& [name, t] : step1.net->named_parameters()) {
    if (is_temporal(name)) {
      ++temporal;
      continue;
    }
    const std::vector<float> a = t.to_vector(), b = source.at(name).to_vector();
    const std::int64_t cin = t.shape().back(), src_cin = source.at(name).shape().back();  // [.., Cin] last
    double moved = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
      const std::int64_t k = static_cast<std::int64_t>(i) / cin, c = static_cast<std::int64_t>(i) % cin;
      if (c >= src_cin) continue;  // conv_in's new condition channels
      moved = std::max(moved, static_cast<double>(std::fabs(a[i] - b[static_cast<std::size_t>(k * src_cin + c)])));
    }
    EXPECT_LE(moved, straight.lr * (1 + 1e-3) + 1e-6) << name;
  }
  EXPECT_GT(temporal, 0);

  TrainOptions first = video_finetune(image_run(), temp_run("vfinetune_resumed"));
  first.steps = 1;
  run::train_run(first);
  TrainOptions resumed = video_finetune("", first.out);
  resumed.resume = "latest";
  EXPECT_EQ(run::train_run(resumed).steps_done, 2);
  EXPECT_EQ(run::read_run_config(resumed.out).at("init_from"), cfg.at("init_from"));
  for (const char* f : {run::kModelFile, run::kEmaFile})
    ddpm::testing::expect_same_tensors(run::checkpoint_dir(straight.out, 2) + "/" + f,
                                       run::checkpoint_dir(resumed.out, 2) + "/" + f);
}

// A video run fine-tunes on clips of its own F; its record says so.
TEST(VideoFineTune, AVideoRunFineTunesOnClipsOfItsF) {
  TrainOptions base = video_finetune(image_run(), temp_run("vfinetune_video_base"));
  base.steps = 1;
  run::train_run(base);
  TrainOptions o = video_finetune(base.out, temp_run("vfinetune_video_again"));
  o.steps = 1;
  run::train_run(o);
  const nlohmann::json cfg = run::read_run_config(o.out);
  EXPECT_EQ(cfg.at("init_from").at("video"), (nlohmann::json{{"num_frames", 4}, {"from_image", false}}));
  EXPECT_EQ(cfg.at("model"), run::read_run_config(base.out).at("model"));
  TrainOptions other_f = video_finetune(base.out, temp_run("vfinetune_video_f3"));
  other_f.frames = 3;
  expect_value_error([&] { run::train_run(other_f); }, "holds clips of 3 frames, but the --init-from model");
  EXPECT_FALSE(fs::exists(other_f.out));
}

// --train-only temporal (AnimateDiff's motion modules): after 2 steps every frozen weight is
// bit for bit the image run's, in the model and the EMA files; the temporal blocks and the
// grown conv_in trained; a resume continues exactly as the run that never stopped.
TEST(VideoFineTune, TrainOnlyTemporalFreezesTheRest) {
  TrainOptions straight = video_finetune(image_run(), temp_run("vfinetune_temporal"));
  straight.train_only = "temporal";
  straight.weight_decay = 0.1;  // must not touch the frozen weights either
  run::train_run(straight);
  EXPECT_EQ(run::read_run_config(straight.out).at("train").at("train_only"), "temporal");
  const run::ModelSource src = run::open_model(image_run(), Device::cpu(), /*use_ema=*/true);
  std::map<std::string, Tensor> source;
  for (const auto& [name, t] : src.net->named_parameters()) source[name] = t;
  for (const bool ema : {false, true}) {
    const run::ModelSource after = run::open_model(run::checkpoint_dir(straight.out, 2), Device::cpu(), ema);
    int frozen = 0, trained = 0;
    for (const auto& [name, t] : after.net->named_parameters()) {
      if (is_temporal(name) || name.rfind("conv_in.", 0) == 0) {
        ++trained;
        continue;
      }
      ++frozen;
      EXPECT_TRUE(ddpm::testing::same_bits(t, source.at(name))) << name << (ema ? " (EMA)" : "");
    }
    EXPECT_GT(frozen, 0);
    EXPECT_GT(trained, 0);
    std::map<std::string, Tensor> p;
    for (const auto& [name, t] : after.net->named_parameters()) p[name] = t;
    // The zero-initialised output projection of a temporal block moved, and so did conv_in.
    EXPECT_GT(peak_abs(p.at("mid_block.temp_attentions.0.to_out.0.weight")), 0.0) << ema;
    EXPECT_FALSE(ddpm::testing::same_bits(slice(p.at("conv_in.weight"), 3, 0, 1),
                                          slice(source.at("conv_in.weight"), 3, 0, 1)))
        << ema;
  }

  TrainOptions first = video_finetune(image_run(), temp_run("vfinetune_temporal_resumed"));
  first.train_only = "temporal";
  first.weight_decay = 0.1;
  first.steps = 1;
  run::train_run(first);
  TrainOptions resumed = video_finetune("", first.out);
  resumed.train_only = "temporal";
  resumed.weight_decay = 0.1;
  resumed.resume = "latest";
  run::train_run(resumed);
  for (const char* f : {run::kModelFile, run::kEmaFile, run::kOptimizerFile})
    ddpm::testing::expect_same_tensors(run::checkpoint_dir(straight.out, 2) + "/" + f,
                                       run::checkpoint_dir(resumed.out, 2) + "/" + f);
}

TEST(VideoFineTune, TrainOnlyIsRefusedWhereItCannotApply) {
  TrainOptions o = ddpm::testing::tiny_run(temp_run("vfinetune_refused"));
  o.train_only = "temporal";
  expect_value_error([&] { run::train_run(o); }, "--train-only temporal needs --init-from");
  EXPECT_FALSE(fs::exists(o.out));
  TrainOptions f = video_finetune(image_run(), temp_run("vfinetune_refused"));
  f.train_only = "spatial";
  expect_value_error([&] { run::train_run(f); }, "--train-only must be temporal");
  f.train_only = "temporal";
  f.lora_rank = 2;
  expect_value_error([&] { run::train_run(f); }, "are two ways to choose what trains");
  f.lora_rank = 0;
  f.posthoc_ema = "0.1";
  expect_value_error([&] { run::train_run(f); }, "--posthoc-ema does not apply with --train-only temporal");
  f.posthoc_ema.clear();
  f.frames = 1;
  f.first_frame_condition = false;
  expect_value_error([&] { run::train_run(f); }, "--train-only temporal trains a video model's temporal blocks");
  EXPECT_FALSE(fs::exists(f.out));
}
