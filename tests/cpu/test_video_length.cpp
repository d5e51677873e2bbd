// Clips of another length than the video model was trained on (length extrapolation; unet.h
// forward, temporal.h) and the relative-position range R (UNetConfig::temporal_max_distance,
// ddpm-train --temporal-max-distance). What is checked: a model built for F = 4 runs on
// F2 = 6 (and 2) frame clips, sinusoid, relative and with temporal convolutions, giving
// finite output of the right shape, and with its temporal output layers at zero (every
// other weight random) it equals the image model frame by frame; a first-frame model takes
// a condition of F2 frames; the bias of F2 > R + 1 frames against a hand-built table and
// the block's gradient through the clipped rows by finite differences in double; the
// table size 2R + 1; a config JSON without the key (every run before the option) loads
// with R = F - 1; the refusals of the training flags and of ddpm-sample --frames.
#include <cmath>
#include <map>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "engine/error.h"
#include "engine/ops/concat.h"
#include "models/run/train_run.h"
#include "models/run/video_run.h"
#include "models/unet/model_io.h"
#include "models/unet/temporal.h"
#include "models/unet/unet.h"
#include "support/gradcheck.h"
#include "support/tiny_encoder.h"
#include "support/tiny_unet.h"
#include "support/value_error.h"

namespace ddpm {
namespace {

using testing::param;
using testing::random_tensor;

// Two levels (8x8, 4x4 with spatial attention), trained on clips of 4 frames.
unet::UNetConfig video_config(const std::string& position, bool temporal_conv = false, int max_distance = 0) {
  unet::UNetConfig c = testing::tiny_unet_config(8, 3);
  c.attention_resolutions = {4};
  c.num_frames = 4;
  c.temporal_position = position;
  c.temporal_conv = temporal_conv;
  c.temporal_max_distance = max_distance;
  return c;
}

bool is_temporal(const std::string& name) {
  return name.find("temp_attentions.") != std::string::npos || name.find("temp_convs.") != std::string::npos;
}

// The video model's image weights copied from `image`; its temporal blocks random but their
// output layers (to_out.0, proj_out) zero, so each block is the identity only through them.
void image_weights_with_identity_temporal_blocks(const nn::Module& video, const nn::Module& image,
                                                 std::uint64_t seed) {
  std::map<std::string, Tensor> from;
  for (const auto& [name, p] : image.named_parameters()) from[name] = p;
  for (auto [name, p] : video.named_parameters()) {
    if (!is_temporal(name)) {
      ASSERT_TRUE(from.count(name)) << name;
      p.copy_from(from.at(name));
    } else if (name.find("to_out.0.") != std::string::npos || name.find("proj_out.") != std::string::npos) {
      p.zero_();
    } else {
      p.copy_from(random_tensor(p.shape(), seed++, p.dtype(), 0.3));  // relative_bias too
    }
  }
}

bool all_finite(const Tensor& t) {
  for (double v : t.to_double_vector())
    if (!std::isfinite(v)) return false;
  return true;
}

TEST(VideoLength, ModelForFourFramesRunsSixFrameClipsAndMatchesTheImageModel) {
  for (const auto& [position, tconv] : std::vector<std::pair<std::string, bool>>{
           {"sinusoid", false}, {"relative", false}, {"sinusoid", true}}) {
    SCOPED_TRACE(position + (tconv ? " + temporal conv" : ""));
    Generator g1(21), g2(21);
    unet::UNet video(video_config(position, tconv), g1, Device::cpu());
    unet::UNetConfig ic = video_config("sinusoid");
    ic.num_frames = 0;
    unet::UNet image(ic, g2, Device::cpu());
    std::uint64_t seed = 300;
    for (auto [name, p] : image.named_parameters()) p.copy_from(random_tensor(p.shape(), seed++, p.dtype(), 0.3));
    image_weights_with_identity_temporal_blocks(video, image, 900);
    for (std::int64_t F2 : {6, 2}) {
      const Tensor x = random_tensor({2, F2, 8, 8, 3}, 40 + F2, DType::f32);  // 2 clips of F2 frames
      const Tensor y = video.forward(x, {50, 700}, {}, nn::Context{});
      ASSERT_EQ(y.shape(), (Shape{2, F2, 8, 8, 3}));
      EXPECT_TRUE(all_finite(y));
      std::vector<double> t;
      for (double ti : {50.0, 700.0}) t.insert(t.end(), static_cast<std::size_t>(F2), ti);
      const Tensor yi = image.forward(x.reshape({2 * F2, 8, 8, 3}), t, {}, nn::Context{});
      ASSERT_GT(testing::compare(yi, Tensor::zeros(yi.shape())).max_abs, 1e-3);  // the networks compute something
      EXPECT_LT(testing::compare(y.reshape({2 * F2, 8, 8, 3}), yi).max_abs, 1e-5) << F2 << " frames";
    }
    // With live temporal blocks the longer clip still runs, finite, and the frames now mix.
    for (auto [name, p] : video.named_parameters())
      if (is_temporal(name)) p.copy_from(random_tensor(p.shape(), seed++, p.dtype(), 0.3));
    const Tensor x = random_tensor({1, 6, 8, 8, 3}, 60, DType::f32);
    const Tensor y = video.forward(x, {400}, {}, nn::Context{});
    ASSERT_EQ(y.shape(), (Shape{1, 6, 8, 8, 3}));
    EXPECT_TRUE(all_finite(y));
    const Tensor yi = image.forward(x.reshape({6, 8, 8, 3}), std::vector<double>(6, 400.0), {}, nn::Context{});
    EXPECT_GT(testing::compare(y.reshape({6, 8, 8, 3}), yi).max_abs, 1e-4);
  }
}

TEST(VideoLength, FirstFrameModelTakesAConditionOfTheSampledLength) {
  unet::UNetConfig c = video_config("relative", false, 2);
  c.first_frame_condition = true;
  c.condition_frames = 1;
  Generator g(22);
  unet::UNet net(c, g, Device::cpu());
  const Tensor frame0 = random_tensor({2, 8, 8, 3}, 23, DType::f32);
  const Tensor cond = unet::first_frame_condition(frame0, 6);  // [2, 6, 8, 8, 4]
  ASSERT_EQ(cond.shape(), (Shape{2, 6, 8, 8, 4}));
  const Tensor x = concat({random_tensor({2, 6, 8, 8, 3}, 24, DType::f32), cond}, -1);
  const Tensor y = net.forward(x, {10, 20}, {}, nn::Context{});
  EXPECT_EQ(y.shape(), (Shape{2, 6, 8, 8, 3}));
  EXPECT_TRUE(all_finite(y));
}

TEST(VideoLength, BiasOfClipsLongerThanRPlusOneClipsToTheEdgeRows) {
  // R = 2: rows 0..4 for distances -2..2; table[r, h] = 10 r + h, so a read is 10 row + h.
  const std::int64_t R = 2, heads = 2, F = 6;
  std::vector<double> table_values;
  for (std::int64_t r = 0; r < 2 * R + 1; ++r)
    for (std::int64_t h = 0; h < heads; ++h) table_values.push_back(10.0 * r + h);
  const Tensor table = Tensor::from_vector(table_values, {2 * R + 1, heads}, DType::f64);
  // The row each pair (query i, key j) reads, written out by hand: clip(j - i, -2, 2) + 2.
  const std::vector<std::vector<int>> rows = {{2, 3, 4, 4, 4, 4}, {1, 2, 3, 4, 4, 4}, {0, 1, 2, 3, 4, 4},
                                              {0, 0, 1, 2, 3, 4}, {0, 0, 0, 1, 2, 3}, {0, 0, 0, 0, 1, 2}};
  const Tensor bias = unet::relative_position_bias(table, F);
  ASSERT_EQ(bias.shape(), (Shape{heads, F, F}));
  const std::vector<double> got = bias.to_double_vector();
  for (std::int64_t h = 0; h < heads; ++h)
    for (std::int64_t i = 0; i < F; ++i)
      for (std::int64_t j = 0; j < F; ++j)
        EXPECT_EQ(got[static_cast<std::size_t>((h * F + i) * F + j)], 10.0 * rows[i][j] + h) << h << i << j;

  // The block on 6 frames with R = 2: the gradient through the shared edge rows (and every
  // other weight it names) by finite differences in double.
  Generator gen(25);
  unet::TemporalAttention block(4, 2, 2, 1e-5, gen, Device::cpu(), R);
  testing::parameters_to_f64(block);
  std::uint64_t seed = 30;
  for (auto [name, p] : block.named_parameters()) p.copy_from(random_tensor(p.shape(), seed++, p.dtype(), 0.3));
  std::vector<Tensor> inputs = {param(random_tensor({F, 1, 2, 4}, 26))};  // one clip of 6 frames of 1x2, C = 4
  for (const auto& [name, p] : block.named_parameters())
    if (name == "relative_bias" || name == "to_k.weight") inputs.push_back(param(p));
  ASSERT_EQ(inputs.size(), 3u);
  EXPECT_TRUE(testing::gradcheck([&](const std::vector<Tensor>& in) { return block.forward(in[0], F); }, inputs));
}

TEST(VideoLength, MaxDistanceSetsTheTableSizeAndAnOldConfigLoadsWithFMinusOne) {
  // --temporal-max-distance 2 on 4-frame clips: tables of 2R + 1 = 5 rows, key written.
  Generator g(27);
  const unet::UNetConfig c2 = video_config("relative", false, 2);
  EXPECT_EQ(c2.relative_max_distance(), 2);
  unet::UNet net(c2, g, Device::cpu());
  int tables = 0;
  for (const auto& [name, p] : net.named_parameters())
    if (name.find("relative_bias") != std::string::npos) {
      EXPECT_EQ(p.dim(0), 5) << name;
      ++tables;
    }
  EXPECT_GT(tables, 0);
  const nlohmann::json j2 = unet::config_to_json(c2);
  EXPECT_EQ(j2.at("temporal_max_distance"), 2);
  EXPECT_EQ(unet::config_from_json(j2).relative_max_distance(), 2);
  EXPECT_EQ(unet::config_to_json(unet::config_from_json(j2)), j2);

  // A relative model's config.json as written before the option: no key. It loads with
  // R = num_frames - 1 = 3, and so builds the 7-row tables its checkpoint holds.
  const nlohmann::json old = nlohmann::json::parse(R"({
    "image_size": 8, "in_channels": 3, "model_channels": 8, "channel_mult": [1, 2], "num_res_blocks": 1,
    "attention_resolutions": [4], "num_heads": 1, "num_head_channels": -1, "norm_groups": 4, "norm_eps": 1e-05,
    "dropout": 0.0, "use_scale_shift_norm": false, "resblock_updown": false, "time_embedding": "ddpm",
    "learn_sigma": false, "rescale_residual": false, "num_classes": 0, "num_frames": 4,
    "temporal_position": "relative"})");
  const nlohmann::json now = unet::config_to_json(video_config("relative"));
  for (auto it = now.begin(); it != now.end(); ++it)  // the literal has every key this build writes
    ASSERT_TRUE(old.contains(it.key())) << "the old config literal misses " << it.key();
  const unet::UNetConfig back = unet::config_from_json(old);
  EXPECT_EQ(back.temporal_max_distance, 0);
  EXPECT_EQ(back.relative_max_distance(), 3);
  Generator g3(28);
  unet::UNet old_net(back, g3, Device::cpu());
  for (const auto& [name, p] : old_net.named_parameters())
    if (name.find("relative_bias") != std::string::npos) EXPECT_EQ(p.dim(0), 7) << name;
  EXPECT_FALSE(unet::config_to_json(back).contains("temporal_max_distance"));  // written back as it was

