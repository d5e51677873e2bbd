// The video UNet (Ho et al. 2022, "Video Diffusion Models"): the transpose op it moves the
// frame axis with, TemporalAttention (models/unet/temporal.h), and the space-time factorised
// UNet (unet.h num_frames, first_frame_condition). What is checked: transpose against its
// index formula and finite differences; the temporal block's gradient by finite
// differences in double; a fresh video model being the image model frame by frame (same
// seed: the temporal layers are drawn last and start as the identity); mixing across the
// frames of a clip but never across clips; the frame-position embedding breaking the
// symmetry under reversal of the frames; config.json; and the errors.
#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "engine/error.h"
#include "engine/ops/concat.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/reduce.h"
#include "engine/ops/transpose.h"
#include "models/unet/controlnet.h"
#include "models/unet/model_io.h"
#include "models/unet/temporal.h"
#include "models/unet/unet.h"
#include "support/gradcheck.h"
#include "support/tiny_encoder.h"
#include "support/tiny_unet.h"
#include "support/value_error.h"

namespace ddpm::unet {
namespace {

using testing::param;
using testing::random_tensor;

// --- transpose -----------------------------------------------------------------------------

TEST(Transpose, ValuesFollowTheIndexFormula) {
  const Tensor x = random_tensor({2, 3, 4, 5}, 1, DType::f32);
  const Tensor y = transpose(x, 1, 3);  // y[a, d, c, b] = x[a, b, c, d]
  ASSERT_EQ(y.shape(), (Shape{2, 5, 4, 3}));
  const std::vector<float> xv = x.to_vector(), yv = y.to_vector();
  for (int a = 0; a < 2; ++a)
    for (int b = 0; b < 3; ++b)
      for (int c = 0; c < 4; ++c)
        for (int d = 0; d < 5; ++d)
          ASSERT_EQ(yv[((a * 5 + d) * 4 + c) * 3 + b], xv[((a * 3 + b) * 4 + c) * 5 + d]) << a << b << c << d;
  // Negative axes count from the end, the order of the two axes does not matter, and
  // swapping twice gives x back.
  EXPECT_TRUE(testing::same_bits(transpose(x, -1, -3), y));
  EXPECT_TRUE(testing::same_bits(transpose(y, 3, 1), x));
  // Adjacent axes (mid = 1) and the outermost axis (outer = 1), in f64.
  const Tensor z = random_tensor({3, 2, 4}, 2);
  const Tensor zt = transpose(z, 0, 1);
  ASSERT_EQ(zt.shape(), (Shape{2, 3, 4}));
  const std::vector<double> zv = z.to_double_vector(), ztv = zt.to_double_vector();
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 2; ++j)
      for (int k = 0; k < 4; ++k) ASSERT_EQ(ztv[(j * 3 + i) * 4 + k], zv[(i * 2 + j) * 4 + k]);
  EXPECT_TRUE(testing::same_bits(transpose(z, 2, 2), z));  // a no-op swap is a copy
}

TEST(Transpose, GradientMatchesFiniteDifferencesInDouble) {
  auto check = [](const Shape& s, int a0, int a1) {
    SCOPED_TRACE(shape_str(s) + " axes " + std::to_string(a0) + ", " + std::to_string(a1));
    EXPECT_TRUE(testing::gradcheck([&](const std::vector<Tensor>& in) { return transpose(in[0], a0, a1); },
                                   {param(random_tensor(s, 3))}));
  };
  check({2, 3, 4}, 0, 2);
  check({2, 3, 2, 4, 2}, 1, -2);  // outer, mid and inner all > 1
}

TEST(Transpose, AxisOutOfRangeIsAValueError) {
  const Tensor x = random_tensor({2, 3, 4, 5}, 4, DType::f32);
  testing::expect_value_error([&] { transpose(x, 1, 4); }, "transpose: axes (1, 4) are out of range");
  testing::expect_value_error([&] { transpose(x, -5, 0); }, "[2, 3, 4, 5]");
}

// --- TemporalAttention ---------------------------------------------------------------------

// Overwrites every parameter of m with N(0, scale^2) values in m's dtype (to_out included,
// which starts at zero).
void perturb(const nn::Module& m, std::uint64_t seed, double scale = 0.3) {
  for (auto [name, p] : m.named_parameters()) p.copy_from(random_tensor(p.shape(), seed++, p.dtype(), scale));
}

TEST(TemporalAttention, FramePositionEmbeddingIsVaswanisSinusoid) {
  const Tensor p = frame_position_embedding(3, 6, DType::f64, Device::cpu());
  ASSERT_EQ(p.shape(), (Shape{3, 6}));
  const std::vector<double> v = p.to_double_vector();
  EXPECT_EQ(v[0], 0.0);  // frame 0: sin(0), cos(0), ...
  EXPECT_EQ(v[1], 1.0);
  EXPECT_NEAR(v[6 + 0], std::sin(1.0), 1e-15);                              // frame 1, channel 0
  EXPECT_NEAR(v[6 + 3], std::cos(1.0 / std::pow(10000.0, 2.0 / 6)), 1e-15);  // frame 1, channel 3 (i = 1)
  EXPECT_NEAR(v[12 + 4], std::sin(2.0 / std::pow(10000.0, 4.0 / 6)), 1e-15);  // frame 2, channel 4 (i = 2)
}

TEST(TemporalAttention, NamesAndAFreshBlockIsTheIdentity) {
  Generator gen(3);
  TemporalAttention block(8, 2, 4, 1e-5, gen, Device::cpu());
  std::vector<std::string> names;
  for (const auto& [name, t] : block.named_parameters()) names.push_back(name);
  EXPECT_EQ(names, (std::vector<std::string>{"norm.weight", "norm.bias", "to_q.weight", "to_q.bias", "to_k.weight",
                                             "to_k.bias", "to_v.weight", "to_v.bias", "to_out.0.weight",
                                             "to_out.0.bias"}));
  const Tensor x = random_tensor({6, 2, 3, 8}, 5, DType::f32);  // 2 clips of 3 frames
  EXPECT_TRUE(testing::same_bits(block.forward(x, 3), x));
  testing::expect_value_error([&] { block.forward(x, 4); }, "are not whole clips of 4 frames");
}

TEST(TemporalAttention, GradientMatchesFiniteDifferencesInDouble) {
  Generator gen(4);
  TemporalAttention block(4, 2, 2, 1e-5, gen, Device::cpu());
  testing::parameters_to_f64(block);
  perturb(block, 100);
  std::vector<Tensor> inputs = {param(random_tensor({4, 2, 2, 4}, 6))};  // 2 clips x 2 frames of 2x2, C = 4
  for (const auto& [name, p] : block.named_parameters())
    if (name == "norm.weight" || name == "to_q.weight" || name == "to_v.bias" || name == "to_out.0.weight")
      inputs.push_back(param(p));
  ASSERT_EQ(inputs.size(), 5u);
  auto f = [&](const std::vector<Tensor>& in) { return block.forward(in[0], 2); };
  EXPECT_TRUE(testing::gradcheck(f, inputs));
}

TEST(TemporalAttention, RecomputationGivesTheSameGradients) {
  auto run = [](bool with_recompute) {
    Generator gen(5);
    TemporalAttention block(4, 1, 2, 1e-5, gen, Device::cpu());
    testing::parameters_to_f64(block);
    perturb(block, 200);
    for (const auto& [name, p] : block.named_parameters()) param(p);
    Tensor x = param(random_tensor({6, 2, 2, 4}, 7));
    nn::Context ctx;
    ctx.recompute = with_recompute;
    sum(square(block.forward(x, 3, ctx))).backward();
    std::vector<Tensor> grads = {x.grad()};
    for (const auto& [name, p] : block.named_parameters()) grads.push_back(p.grad());
    return grads;
  };
  const std::vector<Tensor> plain = run(false), checkpointed = run(true);
  for (std::size_t k = 0; k < plain.size(); ++k)
    EXPECT_TRUE(testing::all_close(checkpointed[k], plain[k], 1e-12, 1e-10)) << "gradient " << k;
}

// --- the video UNet ------------------------------------------------------------------------

// Two levels (8x8 and 4x4, the second with spatial attention), 2 classes, 3 frames.
UNetConfig video_config(int frames = 3) {
  UNetConfig c = testing::tiny_unet_config(8, 3);
  c.attention_resolutions = {4};
  c.num_classes = 2;
  c.num_frames = frames;
  return c;
}

bool is_temporal(const std::string& name) { return name.find("temp_attentions") != std::string::npos; }

TEST(VideoUNet, TemporalLayersAreNamedAndDrawnAfterTheImageWeights) {
  Generator g1(11), g2(11);
  UNetConfig image_cfg = video_config();
  image_cfg.num_frames = 0;
  UNet video(video_config(), g1, Device::cpu()), image(image_cfg, g2, Device::cpu());
  std::map<std::string, Tensor> image_params;
  for (const auto& [name, t] : image.named_parameters()) image_params[name] = t;
  int temporal = 0;
  for (const auto& [name, t] : video.named_parameters()) {
    if (is_temporal(name)) {
      ++temporal;
      continue;
    }
    ASSERT_TRUE(image_params.count(name)) << name;
    EXPECT_TRUE(testing::same_bits(t, image_params[name])) << name;
  }
  EXPECT_EQ(static_cast<std::size_t>(video.named_parameters().size() - temporal), image_params.size());
  // 2 down resnets + the middle + 2 x 2 up resnets = 7 blocks of 10 tensors.
  EXPECT_EQ(temporal, 70);
  std::map<std::string, Shape> s;
  for (const auto& [name, t] : video.named_parameters()) s[name] = t.shape();
  EXPECT_EQ(s.at("down_blocks.0.temp_attentions.0.to_q.weight"), (Shape{8, 8}));
  EXPECT_EQ(s.at("down_blocks.1.temp_attentions.0.norm.weight"), (Shape{16}));
  EXPECT_EQ(s.at("mid_block.temp_attentions.0.to_out.0.weight"), (Shape{16, 16}));
  EXPECT_EQ(s.at("up_blocks.0.temp_attentions.1.to_k.bias"), (Shape{16}));
  EXPECT_EQ(s.at("up_blocks.1.temp_attentions.1.to_v.weight"), (Shape{8, 8}));
  EXPECT_EQ(s.count("up_blocks.1.temp_attentions.2.to_v.weight"), 0u);
}

// x [N, F, H, W, C] with frames [first, first + count) of every clip.
Tensor frames_of(const Tensor& x, std::int64_t first, std::int64_t count) { return slice(x, 1, first, count); }

// A fresh video model of config c against the image model of the same config with
// num_frames 0, same seed, on 2 clips of 3 frames; with a context model, the per-clip
// context [2, 2, context_dim] is given to the image model once per frame.
void expect_video_is_image_per_frame(const UNetConfig& c) {
  Generator g1(12), g2(12);
  UNetConfig image_cfg = c;
  image_cfg.num_frames = 0;
  UNet video(c, g1, Device::cpu()), image(image_cfg, g2, Device::cpu());
  testing::parameters_to_f64(video);
  testing::parameters_to_f64(image);
  // The same non-zero weights in both (conv_out starts at zero and would hide everything);
  // the temporal layers keep their zero to_out.
  std::uint64_t seed = 300;
  std::map<std::string, std::uint64_t> seeds;
  for (const auto& [name, t] : image.named_parameters()) seeds[name] = seed++;
  for (const nn::Module* m : {static_cast<const nn::Module*>(&video), static_cast<const nn::Module*>(&image)})
    for (auto [name, p] : m->named_parameters())
      if (!is_temporal(name)) p.copy_from(random_tensor(p.shape(), seeds.at(name), DType::f64, 0.3));
  const Tensor x = random_tensor({2, 3, 8, 8, c.in_channels}, 8);
  const Tensor x_frames = x.reshape({6, 8, 8, c.in_channels});
  const std::vector<double> t = {10, 500}, t_frames = {10, 10, 10, 500, 500, 500};
  std::vector<std::int64_t> labels, labels_frames;
  if (c.num_classes > 0) labels = {0, 1}, labels_frames = {0, 0, 0, 1, 1, 1};
  Tensor y, per_frame;
  if (c.cross_attention()) {
    const Tensor context = random_tensor({2, 2, c.context_dim}, 9);
    const Tensor context_frames = concat({slice(context, 0, 0, 1), slice(context, 0, 0, 1), slice(context, 0, 0, 1),
                                          slice(context, 0, 1, 1), slice(context, 0, 1, 1), slice(context, 0, 1, 1)},
                                         0);
    y = video.forward(x, t, labels, context, nn::Context{});
    per_frame = image.forward(x_frames, t_frames, labels_frames, context_frames, nn::Context{});
  } else {
    y = video.forward(x, t, labels, nn::Context{});
    per_frame = image.forward(x_frames, t_frames, labels_frames, nn::Context{});
  }
  ASSERT_EQ(y.shape(), (Shape{2, 3, 8, 8, c.out_channels()}));
  EXPECT_TRUE(testing::all_close(y.reshape(per_frame.shape()), per_frame, 1e-12, 1e-10));
  double peak = 0;
  for (double v : per_frame.to_double_vector()) peak = std::max(peak, std::fabs(v));
  EXPECT_GT(peak, 1e-3);  // the comparison is not between two zero outputs
}

TEST(VideoUNet, AFreshVideoModelIsTheImageModelFrameByFrame) {
  SCOPED_TRACE("class-conditional");
  expect_video_is_image_per_frame(video_config());
}

TEST(VideoUNet, AFreshTextVideoModelIsTheImageModelFrameByFrame) {
  // Cross-attention to the per-clip context and its pooled embedding, repeated per frame.
  UNetConfig c = testing::tiny_unet_config(8, 1);
  c.attention_resolutions = {4};
  c.num_heads = 2;
  c.context_dim = 6;
  c.context_pool_heads = 2;
  c.num_frames = 3;
  expect_video_is_image_per_frame(c);
}

// A video model with every weight non-zero, in double.
std::unique_ptr<UNet> mixing_model(const UNetConfig& c = video_config()) {
  Generator g(13);
  auto net = std::make_unique<UNet>(c, g, Device::cpu());
  testing::parameters_to_f64(*net);
  perturb(*net, 400);
  return net;
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
  const std::vector<double> av = a.to_double_vector(), bv = b.to_double_vector();
  double m = 0;
  for (std::size_t i = 0; i < av.size(); ++i) m = std::max(m, std::fabs(av[i] - bv[i]));
  return m;
}

TEST(VideoUNet, FramesOfAClipMixButClipsStayIndependent) {
  const auto net = mixing_model();
  const Tensor x = random_tensor({2, 3, 8, 8, 3}, 9);
  // Change frame 0 of clip 0 only.
  const Tensor bump = concat({Tensor::full({1, 1, 8, 8, 3}, 0.5, DType::f64), Tensor::zeros({1, 2, 8, 8, 3}, DType::f64)}, 1);
  const Tensor x2 = add(x, concat({bump, Tensor::zeros({1, 3, 8, 8, 3}, DType::f64)}, 0));
  const Tensor y = net->forward(x, {30, 600}, {1, 0}, nn::Context{});
  const Tensor y2 = net->forward(x2, {30, 600}, {1, 0}, nn::Context{});
  const Tensor frame2 = frames_of(slice(y, 0, 0, 1), 2, 1), frame2_changed = frames_of(slice(y2, 0, 0, 1), 2, 1);
  EXPECT_GT(max_abs_diff(frame2, frame2_changed), 1e-6) << "frame 2 does not see frame 0";
  EXPECT_TRUE(testing::same_bits(slice(y2, 0, 1, 1), slice(y, 0, 1, 1))) << "clip 1 sees clip 0";
}

TEST(VideoUNet, ReversingTheFramesDoesNotJustReverseTheOutput) {
  // Without the frame-position embedding, attention over the frames is permutation
  // equivariant and so would be the whole network: y(reverse(x)) = reverse(y(x)) exactly.
  const auto net = mixing_model();
  const Tensor x = random_tensor({1, 3, 8, 8, 3}, 10);
  auto reverse = [](const Tensor& v) { return concat({frames_of(v, 2, 1), frames_of(v, 1, 1), frames_of(v, 0, 1)}, 1); };
  const Tensor y = net->forward(x, {200}, {1}, nn::Context{});
  const Tensor y_rev = net->forward(reverse(x), {200}, {1}, nn::Context{});
  EXPECT_GT(max_abs_diff(y_rev, reverse(y)), 1e-6);
}

TEST(VideoUNet, FirstFrameConditionBuildsTheEmuVideoInput) {
  const Tensor frame0 = random_tensor({2, 4, 4, 3}, 11);
  const Tensor c = first_frame_condition(frame0, 3);
  ASSERT_EQ(c.shape(), (Shape{2, 3, 4, 4, 4}));
  const std::vector<double> cv = c.to_double_vector(), fv = frame0.to_double_vector();
  for (int n = 0; n < 2; ++n)
    for (int f = 0; f < 3; ++f)
      for (int p = 0; p < 16; ++p)
        for (int ch = 0; ch < 4; ++ch) {
          const double got = cv[((n * 3 + f) * 16 + p) * 4 + ch];
          const double want = f > 0 ? 0.0 : ch < 3 ? fv[(n * 16 + p) * 3 + ch] : 1.0;
          ASSERT_EQ(got, want) << "clip " << n << " frame " << f << " pixel " << p << " channel " << ch;
        }
  testing::expect_value_error([&] { first_frame_condition(frame0, 1); }, "num_frames must be at least 2, got 1");
  testing::expect_value_error([&] { first_frame_condition(c, 3); }, "[N, H, W, C]");

  // conv_in takes x_t, I and m: 2 C + 1 channels; the output has C.
  UNetConfig cfg = video_config();
  cfg.image_size = 4;
  cfg.first_frame_condition = true;
  cfg.condition_frames = 1;
  EXPECT_EQ(cfg.forward_channels(), 7);
  Generator g(14);
  UNet net(cfg, g, Device::cpu());
  testing::parameters_to_f64(net);
  const Tensor x_t = random_tensor({2, 3, 4, 4, 3}, 12);
  const Tensor y = net.forward(concat({x_t, c}, -1), {5, 6}, {0, 1}, nn::Context{});
  EXPECT_EQ(y.shape(), (Shape{2, 3, 4, 4, 3}));
  testing::expect_value_error([&] { net.forward(x_t, {5, 6}, {0, 1}, nn::Context{}); }, "first_frame_condition()");
}

// Ho et al. 2022 sec. 3.1: k known frames at positions 0..k-1 with mask 1, zeros after.
TEST(VideoUNet, FramesConditionPlacesKKnownFrames) {
  const Tensor known = random_tensor({2, 2, 3, 3, 2}, 31);  // 2 clips, k = 2 known frames
  const Tensor c = frames_condition(known, 4);
  ASSERT_EQ(c.shape(), (Shape{2, 4, 3, 3, 3}));
  const std::vector<double> cv = c.to_double_vector(), kv = known.to_double_vector();
  for (int n = 0; n < 2; ++n)
    for (int f = 0; f < 4; ++f)
      for (int p = 0; p < 9; ++p)
        for (int ch = 0; ch < 3; ++ch) {
          const double got = cv[((n * 4 + f) * 9 + p) * 3 + ch];
          const double want = f >= 2 ? 0.0 : ch < 2 ? kv[((n * 2 + f) * 9 + p) * 2 + ch] : 1.0;
          ASSERT_EQ(got, want) << "clip " << n << " frame " << f << " pixel " << p << " channel " << ch;
        }
  // k = 1 is the first-frame condition, value for value.
  const Tensor frame0 = random_tensor({2, 3, 3, 2}, 32);
  EXPECT_TRUE(testing::same_bits(frames_condition(frame0.reshape({2, 1, 3, 3, 2}), 5),
                                 first_frame_condition(frame0, 5)));
  // At least one frame is generated, and the known frames are clips.
  testing::expect_value_error([&] { frames_condition(known, 2); }, "2 known frame(s) for clips of 2 frames; need 1 <= k <= 1");
  testing::expect_value_error([&] { frames_condition(random_tensor({2, 0, 3, 3, 2}, 1), 4); }, "0 known frame(s)");
  testing::expect_value_error([&] { frames_condition(frame0, 4); }, "must be clips [N, k, H, W, C], got [2, 3, 3, 2]");
  // A gradient reaches the known frames (the condition is on the tape).
  EXPECT_TRUE(testing::gradcheck([](const std::vector<Tensor>& in) { return frames_condition(in[0], 3); },
                                 {testing::param(random_tensor({1, 2, 2, 2, 1}, 33))}));
}

TEST(VideoUNet, ConditionFramesAreValidatedAndWrittenOnlyAboveOne) {
  UNetConfig c = video_config(4);
  c.first_frame_condition = true;
  c.condition_frames = 1;
  EXPECT_FALSE(config_to_json(c).contains("condition_frames"));  // old files mean 1
  EXPECT_EQ(config_from_json(config_to_json(c)).condition_frames, 1);
  c.condition_frames = 3;
  const nlohmann::json j = config_to_json(c);
  EXPECT_EQ(j.at("condition_frames"), 3);
  EXPECT_EQ(config_from_json(j).condition_frames, 3);
  EXPECT_EQ(c.input_channels(), 2 * 3 + 1);  // the network is unchanged: conv_in 2C + 1
  c.condition_frames = 4;
  testing::expect_value_error([&] { c.validate(); }, "condition_frames must be in [1, num_frames - 1 = 3]");
  c.condition_frames = 0;
  testing::expect_value_error([&] { c.validate(); }, "got 0");
  UNetConfig plain = video_config(4);
  plain.condition_frames = 2;
  testing::expect_value_error([&] { plain.validate(); }, "condition_frames 2 needs first_frame_condition");
  nlohmann::json bad = j;
  bad["condition_frames"] = 1;
  testing::expect_has(testing::io_error_message([&] { config_from_json(bad); }),
                      "the key is written only for more than one");
}

TEST(VideoUNet, ConfigJsonRoundTripsAndImageConfigsHaveNoVideoKeys) {
  UNetConfig c = video_config(4);
  c.first_frame_condition = true;
  c.condition_frames = 1;
  const nlohmann::json j = config_to_json(c);
  EXPECT_EQ(j.at("num_frames"), 4);
  EXPECT_EQ(j.at("first_frame_condition"), true);
  const UNetConfig back = config_from_json(j);
  EXPECT_EQ(back.num_frames, 4);
  EXPECT_TRUE(back.first_frame_condition);
  EXPECT_EQ(config_to_json(back), j);
  UNetConfig image = video_config();
  image.num_frames = 0;
  const nlohmann::json ji = config_to_json(image);
  EXPECT_FALSE(ji.contains("num_frames"));
  EXPECT_FALSE(ji.contains("first_frame_condition"));
  EXPECT_EQ(config_from_json(ji).num_frames, 0);
  nlohmann::json bad = j;
  bad["num_frames"] = 1;
  testing::expect_value_error([&] { config_from_json(bad); }, "num_frames must be 0 (an image model) or at least 2");
  EXPECT_NE(testing::value_error_message([&] { config_to_diffusers(c); }).find("video model"), std::string::npos);
}

TEST(VideoUNet, ErrorsNameTheProblem) {
  UNetConfig c = video_config();
  c.num_frames = 1;
  testing::expect_value_error([&] { c.validate(); }, "num_frames must be 0 (an image model) or at least 2 (a video model), got 1");
  c = video_config();
  c.num_frames = 0;
  c.first_frame_condition = true;
  testing::expect_value_error([&] { c.validate(); }, "first_frame_condition");
  c = video_config();
  c.concat_channels = 3;
  c.low_res_size = 4;
  testing::expect_value_error([&] { c.validate(); }, "cannot be a super-resolution model");
  ControlNetConfig cn;
  cn.base = video_config();
  testing::expect_value_error([&] { cn.validate(); }, "the base is a video model");

  Generator g(15);
  UNet video(video_config(), g, Device::cpu());
  testing::expect_value_error([&] { video.forward(Tensor::zeros({3, 8, 8, 3}), {1, 2, 3}, {0, 0, 0}, nn::Context{}); },
                              "UNet: input [3, 8, 8, 3] is not a batch of clips");
  testing::expect_value_error([&] { video.forward(Tensor::zeros({1, 0, 8, 8, 3}), {1}, {0}, nn::Context{}); },
                              "has no frames per clip");  // other F >= 1 run (test_video_length.cpp)
  testing::expect_value_error([&] { video.forward(Tensor::zeros({2, 3, 8, 8, 3}), {1, 2, 3}, {0, 0}, nn::Context{}); },
                              "3 timesteps for a batch of 2");
  UNetConfig ic = video_config();
  ic.num_frames = 0;
  UNet image(ic, g, Device::cpu());
  testing::expect_value_error([&] { image.forward(Tensor::zeros({1, 3, 8, 8, 3}), {1}, {0}, nn::Context{}); },
                              "is a batch of clips [N, F, H, W, C], but the model is an image model");
}

}  // namespace
}  // namespace ddpm::unet