  // Damaged or inconsistent values.
  nlohmann::json bad = j2;
  bad["temporal_max_distance"] = 0;
  EXPECT_NE(testing::io_error_message([&] { unet::config_from_json(bad); }).find("temporal_max_distance is 0"),
            std::string::npos);
  unet::UNetConfig sinus = video_config("sinusoid", false, 2);
  testing::expect_value_error([&] { sinus.validate(); }, "needs a video model with temporal_position \"relative\"");
  unet::UNetConfig negative = video_config("relative", false, -1);
  testing::expect_value_error([&] { negative.validate(); }, "temporal_max_distance must be at least 1");
}

TEST(VideoLength, TrainingFlagRefusalsAndTheBuiltConfig) {
  run::TrainOptions o;
  o.channel_mult = "1,2";
  o.num_channels = 8;
  o.norm_groups = 4;
  o.num_res_blocks = 1;
  o.attention_resolutions = "";
  o.data = "moving-toy";
  o.temporal_position = "relative";
  o.temporal_max_distance = 2;
  unet::UNetConfig c = run::make_unet_config(o, 16, 1, 0, 4);
  EXPECT_EQ(c.temporal_max_distance, 2);
  EXPECT_EQ(c.relative_max_distance(), 2);
  o.temporal_max_distance = -1;  // not given: F - 1
  EXPECT_EQ(run::make_unet_config(o, 16, 1, 0, 4).relative_max_distance(), 3);

  o.temporal_max_distance = 0;
  testing::expect_value_error([&] { run::make_unet_config(o, 16, 1, 0, 4); },
                              "--temporal-max-distance must be at least 1");
  o.temporal_max_distance = 2;
  o.temporal_position = "";
  testing::expect_value_error([&] { run::make_unet_config(o, 16, 1, 0, 1); },
                              "--temporal-max-distance 2 clips the frame distances of a video model");
  testing::expect_value_error([&] { run::make_unet_config(o, 16, 1, 0, 4); },
                              "needs --temporal-position relative (the model has sinusoid positions)");
  o.temporal_position = "sinusoid";
  testing::expect_value_error([&] { run::make_unet_config(o, 16, 1, 0, 4); },
                              "needs --temporal-position relative");
  // The shared checks (also finetune_unet_config's) keep the older flags' messages.
  o.temporal_max_distance = -1;
  o.temporal_position = "rotary";
  testing::expect_value_error([&] { run::check_temporal_flags(o, true, "moving-toy", o.temporal_position); },
                              "--temporal-position must be sinusoid or relative, got 'rotary'");
  o.temporal_position = "";
  o.temporal_conv = true;
  testing::expect_value_error([&] { run::check_temporal_flags(o, false, "toy", ""); },
                              "--temporal-conv adds convolutions over a video model's frames; --data toy");
}

TEST(VideoLength, SampleFramesFlagCountsRecordAndRefusals) {
  unet::UNetConfig video = video_config("relative", false, 2);
  run::SampleOptions o;
  o.checkpoint = "run";
  EXPECT_EQ(run::video_clip_frames(o, video), 4);  // not given: the trained length
  o.frames = 9;
  EXPECT_EQ(run::video_clip_frames(o, video), 9);
  EXPECT_EQ(run::video_output_frames(o, video), 9);
  const nlohmann::json info = run::video_info(o, video, run::FirstFrames{}, 2);
  EXPECT_EQ(info.at("frames"), 9);
  EXPECT_EQ(info.at("trained_frames"), 4);
  run::check_video_sample(o, video, false);  // accepted

  o.frames = 1;
  testing::expect_value_error([&] { run::check_video_flags(o); }, "--frames must be at least 2");
  o.frames = 6;
  testing::expect_value_error([&] { run::check_video_sample(o, unet::UNetConfig{}, false); },
                              "--frames 6 sets the clip length of a video model; run is an image model");
  // A first-frame model continued from K' = 3 known frames needs segments of 4 frames or more.
  unet::UNetConfig cond = video_config("sinusoid");
  cond.first_frame_condition = true;
  cond.condition_frames = 3;
  o.first_frame = "frame.png";
  o.segments = 2;
  o.frames = 3;
  testing::expect_value_error([&] { run::check_video_sample(o, cond, false); },
                              "--overlap 3 (the default) leaves no new frame in a segment of 3 frames (--frames 3)");
  o.frames = 5;
  run::check_video_sample(o, cond, false);
  EXPECT_EQ(run::video_output_frames(o, cond), 5 + (5 - 3));
}

}  // namespace
}  // namespace ddpm
